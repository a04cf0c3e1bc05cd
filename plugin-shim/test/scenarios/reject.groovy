// ServiceNow rejects the change: the step fails the stage with "Not approved".
snDevOpsChange()
echo 'not reached: the stage went on after a rejection'
