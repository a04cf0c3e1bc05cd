//! Who is asking: the session cookie, the live session it names, and the CSRF token that the
//! session's forms carry (an HMAC of the session id under a random per-process key).
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::OnceLock;

use actix_web::http::{header, StatusCode};
use actix_web::HttpRequest;
use rand::RngCore as _;
use sha2::Sha256;
use subtle::ConstantTimeEq as _;

use super::{UiError, COOKIE};
use crate::state::AppState;

/// HMAC-SHA256 (RFC 2104).
fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    use hmac::Mac;
    // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
    let mut mac = hmac::Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(msg);
    mac.finalize().into_bytes().into()
}

/// Derives and checks the CSRF token of a session.
pub struct CsrfKey([u8; 32]);

impl CsrfKey {
    pub fn random() -> CsrfKey {
        let mut key = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut key);
        CsrfKey(key)
    }

    /// The token the session's forms carry: `hex(HMAC(key, session))`.
    pub fn token(&self, session: &str) -> String {
        hex::encode(hmac_sha256(&self.0, session.as_bytes()))
    }

    /// Does `presented` belong to `session`? Constant-time; a missing token never does.
    pub fn check(&self, session: &str, presented: Option<&str>) -> bool {
        let Some(p) = presented else {
            return false;
        };
        self.token(session).as_bytes().ct_eq(p.as_bytes()).into()
    }
}

/// One key per process: a restart ends the sessions the tokens belong to anyway.
fn csrf_key() -> &'static CsrfKey {
    static KEY: OnceLock<CsrfKey> = OnceLock::new();
    KEY.get_or_init(CsrfKey::random)
}

/// What the CSRF token of an `auth.disabled` deployment is derived from (there is no cookie).
const NO_AUTH_SESSION: &str = "auth-disabled";

pub(super) struct Session {
    pub(super) operator: String,
    /// What the CSRF token is derived from: the session id (the cookie's value), or
    /// `NO_AUTH_SESSION`.
    pub(super) key: String,
    /// Whether there is a login to log out of.
    pub(super) cookie: bool,
}

impl Session {
    /// The CSRF token this session's forms carry.
    pub(super) fn csrf(&self) -> String {
        csrf_key().token(&self.key)
    }

    /// A POST form's `csrf` field must be this session's token (403 otherwise).
    pub(super) fn check_csrf(&self, form: &HashMap<String, String>) -> Result<(), UiError> {
        if csrf_key().check(&self.key, form.get("csrf").map(String::as_str)) {
            Ok(())
        } else {
            Err(csrf_refused())
        }
    }
}

fn csrf_refused() -> UiError {
    UiError::Status(
        StatusCode::FORBIDDEN,
        "This form has expired or did not come from this page (CSRF check failed): reload the \
         page and try again."
            .into(),
    )
}

/// The cookie's value from every `Cookie` header of the request.
fn cookie_value(req: &HttpRequest) -> Option<String> {
    req.headers()
        .get_all(header::COOKIE)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim().to_string())
}

/// The live session the request's cookie names. An expired, revoked or forged id is no
/// session: pages send the browser to the login form, as without a cookie.
///
/// The operator's token is not checked again: the configuration, and with it the tokens, is
/// read only at start, and a restart ends every session.
pub(super) fn session(req: &HttpRequest, state: &AppState) -> Option<Session> {
    if state.tokens.is_disabled() {
        return Some(Session {
            operator: "anonymous".into(),
            key: NO_AUTH_SESSION.into(),
            cookie: false,
        });
    }
    let id = cookie_value(req)?;
    let info = state.ui.sessions.get(&id)?;
    Some(Session {
        operator: info.operator,
        key: id,
        cookie: true,
    })
}

/// Whom failed logins are counted against: the connection's peer. `X-Forwarded-For` is not
/// used — any client can write it, and would get a fresh allowance with every value. Behind a
/// reverse proxy every browser shares the proxy's address, and so its allowance.
pub(super) fn client_address(req: &HttpRequest) -> IpAddr {
    req.peer_addr()
        .map(|a| a.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

fn is_https(req: &HttpRequest) -> bool {
    // ConnectionInfo honours `Forwarded` and `X-Forwarded-Proto` from a TLS-terminating proxy.
    req.connection_info().scheme().eq_ignore_ascii_case("https")
}

/// The `Set-Cookie` value that stores `value` for `max_age` seconds (0: deletes the cookie).
pub(super) fn set_cookie(req: &HttpRequest, value: &str, max_age: u64) -> String {
    let secure = if is_https(req) { "; Secure" } else { "" };
    format!("{COOKIE}={value}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231_test_case_1() {
        let mac = hmac_sha256(&[0x0b; 20], b"Hi There");
        assert_eq!(
            hex::encode(mac),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
    }

    #[test]
    fn hmac_matches_rfc_4231_test_case_6_with_a_long_key() {
        let mac = hmac_sha256(
            &[0xaa; 131],
            b"Test Using Larger Than Block-Size Key - Hash Key First",
        );
        assert_eq!(
            hex::encode(mac),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn a_csrf_token_is_accepted_only_for_its_own_session_and_key() {
        let key = CsrfKey::random();
        let session = &"0123456789abcdef".repeat(4);
        let token = key.token(session);
        assert!(key.check(session, Some(&token)));
        assert!(!key.check(session, None), "missing");
        assert!(!key.check(session, Some("")), "empty");
        assert!(!key.check(session, Some(&token[..token.len() - 1])), "cut");
        assert!(
            !key.check(&"fedcba9876543210".repeat(4), Some(&token)),
            "other session"
        );
        assert!(
            !CsrfKey::random().check(session, Some(&token)),
            "other process"
        );
        let mut flipped = token.clone().into_bytes();
        flipped[0] = if flipped[0] == b'0' { b'1' } else { b'0' };
        assert!(!key.check(session, Some(std::str::from_utf8(&flipped).unwrap())));
    }
}
