//! Decision latency with gates pending: the long-poll waits at the first server, the callback
//! arrives at the second (the same one on SQLite).
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use crate::client::{callback, decision_seconds, long_poll_timed, open_gates};
use crate::floors::{ms, percentiles};

use super::Run;

/// What the decision-latency phase sampled.
struct Samples {
    at_client: Vec<Duration>,
    at_server: Vec<Duration>,
    callback_answered: Vec<Duration>,
}

impl Run<'_> {
    /// The server that decides: the next one after the long-polls' (itself when alone).
    fn decider(&self) -> usize {
        1 % self.servers.len()
    }

    /// 1. Decision latency with `pending` gates waiting: callback sent → long-poll answered.
    pub(super) async fn latency(&mut self) -> anyhow::Result<()> {
        let at = [self.servers[0].url.as_str()];
        let gates = open_gates(&self.http, &at, &self.sim, "Latency", self.args.pending).await?;
        let sampled = self.args.samples.min(gates.len());
        let before = self.sim.requests().len();
        // The store commit and wake-ups are timed where the decision is made.
        let decider = self.servers[self.decider()].url.clone();
        let commit_before = decision_seconds(&self.http, &decider).await;
        let samples = self.sample_decisions(&gates[..sampled]).await?;
        let commit_after = decision_seconds(&self.http, &decider).await;
        let commit_mean = match (commit_before, commit_after) {
            (Some((s0, n0)), Some((s1, n1))) if n1 > n0 => {
                ms(Duration::from_secs_f64((s1 - s0) / (n1 - n0)))
            }
            _ => "n/a (no decision_latency_seconds at the deciding replica)".into(),
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
        let decider = self.decider();
        for (id, cb) in gates {
            let waiter = {
                let http = self.http.clone();
                let (url, id) = (self.servers[0].url.clone(), id.clone());
                tokio::spawn(async move { long_poll_timed(&http, &url, &id).await })
            };
            // Give the long-poll time to be registered before the decision, then sample the
            // floor while everything is quiet (the long-poll parked, nothing else in flight).
            tokio::time::sleep(Duration::from_millis(5)).await;
            self.probe.sample()?;
            tokio::time::sleep(Duration::from_millis(1)).await;
            let cb = self.callback_at(cb, 0, decider);
            let t = Instant::now();
            let status = callback(&self.http, &cb).await?;
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
}
