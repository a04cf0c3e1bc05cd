//! `snowgate completions` and `snowgate man`, generated from the binary's own commands.
use crate::cli::run_cmd;

async fn snowgate(args: &[&str]) -> crate::cli::Run {
    run_cmd(super::ci_command("http://127.0.0.1:1", &[], args), &[]).await
}

#[tokio::test]
async fn the_bash_completion_names_the_subcommands_and_is_valid_bash() {
    let run = snowgate(&["completions", "bash"]).await;
    assert_eq!(run.code, 0, "{}", run.output());
    for word in [
        "gates",
        "freezes",
        "open",
        "attach",
        "wait",
        "completions",
        "--retry-for",
    ] {
        assert!(
            run.stdout.contains(word),
            "{word} missing from the bash completion"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("snowgate.bash");
    std::fs::write(&script, &run.stdout).unwrap();
    let check = std::process::Command::new("bash")
        .arg("-n")
        .arg(&script)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    for shell in ["zsh", "fish"] {
        let run = snowgate(&["completions", shell]).await;
        assert_eq!(run.code, 0, "{}", run.output());
        assert!(run.stdout.contains("attach"), "{shell}: {}", run.stdout);
    }
    assert_eq!(snowgate(&["completions", "tcsh-not-a-shell"]).await.code, 2);
}

#[tokio::test]
async fn the_man_page_is_roff_with_the_subcommands_and_one_page_each_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("man1");
    let run = snowgate(&["man", "--out-dir", out.to_str().unwrap()]).await;
    assert_eq!(run.code, 0, "{}", run.output());
    assert!(run.stdout.contains(".TH snowgate"), "{}", run.stdout);
    assert!(run.stdout.contains("gates"), "{}", run.stdout);
    let open = std::fs::read_to_string(out.join("snowgate-gates-open.1")).unwrap();
    assert!(
        open.contains(".TH") && open.contains("retry\\-for"),
        "{open}"
    );
}
