use std::path::Path;

use super::*;

#[test]
fn durations_accept_units_and_bare_seconds() {
    assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
    assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
    assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
    assert_eq!(parse_duration("12").unwrap(), Duration::from_secs(12));
    assert!(parse_duration("soon").is_err());
}

#[test]
fn a_duration_too_long_for_duration_is_refused_not_a_panic() {
    // Found by the config_yaml fuzz target: Duration::from_secs_f64 panics past u64 seconds.
    let err = Settings::from_yaml_str("outbox:\n  max_backoff: 1.0e300\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("too long"), "{err}");
    let s = Settings::from_yaml_str("outbox:\n  max_backoff: 2.5\n").unwrap();
    assert_eq!(s.outbox.max_backoff.0, Duration::from_millis(2500));
}

#[test]
fn a_yaml_key_that_is_not_a_name_is_refused_not_a_panic() {
    // Found by the config_yaml fuzz target (`servicenow:\n : x\n` panicked in config).
    for text in [
        "servicenow:\n : x\n",
        "true: x\n",
        "servicenow:\n  1.5: x\n",
        "auth:\n  pipeline_tokens:\n    - {[a]: b}\n",
    ] {
        let err = Settings::from_yaml_str(text).unwrap_err().to_string();
        assert!(err.contains("a YAML key is"), "{text:?}: {err}");
    }
    let dir = std::env::temp_dir().join(format!("snowgate-cfg-key-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad-key.yaml");
    std::fs::write(&path, "servicenow:\n : x\n").unwrap();
    let err = Settings::load(Some(&path)).unwrap_err().to_string();
    assert!(err.contains("a YAML key is empty"), "{err}");
}

#[test]
fn secrets_do_not_print() {
    let s = Secret::new("hunter2-hunter2");
    assert_eq!(format!("{s:?}"), "[redacted]");
}

#[test]
fn env_names_follow_the_double_underscore_form() {
    assert_eq!(
        env_name("servicenow.instance_url"),
        "SNOWGATE__SERVICENOW__INSTANCE_URL"
    );
}

#[test]
fn base_url_needs_a_trailing_slash() {
    assert!(check_base_url("https://x.example/").is_ok());
    assert!(check_base_url("https://x.example/app").is_err());
    assert!(check_base_url("ftp://x.example/").is_err());
}

#[test]
fn the_example_configuration_has_only_known_keys() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config.example.yaml");
    let s = Settings::load(Some(&path)).expect("config.example.yaml loads");
    assert_eq!(s.servicenow.tool_id, "1c219f7e8708f1508ca933383cbb3543");
    assert_eq!(s.servicenow.timeout.0, Duration::from_secs(30));
    assert_eq!(s.auth.operator_tokens[0].name, "alice");
}

#[test]
fn the_status_page_session_lasts_8h_unless_configured() {
    assert_eq!(
        Settings::default().ui.session_ttl.0,
        Duration::from_secs(8 * 3600)
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ui.yaml");
    std::fs::write(&path, "ui:\n  session_ttl: 30m\n").unwrap();
    let s = Settings::load(Some(&path)).unwrap();
    assert_eq!(s.ui.session_ttl.0, Duration::from_secs(1800));
}

#[test]
fn a_session_ttl_under_a_second_is_named_with_its_environment_variable() {
    for ttl in [Duration::ZERO, Duration::from_millis(500)] {
        let mut s = Settings::default();
        s.ui.session_ttl = Dur(ttl);
        let problems = s.problems().join("\n");
        assert!(
            problems.contains("ui.session_ttl (SNOWGATE__UI__SESSION_TTL) must be at least 1s"),
            "{ttl:?}: {problems}"
        );
    }
    assert!(!Settings::default()
        .problems()
        .join("\n")
        .contains("ui.session_ttl"));
}

#[test]
fn an_unknown_key_is_named() {
    let dir = std::env::temp_dir().join(format!("snowgate-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.yaml");
    std::fs::write(&path, "servicenow:\n  instance_ur: x\n").unwrap();
    let err = Settings::load(Some(&path)).unwrap_err().to_string();
    assert!(err.contains("instance_ur"), "{err}");
}

#[test]
fn yaml_text_reads_like_the_file_without_environment_or_secret_files() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config.example.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let s = Settings::from_yaml_str(&text).expect("config.example.yaml reads");
    assert_eq!(s.servicenow.tool_id, "1c219f7e8708f1508ca933383cbb3543");
    assert_eq!(s.auth.operator_tokens[0].name, "alice");
    let s = Settings::from_yaml_str("servicenow:\n  token_file: /nonexistent/token\n")
        .expect("a secret file is not read");
    assert_eq!(
        s.servicenow.token_file.as_deref(),
        Some(Path::new("/nonexistent/token"))
    );
    assert!(s.servicenow.token.is_empty());
    let err = Settings::from_yaml_str("servicenow:\n  instance_ur: x\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("instance_ur"), "{err}");
}

#[test]
fn an_empty_configuration_names_every_missing_key() {
    let problems = Settings::default().problems().join("\n");
    for key in [
        "SNOWGATE__SERVICENOW__INSTANCE_URL",
        "SNOWGATE__SERVICENOW__TOOL_ID",
        "SNOWGATE__SERVICENOW__TOKEN",
        "SNOWGATE__CALLBACK__PUBLIC_BASE_URL",
        "SNOWGATE__AUTH__DISABLED",
    ] {
        assert!(problems.contains(key), "{key} missing from {problems}");
    }
}

#[test]
fn conflict_checks_need_a_configuration_item_on_the_cr() {
    let mut s = Settings::default();
    s.change.conflicts = super::ConflictPolicy::Wait;
    let problems = s.problems();
    assert!(
        problems.iter().any(
            |p| p.starts_with("change.conflicts (SNOWGATE__CHANGE__CONFLICTS)")
                && p.contains("change.fields.cmdb_ci")
        ),
        "{problems:?}"
    );
    s.change.fields.insert("cmdb_ci".into(), "web-01".into());
    assert!(!s
        .problems()
        .iter()
        .any(|p| p.starts_with("change.conflicts")));
}
