//! `snowgate gates open [--wait]`: open a gate from flags or the CI's environment (GitHub
//! Actions, GitLab CI, Jenkins; see [`super::ci_env`]) and, with `--wait`, hold the job until
//! ServiceNow decides, through restarts and failovers of snowgate.
use std::time::{Duration, Instant};

use chrono::Utc;
use clap::{Args, ValueEnum};
use reqwest::Method;
use serde_json::{json, Map, Value};

use super::ci_env::{self, CiValues, Source};
use super::client::{Api, CallError};
use super::retry::Retry;
use super::{age, print_json, show, REQUEST_TIMEOUT};
use crate::api::{EventList, GateView};
use crate::configuration::parse_duration;
use crate::routes::gates::MAX_WAIT_SECS;

/// `gates open`: the stage may go on.
pub const OPEN_PROCEED: u8 = 0;
/// `gates open`: the gate is decided and the stage must stop.
pub const OPEN_STOP: u8 = 1;
/// `gates open`: a usage or configuration error, or snowgate unreachable after `--retry-for`.
pub const OPEN_ERROR: u8 = 2;

/// Shown under `snowgate gates open --help`.
pub const OPEN_EXIT_CODES: &str = "\
Values not given as flags come from the CI's environment (and on GitHub Actions and GitLab CI
the mode is change unless --mode says: ServiceNow DevOps registers only Jenkins jobs):
  GitHub Actions (GITHUB_ACTIONS=true): job URL $GITHUB_SERVER_URL/$GITHUB_REPOSITORY, build
    $GITHUB_RUN_ID followed by $GITHUB_RUN_ATTEMPT as three digits (run 9876543210 attempt 2 is
    build 9876543210002, so a re-run gets a decision of its own), stage $GITHUB_JOB, build URL
    …/actions/runs/$GITHUB_RUN_ID/attempts/$GITHUB_RUN_ATTEMPT, branch $GITHUB_REF_NAME
  GitLab CI (GITLAB_CI=true): $CI_PROJECT_URL, $CI_PIPELINE_ID, $CI_JOB_NAME, $CI_JOB_URL,
    branch $CI_COMMIT_REF_NAME, environment $CI_ENVIRONMENT_NAME
  Jenkins (JENKINS_URL or JOB_URL set): $JOB_URL, $BUILD_NUMBER, $STAGE_NAME, $BUILD_URL,
    branch $BRANCH_NAME

Exit codes of `gates open` (not those of `gates wait`, which has 0-4):
  0  the gate lets the stage go on (with --wait: decided with proceed true: approved, resumed,
     or not_controlled where snowgate lets those go on; without --wait: opened, and not
     decided with proceed false)
  1  the gate is decided with proceed false and the stage must stop (rejected, canceled,
     failed, timed out, aborted, superseded); without --wait too, when the open's answer is
     already such a gate (registration failed, or a repeated open found it decided)
  2  usage or configuration error (a missing value, a bad token or field: snowgate's message
     is printed), or snowgate still unreachable after --retry-for

Opening is safe to repeat: snowgate answers a second open of the same job URL, build and stage
with the gate the first one opened.

The token (a pipeline token) is read from --token or SNOWGATE_TOKEN; prefer the environment
variable, since command lines are visible to other users. It is never printed.";

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ModeArg {
    /// ServiceNow DevOps change control (the official Jenkins plugin's API).
    Devops,
    /// The Change Management API: snowgate finds or creates the change request itself.
    Change,
}

