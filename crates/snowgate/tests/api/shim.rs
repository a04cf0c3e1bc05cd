//! The plugin-shim shared library (`plugin-shim/vars/*.groovy`) run under plain Groovy with the
//! Jenkins steps it uses stubbed (`plugin-shim/test/run.groovy`), against the real app and the
//! ServiceNow simulator. Each test starts one Groovy process running one scenario
//! (`plugin-shim/test/scenarios/<name>.groovy`) and decides the change request in the simulator
//! while the step waits (or lets the simulator approve every change by itself, for scenarios
//! with several gates). In input mode snowgate answers the `input` on the Jenkins fake, and
//! the test hands that answer to the stubbed `input` step (on its stdin). Scenarios that wrap
//! their steps in `stage`/`parallel` get a stub flow graph (node ids in the log); they assert
//! the bodies the steps sent, and the tests here what reached ServiceNow.
//!
//! Groovy is a system dependency: `scripts/test.sh` installs it. A missing `groovy` fails these
//! tests (they are never skipped).

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::json;
use servicenow_sim::SimSettings;
use snowgate::api::{GateList, GateView};
use snowgate::configuration::GateMode;
use snowgate::configuration::{JenkinsSettings, Secret};
use snowgate::domain::GateState;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdin, Command};
use tokio::task::JoinHandle;

use crate::helpers::*;
use crate::jenkins_fake::JenkinsFake;

const JOB_URL: &str = "https://ci.example.com/job/shop/job/app/";
const JOB_NAME: &str = "shop/app";
const BUILD_NUMBER: &str = "7";
const BUILD_URL: &str = "https://ci.example.com/job/shop/job/app/7/";
/// The build on the Jenkins fake (snowgate rewrites `https://ci.example.com/` onto it).
const BUILD_PATH: &str = "/job/shop/job/app/7/";

/// How long a scenario may run. Generous: a JVM start on a busy 2-core machine can take
/// seconds, and these tests must never fail on timing.
const SCENARIO_BOUND: Duration = Duration::from_secs(300);
/// How long the test waits for the shim to open its gate and ServiceNow to name the CR.
const CHANGE_BOUND: Duration = Duration::from_secs(180);

/// `groovy` on PATH, or a failure that says how to get it (never a skip).
fn groovy() -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("groovy"))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "`groovy` is not on PATH. The plugin-shim tests run the Jenkins shared library under \
             Groovy: run `bash scripts/test.sh`, which installs the Debian package `groovy` \
             (or `apt-get install -y --no-install-recommends groovy`)."
        )
    })
}

/// A JDK for Groovy: JAVA_HOME when it holds `bin/java`, else one under /usr/lib/jvm (Debian's
/// `groovy` script looks for /usr/lib/jvm/default-java, which a JDK-only machine lacks).
/// Debian's Groovy 2.4 runs on the JDK 17 Debian ships; 17 comes first, then 21 and 11.
fn java_home() -> Option<PathBuf> {
    let has_java = |p: &Path| p.join("bin/java").is_file();
    if let Some(home) = std::env::var_os("JAVA_HOME").map(PathBuf::from) {
        if has_java(&home) {
            return Some(home);
        }
    }
    let mut jdks: Vec<PathBuf> = std::fs::read_dir("/usr/lib/jvm")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| has_java(p))
        .collect();
    let rank = |p: &PathBuf| {
        let name = p
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        ["-17-", "-21-", "-11-"]
            .iter()
            .position(|v| name.contains(v))
            .unwrap_or(3)
    };
    jdks.sort_by_key(|p| (rank(p), p.clone()));
    jdks.into_iter().next()
}

fn read_all(mut stream: impl AsyncRead + Unpin + Send + 'static) -> JoinHandle<String> {
    tokio::spawn(async move {
        let mut buf = Vec::new();
        let _ = stream.read_to_end(&mut buf).await;
        String::from_utf8_lossy(&buf).into_owned()
    })
}

/// One Groovy process running one scenario.
struct Shim {
    scenario: String,
    child: Child,
    /// Where the test relays the answer of the scenario's `input` step.
    stdin: Option<ChildStdin>,
    stdout: Option<JoinHandle<String>>,
    stderr: Option<JoinHandle<String>>,
}

/// What a finished scenario printed, and how it exited (0 passed, 1 the step failed the stage,
/// 2 the harness or the shim crashed).
struct ShimRun {
    scenario: String,
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl fmt::Display for ShimRun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "scenario {} exited with {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.scenario, self.code, self.stdout, self.stderr
        )
    }
}

impl ShimRun {
    fn assert_logged(&self, text: &str) {
        assert!(self.stdout.contains(text), "expected {text:?} in\n{self}");
    }

    fn assert_not_logged(&self, text: &str) {
        assert!(
            !self.stdout.contains(text),
            "did not expect {text:?} in\n{self}"
        );
    }

    /// Each of `texts` is logged, in this order (each after the end of the one before).
    fn assert_logged_in_order(&self, texts: &[&str]) {
        let mut from = 0;
        for text in texts {
            match self.stdout[from..].find(text) {
                Some(at) => from += at + text.len(),
                None => {
                    panic!("expected {text:?} after the lines before it in {texts:?} in\n{self}")
                }
            }
        }
    }

    fn assert_passed(&self) {
        assert_eq!(self.code, Some(0), "{self}");
        self.assert_logged("SHIM-RESULT: SUCCESS");
    }

