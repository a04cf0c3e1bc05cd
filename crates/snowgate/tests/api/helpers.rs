use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use std::fmt::Display;

use serde_json::{json, Value};
use servicenow_sim::{RecordedRequest, SimHandle, SimSettings};
use snowgate::api::{ErrorBody, EventList, EventView, GateView};
use snowgate::configuration::{Dur, NamedToken, Secret, ServiceNowAuth, Settings};
use snowgate::domain::{ChangeRequest, GateState};
use snowgate::startup::{AppHandle, Application};
use snowgate::store::{GateStore, SqliteStore};

pub const PIPELINE_TOKEN: &str = "pipeline-token-0123456789abcdef";
pub const OPERATOR_TOKEN: &str = "operator-token-0123456789abcdef";

pub struct TestApp {
    pub address: String,
    pub sim: SimHandle,
    pub client: reqwest::Client,
    /// Holds the store file until the test ends.
    pub _dir: tempfile::TempDir,
    pub handle: AppHandle,
    pub settings: Settings,
    /// The PostgreSQL cluster of this test, when the tests run on PostgreSQL.
    pub _pg: Option<crate::pg::PgServer>,
}

/// A simulator that sends no "change request created" notice (the CR stays unknown to
/// snowgate until a poll or a decision).
pub fn quiet_sim() -> SimSettings {
    SimSettings {
        send_notice: false,
        ..SimSettings::default()
    }
}

pub fn sim_settings() -> SimSettings {
    SimSettings::default()
}

/// Settings pointing at `sim`, with short retry intervals and both token scopes.
pub fn settings_for(
    sim: &SimHandle,
    sim_settings: &SimSettings,
    dir: &std::path::Path,
    callback_base: &str,
) -> Settings {
    let mut s = Settings::default();
    s.servicenow.instance_url = sim.url();
    s.servicenow.tool_id = sim_settings.tool_id.clone();
    s.servicenow.auth = ServiceNowAuth::Token;
    s.servicenow.token = Secret::new(sim_settings.token.clone());
    s.servicenow.timeout = Dur(Duration::from_secs(5));
    s.callback.public_base_url = Some(callback_base.to_string());
    s.store.url = format!("sqlite://{}", dir.join("snowgate.db").display());
    s.outbox.initial_backoff = Dur(Duration::from_millis(50));
    s.outbox.max_backoff = Dur(Duration::from_millis(500));
    s.auth.pipeline_tokens = vec![NamedToken {
        name: "jenkins".into(),
        token: Secret::new(PIPELINE_TOKEN),
        token_file: None,
    }];
    s.auth.operator_tokens = vec![NamedToken {
        name: "alice".into(),
        token: Secret::new(OPERATOR_TOKEN),
        token_file: None,
    }];
    s
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(sim_settings(), |_| {}).await
}

pub async fn spawn_app_with(sim_cfg: SimSettings, tweak: impl FnOnce(&mut Settings)) -> TestApp {
    spawn_app_seeded(sim_cfg, tweak, &[]).await
}

/// `spawn_app_with`, with gates written into the store before the application starts, the way
/// an earlier version (or anything but the API) may have left them: `seed` are gate request
/// bodies, parsed but not checked the way the API checks them.
pub async fn spawn_app_seeded(
    sim_cfg: SimSettings,
    tweak: impl FnOnce(&mut Settings),
    seed: &[Value],
) -> TestApp {
    spawn_app_on(TestStore::FromEnv, sim_cfg, tweak, seed).await
}

/// Which store a test application runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TestStore {
    /// SNOWGATE_TEST_STORE=postgres runs the same tests on a real PostgreSQL (scripts/test.sh
    /// does a second pass so); otherwise each test has its own SQLite file.
    FromEnv,
    /// A PostgreSQL cluster of the test's own, whatever SNOWGATE_TEST_STORE says.
    Postgres,
}

impl TestStore {
    fn is_postgres(self) -> bool {
        match self {
            TestStore::FromEnv => std::env::var("SNOWGATE_TEST_STORE").as_deref() == Ok("postgres"),
            TestStore::Postgres => true,
        }
    }
}

