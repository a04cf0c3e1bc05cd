// Internal helpers of the snowgate shim: settings, the stage's identity, HTTP calls to the
// sidecar and the outcome of a gate. The snDevOps* steps call these; a Jenkinsfile does not
// need to.
//
// Pipeline (CPS) rules this file keeps, so it runs the same under Jenkins and under the Groovy
// test harness (plugin-shim/test/run.groovy):
// - steps (echo, httpRequest, readJSON, waitUntil, input, sleep, error) are only called from
//   CPS code; @NonCPS methods are pure (parsing, encoding, JSON text);
// - plain for-loops instead of closures over collections in CPS code;
// - values kept across steps are plain maps, lists and strings (serializable), never json-lib
//   or JsonSlurper lazy objects;
// - `catch (Exception)` around an HTTP call always lets InterruptedException through first, so
//   an aborted build is never taken for a network error.

import org.jenkinsci.plugins.workflow.actions.LabelAction
import org.jenkinsci.plugins.workflow.actions.StageAction
import org.jenkinsci.plugins.workflow.actions.ThreadNameAction
import org.jenkinsci.plugins.workflow.cps.nodes.StepStartNode
import org.jenkinsci.plugins.workflow.graph.FlowNode

/** What the official plugin prefixes to every line it writes to the build log. */
String getPrefix() {
    return '[ServiceNow DevOps] '
}

void log(String message) {
    echo(prefix + message)
}

/**
 * Logs `message` and, unless `ignoreErrors`, fails the step with it (`failure` replaces the
 * step's error text when given). With `ignoreErrors` logs `ignoredNote` and returns null.
 */
def failOrIgnore(boolean ignoreErrors, String message, String ignoredNote, String failure = null) {
    log(message)
    if (ignoreErrors) {
        log(ignoredNote)
        return null
    }
    error(failure ?: message)
}

// ---------------------------------------------------------------------------------------------
// Settings

/**
 * Where snowgate is and which Jenkins credential holds its pipeline token:
 * `snowgateUrl:` / env SNOWGATE_URL, and `credentialsId:` / env SNOWGATE_CREDENTIALS_ID
 * (default `snowgate-pipeline-token`; `none` sends no token, for a snowgate with auth off).
 */
Map settings(Map args) {
    String url = trimToNull(args.snowgateUrl) ?: trimToNull(env.SNOWGATE_URL)
    while (url != null && url.endsWith('/')) {
        url = url.substring(0, url.length() - 1)
    }
    String credentialsId = trimToNull(args.credentialsId) ?: trimToNull(env.SNOWGATE_CREDENTIALS_ID) ?: 'snowgate-pipeline-token'
    return [url: url, credentialsId: credentialsId]
}

/** Runs `body(headers)` with the Authorization header for snowgate bound from the credential. */
def withAuth(Map cfg, Closure body) {
    if (cfg.credentialsId == 'none') {
        return body.call([])
    }
    def result = null
    withCredentials([string(credentialsId: cfg.credentialsId, variable: 'SNOWGATE_TOKEN')]) {
        // Concatenation, not a GString: Jenkins warns about secrets interpolated into step
        // arguments; maskValue keeps the header out of httpRequest's own logging.
        List headers = [[name: 'Authorization', value: 'Bearer ' + env.SNOWGATE_TOKEN, maskValue: true]]
        result = body.call(headers)
    }
    return result
}

// ---------------------------------------------------------------------------------------------
// The stage's identity

/**
 * The gate fields that name this stage, from the build (parameters of the same name override):
 * jobUrl, buildNumber, buildUrl, jobName and pipelineName (JOB_NAME); the stage (see stageOf):
 * stageName (the full path, `Deploy/Prod`), parentStageName, parentStageId, flowNodeId,
 * taskExecutionUrl, upstreamStageName, upstreamStageUrl, and stageNote (a sentence for the log
 * when the execution URL is a stand-in); branchName + isMultiBranch; the build cause
 * (triggerType, userName, upstreamTaskExecutionUrl, causeMessage).
 */
Map identity(Map args) {
    Map id = [
        jobUrl: trimToNull(args.jobUrl) ?: trimToNull(env.JOB_URL),
        buildNumber: trimToNull(args.buildNumber) ?: trimToNull(env.BUILD_NUMBER),
        buildUrl: trimToNull(args.buildUrl) ?: trimToNull(env.BUILD_URL),
        pipelineName: trimToNull(args.pipelineName) ?: trimToNull(env.JOB_NAME),
    ]
    id.jobName = id.pipelineName
    Map stage = stageOf(args, id.buildUrl as String)
    id.stageName = stage.path
    id.putAll(pick(stage, ['parentStageName', 'parentStageId', 'flowNodeId', 'taskExecutionUrl',
                           'upstreamStageName', 'upstreamStageUrl', 'stageNote']))
    // BRANCH_NAME is only set in multibranch projects (SPEC §2: isMultiBranch, raw branch name).
    String branch = trimToNull(args.branchName) ?: trimToNull(env.BRANCH_NAME)
    if (branch != null) {
        id.branchName = branch
        id.isMultiBranch = true
    }
    Map trigger = triggerOf(env.JENKINS_URL)
    if (trigger.type != null) {
        id.triggerType = trigger.type
    }
    if (trigger.upstreamUrl != null) {
        id.upstreamTaskExecutionUrl = trigger.upstreamUrl
    }
    if (trigger.userName != null) {
        id.userName = trigger.userName
    }
    if (trigger.message != null) {
        id.causeMessage = trigger.message
    }
    return id
}

