//! The store under faults done for real: a PostgreSQL cluster frozen with SIGSTOP, and TLS to
//! PostgreSQL with certificates made by openssl.
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use snowgate::domain::GateState;
use snowgate::store::{GateStore, PgOptions, PostgresStore};

use crate::durability::{free_port, start_binary, write_config};
use crate::helpers::*;
use crate::pg::PgServer;

fn with_store(config: &Path, url: &str, extra: &str) {
    let yaml = std::fs::read_to_string(config).unwrap();
    let start = yaml.find("  url: \"sqlite://").unwrap();
    let end = start + yaml[start..].find('\n').unwrap();
    let yaml = format!(
        "{}  url: \"{url}\"\n{extra}{}",
        &yaml[..start],
        &yaml[end + 1..]
    );
    std::fs::write(config, yaml).unwrap();
}

/// The answer stays raw JSON: a gate, an error body, or null when a frozen store left no
/// readable body.
async fn open_timed(
    client: &reqwest::Client,
    address: &str,
    stage: &str,
) -> (u16, Value, Duration) {
    let started = Instant::now();
    let resp = client
        .post(format!("{address}/api/v1/gates"))
        .bearer_auth(PIPELINE_TOKEN)
        .header("Content-Type", "application/json")
        .body(gate_body(stage).to_string())
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    (status, body, started.elapsed())
}

#[tokio::test]
async fn a_frozen_postgres_gives_503s_in_time_and_snowgate_recovers_by_itself() {
    let pg = PgServer::start();
    let url = pg.database("snowgate").await;
    let sim_cfg = quiet_sim();
    let sim = servicenow_sim::start(sim_cfg.clone()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = write_config(dir.path(), port, &sim, &sim_cfg, "500ms");
    with_store(&config, &url, "  timeout: 2s\n");
    let address = format!("http://127.0.0.1:{port}");
    let log = dir.path().join("snowgate.log");
    let mut bin = start_binary(&config, &address, &log).await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let (status, before, _) = open_timed(&client, &address, "Before").await;
    assert_eq!(status, 201, "{before}");
    let id = before["id"].as_str().unwrap().to_string();

    let frozen = pg.freeze();
    assert!(
        frozen.len() > 1,
        "the postmaster and its children: {frozen:?}"
    );
    let (status, body, took) = open_timed(&client, &address, "During").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "store_unavailable", "{body}");
    // store.timeout is 2 s; the bound is what matters, not the exact figure.
    assert!(took < Duration::from_secs(8), "open took {took:?}");
    let started = Instant::now();
    let ready = client
        .get(format!("{address}/readyz"))
        .send()
        .await
        .unwrap();
    let ready_took = started.elapsed();
    assert_ne!(ready.status(), 200);
    assert!(
        ready_took < Duration::from_secs(4),
        "/readyz took {ready_took:?}"
    );
    // Liveness does not depend on the store.
    let live = client
        .get(format!("{address}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), 200);
    // ServiceNow decides meanwhile; the callback cannot be stored, so it is refused (ServiceNow
    // retries), and polling picks the decision up once the store answers again.
    sim.approve(&sim.changes()[0].number, "ok").await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;

    pg.thaw(&frozen);
    // No restart: the open request and the workers recover on their own.
    let mut recovered = None;
    for _ in 0..100 {
        let (status, body, _) = open_timed(&client, &address, "After").await;
        if status == 201 || status == 200 {
            recovered = Some(body);
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(recovered.is_some(), "opening never recovered after SIGCONT");
    let mut state = None;
    for _ in 0..200 {
        let g = crate::durability::gate(&client, &address, &id).await;
        state = Some(g.state);
        if state == Some(GateState::Approved) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        state,
        Some(GateState::Approved),
        "the gate decided while frozen was picked up"
    );
    let ready = client
        .get(format!("{address}/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    bin.child.kill().unwrap();
    bin.child.wait().unwrap();
}

/// A CA, and a server certificate for `localhost` signed by it, made with openssl.
struct Certs {
    _dir: tempfile::TempDir,
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl runs (scripts/test.sh installs it)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn make_certs() -> Certs {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    openssl(
        d,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=snowgate test CA",
        ],
    );
    openssl(
        d,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ],
    );
    std::fs::write(
        d.join("ext.cnf"),
        "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        d,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ],
    );
    Certs {
        ca: d.join("ca.crt"),
        cert: d.join("server.crt"),
        key: d.join("server.key"),
        _dir: dir,
    }
}

async fn connect(url: String, ca_file: Option<PathBuf>) -> Result<PostgresStore, String> {
    PostgresStore::connect(PgOptions {
        url,
        password: None,
        pool_size: 2,
        connect_timeout: Duration::from_secs(5),
        statement_timeout: Duration::from_secs(5),
        ca_file,
    })
    .await
    .map_err(|e| e.to_string())
}

/// Whether the server reports the store's own connection as encrypted.
async fn encrypted(store: &PostgresStore) -> bool {
    store.uses_tls().await.unwrap()
}

#[tokio::test]
async fn postgres_over_tls_connects_verifies_and_refuses_as_sslmode_says() {
    let certs = make_certs();
    let pg = PgServer::start_with_tls(&certs.cert, &certs.key);
    let port = pg.port;
    let url = |host: &str, mode: &str| {
        format!("postgres://postgres@{host}:{port}/postgres?sslmode={mode}")
    };

    // require: encrypted, certificate not checked.
    let store = connect(url("127.0.0.1", "require"), None).await.unwrap();
    store.ping().await.unwrap();
    assert!(encrypted(&store).await);
    // verify-full with the CA and the certificate's own name.
    let store = connect(url("localhost", "verify-full"), Some(certs.ca.clone()))
        .await
        .unwrap();
    assert!(encrypted(&store).await);
    // verify-ca checks the chain, not the name.
    let store = connect(url("127.0.0.1", "verify-ca"), Some(certs.ca.clone()))
        .await
        .unwrap();
    assert!(encrypted(&store).await);
    // disable: plain.
    let store = connect(url("127.0.0.1", "disable"), None).await.unwrap();
    assert!(!encrypted(&store).await);

    // verify-full refuses a certificate issued for another host name.
    let err = connect(url("127.0.0.1", "verify-full"), Some(certs.ca.clone()))
        .await
        .err()
        .expect("a certificate for localhost does not name 127.0.0.1");
    assert!(
        err.contains("certificate") && err.contains("127.0.0.1"),
        "{err}"
    );
    // verify-ca without the right CA refuses the chain.
    let other = make_certs();
    let err = connect(url("localhost", "verify-ca"), Some(other.ca.clone()))
        .await
        .err()
        .expect("a certificate from another CA is refused");
    assert!(err.contains("certificate"), "{err}");

    // A server without TLS is refused under require, and accepted under prefer.
    let plain = PgServer::start();
    let plain_url = |mode: &str| {
        format!(
            "postgres://postgres@127.0.0.1:{}/postgres?sslmode={mode}",
            plain.port
        )
    };
    let err = connect(plain_url("require"), None)
        .await
        .err()
        .expect("require refuses a server without TLS");
    assert!(err.to_lowercase().contains("tls"), "{err}");
    let store = connect(plain_url("prefer"), None).await.unwrap();
    assert!(!encrypted(&store).await);
}
