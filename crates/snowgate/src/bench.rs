//! `snowgate bench`: measures snowgate against SPEC §9 on this machine, by hand (never in CI).
//! It runs the real binary (`snowgate serve`, a child process with its own SQLite file) against
//! the embedded ServiceNow simulator on loopback, and reports beside each figure the floor
//! measured in the same run: a 4 KiB write + fsync on the same disk, and a loopback round trip.
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::stream::{self, StreamExt};
use serde_json::{json, Value};

use servicenow_sim::{self as simulator, SimHandle, SimSettings};

const TOKEN: &str = "bench-pipeline-token-0123456789";

#[derive(Clone, Debug, clap::Args)]
pub struct BenchArgs {
    /// Gates pending while decision latency is measured.
    #[arg(long, default_value_t = 1000)]
    pub pending: usize,
    /// Decisions sampled for the latency percentiles.
    #[arg(long, default_value_t = 300)]
    pub samples: usize,
    /// Gates (and open long-polls) for the memory and burst measurements.
    #[arg(long, default_value_t = 10_000)]
    pub burst: usize,
    /// Concurrent callback clients in the burst.
    #[arg(long, default_value_t = 64)]
    pub clients: usize,
    /// Run on this PostgreSQL database (empty; migrations are applied) with two replicas,
    /// instead of one process on SQLite.
    #[arg(long)]
    pub postgres: Option<String>,
    /// Directory for the store (default: a fresh directory under the current one, so the
    /// floor is measured on the disk snowgate would use).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

struct Percentiles {
    p50: Duration,
    p90: Duration,
    p99: Duration,
}

fn percentiles(mut v: Vec<Duration>) -> Percentiles {
    v.sort();
    Percentiles {
        p50: percentile(&v, 0.50),
        p90: percentile(&v, 0.90),
        p99: percentile(&v, 0.99),
    }
}

/// The durable store's floor: latency of a 4 KiB write + fsync in the store's directory.
struct FsyncProbe {
    file: std::fs::File,
    path: PathBuf,
    samples: Vec<Duration>,
}

impl FsyncProbe {
    fn new(dir: &Path) -> anyhow::Result<FsyncProbe> {
        let path = dir.join("fsync-probe");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&path)?;
        Ok(FsyncProbe {
            file,
            path,
            samples: Vec::new(),
        })
    }

    fn sample(&mut self) -> anyhow::Result<()> {
        let block = [0x5au8; 4096];
        let t = Instant::now();
        self.file.write_all(&block)?;
        self.file.sync_data()?;
        self.samples.push(t.elapsed());
        Ok(())
    }
}