/**
 * The stage this step runs in, as the official plugin names it (DevOpsRunListener /
 * DevOpsPipelineGraph): read from the build's flow graph when the library may (a trusted
 * library), else from STAGE_NAME and the `stageName:` / `parentStageName:` parameters.
 *
 * From the flow graph: path (`Deploy/Prod`), flowNodeId (the stage's own node), parentStageName +
 * parentStageId (the enclosing stage), taskExecutionUrl
 * (`<build URL>execution/node/<id>/wfapi/describe`) and, unless the stage is a parallel branch,
 * upstreamStageName + upstreamStageUrl (the stage before it at the same level).
 * Without it: the path from the parameters and a stand-in taskExecutionUrl, `<build URL>#<path>`,
 * unique per stage of the build, with stageNote saying why.
 */
Map stageOf(Map args, String buildUrl) {
    Map graph = flowGraphStage()
    String named = trimToNull(args.stageName)
    if (graph.path != null && (named == null || named == graph.name || named == graph.path)) {
        return stageFromGraph(graph, buildUrl)
    }
    String name = named ?: trimToNull(env.STAGE_NAME)
    Map stage = stageFromParameters(name, trimToNull(args.parentStageName), buildUrl)
    if (stage.taskExecutionUrl != null) {
        String why
        if (graph.path != null) {
            why = "stageName '${named}' is not the stage this step runs in ('${graph.path}')"
        } else {
            why = graph.problem
        }
        String advice = graph.untrusted ? '; load the library as a trusted global library for the plugin\'s …/execution/node/<id>/wfapi/describe URLs (plugin-shim/README.md, "Stage execution URLs")' : ''
        stage.stageNote = "The stage's flow node is not known (${why}): ServiceNow gets ${stage.taskExecutionUrl} as the stage execution URL, unique to stage '${stage.path}' of this build${advice}".toString()
    }
    return stage
}

/** The running stage's path (`Deploy/Prod`): the flow graph's, else STAGE_NAME. */
String currentStagePath() {
    return stageOf([:], null).path
}

/**
 * The running stage read from the flow graph: [path, name, id, parentPath?, parentId?,
 * upstreamName?, upstreamId?], or [problem: why not, untrusted: true when the sandbox refused].
 * `getContext(FlowNode)` is the step's own flow node; the reading is done by the @NonCPS
 * describeStage, so no FlowNode is held across a step.
 */
Map flowGraphStage() {
    def node = null
    try {
        node = getContext(FlowNode)
    } catch (InterruptedException e) {
        throw e
    } catch (Exception e) {
        return [problem: 'getContext(FlowNode) failed: ' + (e.message ?: e.getClass().name), untrusted: true]
    }
    if (node == null) {
        return [problem: 'getContext(FlowNode) gave no flow node']
    }
    Map stage = describeStage(node)
    node = null
    return stage
}

@NonCPS
Map describeStage(node) {
    try {
        def stage = enclosingStage(node)
        if (stage == null) {
            return [problem: 'the step does not run inside a stage']
        }
        def parent = enclosingStage(stage)
        String name = stageLabel(stage)
        String parentPath = parent == null ? null : stagePathOf(parent)
        Map out = [name: name, path: parentPath ? parentPath + '/' + name : name, id: stage.getId()]
        if (parent != null) {
            out.parentPath = parentPath
            out.parentId = parent.getId()
        }
        // Parallel stages get no upstream stage (DevOpsPipelineGraph.populateUpstreamDetails).
        try {
            if (!enclosedInParallel(stage)) {
                def up = previousSibling(stage, parent)
                if (up != null) {
                    out.upstreamName = (parentPath ? parentPath + '/' : '') + stageLabel(up)
                    out.upstreamId = up.getId()
                }
            }
        } catch (SecurityException e) {
            throw e
        } catch (Exception e) {
            // No upstream stage then (e.g. flow node ids that are not numbers); the stage is known.
        }
        return out
    } catch (SecurityException e) {
        // The script sandbox (RejectedAccessException): an untrusted library nobody approved.
        return [problem: 'the script sandbox refused to read the flow graph: ' + (e.message ?: e.getClass().name), untrusted: true]
    } catch (Exception e) {
        return [problem: 'the flow graph could not be read: ' + (e.message ?: e.getClass().name)]
    }
}

/**
 * The plugin's DevOpsStageListener.isStageStart: a node with a StageAction (old builds), or a
 * `stage` step's start node with a label and no thread name (a parallel branch has both).
 */
@NonCPS
boolean isStageStart(fn) {
    if (fn == null) {
        return false
    }
    if (fn.getAction(StageAction) != null) {
        return true
    }
    return fn.getAction(LabelAction) != null && fn.getAction(ThreadNameAction) == null &&
        fn instanceof StepStartNode && 'stage'.equalsIgnoreCase(fn.getStepName())
}

