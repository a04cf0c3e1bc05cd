// snDevOpsChange: holds the current stage under ServiceNow change control, through snowgate.
//
// The official plugin's parameters, with its meaning (all optional):
//   changeRequestDetails          JSON string {"attributes":{…},"setCloseCode":bool,"autoCloseChange":bool};
//                                 $VAR / ${VAR} expanded from the build environment first, as the plugin does
//   pollingInterval               seconds between changeInfo polls (0 = snowgate's default)
//   changeCreationTimeOut         seconds to wait for the CR to exist (0 = no limit)
//   abortOnChangeCreationFailure  true: fail the stage when that runs out; false: go on (default true)
//   changeStepTimeOut             seconds to wait for the decision (0 = no limit)
//   abortOnChangeStepTimeOut      true: fail the stage when that runs out; false: go on (default true)
//   ignoreErrors                  ServiceNow / configuration errors let the stage go on (default false)
//   enabled                       false: do nothing (default true)
// snowgate's own (see plugin-shim/README.md):
//   snowgateUrl, credentialsId    instead of env SNOWGATE_URL / SNOWGATE_CREDENTIALS_ID
//   waitMode                      'longpoll' (default, or env SNOWGATE_WAIT_MODE) | 'input'
//   inputId, inputSubmitter       the input step snowgate releases (default id SnowgateApproval)
//   stageName, parentStageName    name the stage when the flow graph cannot (see the README)
//   message                       sent to ServiceNow as the task's message (default: the build cause)
//   mode                          'devops' | 'change' (default: snowgate's servicenow.default_mode)
//   environment, changeRequestNumber, emergency, standardChangeTemplate   change mode (SPEC §6)
//   supersede                     true: this build's gate decides older builds' waiting gates of the
//                                 same job, branch and stage `superseded` (default: snowgate's supersede.jobs)
//
// snDevOpsChange(…) returns the decided gate (a Map: state, proceed, message, changeRequest…)
// or null when the step did nothing (disabled, or an ignored error); the plugin returns a
// status string. snDevOpsChange(…) { steps } runs the steps once the change allows the stage
// to go on, reports the stage's end to snowgate (POST /api/v1/gates/{id}/complete, "success",
// or "failure" when the steps throw, which is rethrown) and returns what the steps return.

import groovy.transform.Field

@Field
static final List KNOWN = [
    'changeRequestDetails', 'pollingInterval', 'changeCreationTimeOut', 'abortOnChangeCreationFailure',
    'changeStepTimeOut', 'abortOnChangeStepTimeOut', 'ignoreErrors', 'enabled',
    'configurationName', 'applicationName', 'snapshotName',
    'snowgateUrl', 'credentialsId', 'waitMode', 'inputId', 'inputSubmitter',
    'stageName', 'parentStageName', 'message', 'jobUrl', 'buildNumber', 'buildUrl', 'branchName', 'pipelineName',
    'mode', 'environment', 'changeRequestNumber', 'emergency', 'standardChangeTemplate',
    'supersede',
]

def call(Map args = [:], Closure body = null) {
    def api = snowgateApi
    Map gate = changeControl(api, args)
    if (body == null) {
        return gate
    }
    // The change allows the stage to go on (a stop failed the step above). The steps run
    // outside withCredentials: snowgate's token is not in their environment.
    if (gate == null) {
        api.log('No snowgate gate for this stage (change control did nothing), so its result is not reported')
    }
    def result = null
    try {
        result = body.call()
    } catch (Throwable t) {
        if (gate != null) {
            try {
                api.completeGate(args, gate, 'failure')
            } catch (Throwable ignored) {
                // The steps' own error is what the stage fails with.
            }
        }
        throw t
    }
    if (gate != null) {
        api.completeGate(args, gate, 'success')
    }
    return result
}

def call(Closure body) {
    return call([:], body)
}

