//! What the figures are compared with: the disk's fsync latency, percentiles, and a process's
//! resident memory.
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Clone, Copy)]
pub struct Percentiles {
    pub p50: Duration,
    pub p90: Duration,
    pub p99: Duration,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

pub fn percentiles(mut v: Vec<Duration>) -> Percentiles {
    v.sort();
    Percentiles {
        p50: percentile(&v, 0.50),
        p90: percentile(&v, 0.90),
        p99: percentile(&v, 0.99),
    }
}

pub fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

/// The durable store's floor: latency of a 4 KiB write + fsync in the store's directory.
pub struct FsyncProbe {
    file: std::fs::File,
    path: PathBuf,
    pub samples: Vec<Duration>,
}

impl FsyncProbe {
    pub fn new(dir: &Path) -> anyhow::Result<FsyncProbe> {
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

    pub fn sample(&mut self) -> anyhow::Result<()> {
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

/// A process's resident memory (`VmRSS`), in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}
