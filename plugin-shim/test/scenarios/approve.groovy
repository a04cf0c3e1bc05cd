// ServiceNow approves the change (the Rust test approves it in the simulator while this waits).
def gate = snDevOpsChange(
    changeRequestDetails: '{"attributes": {"short_description": "Deploy shop", "assignment_group": "CAB"}, "setCloseCode": true}',
    pollingInterval: '30',
    changeStepTimeOut: 3600,
    abortOnChangeStepTimeOut: 'true')
echo "gate state: ${gate.state}"
echo "change number: ${snDevOpsGetChangeNumber()}"