    /// The step failed the stage (`error`) with a message starting with `message`.
    fn assert_failed_with(&self, message: &str) {
        assert_eq!(self.code, Some(1), "{self}");
        self.assert_logged(&format!("SHIM-RESULT: FAILURE: {message}"));
    }

    /// The flow node id the harness gave the stage at `path` (its `[harness] flow node <id>:
    /// stage <path>` line).
    fn node_id(&self, path: &str) -> String {
        let suffix = format!(": stage {path}");
        self.stdout
            .lines()
            .filter_map(|line| line.strip_prefix("[harness] flow node "))
            .find_map(|rest| rest.strip_suffix(&suffix))
            .unwrap_or_else(|| panic!("no flow node for stage {path} in\n{self}"))
            .to_string()
    }

    /// The pipeline token never reaches the build log (withCredentials masks it; the shim never
    /// prints it).
    fn assert_token_not_leaked(&self) {
        assert!(
            !self.stdout.contains(PIPELINE_TOKEN) && !self.stderr.contains(PIPELINE_TOKEN),
            "{self}"
        );
    }
}

impl Shim {
    /// Starts `scenario` as the stage `stage` of build 7 of `shop/app`, pointed at `app`.
    fn start(app: &TestApp, scenario: &str, stage: &str, extra_env: &[(&str, &str)]) -> Shim {
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../plugin-shim/test/run.groovy");
        let mut cmd = Command::new(groovy());
        cmd.arg(&script)
            // A clean environment: the scenario's `env` is exactly what is set here (an outer
            // CI's BRANCH_NAME or SNOWGATE_* must not leak into the build under test).
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("LANG", "C.UTF-8")
            .env("SHIM_SCENARIO", scenario)
            .env("SHIM_CREDENTIAL", PIPELINE_TOKEN)
            .env("SNOWGATE_URL", &app.address)
            .env("JOB_URL", JOB_URL)
            .env("JOB_NAME", JOB_NAME)
            .env("BUILD_NUMBER", BUILD_NUMBER)
            .env("BUILD_URL", BUILD_URL)
            .env("STAGE_NAME", stage)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for key in ["HOME", "TMPDIR"] {
            if let Some(v) = std::env::var_os(key) {
                cmd.env(key, v);
            }
        }
        if let Some(home) = java_home() {
            cmd.env("JAVA_HOME", home);
        }
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("groovy starts");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().map(read_all);
        let stderr = child.stderr.take().map(read_all);
        Shim {
            scenario: scenario.to_string(),
            child,
            stdin,
            stdout,
            stderr,
        }
    }

    async fn output(&mut self) -> (String, String) {
        async fn joined(handle: Option<JoinHandle<String>>) -> String {
            match handle {
                Some(h) => h.await.unwrap_or_default(),
                None => String::new(),
            }
        }
        (
            joined(self.stdout.take()).await,
            joined(self.stderr.take()).await,
        )
    }

    /// Waits for the scenario to end (bounded; a hung scenario is killed and reported).
    async fn finish(mut self) -> ShimRun {
        let code = match tokio::time::timeout(SCENARIO_BOUND, self.child.wait()).await {
            Ok(status) => status.expect("waiting for groovy").code(),
            Err(_) => {
                let _ = self.child.kill().await;
                let (stdout, stderr) = self.output().await;
                panic!(
                    "scenario {} did not finish within {SCENARIO_BOUND:?}\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
                    self.scenario
                );
            }
        };
        let (stdout, stderr) = self.output().await;
        let run = ShimRun {
            scenario: self.scenario,
            code,
            stdout,
            stderr,
        };
        // Shown with `cargo test -- --nocapture`, and kept by the harness for failing tests.
        println!("{run}");
        run
    }