/** A parallel branch's start node (DevOpsStageListener.isParallelBranch). */
@NonCPS
boolean isParallelBranch(fn) {
    return fn instanceof StepStartNode && fn.getAction(LabelAction) != null && fn.getAction(ThreadNameAction) != null
}

/** The innermost stage enclosing `fn` (not `fn` itself), or null at the top level. */
@NonCPS
def enclosingStage(fn) {
    for (b in fn.getEnclosingBlocks()) {
        if (isStageStart(b)) {
            return b
        }
    }
    return null
}

/** True when a parallel branch lies between the stage and its enclosing stage. */
@NonCPS
boolean enclosedInParallel(stage) {
    for (b in stage.getEnclosingBlocks()) {
        if (isParallelBranch(b)) {
            return true
        }
        if (isStageStart(b)) {
            return false
        }
    }
    return false
}

/** The stage's short name: its label, as the plugin's getStageShortName. */
@NonCPS
String stageLabel(stage) {
    def label = stage.getAction(LabelAction)
    if (label != null) {
        return label.getDisplayName()
    }
    def action = stage.getAction(StageAction)
    return action != null ? action.getStageName() : stage.getDisplayName()
}

/** `Deploy/Prod`: the labels of the stage and the stages enclosing it, outermost first. */
@NonCPS
String stagePathOf(stage) {
    List names = [stageLabel(stage)]
    def s = enclosingStage(stage)
    while (s != null) {
        names.add(0, stageLabel(s))
        s = enclosingStage(s)
    }
    return names.join('/')
}

/**
 * The stage that started last before `stage` under the same enclosing stage, skipping
 * Declarative's own (`Declarative: …`), as the plugin's graph orders siblings by their start.
 * Flow node ids count up as nodes are created, so it is the first one found walking down from
 * the stage's own id to its parent's.
 */
@NonCPS
def previousSibling(stage, parent) {
    def execution = stage.getExecution()
    int own = Integer.parseInt(stage.getId())
    int floor = parent == null ? 0 : Integer.parseInt(parent.getId())
    for (int i = own - 1; i > floor; i--) {
        def n = null
        try {
            n = execution.getNode(String.valueOf(i))
        } catch (IOException ignored) {
            n = null
        }
        if (n == null || !isStageStart(n) || stageLabel(n).startsWith('Declarative: ')) {
            continue
        }
        def p = enclosingStage(n)
        if ((p == null && parent == null) || (p != null && parent != null && p.getId() == parent.getId())) {
            return n
        }
    }
    return null
}

@NonCPS
Map stageFromGraph(Map graph, String buildUrl) {
    Map s = [path: graph.path, flowNodeId: graph.id]
    if (graph.parentPath) {
        s.parentStageName = graph.parentPath
        s.parentStageId = graph.parentId
    }
    if (buildUrl) {
        s.taskExecutionUrl = stageExecutionUrl(buildUrl, graph.id)
    }
    if (graph.upstreamId) {
        s.upstreamStageName = graph.upstreamName
        if (buildUrl) {
            s.upstreamStageUrl = stageExecutionUrl(buildUrl, graph.upstreamId)
        }
    }
    return s
}

/**
 * Without the flow graph: `Parent/Stage` from the parameters (STAGE_NAME is the innermost
 * name), and the stand-in execution URL `<build URL>#<stage path>`, unique to the stage in this
 * build (the build's page, with the stage path as the fragment).
 */
@NonCPS
Map stageFromParameters(String name, String parent, String buildUrl) {
    if (name == null) {
        return [path: null]
    }
    String path = (parent != null && !name.startsWith(parent + '/')) ? parent + '/' + name : name
    Map s = [path: path]
    if (parent != null) {
        s.parentStageName = parent
    }
    if (buildUrl) {
        List segments = []
        for (part in path.split('/', -1)) {
            segments << encode(part)
        }
        s.taskExecutionUrl = withSlash(buildUrl) + '#' + segments.join('/')
    }
    return s
}

/** The plugin's stage execution URL (DevOpsPipelineGraph.getStageExecutionUrl). */
@NonCPS
String stageExecutionUrl(String buildUrl, String nodeId) {
    return withSlash(buildUrl) + 'execution/node/' + nodeId + '/wfapi/describe'
}

@NonCPS
String withSlash(String url) {
    return url.endsWith('/') ? url : url + '/'
}

/**
 * The build cause, as the plugin's DevOpsModel._getJobDetails reads the run's causes: the first
 * user, upstream or SCM cause decides — type `user` with the user's name, `upstream` with the
 * upstream build's URL (Jenkins URL + upstreamUrl + build number), `scm` — and message is that
 * cause's text. Another cause (timer, remote, …) gives no type (snowgate's default applies).
 */
Map triggerOf(String jenkinsUrl) {
    def causes = null
    try {
        causes = currentBuild.getBuildCauses()
    } catch (InterruptedException e) {
        throw e
    } catch (Exception e) {
        return [:]
    }
    return classifyCauses(plain(causes), jenkinsUrl)
}

