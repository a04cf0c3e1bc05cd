//! What the simulated ServiceNow sends back to the pipeline side: the "change request created"
//! notice and the decision callbacks, plus the demo's automatic approval.

use std::sync::Arc;

use super::model::{CallbackAttempt, CrState, Decision, ModelError, Outbound};
use super::Shared;

/// The outcome of a decision or notice.
#[derive(Clone, Debug)]
pub(crate) struct Delivered {
    pub(crate) number: String,
    pub(crate) state: CrState,
    /// The callback's HTTP status; `None` when dropped or unreachable.
    pub(crate) status: Option<u16>,
}

/// Sends one callback (unless callbacks are being dropped) and records the attempt.
///
/// The HTTP call runs on the runtime that started the simulator, whichever thread asks for it:
/// the actix workers each run their own runtime, and one `reqwest::Client` (with its connection
/// pool) should only ever be driven from one.
#[tracing::instrument(skip_all, fields(number = %out.number, kind = %out.kind))]
pub(crate) async fn deliver(shared: &Arc<Shared>, out: Outbound) -> Delivered {
    let (status, error) = if out.drop {
        tracing::debug!("callback dropped on purpose");
        (None, None)
    } else {
        let mut request = shared.client.post(&out.url).json(&out.body);
        if let Some(user) = &shared.settings.callback_user {
            request = request.basic_auth(user, shared.settings.callback_password.as_ref());
        }
        let sent = shared
            .runtime
            .spawn(async move { request.send().await.map(|r| r.status().as_u16()) })
            .await;
        match sent {
            Ok(Ok(status)) => (Some(status), None),
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "callback failed");
                (None, Some(e.to_string()))
            }
            Err(e) => (None, Some(e.to_string())),
        }
    };
    shared.with_model(|m| {
        m.record_callback(CallbackAttempt {
            number: out.number.clone(),
            kind: out.kind.clone(),
            url: out.url.clone(),
            body: out.body.clone(),
            status,
            dropped: out.drop,
            error,
            at: super::model::now(),
        })
    });
    Delivered {
        number: out.number,
        state: out.state,
        status,
    }
}

/// Decides a CR (by number, or `"latest"`) and calls back.
pub(crate) async fn decide(
    shared: &Arc<Shared>,
    selector: &str,
    decision: Decision,
    comments: &str,
) -> Result<Delivered, ModelError> {
    let out = shared.with_model(|m| m.decide(selector, decision, comments, false))?;
    match out {
        Some(out) => Ok(deliver(shared, out).await),
        // Unreachable with `only_if_pending == false`; answer with the CR as it is.
        None => current(shared, selector),
    }
}

/// Sends the "change request created" notice again.
pub(crate) async fn notice(shared: &Arc<Shared>, selector: &str) -> Result<Delivered, ModelError> {
    let out = shared.with_model(|m| m.notice(selector, &shared.base_url))?;
    Ok(deliver(shared, out).await)
}

fn current(shared: &Arc<Shared>, selector: &str) -> Result<Delivered, ModelError> {
    shared.with_model(|m| {
        m.find(selector)
            .map(|c| Delivered {
                number: c.number.clone(),
                state: c.state,
                status: None,
            })
            .ok_or_else(|| ModelError::NotFound(selector.to_string()))
    })
}

/// After a new CR: send the notice (when configured) and arm the demo's automatic approval.
/// Both run in the background, on the simulator's runtime, so the registration's 201 is not
/// held up by the pipeline side.
pub(crate) fn after_registration(shared: &Arc<Shared>, number: String) {
    if shared.settings.send_notice {
        let task_shared = Arc::clone(shared);
        let task_number = number.clone();
        let handle = shared.runtime.spawn(async move {
            if let Err(e) = notice(&task_shared, &task_number).await {
                tracing::warn!(error = %e, "notice not sent");
            }
        });
        keep_timer(shared, handle.abort_handle());
    }
    if let Some(delay) = shared.settings.auto_approve_after {
        let task_shared = Arc::clone(shared);
        let handle = shared.runtime.spawn(async move {
            tokio::time::sleep(delay).await;
            let out = task_shared.with_model(|m| {
                m.decide(
                    &number,
                    Decision::Approve,
                    "Approved automatically by the ServiceNow simulator",
                    true,
                )
            });
            if let Ok(Some(out)) = out {
                deliver(&task_shared, out).await;
            }
        });
        keep_timer(shared, handle.abort_handle());
    }
}

/// Remembers a background task so that stopping the simulator ends it.
fn keep_timer(shared: &Arc<Shared>, timer: tokio::task::AbortHandle) {
    shared.with_model(|m| {
        m.timers.retain(|t| !t.is_finished());
        m.timers.push(timer);
    });
}
