// snDevOpsGetChangeNumber: the number of the change request of a stage, as a String (or null).
//
// As in the plugin:
//   snDevOpsGetChangeNumber()                                         the current stage
//   snDevOpsGetChangeNumber(changeDetails: '{"stage_name":"Deploy"}')  another stage of this build
//   snDevOpsGetChangeNumber(changeDetails: '{"pipeline_name":"shop/app","stage_name":"Deploy",
//                                            "build_number":"42","branch_name":"main"}')
// The current build's stages are answered from what snDevOpsChange logged in this build
// (env.SNOWGATE_CHANGE_REQUESTS), else by snowgate; other builds by snowgate's
// GET /api/v1/change-info (ServiceNow's changeInfo). Never fails the stage for "not found";
// invalid changeDetails JSON fails it, as in the plugin.

def call(Map args = [:]) {
    def api = snowgateApi
    String step = api.prefix + 'snDevOpsGetChangeNumber, '
    String changeDetails = api.trimToNull(args.changeDetails)
    echo(step + ' ChangeDetails => ' + changeDetails)

    Map query
    if (changeDetails == null) {
        echo(step + ' No changeDetails provided, checking for change in current stage')
        // The stage path, `Deploy/Prod` for a nested stage, as snDevOpsChange named its gate.
        query = currentBuildQuery(api, api.currentStagePath())
    } else {
        def d = null
        String problem = null
        try {
            d = api.parseJson(changeDetails)
        } catch (InterruptedException e) {
            throw e
        } catch (Exception e) {
            problem = e.message ?: e.getClass().name
        }
        if (problem == null && !(d instanceof Map)) {
            problem = "A JSONObject text must begin with '{'"
        }
        if (problem != null) {
            echo(api.prefix + 'Error occurred while running snDevOpsGetChangeNumber, Exception: ' + problem)
            error(api.prefix + 'snDevOpsGetChangeNumber: changeDetails is not valid JSON: ' + problem)
        }
        String pipelineName = api.trimToNull(d.pipeline_name)
        String stageName = api.trimToNull(d.stage_name)
        String buildNumber = api.trimToNull(d.build_number)
        String branchName = api.trimToNull(d.branch_name)
        if (buildNumber == null && stageName != null) {
            // Another stage of this same build.
            query = currentBuildQuery(api, stageName)
        } else if (pipelineName == null || buildNumber == null || stageName == null) {
            List missing = []
            if (pipelineName == null) {
                missing << ' Pipeline Name'
            }
            if (buildNumber == null) {
                missing << ' Build Number'
            }
            if (stageName == null) {
                missing << ' Stage Name'
            }
            echo(step + " Couldn't get 'Change Request Number'. Please provide" + missing.join(',') + '.')
            return null
        } else {
            query = [pipelineName: pipelineName, stageName: stageName, buildNumber: buildNumber, branchName: branchName]
        }
    }
    if (query == null) {
        echo(step + " Couldn't get 'Change Request Number', no stage is named and STAGE_NAME is not set")
        return null
    }

    String number = null
    if (query.remembered != null) {
        number = query.remembered
    } else {
        number = askSnowgate(api, args, step, query)
    }
    if (number != null) {
        echo(step + " 'Change Request Number' => " + number)
    }
    return number
}

/** This build's stage: what snDevOpsChange remembered, else the changeInfo query for it. */
Map currentBuildQuery(api, String stageName) {
    if (stageName == null) {
        return null
    }
    String remembered = api.rememberedChange(env.SNOWGATE_CHANGE_REQUESTS, stageName)
    if (remembered != null) {
        return [remembered: remembered]
    }
    return [
        pipelineName: env.JOB_NAME,
        stageName: stageName,
        buildNumber: env.BUILD_NUMBER,
        branchName: api.trimToNull(env.BRANCH_NAME),
    ]
}

String askSnowgate(api, Map args, String step, Map query) {
    Map cfg = api.settings(args)
    if (cfg.url == null) {
        echo(step + " Couldn't get 'Change Request Number', snowgate is not configured: set SNOWGATE_URL or pass snowgateUrl:")
        return null
    }
    Map params = api.pick(query, ['pipelineName', 'stageName', 'buildNumber', 'branchName', 'projectName'])
    Map response = null
    try {
        response = api.withAuth(cfg) { List headers ->
            return api.request(cfg, headers, 'GET', '/api/v1/change-info' + api.query(params), null, 60)
        }
    } catch (InterruptedException e) {
        throw e
    } catch (Exception e) {
        echo(step + " Couldn't get 'Change Request Number', snowgate is not reachable at ${cfg.url}: ${e.message ?: e.getClass().name}".toString())
        return null
    }
    if (response.status >= 200 && response.status < 300) {
        String number = numberIn(response.json)
        if (number != null) {
            return number
        }
        echo(step + " Couldn't get 'Change Request Number', " + (errorIn(response.json) ?: 'no change request is known for this stage'))
        return null
    }
    echo(step + " Couldn't get 'Change Request Number', " + api.describe(response))
    return null
}

/** The CR number in snowgate's answer: `number`, `changeRequestNumber`, `changeRequest.number` or ServiceNow's `result.number`. */
@NonCPS
String numberIn(json) {
    if (!(json instanceof Map)) {
        return null
    }
    List candidates = [json.number, json.changeRequestNumber]
    if (json.changeRequest instanceof Map) {
        candidates << json.changeRequest.number
    }
    if (json.result instanceof Map) {
        candidates << json.result.number
    }
    for (c in candidates) {
        if (c != null && c.toString().trim()) {
            return c.toString().trim()
        }
    }
    return null
}

@NonCPS
String errorIn(json) {
    if (!(json instanceof Map)) {
        return null
    }
    if (json.result instanceof Map && json.result.errorMessage) {
        return json.result.errorMessage.toString()
    }
    if (json.error instanceof Map && json.error.message) {
        return json.error.message.toString()
    }
    return null
}
