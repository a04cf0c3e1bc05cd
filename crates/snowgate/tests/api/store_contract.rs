//! The store trait's contract, run against both backends: SQLite and a real PostgreSQL.
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use snowgate::decisions::follow_ups;
use snowgate::domain::gate::Actor;
use snowgate::domain::{CallbackToken, GateSpec, GateState};
use snowgate::store::{
    Completion, GateStore, NewOutbox, OutboxKind, OutboxResult, PgOptions, PostgresStore,
    SqliteStore, Transition, TransitionOutcome,
};

use crate::helpers::gate_body;
use crate::pg::PgServer;

fn spec(stage: &str) -> GateSpec {
    GateSpec::parse(&gate_body(stage)).unwrap()
}

fn decision(id: uuid::Uuid, to: GateState) -> Transition {
    Transition {
        gate_id: id,
        to,
        proceed: Some(to == GateState::Approved),
        message: format!("test {to}"),
        actor: Actor::ServiceNow,
        event_kind: "decided",
        change_request: None,
        outbox: vec![NewOutbox {
            kind: OutboxKind::Acknowledge,
            payload: json!({}),
        }],
        timers: Default::default(),
    }
}

/// A new gate of `stage` in `store`; its id.
async fn opened(store: &dyn GateStore, stage: &str) -> uuid::Uuid {
    store
        .open_gate(
            spec(stage),
            CallbackToken::generate(),
            Duration::from_secs(30),
        )
        .await
        .unwrap()
        .gate
        .id
}

/// The registration's move, registering → pending, with nothing to send.
fn to_pending(id: uuid::Uuid) -> Transition {
    let mut t = decision(id, GateState::Pending);
    t.proceed = None;
    t.outbox.clear();
    t
}

/// A SQLite store in a directory of its own (deleted when the directory is dropped).
fn sqlite_store() -> (tempfile::TempDir, Arc<dyn GateStore>) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("s.db")).unwrap();
    (dir, Arc::new(store))
}

/// A store (one process's pool of `pool` connections) on the existing database `db` of `pg`.
async fn pg_store(pg: &PgServer, db: &str, pool: usize) -> PostgresStore {
    PostgresStore::connect(PgOptions {
        url: pg.url(db),
        password: None,
        pool_size: pool,
        connect_timeout: Duration::from_secs(5),
        statement_timeout: Duration::from_secs(5),
        ca_file: None,
    })
    .await
    .unwrap()
}

