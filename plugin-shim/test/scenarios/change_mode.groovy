// Change mode (SPEC §6): snDevOpsChange passes mode, environment, emergency,
// standardChangeTemplate and changeRequestNumber through; snowgate finds or creates the CR
// with the Change Management API. ServiceNow (the simulator) moves every CR it creates to
// Implement by itself; the Rust test created the CR named in CHANGE_NUMBER, in Implement.
stage('Hotfix') {
    snDevOpsChange(mode: 'change', environment: 'Production', emergency: true,
        changeRequestDetails: '{"attributes": {"short_description": "Hotfix for build ${BUILD_NUMBER}", "justification": "outage $TICKET"}}') {
        echo 'deploying the hotfix'
    }
}
stage('Deploy') {
    def gate = snDevOpsChange(mode: 'change', environment: 'Production', standardChangeTemplate: 'Jenkins deployment',
        emergency: 'false', changeRequestDetails: '{"attributes": {"short_description": "Release train ${BUILD_NUMBER}"}}')
    echo "Deploy: ${gate.state} (${gate.mode})"
}
stage('Release') {
    def gate = snDevOpsChange(mode: 'change', environment: 'Production', changeRequestNumber: env.CHANGE_NUMBER)
    echo "Release: ${gate.state} with ${gate.changeRequest.number}"
}

List opened = harnessSent('POST', '/api/v1/gates')
assert opened*.stageName == ['Hotfix', 'Deploy', 'Release']
assert opened*.mode == ['change', 'change', 'change']
assert opened*.environment == ['Production', 'Production', 'Production']
assert opened[0].emergency == true
assert opened[0].changeRequestDetails.attributes.justification == 'outage INC0012345'
assert opened[1].emergency == false
assert opened[1].standardChangeTemplate == 'Jenkins deployment'
assert opened[2].changeRequestNumber == env.CHANGE_NUMBER
assert !opened[2].containsKey('emergency')
assert harnessSent('POST', '/complete')*.result == ['success']
echo 'change-mode parameters passed through'
