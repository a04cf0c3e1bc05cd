//! The measurements, in the order they run: floors, decision latency with gates pending, then
//! memory with open long-polls and a burst of callbacks.
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::stream::{self, StreamExt};
use serde_json::Value;
use servicenow_sim::{self as simulator, SimHandle, SimSettings};

use crate::client::{callback, client, decision_seconds, long_poll, long_poll_timed, open_gates};
use crate::floors::{ms, percentiles, rss_kib, FsyncProbe, Percentiles};
use crate::server::{self, redact_url_password, Placement, Server};
use crate::BenchArgs;

/// Everything one run holds: the report so far, the floors, the simulator and the servers.
struct Bench {
    args: BenchArgs,
    out: String,
    probe: FsyncProbe,
    back_to_back: Percentiles,
    sim: SimHandle,
    server: Server,
    /// With --postgres, the second replica, where the decisions arrive.
    other: Option<Server>,
    http: reqwest::Client,
    rss_idle: u64,
    _dir: tempfile::TempDir,
}

/// What the decision-latency phase sampled.
struct Samples {
    at_client: Vec<Duration>,
    at_server: Vec<Duration>,
    callback_answered: Vec<Duration>,
}

pub async fn run(args: BenchArgs) -> anyhow::Result<String> {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let mut bench = Bench::start(args).await?;
    bench.latency().await?;
    bench.burst().await?;
    let Bench {
        out,
        sim,
        server,
        other,
        ..
    } = bench;
    drop(other);
    drop(server);
    sim.stop().await;
    Ok(out)
}

