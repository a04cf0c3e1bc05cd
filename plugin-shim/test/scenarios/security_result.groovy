// snDevOpsSecurityResult is not provided: it fails the stage, pointing at the README.
snDevOpsSecurityResult(securityResultAttributes: '{"scanner": "Veracode", "applicationName": "shop"}')
echo 'not reached: the stage went on as if the security results had been registered'
