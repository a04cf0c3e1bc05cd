//! PostgreSQL: the cluster (a throwaway one, or a given server), the floors of its disk, then
//! one run per replica count, each on a fresh database, with the cluster's commits and WAL
//! flushes counted over the burst.
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use pg_cluster::Cluster;
use servicenow_sim as simulator;

use crate::floors::{ms, FsyncProbe, Percentiles};
use crate::server::{self, redact_url_password, Placement};
use crate::BenchArgs;

use super::{back_to_back_floor, sim_settings, Run};

mod counters;

pub use counters::Counters;

/// Where the databases are created.
enum Target {
    /// `--postgres auto`: a cluster of our own, in the bench directory.
    Auto(Cluster),
    /// `--postgres postgres://…`: that server; the benchmark connects with this URL.
    Server(url::Url),
}

/// `--postgres`: `auto` (None) or a server's URL; checked before anything runs.
pub fn parse(spec: &str) -> anyhow::Result<Option<url::Url>> {
    if spec == "auto" {
        return Ok(None);
    }
    let url = url::Url::parse(spec)
        .ok()
        .filter(|u| matches!(u.scheme(), "postgres" | "postgresql"))
        .context("--postgres: give `auto` or a postgres:// URL")?;
    Ok(Some(url))
}

impl Target {
    fn open(spec: &str, dir: &Path) -> anyhow::Result<Target> {
        Ok(match parse(spec)? {
            None => Target::Auto(Cluster::builder().parent(dir).start()?),
            Some(url) => Target::Server(url),
        })
    }

    /// A client for creating databases and reading statistics.
    async fn client(&self) -> anyhow::Result<tokio_postgres::Client> {
        match self {
            Target::Auto(c) => c.connect("postgres").await,
            Target::Server(u) => pg_cluster::connect(u.as_str()).await,
        }
    }

    /// A fresh database `name`; its URL for the replicas.
    async fn create_database(&self, name: &str) -> anyhow::Result<String> {
        match self {
            Target::Auto(c) => c.create_database(name).await,
            Target::Server(u) => {
                let sql = format!("CREATE DATABASE {}", pg_cluster::quote_identifier(name));
                self.client()
                    .await?
                    .batch_execute(&sql)
                    .await
                    .with_context(|| format!("cannot create database {name} (the user needs CREATEDB, or use --postgres auto)"))?;
                let mut url = u.clone();
                url.set_path(&format!("/{name}"));
                Ok(url.to_string())
            }
        }
    }

    /// The directory whose disk the floors are measured on: the cluster's data directory's
    /// parent, or (for a given server, whose disk is not known here) the bench directory.
    fn floor_dir(&self, bench: &Path) -> PathBuf {
        match self {
            Target::Auto(c) => c.dir().to_path_buf(),
            Target::Server(_) => bench.to_path_buf(),
        }
    }

    /// The `postgres:` line: what runs, and the settings the figures depend on.
    async fn describe(&self) -> anyhow::Result<String> {
        let client = self.client().await?;
        let mut settings = Vec::new();
        for name in [
            "server_version",
            "fsync",
            "synchronous_commit",
            "wal_sync_method",
            "max_connections",
            "shared_buffers",
        ] {
            let row = client.query_one(&format!("SHOW {name}"), &[]).await?;
            settings.push(format!("{name}={}", row.get::<_, String>(0)));
        }
        let what = match self {
            Target::Auto(c) => format!(
                "throwaway cluster from {} (initdb -A trust), port {}, in {}",
                c.bin_dir().display(),
                c.port(),
                c.dir().display()
            ),
            Target::Server(u) => format!("server at {}", redact_url_password(u.as_str())),
        };
        Ok(format!("postgres: {what}; {}\n", settings.join(" ")))
    }
}

