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
 * The gate fields that name this stage, from the build's environment (parameters of the same
 * name override): jobUrl, buildNumber, buildUrl, stageName, parentStageName, branchName +
 * isMultiBranch, triggerType (+ upstreamTaskExecutionUrl), and pipelineName (JOB_NAME).
 */
Map identity(Map args) {
    Map id = [
        jobUrl: trimToNull(args.jobUrl) ?: trimToNull(env.JOB_URL),
        buildNumber: trimToNull(args.buildNumber) ?: trimToNull(env.BUILD_NUMBER),
        buildUrl: trimToNull(args.buildUrl) ?: trimToNull(env.BUILD_URL),
        stageName: trimToNull(args.stageName) ?: trimToNull(env.STAGE_NAME),
        pipelineName: trimToNull(args.pipelineName) ?: trimToNull(env.JOB_NAME),
    ]
    String parent = trimToNull(args.parentStageName)
    if (parent != null) {
        id.parentStageName = parent
    }
    // BRANCH_NAME is only set in multibranch projects (SPEC §2: isMultiBranch, raw branch name).
    String branch = trimToNull(args.branchName) ?: trimToNull(env.BRANCH_NAME)
    if (branch != null) {
        id.branchName = branch
        id.isMultiBranch = true
    }
    Map trigger = triggerOf(env.JENKINS_URL)
    id.triggerType = trigger.type
    if (trigger.upstreamUrl != null) {
        id.upstreamTaskExecutionUrl = trigger.upstreamUrl
    }
    return id
}

/** user | scm | upstream, from the build's causes; `user` when they cannot be read. */
Map triggerOf(String jenkinsUrl) {
    def causes = null
    try {
        causes = currentBuild.getBuildCauses()
    } catch (InterruptedException e) {
        throw e
    } catch (Exception e) {
        return [type: 'user']
    }
    return classifyCauses(plain(causes), jenkinsUrl)
}

@NonCPS
Map classifyCauses(causes, String jenkinsUrl) {
    if (!(causes instanceof List)) {
        return [type: 'user']
    }
    for (c in causes) {
        String cls = (c instanceof Map) ? String.valueOf(c._class) : ''
        if (cls.endsWith('UpstreamCause') && c.upstreamUrl && c.upstreamBuild != null && jenkinsUrl) {
            String base = jenkinsUrl.endsWith('/') ? jenkinsUrl : jenkinsUrl + '/'
            return [type: 'upstream', upstreamUrl: base + c.upstreamUrl + c.upstreamBuild + '/']
        }
    }
    for (c in causes) {
        String cls = (c instanceof Map) ? String.valueOf(c._class) : ''
        if (cls.contains('SCM') || cls.contains('Branch') || cls.contains('Push') || cls.contains('PullRequest')) {
            return [type: 'scm']
        }
    }
    return [type: 'user']
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
        return (parsed instanceof Map && parsed[stage]) ? parsed[stage].toString() : null
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

/** The `${NAME}` references in a payload, which the plugin expands from the build's environment. */
@NonCPS
List envReferences(String text) {
    List names = []
    def m = text =~ /\$\{([A-Za-z_][A-Za-z0-9_]*)\}/
    while (m.find()) {
        if (!names.contains(m.group(1))) {
            names << m.group(1)
        }
    }
    return names
}

@NonCPS
String expandReferences(String text, Map values) {
    String out = text
    for (e in values.entrySet()) {
        if (e.value != null) {
            out = out.replace('${' + e.key + '}', e.value.toString())
        }
    }
    return out
}

/** A payload string with `${NAME}` replaced by env.NAME where set (the plugin's expansion). */
String expandEnv(String text) {
    List names = envReferences(text)
    Map values = [:]
    for (int i = 0; i < names.size(); i++) {
        String name = names[i]
        values[name] = env."${name}"
    }
    return expandReferences(text, values)
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
