//! The CI templates in integrations/: they parse, they run `gates open`, every flag they pass
//! is one the binary takes, and run as the CI would run them they open the job's gate.
use std::collections::HashMap;
use std::path::PathBuf;

use servicenow_sim::SimSettings;
use snowgate::api::GateView;
use yaml_rust2::{Yaml, YamlLoader};

use super::{github_env, gitlab_env, RUN_ID};
use crate::change::change_app_with;
use crate::cli::run_cmd;
use crate::helpers::*;

fn integration(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../integrations")
        .join(path)
}

fn load(path: &str) -> Yaml {
    let text = std::fs::read_to_string(integration(path)).unwrap();
    YamlLoader::load_from_str(&text)
        .unwrap_or_else(|e| panic!("{path} is not YAML: {e}"))
        .remove(0)
}

/// The action's one `run:` step and its `env:`.
fn action_step() -> (String, Yaml) {
    let action = load("github-actions/action.yml");
    assert_eq!(action["runs"]["using"].as_str(), Some("composite"));
    let steps = action["runs"]["steps"].as_vec().unwrap();
    let step = steps.iter().find(|s| s["run"].as_str().is_some()).unwrap();
    (
        step["run"].as_str().unwrap().to_string(),
        step["env"].clone(),
    )
}

/// The template job's script, one shell line per entry.
fn gitlab_script() -> String {
    let t = load("gitlab/snowgate.gitlab-ci.yml");
    let lines: Vec<&str> = t[".snowgate-gate"]["script"]
        .as_vec()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    lines.join("\n")
}

/// `bash -c script` with only `env` and PATH (for bash itself and the action's tools).
fn bash(env: &[(&str, &str)], script: &str) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new("bash");
    cmd.env_clear()
        .envs(env.iter().copied())
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .args(["-c", script])
        .kill_on_drop(true);
    cmd
}

/// Every `--flag` in `script`.
fn flags(script: &str) -> Vec<String> {
    script
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .filter(|w| w.starts_with("--") && w.len() > 2)
        .map(str::to_string)
        .collect()
}

/// The long flags of the help's option lines: those whose trimmed start is `--flag` or
/// `-x, --flag`, the flag followed by a space, `=`, `<` or the line's end. A flag named only in
/// the prose does not count.
fn option_flags(help: &str) -> Vec<String> {
    help.lines()
        .filter_map(|line| {
            let t = line.trim_start();
            let t = match t.split_once(", ") {
                Some((short, rest))
                    if short.len() == 2 && short.starts_with('-') && short != "--" =>
                {
                    rest
                }
                _ => t,
            };
            let name = t.strip_prefix("--")?;
            let end = name.find([' ', '=', '<']).unwrap_or(name.len());
            let name = &name[..end];
            let valid =
                !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
            valid.then(|| format!("--{name}"))
        })
        .collect()
}

#[test]
fn only_option_lines_of_a_help_count_as_flags() {
    let help = "Usage: x [OPTIONS]\n\nOptions:\n      --wait\n          Wait.\n                      --retry-for <RETRY_FOR>\n  -h, --help\n      --mode=<MODE>\n\n  1  --made-up:                 a flag in prose\n     --also-prose, or so\n";
    assert_eq!(
        option_flags(help),
        ["--wait", "--retry-for", "--help", "--mode"]
    );
}

#[tokio::test]
async fn the_templates_pass_only_flags_that_gates_open_takes() {
    let help = run_cmd(
        super::ci_command("http://127.0.0.1:1", &[], &["gates", "open", "--help"]),
        &[],
    )
    .await;
    assert_eq!(help.code, 0, "{}", help.output());
    // The help documents its own exit codes, apart from those of `gates wait`.
    for line in [
        "Exit codes of `gates open` (not those of `gates wait`",
        "  0  ",
        "  1  ",
        "  2  ",
    ] {
        assert!(
            help.stdout.contains(line),
            "{line} missing:\n{}",
            help.stdout
        );
    }
    let accepted = option_flags(&help.stdout);
    for f in [
        "--wait",
        "--retry-for",
        "--short-description",
        "--json",
        "--help",
    ] {
        assert!(accepted.contains(&f.to_string()), "{f} not in {accepted:?}");
    }
    // A flag the binary does not take is not accepted, though the prose could name it.
    assert!(!accepted.contains(&"--made-up-flag".to_string()));
    let (action, _) = action_step();
    let gitlab = gitlab_script();
    for (name, script) in [("action.yml", &action), ("snowgate.gitlab-ci.yml", &gitlab)] {
        assert!(
            script.contains("gates open"),
            "{name} does not run gates open"
        );
        let used = flags(script);
        assert!(used.contains(&"--wait".to_string()), "{name}: {used:?}");
        for f in used {
            // curl's and sha256sum's own flags in the action's download.
            if [
                "--fail",
                "--silent",
                "--show-error",
                "--location",
                "--retry",
                "--check",
                "--strict",
            ]
            .contains(&f.as_str())
            {
                continue;
            }
            assert!(
                accepted.contains(&f),
                "{name} passes {f}, which no option line of `gates open --help` lists:\n{}",
                help.stdout
            );
        }
    }
    // The example pipeline includes and extends the template.
    let example = load("gitlab/.gitlab-ci.yml");
    assert_eq!(
        example["change-approval"]["extends"].as_str(),
        Some(".snowgate-gate")
    );
}

