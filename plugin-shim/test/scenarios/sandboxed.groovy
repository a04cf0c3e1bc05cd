// The library runs sandboxed (not a trusted global library) and nobody approved the flow-graph
// signatures: the step says so in the build log and sends a stand-in stage execution URL that
// is still unique per stage. parentStageName names the enclosing stage, as it must then.
// ServiceNow (the simulator) approves every change by itself.
stage('Deploy') {
    stage('EU') {
        snDevOpsChange(parentStageName: 'Deploy')
        // STAGE_NAME is EU; the gate's stage is Deploy/EU.
        echo "EU change number: ${snDevOpsGetChangeNumber()}"
    }
    stage('US west') {
        snDevOpsChange(parentStageName: 'Deploy')
    }
}

List opened = harnessSent('POST', '/api/v1/gates')
assert opened*.stageName == ['Deploy/EU', 'Deploy/US west']
assert opened*.taskExecutionUrl == ["${env.BUILD_URL}#Deploy/EU".toString(), "${env.BUILD_URL}#Deploy/US%20west".toString()]
assert opened*.parentStageName == ['Deploy', 'Deploy']
for (Map body in opened) {
    assert !body.containsKey('flowNodeId')
    assert !body.containsKey('parentStageId')
    assert !body.containsKey('upstreamStageName')
}
echo 'stand-in execution URLs, one per stage'