    /// Fails the test, with the scenario's output, when the scenario has already ended or
    /// `waiting_for` did not happen in time.
    async fn give_up_if_stuck(&mut self, deadline: Instant, waiting_for: &str) {
        let ended = match self.child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            _ if Instant::now() >= deadline => {
                let _ = self.child.kill().await;
                Some(format!("still running after {CHANGE_BOUND:?}"))
            }
            _ => None,
        };
        if let Some(ended) = ended {
            let (stdout, stderr) = self.output().await;
            panic!(
                "scenario {} ({ended}) before {waiting_for}\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
                self.scenario
            );
        }
    }

    /// The number of the CR the shim's gate for `stage` is waiting on, once snowgate knows it
    /// (ServiceNow's notice arrived). Deciding only then keeps the number on the decided gate.
    async fn wait_for_change(&mut self, app: &TestApp, stage: &str) -> String {
        let deadline = Instant::now() + CHANGE_BOUND;
        loop {
            let list: GateList = app
                .get("/api/v1/gates?limit=100", Some(PIPELINE_TOKEN))
                .await
                .json()
                .await
                .unwrap();
            let number = list
                .gates
                .iter()
                .find(|g| g.stage_name == stage)
                .and_then(cr_number)
                .map(str::to_string);
            if let Some(number) = number {
                return number;
            }
            self.give_up_if_stuck(deadline, "its change request existed")
                .await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until snowgate has answered the input `id` on the Jenkins fake, and hands that
    /// answer (`proceedEmpty`, `abort`, …) to the scenario's `input` step.
    async fn relay_input(&mut self, jenkins: &JenkinsFake, id: &str) -> String {
        let deadline = Instant::now() + CHANGE_BOUND;
        let answer = loop {
            if let Some(answer) = jenkins.answer_of(BUILD_PATH, id) {
                break answer;
            }
            self.give_up_if_stuck(deadline, "snowgate answered its input")
                .await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let mut stdin = self.stdin.take().expect("the input is answered once");
        stdin
            .write_all(format!("{answer}\n").as_bytes())
            .await
            .expect("the scenario reads its input's answer");
        answer
    }
}

/// The app, with snowgate releasing inputs on the Jenkins fake (which pipelines know as
/// `https://ci.example.com/`).
async fn app_with_jenkins(jenkins: &JenkinsFake) -> TestApp {
    let settings = JenkinsSettings {
        url: format!("{}/", jenkins.url),
        allowed_urls: vec!["https://ci.example.com/".into()],
        user: jenkins.user.clone(),
        api_token: Secret::new(jenkins.token.clone()),
        ..JenkinsSettings::default()
    };
    spawn_app_with(SimSettings::default(), move |s| s.jenkins = Some(settings)).await
}

#[tokio::test]
async fn an_approved_change_lets_the_shim_step_return_and_logs_the_number_and_comments() {
    let app = spawn_app().await;
    let causes = r#"[{"_class": "hudson.model.Cause$UpstreamCause", "upstreamUrl": "job/shop/job/build/",
                      "upstreamBuild": 12, "shortDescription": "Started by upstream project"}]"#;
    let env = [
        // The first two long-poll rounds fail (connection refused, then 503): later rounds go on.
        ("SHIM_FLAKY_WAITS", "2"),
        // A multibranch build started by an upstream build.
        ("BRANCH_NAME", "main"),
        ("JENKINS_URL", "https://ci.example.com/"),
        ("SHIM_BUILD_CAUSES", causes),
    ];
    let mut shim = Shim::start(&app, "approve", "Deploy", &env);
    let number = shim.wait_for_change(&app, "Deploy").await;
    app.sim
        .approve(&number, "Approved by the CAB")
        .await
        .expect("the simulator approves");
    let run = shim.finish().await;

    run.assert_passed();
    run.assert_logged("[ServiceNow DevOps] Job is under change control");
    run.assert_logged(&format!("[ServiceNow DevOps] Change Request Id : {number}"));
    run.assert_logged("[ServiceNow DevOps] Job has been approved for execution");
    run.assert_logged("Approval comments:\nApproved by the CAB");
    run.assert_logged("gate state: approved");
    // snDevOpsGetChangeNumber() answers for the current stage from what the step learned.
    run.assert_logged(&format!("change number: {number}"));
    // The flaky rounds were retried, not fatal.
    run.assert_logged("snowgate did not answer (Connection refused");
    run.assert_logged("snowgate answered HTTP 503");
    run.assert_token_not_leaked();

    // The stage reached ServiceNow with the plugin's parameters mapped onto the gate.
    let registration = app.registration_of("Deploy").json().unwrap();
    assert_eq!(
        registration["changeRequestDetails"]["attributes"]["short_description"],
        "Deploy shop"
    );
    assert_eq!(registration["changeRequestDetails"]["setCloseCode"], true);
    assert_eq!(
        registration["orchestrationTaskURL"],
        "https://ci.example.com/job/shop/job/app#Deploy/"
    );
    let details = &registration["orchestrationTaskDetails"];
    assert_eq!(details["buildNumber"], "7");
    assert_eq!(details["triggerType"], "upstream");
    assert_eq!(
        details["upstreamTaskExecutionURL"],
        "https://ci.example.com/job/shop/job/build/12/"
    );
    assert_eq!(registration["branchName"], "main");
    assert_eq!(registration["isMultiBranch"], "true");
}

#[tokio::test]
async fn a_rejected_change_fails_the_shim_step_with_not_approved() {
    let app = spawn_app().await;
    let mut shim = Shim::start(&app, "reject", "Deploy", &[]);
    let number = shim.wait_for_change(&app, "Deploy").await;
    app.sim
        .reject(&number, "Outside the change window")
        .await
        .expect("the simulator rejects");
    let run = shim.finish().await;

    run.assert_failed_with("Not approved");
    run.assert_logged("[ServiceNow DevOps] Job was not approved for execution");
    run.assert_logged("Rejection comments:\nOutside the change window");
    run.assert_logged(&format!("Change Request Id : {number}"));
    run.assert_not_logged("not reached");
    run.assert_token_not_leaked();
}

#[tokio::test]
async fn a_canceled_change_fails_the_shim_step_with_canceled() {
    let app = spawn_app().await;
    let mut shim = Shim::start(&app, "cancel", "Deploy", &[]);
    let number = shim.wait_for_change(&app, "Deploy").await;
    app.sim
        .cancel(&number, "Release withdrawn")
        .await
        .expect("the simulator cancels");
    let run = shim.finish().await;

    run.assert_failed_with("Canceled");
    run.assert_logged("[ServiceNow DevOps] Job was canceled");
    run.assert_logged("Cancel comments:\nRelease withdrawn");
    run.assert_not_logged("not reached");
}

