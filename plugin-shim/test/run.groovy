// Runs the shim's vars/*.groovy under plain Groovy (2.4, Debian package `groovy`) with the
// Jenkins steps they use stubbed, against a real snowgate. Driven by tests/api/shim.rs.
//
//   SHIM_SCENARIO=approve SNOWGATE_URL=http://127.0.0.1:8080 SHIM_CREDENTIAL=<pipeline token> \
//   JOB_URL=… JOB_NAME=… BUILD_NUMBER=… BUILD_URL=… STAGE_NAME=… groovy plugin-shim/test/run.groovy
//
// The scenario is plugin-shim/test/scenarios/<SHIM_SCENARIO>.groovy, a piece of scripted
// Jenkinsfile. The process environment (less SHIM_*) is the build's `env`; SHIM_CREDENTIAL is
// the "Secret text" credential `snowgate-pipeline-token`. SHIM_FLAKY_WAITS=N makes the first N
// long-poll rounds fail (odd: connection refused, even: HTTP 503) before reaching snowgate.
// SHIM_SANDBOX=1 runs the library as an untrusted (sandboxed) one would: reading the flow graph
// is rejected as the script sandbox rejects an unapproved signature.
//
// Stubs, as close to Jenkins as a test needs:
//   httpRequest     real HTTP (HttpURLConnection); url, httpMode, contentType, acceptType,
//                   customHeaders, requestBody, timeout, validResponseCodes; unknown parameters
//                   are an error, and so are a missing timeout and a body that is not sent as
//                   APPLICATION_JSON_UTF8 (the shim's own rules). Returns .status and .content.
//   readJSON        text: → JsonSlurper (returnPojo accepted)
//   readFile        file: under SHIM_WORKSPACE, as text or encoding: 'Base64'
//   waitUntil       loops the closure (short back-off)
//   input           recorded; its answer is read from stdin: the test relays what snowgate
//                   posted to the Jenkins fake (proceedEmpty → returns, abort → throws
//                   FlowInterruptedException, as Jenkins does)
//   error           throws AbortException(message)
//   echo            prints to stdout (credentials masked as ****)
//   env             a map; withCredentials/string bind a variable in it for the block
//   sleep           time:/unit:, at most one second here
//   currentBuild    getBuildCauses() → [] (SHIM_BUILD_CAUSES: a JSON list)
//   stage, parallel run their bodies (parallel branches one after the other) and build a flow
//                   graph as Jenkins does: a `stage` StepStartNode with a LabelAction, a parallel
//                   branch with a ThreadNameAction; STAGE_NAME is set inside a stage. Flow node
//                   ids count up from 2 like Jenkins' (every stage start and end, parallel block,
//                   branch and getContext call takes one); `[harness] flow node <id>: stage <path>`
//                   is logged for every stage.
//   getContext      getContext(FlowNode): a new atom node inside the current blocks, whose
//                   getEnclosingBlocks() and getExecution().getNode(id) answer from that graph
//                   (stub classes with the real names: FlowNode, BlockStartNode, StepStartNode,
//                   LabelAction, StageAction, ThreadNameAction; RejectedAccessException when
//                   SHIM_SANDBOX is set)
//
// For scenarios to assert what the steps sent: harnessSent(method, urlEnd) → the JSON bodies
// sent to URLs ending so, oldest first; harnessNodeId(stagePath) → the flow node id of a stage.
//
// Output ends with `SHIM-HTTP-CALLS: n` and `SHIM-RESULT: SUCCESS` (exit 0),
// `SHIM-RESULT: FAILURE: <error message>` (exit 1, the step failed the stage) or
// `SHIM-RESULT: CRASH: <exception>` (exit 2, a bug in the shim or the harness).

import groovy.json.JsonSlurper
import org.codehaus.groovy.control.CompilerConfiguration
import org.codehaus.groovy.control.customizers.ImportCustomizer

/** What Jenkins' `error` step throws. */
class AbortException extends IOException {
    AbortException(String message) { super(message) }
}

/** What an aborted `input` (or build) throws in Jenkins: an InterruptedException. */
class FlowInterruptedException extends InterruptedException {
    FlowInterruptedException(String message) { super(message) }
}

/** httpRequest's answer (the plugin's ResponseContentSupplier: .status, .content). */
class StubResponse implements Serializable {
    int status
    String content
}

class StubBuild {
    List getBuildCauses() {
        String causes = System.getenv('SHIM_BUILD_CAUSES')
        return causes ? (List) new JsonSlurper().parseText(causes) : []
    }
}

