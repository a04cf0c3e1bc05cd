//! Injected faults: failures and latency per endpoint key, counted down call by call.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A fault to inject: the next `fail_next` calls of `endpoint` answer `status` with a
/// ServiceNow error body, after `latency_ms`. With `fail_next == 0`, `latency_ms` is added to
/// every call of the endpoint until another fault for the same key replaces it (a fault with
/// neither failures nor latency clears the key).
///
/// Endpoint keys: `changeControl.get`, `changeControl.post`, `changeControl.put`,
/// `stepMapping.get`, `stepMapping.post`, `changeInfo.get`, `changeInfo.put`, `callback.get`,
/// `artifactRegistration.post`, `packageRegistration.post`,
/// `change.get` (list and one CR), `change.post` (every create), `change.patch`,
/// `change.template`, `oauth` (`/oauth_token.do`),
/// `attachment.post` (`POST /api/now/attachment/file`),
/// and `*` for any endpoint (used after an endpoint's own fault). `status` should be 400–599:
/// on sn_devops 400 and 404 use the sn_devops error shape; 401 is the authentication failure;
/// everything else `{"error":{"message","detail"},"status":"failure"}` (429 adds `Retry-After: 1`).
///
/// As JSON (admin API) the fields are camelCase (`failNext`, `latencyMs`; snake_case is accepted
/// too); `failNext` defaults to 1, `status` to 500, `latencyMs` to 0.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Fault {
    pub endpoint: String,
    #[serde(default = "one", alias = "fail_next")]
    pub fail_next: u32,
    #[serde(default = "internal_server_error")]
    pub status: u16,
    #[serde(default, alias = "latency_ms")]
    pub latency_ms: u64,
}

fn one() -> u32 {
    1
}

fn internal_server_error() -> u16 {
    500
}

/// The endpoint keys a [`Fault`] may name (besides `"*"`, any endpoint).
pub(crate) const FAULT_KEYS: &[&str] = &[
    "changeControl.get",
    "changeControl.post",
    "changeControl.put",
    "stepMapping.get",
    "stepMapping.post",
    "changeInfo.get",
    "changeInfo.put",
    "callback.get",
    "tool.post",
    "artifactRegistration.post",
    "packageRegistration.post",
    // The change API (`change/`) and its token endpoint (`oauth.rs`).
    "change.get",
    "change.post",
    "change.patch",
    "change.template",
    "change.conflict.post",
    "change.conflict.get",
    "change.conflict.delete",
    "oauth",
    // The Attachment API's raw-body upload (`attachments/`).
    "attachment.post",
];

/// What the next call of an endpoint has to suffer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct FaultAction {
    pub(crate) latency: Duration,
    /// `Some(status)`: answer this status with an error body instead of serving the call.
    pub(crate) fail_with: Option<u16>,
}

/// The faults in force, at most one per endpoint key (`"*"` is the key for any endpoint).
#[derive(Debug, Default)]
pub(crate) struct FaultTable {
    faults: Vec<Fault>,
}

impl FaultTable {
    /// Adds or replaces the fault for `fault.endpoint`. A fault with neither failures nor
    /// latency clears that key.
    pub(crate) fn inject(&mut self, fault: Fault) {
        self.faults.retain(|f| f.endpoint != fault.endpoint);
        if fault.fail_next > 0 || fault.latency_ms > 0 {
            self.faults.push(fault);
        }
    }

    pub(crate) fn clear(&mut self) {
        self.faults.clear();
    }

    pub(crate) fn list(&self) -> Vec<Fault> {
        self.faults.clone()
    }

    /// Consumes what one call of `endpoint` meets. A counted fault (`fail_next > 0`) fails the
    /// call after its latency and disappears once used up; the endpoint's own fault is used
    /// before a `"*"` fault. A latency-only fault (`fail_next == 0`) slows every call.
    pub(crate) fn on_call(&mut self, endpoint: &str) -> FaultAction {
        let order = [endpoint, "*"];
        for key in order {
            if let Some(i) = self
                .faults
                .iter()
                .position(|f| f.endpoint == key && f.fail_next > 0)
            {
                let fault = &mut self.faults[i];
                fault.fail_next -= 1;
                let action = FaultAction {
                    latency: Duration::from_millis(fault.latency_ms),
                    fail_with: Some(fault.status),
                };
                if fault.fail_next == 0 {
                    self.faults.remove(i);
                }
                return action;
            }
        }
        let latency = self
            .faults
            .iter()
            .filter(|f| order.contains(&f.endpoint.as_str()) && f.fail_next == 0)
            .map(|f| f.latency_ms)
            .max()
            .unwrap_or(0);
        FaultAction {
            latency: Duration::from_millis(latency),
            fail_with: None,
        }
    }
}

/// The API reference's error sentence for an injected status.
pub(crate) fn status_message(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        401 => "User Not Authenticated",
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Injected fault",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fault(endpoint: &str, fail_next: u32, status: u16, latency_ms: u64) -> Fault {
        Fault {
            endpoint: endpoint.into(),
            fail_next,
            status,
            latency_ms,
        }
    }

    #[test]
    fn a_counted_fault_fails_exactly_that_many_calls() {
        let mut table = FaultTable::default();
        table.inject(fault("changeControl.post", 2, 503, 0));
        assert_eq!(table.on_call("changeControl.get").fail_with, None);
        assert_eq!(table.on_call("changeControl.post").fail_with, Some(503));
        assert_eq!(table.on_call("changeControl.post").fail_with, Some(503));
        assert_eq!(table.on_call("changeControl.post"), FaultAction::default());
        assert!(table.list().is_empty());
    }

    #[test]
    fn the_wildcard_fails_any_endpoint_after_the_specific_one() {
        let mut table = FaultTable::default();
        table.inject(fault("*", 1, 500, 0));
        table.inject(fault("stepMapping.get", 1, 429, 5));
        let first = table.on_call("stepMapping.get");
        assert_eq!(first.fail_with, Some(429));
        assert_eq!(first.latency, Duration::from_millis(5));
        assert_eq!(table.on_call("stepMapping.get").fail_with, Some(500));
        assert_eq!(table.on_call("changeInfo.get").fail_with, None);
    }

    #[test]
    fn latency_only_faults_slow_every_call_until_cleared() {
        let mut table = FaultTable::default();
        table.inject(fault("changeInfo.get", 0, 500, 40));
        for _ in 0..3 {
            let action = table.on_call("changeInfo.get");
            assert_eq!(action.fail_with, None);
            assert_eq!(action.latency, Duration::from_millis(40));
        }
        assert_eq!(table.on_call("callback.get").latency, Duration::ZERO);
        table.inject(fault("changeInfo.get", 0, 500, 0));
        assert_eq!(table.on_call("changeInfo.get"), FaultAction::default());
    }

    #[test]
    fn injecting_again_replaces_the_fault_for_that_key() {
        let mut table = FaultTable::default();
        table.inject(fault("changeControl.put", 5, 500, 0));
        table.inject(fault("changeControl.put", 1, 502, 0));
        assert_eq!(table.on_call("changeControl.put").fail_with, Some(502));
        assert_eq!(table.on_call("changeControl.put").fail_with, None);
    }
}
