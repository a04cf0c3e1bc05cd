//! A real browser: Debian's Chromium, headless, driven over the DevTools protocol.
use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

pub const CHROMIUM: &str = "/usr/bin/chromium";
const STEP: Duration = Duration::from_secs(30);

/// A headless Chromium with a fresh profile, killed when dropped.
pub struct Browser {
    _child: Child,
    dir: tempfile::TempDir,
    pub page: Cdp,
}

impl Browser {
    pub async fn launch() -> Browser {
        assert!(
            Path::new(CHROMIUM).exists(),
            "{CHROMIUM} is missing: the status page is tested in a real browser; run \
             `bash scripts/test.sh` (it installs Debian's `chromium`) or \
             `apt-get install -y --no-install-recommends chromium`"
        );
        let dir = tempfile::tempdir().unwrap();
        let log = std::fs::File::create(dir.path().join("chromium.log")).unwrap();
        let profile = dir.path().join("profile");
        let mut child = Command::new(CHROMIUM)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-quic",
                "--disable-dev-shm-usage",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {CHROMIUM}: {e}"));
        let port = devtools_port(&mut child, dir.path()).await;
        let page = Cdp::connect(&page_socket(port).await).await;
        Browser {
            _child: child,
            dir,
            page,
        }
    }

    pub fn log_tail(&self) -> String {
        let log = read_log(self.dir.path());
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

fn read_log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("chromium.log")).unwrap_or_default()
}

/// Chromium prints `DevTools listening on ws://127.0.0.1:PORT/…` on stderr once the
/// debugging port (0: any free one) is open.
async fn devtools_port(child: &mut Child, dir: &Path) -> u16 {
    for _ in 0..300 {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("chromium exited ({status}):\n{}", read_log(dir));
        }
        let log = read_log(dir);
        if let Some(rest) = log
            .lines()
            .find_map(|l| l.split("DevTools listening on ws://").nth(1))
        {
            let hostport = rest.split('/').next().unwrap();
            return hostport.rsplit(':').next().unwrap().parse().unwrap();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "chromium did not open its DevTools port in 30 s:\n{}",
        read_log(dir)
    );
}

/// The websocket of the tab Chromium opened (`about:blank`).
async fn page_socket(port: u16) -> String {
    let list: Vec<Value> = reqwest::get(format!("http://127.0.0.1:{port}/json/list"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    list.iter()
        .find(|t| t["type"] == "page")
        .and_then(|t| t["webSocketDebuggerUrl"].as_str())
        .unwrap_or_else(|| panic!("no page target in {list:?}"))
        .to_string()
}

/// A minimal DevTools protocol client: JSON commands over a websocket (RFC 6455, text
/// frames, client frames masked), answers matched by id; events are skipped.
pub struct Cdp {
    stream: BufReader<TcpStream>,
    next_id: u64,
}

impl Cdp {
    async fn connect(ws_url: &str) -> Cdp {
        let rest = ws_url.strip_prefix("ws://").expect("a ws:// URL");
        let (host, path) = rest.split_at(rest.find('/').unwrap());
        let mut stream = TcpStream::connect(host).await.unwrap();
        let key = base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 16]>());
        // No Origin header: Chromium refuses websocket origins it was not told to allow.
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut reader = BufReader::new(stream);
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let b = reader.read_u8().await.unwrap();
            head.push(b);
            assert!(head.len() < 16 * 1024, "no end of the handshake answer");
        }
        let head = String::from_utf8_lossy(&head);
        assert!(
            head.starts_with("HTTP/1.1 101"),
            "websocket handshake: {head}"
        );
        Cdp {
            stream: reader,
            next_id: 0,
        }
    }

    async fn send_frame(&mut self, opcode: u8, payload: &[u8]) {
        let mut frame = vec![0x80 | opcode];
        match payload.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n if n <= u16::MAX as usize => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        let mask: [u8; 4] = rand::random();
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.stream.get_mut().write_all(&frame).await.unwrap();
    }

    /// The next whole text message (fragments joined; pings answered).
    async fn read_message(&mut self) -> String {
        let mut message = Vec::new();
        loop {
            let s = &mut self.stream;
            let b0 = s.read_u8().await.unwrap();
            let b1 = s.read_u8().await.unwrap();
            let len = match b1 & 0x7f {
                126 => u64::from(s.read_u16().await.unwrap()),
                127 => s.read_u64().await.unwrap(),
                n => u64::from(n),
            };
            let mask = if b1 & 0x80 != 0 {
                let mut m = [0u8; 4];
                s.read_exact(&mut m).await.unwrap();
                Some(m)
            } else {
                None
            };
            let mut payload = vec![0u8; len as usize];
            s.read_exact(&mut payload).await.unwrap();
            if let Some(m) = mask {
                for (i, b) in payload.iter_mut().enumerate() {
                    *b ^= m[i % 4];
                }
            }
            match b0 & 0x0f {
                0x0..=0x2 => {
                    message.extend_from_slice(&payload);
                    if b0 & 0x80 != 0 {
                        return String::from_utf8(message).unwrap();
                    }
                }
                0x8 => panic!("chromium closed the DevTools connection"),
                0x9 => self.send_frame(0xA, &payload).await,
                _ => {}
            }
        }
    }

    /// Send one command and wait for its answer: `Ok(result)` or `Err(error)`.
    pub async fn call(&mut self, method: &str, params: Value) -> Result<Value, Value> {
        self.next_id += 1;
        let id = self.next_id;
        let msg = json!({"id": id, "method": method, "params": params}).to_string();
        self.send_frame(0x1, msg.as_bytes()).await;
        let answer = tokio::time::timeout(STEP, async {
            loop {
                let v: Value = serde_json::from_str(&self.read_message().await).unwrap();
                if v["id"] == id {
                    return v;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no answer to {method} in {STEP:?}"));
        match answer.get("error") {
            Some(e) => Err(e.clone()),
            None => Ok(answer["result"].clone()),
        }
    }

    /// Evaluate JavaScript in the page (as the DevTools console does) and return its value.
    pub async fn eval(&mut self, expression: &str) -> Result<Value, String> {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expression, "returnByValue": true}),
            )
            .await
            .map_err(|e| e.to_string())?;
        if let Some(ex) = r.get("exceptionDetails") {
            return Err(ex.to_string());
        }
        Ok(r["result"]["value"].clone())
    }

    pub async fn navigate(&mut self, url: &str) {
        self.call("Page.navigate", json!({ "url": url }))
            .await
            .unwrap_or_else(|e| panic!("navigate to {url}: {e}"));
    }

    /// Wait until `condition` (a JavaScript expression) is true in a loaded page; evaluation
    /// errors while a page is being replaced count as "not yet".
    pub async fn wait_for(&mut self, condition: &str) -> bool {
        let expression = format!("document.readyState === 'complete' && ({condition})");
        for _ in 0..200 {
            if let Ok(Value::Bool(true)) = self.eval(&expression).await {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }
}