/** The state of one stubbed build. */
class Ctx {
    /** The build's environment: case-insensitive, as Jenkins' EnvVars. */
    static Map env = new TreeMap(String.CASE_INSENSITIVE_ORDER)
    /** The flow graph (a shimharness.FlowGraph, compiled with the stub classes below). */
    static def graph = null
    static Map credentials = [:]
    static List<Map> httpCalls = []
    static List<Map> inputs = []
    static BufferedReader stdin = new BufferedReader(new InputStreamReader(System.in, 'UTF-8'))
    static int flakyWaits = 0
    static int flakyCount = 0

    static void out(String line) {
        String masked = line
        for (secret in credentials.values()) {
            if (secret) {
                masked = masked.replace(secret.toString(), '****')
            }
        }
        System.out.println(masked)
        System.out.flush()
    }
}

/** The base class of every vars script and scenario: the Jenkins steps the shim uses. */
abstract class JenkinsStubs extends Script {
    static final Set HTTP_PARAMETERS = [
        'url', 'httpMode', 'contentType', 'acceptType', 'customHeaders', 'requestBody', 'timeout',
        'validResponseCodes', 'validResponseContent', 'consoleLogResponseBody', 'quiet',
        'ignoreSslErrors', 'authentication', 'httpProxy', 'outputFile', 'responseHandle',
        'wrapAsMultipart', 'useSystemProperties', 'uploadFile', 'multipartName', 'formData',
    ] as Set

    Map getEnv() { Ctx.env }

    def getCurrentBuild() { new StubBuild() }

    void echo(Object message) {
        Ctx.out(String.valueOf(message))
    }

    void error(Object message) {
        throw new AbortException(String.valueOf(message))
    }

    /** readFile: a file under SHIM_WORKSPACE (default: the current directory), as text or
     *  `encoding: 'Base64'` as Jenkins' readFile step gives it. */
    def readFile(Map params) {
        Set unknown = params.keySet().findAll { !(it in ['file', 'encoding']) }
        if (unknown || !params.file) {
            throw new IllegalArgumentException("readFile: file: (and encoding:) only, got ${params.keySet()}")
        }
        File f = new File(System.getenv('SHIM_WORKSPACE') ?: '.', params.file.toString())
        if (!f.isFile()) {
            throw new java.nio.file.NoSuchFileException(f.path)
        }
        byte[] bytes = f.bytes
        return params.encoding == 'Base64' ? bytes.encodeBase64().toString() : new String(bytes, 'UTF-8')
    }

    def readJSON(Map params) {
        if (params.text == null) {
            throw new IllegalArgumentException('readJSON: only text: is stubbed')
        }
        return new JsonSlurper().parseText(params.text.toString())
    }

    def waitUntil(Closure body) { waitUntil([:], body) }

    def waitUntil(Map options, Closure body) {
        long delay = 100
        while (!body.call()) {
            Thread.sleep(delay)
            delay = Math.min(1000L, (long) (delay * 1.5))
        }
        return null
    }

    void sleep(Map params) {
        long secs = params.time == null ? 0 : params.time as long
        long millis = String.valueOf(params.unit ?: 'SECONDS') == 'MILLISECONDS' ? secs : secs * 1000
        Thread.sleep(Math.min(millis, 1000L))
    }

    Map string(Map params) {
        return [kind: 'string'] + params
    }

    def withCredentials(List bindings, Closure body) {
        Map saved = [:]
        for (Map b in bindings) {
            def secret = Ctx.credentials[b.credentialsId]
            if (secret == null) {
                throw new AbortException("Could not find credentials entry with ID '${b.credentialsId}'")
            }
            saved[b.variable] = Ctx.env[b.variable]
            Ctx.env[b.variable] = secret
        }
        try {
            return body.call()
        } finally {
            saved.each { k, v -> if (v == null) { Ctx.env.remove(k) } else { Ctx.env[k] = v } }
        }
    }

    def input(Map params) {
        Ctx.inputs << params
        Ctx.out("[harness] input id=${params.id} message=${params.message}")
        // The answer snowgate gave this input on the Jenkins fake, relayed by the Rust test.
        String answer = Ctx.stdin.readLine()
        Ctx.out("[harness] input answered: ${answer}")
        switch (answer) {
            case 'proceedEmpty':
            case 'proceed':
                return null
            case 'abort':
                throw new FlowInterruptedException('Rejected')
            default:
                throw new IllegalStateException("input ${params.id}: no answer on stdin (got ${answer})")
        }
    }

