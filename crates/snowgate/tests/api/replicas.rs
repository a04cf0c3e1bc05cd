//! Two real `snowgate serve` processes on one PostgreSQL database, and the replica fixture
//! scale.rs shares.
use std::time::{Duration, Instant};

use servicenow_sim::{SimHandle, SimSettings};
use snowgate::api::GateView;
use snowgate::domain::GateState;

use crate::durability::{free_port, gate, get_json, post, start_binary, Binary};
use crate::helpers::*;
use crate::pg::PgServer;

/// Replicas of `snowgate serve` on one PostgreSQL database, ended by pid when dropped.
pub(crate) struct Replicas {
    pub sim: SimHandle,
    pub pg: PgServer,
    _dir: tempfile::TempDir,
    bins: Vec<Option<Binary>>,
    /// Replica `n` listens at `urls[n]`.
    pub urls: Vec<String>,
}

impl Replicas {
    /// SIGKILL replica `n`.
    pub fn kill(&mut self, n: usize) {
        self.bins[n].take().expect("replica is running").kill();
    }
}

impl Drop for Replicas {
    fn drop(&mut self) {
        for mut bin in self.bins.drain(..).flatten() {
            let _ = bin.child.kill();
            let _ = bin.child.wait();
        }
    }
}

/// What differs between the replica sets of the tests.
#[derive(Clone, Copy)]
pub(crate) struct ReplicaSetup {
    pub count: usize,
    /// `servicenow.poll_interval`.
    pub poll: &'static str,
    /// Basic auth and change mode for Production (title "Deploy {job} to {environment}"),
    /// instead of token auth and gates of their own.
    pub change: bool,
    /// Every callback URL names replica 0, as one public URL behind a load balancer would;
    /// otherwise each replica names itself, so ServiceNow calls back the one that registered.
    pub callbacks_to_first: bool,
}

/// A replica's YAML.
fn replica_yaml(
    port: u16,
    public: &str,
    sim: &SimHandle,
    cfg: &SimSettings,
    db: &str,
    setup: ReplicaSetup,
) -> String {
    let (auth, change_yaml) = if setup.change {
        (
            format!("auth: basic\n  user: \"{}\"\n  password: \"{}\"", cfg.user, cfg.password),
            "change:\n  environments: [ \"Production\" ]\n  title_template: \"Deploy {job} to {environment}\"\n",
        )
    } else {
        (format!("auth: token\n  token: \"{}\"", cfg.token), "")
    };
    format!(
        r#"server:
  bind: "127.0.0.1:{port}"
callback:
  public_base_url: "{public}/"
servicenow:
  instance_url: "{instance}"
  tool_id: "{tool}"
  {auth}
  timeout: 2s
  poll_interval: {poll}
store:
  url: "{db}"
  lease_ttl: 1s
  pool_size: 8
outbox:
  initial_backoff: 50ms
  max_backoff: 300ms
auth:
  pipeline_tokens: [ {{ name: jenkins, token: "{pipeline}" }} ]
  operator_tokens: [ {{ name: alice, token: "{operator}" }} ]
{change_yaml}"#,
        instance = sim.url(),
        tool = cfg.tool_id,
        poll = setup.poll,
        pipeline = PIPELINE_TOKEN,
        operator = OPERATOR_TOKEN,
    )
}

/// `setup.count` replicas on a fresh PostgreSQL cluster, talking to a simulator started with
/// `sim_cfg`.
pub(crate) async fn replicas(sim_cfg: SimSettings, setup: ReplicaSetup) -> Replicas {
    let sim = servicenow_sim::start(sim_cfg.clone()).await.unwrap();
    let pg = PgServer::start();
    let db = pg.database("snowgate").await;
    let dir = tempfile::tempdir().unwrap();
    let ports: Vec<u16> = (0..setup.count).map(|_| free_port()).collect();
    let urls: Vec<String> = ports
        .iter()
        .map(|port| format!("http://127.0.0.1:{port}"))
        .collect();
    let mut bins = Vec::new();
    for (n, port) in ports.into_iter().enumerate() {
        let public = &urls[if setup.callbacks_to_first { 0 } else { n }];
        let config = dir.path().join(format!("replica-{n}.yaml"));
        std::fs::write(
            &config,
            replica_yaml(port, public, &sim, &sim_cfg, &db, setup),
        )
        .unwrap();
        let log = dir.path().join(format!("replica-{n}.log"));
        bins.push(Some(start_binary(&config, &urls[n], &log).await));
    }
    Replicas {
        sim,
        pg,
        _dir: dir,
        bins,
        urls,
    }
}

