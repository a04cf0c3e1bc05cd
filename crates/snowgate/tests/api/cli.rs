//! The real `snowgate` binary as an operator client (`gates …`, `healthcheck`) against a running
//! app, and `snowgate check` against the simulator. Every run also checks that no token leaks
//! into the output.
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use servicenow_sim::{SimHandle, SimSettings};
use snowgate::api::{ErrorBody, GateList, GateView};
use snowgate::domain::GateState;

use crate::helpers::*;

/// The ServiceNow token used by `check` configurations that must be refused.
const WRONG_SN_TOKEN: &str = "wrong-devops-token-0123456789";

pub(crate) struct Run {
    pub(crate) code: i32,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Run {
    pub(crate) fn output(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

/// The binary with a clean environment: no SNOWGATE_* or SNOWGATE__* from the caller's shell.
fn command(args: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_snowgate"));
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("SNOWGATE") {
            cmd.env_remove(k);
        }
    }
    cmd.args(args).kill_on_drop(true);
    cmd
}

/// Run the binary to its end; fail the test if a secret shows up in its output.
pub(crate) async fn run_cmd(mut cmd: tokio::process::Command, secrets: &[&str]) -> Run {
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .expect("snowgate finishes within 60 s")
        .expect("snowgate runs");
    let run = Run {
        code: out.status.code().expect("snowgate exits with a code"),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    for s in secrets {
        assert!(
            !run.output().contains(s),
            "a secret appears in the output:\n{}",
            run.output()
        );
    }
    run
}

/// `snowgate <args>` against `app`, the token given through SNOWGATE_TOKEN (as the help advises).
async fn cli(app: &TestApp, token: Option<&str>, args: &[&str]) -> Run {
    let mut cmd = command(args);
    cmd.env("SNOWGATE_URL", &app.address);
    if let Some(t) = token {
        cmd.env("SNOWGATE_TOKEN", t);
    }
    run_cmd(cmd, &[PIPELINE_TOKEN, OPERATOR_TOKEN]).await
}

fn id_of(gate: &GateView) -> String {
    gate.id.to_string()
}

/// `--json` output, read as the API type it prints.
pub(crate) fn json_of<T: DeserializeOwned>(run: &Run) -> T {
    serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", run.output()))
}

pub(crate) fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn the_list_shows_a_pending_gate_as_a_table_and_as_json() {
    let app = spawn_app().await;
    let id = id_of(&app.open("Deploy").await);
    let cr = app.change_of("Deploy");

    let run = cli(
        &app,
        Some(PIPELINE_TOKEN),
        &["gates", "list", "--state", "pending"],
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.output());
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", run.stdout);
    for column in [
        "ID", "STATE", "PROCEED", "JOB", "BUILD", "STAGE", "CR", "AGE",
    ] {
        assert!(lines[0].contains(column), "{column} missing: {}", lines[0]);
    }
    for cell in [
        id.as_str(),
        "pending",
        "shop/app",
        "42",
        "Deploy",
        cr.as_str(),
    ] {
        assert!(lines[1].contains(cell), "{cell} missing: {}", lines[1]);
    }

    let run = cli(
        &app,
        Some(PIPELINE_TOKEN),
        &["gates", "list", "--limit", "5", "--json"],
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.output());
    let v: GateList = json_of(&run);
    assert_eq!(v.count, 1);
    assert_eq!(v.gates[0].id.to_string(), id);
    assert_eq!(v.gates[0].state, GateState::Pending);

    // A filter that matches nothing says so.
    let run = cli(
        &app,
        Some(PIPELINE_TOKEN),
        &["gates", "list", "--state", "approved"],
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.output());
    assert_eq!(run.stdout.trim(), "no gates");
}

#[tokio::test]
async fn show_prints_the_gate_with_its_change_request() {
    let app = spawn_app().await;
    let id = id_of(&app.open("Deploy").await);
    let cr = app.change_of("Deploy");

    let run = cli(&app, Some(PIPELINE_TOKEN), &["gates", "show", &id]).await;
    assert_eq!(run.code, 0, "{}", run.output());
    assert!(run.stdout.contains("id:"), "{}", run.stdout);
    assert!(run.stdout.contains(&id));
    assert!(run.stdout.contains("pending"));
    assert!(
        run.stdout.contains(&format!("change request: {cr}")),
        "{}",
        run.stdout
    );

    let run = cli(
        &app,
        Some(PIPELINE_TOKEN),
        &["gates", "show", &id, "--json"],
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.output());
    let v: GateView = json_of(&run);
    assert_eq!(v.id.to_string(), id);
    assert_eq!(cr_number(&v), Some(cr.as_str()));
}

#[tokio::test]
async fn an_unknown_gate_is_an_api_error() {
    let app = spawn_app().await;
    let run = cli(
        &app,
        Some(PIPELINE_TOKEN),
        &["gates", "show", "5a0c1f4e-0000-4000-8000-000000000001"],
    )
    .await;
    assert_eq!(run.code, 3, "{}", run.output());
    assert!(run.stderr.contains("no gate"), "{}", run.stderr);
    assert!(run.stderr.contains("404"), "{}", run.stderr);
}

#[tokio::test]
async fn wait_exits_0_once_the_change_is_approved() {
    let app = spawn_app().await;
    let id = id_of(&app.open("Deploy").await);
    let started = Instant::now();
    let mut cmd = command(&["gates", "wait", &id, "--timeout", "60"]);
    cmd.env("SNOWGATE_URL", &app.address)
        .env("SNOWGATE_TOKEN", PIPELINE_TOKEN);
    let waiter = tokio::spawn(run_cmd(cmd, &[PIPELINE_TOKEN]));
    // Let the long-poll start before ServiceNow decides.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(!waiter.is_finished(), "wait returned before the decision");
    app.sim
        .approve(&app.change_of("Deploy"), "CAB approved")
        .await
        .unwrap();
    let run = waiter.await.unwrap();
    assert_eq!(run.code, 0, "{}", run.output());
    assert!(run.stdout.contains("approved"), "{}", run.stdout);
    assert!(run.stdout.contains("proceed:"), "{}", run.stdout);
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[tokio::test]
async fn wait_exits_1_after_an_operator_abort() {
    let app = spawn_app().await;
    let id = id_of(&app.open("Deploy").await);
    let run = cli(
        &app,
        Some(OPERATOR_TOKEN),
        &["gates", "abort", &id, "--reason", "wrong artifact"],
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.output());
    assert!(run.stdout.contains("aborted"), "{}", run.stdout);
    assert_eq!(app.gate(&id).await.state, GateState::Aborted);

    let run = cli(
        &app,
        Some(PIPELINE_TOKEN),
        &["gates", "wait", &id, "--timeout", "5", "--json"],
    )
    .await;
    assert_eq!(run.code, 1, "{}", run.output());
    let v: GateView = json_of(&run);
    assert_eq!(v.proceed, Some(false));
    assert_eq!(v.state, GateState::Aborted);

    // The audit trail names the operator and the reason.
    let run = cli(&app, Some(PIPELINE_TOKEN), &["gates", "events", &id]).await;
    assert_eq!(run.code, 0, "{}", run.output());
    let last = run.stdout.lines().last().unwrap();
    for cell in [
        "operator:alice",
        "aborted",
        "pending -> aborted",
        "wrong artifact",
    ] {
        assert!(last.contains(cell), "{cell} missing: {}", run.stdout);
    }
}

#[tokio::test]
async fn wait_exits_2_when_the_gate_is_still_pending_at_the_timeout() {
    let app = spawn_app().await;
    let id = id_of(&app.open("Deploy").await);
    let started = Instant::now();
    let run = cli(
        &app,
        Some(PIPELINE_TOKEN),
        &["gates", "wait", &id, "--timeout", "1"],
    )
    .await;
    assert_eq!(run.code, 2, "{}", run.output());
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert!(run.stdout.contains("pending"), "{}", run.stdout);
    assert!(run.stderr.contains("still pending"), "{}", run.stderr);
}

#[tokio::test]
async fn an_operator_resumes_a_held_stage_from_the_command_line() {
    let app = spawn_app().await;
    let id = id_of(&app.open("Deploy").await);
    // The token as a flag works too, and is not echoed either.
    let mut cmd = command(&[
        "gates",
        "resume",
        &id,
        "--reason",
        "CAB approved by phone",
        "--json",
        "--token",
        OPERATOR_TOKEN,
        "--url",
        &app.address,
    ]);
    cmd.env("SNOWGATE_URL", "http://127.0.0.1:1");
    let run = run_cmd(cmd, &[OPERATOR_TOKEN]).await;
    assert_eq!(run.code, 0, "{}", run.output());
    let v: GateView = json_of(&run);
    assert_eq!(v.state, GateState::Resumed);
    assert_eq!(v.proceed, Some(true));
    assert_eq!(v.decided_by.as_deref(), Some("operator:alice"));
    let events = app.events(&id).await;
    assert!(events
        .last()
        .unwrap()
        .message
        .contains("CAB approved by phone"));

    // A second decision conflicts: the API's message, exit 3.
    let run = cli(
        &app,
        Some(OPERATOR_TOKEN),
        &["gates", "abort", &id, "--reason", "too late"],
    )
    .await;
    assert_eq!(run.code, 3, "{}", run.output());
    assert!(run.stderr.contains("already resumed"), "{}", run.stderr);
    assert_eq!(app.gate(&id).await.state, GateState::Resumed);
}

#[tokio::test]
async fn a_pipeline_token_cannot_abort_and_gets_the_403_message() {
    let app = spawn_app().await;
    let id = id_of(&app.open("Deploy").await);
    let run = cli(
        &app,
        Some(PIPELINE_TOKEN),
        &["gates", "abort", &id, "--reason", "not mine to stop"],
    )
    .await;
    assert_eq!(run.code, 3, "{}", run.output());
    assert!(
        run.stderr.contains("an operator token is required"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("403"), "{}", run.stderr);
    assert_eq!(app.gate(&id).await.state, GateState::Pending);
}

#[tokio::test]
async fn a_missing_token_gets_the_401_message() {
    let app = spawn_app().await;
    app.open("Deploy").await;
    let run = cli(&app, None, &["gates", "list"]).await;
    assert_eq!(run.code, 3, "{}", run.output());
    assert!(
        run.stderr.contains("Authorization: Bearer <token>"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("401"), "{}", run.stderr);
    assert!(run.stdout.is_empty(), "{}", run.stdout);

    // With --json the API's error body is printed for scripts.
    let run = cli(&app, None, &["gates", "list", "--json"]).await;
    assert_eq!(run.code, 3, "{}", run.output());
    assert_eq!(json_of::<ErrorBody>(&run).error.code, "unauthorized");
}

#[tokio::test]
async fn an_unreachable_snowgate_exits_4() {
    let mut cmd = command(&["gates", "list"]);
    cmd.env(
        "SNOWGATE_URL",
        format!("http://127.0.0.1:{}", closed_port()),
    )
    .env("SNOWGATE_TOKEN", OPERATOR_TOKEN);
    let run = run_cmd(cmd, &[OPERATOR_TOKEN]).await;
    assert_eq!(run.code, 4, "{}", run.output());
    assert!(
        run.stderr.contains("cannot reach snowgate"),
        "{}",
        run.stderr
    );

    let mut cmd = command(&["gates", "list", "--url", "not-a-url"]);
    cmd.env("SNOWGATE_TOKEN", OPERATOR_TOKEN);
    let run = run_cmd(cmd, &[OPERATOR_TOKEN]).await;
    assert_eq!(run.code, 4, "{}", run.output());
}

#[tokio::test]
async fn the_help_documents_exit_codes_and_hides_the_token() {
    let mut cmd = command(&["gates", "wait", "--help"]);
    cmd.env("SNOWGATE_TOKEN", OPERATOR_TOKEN);
    let run = run_cmd(cmd, &[OPERATOR_TOKEN]).await;
    assert_eq!(run.code, 0, "{}", run.output());
    for line in ["Exit codes:", "  0  ", "  1  ", "  2  ", "  3  ", "  4  "] {
        assert!(run.stdout.contains(line), "{line} missing:\n{}", run.stdout);
    }
}

#[tokio::test]
async fn healthcheck_says_whether_snowgate_answers() {
    let app = spawn_app().await;
    let run = run_cmd(command(&["healthcheck", "--url", &app.address]), &[]).await;
    assert_eq!(run.code, 0, "{}", run.output());
    let run = run_cmd(
        command(&["healthcheck", "--ready", "--url", &app.address]),
        &[],
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.output());
    let closed = format!("http://127.0.0.1:{}", closed_port());
    let run = run_cmd(command(&["healthcheck", "--url", &closed]), &[]).await;
    assert_eq!(run.code, 1, "{}", run.output());
}

// ---------------------------------------------------------------------------------------------
// snowgate check

/// A configuration like `durability.rs::write_config`, with the ServiceNow part chosen by the test.
fn write_check_config(
    dir: &Path,
    instance: Option<&str>,
    sim_cfg: &SimSettings,
    sn_token: &str,
    callback_base: &str,
) -> PathBuf {
    let instance_line = instance
        .map(|u| format!("  instance_url: \"{u}\"\n"))
        .unwrap_or_default();
    let yaml = format!(
        r#"server:
  bind: "0.0.0.0:8080"
callback:
  public_base_url: "{callback_base}"
servicenow:
{instance_line}  tool_id: "{tool}"
  auth: token
  token: "{sn_token}"
  timeout: 5s
store:
  url: "sqlite://{db}"
auth:
  pipeline_tokens: [ {{ name: jenkins, token: "{pipeline}" }} ]
  operator_tokens: [ {{ name: alice, token: "{operator}" }} ]
"#,
        tool = sim_cfg.tool_id,
        db = dir.join("snowgate.db").display(),
        pipeline = PIPELINE_TOKEN,
        operator = OPERATOR_TOKEN,
    );
    let path = dir.join("snowgate.yaml");
    std::fs::write(&path, yaml).unwrap();
    path
}

async fn check(config: &Path, sn_token: &str) -> Run {
    let mut cmd = command(&["check", "--config"]);
    cmd.arg(config);
    run_cmd(cmd, &[sn_token, PIPELINE_TOKEN, OPERATOR_TOKEN]).await
}

async fn simulator() -> (SimHandle, SimSettings) {
    let cfg = sim_settings();
    let sim = servicenow_sim::start(cfg.clone())
        .await
        .expect("simulator starts");
    (sim, cfg)
}

#[tokio::test]
async fn check_passes_against_the_simulator_with_a_correct_configuration() {
    let (sim, cfg) = simulator().await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_check_config(
        dir.path(),
        Some(&sim.url()),
        &cfg,
        &cfg.token,
        "https://snowgate.ci.example.com/",
    );
    let run = check(&config, &cfg.token).await;
    assert_eq!(run.code, 0, "{}", run.output());
    let lines: Vec<&str> = run.stdout.lines().collect();
    let (summary, checks) = lines.split_last().unwrap();
    assert!(summary.starts_with("all checks passed"), "{summary}");
    for subject in [
        "configuration:",
        "ServiceNow connection:",
        "callback URL:",
        "Jenkins credentials:",
    ] {
        assert!(
            checks.iter().any(|l| l.contains(subject)),
            "{subject} missing:\n{}",
            run.stdout
        );
    }
    for line in checks {
        if line.contains("Jenkins credentials:") {
            assert_eq!(
                *line,
                "[skip] Jenkins credentials: skipped: no jenkins section configured"
            );
        } else {
            assert!(line.starts_with("[ok]"), "not ok: {line}\n{}", run.stdout);
        }
    }
    // It really asked ServiceNow.
    assert!(sim.requests().iter().any(|r| r.method == "GET"
        && r.path.ends_with("/orchestration/changeControl")
        && r.query_pairs()
            .contains(&("testConnection".to_string(), "true".to_string()))));
}

#[tokio::test]
async fn check_names_the_credentials_when_servicenow_refuses_them() {
    let (sim, cfg) = simulator().await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_check_config(
        dir.path(),
        Some(&sim.url()),
        &cfg,
        WRONG_SN_TOKEN,
        "https://snowgate.ci.example.com/",
    );
    let run = check(&config, WRONG_SN_TOKEN).await;
    assert_ne!(run.code, 0, "{}", run.output());
    let line = run
        .stdout
        .lines()
        .find(|l| l.contains("ServiceNow connection:"))
        .unwrap_or_else(|| panic!("no connection line:\n{}", run.stdout));
    assert!(line.starts_with("[FAIL]"), "{line}");
    assert!(line.contains("credentials refused"), "{line}");
    assert!(line.contains("401"), "{line}");
}

#[tokio::test]
async fn check_names_the_variable_of_a_missing_instance_url() {
    let (_sim, cfg) = simulator().await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_check_config(
        dir.path(),
        None,
        &cfg,
        &cfg.token,
        "https://snowgate.ci.example.com/",
    );
    let run = check(&config, &cfg.token).await;
    assert_ne!(run.code, 0, "{}", run.output());
    assert!(
        run.stdout
            .lines()
            .any(|l| l.starts_with("[FAIL]") && l.contains("SNOWGATE__SERVICENOW__INSTANCE_URL")),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .lines()
            .any(|l| l.starts_with("[skip] ServiceNow connection:")),
        "{}",
        run.stdout
    );
}

#[tokio::test]
async fn check_warns_about_a_loopback_callback_url_without_failing() {
    let (sim, cfg) = simulator().await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_check_config(
        dir.path(),
        Some(&sim.url()),
        &cfg,
        &cfg.token,
        "http://127.0.0.1:8080/",
    );
    let run = check(&config, &cfg.token).await;
    assert_eq!(run.code, 0, "{}", run.output());
    assert!(
        run.stdout
            .lines()
            .any(|l| l.starts_with("[warn] callback URL:") && l.contains("cannot reach")),
        "{}",
        run.stdout
    );
}

#[tokio::test]
async fn check_reports_a_configuration_that_does_not_load_as_one_failure() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("snowgate.yaml");
    std::fs::write(&path, "servicenow:\n  instance_ur: https://x.example\n").unwrap();
    let run = check(&path, &sim_settings().token).await;
    assert_ne!(run.code, 0, "{}", run.output());
    let fails: Vec<&str> = run
        .stdout
        .lines()
        .filter(|l| l.starts_with("[FAIL]"))
        .collect();
    assert_eq!(fails.len(), 1, "{}", run.stdout);
    assert!(fails[0].contains("instance_ur"), "{}", fails[0]);
}

#[tokio::test]
async fn check_tests_the_jenkins_credentials_when_configured() {
    let (sim, cfg) = simulator().await;
    let fake = crate::jenkins_fake::JenkinsFake::start().await;
    for (token, ok) in [
        (fake.token.clone(), true),
        ("not-the-api-token".to_string(), false),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let config = write_check_config(
            dir.path(),
            Some(&sim.url()),
            &cfg,
            &cfg.token,
            "https://snowgate.ci.example.com/",
        );
        let mut yaml = std::fs::read_to_string(&config).unwrap();
        yaml.push_str(&format!(
            "jenkins:\n  url: \"{}/\"\n  user: \"{}\"\n  api_token: \"{token}\"\n",
            fake.url, fake.user
        ));
        std::fs::write(&config, yaml).unwrap();
        let mut cmd = command(&["check", "--config"]);
        cmd.arg(&config);
        let run = run_cmd(cmd, &[&cfg.token, &token, PIPELINE_TOKEN, OPERATOR_TOKEN]).await;
        let line = run
            .stdout
            .lines()
            .find(|l| l.contains("Jenkins credentials:"))
            .unwrap()
            .to_string();
        if ok {
            assert_eq!(run.code, 0, "{}", run.output());
            assert!(line.starts_with("[ok]"), "{line}");
        } else {
            assert_ne!(run.code, 0);
            assert!(line.starts_with("[FAIL]") && line.contains("401"), "{line}");
        }
    }
    assert!(fake
        .requests()
        .iter()
        .all(|r| r.path == "/whoAmI/api/json" && r.authorization.is_some()));
}

#[tokio::test]
async fn freezes_are_declared_listed_and_deleted_from_the_command_line() {
    let app = spawn_app().await;
    let now = chrono::Utc::now();
    let (start, end) = (
        (now - chrono::Duration::minutes(1)).to_rfc3339(),
        (now + chrono::Duration::hours(1)).to_rfc3339(),
    );
    let add = [
        "freezes", "add", "--name", "Year end", "--start", &start, "--end", &end, "--reason",
        "holidays", "--job", "shop/*", "--json",
    ];
    // Declaring needs an operator token.
    let run = cli(&app, Some(PIPELINE_TOKEN), &add).await;
    assert_eq!(run.code, 3, "{}", run.output());
    assert!(
        run.output().contains("declare change freezes"),
        "{}",
        run.output()
    );
    let run = cli(&app, Some(OPERATOR_TOKEN), &add).await;
    assert_eq!(run.code, 0, "{}", run.output());
    let f: snowgate::api::FreezeView = json_of(&run);
    assert!(f.active);
    assert_eq!(f.freeze.jobs, vec!["shop/*"]);

    let run = cli(&app, Some(PIPELINE_TOKEN), &["freezes", "list"]).await;
    assert_eq!(run.code, 0, "{}", run.output());
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", run.stdout);
    for cell in [f.freeze.id.as_str(), "Year end", "active", "shop/*", "all"] {
        assert!(lines[1].contains(cell), "{cell} missing: {}", lines[1]);
    }
    // A bad end is the API's 400, naming the field.
    let run = cli(
        &app,
        Some(OPERATOR_TOKEN),
        &[
            "freezes", "add", "--name", "x", "--start", &end, "--end", &start, "--reason", "r",
        ],
    )
    .await;
    assert_eq!(run.code, 3, "{}", run.output());
    assert!(run.output().contains("end"), "{}", run.output());

    let run = cli(
        &app,
        Some(OPERATOR_TOKEN),
        &["freezes", "delete", &f.freeze.id],
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.output());
    assert!(run.stdout.contains("deleted"), "{}", run.stdout);
    let run = cli(&app, Some(PIPELINE_TOKEN), &["freezes", "list", "--json"]).await;
    let list: snowgate::api::FreezeList = json_of(&run);
    assert!(list.freezes.is_empty());
}
