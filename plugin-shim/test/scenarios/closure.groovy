// The closure form: the steps run once the change is approved, and the stage's end is
// reported to snowgate (POST /api/v1/gates/{id}/complete): success, or failure when the steps
// throw (the error is rethrown). Disabled change control runs the steps and reports nothing.
// ServiceNow (the simulator) approves every change by itself.
stage('Smoke test') {
    def r = snDevOpsChange(enabled: false) {
        echo 'smoke testing without change control'
        return 'smoke tested'
    }
    echo "disabled closure returned: ${r}"
}
stage('Deploy') {
    def r = snDevOpsChange(changeRequestDetails: '{"attributes": {"short_description": "Deploy build ${BUILD_NUMBER}"}}') {
        echo 'deploying'
        return 'deployed'
    }
    echo "closure returned: ${r}"
    assert harnessSent('POST', '/complete')*.result == ['success']
}
stage('Verify') {
    try {
        snDevOpsChange {
            echo 'verifying'
            error('smoke tests failed')
        }
    } catch (e) {
        echo "the stage failed: ${e.message}"
        assert harnessSent('POST', '/complete')*.result == ['success', 'failure']
        throw e
    }
    echo 'not reached: the stage went on after its steps failed'
}