/// `spawn_app_seeded` on the store `on`.
pub async fn spawn_app_on(
    on: TestStore,
    sim_cfg: SimSettings,
    tweak: impl FnOnce(&mut Settings),
    seed: &[Value],
) -> TestApp {
    let sim = servicenow_sim::start(sim_cfg.clone())
        .await
        .expect("simulator starts");
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let mut settings = settings_for(&sim, &sim_cfg, dir.path(), &format!("{address}/"));
    tweak(&mut settings);
    let pg = if on.is_postgres() {
        let server = crate::pg::PgServer::start();
        settings.store.url = server.database("snowgate").await;
        Some(server)
    } else {
        None
    };
    let store: Arc<dyn GateStore> = match &pg {
        Some(_) => snowgate::startup::open_store(&settings)
            .await
            .expect("PostgreSQL store"),
        None => {
            let path: PathBuf = settings.store.sqlite_path().unwrap();
            Arc::new(SqliteStore::open(&path).unwrap())
        }
    };
    for body in seed {
        let spec = snowgate::domain::GateSpec::parse(body).expect("a seed gate parses");
        store
            .open_gate(
                spec,
                snowgate::domain::names::CallbackToken::generate(),
                Duration::ZERO,
            )
            .await
            .expect("a seed gate is stored");
    }
    let app = Application::build_with(settings.clone(), store, listener)
        .await
        .expect("application builds");
    let handle = app.handle();
    tokio::spawn(app.run_until_stopped());
    TestApp {
        address,
        sim,
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap(),
        _dir: dir,
        handle,
        settings,
        _pg: pg,
    }
}

