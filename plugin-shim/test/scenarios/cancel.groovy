// The change is canceled in ServiceNow: the step fails the stage with "Canceled".
snDevOpsChange()
echo 'not reached: the stage went on after a cancellation'