/** Opens the stage's gate and waits for its decision; the plugin's step, start to end. */
Map changeControl(api, Map args) {
    if (!api.flag(args.enabled, true)) {
        api.log('Change control for step is disabled')
        return null
    }
    boolean ignoreErrors = api.flag(args.ignoreErrors, false)
    warnAboutParameters(api, args)

    // changeRequestDetails is a JSON string, as in the plugin (a Map is accepted too); the
    // plugin expands the build's variables in the text before parsing it (EnvVars.expand).
    Map details = null
    if (args.changeRequestDetails instanceof Map) {
        details = api.expandEnvDeep(args.changeRequestDetails)
    } else {
        String text = api.trimToNull(args.changeRequestDetails)
        if (text != null) {
            def parsed = null
            String problem = null
            try {
                parsed = api.parseJson(api.expandEnv(text))
            } catch (InterruptedException e) {
                throw e
            } catch (Exception e) {
                problem = e.message ?: e.getClass().name
            }
            if (problem == null && !(parsed instanceof Map)) {
                problem = "A JSONObject text must begin with '{'"
            }
            if (problem != null) {
                // The plugin's message ("Failed to parse changeRequestDetails json." + cause).
                return api.failOrIgnore(ignoreErrors, 'Failed to parse changeRequestDetails json. ' + problem,
                    'Error registering the job. Ignoring error')
            }
            details = parsed
        }
    }

    Map cfg = api.settings(args)
    if (cfg.url == null) {
        return api.failOrIgnore(ignoreErrors,
            'snowgate is not configured: set SNOWGATE_URL in the environment or pass snowgateUrl:',
            'Error registering the job. Ignoring error')
    }
    Map id = api.identity(args)
    if (id.jobUrl == null || id.buildNumber == null || id.stageName == null) {
        return api.failOrIgnore(ignoreErrors,
            'snDevOpsChange needs JOB_URL, BUILD_NUMBER and STAGE_NAME: run it inside a stage, with the Jenkins URL set in Manage Jenkins » System',
            'Error registering the job. Ignoring error')
    }
    if (id.stageNote != null) {
        api.log(id.stageNote as String)
    }

    String waitMode = api.trimToNull(args.waitMode) ?: api.trimToNull(env.SNOWGATE_WAIT_MODE) ?: 'longpoll'
    if (waitMode != 'longpoll' && waitMode != 'input') {
        error("snDevOpsChange: waitMode must be 'longpoll' or 'input', not '${waitMode}'")
    }
    String inputId = api.trimToNull(args.inputId) ?: 'SnowgateApproval'

    Map body = [
        jobUrl: id.jobUrl,
        buildNumber: id.buildNumber,
        stageName: id.stageName,
        abortOnChangeCreationFailure: api.flag(args.abortOnChangeCreationFailure, true),
        abortOnChangeStepTimeout: api.flag(args.abortOnChangeStepTimeOut, true),
        ignoreErrors: ignoreErrors,
    ]
    // The stage (flow node, parent, upstream stage, execution URL), the job and the build
    // cause, as the plugin sends them (SPEC §2); absent values are left out.
    body.putAll(api.pick(id, [
        'buildUrl', 'branchName', 'isMultiBranch', 'jobName',
        'parentStageName', 'parentStageId', 'flowNodeId', 'taskExecutionUrl', 'upstreamStageName', 'upstreamStageUrl',
        'triggerType', 'userName', 'upstreamTaskExecutionUrl',
    ]))
    String message = api.trimToNull(args.message) ?: id.causeMessage
    if (message != null) {
        body.message = message
    }
    // 0 means "off" for all three, as in the plugin; snowgate then applies its own defaults.
    putSeconds(body, 'pollingIntervalSecs', api.seconds(args.pollingInterval))
    putSeconds(body, 'changeCreationTimeoutSecs', api.seconds(args.changeCreationTimeOut))
    putSeconds(body, 'changeStepTimeoutSecs', api.seconds(args.changeStepTimeOut))
    if (details != null) {
        body.changeRequestDetails = details
    }
    if (waitMode == 'input') {
        body.input = [id: inputId]
    }
    // Change mode (SPEC §6): snowgate finds or creates the CR through the Change Management API.
    for (String key in ['mode', 'environment', 'changeRequestNumber', 'standardChangeTemplate']) {
        String value = api.trimToNull(args[key])
        if (value != null) {
            body[key] = value
        }
    }
    if (args.emergency != null) {
        body.emergency = api.flag(args.emergency, false)
    }
    if (args.supersede != null) {
        body.supersede = api.flag(args.supersede, false)
    }

    return api.withAuth(cfg) { List headers ->
        Map gate = api.openGate(cfg, headers, body, ignoreErrors)
        if (gate == null) {
            return null
        }
        // For snDevOpsAttach: the gate of this stage in this build.
        api.rememberGate(body.stageName as String, gate.id as String)
        Map seen = [number: null] // the CR number once logged
        announce(api, cfg, gate, seen)
        if (gate.proceed == null) {
            if (waitMode == 'input') {
                gate = waitForInput(api, cfg, headers, gate, inputId, args.inputSubmitter, ignoreErrors, seen)
            } else {
                gate = api.waitForDecision(cfg, headers, gate, ignoreErrors, seen)
            }
            if (gate == null) {
                return null
            }
        }
        api.noteChangeRequest(gate, seen)
        return api.finish(gate)
    }
}