    def httpRequest(Map params) {
        Set unknown = params.keySet().findAll { !HTTP_PARAMETERS.contains(it) }
        if (unknown) {
            throw new IllegalArgumentException("httpRequest: unknown parameter(s) ${unknown}")
        }
        if (!params.url) {
            throw new IllegalArgumentException('httpRequest: url is required')
        }
        if (!(params.timeout instanceof Integer) || params.timeout <= 0) {
            throw new IllegalArgumentException("httpRequest to ${params.url} without an explicit timeout (seconds)")
        }
        String method = (params.httpMode ?: 'GET').toString()
        if (params.requestBody != null && params.contentType != 'APPLICATION_JSON_UTF8') {
            throw new IllegalArgumentException("httpRequest ${method} ${params.url}: body sent as ${params.contentType}, not APPLICATION_JSON_UTF8")
        }
        String url = params.url.toString()
        Ctx.httpCalls << [method: method, url: url, timeout: params.timeout, contentType: params.contentType,
                          body: params.requestBody?.toString()]
        Ctx.out("[harness] httpRequest ${method} ${url} timeout=${params.timeout}")

        if (url.contains('/wait') && Ctx.flakyCount < Ctx.flakyWaits) {
            Ctx.flakyCount++
            if (Ctx.flakyCount % 2 == 1) {
                throw new ConnectException('Connection refused (simulated by the test harness)')
            }
            return accepted(params, new StubResponse(status: 503,
                content: '{"error":{"code":"unavailable","message":"simulated by the test harness"}}'))
        }

        HttpURLConnection conn = (HttpURLConnection) new URL(url).openConnection()
        conn.requestMethod = method
        conn.connectTimeout = params.timeout * 1000
        conn.readTimeout = params.timeout * 1000
        conn.instanceFollowRedirects = false
        if (params.acceptType == 'APPLICATION_JSON') {
            conn.setRequestProperty('Accept', 'application/json')
        }
        for (Map h in (params.customHeaders ?: [])) {
            conn.setRequestProperty(h.name.toString(), h.value.toString())
        }
        if (params.requestBody != null) {
            conn.doOutput = true
            conn.setRequestProperty('Content-Type', 'application/json; charset=UTF-8')
            conn.outputStream.withStream { it.write(params.requestBody.toString().getBytes('UTF-8')) }
        }
        int status = conn.responseCode
        InputStream stream = status >= 400 ? conn.errorStream : conn.inputStream
        String content = stream == null ? '' : stream.getText('UTF-8')
        Ctx.out("[harness]   → HTTP ${status}")
        return accepted(params, new StubResponse(status: status, content: content))
    }

    /** validResponseCodes as the HTTP Request plugin reads it (default 100:399). */
    static StubResponse accepted(Map params, StubResponse response) {
        String codes = (params.validResponseCodes ?: '100:399').toString()
        boolean ok = codes.split(',').any { String range ->
            String[] ends = range.trim().split(':')
            int from = ends[0].trim() as int
            int to = (ends.length > 1 ? ends[1] : ends[0]).trim() as int
            response.status >= from && response.status <= to
        }
        if (!ok) {
            throw new AbortException("Fail: Status code ${response.status} is not in the accepted range: ${codes}")
        }
        return response
    }

    def stage(String name, Closure body) {
        String id = Ctx.graph.startStage(name)
        Ctx.out("[harness] flow node ${id}: stage ${Ctx.graph.currentStagePath()}")
        def saved = Ctx.env['STAGE_NAME']
        Ctx.env['STAGE_NAME'] = name
        try {
            return body.call()
        } finally {
            if (saved == null) {
                Ctx.env.remove('STAGE_NAME')
            } else {
                Ctx.env['STAGE_NAME'] = saved
            }
            Ctx.graph.endBlock()
        }
    }

    /** Jenkins runs the branches concurrently; here they run one after the other. */
    def parallel(Map branches) {
        Ctx.graph.startParallel()
        try {
            branches.each { name, body ->
                if (body instanceof Closure) {
                    Ctx.graph.startBranch(name.toString())
                    try {
                        body.call()
                    } finally {
                        Ctx.graph.endBlock()
                    }
                }
            }
        } finally {
            Ctx.graph.endBlock()
        }
        return null
    }

