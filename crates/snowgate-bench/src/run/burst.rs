//! `burst` gates pending with `burst` open long-polls: memory, then a burst of callbacks. With
//! several replicas, gate `i` is opened and long-polled at replica `i % n` and its callback
//! sent to the next one, `(i + 1) % n`, so every decision wakes a waiter at another replica.
use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};
use serde_json::Value;

use crate::client::{callback, long_poll, open_gates};
use crate::floors::rss_kib;

use super::postgres::Counters;
use super::Run;

type Waiter = tokio::task::JoinHandle<(anyhow::Result<Value>, Instant)>;

fn mb(kib: u64) -> String {
    format!("{:.1} MB", kib as f64 / 1024.0)
}

impl Run<'_> {
    fn rss(&self) -> Vec<u64> {
        self.servers
            .iter()
            .map(|s| rss_kib(s.child.id()).unwrap_or(0))
            .collect()
    }

    /// Phase 2: memory with the long-polls open, then the burst; with `counters`,
    /// PostgreSQL's commits and WAL flushes during it.
    pub(super) async fn burst(&mut self, counters: Option<&Counters>) -> anyhow::Result<()> {
        let n = self.servers.len();
        let urls = self.urls();
        let burst = open_gates(&self.http, &urls, &self.sim, "Burst", self.args.burst).await?;
        let rss_opened = self.rss();
        let waiters = self.park_long_polls(&burst).await;
        self.report_memory(burst.len(), &rss_opened)?;
        let before = match counters {
            Some(c) => Some(c.settled().await?),
            None => None,
        };
        let callbacks: Vec<String> = burst
            .iter()
            .enumerate()
            .map(|(i, (_, cb))| self.callback_at(cb, i % n, (i + 1) % n))
            .collect();
        let started = Instant::now();
        let results: Vec<anyhow::Result<u16>> = stream::iter(callbacks)
            .map(|cb| {
                let http = self.http.clone();
                async move { callback(&http, &cb).await }
            })
            .buffer_unordered(self.args.clients)
            .collect()
            .await;
        let answered = started.elapsed();
        let at_answer = match counters {
            Some(c) => Some(c.read().await?),
            None => None,
        };
        let ok = results.iter().filter(|r| matches!(r, Ok(200))).count();
        let (released, last) = released(waiters, started).await?;
        writeln!(
            self.out,
            "burst of {} callbacks from {} clients: {ok} answered 200 in {:.2} s ({:.0} callbacks/s); {released} waiters released, the last {:.2} s after the first callback",
            burst.len(),
            self.args.clients,
            answered.as_secs_f64(),
            ok as f64 / answered.as_secs_f64(),
            last.as_secs_f64()
        )?;
        if let (Some(c), Some(before), Some(at_answer)) = (counters, before, at_answer) {
            let settled = c.settled().await?;
            c.report(&mut self.out, answered, ok, [before, at_answer, settled])?;
        }
        Ok(())
    }

    fn report_memory(&mut self, burst: usize, rss_opened: &[u64]) -> anyhow::Result<()> {
        let rss = self.rss();
        let pending = self.args.pending.saturating_sub(self.args.samples);
        if let ([rss], [idle], [opened]) = (&rss[..], &self.rss_idle[..], rss_opened) {
            writeln!(
                self.out,
                "resident memory with {pending} + {burst} gates pending and {burst} open long-polls: {} (idle after start {}; after opening the gates, before the long-polls {})",
                mb(*rss),
                mb(*idle),
                mb(*opened)
            )?;
            return Ok(());
        }
        let each = |v: &[u64]| -> String {
            let parts: Vec<String> = self
                .servers
                .iter()
                .zip(v)
                .map(|(s, kib)| format!("{} {}", s.name, mb(*kib)))
                .collect();
            parts.join(", ")
        };
        writeln!(
            self.out,
            "resident memory with {pending} + {burst} gates pending and {burst} open long-polls over {} replicas: max {}; per replica {} (idle after start {}; after opening the gates, before the long-polls {})",
            self.servers.len(),
            mb(rss.iter().copied().max().unwrap_or(0)),
            each(&rss),
            each(&self.rss_idle),
            each(rss_opened)
        )?;
        Ok(())
    }

    /// One long-poll per gate, gate `i` at server `i % n`, each answered with the gate and the
    /// time it came back.
    async fn park_long_polls(&self, gates: &[(String, String)]) -> Vec<Waiter> {
        let waiting = Arc::new(AtomicUsize::new(0));
        let mut waiters = Vec::with_capacity(gates.len());
        for (i, (id, _)) in gates.iter().enumerate() {
            let http = self.http.clone();
            let url = self.servers[i % self.servers.len()].url.clone();
            let id = id.clone();
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

/// How many waiters came back approved, and when the last one came back after `started`.
async fn released(waiters: Vec<Waiter>, started: Instant) -> anyhow::Result<(usize, Duration)> {
    let mut last = started;
    let mut released = 0;
    for w in waiters {
        let (g, at) = w.await?;
        if g.is_ok_and(|g| g["state"] == "approved") {
            released += 1;
        }
        last = last.max(at);
    }
    Ok((released, last - started))
}
