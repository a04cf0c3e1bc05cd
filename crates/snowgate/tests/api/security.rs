//! Attacks tried from outside: build URLs that point elsewhere, redirects, a second process on
//! one SQLite file, authentication switched off on a public address, tokens in error texts.
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use servicenow_sim::SimSettings;
use snowgate::api::{ErrorBody, GateList, GateView};
use snowgate::configuration::{JenkinsSettings, Secret};
use snowgate::domain::GateState;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

use crate::durability::{free_port, start_binary, write_config};
use crate::helpers::*;
use crate::jenkins_fake::JenkinsFake;

/// A server that records every connection it is offered and answers each request with
/// `answer` (a whole HTTP/1.1 response, `Connection: close`).
pub struct Recorder {
    pub addr: SocketAddr,
    pub connections: Arc<AtomicUsize>,
    pub heads: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Recorder {
    pub async fn start(ip: &str, answer: String) -> Recorder {
        let listener = TcpListener::bind((ip, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let heads = Arc::new(Mutex::new(Vec::new()));
        let (c, h) = (connections.clone(), heads.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                c.fetch_add(1, Ordering::SeqCst);
                let (h, answer) = (h.clone(), answer.clone());
                tokio::spawn(async move {
                    let head = read_head(&mut sock).await;
                    h.lock().unwrap().push(head);
                    let _ = sock.write_all(answer.as_bytes()).await;
                    let _ = sock.shutdown().await;
                });
            }
        });
        Recorder {
            addr,
            connections,
            heads,
            task,
        }
    }

    /// A catcher: must receive nothing.
    pub async fn catcher(ip: &str) -> Recorder {
        Recorder::start(
            ip,
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}".into(),
        )
        .await
    }