    def getContext(Class type) {
        if (type.name == 'org.jenkinsci.plugins.workflow.graph.FlowNode') {
            return Ctx.graph.atom('getContext')
        }
        throw new IllegalArgumentException("getContext(${type.name}) is not stubbed")
    }

    /** The JSON bodies the steps sent with `method` to a URL ending in `urlEnd`, oldest first. */
    List harnessSent(String method, String urlEnd) {
        return Ctx.httpCalls.findAll { it.method == method && it.url.endsWith(urlEnd) && it.body != null }
            .collect { new JsonSlurper().parseText(it.body) }
    }

    /** The flow node id of the stage at `stagePath` (`Deploy/Prod`), null when none ran. */
    String harnessNodeId(String stagePath) {
        return Ctx.graph.stageIds[stagePath]
    }

    /** A vars script called like a step: `snDevOpsChange(…)` runs its `call`. */
    def methodMissing(String name, args) {
        def target = binding.hasVariable(name) ? binding.getVariable(name) : null
        if (target instanceof Script) {
            return target.invokeMethod('call', args)
        }
        throw new MissingMethodException(name, getClass(), args as Object[])
    }
}

// ---------------------------------------------------------------------------------------------

File testDir = new File(getClass().protectionDomain.codeSource.location.toURI()).parentFile
File shimDir = testDir.parentFile
String scenario = System.getenv('SHIM_SCENARIO')
if (!scenario) {
    System.err.println('SHIM_SCENARIO is not set; scenarios: ' + new File(testDir, 'scenarios').list().sort().join(', '))
    System.exit(2)
}
File scenarioFile = new File(testDir, "scenarios/${scenario}.groovy")
if (!scenarioFile.isFile()) {
    System.err.println("no scenario ${scenarioFile}")
    System.exit(2)
}

System.getenv().each { k, v ->
    if (!k.startsWith('SHIM_')) {
        Ctx.env[k] = v
    }
}
if (System.getenv('SHIM_CREDENTIAL')) {
    Ctx.credentials['snowgate-pipeline-token'] = System.getenv('SHIM_CREDENTIAL')
}
Ctx.flakyWaits = (System.getenv('SHIM_FLAKY_WAITS') ?: '0') as int