/// Two replicas polling every `poll`; callbacks name replica A (`urls[0]`), and the tests send
/// them to either replica by hand.
async fn cluster(sim_cfg: SimSettings, poll: &'static str) -> Replicas {
    let setup = ReplicaSetup {
        count: 2,
        poll,
        change: false,
        callbacks_to_first: true,
    };
    replicas(sim_cfg, setup).await
}

async fn open_on(client: &reqwest::Client, address: &str, stage: &str) -> GateView {
    open_at(client, address, &gate_body(stage), &[200, 201]).await
}

/// The callback path of `stage`, to send to whichever replica.
fn callback_path(sim: &SimHandle, stage: &str) -> String {
    let url = callback_url_in(sim, stage);
    url[url.find("/sn-devops/").unwrap()..].to_string()
}

/// Send ServiceNow's `succeeded` callback for `stage` to the replica at `base`; its status.
async fn succeed_at(client: &reqwest::Client, base: &str, sim: &SimHandle, stage: &str) -> u16 {
    let path = callback_path(sim, stage);
    post(
        client,
        &format!("{base}{path}"),
        r#"{"result":"succeeded"}"#,
    )
    .await
}

/// Open `stages`, alternating replicas A and B; their ids in order.
async fn open_alternating(
    c: &Replicas,
    client: &reqwest::Client,
    stages: &[String],
) -> Vec<String> {
    let mut ids = Vec::new();
    for (i, st) in stages.iter().enumerate() {
        ids.push(open_on(client, &c.urls[i % 2], st).await.id.to_string());
    }
    ids
}

/// A callback in flight: the stage's index, and the reply's status (`None` for no answer).
type Sent = tokio::task::JoinHandle<(usize, Option<u16>)>;

/// Send every stage's `succeeded` callback at once, alternating replicas A and B.
fn callbacks_alternating(c: &Replicas, client: &reqwest::Client, stages: &[String]) -> Vec<Sent> {
    let mut tasks = Vec::new();
    for (i, st) in stages.iter().enumerate() {
        let url = format!("{}{}", c.urls[i % 2], callback_path(&c.sim, st));
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let s = client
                .post(url)
                .body(r#"{"result":"succeeded"}"#)
                .send()
                .await
                .map(|r| r.status().as_u16())
                .ok();
            (i, s)
        }));
    }
    tasks
}

/// The indexes of the callbacks answered 200.
async fn answered_200(tasks: Vec<Sent>) -> Vec<usize> {
    let mut ok = Vec::new();
    for t in tasks {
        let (i, s) = t.await.unwrap();
        if s == Some(200) {
            ok.push(i);
        }
    }
    ok
}