impl Drop for FsyncProbe {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

async fn start_server(
    dir: &Path,
    name: &str,
    sim: &SimHandle,
    sim_cfg: &SimSettings,
    postgres: Option<&str>,
) -> anyhow::Result<Server> {
    let port = free_port()?;
    let config = dir.join(format!("{name}.yaml"));
    let store_url = match postgres {
        Some(u) => u.to_string(),
        None => format!("sqlite://{}", dir.join("bench.db").display()),
    };
    std::fs::write(
        &config,
        format!(
            r#"server:
  bind: "127.0.0.1:{port}"
callback:
  public_base_url: "http://127.0.0.1:{port}/"
servicenow:
  instance_url: "{instance}"
  tool_id: "{tool}"
  auth: token
  token: "{token}"
  poll_interval: "1h"
  max_requests_per_second: 1000
store:
  url: "{store_url}"
auth:
  pipeline_tokens: [ {{ name: bench, token: "{TOKEN}" }} ]
log:
  level: info
"#,
            instance = sim.url(),
            tool = sim_cfg.tool_id,
            token = sim_cfg.token,
        ),
    )?;
    // Measured at the default log level; the log goes to a file beside the store.
    let log = std::fs::File::create(dir.join(format!("{name}.log")))?;
    let child = Command::new(std::env::current_exe()?)
        .args(["serve", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .context("cannot start `snowgate serve`")?;
    let server = Server {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let client = reqwest::Client::new();
    for _ in 0..200 {
        if client
            .get(format!("{}/healthz", server.url))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return Ok(server);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("snowgate serve did not start")
}

fn client(connections: usize) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .pool_max_idle_per_host(connections)
        .timeout(Duration::from_secs(600))
        .build()?)
}

/// Open `n` gates named `<prefix> <i>`, 64 at a time; returns (gate id, callback URL) pairs.
async fn open_gates(
    http: &reqwest::Client,
    server: &str,
    sim: &SimHandle,
    prefix: &str,
    n: usize,
) -> anyhow::Result<Vec<(String, String)>> {
    let ids: Vec<anyhow::Result<(usize, String)>> = stream::iter(0..n)
        .map(|i| {
            let http = http.clone();
            let url = format!("{server}/api/v1/gates");
            async move {
                let body = json!({
                    "jobUrl": "http://jenkins.bench/job/app/",
                    "buildNumber": i + 1,
                    "stageName": prefix,
                    "buildUrl": format!("http://jenkins.bench/job/app/{}/", i + 1),
                });
                let r = http
                    .post(url)
                    .bearer_auth(TOKEN)
                    .header("Content-Type", "application/json")
                    .body(body.to_string())
                    .send()
                    .await?;
                anyhow::ensure!(r.status().as_u16() == 201, "open answered {}", r.status());
                let g: Value = r.json().await?;
                anyhow::ensure!(g["state"] == "pending", "gate not pending: {g}");
                Ok((i, g["id"].as_str().unwrap_or_default().to_string()))
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    let mut by_build: Vec<(usize, String)> = ids.into_iter().collect::<anyhow::Result<_>>()?;
    by_build.sort();
    // The callback URL of each gate, from the registrations the simulator received.
    let callbacks: std::collections::HashMap<String, String> = sim
        .changes()
        .into_iter()
        .filter(|c| c.stage_name == prefix)
        .map(|c| (c.build_number.unwrap_or_default(), c.callback_url))
        .collect();
    by_build
        .into_iter()
        .map(|(i, id)| {
            let cb = callbacks
                .get(&(i + 1).to_string())
                .cloned()
                .with_context(|| format!("no registration seen for build {}", i + 1))?;
            Ok((id, cb))
        })
        .collect()
}

async fn long_poll(http: &reqwest::Client, server: &str, id: &str) -> anyhow::Result<Value> {
    Ok(long_poll_timed(http, server, id).await?.0)
}

/// The long-poll's answer and its `Server-Timing: decision;dur=…` (ms since the deciding
/// callback arrived), when the server sent one.
async fn long_poll_timed(
    http: &reqwest::Client,
    server: &str,
    id: &str,
) -> anyhow::Result<(Value, Option<Duration>)> {
    let r = http
        .get(format!("{server}/api/v1/gates/{id}/wait?timeout=300"))
        .bearer_auth(TOKEN)
        .send()
        .await?;
    let server_ms = r
        .headers()
        .get("server-timing")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("decision;dur="))
        .and_then(|v| v.parse::<f64>().ok());
    Ok((
        r.json().await?,
        server_ms.map(|ms| Duration::from_secs_f64(ms / 1000.0)),
    ))
}

/// (sum, count) of the server's decision-latency histogram (store commit and wake-ups).
async fn decision_seconds(http: &reqwest::Client, server: &str) -> Option<(f64, f64)> {
    let text = http
        .get(format!("{server}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    let value = |suffix: &str| -> Option<f64> {
        text.lines()
            .find(|l| l.contains(&format!("decision_latency_seconds_{suffix}")))?
            .rsplit(' ')
            .next()?
            .parse()
            .ok()
    };
    Some((value("sum")?, value("count")?))
}

async fn callback(http: &reqwest::Client, url: &str) -> anyhow::Result<u16> {
    Ok(http
        .post(url)
        .header("Content-Type", "application/json")
        .body(r#"{"result":"succeeded","changeComments":"bench"}"#)
        .send()
        .await?
        .status()
        .as_u16())
}

pub async fn run(args: BenchArgs) -> anyhow::Result<String> {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let base = args.dir.clone().unwrap_or_else(|| PathBuf::from("."));
    let dir = tempfile::Builder::new()
        .prefix("snowgate-bench-")
        .tempdir_in(&base)
        .with_context(|| format!("cannot create a directory in {}", base.display()))?;
    let mut out = String::new();
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    writeln!(
        out,
        "machine: {cpus} CPUs, {}, store directory {}",
        std::env::consts::ARCH,
        dir.path().display()
    )?;

    // Floors, measured in this run on this disk and this loopback. The fsync floor twice:
    // 500 writes back to back here, and one isolated write between every two decision
    // samples, in the same conditions as a decision's commit (a device idle for a few ms;
    // on this VM that costs about twice the back-to-back figure).
    let mut probe = FsyncProbe::new(dir.path())?;
    for _ in 0..500 {
        probe.sample()?;
    }
    let back_to_back = percentiles(std::mem::take(&mut probe.samples));
    writeln!(
        out,
        "floor: 4 KiB write + fsync, 500 back to back: p50 {} p99 {}",
        ms(back_to_back.p50),
        ms(back_to_back.p99)
    )?;

    let sim_cfg = SimSettings {
        send_notice: false,
        ..SimSettings::default()
    };
    let sim = simulator::start(sim_cfg.clone()).await?;
    let server = start_server(dir.path(), "a", &sim, &sim_cfg, args.postgres.as_deref()).await?;
    // With --postgres a second replica shares the database: decisions arrive there while
    // the long-polls wait at the first (cross-replica wake-up by NOTIFY).
    let other = match &args.postgres {
        Some(u) => Some(start_server(dir.path(), "b", &sim, &sim_cfg, Some(u)).await?),
        None => None,
    };
    let to_decider = |cb: &str| match &other {
        Some(b) => cb.replacen(&server.url, &b.url, 1),
        None => cb.to_string(),
    };
    if let Some(u) = &args.postgres {
        writeln!(
            out,
            "store: PostgreSQL {} with two replicas (long-polls at A, callbacks at B)",
            crate::configuration::redact_url_password(u)
        )?;
    } else {
        writeln!(out, "store: SQLite, one process")?;
    }
    let rss_idle = rss_kib(server.child.id()).unwrap_or(0);
    let http = client(args.burst + 128)?;
    let mut rtt = Vec::new();
    for _ in 0..500 {
        let t = Instant::now();
        http.get(format!("{}/healthz", server.url))
            .send()
            .await?
            .bytes()
            .await?;
        rtt.push(t.elapsed());
    }
    let rtt = percentiles(rtt);
    writeln!(
        out,
        "floor: loopback HTTP round trip (GET /healthz) p50 {} p99 {}",
        ms(rtt.p50),
        ms(rtt.p99)
    )?;

    // 1. Decision latency with `pending` gates waiting: callback sent → long-poll answered.
    let gates = open_gates(&http, &server.url, &sim, "Latency", args.pending).await?;
    let before = sim.requests().len();
    let mut lat = Vec::new();
    let mut server_side = Vec::new();
    let mut answered = Vec::new();
    let commit_before = decision_seconds(&http, &server.url).await;
    for (id, cb) in gates.iter().take(args.samples) {
        let waiter = {
            let http = http.clone();
            let (url, id) = (server.url.clone(), id.clone());
            tokio::spawn(async move { long_poll_timed(&http, &url, &id).await })
        };
        // Give the long-poll time to be registered before the decision, then sample the
        // floor while everything is quiet (the long-poll parked, nothing else in flight).
        tokio::time::sleep(Duration::from_millis(5)).await;
        probe.sample()?;
        tokio::time::sleep(Duration::from_millis(1)).await;
        let t = Instant::now();
        let status = callback(&http, &to_decider(cb)).await?;
        answered.push(t.elapsed());
        anyhow::ensure!(status == 200, "callback answered {status}");
        let (g, at_server) = waiter.await??;
        lat.push(t.elapsed());
        server_side.extend(at_server);
        anyhow::ensure!(g["state"] == "approved", "long-poll answered {g}");
    }
    let lat = percentiles(lat);
    let isolated = percentiles(std::mem::take(&mut probe.samples));
    writeln!(
        out,
        "floor: 4 KiB write + fsync, isolated (one between every two decision samples): p50 {} p99 {}",
        ms(isolated.p50),
        ms(isolated.p99)
    )?;
    let floor = |d: Duration| {
        format!(
            "p50 = {:.1}× the isolated fsync floor, {:.1}× the back-to-back one",
            d.as_secs_f64() / isolated.p50.as_secs_f64().max(1e-9),
            d.as_secs_f64() / back_to_back.p50.as_secs_f64().max(1e-9)
        )
    };
    if server_side.is_empty() {
        writeln!(
            out,
            "decision latency at the server (callback received → long-poll answered): n/a (decided at the other replica; no Server-Timing)"
        )?;
    } else {
        let n = server_side.len();
        let s = percentiles(server_side);
        writeln!(
            out,
            "decision latency at the server (callback received → long-poll answered, Server-Timing), {} pending, {n} samples: p50 {} p90 {} p99 {} ({})",
            args.pending,
            ms(s.p50),
            ms(s.p90),
            ms(s.p99),
            floor(s.p50)
        )?;
    }
    let answered = percentiles(answered);
    let commit_after = decision_seconds(&http, &server.url).await;
    writeln!(
        out,
        "decision latency at the client (callback sent → long-poll answer read: two loopback HTTP exchanges more), {} pending, {} samples: p50 {} p90 {} p99 {} ({})",
        args.pending,
        args.samples.min(gates.len()),
        ms(lat.p50),
        ms(lat.p90),
        ms(lat.p99),
        floor(lat.p50)
    )?;
    writeln!(
        out,
        "  the callback's own answer (200) at the client: p50 {} p99 {}; the decision at the server (store commit and wake-ups): mean {}",
        ms(answered.p50),
        ms(answered.p99),
        match (commit_before, commit_after) {
            (Some((s0, n0)), Some((s1, n1))) if n1 > n0 => {
                ms(Duration::from_secs_f64((s1 - s0) / (n1 - n0)))
            }
            _ => "n/a (decisions made at the other replica)".into(),
        }
    )?;
    // Let the acknowledgements of the sampled decisions finish before counting calls.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let calls =
        (sim.requests().len() - before) as f64 / args.samples.min(gates.len()).max(1) as f64;
    writeln!(
        out,
        "ServiceNow calls per gate in callback mode: {:.2} (1 registration + {:.2} acknowledgement per decided gate)",
        1.0 + calls,
        calls
    )?;

    // 2. `burst` gates pending with `burst` open long-polls: memory, then a burst of callbacks.
    let burst = open_gates(&http, &server.url, &sim, "Burst", args.burst).await?;
    let rss_opened = rss_kib(server.child.id()).unwrap_or(0);
    let waiting = Arc::new(AtomicUsize::new(0));
    let mut waiters = Vec::with_capacity(burst.len());
    for (id, _) in &burst {
        let http = http.clone();
        let (url, id) = (server.url.clone(), id.clone());
        let waiting = waiting.clone();
        waiters.push(tokio::spawn(async move {
            waiting.fetch_add(1, Ordering::SeqCst);
            let g = long_poll(&http, &url, &id).await;
            (g, Instant::now())
        }));
    }
    while waiting.load(Ordering::SeqCst) < burst.len() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Let every long-poll reach the server.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rss = rss_kib(server.child.id()).unwrap_or(0);
    writeln!(
        out,
        "resident memory with {} + {} gates pending and {} open long-polls: {:.1} MB (idle after start {:.1} MB; after opening the gates, before the long-polls {:.1} MB)",
        args.pending.saturating_sub(args.samples),
        burst.len(),
        burst.len(),
        rss as f64 / 1024.0,
        rss_idle as f64 / 1024.0,
        rss_opened as f64 / 1024.0
    )?;

    let started = Instant::now();
    let results: Vec<anyhow::Result<u16>> =
        stream::iter(burst.iter().map(|(_, cb)| to_decider(cb)))
            .map(|cb| {
                let http = http.clone();
                async move { callback(&http, &cb).await }
            })
            .buffer_unordered(args.clients)
            .collect()
            .await;
    let answered = started.elapsed();
    let ok = results.iter().filter(|r| matches!(r, Ok(200))).count();
    let mut last = started;
    let mut released = 0;
    for w in waiters {
        let (g, at) = w.await?;
        if g.is_ok_and(|g| g["state"] == "approved") {
            released += 1;
        }
        last = last.max(at);
    }
    let all_released = last - started;
    writeln!(
        out,
        "burst of {} callbacks from {} clients: {} answered 200 in {:.2} s ({:.0} callbacks/s); {} waiters released, the last {:.2} s after the first callback",
        burst.len(),
        args.clients,
        ok,
        answered.as_secs_f64(),
        ok as f64 / answered.as_secs_f64(),
        released,
        all_released.as_secs_f64()
    )?;
    drop(other);
    drop(server);
    sim.stop().await;
    Ok(out)
}
