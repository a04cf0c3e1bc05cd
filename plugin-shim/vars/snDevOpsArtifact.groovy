// snDevOpsArtifact: registers artifact versions with ServiceNow DevOps, through snowgate's
// POST /api/v1/artifacts. Gates nothing.
//
//   snDevOpsArtifact(artifactsPayload: """{"artifacts": [{"name": "app.jar", "version": "1.${BUILD_NUMBER}",
//                    "semanticVersion": "1.${BUILD_NUMBER}.0", "repositoryName": "releases"}]}""")
//
// Parameters as in the plugin: artifactsPayload (a JSON string; `${VAR}` is expanded from the
// build's environment; pipelineName / taskExecutionNumber / stageName / branchName default to this
// build), enabled (default true), ignoreErrors (default false). snowgate's own: snowgateUrl,
// credentialsId. Returns true; a failure fails the stage unless ignoreErrors.

def call(String artifactsPayload) {
    return call(artifactsPayload: artifactsPayload)
}

def call(Map args = [:]) {
    def api = snowgateApi
    if (!api.flag(args.enabled, true)) {
        return true
    }
    Map prepared = api.registrationBody(args, args.artifactsPayload == null ? null : args.artifactsPayload.toString())
    String problem = prepared.problem ?: api.register(args, '/api/v1/artifacts', prepared.body)
    if (problem == null) {
        api.log('SUCCESS: Register Artifact request was successful.')
        return true
    }
    // The plugin's words.
    String message = 'FAILED: Artifact could not be registered.Cause: ' + problem
    api.log(message)
    if (api.flag(args.ignoreErrors, false)) {
        api.log('IGNORED: Artifact registration error ignored.')
        return true
    }
    error(message)
}
