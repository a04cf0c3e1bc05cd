//! Answers of ServiceNow's Change API (and the DevOps answers read alongside them): arbitrary
//! bytes read as JSON, then every reader of an answer in src/servicenow/change.rs, and what the
//! poller does with a record it read (state, planned window, verdict).
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use snowgate::domain::change::{parse_planned, verdict, CrState};
use snowgate::servicenow::change::{field, records, single_result, ChangeRecord};
use snowgate::servicenow::devops::servicenow_message;
use snowgate::servicenow::passthrough::change_info_of;

fn poll(record: &ChangeRecord) {
    let Some(state) = CrState::parse(&record.state) else {
        return;
    };
    let now = chrono::DateTime::from_timestamp(1_767_225_600, 0).expect("a fixed now");
    let _ = verdict(
        &record.number,
        state,
        parse_planned(record.start_date.as_deref()),
        parse_planned(record.end_date.as_deref()),
        record.approval.as_deref(),
        now,
    );
}

fuzz_target!(|data: &[u8]| {
    let Ok(v) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    if let Ok(record) = ChangeRecord::parse(&v) {
        assert_eq!(Some(&record.sys_id), field(&v, "sys_id").as_ref());
        poll(&record);
    }
    if let Ok(record) = single_result(&v) {
        poll(&record);
    }
    if let Ok(list) = records(&v) {
        list.iter().for_each(poll);
    }
    let _ = servicenow_message(&v);
    if let Some(result) = v.get("result") {
        let info = change_info_of(result);
        let _ = info.state.as_deref().map(CrState::parse);
        let _ = parse_planned(info.planned_start.as_deref());
        let _ = parse_planned(info.planned_end.as_deref());
    }
});
