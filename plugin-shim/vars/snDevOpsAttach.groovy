// snDevOpsAttach: attaches a workspace file (a JUnit report, a scan result) to the change
// request of the current stage's gate, through snowgate's POST /api/v1/gates/{id}/evidence
// (ServiceNow's Attachment API, through snowgate's outbox: retried, sent once per content).
//
//   snDevOpsAttach(name: 'junit.xml', file: 'target/surefire-reports/TEST-all.xml')
//   snDevOpsAttach(name: 'scan.pdf', file: 'scan.pdf', contentType: 'application/pdf',
//                  stageName: 'Deploy')   // another stage of this build
//
// Call it after snDevOpsChange opened the stage's gate (inside its body, or later in the
// build). Returns true when snowgate took the evidence (queued, or the same content sent
// before), false otherwise: evidence never fails the stage, the reason is logged.

def call(Map args = [:]) {
    def api = snowgateApi
    String step = api.prefix + 'snDevOpsAttach, '
    String name = api.trimToNull(args.name)
    String file = api.trimToNull(args.file)
    if (name == null || file == null) {
        echo(step + 'name and file are required')
        return false
    }
    String stage = api.trimToNull(args.stageName) ?: api.currentStagePath()
    String gateId = api.rememberedChange(env.SNOWGATE_GATES, stage)
    if (gateId == null) {
        echo(step + "no gate of stage '${stage}' in this build: call snDevOpsChange first")
        return false
    }
    Map cfg = api.settings(args)
    if (cfg.url == null) {
        echo(step + 'snowgate is not configured (SNOWGATE_URL)')
        return false
    }
    // The file as base64 (readFile's Base64 encoding), so any bytes travel unchanged.
    String content = readFile(file: file, encoding: 'Base64')
    Map body = [name: name, contentType: api.trimToNull(args.contentType) ?: 'application/octet-stream',
                contentBase64: content]
    Map response = null
    try {
        response = api.withAuth(cfg) { List headers ->
            return api.request(cfg, headers, 'POST', '/api/v1/gates/' + api.encode(gateId) + '/evidence', body, 120)
        }
    } catch (InterruptedException e) {
        throw e
    } catch (Exception e) {
        echo(step + 'snowgate could not be reached: ' + (e.message ?: e.getClass().name))
        return false
    }
    if (response.status == 202 || response.status == 200) {
        echo(step + "${name} ${response.json?.status ?: 'queued'} for the change request (sha256 ${response.json?.sha256})")
        return true
    }
    echo(step + "${name} was not taken: " + api.describe(response))
    return false
}