    /// Answers every request with a 307 to `to`.
    pub async fn redirecting_to(to: &str) -> Recorder {
        Recorder::start(
            "127.0.0.1",
            format!("HTTP/1.1 307 Temporary Redirect\r\nLocation: {to}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
        )
        .await
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn received(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

/// The request head (and as much of the body as arrived with it).
async fn read_head(sock: &mut tokio::net::TcpStream) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 65536 {
        match tokio::time::timeout(Duration::from_secs(5), sock.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

async fn app_with_jenkins(fake: &JenkinsFake, sim: SimSettings) -> TestApp {
    let (url, user, token) = (
        format!("{}/", fake.url),
        fake.user.clone(),
        fake.token.clone(),
    );
    spawn_app_with(sim, move |s| {
        s.jenkins = Some(JenkinsSettings {
            url,
            user,
            api_token: Secret::new(token),
            ..JenkinsSettings::default()
        });
    })
    .await
}

/// A gate releasing an input of the build at `build_url` (`<job URL><number>/`), whose job
/// URL and build number are the build URL's, as Jenkins renders them.
fn input_gate(stage: &str, build_url: &str) -> Value {
    let mut b = gate_body(stage);
    let (job_url, number) = job_of(build_url);
    b["jobUrl"] = json!(job_url);
    b["buildNumber"] = json!(number);
    b["buildUrl"] = json!(build_url);
    b["input"] = json!({"id": "snowgateApproval"});
    b
}

/// A gate of the usual job whose `buildUrl` is `trick`.
fn trick_gate(stage: &str, trick: &str) -> Value {
    let mut b = gate_body(stage);
    b["buildUrl"] = json!(trick);
    b["input"] = json!({"id": "snowgateApproval"});
    b
}

/// `<job URL><number>/` split into the job URL and the number.
fn job_of(build_url: &str) -> (String, String) {
    let trimmed = build_url.trim_end_matches('/');
    let (job, number) = trimmed.rsplit_once('/').expect("a build URL");
    (format!("{job}/"), number.to_string())
}

/// `sim` knowing the orchestration tasks of the job that `build_url` is a build of.
fn knowing(mut sim: SimSettings, build_url: &str) -> SimSettings {
    sim.known_pipelines.push(job_of(build_url).0);
    sim
}

/// Events as raw JSON: the tests search their whole text, secrets included.
async fn until_event_text(app: &TestApp, id: &str, needle: &str) -> Vec<Value> {
    for _ in 0..200 {
        let events = app.events_json(id).await;
        if events.iter().any(|e| e.to_string().contains(needle)) {
            return events;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "no event mentions {needle:?}: {:?}",
        app.events_json(id).await
    );
}

#[tokio::test]
async fn build_urls_that_lead_elsewhere_are_refused_at_open_and_nothing_leaves() {
    let fake = JenkinsFake::start().await;
    let app = app_with_jenkins(&fake, sim_settings()).await;
    let other = Recorder::catcher("127.0.0.2").await;
    let port = Recorder::catcher("127.0.0.1").await;
    let base = format!("{}/", fake.url);
    let (o, p) = (other.addr, port.addr.port());
    let tricks = [
        format!("{base}/{o}/job/x/1/"),
        format!("{base}//127.0.0.1:{p}/job/x/1/"),
        format!("{base}\\\\{o}/job/x/1/"),
        format!("{}\\\\{o}/job/x/1/", fake.url),
        format!("{base}\\{o}/job/x/1/"),
        format!("{base}job/../../{o}/1/"),
        format!("{base}job/%2e%2e/%2e%2e/x/1/"),
        format!("{base}job/x%2F..%2F..%2F{o}/1/"),
        format!("{base}job/x%5c{o}/1/"),
        format!(
            "http://user@{}/job/x/1/",
            fake.url.trim_start_matches("http://")
        ),
        format!(
            "http://{}@{o}/job/x/1/",
            fake.url.trim_start_matches("http://")
        ),
        format!("http://{o}/job/x/1/"),
        format!("http://127.0.0.1:{p}/job/x/1/"),
        format!(
            "https://{}/job/x/1/",
            fake.url.trim_start_matches("http://")
        ),
        format!("{base}job/x/1/?next=http://{o}/"),
    ];
    for (i, trick) in tricks.iter().enumerate() {
        let resp = app
            .open_gate(&trick_gate(&format!("Trick{i}"), trick))
            .await;
        let err = assert_error(resp, 400, "invalid_field").await;
        assert_eq!(
            err.error.field.as_deref(),
            Some("buildUrl"),
            "{trick}: {err:?}"
        );
    }
    // Nothing was registered, so nothing can be decided, released or timed out.
    assert!(app.sim.changes().is_empty());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(other.received(), 0);
    assert_eq!(port.received(), 0);
    assert!(fake.requests().is_empty());
}

#[tokio::test]
async fn approved_rejected_and_timed_out_gates_release_only_on_jenkins_url() {
    let fake = JenkinsFake::start().await;
    let other = Recorder::catcher("127.0.0.2").await;
    let port = Recorder::catcher("127.0.0.1").await;
    let sim = knowing(quiet_sim(), &format!("{}/job/shop/job/app/42/", fake.url));
    let app = app_with_jenkins(&fake, sim).await;
    let mut ids = Vec::new();
    for (n, stage, extra) in [
        (42, "Approved", json!({})),
        (43, "Rejected", json!({})),
        (44, "TimedOut", json!({"changeCreationTimeoutSecs": 1})),
    ] {
        let build = format!("/job/shop/job/app/{n}/");
        fake.add_build(&build, "SnowgateApproval", true);
        let mut body = input_gate(stage, &format!("{}{build}", fake.url));
        body["buildNumber"] = json!(n);
        if let Value::Object(m) = extra {
            for (k, v) in m {
                body[k] = v;
            }
        }
        let resp = app.open_gate(&body).await;
        assert_eq!(resp.status(), 201);
        let g: GateView = resp.json().await.unwrap();
        ids.push(g.id.to_string());
    }
    app.sim
        .approve(&app.change_of("Approved"), "ok")
        .await
        .unwrap();
    app.sim
        .reject(&app.change_of("Rejected"), "no")
        .await
        .unwrap();
    app.until_state(&ids[0], GateState::Approved).await;
    app.until_state(&ids[1], GateState::Rejected).await;
    app.until_state(&ids[2], GateState::TimedOut).await;
    for id in &ids {
        until_event_text(&app, id, "Jenkins input SnowgateApproval answered").await;
    }
    let answered: Vec<String> = fake.requests().iter().map(|r| r.path.clone()).collect();
    assert!(
        answered
            .iter()
            .all(|p| p.starts_with("/job/shop/job/app/4")),
        "{answered:?}"
    );
    assert_eq!(answered.len(), 3, "{answered:?}");
    assert_eq!(other.received(), 0);
    assert_eq!(port.received(), 0);
}

#[tokio::test]
async fn a_stored_build_url_that_leads_elsewhere_is_refused_before_the_release() {
    // A gate row written before the allow-list held (or by anything but the API): the release
    // checks the URL again and sends nothing.
    let fake = JenkinsFake::start().await;
    let other = Recorder::catcher("127.0.0.2").await;
    let trick = format!("{}//{}/job/x/1/", fake.url, other.addr);
    let (url, user, token) = (
        format!("{}/", fake.url),
        fake.user.clone(),
        fake.token.clone(),
    );
    let app = spawn_app_seeded(
        knowing(quiet_sim(), &trick),
        move |s| {
            s.jenkins = Some(JenkinsSettings {
                url,
                user,
                api_token: Secret::new(token),
                ..JenkinsSettings::default()
            });
        },
        &[input_gate("Stored", &trick)],
    )
    .await;
    let gates: GateList = app
        .get("/api/v1/gates", Some(PIPELINE_TOKEN))
        .await
        .json()
        .await
        .unwrap();
    let id = gates.gates[0].id.to_string();
    // The outbox registers the seeded gate; then ServiceNow approves it.
    for _ in 0..200 {
        if app.sim.changes().iter().any(|c| c.stage_name == "Stored") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app.sim
        .approve(&app.change_of("Stored"), "ok")
        .await
        .unwrap();
    app.until_state(&id, GateState::Approved).await;
    until_event_text(&app, &id, "buildUrl must not contain an empty path segment").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(other.received(), 0);
    assert!(fake.requests().is_empty(), "{:?}", fake.requests());
}

#[tokio::test]
async fn a_servicenow_redirect_is_not_followed_and_fails_the_gate_naming_it() {
    let catcher = Recorder::catcher("127.0.0.2").await;
    let redirector = Recorder::redirecting_to(&format!("{}/steal", catcher.url())).await;
    let redirect_url = format!("{}/", redirector.url());
    let app = spawn_app_with(sim_settings(), move |s| {
        s.servicenow.instance_url = redirect_url;
        // The registration (with the callback token) is the first call.
        s.servicenow.official_plugin = snowgate::configuration::OfficialPlugin::Installed;
        s.servicenow.register_give_up_after = snowgate::configuration::Dur(Duration::ZERO);
    })
    .await;
    let gate = app.open("Deploy").await;
    let g = app.until_state(gate.id, GateState::Failed).await;
    let msg = &g.message;
    assert!(msg.contains("307"), "{msg}");
    assert!(msg.contains(&catcher.addr.to_string()), "{msg}");
    assert_eq!(g.proceed, Some(false));
    let heads = redirector.heads.lock().unwrap().clone();
    assert!(
        heads
            .iter()
            .any(|h| h.starts_with("POST ") && h.contains("/changeControl")),
        "{heads:?}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        catcher.received(),
        0,
        "the registration went on to the catcher"
    );
}

#[tokio::test]
async fn a_jenkins_redirect_is_not_a_release() {
    let catcher = Recorder::catcher("127.0.0.2").await;
    // Jenkins sends an unauthenticated POST to its login page.
    let redirector =
        Recorder::redirecting_to(&format!("{}/login?from=%2Fjob%2Fx", catcher.url())).await;
    let jenkins_url = format!("{}/", redirector.url());
    let build_url = format!("{}/job/app/42/", redirector.url());
    let app = spawn_app_with(knowing(quiet_sim(), &build_url), move |s| {
        s.jenkins = Some(JenkinsSettings {
            url: jenkins_url,
            user: "snowgate".into(),
            api_token: Secret::new("jenkins-api-token-123"),
            ..JenkinsSettings::default()
        });
    })
    .await;
    let resp = app.open_gate(&input_gate("Deploy", &build_url)).await;
    assert_eq!(resp.status(), 201);
    let id = resp.json::<GateView>().await.unwrap().id.to_string();
    app.sim
        .approve(&app.change_of("Deploy"), "ok")
        .await
        .unwrap();
    app.until_state(&id, GateState::Approved).await;
    let events = until_event_text(&app, &id, "307").await;
    let text = serde_json::to_string(&events).unwrap();
    assert!(!text.contains("answered with proceedEmpty"), "{text}");
    assert!(text.contains(&catcher.addr.to_string()), "{text}");
    assert!(!text.contains("jenkins-api-token-123"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(catcher.received(), 0, "the release went on to the catcher");
}

#[tokio::test]
async fn a_second_process_on_the_same_sqlite_file_refuses_to_start() {
    let sim_cfg = quiet_sim();
    let sim = servicenow_sim::start(sim_cfg.clone()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = write_config(dir.path(), port, &sim, &sim_cfg, "60s");
    let address = format!("http://127.0.0.1:{port}");
    let mut first = start_binary(&config, &address, &dir.path().join("first.log")).await;
    // The same store on another port.
    let second_port = free_port();
    let yaml = std::fs::read_to_string(&config).unwrap().replace(
        &format!("127.0.0.1:{port}\""),
        &format!("127.0.0.1:{second_port}\""),
    );
    let second = dir.path().join("second.yaml");
    std::fs::write(&second, yaml).unwrap();
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_snowgate"))
            .args(["serve", "--config"])
            .arg(&second)
            .output(),
    )
    .await
    .expect("the second process exits by itself")
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    let db = dir.path().join("snowgate.db");
    assert!(stderr.contains(&db.display().to_string()), "{stderr}");
    assert!(
        stderr.contains(&format!("pid {}", first.child.id())),
        "{stderr}"
    );
    assert!(stderr.contains("PostgreSQL"), "{stderr}");
    // The first one still serves.
    let client = reqwest::Client::new();
    let r = client
        .get(format!("{address}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    // Once it is gone (even by SIGKILL) the file can be used again.
    let second_address = format!("http://127.0.0.1:{second_port}");
    let mut third = start_binary(&second, &second_address, &dir.path().join("third.log")).await;
    third.child.kill().unwrap();
    third.child.wait().unwrap();
}

#[tokio::test]
async fn authentication_cannot_be_switched_off_on_a_public_address() {
    let sim_cfg = quiet_sim();
    let sim = servicenow_sim::start(sim_cfg.clone()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = write_config(dir.path(), port, &sim, &sim_cfg, "60s");
    let yaml = std::fs::read_to_string(&config)
        .unwrap()
        .replace(&format!("127.0.0.1:{port}\""), &format!("0.0.0.0:{port}\""))
        + "  disabled: true\n";
    std::fs::write(&config, yaml).unwrap();
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_snowgate"))
            .args(["serve", "--config"])
            .arg(&config)
            .output(),
    )
    .await
    .expect("snowgate exits by itself")
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("auth.disabled"), "{stderr}");
    assert!(stderr.contains("SNOWGATE__AUTH__DISABLED"), "{stderr}");
    assert!(stderr.contains("loopback"), "{stderr}");
}

/// How the ServiceNow double answers the acknowledgement (`PUT changeControl/{token}`).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Ack {
    /// The instance is gone once the registration is answered: connections are refused.
    Refused,
    /// The request is read and never answered.
    Hang,
    /// 200 with a body that is not JSON.
    Undecodable,
}

/// A ServiceNow double that registers every gate under change control and answers the
/// acknowledgement as `ack` says. Records the registration bodies.
struct AckDouble {
    addr: SocketAddr,
    bodies: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for AckDouble {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl AckDouble {
    async fn start(ack: Ack) -> AckDouble {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let recorded = bodies.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let request = read_request(&mut sock).await;
                let registration = request.starts_with("POST ");
                let answer = if registration {
                    recorded.lock().unwrap().push(request);
                    http_answer(
                        "200 OK",
                        r#"{"result":{"changeControl":"true","status":"Success"}}"#,
                    )
                } else if ack == Ack::Hang {
                    tokio::time::sleep(Duration::from_secs(120)).await;
                    continue;
                } else {
                    http_answer("200 OK", "<html>Service Unavailable</html>")
                };
                let _ = sock.write_all(answer.as_bytes()).await;
                let _ = sock.shutdown().await;
                if registration && ack == Ack::Refused {
                    // Gone: the listener is dropped, the next connection is refused.
                    return;
                }
            }
        });
        AckDouble { addr, bodies, task }
    }

    fn callback_url(&self) -> String {
        let body = self.bodies.lock().unwrap()[0].clone();
        let json = &body[body.find("\r\n\r\n").unwrap() + 4..];
        let v: Value = serde_json::from_str(json).unwrap();
        v["callbackURL"].as_str().unwrap().to_string()
    }
}

fn http_answer(status: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// The head and the body (by `Content-Length`).
async fn read_request(sock: &mut tokio::net::TcpStream) -> String {
    let mut text = read_head(sock).await;
    let Some(end) = text.find("\r\n\r\n") else {
        return text;
    };
    let length: usize = text[..end]
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap_or(0))
        })
        .unwrap_or(0);
    let mut chunk = [0u8; 4096];
    while text.len() < end + 4 + length {
        match tokio::time::timeout(Duration::from_secs(5), sock.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => text.push_str(&String::from_utf8_lossy(&chunk[..n])),
            _ => break,
        }
    }
    text
}

/// Everything a person or a log reader can see of a gate: its JSON, its events, its status
/// page, and the log.
async fn everything_about(address: &str, id: &str, log: &Path) -> String {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut seen = String::new();
    for path in [
        format!("/api/v1/gates/{id}"),
        format!("/api/v1/gates/{id}/events"),
    ] {
        let r = client
            .get(format!("{address}{path}"))
            .bearer_auth(OPERATOR_TOKEN)
            .send()
            .await
            .unwrap();
        seen.push_str(&r.text().await.unwrap());
    }
    let login = client
        .post(format!("{address}/ui/login"))
        .form(&[("token", OPERATOR_TOKEN)])
        .send()
        .await
        .unwrap();
    let cookie = login.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let page = client
        .get(format!("{address}/ui/gates/{id}"))
        .header("Cookie", cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    seen.push_str(&page.text().await.unwrap());
    seen.push_str(&std::fs::read_to_string(log).unwrap());
    seen
}

async fn an_acknowledgement_failing_never_shows_the_callback_token(ack: Ack) {
    let double = AckDouble::start(ack).await;
    let sim_cfg = quiet_sim();
    let sim = servicenow_sim::start(sim_cfg.clone()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = write_config(dir.path(), port, &sim, &sim_cfg, "60s");
    let yaml = std::fs::read_to_string(&config)
        .unwrap()
        .replace(&sim.url(), &format!("http://{}/", double.addr))
        .replace("timeout: 5s", "timeout: 1s")
        // The double answers the registration first: the plugin creates the tasks.
        .replace(
            "servicenow:\n",
            "servicenow:\n  official_plugin: installed\n",
        )
        + "log:\n  level: debug\n";
    std::fs::write(&config, yaml).unwrap();
    let address = format!("http://127.0.0.1:{port}");
    let log = dir.path().join("snowgate.log");
    let mut bin = start_binary(&config, &address, &log).await;
    let client = reqwest::Client::new();
    let resp = client
        .post(format!("{address}/api/v1/gates"))
        .bearer_auth(PIPELINE_TOKEN)
        .header("Content-Type", "application/json")
        .body(gate_body("Deploy").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let id = resp.json::<GateView>().await.unwrap().id.to_string();
    let callback = double.callback_url();
    let token = callback.rsplit('/').next().unwrap().to_string();
    assert!(token.starts_with("pipeline_"), "{callback}");
    let r = client
        .post(&callback)
        .header("Content-Type", "application/json")
        .body(r#"{"result":"succeeded"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Wait for a failed acknowledgement attempt to be recorded.
    let mut events = String::new();
    for _ in 0..200 {
        events = format!(
            "{:?}",
            crate::durability::gate(&client, &address, &id).await
        );
        let e = client
            .get(format!("{address}/api/v1/gates/{id}/events"))
            .bearer_auth(PIPELINE_TOKEN)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if e.contains("acknowledge_retry") || e.contains("acknowledge_failed") {
            events = e;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        events.contains("acknowledge_retry") || events.contains("acknowledge_failed"),
        "{ack:?}: no failed acknowledgement recorded: {events}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let seen = everything_about(&address, &id, &log).await;
    bin.child.kill().unwrap();
    bin.child.wait().unwrap();
    assert!(
        !seen.contains(&token),
        "{ack:?}: the callback token shows:\n{seen}"
    );
    let uuid = token.trim_start_matches("pipeline_");
    assert!(!seen.contains(uuid), "{ack:?}: the token's uuid shows");
    if ack == Ack::Refused {
        // The refused connection's error names the request path: the token in it is a
        // fingerprint.
        assert!(
            events.contains("changeControl/sha256:"),
            "{ack:?}: the error should name the path with a fingerprint: {events}"
        );
    }
}

#[tokio::test]
async fn a_refused_acknowledgement_never_shows_the_callback_token() {
    an_acknowledgement_failing_never_shows_the_callback_token(Ack::Refused).await;
}

#[tokio::test]
async fn a_timed_out_acknowledgement_never_shows_the_callback_token() {
    an_acknowledgement_failing_never_shows_the_callback_token(Ack::Hang).await;
}

#[tokio::test]
async fn an_undecodable_acknowledgement_never_shows_the_callback_token() {
    an_acknowledgement_failing_never_shows_the_callback_token(Ack::Undecodable).await;
}

#[tokio::test]
async fn pass_through_calls_count_against_the_servicenow_rate_limit() {
    let app = spawn_app_with(quiet_sim(), |s| {
        s.servicenow.max_requests_per_second = 1;
        s.servicenow.poll_interval = snowgate::configuration::Dur(Duration::from_secs(3600));
    })
    .await;
    app.sim.clear_requests();
    // One slot a second, and a pass-through waits at most 10 s for one: of 13 at once, the
    // last ones are refused with 503 and Retry-After instead of waiting on.
    let calls = (0..13).map(|_| {
        app.get(
            "/api/v1/change-info?pipelineName=shop%2Fapp&stageName=Deploy&buildNumber=41",
            Some(PIPELINE_TOKEN),
        )
    });
    let answers = futures::future::join_all(calls).await;
    let mut refused = 0;
    for resp in answers {
        match resp.status().as_u16() {
            200 => {}
            503 => {
                assert!(resp.headers().contains_key("retry-after"));
                let body: ErrorBody = resp.json().await.unwrap();
                assert_eq!(body.error.code, "rate_limited", "{body:?}");
                refused += 1;
            }
            other => panic!("unexpected {other}: {}", resp.text().await.unwrap()),
        }
    }
    assert!(refused >= 2, "refused {refused}");
    let asked = app
        .sim
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/orchestration/changeInfo"))
        .count();
    assert_eq!(
        asked,
        13 - refused,
        "only the calls with a slot reached ServiceNow"
    );
}

#[tokio::test]
async fn every_api_endpoint_needs_a_token_and_operator_endpoints_an_operator_token() {
    let app = spawn_app().await;
    let gate = app.open("Deploy").await;
    let id = gate.id;
    let pipeline_endpoints = [
        ("POST", "/api/v1/gates".to_string()),
        ("GET", "/api/v1/gates".to_string()),
        ("GET", format!("/api/v1/gates/{id}")),
        ("GET", format!("/api/v1/gates/{id}/wait?timeout=1")),
        ("GET", format!("/api/v1/gates/{id}/events")),
        ("POST", format!("/api/v1/gates/{id}/complete")),
        ("POST", "/api/v1/step-mappings".to_string()),
        (
            "GET",
            "/api/v1/change-info?pipelineName=x&stageName=y".to_string(),
        ),
        ("PUT", "/api/v1/change-info/CHG0030001".to_string()),
        ("POST", "/api/v1/artifacts".to_string()),
        ("POST", "/api/v1/packages".to_string()),
    ];
    let operator_endpoints = [
        ("POST", format!("/api/v1/gates/{id}/resume")),
        ("POST", format!("/api/v1/gates/{id}/abort")),
    ];
    let send = |method: &str, path: &str, token: Option<&str>| {
        let mut r = app
            .client
            .request(method.parse().unwrap(), format!("{}{path}", app.address))
            .header("Content-Type", "application/json")
            .body(r#"{"reason":"x","result":"success"}"#);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send()
    };
    for (method, path) in pipeline_endpoints.iter().chain(operator_endpoints.iter()) {
        let resp = send(method, path, None).await.unwrap();
        assert_eq!(resp.status(), 401, "{method} {path} without a token");
        let resp = send(method, path, Some("not-a-token")).await.unwrap();
        assert_eq!(resp.status(), 401, "{method} {path} with an unknown token");
    }
    for (method, path) in &operator_endpoints {
        let resp = send(method, path, Some(PIPELINE_TOKEN)).await.unwrap();
        assert_eq!(resp.status(), 403, "{method} {path} with a pipeline token");
    }
    // Nothing was decided by any of these.
    assert_eq!(app.gate(id).await.state, GateState::Pending);
}