@NonCPS
Map classifyCauses(causes, String jenkinsUrl) {
    Map out = [:]
    if (!(causes instanceof List)) {
        return out
    }
    for (c in causes) {
        if (!(c instanceof Map)) {
            continue
        }
        String cls = String.valueOf(c._class)
        // snowgate's `message`: at most 4000 characters, no control characters.
        String text = singleLine(c.shortDescription, 4000)
        if (text != null) {
            // The plugin keeps the text of the last cause it looked at.
            out.message = text
        }
        if (cls.endsWith('UserIdCause')) {
            out.type = 'user'
            String user = singleLine(c.userName ?: c.userId, 255)
            if (user != null) {
                out.userName = user
            }
            return out
        }
        if (cls.endsWith('UpstreamCause')) {
            if (c.upstreamUrl && c.upstreamBuild != null && jenkinsUrl) {
                out.type = 'upstream'
                out.upstreamUrl = withSlash(jenkinsUrl) + c.upstreamUrl + c.upstreamBuild + '/'
                return out
            }
            // Without Jenkins' URL the upstream build cannot be named; look further.
            continue
        }
        // SCMTrigger's cause, and the SCM events of multibranch and webhook plugins
        // (BranchIndexingCause, BranchEventCause, GitHubPushCause, pull-request causes).
        if (cls.contains('SCM') || cls.contains('Branch') || cls.contains('Push') || cls.contains('PullRequest')) {
            out.type = 'scm'
            return out
        }
    }
    return out
}

@NonCPS
String singleLine(value, int max) {
    if (value == null) {
        return null
    }
    String s = value.toString().replaceAll('\\p{Cntrl}', ' ').trim()
    if (!s) {
        return null
    }
    return s.length() > max ? s.substring(0, max) : s
}

// ---------------------------------------------------------------------------------------------
// HTTP

/**
 * One call to snowgate. Every call names its timeout (seconds) and sends JSON bodies as
 * APPLICATION_JSON_UTF8. Every status is accepted here (callers decide, and can then show
 * snowgate's own error message); a connection failure throws.
 *
 * Returns [status: int, json: Map|List|null, text: String].
 */
Map request(Map cfg, List headers, String method, String path, Object body, int timeoutSecs) {
    Map params = [
        url: cfg.url + path,
        httpMode: method,
        customHeaders: headers,
        acceptType: 'APPLICATION_JSON',
        timeout: timeoutSecs,
        validResponseCodes: '100:599',
        consoleLogResponseBody: false,
        quiet: true,
    ]
    if (body != null) {
        params.contentType = 'APPLICATION_JSON_UTF8'
        params.requestBody = toJson(body)
    }
    def response = httpRequest(params)
    String text = response.content == null ? '' : response.content.toString()
    int status = response.status as int
    response = null // only plain values are kept across the next step
    def json = null
    if (text.trim()) {
        try {
            json = plain(readJSON(text: text, returnPojo: true))
        } catch (InterruptedException e) {
            throw e
        } catch (Exception e) {
            json = null // not JSON (a proxy's error page): described from the text
        }
    }
    return [status: status, json: json, text: text]
}

/** Transient answers: the next round (or attempt) may succeed. */
@NonCPS
boolean isTransient(int status) {
    return status >= 500 || status == 429 || status == 408
}

/** A sentence for a failed answer, using snowgate's `{"error":{"message"}}` when present. */
@NonCPS
String describe(Map response) {
    def json = response.json
    String detail = null
    if (json instanceof Map && json.error instanceof Map && json.error.message) {
        detail = json.error.message.toString()
        String field = json.error.field ? json.error.field.toString() : null
        if (field && !detail.startsWith(field)) {
            detail = field + ': ' + detail
        }
    } else if (response.text) {
        String t = response.text.toString().trim()
        detail = t.length() > 200 ? t.substring(0, 200) + '…' : t
    }
    return "snowgate answered HTTP ${response.status}" + (detail ? ": ${detail}" : '')
}

// ---------------------------------------------------------------------------------------------
// Gates

/**
 * Opens the gate (POST /api/v1/gates: 201 new, 200 the existing gate of this stage, so a retry
 * is safe). Connection errors and 5xx are tried three times; anything else ends at once.
 * Returns the gate, or null when the failure is ignored (`ignoreErrors`).
 */
Map openGate(Map cfg, List headers, Map body, boolean ignoreErrors) {
    String problem = null
    boolean reachable = false
    int attempts = 3
    for (int attempt = 1; attempt <= attempts; attempt++) {
        Map response = null
        try {
            response = request(cfg, headers, 'POST', '/api/v1/gates', body, 60)
        } catch (InterruptedException e) {
            throw e
        } catch (Exception e) {
            problem = "snowgate is not reachable at ${cfg.url}: ${e.message ?: e.getClass().name}".toString()
        }
        if (response != null) {
            reachable = true
            if ((response.status == 200 || response.status == 201) && response.json instanceof Map) {
                return response.json
            }
            problem = describe(response)
            if (!isTransient(response.status)) {
                break
            }
        }
        if (attempt < attempts) {
            sleep(time: 5 * attempt, unit: 'SECONDS')
        }
    }
    if (!reachable) {
        // The plugin's words for an unreachable instance (snowgate stands in for it here).
        return failOrIgnore(ignoreErrors, problem, 'ServiceNow instance not contactable, but will ignore',
            prefix + 'ServiceNow instance not contactable: ' + problem)
    }
    return failOrIgnore(ignoreErrors, problem, 'Error registering the job. Ignoring error')
}