#[tokio::test]
async fn a_stage_outside_change_control_fails_the_shim_step_unless_snowgate_lets_it_proceed() {
    let sim = SimSettings {
        controlled_stages: Some(vec!["Production".into()]),
        ..SimSettings::default()
    };
    // By default snowgate fails closed, as the plugin does: the stage does not go on.
    let app = spawn_app_with(sim.clone(), |_| {}).await;
    let run = Shim::start(&app, "not_controlled", "Unit tests", &[])
        .finish()
        .await;
    run.assert_failed_with("ServiceNow answered changeControl \"false\"");
    run.assert_not_logged("gate state:");
    run.assert_not_logged("Job is under change control");
    assert_eq!(gate_of(&app, "Unit tests").await.state, GateState::Failed);

    // `servicenow.not_controlled: proceed`: the step returns at once.
    let app = spawn_app_with(sim, |s| {
        s.servicenow.not_controlled = snowgate::configuration::NotControlled::Proceed;
    })
    .await;
    let run = Shim::start(&app, "not_controlled", "Unit tests", &[])
        .finish()
        .await;
    run.assert_passed();
    run.assert_logged("[ServiceNow DevOps] Job is not under change control");
    run.assert_logged("gate state: not_controlled");
    run.assert_not_logged("Job is under change control");
    // One call: the gate was decided in the answer that opened it.
    run.assert_logged("SHIM-HTTP-CALLS: 1");
    assert!(app.sim.changes().is_empty());
}

#[tokio::test]
async fn disabled_shim_steps_make_no_http_call() {
    let app = spawn_app().await;
    let run = Shim::start(&app, "disabled", "Deploy", &[]).finish().await;

    run.assert_passed();
    run.assert_logged("SHIM-HTTP-CALLS: 0");
    run.assert_logged("[ServiceNow DevOps] Change control for step is disabled");
    run.assert_logged("snDevOpsChange returned: null");
    run.assert_logged("[ServiceNow DevOps] Step association is disabled.");
    run.assert_logged("UPDATE Failed, Please provide a valid 'Change Request Number' to proceed.");
    run.assert_logged("snDevOpsUpdateChangeInfo returned: false");
    let list: GateList = app
        .get("/api/v1/gates", Some(PIPELINE_TOKEN))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list.count, 0, "{list:?}");
}

#[tokio::test]
async fn invalid_change_request_details_fail_the_shim_step_with_the_plugins_message() {
    let app = spawn_app().await;
    let run = Shim::start(&app, "bad_json", "Deploy", &[]).finish().await;

    // ignoreErrors: logged, and the stage goes on; without it: the plugin's failure.
    run.assert_logged("[ServiceNow DevOps] Failed to parse changeRequestDetails json.");
    run.assert_logged("[ServiceNow DevOps] Error registering the job. Ignoring error");
    run.assert_logged("went on after the ignored error");
    run.assert_failed_with("Failed to parse changeRequestDetails json.");
    run.assert_not_logged("not reached");
    // Nothing reached snowgate: the details are checked before any call.
    run.assert_logged("SHIM-HTTP-CALLS: 0");
    assert!(app.sim.changes().is_empty());
}

#[tokio::test]
async fn in_input_mode_an_approval_releases_the_input_and_the_step_returns() {
    let jenkins = JenkinsFake::start().await;
    jenkins.add_build(BUILD_PATH, "SnowgateApproval", true);
    let app = app_with_jenkins(&jenkins).await;
    let mut shim = Shim::start(&app, "input_approve", "Deploy", &[]);
    let number = shim.wait_for_change(&app, "Deploy").await;
    app.sim
        .approve(&number, "Approved by the CAB")
        .await
        .expect("the simulator approves");
    assert_eq!(
        shim.relay_input(&jenkins, "SnowgateApproval").await,
        "proceedEmpty"
    );
    let run = shim.finish().await;

    run.assert_passed();
    run.assert_logged("[harness] input id=SnowgateApproval message=Waiting for ServiceNow change");
    run.assert_logged("[ServiceNow DevOps] Job has been approved for execution");
    run.assert_logged(&format!("Change Request Id : {number}"));
    run.assert_logged("gate state: approved");
    // No long-poll: the input step did the waiting.
    run.assert_not_logged("/wait?timeout=");
}

#[tokio::test]
async fn in_input_mode_a_rejection_aborts_the_input_and_fails_with_not_approved() {
    let jenkins = JenkinsFake::start().await;
    jenkins.add_build(BUILD_PATH, "SnowgateApproval", true);
    let app = app_with_jenkins(&jenkins).await;
    let mut shim = Shim::start(&app, "input_reject", "Deploy", &[]);
    let number = shim.wait_for_change(&app, "Deploy").await;
    app.sim
        .reject(&number, "Freeze period")
        .await
        .expect("the simulator rejects");
    assert_eq!(
        shim.relay_input(&jenkins, "SnowgateApproval").await,
        "abort"
    );
    let run = shim.finish().await;

    run.assert_failed_with("Not approved");
    run.assert_logged("[harness] input answered: abort");
    run.assert_logged("[ServiceNow DevOps] Job was not approved for execution");
    run.assert_logged("Rejection comments:\nFreeze period");
    run.assert_not_logged("not reached");
}

