//! `snowgate-bench`: measures a built `snowgate` binary on this machine, by hand (never in CI):
//! decision latency with gates pending, resident memory with open long-polls, and a burst of
//! callbacks. It runs `snowgate serve` as child processes (their own SQLite file, or replicas on
//! one PostgreSQL) against the ServiceNow simulator on loopback, and reports beside each figure
//! the floor measured in the same run: a 4 KiB write + fsync on the same disk, and a loopback
//! round trip. BENCHMARKS.md holds the results.
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
    /// Run on this PostgreSQL database (empty; migrations are applied) with two replicas,
    /// instead of one process on SQLite.
    #[arg(long)]
    pub postgres: Option<String>,
    /// Directory for the store (default: a fresh directory under the current one, so the
    /// floor is measured on the disk snowgate would use).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = BenchArgs::parse();
    let report = run::run(args).await?;
    println!("{report}");
    Ok(())
}
