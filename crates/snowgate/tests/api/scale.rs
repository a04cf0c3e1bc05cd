//! Many decisions at once: races settled inside one batch of commits, PostgreSQL killed in the
//! middle of a burst, and two replicas racing for one change request title.
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use servicenow_sim::{Fault, SimHandle, SimSettings};
use snowgate::api::{EventView, GateView};
use snowgate::configuration::{NamedToken, Secret, Settings};
use snowgate::domain::GateState;
use tokio::sync::{Barrier, Semaphore};

use crate::durability::{gate, succeed_counted};
use crate::helpers::*;
use crate::replicas::{replicas, ReplicaSetup, Replicas};

const BOB_TOKEN: &str = "operator-token-bob-0123456789abcdef";

/// A second operator, so two operator decisions on one gate come from different actors.
fn two_operators(s: &mut Settings) {
    s.auth.operator_tokens.push(NamedToken {
        name: "bob".into(),
        token: Secret::new(BOB_TOKEN),
        token_file: None,
    });
}

/// One of the two decisions sent for a gate.
#[derive(Clone, Debug)]
struct Contender {
    url: String,
    bearer: Option<&'static str>,
    body: String,
    to: GateState,
    actor: &'static str,
    /// A text only this decision carries (its reason or its comments), to find it in the trail.
    mark: String,
}

/// Even gates: alice resumes while bob aborts (the loser's operator route answers 409).
/// Odd gates: ServiceNow calls back `succeeded` and `rejected` at once (the loser's callback
/// finds a gate ServiceNow decided otherwise: 409). A callback against an operator decision is
/// left out: the plugin forgets the token of a gate stopped by hand, so that loser gets 410.
fn contenders(app: &TestApp, i: usize, gate: &GateView) -> [Contender; 2] {
    if i.is_multiple_of(2) {
        let op = |token, actor, verb: &str, to| {
            let mark = format!("{verb}-{i:03}");
            Contender {
                url: app.url(&format!("/api/v1/gates/{}/{verb}", gate.id)),
                bearer: Some(token),
                body: json!({ "reason": mark }).to_string(),
                to,
                actor,
                mark,
            }
        };
        [
            op(
                OPERATOR_TOKEN,
                "operator:alice",
                "resume",
                GateState::Resumed,
            ),
            op(BOB_TOKEN, "operator:bob", "abort", GateState::Aborted),
        ]
    } else {
        let url = app.callback_url_of(&gate.stage_name);
        let cb = |result: &str, to| {
            let mark = format!("{result}-{i:03}");
            Contender {
                url: url.clone(),
                bearer: None,
                body: json!({ "result": result, "changeComments": mark }).to_string(),
                to,
                actor: "servicenow",
                mark,
            }
        };
        [
            cb("succeeded", GateState::Approved),
            cb("rejected", GateState::Rejected),
        ]
    }
}

async fn send(client: &reqwest::Client, c: &Contender) -> u16 {
    let mut req = client
        .post(&c.url)
        .header("Content-Type", "application/json")
        .body(c.body.clone());
    if let Some(token) = c.bearer {
        req = req.bearer_auth(token);
    }
    req.send().await.unwrap().status().as_u16()
}

/// One 200 and one 409, and the gate and its trail as the winner left them, the loser not.
async fn check_race(app: &TestApp, gate: &GateView, pair: &[Contender; 2], got: [u16; 2]) {
    let stage = &gate.stage_name;
    let mut sorted = got;
    sorted.sort_unstable();
    assert_eq!(sorted, [200, 409], "{stage}: {got:?} for {pair:?}");
    let w = usize::from(got[0] != 200);
    let (winner, loser) = (&pair[w], &pair[1 - w]);
    let g = app.gate(gate.id).await;
    assert_eq!(g.state, winner.to, "{stage}: {g:?}");
    assert_eq!(
        g.decided_by.as_deref(),
        Some(winner.actor),
        "{stage}: {g:?}"
    );
    assert!(g.message.contains(&winner.mark), "{stage}: {g:?}");
    let events = app.events(gate.id).await;
    let decisions: Vec<&EventView> = events
        .iter()
        .filter(|e| e.to_state.is_some_and(GateState::is_terminal))
        .collect();
    assert_eq!(decisions.len(), 1, "{stage}: {events:#?}");
    assert_eq!(decisions[0].actor, winner.actor, "{stage}: {events:#?}");
    assert_eq!(
        decisions[0].to_state,
        Some(winner.to),
        "{stage}: {events:#?}"
    );
    assert!(decisions[0].message.contains(&winner.mark), "{events:#?}");
    // Nothing of the loser's: no row naming its reason, none by its actor (when that is not
    // also the winner's), and no late-callback acknowledgement queued beside the winner's.
    for e in &events {
        assert!(!e.message.contains(&loser.mark), "{stage}: {e:?}");
        assert!(
            loser.actor == winner.actor || e.actor != loser.actor,
            "{stage}: {e:?}"
        );
        assert_ne!(e.kind, "late_callback", "{stage}: {events:#?}");
    }
}