#[derive(Args, Debug)]
pub struct OpenArgs {
    /// The job's URL (default: from the CI, see below).
    #[arg(long)]
    pub job_url: Option<String>,
    /// The job's full name, e.g. `shop/app` (default: GITHUB_REPOSITORY, CI_PROJECT_PATH, JOB_NAME).
    #[arg(long)]
    pub job_name: Option<String>,
    /// The build number, digits (default: from the CI).
    #[arg(long)]
    pub build: Option<String>,
    /// The stage's name (default: from the CI).
    #[arg(long)]
    pub stage: Option<String>,
    /// The build's URL (default: from the CI).
    #[arg(long)]
    pub build_url: Option<String>,
    /// The branch (default: from the CI, when it says).
    #[arg(long)]
    pub branch: Option<String>,
    /// devops or change (default: change on GitHub Actions and GitLab CI, whose jobs the DevOps
    /// API cannot register; else snowgate's servicenow.default_mode).
    #[arg(long, value_enum, env = "SNOWGATE_MODE")]
    pub mode: Option<ModeArg>,
    /// Change mode: the environment deployed to, e.g. Production (required there).
    #[arg(long, env = "SNOWGATE_ENVIRONMENT")]
    pub environment: Option<String>,
    /// Change mode: check only this change request, e.g. CHG0030001.
    #[arg(long)]
    pub change_request: Option<String>,
    /// The change request's title (its short_description).
    #[arg(long)]
    pub short_description: Option<String>,
    /// The change request's description.
    #[arg(long)]
    pub description: Option<String>,
    /// Another change request field, FIELD=VALUE (repeatable; not impact, number, risk,
    /// risk_impact_analysis or sys_id, which ServiceNow refuses).
    #[arg(long = "cr-field", value_name = "FIELD=VALUE", value_parser = field_value)]
    pub cr_fields: Vec<(String, String)>,
    /// Change mode: create an emergency change.
    #[arg(long)]
    pub emergency: bool,
    /// Change mode: create a standard change from this template.
    #[arg(long)]
    pub standard_template: Option<String>,
    /// Decide older builds' open gates of the same job, branch and stage `superseded`.
    #[arg(long)]
    pub supersede: bool,
    /// snowgate decides the gate `timed_out` (stop) when ServiceNow has not decided this long
    /// after the change request is known ("30m", "4h"; the gate's changeStepTimeoutSecs).
    #[arg(long, value_parser = parse_duration)]
    pub timeout: Option<Duration>,
    /// Wait until the gate is decided; the exit code says the outcome.
    #[arg(long)]
    pub wait: bool,
    /// Keep retrying while snowgate cannot be reached (restart, failover) for this long in a
    /// row, before and after the gate is opened.
    #[arg(long, value_parser = parse_duration, default_value = "5m")]
    pub retry_for: Duration,
    /// With --wait: one progress line on stderr this often.
    #[arg(long, value_parser = parse_duration, default_value = "60")]
    pub progress_every: Duration,
}

fn field_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err("expected FIELD=VALUE, e.g. assignment_group=CAB".into()),
    }
}

/// `flag`, else the CI's value; a missing one is recorded in `missing`.
fn required(
    flag: &Option<String>,
    ci: &Option<String>,
    source: &Source,
    values: &CiValues,
    missing: &mut Vec<String>,
) -> Value {
    match flag.clone().or_else(|| ci.clone()) {
        Some(v) => Value::String(v),
        None => {
            missing.push(source.missing(values.ci));
            Value::Null
        }
    }
}

/// The `POST /api/v1/gates` body (README "HTTP API"), or every missing value's message.
pub fn request_body(args: &OpenArgs, ci: &CiValues) -> Result<Value, Vec<String>> {
    let mut missing = Vec::new();
    let mut body = Map::new();
    body.insert(
        "jobUrl".into(),
        required(
            &args.job_url,
            &ci.job_url,
            &ci_env::JOB_URL,
            ci,
            &mut missing,
        ),
    );
    body.insert(
        "buildNumber".into(),
        required(&args.build, &ci.build, &ci_env::BUILD, ci, &mut missing),
    );
    body.insert(
        "stageName".into(),
        required(&args.stage, &ci.stage, &ci_env::STAGE, ci, &mut missing),
    );
    let environment = args.environment.clone().or_else(|| ci.environment.clone());
    let mode = args.mode.or_else(|| default_mode(ci));
    if matches!(mode, Some(ModeArg::Change)) && environment.is_none() {
        missing.push(
            "no environment: change mode needs --environment (or SNOWGATE_ENVIRONMENT; \
             CI_ENVIRONMENT_NAME in GitLab CI)"
                .into(),
        );
    }
    if !missing.is_empty() {
        return Err(missing);
    }
    optional_fields(args, ci, mode, environment, &mut body);
    Ok(Value::Object(body))
}

