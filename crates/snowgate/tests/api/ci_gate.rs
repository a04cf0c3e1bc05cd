//! `snowgate gates open --wait` from any CI: the real binary, with nothing of the host's
//! environment but a CI's variables, against the real app and the simulator; the CI templates
//! in integrations/ checked against the flags the binary takes.
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use servicenow_sim::SimSettings;
use snowgate::api::{GateList, GateView};
use snowgate::configuration::GateMode;
use snowgate::domain::GateState;
use tokio::io::AsyncBufReadExt;

use crate::change::change_app_with;
use crate::cli::{closed_port, json_of, run_cmd, Run};
use crate::durability::{free_port, start_binary, write_config, Binary};
use crate::helpers::*;

mod docs;
mod evidence;
mod templates;

pub(crate) const RUN_ID: &str = "9876543210";

/// GitHub Actions' variables for run 9876543210, attempt 2, job `deploy` of shop/app.
pub(crate) fn github_env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("GITHUB_ACTIONS", "true"),
        ("GITHUB_SERVER_URL", "https://github.com"),
        ("GITHUB_REPOSITORY", "shop/app"),
        ("GITHUB_RUN_ID", RUN_ID),
        ("GITHUB_RUN_ATTEMPT", "2"),
        ("GITHUB_JOB", "deploy"),
        ("GITHUB_REF_NAME", "main"),
    ]
}

pub(crate) fn gitlab_env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("GITLAB_CI", "true"),
        ("CI_PROJECT_URL", "https://gitlab.example.com/shop/app"),
        ("CI_PROJECT_PATH", "shop/app"),
        ("CI_PIPELINE_ID", "4711"),
        ("CI_JOB_NAME", "deploy-prod"),
        (
            "CI_JOB_URL",
            "https://gitlab.example.com/shop/app/-/jobs/990",
        ),
        ("CI_COMMIT_REF_NAME", "release"),
    ]
}

pub(crate) fn jenkins_env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("JENKINS_URL", "https://ci.example.com/"),
        ("JOB_URL", "https://ci.example.com/job/shop/job/app/"),
        ("JOB_NAME", "shop/app"),
        ("BUILD_NUMBER", "42"),
        ("STAGE_NAME", "Deploy"),
        ("BUILD_URL", "https://ci.example.com/job/shop/job/app/42/"),
    ]
}

/// The binary with only `env` (and snowgate's URL and pipeline token): `env_clear` first, so
/// neither the host's CI variables nor its SNOWGATE_* settings leak in.
pub(crate) fn ci_command(
    address: &str,
    env: &[(&str, &str)],
    args: &[&str],
) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_snowgate"));
    cmd.env_clear()
        .envs(env.iter().copied())
        .env("SNOWGATE_URL", address)
        .env("SNOWGATE_TOKEN", PIPELINE_TOKEN)
        .args(args)
        .kill_on_drop(true);
    cmd
}

pub(crate) async fn ci_run(address: &str, env: &[(&str, &str)], args: &[&str]) -> Run {
    run_cmd(
        ci_command(address, env, args),
        &[PIPELINE_TOKEN, OPERATOR_TOKEN],
    )
    .await
}

