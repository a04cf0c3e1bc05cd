// snDevOpsStep: associates the current stage with its ServiceNow pipeline step (stepMapping),
// through snowgate's POST /api/v1/step-mappings → {"stepValid": bool}.
//
// Parameters as in the plugin: enabled (default true), ignoreErrors (default false);
// configurationName is accepted and not used. snowgate's own: snowgateUrl, credentialsId,
// stageName, parentStageName.
//
// Returns true when the step is associated. Otherwise fails the stage with the plugin's
// "Step could not be associated…" message, or with ignoreErrors logs it and returns false.

def call(Map args = [:]) {
    def api = snowgateApi
    if (!api.flag(args.enabled, true)) {
        api.log('Step association is disabled.')
        return true
    }
    boolean ignoreErrors = api.flag(args.ignoreErrors, false)
    String notAssociated = 'Step could not be associated, perhaps you need to set the Orchestration pipeline on the Pipeline and Orchestration stage on the Pipeline Steps'

    Map cfg = api.settings(args)
    Map id = api.identity(args)
    String problem = null
    if (cfg.url == null) {
        problem = 'snowgate is not configured: set SNOWGATE_URL in the environment or pass snowgateUrl:'
    } else if (id.jobUrl == null || id.buildNumber == null || id.stageName == null) {
        problem = 'snDevOpsStep needs JOB_URL, BUILD_NUMBER and STAGE_NAME: run it inside a stage'
    }
    Boolean valid = null
    if (problem == null) {
        Map body = api.pick(id, ['jobUrl', 'buildNumber', 'stageName', 'buildUrl', 'branchName', 'isMultiBranch',
                                 'parentStageName', 'parentStageId', 'flowNodeId', 'taskExecutionUrl', 'jobName', 'pipelineName'])
        Map response = null
        try {
            response = api.withAuth(cfg) { List headers ->
                return api.request(cfg, headers, 'POST', '/api/v1/step-mappings', body, 60)
            }
        } catch (InterruptedException e) {
            throw e
        } catch (Exception e) {
            problem = "snowgate is not reachable at ${cfg.url}: ${e.message ?: e.getClass().name}".toString()
        }
        if (response != null) {
            if (response.status >= 200 && response.status < 300 && response.json instanceof Map) {
                valid = api.flag(response.json.stepValid, false)
            } else {
                problem = api.describe(response)
            }
        }
    }
    if (valid == true) {
        api.log('Step associated successfully')
        return true
    }
    if (problem != null) {
        api.log('Error occured while step mapping, ' + problem)
    }
    api.log(notAssociated)
    if (ignoreErrors) {
        api.log('Step association error ignored.')
        return false
    }
    error(api.prefix + notAssociated)
}
