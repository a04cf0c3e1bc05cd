// Invalid changeRequestDetails: ignored with ignoreErrors, else the plugin's failure.
snDevOpsChange(changeRequestDetails: '{"attributes": {"short_description": "Deploy shop"', ignoreErrors: true)
echo 'went on after the ignored error'
snDevOpsChange(changeRequestDetails: '{"attributes": {"short_description": "Deploy shop"')
echo 'not reached: the stage went on with invalid changeRequestDetails'