/** What the plugin prints when it starts waiting, plus where the gate is in snowgate. */
void announce(api, Map cfg, Map gate, Map seen) {
    if (gate.proceed != null) {
        return
    }
    api.log('Job is under change control')
    if (gate.message) {
        api.log(gate.message.toString())
    }
    String self = (gate.links instanceof Map && gate.links.self) ? gate.links.self.toString() : "/api/v1/gates/${gate.id}".toString()
    api.log('snowgate gate: ' + cfg.url + self)
    api.noteChangeRequest(gate, seen)
}

/**
 * Input mode: snowgate answers the input step (proceed on approval, abort otherwise). Either way
 * the gate itself says what happened, so the plugin's messages follow from it. An input answered
 * by hand in Jenkins before ServiceNow decided does not bypass the change: the step goes on
 * waiting by long-poll (an operator overrides with snowgate's resume, which is audited).
 */
Map waitForInput(api, Map cfg, List headers, Map gate, String inputId, submitter, boolean ignoreErrors, Map seen) {
    String number = api.changeNumberOf(gate)
    Map params = [id: inputId, message: "Waiting for ServiceNow change ${number ?: 'request'} to be decided".toString(), ok: 'Proceed']
    if (api.trimToNull(submitter) != null) {
        params.submitter = submitter.toString()
    }
    Throwable interrupted = null
    try {
        input(params)
    } catch (Throwable t) {
        // FlowInterruptedException (an InterruptedException) when the input is aborted: by
        // snowgate on a negative decision, or by a person aborting the build.
        interrupted = t
    }
    Map now = api.fetchGate(cfg, headers, gate)
    if (now != null && now.proceed != null) {
        return now
    }
    if (interrupted != null) {
        throw interrupted
    }
    api.log('The input was answered in Jenkins before ServiceNow decided; still waiting for the change decision')
    return api.waitForDecision(cfg, headers, now ?: gate, ignoreErrors, seen)
}

void warnAboutParameters(api, Map args) {
    List unknown = unknownParameters(args)
    if (unknown) {
        api.log("snDevOpsChange: unknown parameter(s) ${unknown.join(', ')} ignored".toString())
    }
    // Selecting a plugin configuration or a DevOps Config snapshot happens in snowgate's own
    // configuration (one ServiceNow instance per snowgate).
    List ignored = api.pick(args, ['configurationName', 'applicationName', 'snapshotName']).keySet() as List
    if (ignored) {
        api.log("snDevOpsChange: ${ignored.join(', ')} not used with snowgate (its configuration names the ServiceNow instance)".toString())
    }
}

@NonCPS
List unknownParameters(Map args) {
    List unknown = []
    for (k in args.keySet()) {
        if (!KNOWN.contains(k.toString())) {
            unknown << k.toString()
        }
    }
    return unknown
}

@NonCPS
void putSeconds(Map body, String key, int secs) {
    if (secs > 0) {
        body[key] = secs
    }
}
