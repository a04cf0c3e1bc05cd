//! `snowgate sim` and `snowgate demo` (feature `sim`): the ServiceNow simulator alone, or
//! together with snowgate on loopback.
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use servicenow_sim::{self as simulator, SimSettings};
use snowgate::configuration::{NamedToken, Secret, ServiceNowAuth, Settings};
use snowgate::startup::Application;
use snowgate::store::{GateStore, SqliteStore};
use snowgate::telemetry;

use super::{stop_on_signal, stop_signal};

pub async fn sim(settings: SimSettings) -> anyhow::Result<()> {
    let _log = telemetry::init(Default::default(), "info");
    let handle = simulator::start(settings).await?;
    println!("ServiceNow simulator listening on {}", handle.url());
    println!(
        "admin API: {}/__sim/changes, {}/__sim/requests",
        handle.url(),
        handle.url()
    );
    stop_signal().await;
    handle.stop().await;
    Ok(())
}

pub async fn demo(
    port: u16,
    sim_port: u16,
    auto_approve: Option<Duration>,
    store: Option<PathBuf>,
) -> anyhow::Result<()> {
    let _log = telemetry::init(Default::default(), "info");
    let sim_settings = SimSettings {
        bind: SocketAddr::from(([127, 0, 0, 1], sim_port)),
        auto_approve_after: auto_approve,
        ..SimSettings::default()
    };
    let (tool_id, sim_user, sim_password) = (
        sim_settings.tool_id.clone(),
        sim_settings.user.clone(),
        sim_settings.password.clone(),
    );
    let sim = simulator::start(sim_settings).await?;
    let listener = TcpListener::bind(("127.0.0.1", port))
        .map_err(|e| anyhow::anyhow!("cannot listen on 127.0.0.1:{port}: {e} (try --port)"))?;
    let api = format!("http://127.0.0.1:{}", listener.local_addr()?.port());

    let mut settings = Settings::default();
    settings.server.bind = listener.local_addr()?.to_string();
    settings.servicenow.instance_url = sim.url();
    settings.servicenow.tool_id = tool_id;
    // Basic auth serves both APIs: DevOps v1 and the Change Management API (change mode).
    settings.servicenow.auth = ServiceNowAuth::Basic;
    settings.servicenow.user = sim_user;
    settings.servicenow.password = Secret::new(sim_password);
    // Change mode decides by polling; poll often so the demo answers quickly.
    settings.servicenow.poll_interval = snowgate::configuration::Dur(Duration::from_secs(2));
    settings.change.environments = vec!["Production".into()];
    settings.callback.public_base_url = Some(format!("{api}/"));
    // Loopback only, so the demo may run without tokens.
    settings.auth.disabled = true;
    settings.auth.operator_tokens = Vec::<NamedToken>::new();
    let path = store.unwrap_or_else(|| {
        std::env::temp_dir().join(format!("snowgate-demo-{}.db", std::process::id()))
    });
    settings.store.url = format!("sqlite://{}", path.display());
    let problems = settings.problems();
    if !problems.is_empty() {
        anyhow::bail!("demo configuration: {}", problems.join("; "));
    }
    let store: Arc<dyn GateStore> = Arc::new(SqliteStore::open(&path)?);
    let app = Application::build_with(settings, store, listener).await?;
    print_walkthrough(&api, &sim.url(), &path, auto_approve);
    stop_on_signal(app.handle());
    app.run_until_stopped().await?;
    sim.stop().await;
    println!("demo stopped; gates are kept in {}", path.display());
    Ok(())
}

fn print_walkthrough(api: &str, sim: &str, store: &std::path::Path, auto: Option<Duration>) {
    let store_path = store.display();
    let change_body = r#"{"mode":"change","environment":"Production","jobUrl":"http://jenkins.example.com/job/shop/job/deploy-app/","buildNumber":42,"stageName":"Release","buildUrl":"http://jenkins.example.com/job/shop/job/deploy-app/42/"}"#;
    let body = r#"{"jobUrl":"http://jenkins.example.com/job/shop/job/deploy-app/","buildNumber":42,"stageName":"Deploy to production","buildUrl":"http://jenkins.example.com/job/shop/job/deploy-app/42/"}"#;
    println!(
        r#"
snowgate demo: snowgate on {api}, simulated ServiceNow on {sim}
gates are stored in {store_path}; authentication is off (loopback only). Ctrl-C stops.

1. Open a gate for stage "Deploy to production" of build 42 (as a Jenkinsfile would):

   GATE=$(curl -s -X POST {api}/api/v1/gates -H 'Content-Type: application/json' \
     -d '{body}' | sed -E 's/^\{{"id":"([^"]+)".*/\1/'); echo $GATE

2. Wait for the decision (long-poll; it returns the moment ServiceNow decides):

   curl -s "{api}/api/v1/gates/$GATE/wait?timeout=300"; echo

3. In a second terminal, approve the change request in the simulated ServiceNow:

   curl -s -X POST {sim}/__sim/changes/latest/approve -H 'Content-Type: application/json' -d '{{"comments":"CAB approved"}}'; echo

   (or .../reject, .../cancel; list change requests with: curl -s {sim}/__sim/changes)

4. See the gate and its audit trail:

   curl -s {api}/api/v1/gates/$GATE; echo
   curl -s {api}/api/v1/gates/$GATE/events; echo

   An operator can also release or stop a held stage by hand:
   curl -s -X POST {api}/api/v1/gates/$GATE/abort -H 'Content-Type: application/json' -d '{{"reason":"wrong build"}}'

   The status page: {api}/ui

5. Change mode (Change Management API, the way Octopus Deploy gates): snowgate finds or
   creates the change request itself and polls it.

   CHG=$(curl -s -X POST {api}/api/v1/gates -H 'Content-Type: application/json' \
     -d '{change_body}' | sed -E 's/^\{{"id":"([^"]+)".*/\1/'); echo $CHG
   curl -s {sim}/__sim/chg/changes; echo          # the CR snowgate created, in state New
   curl -s -X POST {sim}/__sim/chg/changes/latest/state -H 'Content-Type: application/json' -d '{{"state":"Implement"}}'; echo
   curl -s "{api}/api/v1/gates/$CHG/wait?timeout=60"; echo   # approved at the next poll
"#
    );
    if let Some(d) = auto {
        println!("   (change requests are approved automatically after {d:?})");
    }
}
