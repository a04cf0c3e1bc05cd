// ServiceNow never names a change request (the test's simulator sends no notice and snowgate
// does not poll within the test): the change-creation timeout runs out in snowgate. With
// abortOnChangeCreationFailure: false the step returns; by default (true) it fails the stage
// with the plugin's message. Two stages of the build, so two gates (stageName:).
def gate = snDevOpsChange(stageName: 'Smoke test', changeCreationTimeOut: 1, abortOnChangeCreationFailure: false)
echo "Smoke test went on: state ${gate.state}, proceed ${gate.proceed}"
snDevOpsChange(stageName: 'Deploy', changeCreationTimeOut: 1)
echo 'not reached: the stage went on after the change creation timeout'
