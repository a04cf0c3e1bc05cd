//! The operator client: `snowgate gates …` and `snowgate healthcheck`, talking to a running
//! sidecar over its HTTP API (README "HTTP API"). Tables for people, `--json` for scripts, and
//! exit codes a script can branch on (see [`EXIT_CODES`]).
use std::time::{Duration, Instant};

use chrono::Utc;
use clap::{Args, Subcommand};
use reqwest::Method;
use serde::Serialize;

use crate::api::{EventList, GateList, GateView};
use crate::configuration::{parse_duration, Secret};
use crate::routes::gates::MAX_WAIT_SECS;

mod attach;
mod ci_env;
mod client;
pub mod docs;
mod freezes;
mod open;
mod render;
mod retry;

pub use attach::AttachArgs;
use client::{display_url, Api, CallError};
pub use freezes::{freeze_table, run_freezes, FreezesArgs, FreezesCommand};
pub use open::OpenArgs;
use open::{OPEN_ERROR, OPEN_EXIT_CODES};
pub use render::{age, event_table, gate_details, gate_table};

pub const DEFAULT_URL: &str = "http://127.0.0.1:8080";

/// The stage may go on (`gates wait`: the gate's `proceed` is true); any other command succeeded.
pub const EXIT_OK: u8 = 0;
/// `gates wait`: the gate is decided and its `proceed` is false; the stage must stop.
pub const EXIT_STOP: u8 = 1;
/// `gates wait`: still undecided when `--timeout` ran out.
pub const EXIT_UNDECIDED: u8 = 2;
/// snowgate answered with an error (4xx/5xx): a bad token, unknown gate, already decided, …
pub const EXIT_API_ERROR: u8 = 3;
/// snowgate could not be reached (connection refused, DNS, timeout, invalid --url).
pub const EXIT_UNREACHABLE: u8 = 4;

/// Shown under `snowgate gates --help` and `snowgate gates wait --help`.
pub const EXIT_CODES: &str = "\
Exit codes:
  0  success; for `gates wait`: the gate is decided and `proceed` is true (the stage may go on)
  1  `gates wait`: the gate is decided and `proceed` is false (the stage must stop)
  2  `gates wait`: still undecided when --timeout ran out (also clap's code for a usage error)
  3  snowgate answered with an error (bad or missing token, unknown gate, already decided, …);
     its message is printed
  4  snowgate could not be reached (connection refused, DNS, timeout, invalid --url)

`gates open` has codes of its own (0 proceed, 1 stop, 2 usage, configuration or connection
error after retries; see `gates open --help`).

The token is read from --token or SNOWGATE_TOKEN; prefer the environment variable, since command
lines are visible to other users. It is never printed.";

/// How long an ordinary API call may take; a long-poll gets its own wait on top of this.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Docker and Kubernetes give a health check a few seconds; answer well inside that.
const HEALTHCHECK_TIMEOUT: Duration = Duration::from_secs(3);
/// Default `gates wait --timeout`: one long-poll at the server's maximum.
const DEFAULT_WAIT: &str = "300";

fn parse_secret(s: &str) -> Result<Secret, String> {
    Ok(Secret::new(s.trim()))
}

/// Where snowgate is and how to authenticate; shared by every `gates` subcommand.
#[derive(Args, Clone, Debug)]
pub struct ApiArgs {
    /// snowgate's base URL.
    #[arg(long, env = "SNOWGATE_URL", default_value = DEFAULT_URL, global = true)]
    pub url: String,
    /// Bearer token (an operator token for resume/abort). Prefer SNOWGATE_TOKEN.
    #[arg(
        long,
        env = "SNOWGATE_TOKEN",
        hide_env_values = true,
        value_parser = parse_secret,
        global = true
    )]
    pub token: Option<Secret>,
    /// Print the API's JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct GatesArgs {
    #[command(flatten)]
    pub api: ApiArgs,
    #[command(subcommand)]
    pub command: GatesCommand,
}