impl Bench {
    /// The directory, the fsync floor back to back, the simulator and the servers.
    async fn start(args: BenchArgs) -> anyhow::Result<Bench> {
        let binary = server::binary(args.server.as_deref())?;
        let base = args.dir.clone().unwrap_or_else(|| PathBuf::from("."));
        let dir = tempfile::Builder::new()
            .prefix("snowgate-bench-")
            .tempdir_in(&base)
            .with_context(|| format!("cannot create a directory in {}", base.display()))?;
        let mut out = String::new();
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        writeln!(
            out,
            "machine: {cpus} CPUs, {}, store directory {}; server {}",
            std::env::consts::ARCH,
            dir.path().display(),
            binary.display()
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
        let at = Placement {
            binary: &binary,
            dir: dir.path(),
            postgres: args.postgres.as_deref(),
        };
        let server = server::start(&at, "a", &sim, &sim_cfg).await?;
        // With --postgres a second replica shares the database: decisions arrive there while
        // the long-polls wait at the first (cross-replica wake-up by NOTIFY).
        let other = match &args.postgres {
            Some(_) => Some(server::start(&at, "b", &sim, &sim_cfg).await?),
            None => None,
        };
        match &args.postgres {
            Some(u) => writeln!(
                out,
                "store: PostgreSQL {} with two replicas (long-polls at A, callbacks at B)",
                redact_url_password(u)
            )?,
            None => writeln!(out, "store: SQLite, one process")?,
        }
        let rss_idle = rss_kib(server.child.id()).unwrap_or(0);
        let http = client(args.burst + 128)?;
        let mut bench = Bench {
            args,
            out,
            probe,
            back_to_back,
            sim,
            server,
            other,
            http,
            rss_idle,
            _dir: dir,
        };
        bench.round_trip_floor().await?;
        Ok(bench)
    }

    async fn round_trip_floor(&mut self) -> anyhow::Result<()> {
        let mut rtt = Vec::new();
        for _ in 0..500 {
            let t = Instant::now();
            self.http
                .get(format!("{}/healthz", self.server.url))
                .send()
                .await?
                .bytes()
                .await?;
            rtt.push(t.elapsed());
        }
        let rtt = percentiles(rtt);
        writeln!(
            self.out,
            "floor: loopback HTTP round trip (GET /healthz) p50 {} p99 {}",
            ms(rtt.p50),
            ms(rtt.p99)
        )?;
        Ok(())
    }

    /// A callback URL as the deciding replica serves it.
    fn to_decider(&self, cb: &str) -> String {
        match &self.other {
            Some(b) => cb.replacen(&self.server.url, &b.url, 1),
            None => cb.to_string(),
        }
    }

    /// 1. Decision latency with `pending` gates waiting: callback sent → long-poll answered.
    async fn latency(&mut self) -> anyhow::Result<()> {
        let gates = open_gates(
            &self.http,
            &self.server.url,
            &self.sim,
            "Latency",
            self.args.pending,
        )
        .await?;
        let sampled = self.args.samples.min(gates.len());
        let before = self.sim.requests().len();
        let commit_before = decision_seconds(&self.http, &self.server.url).await;
        let samples = self.sample_decisions(&gates[..sampled]).await?;
        let commit_after = decision_seconds(&self.http, &self.server.url).await;
        let commit_mean = match (commit_before, commit_after) {
            (Some((s0, n0)), Some((s1, n1))) if n1 > n0 => {
                ms(Duration::from_secs_f64((s1 - s0) / (n1 - n0)))
            }
            _ => "n/a (decisions made at the other replica)".into(),
        };
        self.report_latency(samples, sampled, &commit_mean)?;
        // Let the acknowledgements of the sampled decisions finish before counting calls.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let calls = (self.sim.requests().len() - before) as f64 / sampled.max(1) as f64;
        writeln!(
            self.out,
            "ServiceNow calls per gate in callback mode: {:.2} (1 registration + {:.2} acknowledgement per decided gate)",
            1.0 + calls,
            calls
        )?;
        Ok(())
    }

    /// One decision at a time, each with its long-poll parked first.
    async fn sample_decisions(&mut self, gates: &[(String, String)]) -> anyhow::Result<Samples> {
        let mut s = Samples {
            at_client: Vec::new(),
            at_server: Vec::new(),
            callback_answered: Vec::new(),
        };
        for (id, cb) in gates {
            let waiter = {
                let http = self.http.clone();
                let (url, id) = (self.server.url.clone(), id.clone());
                tokio::spawn(async move { long_poll_timed(&http, &url, &id).await })
            };
            // Give the long-poll time to be registered before the decision, then sample the
            // floor while everything is quiet (the long-poll parked, nothing else in flight).
            tokio::time::sleep(Duration::from_millis(5)).await;
            self.probe.sample()?;
            tokio::time::sleep(Duration::from_millis(1)).await;
            let t = Instant::now();
            let status = callback(&self.http, &self.to_decider(cb)).await?;
            s.callback_answered.push(t.elapsed());
            anyhow::ensure!(status == 200, "callback answered {status}");
            let (g, at_server) = waiter.await??;
            s.at_client.push(t.elapsed());
            s.at_server.extend(at_server);
            anyhow::ensure!(g["state"] == "approved", "long-poll answered {g}");
        }
        Ok(s)
    }

    fn report_latency(
        &mut self,
        s: Samples,
        sampled: usize,
        commit_mean: &str,
    ) -> anyhow::Result<()> {
        let pending = self.args.pending;
        let isolated = percentiles(std::mem::take(&mut self.probe.samples));
        writeln!(
            self.out,
            "floor: 4 KiB write + fsync, isolated (one between every two decision samples): p50 {} p99 {}",
            ms(isolated.p50),
            ms(isolated.p99)
        )?;
        let b2b = self.back_to_back.p50;
        let floor = |d: Duration| {
            format!(
                "p50 = {:.1}× the isolated fsync floor, {:.1}× the back-to-back one",
                d.as_secs_f64() / isolated.p50.as_secs_f64().max(1e-9),
                d.as_secs_f64() / b2b.as_secs_f64().max(1e-9)
            )
        };
        if s.at_server.is_empty() {
            writeln!(
                self.out,
                "decision latency at the server (callback received → long-poll answered): n/a (decided at the other replica; no Server-Timing)"
            )?;
        } else {
            let n = s.at_server.len();
            let p = percentiles(s.at_server);
            writeln!(
                self.out,
                "decision latency at the server (callback received → long-poll answered, Server-Timing), {pending} pending, {n} samples: p50 {} p90 {} p99 {} ({})",
                ms(p.p50),
                ms(p.p90),
                ms(p.p99),
                floor(p.p50)
            )?;
        }
        let lat = percentiles(s.at_client);
        writeln!(
            self.out,
            "decision latency at the client (callback sent → long-poll answer read: two loopback HTTP exchanges more), {pending} pending, {sampled} samples: p50 {} p90 {} p99 {} ({})",
            ms(lat.p50),
            ms(lat.p90),
            ms(lat.p99),
            floor(lat.p50)
        )?;
        let answered = percentiles(s.callback_answered);
        writeln!(
            self.out,
            "  the callback's own answer (200) at the client: p50 {} p99 {}; the decision at the server (store commit and wake-ups): mean {commit_mean}",
            ms(answered.p50),
            ms(answered.p99),
        )?;
        Ok(())
    }

    /// 2. `burst` gates pending with `burst` open long-polls: memory, then a burst of callbacks.
    async fn burst(&mut self) -> anyhow::Result<()> {
        let url = self.server.url.clone();
        let burst = open_gates(&self.http, &url, &self.sim, "Burst", self.args.burst).await?;
        let rss_opened = rss_kib(self.server.child.id()).unwrap_or(0);
        let waiters = self.park_long_polls(&burst).await;
        let rss = rss_kib(self.server.child.id()).unwrap_or(0);
        writeln!(
            self.out,
            "resident memory with {} + {} gates pending and {} open long-polls: {:.1} MB (idle after start {:.1} MB; after opening the gates, before the long-polls {:.1} MB)",
            self.args.pending.saturating_sub(self.args.samples),
            burst.len(),
            burst.len(),
            rss as f64 / 1024.0,
            self.rss_idle as f64 / 1024.0,
            rss_opened as f64 / 1024.0
        )?;
        let started = Instant::now();
        let results: Vec<anyhow::Result<u16>> =
            stream::iter(burst.iter().map(|(_, cb)| self.to_decider(cb)))
                .map(|cb| {
                    let http = self.http.clone();
                    async move { callback(&http, &cb).await }
                })
                .buffer_unordered(self.args.clients)
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
        writeln!(
            self.out,
            "burst of {} callbacks from {} clients: {ok} answered 200 in {:.2} s ({:.0} callbacks/s); {released} waiters released, the last {:.2} s after the first callback",
            burst.len(),
            self.args.clients,
            answered.as_secs_f64(),
            ok as f64 / answered.as_secs_f64(),
            (last - started).as_secs_f64()
        )?;
        Ok(())
    }

    /// One long-poll per gate, each answered with the gate and the time it came back.
    async fn park_long_polls(
        &self,
        gates: &[(String, String)],
    ) -> Vec<tokio::task::JoinHandle<(anyhow::Result<Value>, Instant)>> {
        let waiting = Arc::new(AtomicUsize::new(0));
        let mut waiters = Vec::with_capacity(gates.len());
        for (id, _) in gates {
            let http = self.http.clone();
            let (url, id) = (self.server.url.clone(), id.clone());
            let waiting = waiting.clone();
            waiters.push(tokio::spawn(async move {
                waiting.fetch_add(1, Ordering::SeqCst);
                let g = long_poll(&http, &url, &id).await;
                (g, Instant::now())
            }));
        }
        while waiting.load(Ordering::SeqCst) < gates.len() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Let every long-poll reach the server.
        tokio::time::sleep(Duration::from_secs(3)).await;
        waiters
    }
}
