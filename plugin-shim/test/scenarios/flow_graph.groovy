// A nested stage under change control, named from the build's flow graph as the plugin names
// it: stage path Deploy/Prod, its own flow node, its parent Deploy and the stage before it at
// its level (Smoke test); the build cause (a user); changeRequestDetails with the build's
// variables expanded. The Rust test approves the change while the step waits.
stage('Build') {
    echo 'building'
}
stage('Deploy') {
    stage('Smoke test') {
        echo 'smoke testing'
    }
    stage('Prod') {
        def gate = snDevOpsChange(changeRequestDetails: '''{"attributes": {
            "short_description": "Deploy ${JOB_NAME} build $BUILD_NUMBER to ${target_env}",
            "description": "costs $$5; ${NOT_SET} stays as written"}}''')
        echo "gate state: ${gate.state}"
        echo "change number: ${snDevOpsGetChangeNumber()}"

        // What the step sent to snowgate.
        List opened = harnessSent('POST', '/api/v1/gates')
        assert opened.size() == 1
        Map sent = opened[0]
        String prod = harnessNodeId('Deploy/Prod')
        assert sent.stageName == 'Deploy/Prod'
        assert sent.flowNodeId == prod
        assert sent.taskExecutionUrl == "${env.BUILD_URL}execution/node/${prod}/wfapi/describe".toString()
        assert sent.parentStageName == 'Deploy'
        assert sent.parentStageId == harnessNodeId('Deploy')
        assert sent.upstreamStageName == 'Deploy/Smoke test'
        assert sent.upstreamStageUrl == "${env.BUILD_URL}execution/node/${harnessNodeId('Deploy/Smoke test')}/wfapi/describe".toString()
        assert sent.jobName == env.JOB_NAME
        assert sent.buildUrl == env.BUILD_URL
        assert sent.triggerType == 'user'
        assert sent.userName == 'Alice Example'
        assert sent.message == 'Started by user Alice Example'
        assert !sent.containsKey('upstreamTaskExecutionUrl')
        // EnvVars.expand: ${VAR} and $VAR (names case-insensitive), $$ is a $, unknown names stay.
        Map attributes = sent.changeRequestDetails.attributes
        assert attributes.short_description == 'Deploy shop/app build 7 to production'
        assert attributes.description == 'costs $5; ${NOT_SET} stays as written'
        echo 'the gate request carried the stage, its parent and upstream stage, the cause and the expanded details'
    }
}