/**
 * Long-polls the gate until it is decided: each waitUntil round holds GET …/wait?timeout=60
 * (httpRequest timeout 90 s). A connection error or a 5xx only ends the round; the next round
 * tries again after waitUntil's back-off, so snowgate or network restarts never fail the
 * stage. A 4xx (token revoked, gate unknown) is final.
 * `seen` ([number: …]) is the CR number already logged; a new one is logged as it appears.
 * Returns the decided gate, or null when a final error is ignored.
 */
Map waitForDecision(Map cfg, List headers, Map gate, boolean ignoreErrors, Map seen) {
    Map current = gate
    String waitPath = (gate.links instanceof Map && gate.links.wait) ? gate.links.wait.toString() : "/api/v1/gates/${gate.id}/wait".toString()
    String fatal = null
    // A problem is logged when it changes, and then every tenth round while it lasts (rounds
    // back off to waitUntil's 15 s, so an outage does not flood the log).
    Map trouble = [last: null, repeats: 0]
    waitUntil(initialRecurrencePeriod: 1000, quiet: true) {
        Map response = null
        try {
            response = request(cfg, headers, 'GET', waitPath + '?timeout=60', null, 90)
        } catch (InterruptedException e) {
            throw e
        } catch (Exception e) {
            noteTrouble(trouble, "snowgate did not answer (${e.message ?: e.getClass().name})".toString())
            return false
        }
        if (response.status == 200 && response.json instanceof Map) {
            current = response.json
            trouble.last = null
            noteChangeRequest(current, seen)
            return current.proceed != null
        }
        if (isTransient(response.status)) {
            noteTrouble(trouble, describe(response))
            return false
        }
        fatal = describe(response)
        return true
    }
    if (fatal != null) {
        return failOrIgnore(ignoreErrors, 'Could not wait for the change decision: ' + fatal, 'Error registering the job. Ignoring error')
    }
    return current
}

void noteTrouble(Map trouble, String problem) {
    if (problem != trouble.last) {
        trouble.last = problem
        trouble.repeats = 0
    } else {
        trouble.repeats++
    }
    if (trouble.repeats % 10 == 0) {
        log(problem + '; waiting and trying again')
    }
}

/** The gate as it is now (GET /api/v1/gates/{id}); null when snowgate cannot say. */
Map fetchGate(Map cfg, List headers, Map gate) {
    String path = (gate.links instanceof Map && gate.links.self) ? gate.links.self.toString() : "/api/v1/gates/${gate.id}".toString()
    try {
        Map response = request(cfg, headers, 'GET', path, null, 30)
        if (response.status == 200 && response.json instanceof Map) {
            return response.json
        }
    } catch (InterruptedException e) {
        throw e
    } catch (Exception e) {
        return null
    }
    return null
}

@NonCPS
String changeNumberOf(Map gate) {
    def cr = gate?.changeRequest
    return (cr instanceof Map && cr.number) ? cr.number.toString() : null
}

@NonCPS
String changeUrlOf(Map gate) {
    def cr = gate?.changeRequest
    return (cr instanceof Map && cr.url) ? cr.url.toString() : null
}

@NonCPS
String commentsOf(Map gate) {
    def cr = gate?.changeRequest
    return (cr instanceof Map && cr.comments) ? cr.comments.toString() : null
}

/** Logs the CR number the first time it is known, as the plugin does on ServiceNow's notice. */
void noteChangeRequest(Map gate, Map seen) {
    String number = changeNumberOf(gate)
    if (number != null && number != seen.number) {
        seen.number = number
        logChangeNumber(gate)
    }
}

void logChangeNumber(Map gate) {
    String number = changeNumberOf(gate)
    if (number == null) {
        return
    }
    String url = changeUrlOf(gate)
    // Jenkins turns a URL in the console into a link.
    log('Change Request Id : ' + number + (url ? ' (' + url + ')' : ''))
    // The gate's own stage: a `stageName:` parameter may name another than STAGE_NAME.
    rememberChange((gate.stageName ?: env.STAGE_NAME) as String, number)
}

/**
 * Keeps stage → CR number for this build in env.SNOWGATE_CHANGE_REQUESTS (JSON), so that
 * snDevOpsGetChangeNumber can answer for the current or a named stage without a round trip,
 * as the plugin answers from the run's own record.
 */
void rememberChange(String stage, String number) {
    if (!stage || !number) {
        return
    }
    env.SNOWGATE_CHANGE_REQUESTS = withEntry(env.SNOWGATE_CHANGE_REQUESTS, stage, number)
}

/** Keeps stage → gate id for this build in env.SNOWGATE_GATES (JSON), for snDevOpsAttach. */
void rememberGate(String stage, String id) {
    if (!stage || !id) {
        return
    }
    env.SNOWGATE_GATES = withEntry(env.SNOWGATE_GATES, stage, id)
}

@NonCPS
String withEntry(String json, String key, String value) {
    Map m = [:]
    if (json) {
        try {
            def parsed = new groovy.json.JsonSlurper().parseText(json)
            if (parsed instanceof Map) {
                m.putAll(parsed)
            }
        } catch (Exception ignored) {
            m = [:]
        }
    }
    m[key] = value
    return groovy.json.JsonOutput.toJson(m)
}