pub async fn run(args: &BenchArgs, spec: &str, binary: &Path, dir: &Path) -> anyhow::Result<()> {
    let target = Target::open(spec, dir)?;
    let mut out = target.describe().await?;
    let floor_dir = target.floor_dir(dir);
    let (probe, back_to_back) = back_to_back_floor(&floor_dir)?;
    drop(probe);
    writeln!(
        out,
        "floor: 4 KiB write + fsync, 500 back to back, in {}: p50 {} p99 {}",
        floor_dir.display(),
        ms(back_to_back.p50),
        ms(back_to_back.p99)
    )?;
    match &target {
        Target::Auto(c) => writeln!(out, "{}", pg_test_fsync(c.bin_dir(), &floor_dir)?)?,
        Target::Server(_) => writeln!(
            out,
            "floor: pg_test_fsync: n/a (a given server: its disk is not known here)"
        )?,
    }
    print!("{out}");
    for &n in &args.replicas {
        let at = Replicas {
            args,
            target: &target,
            binary,
            dir,
            floor_dir: &floor_dir,
            back_to_back,
        };
        print!("{}", at.measure(n).await?);
    }
    Ok(())
}

/// `pg_test_fsync` (PostgreSQL's tool for choosing wal_sync_method) in `dir`, 2 s per test:
/// its fdatasync line for one 8 kB write, Linux's default wal_sync_method and so the cost of
/// one commit's WAL flush.
fn pg_test_fsync(bin: &Path, dir: &Path) -> anyhow::Result<String> {
    let program = bin.join("pg_test_fsync");
    let file = dir.join("pg_test_fsync.out");
    let out = std::process::Command::new(&program)
        .args(["-s", "2", "-f"])
        .arg(&file)
        .output()
        .with_context(|| format!("cannot run {}", program.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    anyhow::ensure!(
        out.status.success(),
        "pg_test_fsync failed: {}\n{text}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let line = text
        .lines()
        .skip_while(|l| !l.contains("using one 8kB write"))
        .find(|l| l.trim_start().starts_with("fdatasync"))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .context("pg_test_fsync printed no fdatasync line for one 8kB write")?;
    Ok(format!(
        "floor: pg_test_fsync -s 2 in the same directory, one 8kB write, {line}"
    ))
}

/// What every replica count's run shares.
struct Replicas<'a> {
    args: &'a BenchArgs,
    target: &'a Target,
    binary: &'a Path,
    dir: &'a Path,
    floor_dir: &'a Path,
    back_to_back: Percentiles,
}

/// Replica `i`'s name: a, b, c, …
fn replica_name(i: usize) -> String {
    match u8::try_from(i) {
        Ok(i) if i < 26 => char::from(b'a' + i).to_string(),
        _ => format!("r{i}"),
    }
}

impl Replicas<'_> {
    /// `n` replicas on a fresh database: latency, memory and the burst.
    async fn measure(&self, n: usize) -> anyhow::Result<String> {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let db = match self.target {
            Target::Auto(_) => format!("bench_{n}_replicas"),
            // Beside whatever else lives on that server, and unique across runs.
            Target::Server(_) => format!("snowgate_bench_{n}_replicas_{stamp}"),
        };
        let store_url = self.target.create_database(&db).await?;
        let run_dir = self.dir.join(format!("postgres-{n}"));
        std::fs::create_dir(&run_dir)?;
        let mut out = String::new();
        writeln!(
            out,
            "store: PostgreSQL {} with {n} replicas (latency: long-polls at a, callbacks at b; burst: gates and long-polls round robin over the replicas, each callback at the next one)",
            redact_url_password(&store_url)
        )?;
        let sim_cfg = sim_settings();
        let sim = simulator::start(sim_cfg.clone()).await?;
        let at = Placement {
            binary: self.binary,
            dir: &run_dir,
            store_url: &store_url,
        };
        // One at a time: the first applies the migrations to the empty database.
        let mut servers = Vec::with_capacity(n);
        for i in 0..n {
            servers.push(server::start(&at, &replica_name(i), &sim, &sim_cfg).await?);
        }
        let counters = Counters::new(self.target.client().await?, db).await;
        let probe = FsyncProbe::new(self.floor_dir)?;
        let mut run = Run::new(self.args, out, probe, self.back_to_back, sim, servers)?;
        run.latency().await?;
        run.burst(Some(&counters)).await?;
        Ok(run.finish().await)
    }
}
