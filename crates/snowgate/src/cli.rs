//! The operator client: `snowgate gates …` and `snowgate healthcheck`, talking to a running
//! sidecar over its HTTP API (README "HTTP API"). Tables for people, `--json` for scripts, and
//! exit codes a script can branch on (see [`EXIT_CODES`]).
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::api::{ErrorBody, EventList, EventView, GateList, GateView};

use crate::configuration::{parse_duration, Secret};
use crate::domain::names::job_segments;
use crate::routes::gates::MAX_WAIT_SECS;

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
    /// Wait until the gate is decided; the exit code says the outcome (0 go on, 1 stop, 2 undecided).
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

/// Why a call did not give a usable answer.
#[derive(Debug)]
enum CallError {
    /// snowgate answered 4xx/5xx (or something that is not its JSON).
    Api {
        status: u16,
        code: String,
        message: String,
        body: Option<ErrorBody>,
    },
    /// No answer at all.
    Unreachable(String),
}

impl CallError {
    fn exit_code(&self) -> u8 {
        match self {
            CallError::Api { .. } => EXIT_API_ERROR,
            CallError::Unreachable(_) => EXIT_UNREACHABLE,
        }
    }

    /// The message on stderr; with `--json`, the API's error body on stdout as well.
    fn report(&self, json_output: bool) -> u8 {
        match self {
            CallError::Api {
                status,
                code,
                message,
                body,
            } => {
                if let (true, Some(b)) = (json_output, body) {
                    print_json(b);
                }
                eprintln!("snowgate: {message} (HTTP {status}, {code})");
            }
            CallError::Unreachable(m) => eprintln!("snowgate: {m}"),
        }
        self.exit_code()
    }
}

/// A URL as shown to people: without user:password, which may carry secrets.
fn display_url(u: &url::Url) -> String {
    let mut shown = u.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.to_string()
}

