//! `snowgate demo`, the way a newcomer runs it: the real binary on free ports, and the
//! walkthrough's own commands for change mode and the change policies (steps 5 to 13) run in
//! bash, one step at a time, as they are printed.
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// The demo's stdout up to the walkthrough's last line, and the URLs from its first line.
struct Demo {
    _child: Child,
    api: String,
    sim: String,
    text: String,
}

async fn start_demo(dir: &std::path::Path) -> Demo {
    let mut child = Command::new(env!("CARGO_BIN_EXE_snowgate"))
        .args(["demo", "--port", "0", "--sim-port", "0", "--store"])
        .arg(dir.join("demo.db"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("snowgate demo starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut text = String::new();
    let read = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            text.push_str(&line);
            text.push('\n');
            if line.contains("\"state\":\"superseded\"") {
                return;
            }
        }
        panic!("the demo ended before its walkthrough was printed:\n{text}");
    };
    tokio::time::timeout(Duration::from_secs(60), read)
        .await
        .expect("the walkthrough is printed within 60 s");
    let header = text
        .lines()
        .find(|l| l.starts_with("snowgate demo:"))
        .unwrap();
    let urls: Vec<&str> = header
        .split_whitespace()
        .filter(|w| w.starts_with("http://"))
        .map(|w| w.trim_end_matches(','))
        .collect();
    assert_eq!(urls.len(), 2, "{header}");
    Demo {
        _child: child,
        api: urls[0].to_string(),
        sim: urls[1].to_string(),
        text,
    }
}

/// The commands of step `n` of the walkthrough: its lines that start with `curl` or assign a
/// variable from a command, with their `\` continuations. Prose and notes are left out.
fn step(text: &str, n: u32) -> String {
    let mut commands = String::new();
    let (mut inside, mut continued) = (false, false);
    for line in text.lines() {
        if let Some((number, _)) = line.split_once(". ") {
            if let Ok(k) = number.parse::<u32>() {
                inside = k == n;
                continue;
            }
        }
        let t = line.trim();
        let assigns = t
            .split_once("=$(")
            .is_some_and(|(var, _)| !var.is_empty() && var.chars().all(|c| c.is_ascii_uppercase()));
        if inside && (continued || t.starts_with("curl ") || assigns) {
            commands.push_str(t);
            commands.push('\n');
            continued = t.ends_with('\\');
        }
    }
    assert!(!commands.is_empty(), "step {n} has no commands:\n{text}");
    commands
}

/// One bash for the whole walkthrough, so that variables carry from step to step.
struct Shell {
    _child: Child,
    stdin: ChildStdin,
    out: Lines<BufReader<ChildStdout>>,
}

impl Shell {
    fn start() -> Shell {
        let mut child = Command::new("bash")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("bash starts");
        Shell {
            stdin: child.stdin.take().unwrap(),
            out: BufReader::new(child.stdout.take().unwrap()).lines(),
            _child: child,
        }
    }

    /// Run `commands` and return what they printed.
    async fn run(&mut self, commands: &str) -> String {
        const END: &str = "__walkthrough_step_done__";
        let script = format!("{commands}echo; echo {END}\n");
        self.stdin.write_all(script.as_bytes()).await.unwrap();
        let mut printed = String::new();
        let read = async {
            while let Some(line) = self.out.next_line().await.unwrap() {
                if line == END {
                    return;
                }
                printed.push_str(&line);
                printed.push('\n');
            }
            panic!("bash ended:\n{printed}");
        };
        tokio::time::timeout(Duration::from_secs(120), read)
            .await
            .unwrap_or_else(|_| panic!("the step did not finish in 120 s:\n{commands}"));
        printed
    }
}

async fn get_json(url: &str) -> Value {
    reqwest::get(url).await.unwrap().json().await.unwrap()
}

/// Until the gate's message contains `text`; the message it has then.
async fn until_message(api: &str, id: &str, text: &str) -> String {
    let url = format!("{api}/api/v1/gates/{id}");
    for _ in 0..300 {
        let message = get_json(&url).await["message"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if message.contains(text) {
            return message;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("gate {id} never says {text:?}: {}", get_json(&url).await);
}

/// Until the gate links its CR: what a person sees before going on to the next step.
async fn until_cr(api: &str, id: &str) {
    let url = format!("{api}/api/v1/gates/{id}");
    for _ in 0..300 {
        if get_json(&url).await["changeRequest"]["number"].is_string() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("gate {id} never links its CR: {}", get_json(&url).await);
}

/// The first line of a step's output: the id a `VAR=$(…); echo $VAR` line printed.
fn first_line(printed: &str) -> String {
    let id = printed
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .to_string();
    assert_eq!(id.len(), 36, "not a gate or freeze id: {printed}");
    id
}

#[tokio::test]
async fn the_demo_walkthrough_shows_evidence_conflicts_a_freeze_and_a_superseded_run() {
    let dir = tempfile::tempdir().unwrap();
    let demo = start_demo(dir.path()).await;
    let (api, sim, text) = (&demo.api, &demo.sim, &demo.text);
    let mut sh = Shell::start();

    // 5. Change mode: snowgate creates the CR (a person reads it before going on).
    let out = sh.run(&step(text, 5)).await;
    let chg = first_line(&out);
    until_cr(api, &chg).await;

    // 6. Evidence: queued, then on the CR in ServiceNow.
    let out = sh.run(&step(text, 6)).await;
    assert!(out.contains("\"status\":\"queued\""), "{out}");
    let mut attached = Value::Null;
    for _ in 0..300 {
        attached = get_json(&format!("{sim}/__sim/attachments")).await;
        if attached.to_string().contains("release-notes.txt") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(attached["attachments"][0]["fileName"], "release-notes.txt");

    // 7. A blackout conflict keeps the approved CR's gate pending, in ServiceNow's words.
    sh.run(&step(text, 7)).await;
    let held = until_message(api, &chg, "ServiceNow reports conflicts").await;
    assert!(held.contains("Datacenter move (Blackout)"), "{held}");

    // 8. Once the conflict is gone the gate is approved.
    let out = sh.run(&step(text, 8)).await;
    assert!(out.contains("\"state\":\"approved\""), "{out}");

    // 9 to 11. A freeze holds the next build's approval.
    let out = sh.run(&step(text, 9)).await;
    let freeze = first_line(&out);
    let frozen = out.lines().nth(1).unwrap_or_default().trim().to_string();
    until_cr(api, &frozen).await;
    sh.run(&step(text, 10)).await;
    until_message(api, &frozen, "held by change freeze `Year end`").await;
    let out = sh.run(&step(text, 11)).await;
    assert!(out.contains("\"state\":\"pending\""), "{out}");
    assert!(out.contains(&format!("\"id\":\"{freeze}\"")), "{out}");
    assert!(
        out.contains(&format!("\"heldGates\":[\"{frozen}\"]")),
        "{out}"
    );

    // 12. Deleting the freeze lets the held approval proceed.
    let out = sh.run(&step(text, 12)).await;
    assert!(out.starts_with("204\n"), "{out}");
    assert!(out.contains("\"state\":\"approved\""), "{out}");

    // 13. Build 45 supersedes build 44.
    let out = sh.run(&step(text, 13)).await;
    let old = first_line(&out);
    let gate = get_json(&format!("{api}/api/v1/gates/{old}")).await;
    assert_eq!(gate["state"], "superseded", "{out}");
    assert_eq!(gate["proceed"], false);
    assert!(out.contains("superseded by build 45"), "{out}");
}