#[tokio::test]
async fn the_pass_through_steps_reach_servicenow_through_snowgate() {
    let app = spawn_app().await;
    let mut shim = Shim::start(&app, "passthroughs", "Deploy", &[]);
    let number = shim.wait_for_change(&app, "Deploy").await;
    app.sim
        .approve(&number, "Approved by the CAB")
        .await
        .expect("the simulator approves");
    let run = shim.finish().await;

    run.assert_passed();
    run.assert_logged("[ServiceNow DevOps] Step associated successfully");
    run.assert_logged("snDevOpsStep returned: true");
    run.assert_logged(&format!("number by changeDetails: {number}"));
    run.assert_logged(&format!(
        "Update Successful for 'Change Request Number' => {number}"
    ));
    run.assert_logged("snDevOpsUpdateChangeInfo returned: true");
    run.assert_logged("snDevOpsArtifact returned: true");
    run.assert_logged("snDevOpsPackage returned: true");

    // What reached ServiceNow: the build's identity filled into the plugin's payloads.
    let requests = app.sim.requests();
    let sent = |method: &str, suffix: &str| {
        requests
            .iter()
            .find(|r| r.method == method && r.path.ends_with(suffix))
            .cloned()
            .unwrap_or_else(|| panic!("no {method} …{suffix} reached ServiceNow"))
    };
    let update = sent("PUT", "/orchestration/changeInfo");
    assert!(update
        .query_pairs()
        .contains(&("changeRequestNumber".into(), number.clone())));
    assert!(
        update.body.contains("Deployed by the shim test"),
        "{}",
        update.body
    );
    let artifact = sent("POST", "/artifact/registration").json().unwrap();
    assert_eq!(artifact["artifacts"][0]["version"], "1.7", "{artifact}");
    assert_eq!(artifact["pipelineName"], JOB_NAME);
    assert_eq!(artifact["stageName"], "Deploy");
    assert_eq!(artifact["taskExecutionNumber"], BUILD_NUMBER);
    let package = sent("POST", "/package/registration").json().unwrap();
    assert_eq!(package["name"], "shop-release", "{package}");
    assert_eq!(package["artifacts"][0]["name"], "shop.jar");
}

#[tokio::test]
async fn an_unassociated_step_fails_sn_dev_ops_step_unless_errors_are_ignored() {
    let app = spawn_app().await;
    app.sim.set_invalid_steps(vec!["Deploy".into()]);
    let run = Shim::start(&app, "step_not_associated", "Deploy", &[])
        .finish()
        .await;

    run.assert_logged("[ServiceNow DevOps] Step association error ignored.");
    run.assert_logged("snDevOpsStep(ignoreErrors: true) returned: false");
    run.assert_failed_with("[ServiceNow DevOps] Step could not be associated, perhaps you need to set the Orchestration pipeline");
    run.assert_not_logged("not reached");
}

/// The gate snowgate holds for `stage` (of the one build these tests run).
async fn gate_of(app: &TestApp, stage: &str) -> GateView {
    let list: GateList = app
        .get("/api/v1/gates?limit=100", Some(PIPELINE_TOKEN))
        .await
        .json()
        .await
        .unwrap();
    list.gates
        .iter()
        .find(|g| g.stage_name == stage)
        .cloned()
        .unwrap_or_else(|| panic!("no gate for stage {stage} in {list:?}"))
}

#[tokio::test]
async fn the_change_creation_timeout_fails_the_shim_step_or_lets_it_go_on_by_its_flag() {
    // No notice, and no poll within the test (60 s by default): the change request is never
    // known, so snowgate's creation timer ends both gates.
    let app = spawn_app_with(quiet_sim(), |_| {}).await;
    let run = Shim::start(&app, "creation_timeout", "Deploy", &[])
        .finish()
        .await;

    // abortOnChangeCreationFailure: false → the step logs why and returns.
    run.assert_logged_in_order(&[
        "[ServiceNow DevOps] Change Creation failure timeout occurred.",
        "[ServiceNow DevOps] No change request within 1s; the stage continues (abortOnChangeCreationFailure: false)",
        "[ServiceNow DevOps] Resuming the pipeline",
        "Smoke test went on: state timed_out, proceed true",
        // The default (abort) → the plugin's failure.
        "[ServiceNow DevOps] Change Creation failure timeout occurred.",
        "[ServiceNow DevOps] Pipeline aborted due to change creation timeout (1s without a change request)",
        "[ServiceNow DevOps] Aborting the pipeline",
    ]);
    run.assert_failed_with("[ServiceNow DevOps] Pipeline aborted due to change creation timeout");
    run.assert_not_logged("Change Step timeout occurred");
    run.assert_not_logged("Change Request Id");
    run.assert_not_logged("not reached");
    run.assert_token_not_leaked();

    // What the shim read is what snowgate decided.
    let went_on = gate_of(&app, "Smoke test").await;
    assert_eq!(went_on.state, GateState::TimedOut, "{went_on:?}");
    assert_eq!(went_on.proceed, Some(true), "{went_on:?}");
    let aborted = gate_of(&app, "Deploy").await;
    assert_eq!(aborted.state, GateState::TimedOut, "{aborted:?}");
    assert_eq!(aborted.proceed, Some(false), "{aborted:?}");
}