async fn contract(store: Arc<dyn GateStore>) {
    // Opening is idempotent on (jobUrl, buildNumber, stageName), and claims its registration.
    let token = CallbackToken::generate();
    let opened = store
        .open_gate(spec("Deploy"), token.clone(), Duration::from_secs(30))
        .await
        .unwrap();
    assert!(opened.created);
    let item = opened.register_item.expect("a registration row");
    assert_eq!(item.kind, OutboxKind::Register);
    let again = store
        .open_gate(
            spec("Deploy"),
            CallbackToken::generate(),
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    assert!(!again.created);
    assert_eq!(again.gate.id, opened.gate.id);
    let id = opened.gate.id;
    // The claimed registration is nobody else's to take.
    assert!(store
        .claim_outbox(10, Duration::from_secs(30))
        .await
        .unwrap()
        .is_empty());

    // Callback tokens find their gate, and only whole.
    assert_eq!(
        store
            .gate_by_token(token.expose())
            .await
            .unwrap()
            .unwrap()
            .id,
        id
    );
    assert!(store
        .gate_by_token(&token.expose()[..20])
        .await
        .unwrap()
        .is_none());

    // Compare-and-set: registering → pending → approved; a second decision conflicts.
    let mut pending = decision(id, GateState::Pending);
    pending.proceed = None;
    pending.outbox.clear();
    pending.timers.next_poll_ms = Some(0);
    assert!(matches!(
        store.transition(pending, follow_ups).await.unwrap(),
        TransitionOutcome::Applied(_)
    ));
    // A due poll is claimed once.
    let polled = store
        .claim_polls(10, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(polled.len(), 1);
    assert!(store
        .claim_polls(10, Duration::from_secs(60))
        .await
        .unwrap()
        .is_empty());
    match store
        .transition(decision(id, GateState::Approved), follow_ups)
        .await
        .unwrap()
    {
        TransitionOutcome::Applied(g) => {
            assert_eq!(g.state, GateState::Approved);
            assert_eq!(g.proceed, Some(true));
            assert!(g.decided_at.is_some());
            assert_eq!(
                g.timers,
                Default::default(),
                "a decision clears every timer"
            );
        }
        other => panic!("{other:?}"),
    }
    match store
        .transition(decision(id, GateState::Rejected), follow_ups)
        .await
        .unwrap()
    {
        TransitionOutcome::Conflict(g) => assert_eq!(g.state, GateState::Approved),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        store
            .transition(
                decision(uuid::Uuid::new_v4(), GateState::Approved),
                follow_ups
            )
            .await
            .unwrap(),
        TransitionOutcome::NotFound
    ));
    let kinds: Vec<String> = store
        .events(id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(kinds, vec!["opened", "decided", "decided"]);

    // The decision's acknowledgement is due; claimed once; a retry comes back after its delay.
    let acks = store
        .claim_outbox(10, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(acks.len(), 1);
    assert_eq!(acks[0].kind, OutboxKind::Acknowledge);
    assert!(store
        .claim_outbox(10, Duration::from_secs(30))
        .await
        .unwrap()
        .is_empty());
    store
        .finish_outbox(
            &acks[0],
            OutboxResult::Retry {
                after: Duration::from_millis(100),
                error: "503".into(),
            },
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    let again = store
        .claim_outbox(10, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].attempts, 1);
    store
        .finish_outbox(
            &again[0],
            OutboxResult::Done {
                message: "ok".into(),
            },
        )
        .await
        .unwrap();
    // An expired claim is taken over (a dead replica's work).
    store
        .finish_outbox(
            &item,
            OutboxResult::Done {
                message: "registered".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(store.outbox_backlog().await.unwrap(), 0);

    // Completion: once, after the decision.
    let other = store
        .open_gate(
            spec("Verify"),
            CallbackToken::generate(),
            Duration::from_millis(1),
        )
        .await
        .unwrap();
    assert!(matches!(
        store
            .complete_gate(other.gate.id, "success".into(), Actor::Pipeline, vec![])
            .await
            .unwrap(),
        Completion::NotDecided(_)
    ));
    tokio::time::sleep(Duration::from_millis(20)).await;
    let expired = store
        .claim_outbox(10, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(expired.len(), 1, "an expired claim is due again");
    assert!(matches!(
        store
            .complete_gate(id, "success".into(), Actor::Pipeline, vec![])
            .await
            .unwrap(),
        Completion::Recorded(_)
    ));
    assert!(matches!(
        store
            .complete_gate(id, "failure".into(), Actor::Pipeline, vec![])
            .await
            .unwrap(),
        Completion::AlreadyCompleted { .. }
    ));

    // Listing and counts.
    let listed = store
        .list_gates(Some(GateState::Registering), 10)
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].spec.stage_name, "Verify");
    let counts = store.count_by_state().await.unwrap();
    assert!(counts.contains(&(GateState::Approved, 1)));
    store.ping().await.unwrap();
}

/// Decisions made at the same moment share commits (group commit): of two decisions on one
/// gate exactly one applies and the other conflicts, each applied one has its one event and
/// its acknowledgement, and `gates` reads many gates at once. Among them, one decision the
/// store refuses (two acknowledgements for one gate, against the one-acknowledgement index)
/// fails alone, and one whose text holds a NUL character (which PostgreSQL's text cannot
/// hold) is stored all the same.
async fn concurrent_decisions(store: Arc<dyn GateStore>) {
    let mut ids = Vec::new();
    for i in 0..42 {
        ids.push(pending_gate(&store, &format!("S{i}")).await);
    }
    let (poison, nul) = (ids.pop().unwrap(), ids.pop().unwrap());
    let mut racing = Vec::new();
    for id in &ids {
        for to in [GateState::Approved, GateState::Rejected] {
            let store = store.clone();
            let t = decision(*id, to);
            racing.push(tokio::spawn(async move {
                (t.gate_id, store.transition(t, follow_ups).await)
            }));
        }
    }
    let mut refused = decision(poison, GateState::Canceled);
    refused.outbox.extend(refused.outbox.clone());
    let with_nul = {
        let mut t = decision(nul, GateState::Approved);
        t.message = "approved: a comment with a \u{0} in it".into();
        t
    };
    let others = [refused, with_nul].map(|t| {
        let store = store.clone();
        tokio::spawn(async move { store.transition(t, follow_ups).await })
    });
    let mut applied = std::collections::HashMap::new();
    for r in racing {
        let (id, outcome) = r.await.unwrap();
        match outcome.unwrap() {
            TransitionOutcome::Applied(g) => {
                assert!(
                    applied.insert(id, g.state).is_none(),
                    "two decisions applied to {id}"
                );
            }
            TransitionOutcome::Conflict(g) => assert!(g.state.is_terminal()),
            TransitionOutcome::NotFound => panic!("{id} not found"),
        }
    }
    let [refused, with_nul] = others;
    let refused = refused.await.unwrap();
    assert!(refused.is_err(), "the refused decision fails: {refused:?}");
    assert_eq!(
        store.gate(poison).await.unwrap().unwrap().state,
        GateState::Pending,
        "and leaves nothing behind"
    );
    match with_nul.await.unwrap().unwrap() {
        TransitionOutcome::Applied(g) => assert!(g.message.starts_with("approved: a comment")),
        other => panic!("{other:?}"),
    }
    assert_eq!(applied.len(), ids.len(), "one decision applied per gate");
    let read = store.gates(&ids).await.unwrap();
    assert_eq!(read.len(), ids.len());
    for g in &read {
        assert_eq!(
            Some(&g.state),
            applied.get(&g.id),
            "the winner is what is stored"
        );
        let decided: Vec<_> = store
            .events(g.id)
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.kind == "decided" && e.to_state.is_some_and(|s| s.is_terminal()))
            .collect();
        assert_eq!(decided.len(), 1, "one decision event for {}", g.id);
        assert_eq!(decided[0].to_state, Some(g.state));
    }
    assert!(store
        .gates(&[uuid::Uuid::new_v4()])
        .await
        .unwrap()
        .is_empty());
    // One acknowledgement per gate: the registrations (claimed for 0 s) and the acks.
    let due = store
        .claim_outbox(1000, Duration::from_secs(30))
        .await
        .unwrap();
    let acks = due
        .iter()
        .filter(|i| i.kind == OutboxKind::Acknowledge)
        .count();
    assert_eq!(
        acks,
        ids.len() + 1,
        "one per racing gate, and the NUL one's"
    );
}

async fn pending_gate(store: &Arc<dyn GateStore>, stage: &str) -> uuid::Uuid {
    let id = store
        .open_gate(spec(stage), CallbackToken::generate(), Duration::ZERO)
        .await
        .unwrap()
        .gate
        .id;
    let mut pending = decision(id, GateState::Pending);
    pending.outbox.clear();
    store.transition(pending, follow_ups).await.unwrap();
    id
}

#[tokio::test]
async fn concurrent_decisions_on_sqlite_apply_once_per_gate_and_a_refused_one_fails_alone() {
    let (_dir, store) = sqlite_store();
    concurrent_decisions(store).await;
}

#[tokio::test]
async fn concurrent_decisions_on_postgres_apply_once_per_gate_and_a_refused_one_fails_alone() {
    let pg = PgServer::start();
    pg.database("batches").await;
    let store = pg_store(&pg, "batches", 4).await;
    concurrent_decisions(Arc::new(store)).await;
}

/// The status page's and the pass-through's queries: open gates oldest first, decisions
/// newest first, a build's gates newest first.
async fn status_queries(store: Arc<dyn GateStore>) {
    let mut ids = Vec::new();
    for stage in ["A", "B", "C", "D"] {
        let opened = store
            .open_gate(spec(stage), CallbackToken::generate(), Duration::ZERO)
            .await
            .unwrap();
        ids.push(opened.gate.id);
        // Distinct creation times: the order under test is by time, not by id.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut other_build = gate_body("A");
    other_build["buildNumber"] = json!(43);
    let other = store
        .open_gate(
            GateSpec::parse(&other_build).unwrap(),
            CallbackToken::generate(),
            Duration::ZERO,
        )
        .await
        .unwrap()
        .gate
        .id;
    // D is decided first, then C.
    for (id, to) in [(ids[3], GateState::Rejected), (ids[2], GateState::Approved)] {
        let decided = store
            .transition(decision(id, to), follow_ups)
            .await
            .unwrap();
        assert!(matches!(decided, TransitionOutcome::Applied(_)));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let of = |gates: Vec<snowgate::domain::Gate>| gates.iter().map(|g| g.id).collect::<Vec<_>>();
    assert_eq!(
        of(store.open_gates(10).await.unwrap()),
        vec![ids[0], ids[1], other]
    );
    assert_eq!(of(store.open_gates(1).await.unwrap()), vec![ids[0]]);
    assert_eq!(
        of(store.recent_decisions(10).await.unwrap()),
        vec![ids[2], ids[3]]
    );
    assert_eq!(of(store.recent_decisions(1).await.unwrap()), vec![ids[2]]);
    assert_eq!(
        of(store.gates_of_build("42", 10).await.unwrap()),
        vec![ids[3], ids[2], ids[1], ids[0]]
    );
    assert_eq!(
        of(store.gates_of_build("43", 10).await.unwrap()),
        vec![other]
    );
    assert!(store.gates_of_build("44", 10).await.unwrap().is_empty());
    let mut counts = store.count_by_state().await.unwrap();
    counts.sort_by_key(|(s, _)| s.as_str());
    assert_eq!(
        counts,
        vec![
            (GateState::Approved, 1),
            (GateState::Registering, 3),
            (GateState::Rejected, 1)
        ]
    );
}

#[tokio::test]
async fn the_sqlite_store_answers_the_status_queries() {
    let (_dir, store) = sqlite_store();
    status_queries(store).await;
}

#[tokio::test]
async fn the_postgres_store_answers_the_status_queries() {
    let pg = PgServer::start();
    pg.database("status").await;
    let store = pg_store(&pg, "status", 2).await;
    status_queries(Arc::new(store)).await;
}

#[tokio::test]
async fn the_sqlite_store_keeps_the_contract() {
    let (_dir, store) = sqlite_store();
    contract(store).await;
}

#[tokio::test]
async fn the_postgres_store_keeps_the_contract() {
    let pg = PgServer::start();
    pg.database("contract").await;
    let store = pg_store(&pg, "contract", 4).await;
    contract(Arc::new(store.clone())).await;
    // Migrations applied by a second process are a no-op (and never race: advisory lock).
    let second = pg_store(&pg, "contract", 2).await;
    second.ping().await.unwrap();
    // Replicas count each other (to share servicenow.max_requests_per_second).
    assert_eq!(
        store.heartbeat("a", Duration::from_secs(5)).await.unwrap(),
        1
    );
    assert_eq!(
        second.heartbeat("b", Duration::from_secs(5)).await.unwrap(),
        2
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        second
            .heartbeat("b", Duration::from_millis(200))
            .await
            .unwrap(),
        1,
        "a silent replica stops counting"
    );
    // Leases: one holder at a time until it expires.
    assert!(store
        .try_lease("reconcile", "a", Duration::from_millis(300))
        .await
        .unwrap());
    assert!(!second
        .try_lease("reconcile", "b", Duration::from_millis(300))
        .await
        .unwrap());
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert!(second
        .try_lease("reconcile", "b", Duration::from_millis(300))
        .await
        .unwrap());
}

/// SQLite answers lookups by key on a per-thread connection (`read_point`): several stores
/// used from one thread must each read their own file, also after more stores than the
/// per-thread cache keeps, and a lookup must see what the writer committed just before.
#[tokio::test]
async fn sqlite_lookups_by_key_read_their_own_store_and_the_latest_commit() {
    let dir = tempfile::tempdir().unwrap();
    let mut opened = Vec::new();
    for i in 0..6 {
        let store = SqliteStore::open(&dir.path().join(format!("s{i}.db"))).unwrap();
        let token = CallbackToken::generate();
        let gate = store
            .open_gate(
                spec(&format!("Stage {i}")),
                token.clone(),
                Duration::from_secs(30),
            )
            .await
            .unwrap()
            .gate;
        opened.push((store, gate.id, token));
    }
    for (i, (store, id, token)) in opened.iter().enumerate() {
        let by_id = store.gate(*id).await.unwrap().expect("its own gate");
        assert_eq!(by_id.spec.stage_name, format!("Stage {i}"));
        let by_token = store
            .gate_by_token(token.expose())
            .await
            .unwrap()
            .expect("its own gate by token");
        assert_eq!(by_token.id, *id);
        // Another store's gate is not found here.
        let (_, other_id, other_token) = &opened[(i + 1) % opened.len()];
        assert!(store.gate(*other_id).await.unwrap().is_none());
        assert!(store
            .gate_by_token(other_token.expose())
            .await
            .unwrap()
            .is_none());
        // A decision committed by the writer is seen by the next lookup on this thread.
        let decided = store
            .transition(decision(*id, GateState::Approved), follow_ups)
            .await
            .unwrap();
        assert!(matches!(decided, TransitionOutcome::Applied(_)));
        assert_eq!(
            store.gate(*id).await.unwrap().unwrap().state,
            GateState::Approved
        );
    }
}

/// A decision whose caller goes away while the store commits (a callback whose connection
/// closed) still wakes its gate's long-polls: the decision runs to its end by itself, or the
/// long-polls of this process would wait out their time for a gate already decided.
#[tokio::test]
async fn a_decision_abandoned_by_its_caller_still_wakes_its_long_polls() {
    use snowgate::decisions::{Decider, Wakeups};
    use snowgate::freezes::Freezes;
    use snowgate::metrics::Metrics;
    use snowgate::waiters::Waiters;

    let (_dir, store) = sqlite_store();
    let id = opened(&*store, "Deploy").await;
    assert!(matches!(
        store.transition(to_pending(id), follow_ups).await.unwrap(),
        TransitionOutcome::Applied(_)
    ));
    let settings = snowgate::configuration::Settings::default();
    let waiters = Waiters::new();
    let decider = Decider::new(
        store.clone(),
        waiters.clone(),
        Arc::new(Wakeups::default()),
        Arc::new(Metrics::new()),
        Arc::new(Freezes::new(&settings, store.clone()).unwrap()),
    );
    let mut long_poll = waiters.subscribe(id);
    // Polled once, then dropped: the caller left before the commit.
    let left = tokio::time::timeout(
        Duration::ZERO,
        decider.decide(decision(id, GateState::Approved)),
    )
    .await;
    assert!(left.is_err(), "the decision was not committed yet");
    let woken = tokio::time::timeout(Duration::from_secs(10), long_poll.decided())
        .await
        .expect("the long-poll was woken")
        .expect("with the decision");
    assert_eq!(woken.gate.state, GateState::Approved);
    assert_eq!(
        store.gate(id).await.unwrap().unwrap().state,
        GateState::Approved
    );
}

/// Change-mode title locks hold their connection across ServiceNow's search and create; a
/// quarter of the pool at most (one here) may be held so, and decisions always find one.
#[tokio::test]
async fn title_locks_never_take_the_connections_decisions_need() {
    let pg = PgServer::start();
    pg.database("titles").await;
    let store: Arc<dyn GateStore> = Arc::new(pg_store(&pg, "titles", 2).await);
    let id = opened(&*store, "Deploy").await;
    let first = store
        .lock_title("Deploy shop/app to Production")
        .await
        .unwrap();
    // Another title waits for the one permit, not for a connection of its own.
    let second = {
        let store = store.clone();
        tokio::spawn(async move { store.lock_title("Deploy billing to Production").await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !second.is_finished(),
        "a second title lock waits for the permit"
    );
    // The store still answers: reads and decisions have the rest of the pool.
    let read = tokio::time::timeout(Duration::from_secs(2), store.gate(id))
        .await
        .expect("a read while a title lock is held")
        .unwrap();
    assert!(read.is_some());
    let decided = tokio::time::timeout(
        Duration::from_secs(2),
        store.transition(to_pending(id), follow_ups),
    )
    .await
    .expect("a decision while a title lock is held")
    .unwrap();
    assert!(matches!(decided, TransitionOutcome::Applied(_)));
    drop(first);
    tokio::time::timeout(Duration::from_secs(5), second)
        .await
        .expect("the second title lock once the first is dropped")
        .unwrap()
        .unwrap();
}
