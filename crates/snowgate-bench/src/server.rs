//! The `snowgate serve` processes under measurement.
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context;
use servicenow_sim::{SimHandle, SimSettings};

use crate::client::TOKEN;

/// A running `snowgate serve`; killed when dropped.
pub struct Server {
    pub name: String,
    pub child: Child,
    pub url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `--server`, else the `snowgate` beside this binary (both are built into the same target dir).
pub fn binary(given: Option<&Path>) -> anyhow::Result<PathBuf> {
    let path = match given {
        Some(p) => p.to_path_buf(),
        None => std::env::current_exe()?
            .parent()
            .context("the benchmark binary has no directory")?
            .join("snowgate"),
    };
    anyhow::ensure!(
        path.is_file(),
        "{} is not a file: build it (cargo build --release -p snowgate) or pass --server",
        path.display()
    );
    Ok(path)
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// `postgres://user:secret@host/db` → `postgres://user:[redacted]@host/db`.
pub fn redact_url_password(u: &str) -> String {
    match url::Url::parse(u) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("[redacted]"));
            parsed.to_string()
        }
        _ => u.to_string(),
    }
}

/// Where one server runs: its directory (configuration, log, SQLite file) and its store.
pub struct Placement<'a> {
    pub binary: &'a Path,
    pub dir: &'a Path,
    /// `sqlite://…` or `postgres://…`; replicas share one.
    pub store_url: &'a str,
}

fn config_text(port: u16, sim: &SimHandle, sim_cfg: &SimSettings, store_url: &str) -> String {
    format!(
        r#"server:
  bind: "127.0.0.1:{port}"
callback:
  public_base_url: "http://127.0.0.1:{port}/"
servicenow:
  instance_url: "{instance}"
  tool_id: "{tool}"
  auth: token
  token: "{token}"
  poll_interval: "1h"
  max_requests_per_second: 1000
store:
  url: "{store_url}"
auth:
  pipeline_tokens: [ {{ name: bench, token: "{TOKEN}" }} ]
log:
  level: info
"#,
        instance = sim.url(),
        tool = sim_cfg.tool_id,
        token = sim_cfg.token,
    )
}

/// Start `snowgate serve` named `name` and wait until its /healthz answers.
pub async fn start(
    at: &Placement<'_>,
    name: &str,
    sim: &SimHandle,
    sim_cfg: &SimSettings,
) -> anyhow::Result<Server> {
    let port = free_port()?;
    let config = at.dir.join(format!("{name}.yaml"));
    std::fs::write(&config, config_text(port, sim, sim_cfg, at.store_url))?;
    // Measured at the default log level; the log goes to a file beside the store.
    let log = std::fs::File::create(at.dir.join(format!("{name}.log")))?;
    let child = Command::new(at.binary)
        .args(["serve", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .with_context(|| format!("cannot start `{} serve`", at.binary.display()))?;
    let server = Server {
        name: name.to_string(),
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let client = reqwest::Client::new();
    for _ in 0..200 {
        if client
            .get(format!("{}/healthz", server.url))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return Ok(server);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!(
        "snowgate serve did not start; see {}",
        at.dir.join(format!("{name}.log")).display()
    )
}
