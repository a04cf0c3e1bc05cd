//! The plugin-shim shared library (`plugin-shim/vars/*.groovy`) run under plain Groovy with the
//! Jenkins steps it uses stubbed (`plugin-shim/test/run.groovy`), against the real app and the
//! ServiceNow simulator. Each test starts one Groovy process running one scenario
//! (`plugin-shim/test/scenarios/<name>.groovy`) and decides the change request in the simulator
//! while the step waits. In input mode snowgate answers the `input` on the Jenkins fake, and
//! the test hands that answer to the stubbed `input` step (on its stdin).
//!
//! Groovy is a system dependency: `scripts/test.sh` installs it. A missing `groovy` fails these
//! tests (they are never skipped).

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use servicenow_sim::SimSettings;
use snowgate::configuration::{JenkinsSettings, Secret};
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
            let list: Value = app
                .get("/api/v1/gates?limit=100", Some(PIPELINE_TOKEN))
                .await
                .json()
                .await
                .unwrap();
            let number = list["gates"]
                .as_array()
                .and_then(|gates| gates.iter().find(|g| g["stageName"] == stage))
                .and_then(|g| g["changeRequest"]["number"].as_str())
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
async fn a_stage_outside_change_control_passes_the_shim_step_at_once() {
    let app = spawn_app_with(
        SimSettings {
            controlled_stages: Some(vec!["Production".into()]),
            ..SimSettings::default()
        },
        |_| {},
    )
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
    let list: Value = app
        .get("/api/v1/gates", Some(PIPELINE_TOKEN))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["count"], 0, "{list}");
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
async fn gate_of(app: &TestApp, stage: &str) -> Value {
    let list: Value = app
        .get("/api/v1/gates?limit=100", Some(PIPELINE_TOKEN))
        .await
        .json()
        .await
        .unwrap();
    list["gates"]
        .as_array()
        .and_then(|gates| gates.iter().find(|g| g["stageName"] == stage))
        .cloned()
        .unwrap_or_else(|| panic!("no gate for stage {stage} in {list}"))
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
    assert_eq!(went_on["state"], "timed_out", "{went_on}");
    assert_eq!(went_on["proceed"], true, "{went_on}");
    let aborted = gate_of(&app, "Deploy").await;
    assert_eq!(aborted["state"], "timed_out", "{aborted}");
    assert_eq!(aborted["proceed"], false, "{aborted}");
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
    assert_eq!(went_on["state"], "timed_out", "{went_on}");
    assert_eq!(went_on["proceed"], true, "{went_on}");
    let aborted = gate_of(&app, "Deploy").await;
    assert_eq!(aborted["state"], "timed_out", "{aborted}");
    assert_eq!(aborted["proceed"], false, "{aborted}");
}
