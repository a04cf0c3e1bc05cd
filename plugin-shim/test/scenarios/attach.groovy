// Evidence: snDevOpsAttach sends a workspace file to snowgate for the stage's change request
// (the Rust test put report.xml into SHIM_WORKSPACE).
stage('Deploy') {
    def gate = snDevOpsChange(mode: 'change', environment: 'Production')
    echo "Deploy: ${gate.state}"
    echo "attached: ${snDevOpsAttach(name: 'junit.xml', file: 'report.xml', contentType: 'application/xml')}"
    echo "again: ${snDevOpsAttach(name: 'junit.xml', file: 'report.xml', contentType: 'application/xml')}"
    echo "unknown stage: ${snDevOpsAttach(name: 'x', file: 'report.xml', stageName: 'Nowhere')}"
}
List sent = harnessSent('POST', '/evidence')
assert sent.size() == 2
assert sent[0].name == 'junit.xml' && sent[0].contentType == 'application/xml'
assert new String(sent[0].contentBase64.decodeBase64(), 'UTF-8') == '<testsuite tests="3"/>\n'
echo 'evidence sent'