@NonCPS
String rememberedChange(String json, String stage) {
    if (!json || !stage) {
        return null
    }
    try {
        def parsed = new groovy.json.JsonSlurper().parseText(json)
        if (!(parsed instanceof Map)) {
            return null
        }
        if (parsed[stage]) {
            return parsed[stage].toString()
        }
        // A stage named by its own name (STAGE_NAME, without the flow graph) whose gate has a
        // nested path (`Deploy/Prod`): the one remembered path ending in it.
        List matches = parsed.keySet().findAll { it.toString().endsWith('/' + stage) } as List
        return matches.size() == 1 ? parsed[matches[0]].toString() : null
    } catch (Exception ignored) {
        return null
    }
}

/**
 * Ends snDevOpsChange the way the official plugin ends its step for each outcome (SPEC §5):
 * returns for approved / resumed / not controlled / timeouts and errors that proceed, fails
 * the step with the plugin's message otherwise.
 */
Map finish(Map gate) {
    String state = gate.state?.toString()
    String comments = commentsOf(gate)
    String message = gate.message ? gate.message.toString() : ''
    boolean proceed = gate.proceed == true
    switch (state) {
        case 'approved':
            log('Job has been approved for execution')
            if (comments) {
                log('\nApproval comments:\n' + comments)
            }
            return gate
        case 'not_controlled':
            log('Job is not under change control')
            return gate
        case 'resumed':
            log('Resumed by hand in snowgate: ' + message)
            return gate
        case 'timed_out':
            // snowgate's timers (SPEC §4) end the gate here: proceed true when the timeout's
            // abort flag is false. The gate's message says which timeout ran out.
            String kind = timeoutKind(message)
            if (kind == 'creation') {
                log('Change Creation failure timeout occurred.')
            } else if (kind == 'step') {
                log('Change Step timeout occurred.')
            } else {
                log('Change control timed out.')
            }
            if (message) {
                log(message)
            }
            if (proceed) {
                log('Resuming the pipeline')
                return gate
            }
            log('Aborting the pipeline')
            if (kind == 'creation') {
                error(prefix + 'Pipeline aborted due to change creation timeout')
            } else if (kind == 'step') {
                error(prefix + 'Pipeline aborted due to change step timeout')
            } else {
                error(prefix + (message ?: 'Pipeline aborted due to a change control timeout'))
            }
            return gate
        case 'failed':
            String reason = comments ?: message ?: 'ServiceNow reported an error'
            if (proceed) {
                log(reason)
                log(changeNumberOf(gate) ? 'ServiceNow reported an error. Ignoring error' : 'Error registering the job. Ignoring error')
                return gate
            }
            log(reason)
            error(reason)
            return gate
        case 'canceled':
            log('Job was canceled')
            if (comments) {
                log('\nCancel comments:\n' + comments)
            }
            error('Canceled')
            return gate
        case 'aborted':
            log('Aborted by hand in snowgate: ' + message)
            error('Aborted in snowgate: ' + message)
            return gate
        case 'superseded':
            // A newer build of this job, branch and stage opened its gate with `supersede`.
            log('Superseded in snowgate: ' + message)
            error('Superseded by a newer build: ' + message)
            return gate
        default:
            if (proceed) {
                log("Change control ended in state ${state}: ${message}".toString())
                return gate
            }
            // rejected, and any other stop: the plugin's "not approved" path.
            log('Job was not approved for execution')
            if (comments) {
                log('\nRejection comments:\n' + comments)
            }
            error('Not approved')
            return gate
    }
}

/**
 * Which of snowgate's two timeouts ended a `timed_out` gate, read from the message its timer
 * wrote (src/workers/timers.rs):
 *   creation  "Pipeline aborted due to change creation timeout (Ns without a change request)" /
 *             "No change request within Ns; the stage continues (abortOnChangeCreationFailure: false)"
 *   step      "Pipeline aborted due to change step timeout (Ns without a decision)" /
 *             "No change decision within Ns; the stage continues (abortOnChangeStepTimeOut: false)"
 * null for any other message (then the step reports that message itself).
 */
@NonCPS
String timeoutKind(String message) {
    String m = message ? message.toLowerCase() : ''
    if (m.contains('change creation timeout') || m.contains('abortonchangecreationfailure')) {
        return 'creation'
    }
    if (m.contains('change step timeout') || m.contains('abortonchangesteptimeout')) {
        return 'step'
    }
    return null
}

// ---------------------------------------------------------------------------------------------
// Values

/** The plugin's boolean parameters: true/false, or the strings "true"/"false". */
@NonCPS
boolean flag(value, boolean dflt) {
    if (value == null) {
        return dflt
    }
    if (value instanceof Boolean) {
        return value
    }
    String s = value.toString().trim().toLowerCase()
    if (s == 'true') {
        return true
    }
    if (s == 'false') {
        return false
    }
    return dflt
}

/**
 * The plugin's numeric parameters: a number or a numeric string ("30", "30.5" → 30);
 * anything else is 0, which means "off".
 */
@NonCPS
int seconds(value) {
    if (value == null) {
        return 0
    }
    if (value instanceof Number) {
        return value < 0 ? 0 : value.intValue()
    }
    String s = value.toString().trim()
    return s ==~ /\d+(\.\d+)?/ ? (int) Float.parseFloat(s) : 0
}