/// reqwest's message with its cause chain, without the URL (shown separately, credential-free).
fn describe_reqwest(e: reqwest::Error) -> String {
    if e.is_timeout() {
        return "no answer in time".to_string();
    }
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

/// The error an answer's status and body stand for: the API's `{"error":{"code","message"}}`
/// when it sent one, else the bare status (a proxy's 502 page, say).
fn api_error(status: reqwest::StatusCode, body: Option<ErrorBody>) -> CallError {
    let (code, message) = match &body {
        Some(b) => (b.error.code.clone(), b.error.message.clone()),
        None => (
            "http_error".to_string(),
            format!(
                "snowgate answered {} {}",
                status.as_u16(),
                status.canonical_reason().unwrap_or("")
            )
            .trim_end()
            .to_string(),
        ),
    };
    CallError::Api {
        status: status.as_u16(),
        code,
        message,
        body,
    }
}

/// A client of one snowgate: base URL, optional bearer token, one reqwest client.
struct Api {
    http: reqwest::Client,
    base: url::Url,
    token: Option<Secret>,
}

impl Api {
    fn new(base: &str, token: Option<Secret>) -> Result<Api, CallError> {
        let base = url::Url::parse(base.trim())
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
            .ok_or_else(|| {
                CallError::Unreachable(format!(
                    "--url / SNOWGATE_URL must be an http(s) URL such as {DEFAULT_URL}"
                ))
            })?;
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("snowgate-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| CallError::Unreachable(describe_reqwest(e)))?;
        Ok(Api { http, base, token })
    }

    /// `<base>/<segments…>?<query>`: segments and values are encoded, never formatted in, so a
    /// gate id like `../x` stays one segment. A base with a path (behind an ingress) is kept.
    fn url(&self, segments: &[&str], query: &[(&str, &str)]) -> url::Url {
        let mut u = self.base.clone();
        u.set_query(None);
        u.set_fragment(None);
        if let Ok(mut path) = u.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        if !query.is_empty() {
            u.query_pairs_mut().extend_pairs(query);
        }
        u
    }

    fn gate_url(&self, id: &str, tail: &[&str]) -> url::Url {
        let mut segments = vec!["api", "v1", "gates", id];
        segments.extend_from_slice(tail);
        self.url(&segments, &[])
    }

    /// One request; a 2xx answer is read as `T`, anything else as the API's error body.
    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        url: url::Url,
        body: Option<&impl Serialize>,
        timeout: Duration,
    ) -> Result<T, CallError> {
        let shown = display_url(&url);
        let mut req = self
            .http
            .request(method, url)
            .timeout(timeout)
            .header(reqwest::header::ACCEPT, "application/json");
        if let Some(t) = &self.token {
            req = req.bearer_auth(t.expose());
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let unreachable = |e: reqwest::Error| {
            CallError::Unreachable(format!(
                "cannot reach snowgate at {shown}: {}",
                describe_reqwest(e)
            ))
        };
        let resp = req.send().await.map_err(unreachable)?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(unreachable)?;
        if !status.is_success() {
            return Err(api_error(status, serde_json::from_slice(&bytes).ok()));
        }
        serde_json::from_slice(&bytes).map_err(|e| CallError::Api {
            status: status.as_u16(),
            code: "not_json".into(),
            message: format!(
                "{shown} answered {status} with a body that is not snowgate's JSON: {e}"
            ),
            body: None,
        })
    }

    async fn get<T: DeserializeOwned>(&self, url: url::Url) -> Result<T, CallError> {
        self.call(Method::GET, url, None::<&()>, REQUEST_TIMEOUT)
            .await
    }
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
        Err(CallError::Unreachable(m) | CallError::Api { message: m, .. }) => {
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
        Err(CallError::Api { message, .. }) | Err(CallError::Unreachable(message)) => {
            eprintln!("unhealthy: {message}");
            1
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Rendering (pure, unit-tested)

fn proceed_text(g: &GateView) -> &'static str {
    match g.proceed {
        Some(true) => "yes",
        Some(false) => "no",
        None => "-",
    }
}

/// `shop/app` for `https://ci/job/shop/job/app/`; the URL itself when it has no `/job/` parts.
fn job_name(job_url: &str) -> String {
    let segs = job_segments(job_url);
    if segs.is_empty() {
        job_url.to_string()
    } else {
        segs.join("/")
    }
}

fn cr_number(g: &GateView) -> &str {
    g.change_request
        .as_ref()
        .and_then(|c| c.number.as_deref())
        .unwrap_or("-")
}

/// `42s`, `5m`, `3h`, `2d` since `created` (an RFC 3339 time).
pub fn age(created: &str, now: DateTime<Utc>) -> String {
    let Ok(t) = DateTime::parse_from_rfc3339(created) else {
        return "-".into();
    };
    let secs = (now - t.with_timezone(&Utc)).num_seconds().max(0);
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86_400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

/// Columns padded to their widest cell; the last column is not padded.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let last = row.len().saturating_sub(1);
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i == last {
                line.push_str(cell);
            } else {
                let pad = widths[i] - cell.chars().count();
                line.push_str(cell);
                line.push_str(&" ".repeat(pad + 2));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `gates list`: ID STATE PROCEED JOB BUILD STAGE CR AGE.
pub fn gate_table(gates: &[GateView], now: DateTime<Utc>) -> String {
    let rows: Vec<Vec<String>> = gates
        .iter()
        .map(|g| {
            vec![
                g.id.to_string(),
                g.state.to_string(),
                proceed_text(g).to_string(),
                job_name(&g.job_url),
                g.build_number.clone(),
                g.stage_name.clone(),
                cr_number(g).to_string(),
                age(&g.created_at, now),
            ]
        })
        .collect();
    table(
        &[
            "ID", "STATE", "PROCEED", "JOB", "BUILD", "STAGE", "CR", "AGE",
        ],
        &rows,
    )
}

fn or_dash(s: Option<&str>) -> String {
    match s {
        Some(s) if !s.is_empty() => s.to_string(),
        _ => "-".to_string(),
    }
}

/// `CHG0030001 (Assess) https://…`, or `-` without a change request.
fn cr_line(g: &GateView) -> String {
    let Some(c) = &g.change_request else {
        return "-".to_string();
    };
    let mut s = cr_number(g).to_string();
    if let Some(state) = &c.state {
        s.push_str(&format!(" ({state})"));
    }
    if let Some(url) = &c.url {
        s.push_str(&format!(" {url}"));
    }
    s
}

/// `gates show` / `wait` / `resume` / `abort`: one `key: value` line per field.
pub fn gate_details(g: &GateView, now: DateTime<Utc>) -> String {
    let created = &g.created_at;
    let rows = [
        ("id", g.id.to_string()),
        ("state", g.state.to_string()),
        ("proceed", proceed_text(g).to_string()),
        ("message", or_dash(Some(&g.message))),
        ("job", job_name(&g.job_url)),
        ("job url", or_dash(Some(&g.job_url))),
        ("build", g.build_number.clone()),
        ("stage", g.stage_name.clone()),
        ("branch", or_dash(g.branch_name.as_deref())),
        ("change request", cr_line(g)),
        (
            "created",
            format!("{} ({} ago)", or_dash(Some(created)), age(created, now)),
        ),
        ("decided", or_dash(g.decided_at.as_deref())),
        ("decided by", or_dash(g.decided_by.as_deref())),
    ];
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 1;
    rows.iter()
        .map(|(k, v)| format!("{:width$} {v}\n", format!("{k}:")))
        .collect()
}

/// `gates events`: AT ACTOR KIND FROM→TO MESSAGE.
pub fn event_table(events: &[EventView]) -> String {
    let rows: Vec<Vec<String>> = events
        .iter()
        .map(|e| {
            // Notices (a CR number arrived, an acknowledgement was sent) change no state.
            let transition = match (e.from_state, e.to_state) {
                (None, None) => "-".to_string(),
                (f, t) => format!(
                    "{} -> {}",
                    f.map_or("-", |s| s.as_str()),
                    t.map_or("-", |s| s.as_str())
                ),
            };
            vec![
                e.at.clone(),
                e.actor.clone(),
                e.kind.clone(),
                transition,
                e.message.clone(),
            ]
        })
        .collect();
    table(&["AT", "ACTOR", "KIND", "TRANSITION", "MESSAGE"], &rows)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn gate() -> GateView {
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

    fn event(v: serde_json::Value) -> EventView {
        serde_json::from_value(v).unwrap()
    }

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-01-01T10:05:30Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn the_list_table_has_one_aligned_row_per_gate() {
        let out = gate_table(&[gate()], now());
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2, "{out}");
        assert!(lines[0].starts_with("ID "), "{out}");
        for cell in [
            "5a0c1f4e-0000-4000-8000-000000000001",
            "pending",
            "shop/app",
            "42",
            "Deploy",
            "CHG0030001",
            "5m",
        ] {
            assert!(lines[1].contains(cell), "{cell} missing from {out}");
        }
        // Columns line up: STATE starts where the row's state starts.
        assert_eq!(lines[0].find("STATE"), lines[1].find("pending"));
    }

    #[test]
    fn details_name_the_change_request_and_the_age() {
        let out = gate_details(&gate(), now());
        assert!(out.contains("change request: CHG0030001 (Assess) https://sn/chg"));
        assert!(out.contains("(5m ago)"), "{out}");
        assert!(out.contains("proceed:        -"), "{out}");
        assert!(out.contains("decided by:     -"), "{out}");
    }

    #[test]
    fn events_show_transitions_and_notices() {
        let out = event_table(&[
            event(
                json!({"id": 1, "at": "2026-01-01T10:00:00.000Z", "actor": "operator:alice", "kind": "aborted",
                   "fromState": "pending", "toState": "aborted", "message": "aborted by alice: wrong build"}),
            ),
            event(
                json!({"id": 2, "at": "2026-01-01T10:00:01.000Z", "actor": "servicenow", "kind": "change_request",
                   "fromState": null, "toState": null, "message": "CHG0030001"}),
            ),
        ]);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3, "{out}");
        assert!(lines[1].contains("pending -> aborted"), "{out}");
        assert!(lines[1].ends_with("aborted by alice: wrong build"), "{out}");
        assert!(!lines[2].contains("->"), "{out}");
    }

    #[test]
    fn ages_use_the_largest_whole_unit() {
        let n = now();
        assert_eq!(age("2026-01-01T10:05:00Z", n), "30s");
        assert_eq!(age("2026-01-01T07:00:00Z", n), "3h");
        assert_eq!(age("2025-12-29T10:00:00Z", n), "3d");
        assert_eq!(age("not a time", n), "-");
        // A clock a little behind the server's never shows a negative age.
        assert_eq!(age("2026-01-01T10:06:00Z", n), "0s");
    }

    #[test]
    fn only_a_boolean_proceed_is_a_decision() {
        let mut g = gate();
        assert_eq!(decision_exit_code(&g), None);
        g.proceed = Some(true);
        assert_eq!(decision_exit_code(&g), Some(EXIT_OK));
        g.proceed = Some(false);
        assert_eq!(decision_exit_code(&g), Some(EXIT_STOP));
    }

    #[test]
    fn urls_keep_the_base_path_and_encode_segments() {
        let api = Api::new("http://snowgate.example:8080/sg/", None).unwrap();
        assert_eq!(
            api.gate_url("../x y", &["wait"]).as_str(),
            "http://snowgate.example:8080/sg/api/v1/gates/..%2Fx%20y/wait"
        );
        assert_eq!(
            api.url(
                &["api", "v1", "gates"],
                &[("state", "pending"), ("limit", "5")]
            )
            .as_str(),
            "http://snowgate.example:8080/sg/api/v1/gates?state=pending&limit=5"
        );
    }

    #[test]
    fn bad_base_urls_are_refused_before_any_call() {
        for bad in ["", "snowgate:8080", "ftp://x/", "not a url"] {
            assert!(
                matches!(Api::new(bad, None), Err(CallError::Unreachable(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn api_errors_carry_the_servers_message_or_the_status() {
        let e = api_error(
            reqwest::StatusCode::FORBIDDEN,
            serde_json::from_value(
                json!({"error": {"code": "forbidden", "message": "this token may not abort gates"}}),
            )
            .ok(),
        );
        match e {
            CallError::Api {
                status,
                code,
                message,
                ..
            } => {
                assert_eq!((status, code.as_str()), (403, "forbidden"));
                assert_eq!(message, "this token may not abort gates");
            }
            other => panic!("{other:?}"),
        }
        match api_error(reqwest::StatusCode::BAD_GATEWAY, None) {
            CallError::Api { message, code, .. } => {
                assert_eq!(message, "snowgate answered 502 Bad Gateway");
                assert_eq!(code, "http_error");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn credentials_in_the_url_are_not_shown() {
        let u = url::Url::parse("http://user:s3cret@snowgate.example/api").unwrap();
        assert_eq!(display_url(&u), "http://snowgate.example/api");
    }
}
