//! `snowgate-bench`: measures a built `snowgate` binary on this machine, by hand (never in CI):
//! decision latency with gates pending, resident memory with open long-polls, and a burst of
//! callbacks. It runs `snowgate serve` as child processes (one on its own SQLite file, then with
//! `--postgres` replicas on one PostgreSQL) against the ServiceNow simulator on loopback, and
//! reports beside each figure the floor measured in the same run: a 4 KiB write + fsync on the
//! same disk (and `pg_test_fsync` on the cluster's), and a loopback round trip. BENCHMARKS.md
//! holds the results.
use std::path::PathBuf;

use clap::Parser;

mod client;
mod floors;
mod run;
mod server;

#[derive(Clone, Debug, Parser)]
#[command(version, about, long_about = None)]
pub struct BenchArgs {
    /// The `snowgate` binary to measure (default: the one beside this binary, e.g.
    /// target/release/snowgate after `cargo build --release`).
    #[arg(long)]
    pub server: Option<PathBuf>,
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
    /// Also measure PostgreSQL, after the SQLite figures: `auto` starts a throwaway cluster
    /// (Debian's server binaries, PostgreSQL's default durability) in the bench directory; a
    /// `postgres://` URL names a server where the benchmark may create databases (its own
    /// connection, for the statistics, is without TLS).
    #[arg(long)]
    pub postgres: Option<String>,
    /// The replica counts measured on PostgreSQL, each on a fresh database.
    #[arg(long, value_delimiter = ',', default_value = "2,3")]
    pub replicas: Vec<usize>,
    /// Directory for the stores and the PostgreSQL cluster (default: a fresh directory under
    /// the current one, so the floors are measured on the disk snowgate would use).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = BenchArgs::parse();
    // On Ctrl-C the run is dropped, and with it the servers and the cluster it started
    // (their Drop guards end them).
    // Each store's figures are printed as soon as they are measured.
    tokio::select! {
        done = run::run(args) => done,
        _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted"),
    }
}