@NonCPS
String trimToNull(value) {
    if (value == null) {
        return null
    }
    String s = value.toString().trim()
    return s ? s : null
}

@NonCPS
String toJson(value) {
    return groovy.json.JsonOutput.toJson(value)
}

/** Parses JSON text into plain maps and lists; throws on invalid JSON (a one-line message). */
def parseJson(String text) {
    def parsed = null
    try {
        parsed = readJSON(text: text, returnPojo: true)
    } catch (InterruptedException e) {
        throw e
    } catch (Exception e) {
        throw new IllegalArgumentException(firstLine(e.message ?: e.getClass().name))
    }
    return plain(parsed)
}

@NonCPS
String firstLine(String text) {
    String t = text.trim()
    int nl = t.indexOf('\n')
    return nl < 0 ? t : t.substring(0, nl).trim()
}

/**
 * Plain LinkedHashMap / ArrayList / null copies of what readJSON returns, whatever its version:
 * json-lib's JSONNull (truthy, and `!= null`) becomes a real null.
 */
@NonCPS
def plain(value) {
    if (value == null) {
        return null
    }
    String cls = value.getClass().name
    if (cls == 'net.sf.json.JSONNull') {
        return null
    }
    if (value instanceof Map) {
        if (cls == 'net.sf.json.JSONObject' && value.isNullObject()) {
            return null
        }
        Map copy = [:]
        for (e in value.entrySet()) {
            copy[e.key.toString()] = plain(e.value)
        }
        return copy
    }
    if (value instanceof List) {
        List copy = []
        for (v in value) {
            copy << plain(v)
        }
        return copy
    }
    return value
}

/** The entries of `from` named in `keys` whose value is set. */
@NonCPS
Map pick(Map from, List keys) {
    Map out = [:]
    for (k in keys) {
        if (from[k] != null) {
            out[k] = from[k]
        }
    }
    return out
}

/** `body` with the entries of `defaults` it lacks. */
@NonCPS
Map fillMissing(Map body, Map defaults) {
    for (e in defaults.entrySet()) {
        if (body[e.key] == null && e.value != null) {
            body[e.key] = e.value
        }
    }
    return body
}

/** A value percent-encoded for a URL path segment or query value. */
@NonCPS
String encode(value) {
    return URLEncoder.encode(value.toString(), 'UTF-8').replace('+', '%20')
}

/** `?a=1&b=2` from the non-null entries of `params`. */
@NonCPS
String query(Map params) {
    List parts = []
    for (e in params.entrySet()) {
        if (e.value != null) {
            parts << encode(e.key) + '=' + encode(e.value)
        }
    }
    return parts ? '?' + parts.join('&') : ''
}

/**
 * Jenkins' variable syntax as EnvVars.expand (hudson.Util.replaceMacro) reads it, which the
 * plugin applies to changeRequestDetails before parsing it: `$NAME` and `${NAME}` (`${a.b}` may
 * hold dots), `$$` for a literal `$`; a variable that is not set stays as written.
 */
@NonCPS
java.util.regex.Pattern macroPattern() {
    return java.util.regex.Pattern.compile('\\$([A-Za-z0-9_]+|\\{[A-Za-z0-9_.]+\\}|\\$)')
}

/** The variable names `text` refers to. */
@NonCPS
List envReferences(String text) {
    List names = []
    if (text == null) {
        return names
    }
    def m = macroPattern().matcher(text)
    while (m.find()) {
        String key = m.group().substring(1)
        if (key.startsWith('$')) {
            continue
        }
        if (key.startsWith('{')) {
            key = key.substring(1, key.length() - 1)
        }
        if (!names.contains(key)) {
            names << key
        }
    }
    return names
}

/** hudson.Util.replaceMacro with `values` as the resolver (a missing or null value: left as is). */
@NonCPS
String expandReferences(String text, Map values) {
    if (text == null) {
        return null
    }
    String s = text
    int idx = 0
    while (true) {
        def m = macroPattern().matcher(s)
        if (!m.find(idx)) {
            return s
        }
        String key = m.group().substring(1)
        String value
        if (key.startsWith('$')) {
            value = '$'
        } else {
            if (key.startsWith('{')) {
                key = key.substring(1, key.length() - 1)
            }
            value = values[key] == null ? null : values[key].toString()
        }
        if (value == null) {
            idx = m.end()
        } else {
            s = s.substring(0, m.start()) + value + s.substring(m.end())
            idx = m.start() + value.length()
        }
    }
}

/** The build environment's values for `names` (env lookups are case-insensitive, as EnvVars). */
Map envValues(List names) {
    Map values = [:]
    for (int i = 0; i < names.size(); i++) {
        String name = names[i]
        values[name] = env."${name}"
    }
    return values
}

/** A string with `$NAME` / `${NAME}` expanded from the build's environment, as the plugin does. */
String expandEnv(String text) {
    return expandReferences(text, envValues(envReferences(text)))
}

/** Every string in a Map/List tree (the Map form of changeRequestDetails), expanded the same way. */
def expandEnvDeep(value) {
    return expandDeep(value, envValues(referencesDeep(value, [])))
}