/// A gate request for a stage of build 42 of `…/job/shop/job/app/`.
pub fn gate_body(stage: &str) -> Value {
    json!({
        "jobUrl": "https://ci.example.com/job/shop/job/app/",
        "buildNumber": 42,
        "stageName": stage,
        "buildUrl": "https://ci.example.com/job/shop/job/app/42/",
    })
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub async fn post_json(
        &self,
        path: &str,
        token: Option<&str>,
        body: &Value,
    ) -> reqwest::Response {
        let mut req = self
            .client
            .post(self.url(path))
            .header("Content-Type", "application/json")
            .body(body.to_string());
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.unwrap()
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> reqwest::Response {
        let mut req = self.client.get(self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.unwrap()
    }

    pub async fn open_gate(&self, body: &Value) -> reqwest::Response {
        self.post_json("/api/v1/gates", Some(PIPELINE_TOKEN), body)
            .await
    }

    /// Open a gate and return it (asserting 201).
    pub async fn open(&self, stage: &str) -> GateView {
        let resp = self.open_gate(&gate_body(stage)).await;
        assert_eq!(resp.status(), 201);
        resp.json().await.unwrap()
    }

    /// The gate `id` (a `Uuid` or its text), asserting 200.
    pub async fn gate(&self, id: impl Display) -> GateView {
        let resp = self
            .get(&format!("/api/v1/gates/{id}"), Some(PIPELINE_TOKEN))
            .await;
        assert_eq!(resp.status(), 200);
        resp.json().await.unwrap()
    }

    /// The audit trail of gate `id`, oldest first, asserting 200.
    pub async fn events(&self, id: impl Display) -> Vec<EventView> {
        let list: EventList = self.events_response(id).await.json().await.unwrap();
        list.events
    }

    /// GET the audit trail of gate `id`, asserting 200.
    async fn events_response(&self, id: impl Display) -> reqwest::Response {
        let resp = self
            .get(&format!("/api/v1/gates/{id}/events"), Some(PIPELINE_TOKEN))
            .await;
        assert_eq!(resp.status(), 200);
        resp
    }

    /// Poll (test side) until the gate is in `state`, failing after a generous bound.
    /// A long-poll on gate `id` (at most `timeout_secs`), answered with its status and gate.
    pub fn long_poll(
        &self,
        id: impl Display,
        timeout_secs: u64,
    ) -> tokio::task::JoinHandle<(reqwest::StatusCode, GateView)> {
        let client = self.client.clone();
        let url = self.url(&format!("/api/v1/gates/{id}/wait?timeout={timeout_secs}"));
        tokio::spawn(async move {
            let resp = client
                .get(url)
                .bearer_auth(PIPELINE_TOKEN)
                .send()
                .await
                .unwrap();
            (resp.status(), resp.json::<GateView>().await.unwrap())
        })
    }

    pub async fn until_state(&self, id: impl Display, state: GateState) -> GateView {
        for _ in 0..200 {
            let g = self.gate(&id).await;
            if g.state == state {
                return g;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "gate {id} never reached {state}: {:?}",
            self.gate(&id).await
        );
    }

    /// The POST changeControl registration the simulator received for `stage`.
    pub fn registration_of(&self, stage: &str) -> RecordedRequest {
        registration_in(&self.sim, stage)
    }

    /// The callback URL snowgate registered for `stage`.
    pub fn callback_url_of(&self, stage: &str) -> String {
        callback_url_in(&self.sim, stage)
    }

    pub async fn send_callback(&self, url: &str, body: &str) -> reqwest::Response {
        self.client
            .post(url)
            .header("Content-Type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap()
    }

    /// The change request number the simulator created for `stage`.
    pub fn change_of(&self, stage: &str) -> String {
        self.sim
            .changes()
            .into_iter()
            .find(|c| c.stage_name == stage)
            .map(|c| c.number)
            .unwrap_or_else(|| panic!("no change request for stage {stage}"))
    }
}

pub fn registration_in(sim: &SimHandle, stage: &str) -> RecordedRequest {
    sim.requests()
        .into_iter()
        .find(|r| {
            r.method == "POST"
                && r.path.ends_with("/orchestration/changeControl")
                && r.json().is_some_and(|b| b["stageName"] == stage)
        })
        .unwrap_or_else(|| panic!("no registration for stage {stage}"))
}

/// The callback URL registered at `sim` for `stage` (by whichever snowgate process).
pub fn callback_url_in(sim: &SimHandle, stage: &str) -> String {
    registration_in(sim, stage).json().unwrap()["callbackURL"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Open a gate with `body` on the snowgate at `address` (any process); the status must be one
/// of `expected`.
pub async fn open_at(
    client: &reqwest::Client,
    address: &str,
    body: &Value,
    expected: &[u16],
) -> GateView {
    let resp = client
        .post(format!("{address}/api/v1/gates"))
        .bearer_auth(PIPELINE_TOKEN)
        .header("Content-Type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert!(
        expected.contains(&resp.status().as_u16()),
        "{}",
        resp.status()
    );
    resp.json().await.unwrap()
}

/// Assert a JSON error body `{"error":{"code","message"}}` with the given code.
pub async fn assert_error(resp: reqwest::Response, status: u16, code: &str) -> ErrorBody {
    assert_eq!(resp.status(), status);
    let body: ErrorBody = resp.json().await.unwrap();
    assert_eq!(body.error.code, code, "{body:?}");
    assert!(!body.error.message.is_empty(), "{body:?}");
    body
}

/// The change request linked to `gate`; the test fails if snowgate knows none yet.
pub fn change_request(gate: &GateView) -> &ChangeRequest {
    gate.change_request
        .as_ref()
        .unwrap_or_else(|| panic!("no change request on {gate:?}"))
}

/// The number of the change request linked to `gate`, once snowgate knows it.
pub fn cr_number(gate: &GateView) -> Option<&str> {
    gate.change_request.as_ref()?.number.as_deref()
}

/// The raw JSON of a gate's events, for tests that search their whole text (a secret must not
/// show anywhere in it).
impl TestApp {
    pub async fn events_json(&self, id: impl Display) -> Vec<Value> {
        let v: Value = self.events_response(id).await.json().await.unwrap();
        v["events"].as_array().unwrap().clone()
    }
}
