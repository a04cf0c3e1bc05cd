//! Gate requests as `POST /api/v1/gates` receives them: arbitrary bytes, read as JSON.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(body) = serde_json::from_slice::<serde_json::Value>(data) {
        snowgate_fuzz::check_gate_request(&body);
    }
});
