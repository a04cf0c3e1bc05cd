//! Bearer tokens with two scopes: pipeline and operator.
use std::future::{ready, Ready};

use actix_web::dev::Payload;
use actix_web::{web, FromRequest, HttpRequest};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq;

use super::ApiError;
use crate::configuration::AuthSettings;
use crate::state::AppState;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    Pipeline,
    Operator,
}

#[derive(Clone, Debug)]
pub struct Principal {
    pub name: String,
    pub scope: Scope,
}

/// The configured tokens, kept as SHA-256 digests: a presented token is compared digest to
/// digest, so the comparison takes the same time whatever its length and content.
#[derive(Clone)]
pub struct Tokens {
    disabled: bool,
    entries: Vec<(String, [u8; 32], Scope)>,
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Tokens {
    pub fn from_settings(s: &AuthSettings) -> Tokens {
        let mut entries = Vec::new();
        for t in &s.pipeline_tokens {
            entries.push((t.name.clone(), digest(t.token.expose()), Scope::Pipeline));
        }
        for t in &s.operator_tokens {
            entries.push((t.name.clone(), digest(t.token.expose()), Scope::Operator));
        }
        Tokens {
            disabled: s.disabled,
            entries,
        }
    }

    fn identify(&self, req: &HttpRequest) -> Result<Principal, ApiError> {
        if self.disabled {
            return Ok(Principal {
                name: "anonymous".into(),
                scope: Scope::Operator,
            });
        }
        let presented = req
            .headers()
            .get(actix_web::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .ok_or(ApiError::Unauthorized)?;
        self.lookup(presented).ok_or(ApiError::Unauthorized)
    }

    /// The principal of a presented token. Compares against every token in constant time and
    /// does not stop at the first match; an operator scope wins over a pipeline scope.
    fn lookup(&self, presented: &str) -> Option<Principal> {
        let presented = digest(presented);
        let mut found: Option<Principal> = None;
        for (name, token, scope) in &self.entries {
            let eq: bool = token.ct_eq(&presented).into();
            if eq && found.as_ref().is_none_or(|p| p.scope == Scope::Pipeline) {
                found = Some(Principal {
                    name: name.clone(),
                    scope: *scope,
                });
            }
        }
        found
    }

    /// `auth.disabled: true`: every caller is an anonymous operator.
    pub fn is_disabled(&self) -> bool {
        self.disabled
    }

    /// The principal of a token presented some other way than the `Authorization` header
    /// (the status page keeps it in a cookie); unknown → 401, a pipeline token → 403.
    /// Compares against every token in constant time, like the header check.
    pub fn operator_by_token(
        &self,
        presented: &str,
        action: &'static str,
    ) -> Result<Principal, ApiError> {
        if self.disabled {
            return Ok(Principal {
                name: "anonymous".into(),
                scope: Scope::Operator,
            });
        }
        if presented.is_empty() {
            return Err(ApiError::Unauthorized);
        }
        match self.lookup(presented) {
            Some(p) if p.scope == Scope::Operator => Ok(p),
            Some(_) => Err(ApiError::Forbidden(action)),
            None => Err(ApiError::Unauthorized),
        }
    }

    /// Any valid token.
    pub fn pipeline(&self, req: &HttpRequest) -> Result<Principal, ApiError> {
        self.identify(req)
    }

    /// An operator token; a pipeline token gets 403.
    pub fn operator(&self, req: &HttpRequest, action: &'static str) -> Result<Principal, ApiError> {
        let p = self.identify(req)?;
        if p.scope == Scope::Operator {
            Ok(p)
        } else {
            Err(ApiError::Forbidden(action))
        }
    }
}

/// A caller with a valid token of either scope: a handler taking it is authenticated; one
/// without it (or [`Operator`]) is visibly public.
pub struct Pipeline(pub Principal);

/// A caller with an operator token; a pipeline token gets 403 naming the action.
pub struct Operator(pub Principal);

fn tokens(req: &HttpRequest) -> Result<&Tokens, ApiError> {
    req.app_data::<web::Data<AppState>>()
        .map(|state| &state.tokens)
        .ok_or_else(|| ApiError::Unexpected(anyhow::anyhow!("the application state is missing")))
}

/// What an operator endpoint does, for the 403 answer (`/gates/{id}/resume` → "resume gates").
fn action(req: &HttpRequest) -> &'static str {
    if req.path().starts_with(crate::api::FREEZES_PATH) {
        return if req.method() == actix_web::http::Method::DELETE {
            "delete change freezes"
        } else {
            "declare change freezes"
        };
    }
    match req.path().rsplit('/').next() {
        Some("resume") => "resume gates",
        Some("abort") => "abort gates",
        _ => "use operator endpoints",
    }
}

impl FromRequest for Pipeline {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(tokens(req).and_then(|t| t.pipeline(req)).map(Pipeline))
    }
}

impl FromRequest for Operator {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(
            tokens(req)
                .and_then(|t| t.operator(req, action(req)))
                .map(Operator),
        )
    }
}