#[derive(Subcommand, Debug)]
pub enum GatesCommand {
    /// Open a gate for this CI job (GitHub Actions, GitLab CI, Jenkins or flags); with --wait,
    /// hold the job until ServiceNow decides. Exit codes 0 proceed, 1 stop, 2 error.
    #[command(after_help = OPEN_EXIT_CODES)]
    Open(Box<OpenArgs>),
    /// Put a file or a link on the gate's change request as evidence.
    Attach(AttachArgs),
    /// List gates, newest first.
    List {
        /// Only gates in this state (pending, registering, approved, rejected, aborted, …).
        #[arg(long)]
        state: Option<String>,
        /// At most this many gates (1–1000; the server's default is 100).
        #[arg(long)]
        limit: Option<u32>,
    },
    /// Show one gate.
    Show { id: String },
    /// Wait until the gate is decided; the exit code says the outcome (0 go on, 1 stop, 2
    /// undecided, 3 API error, 4 unreachable: not the codes of `gates open --wait`).
    #[command(after_help = EXIT_CODES)]
    Wait {
        id: String,
        /// Give up after this long ("90", "30s", "2h"); long-polls of at most 300 s are repeated
        /// until then. 0 reads the gate once.
        #[arg(long, value_parser = parse_duration, default_value = DEFAULT_WAIT)]
        timeout: Duration,
    },
    /// Release a held stage by hand (operator token; the reason goes to the audit trail).
    Resume {
        id: String,
        #[arg(long)]
        reason: String,
    },
    /// Stop a held stage by hand (operator token; the reason goes to the audit trail).
    Abort {
        id: String,
        #[arg(long)]
        reason: String,
    },
    /// Show a gate's audit trail: who did what, when, from which state to which.
    Events { id: String },
}

#[derive(Args, Debug)]
pub struct HealthcheckArgs {
    /// snowgate's base URL.
    #[arg(long, env = "SNOWGATE_URL", default_value = DEFAULT_URL)]
    pub url: String,
    /// Check /readyz (the store answers) instead of /healthz (the process is up).
    #[arg(long)]
    pub ready: bool,
}

fn print_json(v: &impl Serialize) {
    match serde_json::to_string_pretty(v) {
        Ok(text) => println!("{text}"),
        Err(e) => eprintln!("snowgate: cannot print the answer as JSON: {e}"),
    }
}

/// Run a `snowgate gates …` command; the result is the process's exit code.
pub async fn run_gates(args: GatesArgs) -> u8 {
    let json_output = args.api.json;
    if let GatesCommand::Open(open_args) = args.command {
        let api = Api::new(&args.api.url, args.api.token.clone());
        return open::run(api, *open_args, json_output).await;
    }
    match gates(args).await {
        Ok(code) => code,
        Err(e) => e.report(json_output),
    }
}

async fn gates(args: GatesArgs) -> Result<u8, CallError> {
    let api = Api::new(&args.api.url, args.api.token.clone())?;
    let json_output = args.api.json;
    match args.command {
        GatesCommand::List { state, limit } => {
            let limit = limit.map(|l| l.to_string());
            let mut query = Vec::new();
            if let Some(s) = &state {
                query.push(("state", s.as_str()));
            }
            if let Some(l) = &limit {
                query.push(("limit", l.as_str()));
            }
            let list: GateList = api.get(api.url(&["api", "v1", "gates"], &query)).await?;
            if json_output {
                print_json(&list);
            } else if list.gates.is_empty() {
                println!("no gates");
            } else {
                print!("{}", gate_table(&list.gates, Utc::now()));
            }
            Ok(EXIT_OK)
        }
        GatesCommand::Show { id } => {
            let gate: GateView = api.get(api.gate_url(&id, &[])).await?;
            show(&gate, json_output);
            Ok(EXIT_OK)
        }
        GatesCommand::Events { id } => {
            let list: EventList = api.get(api.gate_url(&id, &["events"])).await?;
            if json_output {
                print_json(&list);
            } else {
                print!("{}", event_table(&list.events));
            }
            Ok(EXIT_OK)
        }
        GatesCommand::Resume { id, reason } => act(&api, &id, "resume", &reason, json_output).await,
        GatesCommand::Abort { id, reason } => act(&api, &id, "abort", &reason, json_output).await,
        GatesCommand::Wait { id, timeout } => wait(&api, &id, timeout, json_output).await,
        GatesCommand::Attach(a) => attach::attach(&api, a, json_output).await,
        // Dispatched by `run_gates`, with its own exit codes.
        GatesCommand::Open(_) => Ok(OPEN_ERROR),
    }
}

fn show(gate: &GateView, json_output: bool) {
    if json_output {
        print_json(gate);
    } else {
        print!("{}", gate_details(gate, Utc::now()));
    }
}

async fn act(
    api: &Api,
    id: &str,
    action: &str,
    reason: &str,
    json_output: bool,
) -> Result<u8, CallError> {
    let url = api.gate_url(id, &[action]);
    #[derive(Serialize)]
    struct Reason<'a> {
        reason: &'a str,
    }
    let gate: GateView = api
        .call(Method::POST, url, Some(&Reason { reason }), REQUEST_TIMEOUT)
        .await?;
    show(&gate, json_output);
    Ok(EXIT_OK)
}

/// The exit code a decided gate stands for, or `None` while undecided.
pub fn decision_exit_code(gate: &GateView) -> Option<u8> {
    match gate.proceed {
        Some(true) => Some(EXIT_OK),
        Some(false) => Some(EXIT_STOP),
        None => None,
    }
}