/// The fields a gate may do without, where a flag or the CI gives them.
fn optional_fields(
    args: &OpenArgs,
    ci: &CiValues,
    mode: Option<ModeArg>,
    environment: Option<String>,
    body: &mut Map<String, Value>,
) {
    let mut put = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            body.insert(k.into(), v);
        }
    };
    let text =
        |a: &Option<String>, b: &Option<String>| a.clone().or_else(|| b.clone()).map(Value::String);
    put("buildUrl", text(&args.build_url, &ci.build_url));
    put("jobName", text(&args.job_name, &ci.job_name));
    put("branchName", text(&args.branch, &ci.branch));
    put("environment", environment.map(Value::String));
    put(
        "mode",
        mode.map(|m| {
            json!(match m {
                ModeArg::Devops => "devops",
                ModeArg::Change => "change",
            })
        }),
    );
    put(
        "changeRequestNumber",
        args.change_request.clone().map(Value::String),
    );
    put(
        "standardChangeTemplate",
        args.standard_template.clone().map(Value::String),
    );
    put("emergency", args.emergency.then_some(json!(true)));
    put("supersede", args.supersede.then_some(json!(true)));
    put(
        "changeStepTimeoutSecs",
        args.timeout.map(|t| json!(t.as_secs().max(1))),
    );
    put("changeRequestDetails", cr_details(args));
}

/// The mode when `--mode` is not given: change mode on GitHub Actions and GitLab CI, whose jobs
/// ServiceNow DevOps' orchestration API cannot take (its `toolType` is `jenkins`, its task names
/// `<item>#<stage>` of a Jenkins job URL); elsewhere snowgate's `servicenow.default_mode`.
fn default_mode(ci: &CiValues) -> Option<ModeArg> {
    match ci.ci {
        Some(ci_env::Ci::GitHub | ci_env::Ci::GitLab) => Some(ModeArg::Change),
        Some(ci_env::Ci::Jenkins) | None => None,
    }
}

/// `changeRequestDetails.attributes`: the title, description and `--cr-field`s.
fn cr_details(args: &OpenArgs) -> Option<Value> {
    let mut attrs = Map::new();
    for (k, v) in [
        ("short_description", &args.short_description),
        ("description", &args.description),
    ] {
        if let Some(v) = v {
            attrs.insert(k.into(), json!(v));
        }
    }
    for (k, v) in &args.cr_fields {
        attrs.insert(k.clone(), json!(v));
    }
    (!attrs.is_empty()).then(|| json!({ "attributes": attrs }))
}

/// Run `gates open`; the result is the exit code (see [`OPEN_EXIT_CODES`]).
pub async fn run(api: Result<Api, CallError>, args: OpenArgs, json_output: bool) -> u8 {
    let ci = ci_env::values(&|k| std::env::var(k).ok());
    let body = match request_body(&args, &ci) {
        Ok(b) => b,
        Err(missing) => {
            for m in missing {
                eprintln!("snowgate: {m}");
            }
            return OPEN_ERROR;
        }
    };
    let api = match api {
        Ok(a) => a,
        Err(e) => {
            e.report(json_output);
            return OPEN_ERROR;
        }
    };
    let mut retry = Retry::new(args.retry_for, args.progress_every);
    let outcome = match open(&api, &body, &mut retry).await {
        Ok(gate) if !args.wait => {
            show(&gate, json_output);
            Ok(no_wait_exit_code(&gate))
        }
        Ok(gate) => wait(&api, gate, &args, &mut retry, json_output).await,
        Err(e) => Err(e),
    };
    match outcome {
        Ok(code) => code,
        Err(e) => {
            e.report(json_output);
            OPEN_ERROR
        }
    }
}

/// Without `--wait`: the open's answer can already be a stop (registration failed, or a
/// retried job got back a gate that was rejected or superseded meanwhile); a script that goes on
/// after exit 0 must not deploy then.
fn no_wait_exit_code(gate: &GateView) -> u8 {
    if gate.proceed == Some(false) {
        OPEN_STOP
    } else {
        OPEN_PROCEED
    }
}

