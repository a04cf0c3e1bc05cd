// ServiceNow says the stage's step is not valid: ignored with ignoreErrors, else the plugin's failure.
echo "snDevOpsStep(ignoreErrors: true) returned: ${snDevOpsStep(ignoreErrors: true)}"
snDevOpsStep()
echo 'not reached: the stage went on with an unassociated step'
