//! The one authentication type of the ServiceNow clients: the DevOps token (v2 API), Basic, or
//! an OAuth 2 password grant with one shared, refreshed token. Secrets stay in [`Secret`] and
//! `Debug` shows none of them.
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::sync::Mutex;

use super::error::{classify, ServiceNowError};
use super::lenient::{self, str_of, Scalar};
use crate::configuration::{Secret, ServiceNowAuth, ServiceNowSettings};
use crate::metrics::Metrics;

/// Refresh the access token this long before ServiceNow says it expires.
const REFRESH_MARGIN: Duration = Duration::from_secs(60);

#[derive(Clone)]
pub enum Auth {
    /// `Authorization: sn_devops.DevOpsToken <toolId>:<token>` (DevOps API v2).
    DevOpsToken {
        tool_id: String,
        token: Secret,
    },
    Basic {
        user: String,
        password: Secret,
    },
    OAuth(Arc<OAuth>),
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::DevOpsToken { tool_id, .. } => f
                .debug_struct("DevOpsToken")
                .field("tool_id", tool_id)
                .finish_non_exhaustive(),
            Auth::Basic { user, .. } => f
                .debug_struct("Basic")
                .field("user", user)
                .finish_non_exhaustive(),
            Auth::OAuth(o) => f
                .debug_struct("OAuth")
                .field("client_id", &o.client_id)
                .field("user", &o.user)
                .finish_non_exhaustive(),
        }
    }
}

struct Tokens {
    access: Secret,
    refresh: Option<Secret>,
    expires_at: Instant,
}

/// One OAuth token shared by every gate: a password grant once, refreshes before expiry and
/// after a 401, a fresh password grant when a refresh fails.
pub struct OAuth {
    token_url: url::Url,
    client_id: String,
    client_secret: Secret,
    user: String,
    password: Secret,
    tokens: Mutex<Option<Tokens>>,
}

/// The token endpoint's answer.
#[derive(Default, Deserialize)]
struct TokenAnswer {
    access_token: Option<Scalar>,
    refresh_token: Option<Scalar>,
    expires_in: Option<Scalar>,
}

fn basic(user: &str, password: &Secret) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{}", password.expose()))
    )
}

impl Auth {
    /// The DevOps API's auth: the token (v2), else Basic (v1), also when the Change API uses
    /// OAuth.
    pub fn devops(s: &ServiceNowSettings) -> Auth {
        match s.auth {
            ServiceNowAuth::Token => Auth::DevOpsToken {
                tool_id: s.tool_id.clone(),
                token: s.token.clone(),
            },
            ServiceNowAuth::Basic | ServiceNowAuth::Oauth => Auth::Basic {
                user: s.user.clone(),
                password: s.password.clone(),
            },
        }
    }

    /// The Change API's auth: OAuth against `<instance>/oauth_token.do`, else Basic (the DevOps
    /// token is not accepted there).
    pub fn change(s: &ServiceNowSettings, instance: &url::Url) -> anyhow::Result<Auth> {
        Ok(match s.auth {
            ServiceNowAuth::Oauth => Auth::OAuth(Arc::new(OAuth {
                token_url: instance.join("oauth_token.do")?,
                client_id: s.client_id.clone(),
                client_secret: s.client_secret.clone(),
                user: s.user.clone(),
                password: s.password.clone(),
                tokens: Mutex::new(None),
            })),
            ServiceNowAuth::Token | ServiceNowAuth::Basic => Auth::Basic {
                user: s.user.clone(),
                password: s.password.clone(),
            },
        })
    }

    pub fn is_oauth(&self) -> bool {
        matches!(self, Auth::OAuth(_))
    }

    /// The `Authorization` header value; for OAuth a cached token, or a fresh one when
    /// `force_refresh` (after a 401) or when it is about to expire.
    pub async fn header(
        &self,
        http: &reqwest::Client,
        metrics: &Metrics,
        force_refresh: bool,
    ) -> Result<String, ServiceNowError> {
        Ok(match self {
            Auth::DevOpsToken { tool_id, token } => {
                format!("sn_devops.DevOpsToken {tool_id}:{}", token.expose())
            }
            Auth::Basic { user, password } => basic(user, password),
            Auth::OAuth(o) => format!("Bearer {}", o.bearer(http, metrics, force_refresh).await?),
        })
    }
}

