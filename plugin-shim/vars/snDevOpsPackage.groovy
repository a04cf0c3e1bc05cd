// snDevOpsPackage: registers a package of artifact versions with ServiceNow DevOps, through
// snowgate's POST /api/v1/packages. Gates nothing.
//
//   snDevOpsPackage(name: 'shop-release', artifactsPayload: """{"artifacts": [
//                   {"name": "app.jar", "repositoryName": "releases", "version": "1.${BUILD_NUMBER}"}]}""")
//
// Parameters as in the plugin: name (or packageName), artifactsPayload (a JSON object with
// "artifacts", or a JSON list of artifacts; `${VAR}` expanded). snowgate's own: ignoreErrors
// (default false; the plugin's package step has none), enabled, snowgateUrl, credentialsId.
// Returns true; a failure fails the stage unless ignoreErrors.

def call(Map args = [:]) {
    def api = snowgateApi
    if (!api.flag(args.enabled, true)) {
        return true
    }
    String name = api.trimToNull(args.name) ?: api.trimToNull(args.packageName)
    Map prepared = [problem: 'name (the package name) is required']
    if (name != null) {
        prepared = api.registrationBody(args, args.artifactsPayload == null ? null : args.artifactsPayload.toString())
    }
    String problem = prepared.problem
    if (problem == null) {
        Map body = prepared.body
        body.name = name
        problem = api.register(args, '/api/v1/packages', body)
    }
    if (problem == null) {
        api.log('SUCCESS: Register Package request was successful.')
        return true
    }
    String message = 'FAILED: Package could not be registered.Cause: ' + problem
    api.log('Error occured while registering the artifact package, ' + problem)
    if (api.flag(args.ignoreErrors, false)) {
        api.log('IGNORED: Package registration error ignored.')
        return true
    }
    error(message)
}