#[tokio::test]
async fn the_change_step_timeout_fails_the_shim_step_or_lets_it_go_on_by_its_flag() {
    // ServiceNow creates and names the change requests; nobody decides them.
    let app = spawn_app().await;
    let run = Shim::start(&app, "step_timeout", "Deploy", &[])
        .finish()
        .await;

    // abortOnChangeStepTimeOut: false → the step logs why and returns.
    run.assert_logged_in_order(&[
        "[ServiceNow DevOps] Change Step timeout occurred.",
        "[ServiceNow DevOps] No change decision within 1s; the stage continues (abortOnChangeStepTimeOut: false)",
        "[ServiceNow DevOps] Resuming the pipeline",
        "Smoke test went on: state timed_out, proceed true",
        // The default (abort) → the plugin's failure.
        "[ServiceNow DevOps] Change Step timeout occurred.",
        "[ServiceNow DevOps] Pipeline aborted due to change step timeout (1s without a decision)",
        "[ServiceNow DevOps] Aborting the pipeline",
    ]);
    run.assert_failed_with("[ServiceNow DevOps] Pipeline aborted due to change step timeout");
    run.assert_not_logged("Change Creation failure timeout occurred");
    run.assert_not_logged("not reached");
    run.assert_token_not_leaked();

    let went_on = gate_of(&app, "Smoke test").await;
    assert_eq!(went_on.state, GateState::TimedOut, "{went_on:?}");
    assert_eq!(went_on.proceed, Some(true), "{went_on:?}");
    let aborted = gate_of(&app, "Deploy").await;
    assert_eq!(aborted.state, GateState::TimedOut, "{aborted:?}");
    assert_eq!(aborted.proceed, Some(false), "{aborted:?}");
}

/// `<build URL>execution/node/<id>/wfapi/describe`: the plugin's stage execution URL.
fn execution_url(node: &str) -> String {
    format!("{BUILD_URL}execution/node/{node}/wfapi/describe")
}

/// A simulator that approves every change request by itself, shortly after creating it, so
/// scenarios with several gates run without the test deciding each one.
fn approving_sim() -> SimSettings {
    SimSettings {
        auto_approve_after: Some(Duration::from_millis(200)),
        ..SimSettings::default()
    }
}

/// The results the pipeline reported for the gate of `stage` (its `completed` events).
async fn completions_of(app: &TestApp, stage: &str) -> Vec<String> {
    let gate = gate_of(app, stage).await;
    app.events(gate.id)
        .await
        .into_iter()
        .filter(|e| e.kind == "completed")
        .map(|e| e.message)
        .collect()
}