@NonCPS
List referencesDeep(value, List names) {
    if (value instanceof String || value instanceof GString) {
        for (n in envReferences(value.toString())) {
            if (!names.contains(n)) {
                names << n
            }
        }
    } else if (value instanceof Map) {
        for (e in value.entrySet()) {
            referencesDeep(e.value, names)
        }
    } else if (value instanceof List) {
        for (v in value) {
            referencesDeep(v, names)
        }
    }
    return names
}

@NonCPS
def expandDeep(value, Map values) {
    if (value instanceof String || value instanceof GString) {
        return expandReferences(value.toString(), values)
    }
    if (value instanceof Map) {
        Map copy = [:]
        for (e in value.entrySet()) {
            copy[e.key.toString()] = expandDeep(e.value, values)
        }
        return copy
    }
    if (value instanceof List) {
        List copy = []
        for (v in value) {
            copy << expandDeep(v, values)
        }
        return copy
    }
    return value
}

// ---------------------------------------------------------------------------------------------
// The end of a stage run by snDevOpsChange's closure form

/**
 * Records the stage's end on its gate: POST /api/v1/gates/{id}/complete {"result": success|failure}
 * (in change mode snowgate writes the work note and moves a standard change on; in DevOps mode it
 * is recorded). Connection errors and 5xx are tried three times. Logs the outcome and never fails
 * the build for it: the deployment already happened. Returns true when snowgate recorded it.
 */
boolean completeGate(Map args, Map gate, String result) {
    Map cfg = settings(args)
    String self = (gate.links instanceof Map && gate.links.self) ? gate.links.self.toString() : "/api/v1/gates/${gate.id}".toString()
    String problem = null
    int attempts = 3
    for (int attempt = 1; attempt <= attempts; attempt++) {
        Map response = null
        try {
            response = withAuth(cfg) { List headers ->
                return request(cfg, headers, 'POST', self + '/complete', [result: result], 60)
            }
        } catch (InterruptedException e) {
            throw e
        } catch (Exception e) {
            problem = "snowgate is not reachable at ${cfg.url}: ${e.message ?: e.getClass().name}".toString()
        }
        if (response != null) {
            if (response.status == 200) {
                log("Stage result reported to snowgate: ${result}".toString())
                return true
            }
            problem = describe(response)
            if (!isTransient(response.status)) {
                break
            }
        }
        if (attempt < attempts) {
            sleep(time: 5 * attempt, unit: 'SECONDS')
        }
    }
    log("Could not report the stage result (${result}) to snowgate: ${problem}".toString())
    return false
}

// ---------------------------------------------------------------------------------------------
// Artifact and package registration (snDevOpsArtifact, snDevOpsPackage)

/**
 * The body for POST /api/v1/artifacts or /api/v1/packages: the plugin's artifactsPayload
 * (`${VAR}` expanded from the build's environment) with this build's identity filled in where
 * the payload leaves it out — ServiceNow's field names (pipelineName, taskExecutionNumber,
 * stageName, branchName) plus jobUrl / buildUrl for snowgate.
 * Returns [body: Map] or [problem: String].
 */
Map registrationBody(Map args, String payloadText) {
    String text = trimToNull(payloadText)
    if (text == null) {
        return [problem: 'artifactsPayload is empty']
    }
    def parsed = null
    try {
        parsed = parseJson(expandEnv(text))
    } catch (InterruptedException e) {
        throw e
    } catch (Exception e) {
        return [problem: 'artifactsPayload is not valid JSON: ' + (e.message ?: e.getClass().name)]
    }
    Map body = [:]
    if (parsed instanceof List) {
        body.artifacts = parsed // snDevOpsPackage's list form
    } else if (parsed instanceof Map) {
        body.putAll(parsed)
    } else {
        return [problem: 'artifactsPayload must be a JSON object with "artifacts"']
    }
    if (!(body.artifacts instanceof List) || body.artifacts.isEmpty()) {
        return [problem: 'artifactsPayload needs at least one entry in "artifacts"']
    }
    Map id = identity(args)
    Map defaults = [
        pipelineName: id.pipelineName,
        taskExecutionNumber: id.buildNumber,
        stageName: id.stageName,
        branchName: id.branchName,
        jobUrl: id.jobUrl,
        buildUrl: id.buildUrl,
    ]
    return [body: fillMissing(body, defaults)]
}

/** POSTs a registration; returns null on success, else what went wrong. */
String register(Map args, String path, Map body) {
    Map cfg = settings(args)
    if (cfg.url == null) {
        return 'snowgate is not configured: set SNOWGATE_URL in the environment or pass snowgateUrl:'
    }
    Map response = null
    try {
        response = withAuth(cfg) { List headers ->
            return request(cfg, headers, 'POST', path, body, 60)
        }
    } catch (InterruptedException e) {
        throw e
    } catch (Exception e) {
        return "snowgate is not reachable at ${cfg.url}: ${e.message ?: e.getClass().name}".toString()
    }
    if (response.status >= 200 && response.status < 300) {
        def json = response.json
        def status = (json instanceof Map && json.result instanceof Map) ? json.result.status : (json instanceof Map ? json.status : null)
        if (status == null || status.toString().equalsIgnoreCase('success')) {
            return null
        }
        return "ServiceNow answered status ${status}: ${response.text}".toString()
    }
    return describe(response)
}