/// The acknowledgements the simulator accepted for `stage`'s change request.
fn acks(sim: &SimHandle, stage: &str) -> u32 {
    sim.changes()
        .into_iter()
        .find(|c| c.stage_name == stage)
        .map_or(0, |c| c.acknowledgements)
}

/// Callback gates: the winner's acknowledgement arrives, once, and the loser's never (there
/// would be two). Operator gates: no acknowledgement at all.
async fn check_acknowledgements(app: &TestApp, gates: &[GateView]) {
    let callback_stages: Vec<&str> = gates
        .iter()
        .skip(1)
        .step_by(2)
        .map(|g| g.stage_name.as_str())
        .collect();
    for _ in 0..400 {
        if callback_stages.iter().all(|s| acks(&app.sim, s) >= 1) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Give a second acknowledgement the chance to show.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for (i, g) in gates.iter().enumerate() {
        let expected = u32::from(i % 2 == 1);
        let n = acks(&app.sim, &g.stage_name);
        assert_eq!(n, expected, "{}: {n} acknowledgements", g.stage_name);
    }
}

/// 60 pending gates, two decisions each that cannot both win, all 120 sent together.
async fn decision_race(app: &TestApp) {
    const GATES: usize = 60;
    let mut gates = Vec::new();
    for i in 0..GATES {
        let g = app.open(&format!("Stage {i}")).await;
        gates.push(app.until_state(g.id, GateState::Pending).await);
    }
    let pairs: Vec<[Contender; 2]> = gates
        .iter()
        .enumerate()
        .map(|(i, g)| contenders(app, i, g))
        .collect();
    // Every request waits for all the others, so they reach the store together.
    let barrier = Arc::new(Barrier::new(2 * GATES));
    let mut tasks = Vec::new();
    for (i, pair) in pairs.iter().enumerate() {
        for (k, c) in pair.iter().enumerate() {
            let (client, c, barrier) = (app.client.clone(), c.clone(), barrier.clone());
            tasks.push(tokio::spawn(async move {
                barrier.wait().await;
                (i, k, send(&client, &c).await)
            }));
        }
    }
    let mut got = vec![[0u16; 2]; GATES];
    for t in tasks {
        let (i, k, status) = t.await.unwrap();
        got[i][k] = status;
    }
    for (i, pair) in pairs.iter().enumerate() {
        check_race(app, &gates[i], pair, got[i]).await;
    }
    let first_won = got.iter().filter(|s| s[0] == 200).count();
    eprintln!("the first of each pair won {first_won} of {GATES} races");
    check_acknowledgements(app, &gates).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_decision_batch_where_some_lose_their_race_answers_409_to_exactly_those() {
    let app = spawn_app_on(TestStore::Postgres, quiet_sim(), two_operators, &[]).await;
    decision_race(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_racing_batch_on_the_test_pass_store_answers_409_to_exactly_the_losers() {
    // SQLite, or PostgreSQL when SNOWGATE_TEST_STORE=postgres (helpers.rs decides).
    let app = spawn_app_with(quiet_sim(), two_operators).await;
    decision_race(&app).await;
}

/// Change mode: every gate of one job and environment gets the same title, whatever its build.
const CHANGE_TITLE: &str = "Deploy shop/app to Production";

/// Two replicas, each naming itself in its callback URL, so ServiceNow calls back the replica
/// that registered.
async fn two_replicas(sim_cfg: SimSettings, change: bool) -> Replicas {
    let setup = ReplicaSetup {
        count: 2,
        poll: "1h",
        change,
        callbacks_to_first: false,
    };
    replicas(sim_cfg, setup).await
}

/// Every registered callback URL, by stage (one pass over the simulator's requests).
fn callback_urls(sim: &SimHandle) -> HashMap<String, String> {
    sim.requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/orchestration/changeControl"))
        .filter_map(|r| {
            let body = r.json()?;
            Some((
                body["stageName"].as_str()?.to_string(),
                body["callbackURL"].as_str()?.to_string(),
            ))
        })
        .collect()
}

/// Open `stages`, alternating replicas, 16 at a time; their ids in order.
async fn open_all(c: &Replicas, client: &reqwest::Client, stages: &[String]) -> Vec<String> {
    let limit = Arc::new(Semaphore::new(16));
    let mut tasks = Vec::new();
    for (i, stage) in stages.iter().enumerate() {
        let (client, limit) = (client.clone(), limit.clone());
        let (url, body) = (c.urls[i % c.urls.len()].clone(), gate_body(stage));
        tasks.push(tokio::spawn(async move {
            let _permit = limit.acquire_owned().await.unwrap();
            let g = open_at(&client, &url, &body, &[201]).await;
            assert_eq!(g.state, GateState::Pending, "{g:?}");
            g.id.to_string()
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.unwrap());
    }
    ids
}

/// Send every callback, 32 at a time; once `stop_after` have been answered 200, stop
/// PostgreSQL (`pg_ctl stop -m immediate`) while the rest are in flight. Each reply's status,
/// `None` for a connection error or a timeout.
async fn burst_with_a_kill(
    c: &Replicas,
    client: &reqwest::Client,
    urls: &[String],
) -> Vec<Option<u16>> {
    let stop_after = 20;
    let limit = Arc::new(Semaphore::new(32));
    let answered = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for url in urls {
        let (client, limit, answered, url) =
            (client.clone(), limit.clone(), answered.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = limit.acquire_owned().await.unwrap();
            succeed_counted(&client, &url, &answered).await
        }));
    }
    for _ in 0..60_000 {
        if answered.load(Ordering::SeqCst) >= stop_after {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    tokio::task::block_in_place(|| c.pg.stop());
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    statuses
}

async fn until_ready(client: &reqwest::Client, urls: &[String]) {
    for url in urls {
        let mut ready = false;
        for _ in 0..300 {
            let r = client.get(format!("{url}/readyz")).send().await;
            if r.is_ok_and(|r| r.status() == 200) {
                ready = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(ready, "{url} is not ready after PostgreSQL restarted");
    }
}

/// After recovery: every gate answered 200 is approved; the others failed only as an outage
/// fails (5xx or no answer) and are pending or approved (a commit whose reply was lost).
/// ServiceNow's retry of each of those then gets 200 and leaves the gate approved. Returns how
/// many were committed although their reply was not a 200.
async fn check_recovered(
    c: &Replicas,
    client: &reqwest::Client,
    ids: &[String],
    urls: &[String],
    got: &[Option<u16>],
) -> usize {
    let at = &c.urls[0];
    let mut committed_unanswered = 0;
    for (i, status) in got.iter().enumerate() {
        let g = gate(client, at, &ids[i]).await;
        match status {
            Some(200) => assert_eq!(
                g.state,
                GateState::Approved,
                "gate {i} was answered 200: {g:?}"
            ),
            other => {
                assert!(other.is_none_or(|s| s >= 500), "gate {i}: {other:?}");
                assert!(
                    matches!(g.state, GateState::Pending | GateState::Approved),
                    "gate {i}: {other:?}, then {g:?}"
                );
                committed_unanswered += usize::from(g.state == GateState::Approved);
            }
        }
    }
    for (i, status) in got.iter().enumerate() {
        if *status != Some(200) {
            let again =
                crate::durability::post(client, &urls[i], r#"{"result":"succeeded"}"#).await;
            assert_eq!(again, 200, "gate {i}: the retried callback");
            let g = gate(client, at, &ids[i]).await;
            assert_eq!(g.state, GateState::Approved, "gate {i}: {g:?}");
        }
    }
    committed_unanswered
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_the_database_mid_commit_loses_no_decision_answered_200() {
    const GATES: usize = 400;
    let c = two_replicas(quiet_sim(), false).await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    // The stop lands mid-burst unless the whole burst finished first; then try again, a few
    // times, on fresh gates.
    for round in 0..4 {
        let stages: Vec<String> = (0..GATES).map(|i| format!("R{round} Stage {i}")).collect();
        let ids = open_all(&c, &client, &stages).await;
        let registered = callback_urls(&c.sim);
        let urls: Vec<String> = stages.iter().map(|s| registered[s].clone()).collect();
        let got = burst_with_a_kill(&c, &client, &urls).await;
        c.pg.restart();
        until_ready(&client, &c.urls).await;
        let lost_replies = check_recovered(&c, &client, &ids, &urls, &got).await;
        let ok = got.iter().filter(|s| **s == Some(200)).count();
        let dropped = got.iter().filter(|s| s.is_none()).count();
        eprintln!(
            "round {round}: {ok} of {GATES} answered 200, {dropped} without an answer, \
             {lost_replies} committed without a 200"
        );
        assert!(ok >= 1, "round {round}: no callback was answered 200");
        if ok < GATES {
            return;
        }
    }
    panic!("in 4 rounds the database stop never landed before the burst had finished");
}

/// A change-mode gate body for build `build` (all of them share `CHANGE_TITLE`).
fn change_gate(build: u32) -> serde_json::Value {
    json!({
        "jobUrl": "https://ci.example.com/job/shop/job/app/",
        "buildNumber": build,
        "stageName": "Deploy",
        "buildUrl": format!("https://ci.example.com/job/shop/job/app/{build}/"),
        "mode": "change",
        "environment": "Production",
    })
}

/// The gate `id` once it links a change request (or is decided without one).
async fn until_linked(client: &reqwest::Client, address: &str, id: &str) -> GateView {
    for _ in 0..600 {
        let g = gate(client, address, id).await;
        if cr_number(&g).is_some() || g.state.is_terminal() {
            return g;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "gate {id} never linked a change request: {:?}",
        gate(client, address, id).await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_racing_for_one_change_request_title_create_one_change_request() {
    const PER_REPLICA: u32 = 3;
    let c = two_replicas(SimSettings::default(), true).await;
    let client = reqwest::Client::new();
    // A slow search and a slow create, as a busy instance answers: each replica's first gate
    // searches before either has created, which only a lock both replicas share prevents
    // from becoming two change requests. Both stay under the 2 s client timeout.
    for (endpoint, ms) in [("change.get", 500), ("change.post", 300)] {
        c.sim.inject_fault(Fault {
            endpoint: endpoint.into(),
            fail_next: 0,
            status: 500,
            latency_ms: ms,
        });
    }
    let total = 2 * PER_REPLICA as usize;
    let barrier = Arc::new(Barrier::new(total));
    let mut tasks = Vec::new();
    for k in 0..total {
        let (client, barrier) = (client.clone(), barrier.clone());
        let url = c.urls[k % 2].clone();
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let g = open_at(&client, &url, &change_gate(100 + k as u32), &[201]).await;
            (url, g.id.to_string())
        }));
    }
    let mut gates = Vec::new();
    for t in tasks {
        let (url, id) = t.await.unwrap();
        gates.push(until_linked(&client, &url, &id).await);
    }
    let titled: Vec<String> = c
        .sim
        .chg_changes()
        .into_iter()
        .filter(|cr| cr.short_description == CHANGE_TITLE)
        .map(|cr| cr.number)
        .collect();
    assert_eq!(
        titled.len(),
        1,
        "change requests titled {CHANGE_TITLE:?}: {titled:?}"
    );
    for g in &gates {
        assert_eq!(g.state, GateState::Pending, "{g:?}");
        assert_eq!(cr_number(g), Some(titled[0].as_str()), "{g:?}");
    }
}
