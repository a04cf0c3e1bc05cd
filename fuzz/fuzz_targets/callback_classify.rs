//! The ServiceNow callback body classifier: any text gives a notice or a decision, and a body
//! that is not a JSON object is always read as a rejection (the plugin's rule).
#![no_main]

use libfuzzer_sys::fuzz_target;
use snowgate::domain::GateState;
use snowgate::routes::callbacks::{classify, CallbackBody};

fuzz_target!(|data: &[u8]| {
    // The handler refuses bodies that are not UTF-8 before classifying.
    let Ok(body) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = serde_json::from_str::<serde_json::Value>(body).ok();
    let object = parsed.as_ref().and_then(serde_json::Value::as_object);
    match classify(body) {
        CallbackBody::Notice(_) => {
            assert!(
                object.is_some_and(|o| o.contains_key("changeRequestId")),
                "a notice without changeRequestId: {body:?}"
            );
        }
        CallbackBody::Decision { to, .. } => {
            assert!(
                matches!(
                    to,
                    GateState::Approved
                        | GateState::Rejected
                        | GateState::Canceled
                        | GateState::Failed
                ),
                "a callback decided {to:?}"
            );
            if object.is_none() {
                assert_eq!(to, GateState::Rejected, "unreadable body {body:?}");
            }
            if to == GateState::Approved {
                let o = object.expect("approved from an object");
                assert_eq!(o.get("result").and_then(|r| r.as_str()), Some("succeeded"));
            }
        }
    }
});