/// Repeated long-polls (each at most the server's 300 s) until a decision or the deadline.
async fn wait(api: &Api, id: &str, timeout: Duration, json_output: bool) -> Result<u8, CallError> {
    let deadline = Instant::now() + timeout;
    let mut answered = false;
    let mut backoff = Duration::from_millis(500);
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        // Round up so the last poll covers the whole remaining time.
        let secs = remaining
            .as_millis()
            .div_ceil(1000)
            .min(u128::from(MAX_WAIT_SECS)) as u64;
        let url = api.url(
            &["api", "v1", "gates", id, "wait"],
            &[("timeout", &secs.to_string())],
        );
        let started = Instant::now();
        let answer: Result<GateView, _> = api
            .call(
                Method::GET,
                url,
                None::<&()>,
                Duration::from_secs(secs) + REQUEST_TIMEOUT,
            )
            .await;
        match answer {
            Ok(gate) => {
                answered = true;
                backoff = Duration::from_millis(500);
                if let Some(code) = decision_exit_code(&gate) {
                    show(&gate, json_output);
                    return Ok(code);
                }
                if Instant::now() >= deadline {
                    show(&gate, json_output);
                    eprintln!(
                        "snowgate: gate {id} is still {} after {}",
                        gate.state,
                        humantime::format_duration(timeout)
                    );
                    return Ok(EXIT_UNDECIDED);
                }
                // A long-poll that came back early without a decision (snowgate stopping):
                // do not spin.
                if started.elapsed() < Duration::from_secs(1) {
                    tokio::time::sleep(
                        Duration::from_secs(1)
                            .min(deadline.saturating_duration_since(Instant::now())),
                    )
                    .await;
                }
            }
            // Once snowgate has answered, a lost connection is most likely a restart: keep
            // waiting (the gate and its decision are in its store) until the deadline.
            Err(CallError::Unreachable(m)) if answered && Instant::now() < deadline => {
                eprintln!("snowgate: {m}; retrying");
                tokio::time::sleep(backoff.min(deadline.saturating_duration_since(Instant::now())))
                    .await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
            Err(e) => return Err(e),
        }
    }
}

/// `snowgate healthcheck`: 0 when `/healthz` (or `/readyz`) answers 200, else 1. For container
/// health checks, where the image has no curl.
pub async fn healthcheck(args: HealthcheckArgs) -> u8 {
    let api = match Api::new(&args.url, None) {
        Ok(a) => a,
        Err(
            CallError::Unreachable(m) | CallError::Usage(m) | CallError::Api { message: m, .. },
        ) => {
            eprintln!("snowgate: {m}");
            return 1;
        }
    };
    let path = if args.ready { "readyz" } else { "healthz" };
    let url = api.url(&[path], &[]);
    let answer: Result<serde::de::IgnoredAny, _> = api
        .call(Method::GET, url.clone(), None::<&()>, HEALTHCHECK_TIMEOUT)
        .await;
    match answer {
        Ok(_) => {
            println!("ok: {} answered 200", display_url(&url));
            0
        }
        Err(
            CallError::Api { message, .. }
            | CallError::Unreachable(message)
            | CallError::Usage(message),
        ) => {
            eprintln!("unhealthy: {message}");
            1
        }
    }
}

#[cfg(test)]
pub(crate) mod fixtures {
    use chrono::{DateTime, Utc};
    use serde_json::json;

    use crate::api::{EventView, GateView};

    pub fn gate() -> GateView {
        serde_json::from_value(json!({
            "id": "5a0c1f4e-0000-4000-8000-000000000001",
            "state": "pending",
            "proceed": null,
            "message": "Waiting for approval of CHG0030001",
            "jobUrl": "https://ci.example.com/job/shop/job/app/",
            "buildNumber": "42",
            "stageName": "Deploy",
            "changeRequest": {"number": "CHG0030001", "url": "https://sn/chg", "state": "Assess"},
            "createdAt": "2026-01-01T10:00:00.000Z",
            "decidedAt": null,
            "decidedBy": null,
            "mode": "devops",
            "updatedAt": "2026-01-01T10:00:00.000Z",
            "links": {"self": "/api/v1/gates/x", "wait": "/api/v1/gates/x/wait",
                      "events": "/api/v1/gates/x/events"},
        }))
        .unwrap()
    }

    pub fn event(v: serde_json::Value) -> EventView {
        serde_json::from_value(v).unwrap()
    }

    pub fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-01-01T10:05:30Z")
            .unwrap()
            .with_timezone(&Utc)
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::gate;
    use super::*;

    #[test]
    fn only_a_boolean_proceed_is_a_decision() {
        let mut g = gate();
        assert_eq!(decision_exit_code(&g), None);
        g.proceed = Some(true);
        assert_eq!(decision_exit_code(&g), Some(EXIT_OK));
        g.proceed = Some(false);
        assert_eq!(decision_exit_code(&g), Some(EXIT_STOP));
    }
}
