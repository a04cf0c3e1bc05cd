//! The outbox's Jenkins work: answer the gate's paused `input` step.
use super::Outbox;
use crate::domain::Gate;
use crate::jenkins::{jenkins_input_id, Answer, JenkinsClient, JenkinsError};
use crate::store::{OutboxItem, OutboxResult};

impl Outbox {
    /// Answer the gate's Jenkins `input` step: 404 means not reached yet, already
    /// answered or build over — retried while the build still runs; 400 with `X-Error` means
    /// someone answered it already; 401/403 are credential problems.
    pub(super) async fn release(&self, item: &OutboxItem, gate: &Gate) -> OutboxResult {
        let Some(jenkins) = &self.jenkins else {
            return OutboxResult::GiveUp {
                error: "no jenkins section is configured: the input cannot be released".into(),
            };
        };
        let (Some(input), Some(build_url)) = (&gate.spec.input_id, &gate.spec.build_url) else {
            return OutboxResult::GiveUp {
                error: "the gate names no input or build URL".into(),
            };
        };
        let build = match jenkins.resolve(build_url) {
            Ok(b) => b,
            Err(why) => {
                return OutboxResult::GiveUp {
                    error: format!("buildUrl {why}"),
                }
            }
        };
        let proceed = item.payload["proceed"].as_bool().unwrap_or(false);
        let answer = input_answer(gate, proceed);
        let id = jenkins_input_id(input);
        match jenkins.answer_input(&build, input, &answer).await {
            Ok(action) => OutboxResult::Done {
                message: format!("Jenkins input {id} answered with {action}"),
            },
            // Jenkins' input step answers 400 with the reason in `X-Error`
            // (InputStepExecution.preSubmissionCheck / preAbortCheck).
            Err(JenkinsError::Status {
                status: 400,
                x_error: Some(e),
            }) if e.contains("already given") => OutboxResult::Done {
                message: format!("Jenkins input {id} was already answered: {e}"),
            },
            Err(JenkinsError::Status {
                status: 400,
                x_error: Some(e),
            }) if e.contains("You need to be") => {
                tracing::error!(input = %id, x_error = %e, "jenkins.user may not answer the input");
                OutboxResult::GiveUp {
                    error: format!(
                        "Jenkins refused: jenkins.user may not answer input {id} ({e}); add it to the input's submitter list or give it Job/Cancel permission"
                    ),
                }
            }
            Err(JenkinsError::Status { status: 404, .. }) => {
                self.input_missing(jenkins, &build, item, &id).await
            }
            Err(JenkinsError::Status { status: s @ (401 | 403), .. }) => OutboxResult::GiveUp {
                error: format!(
                    "Jenkins refused the credentials ({s}): check jenkins.user and jenkins.api_token (the user needs Job/Build permission)"
                ),
            },
            Err(e) if e.is_transient() => self.retry_or_give_up(item, e.to_string()),
            Err(e) => OutboxResult::GiveUp {
                error: format!("Jenkins refused to answer input {id}: {e}"),
            },
        }
    }

    /// Jenkins answered 404 for the input: the build has not reached it yet, is over, or is
    /// gone.
    async fn input_missing(
        &self,
        jenkins: &JenkinsClient,
        build: &url::Url,
        item: &OutboxItem,
        id: &str,
    ) -> OutboxResult {
        match jenkins.build_status(build).await {
            Ok(Some((true, _))) => self.retry_or_give_up(
                item,
                format!("input {id} not reached yet (the build is still running)"),
            ),
            Ok(Some((false, result))) => OutboxResult::GiveUp {
                error: format!(
                    "the build is over (result {}); input {id} can no longer be answered",
                    result.as_deref().unwrap_or("unknown")
                ),
            },
            Ok(None) => OutboxResult::GiveUp {
                error: "the build no longer exists in Jenkins".into(),
            },
            Err(e) if e.is_transient() => self.retry_or_give_up(item, e.to_string()),
            Err(e) => OutboxResult::GiveUp {
                error: format!("cannot read the build's status: {e}"),
            },
        }
    }
}

/// What the input is answered with: the decision, the CR's number, and who approved (the CR's
/// approvers, else whoever decided the gate).
fn input_answer(gate: &Gate, proceed: bool) -> Answer<'_> {
    let cr = gate.change_request.as_ref();
    let approver = cr
        .and_then(|c| c.approvers.as_deref())
        .or(gate.decided_by.as_deref());
    Answer {
        proceed,
        change_number: cr.and_then(|c| c.number.as_deref()),
        approver,
    }
}
