//! Gate requests built from the request's own field names, with values of every JSON type
//! and strings near each limit, so the fuzzer spends its time past the "is required" checks.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Map, Value};

const FIELDS: [&str; 27] = [
    "jobUrl",
    "buildNumber",
    "stageName",
    "buildUrl",
    "branchName",
    "isMultiBranch",
    "parentStageName",
    "parentStageUrl",
    "parentStageId",
    "triggerType",
    "upstreamTaskExecutionUrl",
    "taskExecutionUrl",
    "message",
    "changeRequestDetails",
    "input",
    "pollingIntervalSecs",
    "changeCreationTimeoutSecs",
    "abortOnChangeCreationFailure",
    "changeStepTimeoutSecs",
    "abortOnChangeStepTimeout",
    "ignoreErrors",
    "mode",
    "environment",
    "changeRequestNumber",
    "emergency",
    "standardChangeTemplate",
    "workNotes",
];

/// Inner keys of `input` and `changeRequestDetails`.
const INNER: [&str; 6] = [
    "id",
    "attributes",
    "setCloseCode",
    "autoCloseChange",
    "impact",
    "sys_id",
];

const TEXTS: [&str; 16] = [
    "https://ci.example.com/job/shop/job/app/",
    "https://ci.example.com/job/shop/job/app/42/",
    "http://j:8080//evil/job/x/1/",
    "https://ci.example.com/job/mb/job/feature%252Fx/",
    "Deploy",
    "Deploy/Prod",
    "42",
    "true",
    "false",
    "user",
    "scm",
    "upstream",
    "devops",
    "change",
    "CHG0030001",
    "2592000",
];

#[derive(Arbitrary, Debug)]
enum Json {
    Null,
    Bool(bool),
    Int(i64),
    Uint(u64),
    Float(f64),
    Known(u8),
    /// A known text repeated, to cross the length limits.
    Repeated(u8, u16),
    Text(String),
    Array(Vec<Json>),
    Object(Vec<(u8, Json)>),
}

impl Json {
    fn value(&self, depth: u32) -> Value {
        if depth > 8 {
            return Value::Null;
        }
        match self {
            Json::Null => Value::Null,
            Json::Bool(b) => json!(b),
            Json::Int(n) => json!(n),
            Json::Uint(n) => json!(n),
            Json::Float(f) => json!(f),
            Json::Known(i) => json!(TEXTS[usize::from(*i) % TEXTS.len()]),
            Json::Repeated(i, n) => {
                json!(TEXTS[usize::from(*i) % TEXTS.len()].repeat(usize::from(*n % 512)))
            }
            Json::Text(s) => json!(s),
            Json::Array(items) => Value::Array(items.iter().map(|j| j.value(depth + 1)).collect()),
            Json::Object(fields) => Value::Object(
                fields
                    .iter()
                    .map(|(k, v)| {
                        let key = INNER[usize::from(*k) % INNER.len()].to_string();
                        (key, v.value(depth + 1))
                    })
                    .collect(),
            ),
        }
    }
}

#[derive(Arbitrary, Debug)]
struct Request {
    /// Start from a valid request (tests/api/helpers.rs `gate_body`), then set `fields`.
    valid_base: bool,
    fields: Vec<(u8, Json)>,
    extra: Option<(String, Json)>,
}

fuzz_target!(|req: Request| {
    let mut body = Map::new();
    if req.valid_base {
        body.insert(
            "jobUrl".into(),
            json!("https://ci.example.com/job/shop/job/app/"),
        );
        body.insert("buildNumber".into(), json!(42));
        body.insert("stageName".into(), json!("Deploy"));
        body.insert(
            "buildUrl".into(),
            json!("https://ci.example.com/job/shop/job/app/42/"),
        );
    }
    for (k, v) in &req.fields {
        body.insert(
            FIELDS[usize::from(*k) % FIELDS.len()].to_string(),
            v.value(0),
        );
    }
    if let Some((k, v)) = &req.extra {
        body.insert(k.clone(), v.value(0));
    }
    snowgate_fuzz::check_gate_request(&Value::Object(body));
});
