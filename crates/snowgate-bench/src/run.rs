//! The measurements, in the order they run: the floors, then for each store (SQLite in one
//! process; with --postgres, PostgreSQL with each replica count on a fresh database) decision
//! latency with gates pending, memory with open long-polls and a burst of callbacks.
use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use servicenow_sim::{self as simulator, SimHandle, SimSettings};

use crate::client::client;
use crate::floors::{ms, percentiles, rss_kib, FsyncProbe, Percentiles};
use crate::server::{self, Placement, Server};
use crate::BenchArgs;

mod burst;
mod latency;
mod postgres;

/// One store under measurement: its replicas (one on SQLite), the simulator they register
/// with, the fsync probe sampled between decisions, and the report so far.
pub struct Run<'a> {
    args: &'a BenchArgs,
    out: String,
    probe: FsyncProbe,
    back_to_back: Percentiles,
    sim: SimHandle,
    servers: Vec<Server>,
    http: reqwest::Client,
    /// Each server's resident memory right after it started, in KiB.
    rss_idle: Vec<u64>,
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    if let Some(spec) = &args.postgres {
        postgres::parse(spec)?;
        anyhow::ensure!(
            !args.replicas.is_empty() && args.replicas.iter().all(|&n| n >= 2),
            "--replicas: each count must be at least 2 (the callback goes to another replica than the long-poll)"
        );
    }
    let binary = server::binary(args.server.as_deref())?;
    let base = args.dir.clone().unwrap_or_else(|| PathBuf::from("."));
    let dir = tempfile::Builder::new()
        .prefix("snowgate-bench-")
        .tempdir_in(&base)
        .with_context(|| format!("cannot create a directory in {}", base.display()))?;
    if args.postgres.as_deref() == Some("auto") {
        // The cluster, in this directory, runs as the postgres user (as root); tempfile made
        // the directory 0700.
        std::fs::set_permissions(dir.path(), PermissionsExt::from_mode(0o711))?;
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "machine: {cpus} CPUs, {}, store directory {}; server {}",
        std::env::consts::ARCH,
        dir.path().display(),
        binary.display()
    );
    print!("{}", sqlite(&args, &binary, dir.path()).await?);
    if let Some(target) = &args.postgres {
        postgres::run(&args, target, &binary, dir.path()).await?;
    }
    Ok(())
}

/// The simulator's settings for every run: no notices (the benchmark counts its own calls).
fn sim_settings() -> SimSettings {
    SimSettings {
        send_notice: false,
        ..SimSettings::default()
    }
}

/// An fsync probe in `dir` after 500 writes back to back, and their percentiles.
fn back_to_back_floor(dir: &Path) -> anyhow::Result<(FsyncProbe, Percentiles)> {
    let mut probe = FsyncProbe::new(dir)?;
    for _ in 0..500 {
        probe.sample()?;
    }
    let floor = percentiles(std::mem::take(&mut probe.samples));
    Ok((probe, floor))
}

/// The SQLite figures: one process on its own file.
async fn sqlite(args: &BenchArgs, binary: &Path, dir: &Path) -> anyhow::Result<String> {
    let store = dir.join("sqlite");
    std::fs::create_dir(&store)?;
    let mut out = String::new();
    // Floors, measured in this run on this disk and this loopback. The fsync floor twice:
    // 500 writes back to back here, and one isolated write between every two decision
    // samples, in the same conditions as a decision's commit (a device idle for a few ms;
    // on this VM that costs about twice the back-to-back figure).
    let (probe, back_to_back) = back_to_back_floor(&store)?;
    writeln!(
        out,
        "floor: 4 KiB write + fsync, 500 back to back: p50 {} p99 {}",
        ms(back_to_back.p50),
        ms(back_to_back.p99)
    )?;
    let sim_cfg = sim_settings();
    let sim = simulator::start(sim_cfg.clone()).await?;
    let store_url = format!("sqlite://{}", store.join("bench.db").display());
    let at = Placement {
        binary,
        dir: &store,
        store_url: &store_url,
    };
    let server = server::start(&at, "a", &sim, &sim_cfg).await?;
    writeln!(out, "store: SQLite, one process")?;
    let mut run = Run::new(args, out, probe, back_to_back, sim, vec![server])?;
    run.round_trip_floor().await?;
    run.latency().await?;
    run.burst(None).await?;
    Ok(run.finish().await)
}

impl<'a> Run<'a> {
    fn new(
        args: &'a BenchArgs,
        out: String,
        probe: FsyncProbe,
        back_to_back: Percentiles,
        sim: SimHandle,
        servers: Vec<Server>,
    ) -> anyhow::Result<Run<'a>> {
        let rss_idle = servers
            .iter()
            .map(|s| rss_kib(s.child.id()).unwrap_or(0))
            .collect();
        // Every long-poll of the burst holds a connection, spread over the servers.
        let http = client(args.burst + 128)?;
        Ok(Run {
            args,
            out,
            probe,
            back_to_back,
            sim,
            servers,
            http,
            rss_idle,
        })
    }

    /// End the servers, then the simulator; the report.
    async fn finish(self) -> String {
        let Run {
            out, sim, servers, ..
        } = self;
        drop(servers);
        sim.stop().await;
        out
    }

    async fn round_trip_floor(&mut self) -> anyhow::Result<()> {
        let mut rtt = Vec::new();
        for _ in 0..500 {
            let t = Instant::now();
            self.http
                .get(format!("{}/healthz", self.servers[0].url))
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

    /// `cb` (a callback URL naming `servers[from]`, which opened the gate) sent to `servers[to]`
    /// instead.
    fn callback_at(&self, cb: &str, from: usize, to: usize) -> String {
        cb.replacen(&self.servers[from].url, &self.servers[to].url, 1)
    }

    /// The servers' URLs, for opening gates round robin.
    fn urls(&self) -> Vec<&str> {
        self.servers.iter().map(|s| s.url.as_str()).collect()
    }
}