/// POST the gate, repeated while snowgate cannot answer. A repeat is safe: snowgate answers an
/// open of a (jobUrl, buildNumber, stageName) it already has with that gate (200, not a second
/// gate; `GateStore::open_gate`), also when the first POST was stored but its answer was lost,
/// and a repeated `supersede` changes nothing the first one did.
async fn open(api: &Api, body: &Value, retry: &mut Retry) -> Result<GateView, CallError> {
    let url = api.url(&["api", "v1", "gates"], &[]);
    loop {
        match api
            .call::<GateView>(Method::POST, url.clone(), Some(body), REQUEST_TIMEOUT)
            .await
        {
            Ok(gate) => {
                retry.succeeded();
                eprintln!(
                    "snowgate: gate {} for {} build {} stage {}: {}",
                    gate.id, gate.job_url, gate.build_number, gate.stage_name, gate.state
                );
                return Ok(gate);
            }
            Err(e) if retry.again(&e).await => {}
            Err(e) => return Err(e),
        }
    }
}

/// Long-polls until the gate is decided, a progress line each `--progress-every`.
async fn wait(
    api: &Api,
    mut gate: GateView,
    args: &OpenArgs,
    retry: &mut Retry,
    json_output: bool,
) -> Result<u8, CallError> {
    let id = gate.id.to_string();
    let every = args.progress_every.max(Duration::from_secs(1));
    let mut last_line = Instant::now();
    eprintln!("{}", progress_line(&gate));
    while gate.proceed.is_none() {
        let until_line = every.saturating_sub(last_line.elapsed());
        let secs = (until_line.as_millis().div_ceil(1000) as u64).clamp(1, MAX_WAIT_SECS);
        let url = api.url(
            &["api", "v1", "gates", &id, "wait"],
            &[("timeout", &secs.to_string())],
        );
        let started = Instant::now();
        let answer = api
            .call::<GateView>(
                Method::GET,
                url,
                None::<&()>,
                Duration::from_secs(secs) + REQUEST_TIMEOUT,
            )
            .await;
        match answer {
            Ok(g) => {
                retry.succeeded();
                gate = g;
                if gate.proceed.is_none() && last_line.elapsed() >= every {
                    eprintln!("{}", progress_line(&gate));
                    last_line = Instant::now();
                }
                // A long-poll answered early and undecided (snowgate stopping): do not spin.
                if gate.proceed.is_none() && started.elapsed() < Duration::from_millis(500) {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
            Err(e) if retry.again(&e).await => {}
            Err(e) => return Err(e),
        }
    }
    report_decision(api, &gate).await;
    if json_output {
        print_json(&gate);
    } else {
        show(&gate, false);
    }
    Ok(if gate.proceed == Some(true) {
        OPEN_PROCEED
    } else {
        OPEN_STOP
    })
}

/// `snowgate: gate … pending for 3m; CHG0030001 (Assess) https://…; <message>`.
pub fn progress_line(g: &GateView) -> String {
    let mut line = format!(
        "snowgate: gate {} {} for {}",
        g.id,
        g.state,
        age(&g.created_at, Utc::now())
    );
    if let Some(cr) = &g.change_request {
        if let Some(n) = &cr.number {
            line.push_str(&format!("; {n}"));
        }
        if let Some(s) = &cr.state {
            line.push_str(&format!(" ({s})"));
        }
        if let Some(u) = &cr.url {
            line.push_str(&format!(" {u}"));
        }
    }
    if !g.message.is_empty() {
        line.push_str(&format!("; {}", g.message));
    }
    line
}

/// The decision on stderr: the outcome, who decided, ServiceNow's comments (the gate's message
/// carries them, as the plugin words it) and the decision event's own text when it differs.
async fn report_decision(api: &Api, g: &GateView) {
    let verdict = if g.proceed == Some(true) {
        "the stage may go on"
    } else {
        "the stage must stop"
    };
    eprintln!(
        "snowgate: gate {} {}: {verdict} (decided by {})",
        g.id,
        g.state,
        g.decided_by.as_deref().unwrap_or("-")
    );
    eprintln!("snowgate: message: {}", g.message);
    if let Some(c) = g
        .change_request
        .as_ref()
        .and_then(|c| c.comments.as_deref())
    {
        if !c.is_empty() && !g.message.contains(c) {
            eprintln!("snowgate: ServiceNow comments: {c}");
        }
    }
    // The audit trail is extra: without it the decision above still stands.
    let events: Result<EventList, _> = api.get(api.gate_url(&g.id.to_string(), &["events"])).await;
    if let Ok(list) = events {
        if let Some(e) = list
            .events
            .iter()
            .rev()
            .find(|e| e.to_state == Some(g.state))
        {
            if e.message != g.message {
                eprintln!("snowgate: {} ({}): {}", e.kind, e.actor, e.message);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        open: OpenArgs,
    }

    fn args(a: &[&str]) -> OpenArgs {
        Cli::try_parse_from(std::iter::once("open").chain(a.iter().copied()))
            .unwrap()
            .open
    }

    #[test]
    fn flags_override_the_ci_and_the_ci_fills_the_rest() {
        let ci = CiValues {
            ci: Some(ci_env::Ci::Jenkins),
            job_url: Some("https://ci/job/app/".into()),
            build: Some("42".into()),
            stage: Some("Deploy".into()),
            build_url: Some("https://ci/job/app/42/".into()),
            ..CiValues::default()
        };
        let a = args(&[
            "--stage",
            "Prod",
            "--mode",
            "change",
            "--environment",
            "Production",
            "--short-description",
            "Deploy app 42",
            "--cr-field",
            "assignment_group=CAB",
            "--timeout",
            "2h",
            "--supersede",
        ]);
        let b = request_body(&a, &ci).unwrap();
        assert_eq!(b["jobUrl"], "https://ci/job/app/");
        assert_eq!(b["buildNumber"], "42");
        assert_eq!(b["stageName"], "Prod");
        assert_eq!(b["buildUrl"], "https://ci/job/app/42/");
        assert_eq!(b["mode"], "change");
        assert_eq!(b["environment"], "Production");
        assert_eq!(b["supersede"], true);
        assert_eq!(b["changeStepTimeoutSecs"], 7200);
        assert_eq!(
            b["changeRequestDetails"]["attributes"],
            json!({"short_description": "Deploy app 42", "assignment_group": "CAB"})
        );
        assert!(b.get("branchName").is_none() && b.get("emergency").is_none());
    }

    #[test]
    fn github_and_gitlab_jobs_are_change_mode_gates_unless_the_flag_says() {
        let ci = CiValues {
            ci: Some(ci_env::Ci::GitHub),
            job_url: Some("https://github.com/shop/app".into()),
            build: Some("7001".into()),
            stage: Some("deploy".into()),
            ..CiValues::default()
        };
        let e = request_body(&args(&[]), &ci).unwrap_err();
        assert!(e[0].contains("--environment"), "{e:?}");
        let b = request_body(&args(&["--environment", "Production"]), &ci).unwrap();
        assert_eq!(b["mode"], "change");
        let b = request_body(&args(&["--mode", "devops"]), &ci).unwrap();
        assert_eq!(b["mode"], "devops");
        let jenkins = CiValues {
            ci: Some(ci_env::Ci::Jenkins),
            ..ci
        };
        assert!(request_body(&args(&[]), &jenkins)
            .unwrap()
            .get("mode")
            .is_none());
    }

    #[test]
    fn every_missing_value_is_named_with_its_flag() {
        let e = request_body(&args(&["--mode", "change"]), &CiValues::default()).unwrap_err();
        assert_eq!(e.len(), 4, "{e:?}");
        for (m, flag) in e
            .iter()
            .zip(["--job-url", "--build", "--stage", "--environment"])
        {
            assert!(m.contains(flag), "{flag} missing from {m}");
        }
    }

    #[test]
    fn a_cr_field_needs_a_name_and_an_equals_sign() {
        assert_eq!(
            field_value("a=b=c").unwrap(),
            ("a".to_string(), "b=c".to_string())
        );
        assert!(field_value("novalue").is_err());
        assert!(field_value("=x").is_err());
    }
}
