// Nobody decides the change request: the change-step timeout runs out in snowgate. With
// abortOnChangeStepTimeOut: false the step returns; by default (true) it fails the stage with
// the plugin's message. Two stages of the build, so two gates (stageName:).
def gate = snDevOpsChange(stageName: 'Smoke test', changeStepTimeOut: 1, abortOnChangeStepTimeOut: false)
echo "Smoke test went on: state ${gate.state}, proceed ${gate.proceed}"
snDevOpsChange(stageName: 'Deploy', changeStepTimeOut: 1)
echo 'not reached: the stage went on after the change step timeout'