#[tokio::test]
async fn a_nested_stage_reaches_servicenow_with_its_flow_node_parent_upstream_stage_and_cause() {
    let app = spawn_app().await;
    let causes = r#"[{"_class": "hudson.model.Cause$UserIdCause", "shortDescription": "Started by user Alice Example",
                      "userId": "alice", "userName": "Alice Example"}]"#;
    let env = [
        ("SHIM_BUILD_CAUSES", causes),
        ("JENKINS_URL", "https://ci.example.com/"),
        // Referred to as ${target_env}: the build's variables are case-insensitive.
        ("TARGET_ENV", "production"),
    ];
    let mut shim = Shim::start(&app, "flow_graph", "Deploy", &env);
    let number = shim.wait_for_change(&app, "Deploy/Prod").await;
    app.sim
        .approve(&number, "Approved by the CAB")
        .await
        .expect("the simulator approves");
    let run = shim.finish().await;

    run.assert_passed();
    run.assert_logged("gate state: approved");
    run.assert_logged(&format!("change number: {number}"));
    // The Groovy scenario checked the gate request itself.
    run.assert_logged("the gate request carried the stage, its parent and upstream stage");
    run.assert_not_logged("flow node is not known");
    run.assert_token_not_leaked();

    let prod = run.node_id("Deploy/Prod");
    let deploy = run.node_id("Deploy");
    let smoke = run.node_id("Deploy/Smoke test");
    assert!(prod != deploy && prod != smoke, "{prod} {deploy} {smoke}");

    // What the app stored reached ServiceNow as the plugin sends it (nested stage).
    let r = app.registration_of("Deploy/Prod").json().unwrap();
    assert_eq!(
        r["orchestrationTaskURL"], "https://ci.example.com/job/shop/job/app#Deploy/Prod/",
        "{r}"
    );
    assert_eq!(r["orchestrationTaskName"], "app");
    assert_eq!(r["parentStageName"], "app#Deploy/Prod");
    assert_eq!(r["pipelineExecutionUrl"], BUILD_URL);
    assert_eq!(r["parentStageExecutionURL"], execution_url(&prod));
    let node = &r["parentNode"];
    assert_eq!(node["id"], prod.as_str(), "{r}");
    assert_eq!(node["name"], "Deploy/Prod");
    assert_eq!(node["parentId"], deploy.as_str());
    assert_eq!(node["upstreamStageName"], "Deploy/Smoke test");
    assert_eq!(node["upstreamTaskExecutionURL"], execution_url(&smoke));
    let details = &r["orchestrationTaskDetails"];
    assert_eq!(details["taskExecutionURL"], execution_url(&prod), "{r}");
    assert_eq!(details["triggerType"], "user");
    assert_eq!(details["userName"], "Alice Example");
    assert_eq!(details["message"], "Started by user Alice Example");
    assert_eq!(details["fullName"], JOB_NAME);
    assert_eq!(details["buildNumber"], BUILD_NUMBER);
    assert!(details.get("upstreamTaskExecutionURL").is_none(), "{r}");
    // ${VAR} expanded from the build environment, as EnvVars.expand does.
    let attributes = &r["changeRequestDetails"]["attributes"];
    assert_eq!(
        attributes["short_description"],
        "Deploy shop/app build 7 to production"
    );
    assert_eq!(
        attributes["description"],
        "costs $5; ${NOT_SET} stays as written"
    );

    // The acknowledgement after the decision names the same stage execution URL.
    let deadline = Instant::now() + Duration::from_secs(30);
    let ack = loop {
        let found = app
            .sim
            .requests()
            .into_iter()
            .find(|q| q.method == "PUT" && q.path.contains("/orchestration/changeControl/"));
        if let Some(found) = found {
            break found.json().unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "no acknowledgement reached ServiceNow"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(ack["taskExecutionURL"], execution_url(&prod), "{ack}");
    assert_eq!(ack["orchestrationTaskName"], "app#Deploy/Prod");
    assert_eq!(ack["parentNode"]["id"], prod.as_str());
}

#[tokio::test]
async fn parallel_stages_get_their_own_flow_nodes_and_no_upstream_stage() {
    let app = spawn_app_with(approving_sim(), |_| {}).await;
    let causes = r#"[{"_class": "hudson.triggers.SCMTrigger$SCMTriggerCause", "shortDescription": "Started by an SCM change"}]"#;
    let run = Shim::start(&app, "parallel", "Deploy", &[("SHIM_BUILD_CAUSES", causes)])
        .finish()
        .await;

    run.assert_passed();
    run.assert_logged_in_order(&["EU: approved", "US: approved", "Verify: approved"]);
    run.assert_logged("three gates, each with its own flow node");
    run.assert_not_logged("flow node is not known");

    let deploy = run.node_id("Deploy");
    let mut tokens = Vec::new();
    let mut urls = Vec::new();
    for path in ["Deploy/EU", "Deploy/US", "Deploy/Verify"] {
        let r = app.registration_of(path).json().unwrap();
        let id = run.node_id(path);
        assert_eq!(r["parentNode"]["id"], id.as_str(), "{r}");
        assert_eq!(r["parentNode"]["name"], path);
        assert_eq!(r["parentNode"]["parentId"], deploy.as_str(), "{r}");
        assert_eq!(
            r["orchestrationTaskDetails"]["taskExecutionURL"],
            execution_url(&id)
        );
        assert_eq!(r["parentStageExecutionURL"], execution_url(&id));
        assert_eq!(r["orchestrationTaskDetails"]["triggerType"], "scm", "{r}");
        assert_eq!(
            r["orchestrationTaskDetails"]["message"],
            "Started by an SCM change"
        );
        tokens.push(r["callbackURL"].as_str().unwrap().to_string());
        urls.push(execution_url(&id));
    }
    tokens.sort();
    tokens.dedup();
    urls.sort();
    urls.dedup();
    assert_eq!(tokens.len(), 3, "one callback token per stage");
    assert_eq!(urls.len(), 3, "one execution URL per stage");
    // Parallel stages never get an upstream stage; Verify gets the last one started (US).
    for path in ["Deploy/EU", "Deploy/US"] {
        let r = app.registration_of(path).json().unwrap();
        assert!(r["parentNode"].get("upstreamStageName").is_none(), "{r}");
    }
    let verify = app.registration_of("Deploy/Verify").json().unwrap();
    assert_eq!(verify["parentNode"]["upstreamStageName"], "Deploy/US");
    assert_eq!(
        verify["parentNode"]["upstreamTaskExecutionURL"],
        execution_url(&run.node_id("Deploy/US"))
    );
}

#[tokio::test]
async fn a_sandboxed_shim_says_so_and_sends_a_stand_in_execution_url_per_stage() {
    let app = spawn_app_with(approving_sim(), |_| {}).await;
    let run = Shim::start(&app, "sandboxed", "Deploy", &[("SHIM_SANDBOX", "1")])
        .finish()
        .await;

    run.assert_passed();
    run.assert_logged("stand-in execution URLs, one per stage");
    run.assert_logged(&format!(
        "[ServiceNow DevOps] The stage's flow node is not known (the script sandbox refused to read the flow graph: \
         Scripts not permitted to use method org.jenkinsci.plugins.workflow.graph.FlowNode getEnclosingBlocks): \
         ServiceNow gets {BUILD_URL}#Deploy/EU as the stage execution URL, unique to stage 'Deploy/EU' of this build"
    ));
    run.assert_logged("load the library as a trusted global library");
    // snDevOpsGetChangeNumber() finds the nested gate from STAGE_NAME alone.
    let eu = gate_of(&app, "Deploy/EU").await;
    run.assert_logged(&format!("EU change number: {}", cr_number(&eu).unwrap()));

    for (path, url) in [
        ("Deploy/EU", format!("{BUILD_URL}#Deploy/EU")),
        ("Deploy/US west", format!("{BUILD_URL}#Deploy/US%20west")),
    ] {
        let r = app.registration_of(path).json().unwrap();
        assert_eq!(
            r["orchestrationTaskDetails"]["taskExecutionURL"], url,
            "{r}"
        );
        assert_eq!(r["parentStageExecutionURL"], url);
        // Without a flow node id snowgate sends the stage path as the node id.
        assert_eq!(r["parentNode"]["id"], path, "{r}");
        assert_eq!(r["parentNode"]["name"], path);
    }
}

#[tokio::test]
async fn the_closure_form_runs_the_steps_after_approval_and_reports_the_stage_result() {
    let app = spawn_app_with(approving_sim(), |_| {}).await;
    let run = Shim::start(&app, "closure", "Deploy", &[]).finish().await;

    // The failing steps' own error fails the stage, after the failure was reported.
    run.assert_failed_with("smoke tests failed");
    run.assert_logged_in_order(&[
        "[ServiceNow DevOps] Change control for step is disabled",
        "No snowgate gate for this stage",
        "smoke testing without change control",
        "disabled closure returned: smoke tested",
        "[ServiceNow DevOps] Job has been approved for execution",
        "deploying",
        "[ServiceNow DevOps] Stage result reported to snowgate: success",
        "closure returned: deployed",
        "[ServiceNow DevOps] Job has been approved for execution",
        "verifying",
        "[ServiceNow DevOps] Stage result reported to snowgate: failure",
        "the stage failed: smoke tests failed",
    ]);
    run.assert_not_logged("not reached");
    run.assert_token_not_leaked();

    // snowgate recorded each stage's end on its gate.
    assert_eq!(
        completions_of(&app, "Deploy").await,
        ["the stage finished: success"]
    );
    assert_eq!(
        completions_of(&app, "Verify").await,
        ["the stage finished: failure"]
    );
    // Disabled change control opened no gate.
    let list: GateList = app
        .get("/api/v1/gates?limit=100", Some(PIPELINE_TOKEN))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list.count, 2, "{list:?}");
}

