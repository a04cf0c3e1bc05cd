// Declarative-style parallel stages EU and US inside Deploy, then Verify after them, in a
// build started by an SCM change. Each stage has its own gate, flow node and execution URL;
// parallel stages get no upstream stage (as in the plugin), Verify gets the last one started
// before it (US). ServiceNow (the simulator) approves every change by itself.
stage('Build') {
    echo 'building'
}
stage('Deploy') {
    parallel(failFast: false,
        EU: {
            stage('EU') {
                echo "EU: ${snDevOpsChange().state}"
            }
        },
        US: {
            stage('US') {
                echo "US: ${snDevOpsChange().state}"
            }
        })
    stage('Verify') {
        echo "Verify: ${snDevOpsChange().state}"
    }
}

Map sent = [:]
for (Map body in harnessSent('POST', '/api/v1/gates')) {
    sent[body.stageName] = body
}
assert sent.keySet() == ['Deploy/EU', 'Deploy/US', 'Deploy/Verify'] as Set
for (String path in sent.keySet()) {
    Map body = sent[path]
    assert body.flowNodeId == harnessNodeId(path)
    assert body.taskExecutionUrl == "${env.BUILD_URL}execution/node/${harnessNodeId(path)}/wfapi/describe".toString()
    assert body.parentStageName == 'Deploy'
    assert body.parentStageId == harnessNodeId('Deploy')
    assert body.triggerType == 'scm'
    assert body.message == 'Started by an SCM change'
    assert !body.containsKey('userName')
}
assert !sent['Deploy/EU'].containsKey('upstreamStageName')
assert !sent['Deploy/US'].containsKey('upstreamStageName')
assert sent['Deploy/Verify'].upstreamStageName == 'Deploy/US'
assert sent['Deploy/Verify'].upstreamStageUrl == "${env.BUILD_URL}execution/node/${harnessNodeId('Deploy/US')}/wfapi/describe".toString()
echo 'three gates, each with its own flow node; upstream stages as the plugin gives them'