/// The only gate of the snowgate at `address`, once there is one.
async fn the_gate(address: &str) -> GateView {
    let client = reqwest::Client::new();
    for _ in 0..400 {
        if let Ok(resp) = client
            .get(format!("{address}/api/v1/gates"))
            .bearer_auth(PIPELINE_TOKEN)
            .send()
            .await
        {
            if let Ok(list) = resp.json::<GateList>().await {
                if let Some(g) = list.gates.into_iter().next() {
                    assert_eq!(list.count, 1, "one gate only");
                    return g;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no gate was opened at {address}");
}

/// `gates open --wait` in the background, with its output.
fn wait_in_background(
    address: &str,
    env: &[(&str, &str)],
    extra: &[&str],
) -> tokio::task::JoinHandle<Run> {
    let mut args = vec!["gates", "open", "--wait", "--progress-every", "1"];
    args.extend_from_slice(extra);
    tokio::spawn(run_cmd(
        ci_command(address, env, &args),
        &[PIPELINE_TOKEN, OPERATOR_TOKEN],
    ))
}

/// The number of the CR the change-mode gate `id` is waiting on.
async fn pending_cr(app: &TestApp, id: uuid::Uuid) -> String {
    let g = app.until_state(id, GateState::Pending).await;
    cr_number(&g)
        .expect("a change-mode gate waits on its CR")
        .to_string()
}

#[tokio::test]
async fn a_github_actions_job_is_a_change_mode_gate_that_exits_0_once_implement_is_reached() {
    let app = change_app_with(SimSettings::default(), |_| {}).await;
    let title = "Deploy shop/app run 9876543210 to Production";
    let extra = ["--environment", "Production", "--short-description", title];
    let waiter = wait_in_background(&app.address, &github_env(), &extra);
    let g = the_gate(&app.address).await;
    assert_eq!(
        g.job_url.trim_end_matches('/'),
        "https://github.com/shop/app"
    );
    assert_eq!(g.build_number, format!("{RUN_ID}002"));
    assert_eq!(g.stage_name, "deploy");
    assert_eq!(
        g.build_url.as_deref(),
        Some("https://github.com/shop/app/actions/runs/9876543210/attempts/2")
    );
    assert_eq!(g.branch_name.as_deref(), Some("main"));
    assert_eq!(
        g.mode,
        GateMode::Change,
        "GitHub jobs are change-mode gates"
    );
    let number = pending_cr(&app, g.id).await;
    let cr = app.sim.chg_change(&number).unwrap();
    assert_eq!(cr.short_description, title);
    app.sim
        .chg_set_state(&number, "Implement", None, None)
        .unwrap();
    let run = waiter.await.unwrap();
    assert_eq!(run.code, 0, "{}", run.output());
    assert!(run.stderr.contains("the stage may go on"), "{}", run.stderr);
    // The first progress line, at the open, names the gate; the end names the CR.
    assert!(
        run.stderr.contains(&format!("snowgate: gate {} ", g.id)),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains(&number), "{}", run.stderr);
    assert!(run.stdout.contains("approved"), "{}", run.stdout);
}

#[tokio::test]
async fn a_gitlab_job_is_stopped_with_exit_1_when_its_change_is_canceled() {
    let app = change_app_with(SimSettings::default(), |_| {}).await;
    let mut env = gitlab_env();
    env.push(("CI_ENVIRONMENT_NAME", "Production"));
    let waiter = wait_in_background(&app.address, &env, &["--json"]);
    let g = the_gate(&app.address).await;
    assert_eq!(
        g.job_url.trim_end_matches('/'),
        "https://gitlab.example.com/shop/app"
    );
    assert_eq!(
        (g.build_number.as_str(), g.stage_name.as_str()),
        ("4711", "deploy-prod")
    );
    assert_eq!(
        g.build_url.as_deref(),
        Some("https://gitlab.example.com/shop/app/-/jobs/990")
    );
    assert_eq!(g.branch_name.as_deref(), Some("release"));
    let number = pending_cr(&app, g.id).await;
    app.sim
        .chg_set_state(&number, "Canceled", None, None)
        .unwrap();
    let run = waiter.await.unwrap();
    assert_eq!(run.code, 1, "{}", run.output());
    let v: GateView = json_of(&run);
    assert_eq!(v.id, g.id);
    assert_eq!(v.proceed, Some(false));
    assert!(run.stderr.contains("Canceled"), "{}", run.stderr);
    assert!(run.stderr.contains("the stage must stop"), "{}", run.stderr);
}

#[tokio::test]
async fn a_jenkins_stage_exits_0_with_servicenows_comments_once_approved_in_devops_mode() {
    let app = spawn_app().await;
    let waiter = wait_in_background(&app.address, &jenkins_env(), &[]);
    let g = the_gate(&app.address).await;
    assert_eq!(g.job_url, "https://ci.example.com/job/shop/job/app/");
    assert_eq!(
        g.build_url.as_deref(),
        Some("https://ci.example.com/job/shop/job/app/42/"),
        "Jenkins' BUILD_URL"
    );
    assert_eq!(g.mode, GateMode::Devops);
    app.until_state(g.id, GateState::Pending).await;
    let number = app.change_of("Deploy");
    app.sim
        .approve(&number, "CAB approved for the Tuesday window")
        .await
        .unwrap();
    let run = waiter.await.unwrap();
    assert_eq!(run.code, 0, "{}", run.output());
    assert!(
        run.stderr.contains("CAB approved for the Tuesday window"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("decided by servicenow"),
        "{}",
        run.stderr
    );
    assert!(run.stdout.contains(&number), "{}", run.stdout);
}

/// The progress lines of gate `id` in `stderr`: `snowgate: gate <id> <state> for <age>…`.
fn progress_lines<'a>(stderr: &'a str, id: &str, state: &str) -> Vec<&'a str> {
    let start = format!("snowgate: gate {id} {state} for ");
    stderr.lines().filter(|l| l.starts_with(&start)).collect()
}

#[tokio::test]
async fn a_plain_shell_job_gated_by_flags_alone_shows_progress_and_exits_1_when_canceled() {
    let app = change_app_with(SimSettings::default(), |_| {}).await;
    // No CI's variables at all: everything from flags, as a plain shell pipeline would. Its
    // job is no Jenkins job ServiceNow's DevOps API knows, so it gates in change mode.
    let flags = [
        "--job-url",
        "https://build.example.com/pipelines/shop-app/",
        "--build",
        "318",
        "--stage",
        "Release",
        "--build-url",
        "https://build.example.com/pipelines/shop-app/318/",
        "--mode",
        "change",
        "--environment",
        "Production",
    ];
    let waiter = wait_in_background(&app.address, &[], &flags);
    let g = the_gate(&app.address).await;
    assert_eq!(g.job_url, "https://build.example.com/pipelines/shop-app/");
    assert_eq!(
        (g.build_number.as_str(), g.stage_name.as_str()),
        ("318", "Release")
    );
    assert_eq!(
        g.build_url.as_deref(),
        Some("https://build.example.com/pipelines/shop-app/318/")
    );
    assert_eq!(g.mode, GateMode::Change);
    let number = pending_cr(&app, g.id).await;
    // --progress-every 1: a line each second while ServiceNow has not decided.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    app.sim
        .chg_set_state(&number, "Canceled", None, None)
        .unwrap();
    let run = waiter.await.unwrap();
    assert_eq!(run.code, 1, "{}", run.output());
    let id = g.id.to_string();
    let lines = progress_lines(&run.stderr, &id, "pending");
    assert!(
        lines.len() >= 2,
        "progress lines while pending:\n{}",
        run.stderr
    );
    for line in &lines {
        let rest = line
            .strip_prefix(&format!("snowgate: gate {id} pending for "))
            .unwrap();
        let age = rest.split(';').next().unwrap();
        assert!(
            age.strip_suffix('s')
                .is_some_and(|n| n.parse::<u64>().is_ok()),
            "an age in seconds, e.g. 3s: {line}"
        );
        assert!(rest.contains(&number), "the CR's number: {line}");
    }
    assert!(run.stderr.contains("the stage must stop"), "{}", run.stderr);
    let g = app.gate(&id).await;
    // Change mode fails the gate of a canceled CR, as Octopus Deploy fails its deployment.
    assert_eq!((g.state, g.proceed), (GateState::Failed, Some(false)));
    assert!(g.message.contains("was canceled"), "{}", g.message);
    assert!(run.stderr.contains("was canceled"), "{}", run.stderr);
}

#[tokio::test]
async fn a_job_naming_its_change_request_waits_on_that_one_and_proceeds_when_it_is_approved() {
    let app = change_app_with(SimSettings::default(), |_| {}).await;
    // The release's CR, raised in ServiceNow beforehand.
    let cr = app
        .sim
        .chg_create(
            serde_json::json!({"short_description": "Release 7.2"}),
            "normal",
            "Assess",
        )
        .unwrap();
    let flags = [
        "--job-url",
        "https://build.example.com/pipelines/shop-app/",
        "--build",
        "319",
        "--stage",
        "Release",
        "--mode",
        "change",
        "--environment",
        "Production",
        "--change-request",
        cr.number.as_str(),
    ];
    let waiter = wait_in_background(&app.address, &[], &flags);
    let g = the_gate(&app.address).await;
    assert_eq!(
        pending_cr(&app, g.id).await,
        cr.number,
        "the CR named, not a new one"
    );
    assert_eq!(app.sim.chg_changes().len(), 1, "no CR created");
    app.sim
        .chg_set_state(&cr.number, "Implement", None, None)
        .unwrap();
    let run = waiter.await.unwrap();
    assert_eq!(run.code, 0, "{}", run.output());
    assert!(run.stderr.contains(&cr.number), "{}", run.stderr);
    assert_eq!(app.gate(g.id).await.state, GateState::Approved);
}

#[tokio::test]
async fn a_waiting_build_is_stopped_with_exit_1_when_a_newer_build_supersedes_it() {
    let app = spawn_app().await;
    let waiter = wait_in_background(&app.address, &jenkins_env(), &[]);
    let older = the_gate(&app.address).await;
    app.until_state(older.id, GateState::Pending).await;
    let mut newer_env = jenkins_env();
    newer_env.retain(|(k, _)| !matches!(*k, "BUILD_NUMBER" | "BUILD_URL"));
    newer_env.push(("BUILD_NUMBER", "43"));
    newer_env.push(("BUILD_URL", "https://ci.example.com/job/shop/job/app/43/"));
    let newer = ci_run(
        &app.address,
        &newer_env,
        &["gates", "open", "--json", "--supersede"],
    )
    .await;
    assert_eq!(newer.code, 0, "{}", newer.output());
    let newer: GateView = json_of(&newer);
    assert_eq!(newer.build_number, "43");
    let run = waiter.await.unwrap();
    assert_eq!(run.code, 1, "{}", run.output());
    let g = app.gate(&older.id.to_string()).await;
    assert_eq!((g.state, g.proceed), (GateState::Superseded, Some(false)));
    assert!(run.stderr.contains("the stage must stop"), "{}", run.stderr);
    assert!(
        run.stderr.contains("43"),
        "the newer build named: {}",
        run.stderr
    );
}

#[tokio::test]
async fn without_wait_a_jenkins_stage_opens_once_and_flags_override_the_environment() {
    let app = spawn_app().await;
    let args = [
        "gates",
        "open",
        "--json",
        "--stage",
        "Deploy prod",
        "--supersede",
    ];
    let run = ci_run(&app.address, &jenkins_env(), &args).await;
    assert_eq!(run.code, 0, "{}", run.output());
    let g: GateView = json_of(&run);
    assert_eq!(g.job_url, "https://ci.example.com/job/shop/job/app/");
    assert_eq!(
        (g.build_number.as_str(), g.stage_name.as_str()),
        ("42", "Deploy prod")
    );
    assert_eq!(g.proceed, None);
    // Opening again (a retried step) answers with the same gate.
    let again = ci_run(&app.address, &jenkins_env(), &args).await;
    assert_eq!(again.code, 0, "{}", again.output());
    assert_eq!(json_of::<GateView>(&again).id, g.id);
    let list: GateList = app
        .get("/api/v1/gates", Some(PIPELINE_TOKEN))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list.count, 1);
}

#[tokio::test]
async fn without_wait_an_open_answered_with_a_gate_decided_to_stop_exits_1() {
    let app = spawn_app().await;
    // The same job URL, build and stage as Jenkins' variables: the job's gate, aborted by an
    // operator before a retried step opens it again.
    let g = app.open("Deploy").await;
    let resp = app
        .post_json(
            &format!("/api/v1/gates/{}/abort", g.id),
            Some(OPERATOR_TOKEN),
            &serde_json::json!({"reason": "freeze"}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let run = ci_run(&app.address, &jenkins_env(), &["gates", "open", "--json"]).await;
    assert_eq!(run.code, 1, "{}", run.output());
    let v: GateView = json_of(&run);
    assert_eq!((v.id, v.state), (g.id, GateState::Aborted));
    assert_eq!(v.proceed, Some(false));
    let run = ci_run(&app.address, &jenkins_env(), &["gates", "open"]).await;
    assert_eq!(run.code, 1, "{}", run.output());
    // A gate still undecided is exit 0 without --wait.
    let run = ci_run(
        &app.address,
        &jenkins_env(),
        &["gates", "open", "--stage", "Other"],
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.output());
}

#[tokio::test]
async fn a_missing_value_is_a_usage_error_naming_the_flag_and_the_variables() {
    let app = spawn_app().await;
    let env: Vec<_> = github_env()
        .into_iter()
        .filter(|(k, _)| *k != "GITHUB_JOB")
        .collect();
    let run = ci_run(&app.address, &env, &["gates", "open", "--wait"]).await;
    assert_eq!(run.code, 2, "{}", run.output());
    for part in [
        "--stage",
        "GITHUB_JOB",
        "CI_JOB_NAME",
        "STAGE_NAME",
        "GitHub Actions detected",
    ] {
        assert!(run.stderr.contains(part), "{part} missing:\n{}", run.stderr);
    }
    // Outside any CI every required value is named.
    let run = ci_run(&app.address, &[], &["gates", "open"]).await;
    assert_eq!(run.code, 2, "{}", run.output());
    for part in [
        "--job-url",
        "GITHUB_SERVER_URL",
        "CI_PROJECT_URL",
        "JOB_URL",
        "--build",
        "BUILD_NUMBER",
    ] {
        assert!(run.stderr.contains(part), "{part} missing:\n{}", run.stderr);
    }
    // Change mode without an environment; and snowgate's own 400 is exit 2 as well.
    let run = ci_run(
        &app.address,
        &jenkins_env(),
        &["gates", "open", "--mode", "change"],
    )
    .await;
    assert_eq!(run.code, 2, "{}", run.output());
    assert!(run.stderr.contains("--environment"), "{}", run.stderr);
    let run = ci_run(
        &app.address,
        &jenkins_env(),
        &["gates", "open", "--build", "4x"],
    )
    .await;
    assert_eq!(run.code, 2, "{}", run.output());
    assert!(run.stderr.contains("buildNumber"), "{}", run.stderr);
    let list: GateList = app
        .get("/api/v1/gates", Some(PIPELINE_TOKEN))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list.count, 0, "nothing was opened");
}

#[tokio::test]
async fn an_unreachable_snowgate_is_exit_2_once_the_retry_budget_is_spent() {
    let address = format!("http://127.0.0.1:{}", closed_port());
    let started = Instant::now();
    let run = ci_run(
        &address,
        &jenkins_env(),
        &["gates", "open", "--wait", "--retry-for", "1500ms"],
    )
    .await;
    assert_eq!(run.code, 2, "{}", run.output());
    assert!(started.elapsed() >= Duration::from_millis(1500));
    assert!(run.stderr.contains("retrying for up to"), "{}", run.stderr);
    assert!(run.stderr.contains("giving up"), "{}", run.stderr);
    assert!(
        run.stderr.contains("cannot reach snowgate"),
        "{}",
        run.stderr
    );
}

/// `snowgate serve` that is killed when the test ends, however it ends.
struct Served(Binary);

impl Drop for Served {
    fn drop(&mut self) {
        if let Ok(None) = self.0.child.try_wait() {
            self.0.kill();
        }
    }
}

/// Until `text` shows in `out` `n` times.
async fn until_output(out: &Mutex<String>, text: &str, n: usize) {
    for _ in 0..400 {
        if out.lock().unwrap().matches(text).count() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("`{text}` never showed:\n{}", out.lock().unwrap());
}

/// The number of the CR the simulator made for `stage`, once a registration made it: the kill
/// may have come before the first registration ended, and the restarted snowgate then repeats it.
async fn until_registered(sim: &servicenow_sim::SimHandle, stage: &str) -> String {
    for _ in 0..600 {
        if let Some(c) = sim.changes().into_iter().find(|c| c.stage_name == stage) {
            return c.number;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no change request was registered for stage {stage}");
}

#[tokio::test]
async fn the_wait_survives_snowgate_starting_late_and_restarting_while_it_waits() {
    let sim_cfg = SimSettings::default();
    let sim = servicenow_sim::start(sim_cfg.clone()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = write_config(dir.path(), port, &sim, &sim_cfg, "1h");
    let log = dir.path().join("snowgate.log");
    let address = format!("http://127.0.0.1:{port}");

    // The job starts before snowgate does.
    let mut cmd = ci_command(
        &address,
        &jenkins_env(),
        &["gates", "open", "--wait", "--retry-for", "60s"],
    );
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = Arc::new(Mutex::new(String::new()));
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let sink = stderr.clone();
    let reader = tokio::spawn(async move {
        while let Ok(Some(l)) = lines.next_line().await {
            let mut s = sink.lock().unwrap();
            s.push_str(&l);
            s.push('\n');
        }
    });
    until_output(&stderr, "retrying for up to", 1).await;

    let bin = Served(start_binary(&config, &address, &log).await);
    let g = the_gate(&address).await;
    assert_eq!(g.stage_name, "Deploy");
    until_output(&stderr, &format!("gate {} for", g.id), 1).await;
    // SIGKILL while the job is in a long-poll, then start again on the same store and port.
    drop(bin);
    // The job sees snowgate gone before it is back.
    until_output(&stderr, "retrying for up to", 2).await;
    let _bin = Served(start_binary(&config, &address, &log).await);
    let number = until_registered(&sim, "Deploy").await;
    sim.approve(&number, "approved after the restart")
        .await
        .unwrap();

    let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .expect("the job ends within 60 s")
        .unwrap();
    reader.await.unwrap();
    let err = stderr.lock().unwrap().clone();
    assert_eq!(status.code(), Some(0), "{err}");
    assert!(err.contains("approved after the restart"), "{err}");
    // Two rows of failures were retried: before the first answer and after the kill.
    assert!(err.matches("retrying for up to").count() >= 2, "{err}");
    assert!(!err.contains(PIPELINE_TOKEN));
}