/// The action's step environment with `inputs` (others at their defaults) as GitHub would set it.
fn action_env(inputs: &HashMap<&str, &str>) -> Vec<(String, String)> {
    let action = load("github-actions/action.yml");
    let (_, env) = action_step();
    env.as_hash()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            let expr = v.as_str().unwrap();
            let input = expr
                .trim_start_matches("${{ inputs.")
                .trim_end_matches(" }}");
            let value = inputs.get(input).map(|s| s.to_string()).unwrap_or_else(|| {
                let default = &action["inputs"][input]["default"];
                default.as_str().unwrap_or("").to_string()
            });
            (k.as_str().unwrap().to_string(), value)
        })
        .collect()
}

/// The action's step as GitHub runs it for `app`, in change mode for Production with this
/// binary, and `extra` inputs; `GITHUB_OUTPUT` is `github_output` in `tmp`.
fn action_run(
    app: &TestApp,
    tmp: &std::path::Path,
    extra: &[(&str, &str)],
) -> tokio::process::Command {
    let mut inputs = HashMap::from([
        ("url", app.address.as_str()),
        ("token", PIPELINE_TOKEN),
        ("environment", "Production"),
        ("snowgate-path", env!("CARGO_BIN_EXE_snowgate")),
    ]);
    inputs.extend(extra.iter().copied());
    let (script, _) = action_step();
    let mut cmd = bash(&github_env(), &script);
    cmd.env("RUNNER_TEMP", tmp)
        .env("GITHUB_OUTPUT", tmp.join("github_output"))
        .envs(action_env(&inputs));
    cmd
}

#[tokio::test]
async fn the_action_run_as_github_runs_it_opens_the_gate_of_the_job() {
    let app = change_app_with(SimSettings::default(), |_| {}).await;
    let tmp = tempfile::tempdir().unwrap();
    let output = tmp.path().join("github_output");
    let bin = env!("CARGO_BIN_EXE_snowgate");
    let extra = [("wait", "false"), ("stage", "deploy-prod")];
    // The token and URL reach snowgate only through the action's inputs.
    let run = run_cmd(action_run(&app, tmp.path(), &extra), &[PIPELINE_TOKEN]).await;
    assert_eq!(run.code, 0, "{}", run.output());
    let list: snowgate::api::GateList = app
        .get("/api/v1/gates", Some(PIPELINE_TOKEN))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list.count, 1);
    let g: &GateView = &list.gates[0];
    assert_eq!(
        (g.build_number.as_str(), g.stage_name.as_str()),
        (format!("{RUN_ID}002").as_str(), "deploy-prod")
    );
    let out = std::fs::read_to_string(&output).unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [format!("snowgate-bin={bin}"), format!("gate-id={}", g.id)]
    );
}

#[tokio::test]
async fn the_action_refuses_a_download_without_its_sha256_before_fetching_anything() {
    let tmp = tempfile::tempdir().unwrap();
    let output = tmp.path().join("github_output");
    // A server that records whether anything asked it for the binary.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let download = format!("http://{}/snowgate", listener.local_addr().unwrap());
    let inputs = HashMap::from([
        ("url", "http://127.0.0.1:1"),
        ("token", PIPELINE_TOKEN),
        ("environment", "Production"),
        ("snowgate-url", download.as_str()),
    ]);
    let (script, _) = action_step();
    let mut cmd = bash(&github_env(), &script);
    cmd.env("RUNNER_TEMP", tmp.path())
        .env("GITHUB_OUTPUT", &output)
        .envs(action_env(&inputs));
    let run = run_cmd(cmd, &[PIPELINE_TOKEN]).await;
    assert_eq!(run.code, 2, "{}", run.output());
    assert!(
        run.output()
            .contains("snowgate-url is set but snowgate-sha256 is empty"),
        "{}",
        run.output()
    );
    assert!(!tmp.path().join("snowgate").exists(), "nothing downloaded");
    // The step has ended; a connection it had made would be waiting to be accepted.
    let accepted =
        tokio::time::timeout(std::time::Duration::from_millis(200), listener.accept()).await;
    assert!(accepted.is_err(), "the action fetched {download}");
}

