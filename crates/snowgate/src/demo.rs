//! `snowgate sim` and `snowgate demo` (feature `sim`): the ServiceNow simulator alone, or
//! together with snowgate on loopback.
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use servicenow_sim::{self as simulator, SimSettings};
use snowgate::configuration::{ConflictPolicy, NamedToken, Secret, ServiceNowAuth, Settings};
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
    // The walkthrough's conflict check (step 7): ServiceNow checks a CR's configuration item.
    settings
        .change
        .fields
        .insert("cmdb_ci".into(), "shop-web".into());
    settings.change.conflicts = ConflictPolicy::Wait;
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

"#
    );
    if let Some(d) = auto {
        println!("   (change requests are approved automatically after {d:?})");
    }
    print_policies(api, sim);
}

/// Steps 5 to 13: change mode and the change policies (README "Change policy"), each step a
/// block of commands that runs without waiting on the next one.
fn print_policies(api: &str, sim: &str) {
    let gate = |build: u32, extra: &str| {
        format!(
            r#"{{"mode":"change","environment":"Production","jobUrl":"http://jenkins.example.com/job/shop/job/deploy-app/","buildNumber":{build},"stageName":"Release","buildUrl":"http://jenkins.example.com/job/shop/job/deploy-app/{build}/"{extra}}}"#
        )
    };
    let (g42, g43) = (gate(42, ""), gate(43, ""));
    let (g44, g45) = (
        gate(44, r#","supersede":true"#),
        gate(45, r#","supersede":true"#),
    );
    let id = r#"sed -E 's/^\{"id":"([^"]+)".*/\1/'"#;
    let evidence = r#"{"name":"release-notes.txt","contentType":"text/plain","content":"Build 42: the new checkout"}"#;
    let conflict = r#"{"changeNumber":"latest","kind":"blackout","kindDisplay":"Blackout","schedule":"Datacenter move"}"#;
    let freeze = r#"{"name":"Year end","start":"'$(date -u +%FT%TZ)'","end":"'$(date -u -d '+1 hour' +%FT%TZ)'","reason":"No production changes over the holidays","jobs":["shop/*"]}"#;
    let json = "-H 'Content-Type: application/json'";
    println!(
        r#"
5. Change mode (Change Management API, the way Octopus Deploy gates): snowgate finds or
   creates the change request itself, and polls it.

   CHG=$(curl -s -X POST {api}/api/v1/gates {json} -d '{g42}' | {id}); echo $CHG
   curl -s {sim}/__sim/chg/changes; echo          # the CR snowgate created, in state New

6. Evidence on the CR: a release note, attached through ServiceNow's Attachment API.

   curl -s -X POST {api}/api/v1/gates/$CHG/evidence {json} -d '{evidence}'; echo
   curl -s {sim}/__sim/attachments; echo          # what ServiceNow received (once sent)

7. Conflict check (this demo runs with change.conflicts: wait): a blackout schedule conflicts
   with the CR, so even in Implement the gate waits, naming the conflict as ServiceNow does.

   curl -s -X POST {sim}/__sim/chg/changes/latest/conflicts {json} -d '{conflict}'; echo
   curl -s -X POST {sim}/__sim/chg/changes/latest/state {json} -d '{{"state":"Implement"}}'; echo
   curl -s "{api}/api/v1/gates/$CHG/wait?timeout=5"; echo   # still pending: "ServiceNow reports conflicts …"

8. The conflict is resolved; the next poll approves the gate.

   curl -s -X DELETE {sim}/__sim/chg/changes/latest/conflicts; echo
   curl -s "{api}/api/v1/gates/$CHG/wait?timeout=60"; echo  # approved

9. A change freeze holds every matching gate, whatever ServiceNow says (GNU date):

   FREEZE=$(curl -s -X POST {api}/api/v1/freezes {json} -d '{freeze}' | {id}); echo $FREEZE
   HELD=$(curl -s -X POST {api}/api/v1/gates {json} -d '{g43}' | {id}); echo $HELD
   curl -s {api}/api/v1/gates/$HELD; echo          # build 43's CR, in state New

10. ServiceNow approves build 43's change (the latest CR reaches Implement):

   curl -s -X POST {sim}/__sim/chg/changes/latest/state {json} -d '{{"state":"Implement"}}'; echo

11. ServiceNow approved, yet the gate stays pending: "held by change freeze `Year end` …".
    (An operator's resume with a reason would release it: break-glass, in the audit trail.)

   curl -s "{api}/api/v1/gates/$HELD/wait?timeout=5"; echo
   curl -s {api}/api/v1/freezes; echo

12. End the freeze early: the held approval proceeds by itself.

   curl -s -X DELETE {api}/api/v1/freezes/$FREEZE -o /dev/null -w '%{{http_code}}\n'
   curl -s "{api}/api/v1/gates/$HELD/wait?timeout=60"; echo  # approved

13. Superseded runs: build 45 of the same job, branch and stage replaces build 44, still waiting.

   OLD=$(curl -s -X POST {api}/api/v1/gates {json} -d '{g44}' | {id}); echo $OLD
   curl -s -X POST {api}/api/v1/gates {json} -d '{g45}'; echo
   curl -s {api}/api/v1/gates/$OLD; echo          # "state":"superseded", proceed false
"#
    );
}