/// snowgate in change mode (Basic to the Change API, Production controlled) against a
/// simulator that approves every CR it creates.
async fn change_mode_app() -> TestApp {
    let sim = approving_sim();
    let sim_for = sim.clone();
    spawn_app_with(sim, move |s| {
        s.servicenow.auth = snowgate::configuration::ServiceNowAuth::Basic;
        s.servicenow.user = sim_for.user.clone();
        s.servicenow.password = Secret::new(sim_for.password.clone());
        s.servicenow.poll_interval = snowgate::configuration::Dur(Duration::from_millis(200));
        s.change.environments = vec!["Production".into()];
    })
    .await
}

#[tokio::test]
async fn change_mode_parameters_reach_snowgate_through_the_shim() {
    let app = change_mode_app().await;
    // The CR the Release stage names, already approved (in Implement).
    let named = app
        .sim
        .chg_create(
            json!({"short_description": "CAB-approved release train"}),
            "normal",
            "Implement",
        )
        .unwrap();
    let env = [
        ("CHANGE_NUMBER", named.number.as_str()),
        ("TICKET", "INC0012345"),
    ];
    let run = Shim::start(&app, "change_mode", "Deploy", &env)
        .finish()
        .await;

    run.assert_passed();
    run.assert_logged("deploying the hotfix");
    run.assert_logged("[ServiceNow DevOps] Stage result reported to snowgate: success");
    run.assert_logged("Deploy: approved (change)");
    run.assert_logged(&format!("Release: approved with {}", named.number));
    run.assert_logged("change-mode parameters passed through");

    let hotfix = gate_of(&app, "Hotfix").await;
    assert_eq!(hotfix.mode, GateMode::Change, "{hotfix:?}");
    let cr = app.sim.chg_change(cr_number(&hotfix).unwrap()).unwrap();
    assert_eq!(cr.change_type, "emergency");
    assert_eq!(cr.short_description, "Hotfix for build 7");
    assert_eq!(
        cr.fields.get("justification").map(String::as_str),
        Some("outage INC0012345")
    );
    assert_eq!(
        completions_of(&app, "Hotfix").await,
        ["the stage finished: success"]
    );

    let deploy = gate_of(&app, "Deploy").await;
    let cr = app.sim.chg_change(cr_number(&deploy).unwrap()).unwrap();
    assert_eq!(cr.change_type, "standard");
    assert_eq!(cr.template.as_deref(), Some("Jenkins deployment"));

    let release = gate_of(&app, "Release").await;
    assert_eq!(cr_number(&release), Some(named.number.as_str()));
    // Two CRs created (emergency, standard), the named one only checked.
    assert_eq!(app.sim.chg_changes().len(), 3);
}

#[tokio::test]
async fn sn_dev_ops_security_result_fails_the_stage_pointing_at_the_readme() {
    let app = spawn_app().await;
    let run = Shim::start(&app, "security_result", "Security scan", &[])
        .finish()
        .await;

    run.assert_failed_with(
        "[ServiceNow DevOps] snDevOpsSecurityResult is not provided by the snowgate plugin shim",
    );
    run.assert_logged("plugin-shim/README.md");
    run.assert_not_logged("not reached");
    run.assert_logged("SHIM-HTTP-CALLS: 0");
}

#[tokio::test]
async fn sn_dev_ops_attach_sends_a_workspace_file_to_the_stage_s_change_request() {
    let app = change_mode_app().await;
    let workspace = tempfile::tempdir().unwrap();
    std::fs::write(
        workspace.path().join("report.xml"),
        "<testsuite tests=\"3\"/>\n",
    )
    .unwrap();
    let env = [("SHIM_WORKSPACE", workspace.path().to_str().unwrap())];
    let run = Shim::start(&app, "attach", "Deploy", &env).finish().await;
    run.assert_passed();
    run.assert_logged("Deploy: approved");
    run.assert_logged("attached: true");
    run.assert_logged("again: true");
    run.assert_logged("unknown stage: false");
    run.assert_logged("evidence sent");
    let gate = gate_of(&app, "Deploy").await;
    let sys_id = change_request(&gate).sys_id.clone().unwrap();
    let mut attached = app.sim.attachments();
    for _ in 0..100 {
        if !attached.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        attached = app.sim.attachments();
    }
    assert_eq!(attached.len(), 1, "the same report is attached once");
    assert_eq!(attached[0].table_sys_id, sys_id);
    assert_eq!(attached[0].file_name, "junit.xml");
    assert_eq!(attached[0].content, b"<testsuite tests=\"3\"/>\n");
}