#[tokio::test]
async fn the_gitlab_template_script_waits_for_the_decision() {
    let app = change_app_with(SimSettings::default(), |_| {}).await;
    let mut env = gitlab_env();
    env.extend([
        ("SNOWGATE_BIN", env!("CARGO_BIN_EXE_snowgate")),
        ("SNOWGATE_MODE", ""),
        ("SNOWGATE_ENVIRONMENT", "Production"),
        ("SNOWGATE_RETRY_FOR", "30s"),
        (
            "SNOWGATE_SHORT_DESCRIPTION",
            "Deploy shop/app pipeline 4711",
        ),
        ("SNOWGATE_DESCRIPTION", "Two words  and  more"),
        (
            "SNOWGATE_OPEN_ARGS",
            "--supersede --cr-field assignment_group=CAB*",
        ),
    ]);
    // A file the `*` would match were the line globbed.
    let cwd = tempfile::tempdir().unwrap();
    std::fs::write(cwd.path().join("assignment_group=CAB-prod"), "").unwrap();
    // GitLab runs the script lines in one shell, stopping at the first failure.
    let script = format!("set -e\n{}", gitlab_script());
    let mut cmd = bash(&env, &script);
    cmd.current_dir(cwd.path())
        .env("SNOWGATE_URL", &app.address)
        .env("SNOWGATE_TOKEN", PIPELINE_TOKEN);
    let waiter = tokio::spawn(run_cmd(cmd, &[PIPELINE_TOKEN]));
    let g = super::the_gate(&app.address).await;
    assert_eq!(
        (g.build_number.as_str(), g.stage_name.as_str()),
        ("4711", "deploy-prod")
    );
    let g = app
        .until_state(g.id, snowgate::domain::GateState::Pending)
        .await;
    let number = cr_number(&g).unwrap().to_string();
    let cr = app.sim.chg_change(&number).unwrap();
    assert_eq!(cr.short_description, "Deploy shop/app pipeline 4711");
    let field = |k: &str| cr.fields.get(k).map(String::as_str);
    assert_eq!(field("description"), Some("Two words  and  more"));
    assert_eq!(field("assignment_group"), Some("CAB*"), "not globbed");
    app.sim
        .chg_set_state(&number, "Implement", None, None)
        .unwrap();
    let run = waiter.await.unwrap();
    assert_eq!(run.code, 0, "{}", run.output());
}

#[test]
fn the_workflow_example_passes_the_action_only_inputs_it_declares_and_every_required_one() {
    let action = load("github-actions/action.yml");
    let declared = action["inputs"].as_hash().unwrap();
    let example = load("github-actions/example.yml");
    let steps = example["jobs"]["deploy"]["steps"].as_vec().unwrap();
    let step = steps
        .iter()
        .find(|s| s["uses"].as_str() == Some("./integrations/github-actions"))
        .expect("the deploy job uses the action");
    let given = step["with"].as_hash().unwrap();
    for key in given.keys() {
        assert!(
            declared.contains_key(key),
            "example.yml passes {key:?}, which action.yml does not declare"
        );
    }
    for (name, input) in declared {
        if input["required"].as_bool() == Some(true) {
            assert!(
                given.contains_key(name),
                "example.yml lacks the required {name:?}"
            );
        }
    }
    // The later step reads outputs the action declares.
    let outputs = action["outputs"].as_hash().unwrap();
    for output in ["gate-id", "snowgate-bin"] {
        assert!(
            outputs.contains_key(&Yaml::String(output.into())),
            "{output}"
        );
    }
}

#[tokio::test]
async fn the_action_with_wait_holds_the_job_until_the_change_reaches_implement() {
    let app = change_app_with(SimSettings::default(), |_| {}).await;
    let tmp = tempfile::tempdir().unwrap();
    let output = tmp.path().join("github_output");
    let cmd = action_run(&app, tmp.path(), &[("wait", "true")]);
    let job = tokio::spawn(run_cmd(cmd, &[PIPELINE_TOKEN]));
    let g = super::the_gate(&app.address).await;
    let number = super::pending_cr(&app, g.id).await;
    assert!(!job.is_finished(), "the job waits for the decision");
    app.sim
        .chg_set_state(&number, "Implement", None, None)
        .unwrap();
    let run = job.await.unwrap();
    assert_eq!(run.code, 0, "{}", run.output());
    assert!(run.stderr.contains("the stage may go on"), "{}", run.stderr);
    let out = std::fs::read_to_string(&output).unwrap();
    assert!(out.contains(&format!("gate-id={}", g.id)), "{out}");
}