// Jenkins compiles pipeline code with com.cloudbees.groovy.cps.NonCPS imported by default.
def loader = new GroovyClassLoader(this.class.classLoader)
loader.parseClass('''package com.cloudbees.groovy.cps
import java.lang.annotation.*
@Retention(RetentionPolicy.RUNTIME)
@Target([ElementType.METHOD, ElementType.CONSTRUCTOR])
@interface NonCPS {}
''')
// Stubs of the Jenkins classes the library reads the flow graph with, under their real names
// (only the methods it uses), and the graph the stubbed `stage`/`parallel`/`getContext` build.
loader.parseClass('''package org.jenkinsci.plugins.scriptsecurity.sandbox
class RejectedAccessException extends SecurityException {
    RejectedAccessException(String message) { super(message) }
}
''')
loader.parseClass('''package org.jenkinsci.plugins.workflow.actions
interface StageAction { String getStageName() }
interface ThreadNameAction { String getThreadName() }
class LabelAction {
    private final String label
    LabelAction(String label) { this.label = label }
    String getDisplayName() { return label }
}
''')
loader.parseClass('''package org.jenkinsci.plugins.workflow.graph
abstract class FlowNode {
    /** SHIM_SANDBOX: what the script sandbox says to a library nobody approved. */
    static boolean sandboxed = false
    String id
    def execution
    List actions = []
    /** Innermost first, as FlowNode.getEnclosingBlocks() answers. */
    List enclosing = []
    String getId() { return id }
    List getEnclosingBlocks() { deny('getEnclosingBlocks'); return enclosing }
    def getExecution() { deny('getExecution'); return execution }
    def getAction(Class type) { return actions.find { type.isInstance(it) } }
    String getDisplayName() { return 'node ' + id }
    protected static void deny(String method) {
        if (sandboxed) {
            throw new org.jenkinsci.plugins.scriptsecurity.sandbox.RejectedAccessException(
                'Scripts not permitted to use method org.jenkinsci.plugins.workflow.graph.FlowNode ' + method)
        }
    }
}
abstract class BlockStartNode extends FlowNode {}
''')
loader.parseClass('''package org.jenkinsci.plugins.workflow.cps.nodes
import org.jenkinsci.plugins.workflow.graph.BlockStartNode
import org.jenkinsci.plugins.workflow.graph.FlowNode
class StepStartNode extends BlockStartNode {
    String stepName
    boolean body
    String getStepName() { return stepName }
    boolean isBody() { return body }
}
class StepEndNode extends FlowNode {
    def startNode
}
class StepAtomNode extends FlowNode {
    String stepName
}
''')
loader.parseClass('''package shimharness
import org.jenkinsci.plugins.workflow.actions.LabelAction
import org.jenkinsci.plugins.workflow.actions.ThreadNameAction
import org.jenkinsci.plugins.workflow.cps.nodes.StepAtomNode
import org.jenkinsci.plugins.workflow.cps.nodes.StepEndNode
import org.jenkinsci.plugins.workflow.cps.nodes.StepStartNode
import org.jenkinsci.plugins.workflow.graph.FlowNode

/** A parallel branch's label: "Branch: EU", thread EU (ParallelStepExecution.ParallelLabelAction). */
class ParallelLabelAction extends LabelAction implements ThreadNameAction {
    private final String thread
    ParallelLabelAction(String thread) { super('Branch: ' + thread); this.thread = thread }
    String getThreadName() { return thread }
}

class StubExecution {
    Map nodes = [:]
    FlowNode getNode(String id) throws IOException { return nodes[id] }
}

class FlowGraph {
    int nextId = 2
    StubExecution execution = new StubExecution()
    /** The open blocks, outermost first. */
    List blocks = []
    List stageNames = []
    Map stageIds = [:]

    FlowGraph() {
        add(new StepAtomNode(stepName: 'flowStart')) // FlowStartNode, id 2 as in Jenkins
    }

    private FlowNode add(FlowNode n) {
        n.id = String.valueOf(nextId++)
        n.execution = execution
        n.enclosing = blocks.reverse()
        execution.nodes[n.id] = n
        return n
    }

    String currentStagePath() { return stageNames.join('/') }

    String startStage(String name) {
        FlowNode n = add(new StepStartNode(stepName: 'stage'))
        n.actions << new LabelAction(name)
        blocks << n
        stageNames << name
        stageIds[currentStagePath()] = n.id
        return n.id
    }

    void startParallel() {
        blocks << add(new StepStartNode(stepName: 'parallel'))
    }

    void startBranch(String name) {
        FlowNode n = add(new StepStartNode(stepName: 'parallel', body: true))
        n.actions << new ParallelLabelAction(name)
        blocks << n
    }

    void endBlock() {
        def start = blocks.remove(blocks.size() - 1)
        if (start.stepName == 'stage' && !start.body) {
            stageNames.remove(stageNames.size() - 1)
        }
        add(new StepEndNode(startNode: start))
    }

    FlowNode atom(String step) {
        return add(new StepAtomNode(stepName: step))
    }
}
''')
Ctx.graph = loader.loadClass('shimharness.FlowGraph').newInstance()
loader.loadClass('org.jenkinsci.plugins.workflow.graph.FlowNode').sandboxed = System.getenv('SHIM_SANDBOX') == '1'

def config = new CompilerConfiguration()
config.scriptBaseClass = JenkinsStubs.name
config.addCompilationCustomizers(new ImportCustomizer().addImports('com.cloudbees.groovy.cps.NonCPS'))
def binding = new Binding()
def shell = new GroovyShell(loader, binding, config)

int code
try {
    // Every global variable of the library, as Jenkins offers them to a Jenkinsfile.
    new File(shimDir, 'vars').listFiles().findAll { it.name.endsWith('.groovy') }.sort { it.name }.each { File f ->
        String name = f.name - '.groovy'
        Script var = shell.parse(f.getText('UTF-8'), name)
        var.binding = binding
        binding.setVariable(name, var)
    }
    Script main = shell.parse(scenarioFile.getText('UTF-8'), 'Jenkinsfile')
    main.binding = binding
    main.run()
    Ctx.out("SHIM-HTTP-CALLS: ${Ctx.httpCalls.size()}")
    Ctx.out('SHIM-RESULT: SUCCESS')
    code = 0
} catch (AbortException e) {
    Ctx.out("SHIM-HTTP-CALLS: ${Ctx.httpCalls.size()}")
    Ctx.out("SHIM-RESULT: FAILURE: ${e.message}")
    code = 1
} catch (Throwable t) {
    t.printStackTrace()
    Ctx.out("SHIM-HTTP-CALLS: ${Ctx.httpCalls.size()}")
    Ctx.out("SHIM-RESULT: CRASH: ${t}")
    code = 2
}
System.exit(code)