impl OAuth {
    async fn bearer(
        &self,
        http: &reqwest::Client,
        metrics: &Metrics,
        force_refresh: bool,
    ) -> Result<String, ServiceNowError> {
        let mut guard = self.tokens.lock().await;
        if let Some(t) = guard.as_ref() {
            if !force_refresh && Instant::now() + REFRESH_MARGIN < t.expires_at {
                return Ok(t.access.expose().to_string());
            }
        }
        let refresh = guard.as_ref().and_then(|t| t.refresh.clone());
        let mut fresh = match refresh {
            Some(r) => {
                let grant = [
                    ("grant_type", "refresh_token"),
                    ("refresh_token", r.expose()),
                ];
                match self.grant(http, metrics, &grant).await {
                    Err(ServiceNowError::Status {
                        status: 400 | 401, ..
                    }) => {
                        tracing::info!(
                            "OAuth refresh refused; requesting a new token with the password grant"
                        );
                        self.password_grant(http, metrics).await
                    }
                    other => other,
                }
            }
            None => self.password_grant(http, metrics).await,
        }?;
        // A refresh answer may omit `refresh_token`: keep the old one.
        if fresh.refresh.is_none() {
            fresh.refresh = guard.as_ref().and_then(|t| t.refresh.clone());
        }
        let access = fresh.access.expose().to_string();
        *guard = Some(fresh);
        Ok(access)
    }

    async fn password_grant(
        &self,
        http: &reqwest::Client,
        metrics: &Metrics,
    ) -> Result<Tokens, ServiceNowError> {
        let grant = [
            ("grant_type", "password"),
            ("username", self.user.as_str()),
            ("password", self.password.expose()),
        ];
        self.grant(http, metrics, &grant).await
    }

    async fn grant(
        &self,
        http: &reqwest::Client,
        metrics: &Metrics,
        params: &[(&str, &str)],
    ) -> Result<Tokens, ServiceNowError> {
        let mut form: Vec<(&str, &str)> = params.to_vec();
        form.push(("client_id", &self.client_id));
        form.push(("client_secret", self.client_secret.expose()));
        let started = std::time::Instant::now();
        let resp = http
            .post(self.token_url.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .form(&form)
            .send()
            .await
            .map_err(classify);
        crate::metrics::record_call(
            &metrics.servicenow_requests,
            &metrics.servicenow_latency,
            "POST oauth_token.do",
            resp.as_ref().ok().map(|r| r.status().as_u16()),
            started.elapsed(),
        );
        let resp = resp?;
        let status = resp.status();
        if status.is_redirection() {
            return Err(ServiceNowError::Redirect {
                status: status.as_u16(),
                location: super::http::location_host(resp.headers()),
            });
        }
        if !status.is_success() {
            // The body of a refused grant is not specified: do not parse it.
            return Err(ServiceNowError::Status {
                status: status.as_u16(),
                message: format!(
                    "the OAuth {} grant was refused; check servicenow.client_id, client_secret, user and password",
                    params[0].1
                ),
                retry_after: None,
            });
        }
        let answer: lenient::Json<TokenAnswer> = resp.json().await.map_err(classify)?;
        Self::tokens(answer.into_object())
    }

    fn tokens(answer: TokenAnswer) -> Result<Tokens, ServiceNowError> {
        let access = str_of(&answer.access_token).ok_or_else(|| {
            ServiceNowError::Decode("the token answer has no access_token".into())
        })?;
        let expires = answer
            .expires_in
            .as_ref()
            .and_then(Scalar::as_u64)
            .unwrap_or(1800);
        Ok(Tokens {
            access: Secret::new(access),
            refresh: str_of(&answer.refresh_token).map(Secret::new),
            expires_at: Instant::now() + Duration::from_secs(expires),
        })
    }
}
