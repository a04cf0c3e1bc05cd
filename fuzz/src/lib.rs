//! What the gate-request targets check on every request that parses.
use serde_json::Value;
use snowgate::configuration::GateMode;
use snowgate::domain::request::{MAX_STAGE_NAME, MAX_URL};
use snowgate::domain::GateSpec;
use snowgate::servicenow::devops::{
    acknowledgement_body, registration_body, stage_task_name, Registration,
};

/// Parse `body` with either default mode; for an accepted request, check what the parser
/// promises and build what snowgate sends ServiceNow from it.
pub fn check_gate_request(body: &Value) {
    for default_mode in [GateMode::Devops, GateMode::Change] {
        let Ok(spec) = GateSpec::parse_with_default(body, default_mode) else {
            continue;
        };
        assert!(!spec.stage_name.trim().is_empty());
        assert!(spec.stage_name.chars().count() <= MAX_STAGE_NAME);
        assert!(spec.job_url.chars().count() <= MAX_URL);
        assert!(!spec.build_number.is_empty());
        assert!(spec.build_number.bytes().all(|b| b.is_ascii_digit()));
        if spec.mode == GateMode::Change {
            assert!(
                spec.environment.is_some(),
                "a change-mode gate without environment"
            );
        }
        // The spec is stored as JSON with the gate and read back on every later request.
        let stored = serde_json::to_string(&spec).expect("a spec serializes");
        let read: GateSpec = serde_json::from_str(&stored).expect("a stored spec reads back");
        assert!(
            same_json(&read.change_request_details, &spec.change_request_details),
            "changeRequestDetails read back differently: {stored}"
        );
        assert_eq!(
            GateSpec {
                change_request_details: None,
                ..read
            },
            GateSpec {
                change_request_details: None,
                ..spec.clone()
            },
            "the stored spec reads back differently: {stored}"
        );
        let _ = spec.stage_path();
        let _ = stage_task_name(&spec);
        let callback_url = "https://snowgate.example.com/sn-devops/pipeline_x";
        let _ = registration_body(&Registration {
            spec: &spec,
            callback_url,
        });
        let _ = acknowledgement_body(&spec, callback_url);
    }
}

/// Equal JSON, except that a float may read back a unit or two in the last place off: without
/// its `float_roundtrip` feature serde_json parses some 17-digit floats to a neighbour (found by
/// the gate_spec_structured target; changeRequestDetails is passed to ServiceNow as given).
fn same_json(a: &Option<Value>, b: &Option<Value>) -> bool {
    fn same(a: &Value, b: &Value) -> bool {
        match (a, b) {
            (Value::Number(x), Value::Number(y)) if x.is_f64() && y.is_f64() => {
                let (x, y) = (x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(0.0));
                x.is_sign_negative() == y.is_sign_negative()
                    && x.to_bits().abs_diff(y.to_bits()) <= 2
            }
            (Value::Array(x), Value::Array(y)) => {
                x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
            }
            (Value::Object(x), Value::Object(y)) => {
                x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
            }
            _ => a == b,
        }
    }
    match (a, b) {
        (Some(a), Some(b)) => same(a, b),
        (None, None) => true,
        _ => false,
    }
}
