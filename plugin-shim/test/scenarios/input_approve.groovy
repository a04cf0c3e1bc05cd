// Input mode: the stage waits in an input step that snowgate releases on approval.
def gate = snDevOpsChange(waitMode: 'input')
echo "gate state: ${gate.state}"