#[tokio::test]
async fn a_decision_at_one_replica_wakes_the_long_poll_held_by_the_other() {
    let c = cluster(quiet_sim(), "1h").await;
    let client = reqwest::Client::new();
    let g = open_on(&client, &c.urls[0], "Deploy").await;
    let id = g.id.to_string();
    let waiter = {
        let client = client.clone();
        let url = format!("{}/api/v1/gates/{id}/wait?timeout=120", c.urls[0]);
        tokio::spawn(async move {
            let r = client
                .get(url)
                .bearer_auth(PIPELINE_TOKEN)
                .send()
                .await
                .unwrap();
            (r.json::<GateView>().await.unwrap(), Instant::now())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sent = Instant::now();
    assert_eq!(succeed_at(&client, &c.urls[1], &c.sim, "Deploy").await, 200);
    let (body, at) = tokio::time::timeout(Duration::from_secs(30), waiter)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(body.state, GateState::Approved);
    // Answered by the notification, far sooner than the 120 s long-poll timeout.
    assert!(at.duration_since(sent) < Duration::from_secs(10));
    // Either replica answers any request about the gate, the operator endpoints included.
    assert_eq!(
        gate(&client, &c.urls[1], &id).await.state,
        GateState::Approved
    );
    let other = open_on(&client, &c.urls[1], "Verify").await;
    let resp = client
        .post(format!("{}/api/v1/gates/{}/abort", c.urls[0], other.id))
        .bearer_auth(OPERATOR_TOKEN)
        .header("Content-Type", "application/json")
        .body(r#"{"reason":"wrong build"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn polling_is_done_by_one_replica_at_a_time() {
    let c = cluster(SimSettings::default(), "300ms").await;
    c.sim.set_drop_callbacks(true);
    let client = reqwest::Client::new();
    open_on(&client, &c.urls[0], "Deploy").await;
    c.sim.clear_requests();
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let polls = c
        .sim
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/orchestration/changeInfo"))
        .count();
    let one_replica = started.elapsed().as_millis() as usize / 300;
    assert!(polls >= 3, "the gate is polled: {polls}");
    // Two replicas polling the same gate would make about twice as many.
    assert!(
        polls <= one_replica + 2,
        "{polls} polls in {:?}",
        started.elapsed()
    );
}

async fn burst(c: &Replicas, client: &reqwest::Client, n: usize) -> (Vec<String>, Vec<usize>) {
    let stages: Vec<String> = (0..n).map(|i| format!("Stage {i}")).collect();
    let ids = open_alternating(c, client, &stages).await;
    let ok = answered_200(callbacks_alternating(c, client, &stages)).await;
    (ids, ok)
}

async fn until_acknowledged_once(sim: &SimHandle, stages: &[String]) {
    for _ in 0..400 {
        let changes = sim.changes();
        let acks: Vec<u32> = stages
            .iter()
            .map(|s| {
                changes
                    .iter()
                    .find(|c| &c.stage_name == s)
                    .map_or(0, |c| c.acknowledgements)
            })
            .collect();
        if acks.iter().all(|a| *a >= 1) {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let changes = sim.changes();
            for s in stages {
                let n = changes
                    .iter()
                    .find(|c| &c.stage_name == s)
                    .unwrap()
                    .acknowledgements;
                assert_eq!(n, 1, "stage {s} was acknowledged {n} times");
            }
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("not every decision was acknowledged");
}

#[tokio::test]
async fn a_burst_split_across_replicas_is_acknowledged_exactly_once_per_gate() {
    let c = cluster(quiet_sim(), "1h").await;
    let client = reqwest::Client::new();
    let (ids, ok) = burst(&c, &client, 60).await;
    assert_eq!(ok.len(), 60);
    for id in &ids {
        assert_eq!(
            gate(&client, &c.urls[1], id).await.state,
            GateState::Approved
        );
    }
    let stages: Vec<String> = (0..60).map(|i| format!("Stage {i}")).collect();
    until_acknowledged_once(&c.sim, &stages).await;
}

#[tokio::test]
async fn killing_a_replica_loses_no_answered_decision_and_the_other_carries_on() {
    let mut c = cluster(quiet_sim(), "1h").await;
    let client = reqwest::Client::new();
    // Acknowledgements fail for a while, so replica A has claimed outbox work when it dies.
    c.sim.inject_fault(servicenow_sim::Fault {
        endpoint: "changeControl.put".into(),
        fail_next: 1_000_000,
        status: 503,
        latency_ms: 0,
    });
    let n = 40;
    let stages: Vec<String> = (0..n).map(|i| format!("Stage {i}")).collect();
    let ids = open_alternating(&c, &client, &stages).await;
    // Opened at A: a gate whose step timeout runs, and one decided only by polling.
    let mut timed = gate_body("Timer");
    timed["changeStepTimeoutSecs"] = 2.into();
    let timed = open_at(&client, &c.urls[0], &timed, &[201]).await;
    let mut polled = gate_body("Polled");
    polled["pollingIntervalSecs"] = 1.into();
    let polled = open_at(&client, &c.urls[0], &polled, &[201]).await;
    let tasks = callbacks_alternating(&c, &client, &stages);
    tokio::time::sleep(Duration::from_millis(20)).await;
    c.kill(0); // mid-burst
    let answered = answered_200(tasks).await;
    for i in &answered {
        assert_eq!(
            gate(&client, &c.urls[1], &ids[*i]).await.state,
            GateState::Approved,
            "stage {i}"
        );
    }
    // A's claimed acknowledgements expire (lease) and B sends them, once each.
    c.sim.clear_faults();
    let decided: Vec<String> = answered.iter().map(|i| stages[*i].clone()).collect();
    until_acknowledged_once(&c.sim, &decided).await;
    // A's timers and polling go on at B: the step timeout fires, and a CR approved without a
    // callback is found by B's poller.
    c.sim.set_drop_callbacks(true);
    let number = c
        .sim
        .changes()
        .into_iter()
        .find(|ch| ch.stage_name == "Polled")
        .unwrap()
        .number;
    c.sim.approve(&number, "ok").await.unwrap();
    let (timed, polled) = (timed.id.to_string(), polled.id.to_string());
    let mut states = (GateState::Pending, GateState::Pending);
    for _ in 0..200 {
        states = (
            gate(&client, &c.urls[1], &timed).await.state,
            gate(&client, &c.urls[1], &polled).await.state,
        );
        if states == (GateState::TimedOut, GateState::Approved) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "after A died: timer gate {}, polled gate {}",
        states.0, states.1
    );
}

#[tokio::test]
async fn a_postgres_restart_is_survived_and_readyz_tells_meanwhile() {
    let c = cluster(quiet_sim(), "1h").await;
    let client = reqwest::Client::new();
    open_on(&client, &c.urls[0], "Before").await;
    c.pg.stop();
    let ready = client
        .get(format!("{}/readyz", c.urls[0]))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    let resp = client
        .post(format!("{}/api/v1/gates", c.urls[0]))
        .bearer_auth(PIPELINE_TOKEN)
        .header("Content-Type", "application/json")
        .body(gate_body("During").to_string())
        .send()
        .await
        .unwrap();
    assert_error(resp, 503, "store_unavailable").await;
    c.pg.restart();
    for _ in 0..100 {
        if client
            .get(format!("{}/readyz", c.urls[0]))
            .send()
            .await
            .unwrap()
            .status()
            == 200
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        client
            .get(format!("{}/readyz", c.urls[1]))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let g = open_on(&client, &c.urls[1], "After").await;
    assert_eq!(g.state, GateState::Pending);
    // Cross-replica wake-ups work again after the listening connection reconnected.
    let id = g.id.to_string();
    let waiter = {
        let client = client.clone();
        let url = format!("{}/api/v1/gates/{id}/wait?timeout=60", c.urls[1]);
        tokio::spawn(async move {
            client
                .get(url)
                .bearer_auth(PIPELINE_TOKEN)
                .send()
                .await
                .unwrap()
                .json::<GateView>()
                .await
                .unwrap()
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(succeed_at(&client, &c.urls[0], &c.sim, "After").await, 200);
    let body = tokio::time::timeout(Duration::from_secs(30), waiter)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(body.state, GateState::Approved);
}

#[tokio::test]
async fn a_freeze_declared_at_one_replica_holds_approvals_at_the_other_until_deleted_there() {
    let c = cluster(quiet_sim(), "1h").await;
    let client = reqwest::Client::new();
    let now = chrono::Utc::now();
    let freeze = serde_json::json!({
        "name": "Incident 99", "reason": "stop the line",
        "start": (now - chrono::Duration::minutes(1)).to_rfc3339(),
        "end": (now + chrono::Duration::hours(1)).to_rfc3339(),
    });
    let resp = client
        .post(format!("{}/api/v1/freezes", c.urls[0]))
        .bearer_auth(OPERATOR_TOKEN)
        .json(&freeze)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let declared: snowgate::api::FreezeView = resp.json().await.unwrap();
    let g = open_on(&client, &c.urls[1], "Deploy").await;
    let id = g.id.to_string();
    // A replica reads the stored freezes at most once a second.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(succeed_at(&client, &c.urls[1], &c.sim, "Deploy").await, 200);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let held = gate(&client, &c.urls[1], &id).await;
    assert_eq!(held.state, GateState::Pending, "{held:?}");
    assert!(held.message.contains("`Incident 99`"), "{held:?}");
    let resp = client
        .delete(format!(
            "{}/api/v1/freezes/{}",
            c.urls[1], declared.freeze.id
        ))
        .bearer_auth(OPERATOR_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let mut state = held.state;
    for _ in 0..100 {
        state = gate(&client, &c.urls[0], &id).await.state;
        if state == GateState::Approved {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(state, GateState::Approved, "released after the delete");
    let list: snowgate::api::FreezeList = get_json(&client, &c.urls[0], "/api/v1/freezes").await;
    assert!(list.freezes.is_empty(), "deleted for both replicas");
}

/// A TCP forwarder on loopback, as a load balancer in front of the replicas: each new
/// connection goes to the backend set last.
struct Balancer {
    address: String,
    backend: std::sync::Arc<std::sync::Mutex<String>>,
    task: tokio::task::JoinHandle<()>,
}

impl Balancer {
    async fn start(backend: &str) -> Balancer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        let backend = std::sync::Arc::new(std::sync::Mutex::new(
            backend.trim_start_matches("http://").to_string(),
        ));
        let to = backend.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let target = to.lock().unwrap().clone();
                tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Balancer {
            address,
            backend,
            task,
        }
    }

    fn switch_to(&self, backend: &str) {
        *self.backend.lock().unwrap() = backend.trim_start_matches("http://").to_string();
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test]
async fn gates_open_wait_rides_out_a_failover_from_one_replica_to_the_other() {
    let mut c = cluster(quiet_sim(), "1h").await;
    let lb = Balancer::start(&c.urls[0]).await;
    let args = [
        "gates",
        "open",
        "--wait",
        "--progress-every",
        "1",
        "--retry-for",
        "60s",
    ];
    let waiting = tokio::spawn(crate::cli::run_cmd(
        crate::ci_gate::ci_command(&lb.address, &crate::ci_gate::jenkins_env(), &args),
        &[PIPELINE_TOKEN, OPERATOR_TOKEN],
    ));
    let client = reqwest::Client::new();
    let mut pending = None;
    for _ in 0..200 {
        let list: snowgate::api::GateList = get_json(&client, &c.urls[1], "/api/v1/gates").await;
        pending = list
            .gates
            .into_iter()
            .find(|g| g.state == GateState::Pending);
        if pending.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let g = pending.expect("the CLI opened its gate through the balancer");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!waiting.is_finished(), "the CLI waits");
    // Replica a dies with the long-poll open; the balancer sends new connections to b.
    c.kill(0);
    lb.switch_to(&c.urls[1]);
    assert_eq!(succeed_at(&client, &c.urls[1], &c.sim, "Deploy").await, 200);
    let run = tokio::time::timeout(Duration::from_secs(60), waiting)
        .await
        .expect("the CLI ends once b answers")
        .unwrap();
    assert_eq!(run.code, 0, "{}", run.output());
    assert!(run.stderr.contains("the stage may go on"), "{}", run.stderr);
    assert!(run.stdout.contains(&g.id.to_string()) || run.stderr.contains(&g.id.to_string()));
}
