//! The status page at `/ui`: login, server-side sessions (expiry, logout, the failed-login
//! limit), listing, the gate page, resume/abort forms with CSRF tokens, over HTTP and in a real
//! headless Chromium.
use std::time::Duration;

use base64::Engine as _;
use reqwest::header::{CACHE_CONTROL, CONTENT_TYPE, COOKIE, LOCATION, RETRY_AFTER, SET_COOKIE};
use reqwest::redirect::Policy;
use serde_json::json;
use snowgate::configuration::Dur;

use crate::chromium;
use crate::durability::{free_port, start_binary, write_config};
use crate::helpers::*;
use snowgate::api::GateView;
use snowgate::domain::GateState;

/// A client that shows redirects instead of following them.
fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

async fn post_form(
    app: &TestApp,
    path: &str,
    cookie: Option<&str>,
    form: &[(&str, &str)],
) -> reqwest::Response {
    let mut req = no_redirects().post(app.url(path)).form(form);
    if let Some(c) = cookie {
        req = req.header(COOKIE, c);
    }
    req.send().await.unwrap()
}

pub(crate) async fn get_page(app: &TestApp, path: &str, cookie: Option<&str>) -> reqwest::Response {
    let mut req = no_redirects().get(app.url(path));
    if let Some(c) = cookie {
        req = req.header(COOKIE, c);
    }
    req.send().await.unwrap()
}

/// Log in with the operator token; returns the `name=value` pair to send as `Cookie`.
pub(crate) async fn login(app: &TestApp) -> String {
    let resp = post_form(app, "/ui/login", None, &[("token", OPERATOR_TOKEN)]).await;
    assert_eq!(resp.status(), 303);
    assert_eq!(resp.headers()[LOCATION], "/ui");
    let set = resp.headers()[SET_COOKIE].to_str().unwrap().to_string();
    set.split(';').next().unwrap().trim().to_string()
}

/// Assert an HTML page with `status` that is never cached; returns its text.
pub(crate) async fn html(resp: reqwest::Response, status: u16) -> String {
    assert_eq!(resp.status(), status);
    assert_eq!(resp.headers()[CONTENT_TYPE], "text/html; charset=utf-8");
    assert_eq!(resp.headers()[CACHE_CONTROL], "no-store");
    resp.text().await.unwrap()
}

/// The CSRF token in the first form of a page.
fn csrf_of(page: &str) -> String {
    let marker = "name=\"csrf\" value=\"";
    let start = page.find(marker).expect("the page has a CSRF field") + marker.len();
    let end = start + page[start..].find('"').unwrap();
    page[start..end].to_string()
}

pub(crate) async fn gate_page(app: &TestApp, id: &str, cookie: &str) -> String {
    html(
        get_page(app, &format!("/ui/gates/{id}"), Some(cookie)).await,
        200,
    )
    .await
}

#[tokio::test]
async fn every_ui_page_redirects_to_the_login_form_without_a_session() {
    let app = spawn_app().await;
    let gate = app.open("Deploy").await;
    let id = &gate.id.to_string();
    // The cookie of the old design carried the token itself: it opens nothing now.
    let old_style = format!(
        "snowgate_ui=00.{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(OPERATOR_TOKEN)
    );
    let forged = format!("snowgate_ui={}", hex::encode(rand::random::<[u8; 32]>()));
    for cookie in [
        None,
        Some("snowgate_ui=garbage"),
        Some("snowgate_ui=00.bm90LWEtdG9rZW4"), // base64url("not-a-token")
        Some(&old_style),
        Some(&format!("snowgate_ui={OPERATOR_TOKEN}")),
        Some(&forged),
    ] {
        for path in ["/ui", "/ui/", &format!("/ui/gates/{id}")] {
            let resp = get_page(&app, path, cookie).await;
            assert_eq!(resp.status(), 303, "{path} {cookie:?}");
            assert_eq!(resp.headers()[LOCATION], "/ui/login", "{path}");
        }
        let resp = post_form(
            &app,
            &format!("/ui/gates/{id}/abort"),
            cookie,
            &[("reason", "no session"), ("csrf", "x")],
        )
        .await;
        assert_eq!(resp.status(), 303);
        assert_eq!(resp.headers()[LOCATION], "/ui/login");
    }
    // A bearer header is not a session either: the page is for browsers.
    let resp = no_redirects()
        .get(app.url("/ui"))
        .bearer_auth(OPERATOR_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    assert_eq!(app.gate(id).await.state, GateState::Pending);

    let page = html(get_page(&app, "/ui/login", None).await, 200).await;
    assert!(page.contains("action=\"/ui/login\""), "{page}");
    assert!(page.contains("type=\"password\""), "{page}");
    assert!(!page.contains("<script"), "{page}");
}

#[tokio::test]
async fn logging_in_sets_a_strict_http_only_cookie_that_opens_the_page() {
    let app = spawn_app().await;
    let resp = post_form(&app, "/ui/login", None, &[("token", OPERATOR_TOKEN)]).await;
    assert_eq!(resp.status(), 303);
    assert_eq!(resp.headers()[LOCATION], "/ui");
    let set = resp.headers()[SET_COOKIE].to_str().unwrap().to_string();
    assert!(set.starts_with("snowgate_ui="), "{set}");
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/ui", "Max-Age="] {
        assert!(set.contains(attr), "{attr} missing: {set}");
    }
    assert!(!set.contains("Secure"), "plain http: {set}");
    assert!(
        !set.contains(OPERATOR_TOKEN),
        "the cookie carries a session id, not the token: {set}"
    );
    let cookie = set.split(';').next().unwrap().to_string();
    let page = html(get_page(&app, "/ui", Some(&cookie)).await, 200).await;
    assert!(page.contains("alice"), "the operator's name is shown");
    // Logged in, the login form sends the operator on to the overview.
    let resp = get_page(&app, "/ui/login", Some(&cookie)).await;
    assert_eq!(resp.status(), 303);
    assert_eq!(resp.headers()[LOCATION], "/ui");

    // Behind a TLS-terminating proxy the cookie is Secure.
    let resp = no_redirects()
        .post(app.url("/ui/login"))
        .header("X-Forwarded-Proto", "https")
        .form(&[("token", OPERATOR_TOKEN)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    let set = resp.headers()[SET_COOKIE].to_str().unwrap();
    assert!(set.contains("; Secure"), "{set}");
}

/// The value of the `snowgate_ui` cookie in a `Cookie` pair.
fn value_of(cookie: &str) -> &str {
    cookie
        .strip_prefix("snowgate_ui=")
        .expect("the session cookie")
}

#[tokio::test]
async fn the_cookie_carries_a_random_session_id_and_never_the_token() {
    let app = spawn_app().await;
    let (a, b) = (login(&app).await, login(&app).await);
    let (a, b) = (value_of(&a), value_of(&b));
    assert_ne!(a, b, "every login is a new session");
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let token = OPERATOR_TOKEN.as_bytes();
    let encodings = [
        OPERATOR_TOKEN.to_string(),
        STANDARD.encode(token),
        STANDARD_NO_PAD.encode(token),
        URL_SAFE.encode(token),
        URL_SAFE_NO_PAD.encode(token),
        hex::encode(token),
        hex::encode_upper(token),
    ];
    for value in [a, b] {
        for e in &encodings {
            assert!(
                !value.contains(e.as_str()),
                "{value} carries the token as {e}"
            );
        }
        // 32 random bytes, hex: 256 bits.
        assert_eq!(value.len(), 64, "{value}");
        assert!(value.bytes().all(|c| c.is_ascii_hexdigit()), "{value}");
    }
}

#[tokio::test]
async fn a_session_is_refused_once_its_ttl_has_passed() {
    let app = spawn_app_with(sim_settings(), |s| {
        s.ui.session_ttl = Dur(Duration::from_secs(2))
    })
    .await;
    let gate = app.open("Deploy").await;
    let id = &gate.id.to_string();
    let resp = post_form(&app, "/ui/login", None, &[("token", OPERATOR_TOKEN)]).await;
    let set = resp.headers()[SET_COOKIE].to_str().unwrap().to_string();
    assert!(
        set.contains("Max-Age=2;") || set.ends_with("Max-Age=2"),
        "the TTL: {set}"
    );
    let cookie = set.split(';').next().unwrap().to_string();
    let csrf = csrf_of(&gate_page(&app, id, &cookie).await);

    tokio::time::sleep(Duration::from_millis(2500)).await;
    // The browser would have dropped the cookie; a replayed one is refused by the server.
    for path in ["/ui".to_string(), format!("/ui/gates/{id}")] {
        let resp = get_page(&app, &path, Some(&cookie)).await;
        assert_eq!(resp.status(), 303, "{path}");
        assert_eq!(resp.headers()[LOCATION], "/ui/login");
    }
    let resp = post_form(
        &app,
        &format!("/ui/gates/{id}/abort"),
        Some(&cookie),
        &[("csrf", &csrf), ("reason", "after expiry")],
    )
    .await;
    assert_eq!(resp.status(), 303);
    assert_eq!(resp.headers()[LOCATION], "/ui/login");
    assert_eq!(app.gate(id).await.state, GateState::Pending);
    // Logging in again works.
    let fresh = login(&app).await;
    html(get_page(&app, "/ui", Some(&fresh)).await, 200).await;
}

#[tokio::test]
async fn after_five_failed_logins_an_address_must_wait_even_with_the_right_token() {
    let app = spawn_app().await;
    // A successful login does not count.
    let cookie = login(&app).await;
    for i in 0..5 {
        let resp = post_form(&app, "/ui/login", None, &[("token", &format!("wrong-{i}"))]).await;
        assert!(html(resp, 401).await.contains("not valid"), "attempt {i}");
    }
    for token in ["wrong-5", OPERATOR_TOKEN] {
        let resp = post_form(&app, "/ui/login", None, &[("token", token)]).await;
        assert!(resp.headers().get(SET_COOKIE).is_none());
        let wait: u64 = resp.headers()[RETRY_AFTER]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=60).contains(&wait), "Retry-After: {wait}");
        let page = html(resp, 429).await;
        assert!(page.contains("Too many failed logins"), "{page}");
        assert!(page.contains("wait"), "{page}");
        assert!(page.contains("action=\"/ui/login\""), "the form again");
    }
    // A session opened before stays open.
    html(get_page(&app, "/ui", Some(&cookie)).await, 200).await;
}

type Form<'a> = &'a [(&'a str, &'a str)];

#[tokio::test]
async fn a_wrong_or_pipeline_token_re_shows_the_login_form_with_an_error() {
    let app = spawn_app().await;
    let cases: [(Form, u16, &str); 4] = [
        (&[("token", "not-a-token")], 401, "not valid"),
        (&[("token", "")], 401, "not valid"),
        (&[], 401, "not valid"),
        (&[("token", PIPELINE_TOKEN)], 403, "pipeline token"),
    ];
    for (form, status, says) in cases {
        let resp = post_form(&app, "/ui/login", None, form).await;
        assert!(resp.headers().get(SET_COOKIE).is_none(), "{form:?}");
        let page = html(resp, status).await;
        assert!(page.contains(says), "{form:?}: {page}");
        assert!(page.contains("action=\"/ui/login\""), "the form again");
    }
}

#[tokio::test]
async fn the_overview_lists_a_pending_gate_with_its_links() {
    let app = spawn_app().await;
    let gate = app.open("Deploy").await;
    let id = &gate.id.to_string();
    app.until_state(id, GateState::Pending).await;
    let gate = until_change_known(&app, id).await;
    let cr = change_request(&gate);
    let cookie = login(&app).await;
    let page = html(get_page(&app, "/ui", Some(&cookie)).await, 200).await;
    let row_start = page
        .find(&format!("<tr id=\"gate-{id}\">"))
        .expect("a row for the gate");
    let row = &page[row_start..row_start + page[row_start..].find("</tr>").unwrap()];
    for part in [
        "pending",
        "href=\"https://ci.example.com/job/shop/job/app/\"",
        ">app</a>",
        "href=\"https://ci.example.com/job/shop/job/app/42/\"",
        "#42",
        &format!("href=\"/ui/gates/{id}\">Deploy</a>"),
        &format!(
            "href=\"{}\" rel=\"noopener noreferrer\">{}</a>",
            escape_html(cr.url.as_deref().unwrap()),
            escape_html(cr.number.as_deref().unwrap())
        ),
        &escape_html(&gate.message),
    ] {
        assert!(row.contains(part), "{part} missing in {row}");
    }
    assert!(page.contains("No decisions yet"), "{page}");
}

/// The gate once the simulator's "change request created" notice has given it a CR number.
pub(crate) async fn until_change_known(app: &TestApp, id: &str) -> GateView {
    for _ in 0..200 {
        let g = app.gate(id).await;
        if g.change_request
            .as_ref()
            .is_some_and(|c| c.number.is_some() && c.url.is_some())
        {
            return g;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "gate {id} never learned its change request: {:?}",
        app.gate(id).await
    );
}

/// What the page must show for `s` (the same five replacements as the server's escape).
fn escape_html(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

#[tokio::test]
async fn values_from_requests_are_escaped_on_the_page() {
    let app = spawn_app().await;
    let stage = "<script>alert('x')</script>";
    let resp = app.open_gate(&gate_body(stage)).await;
    assert_eq!(resp.status(), 201);
    let gate: GateView = resp.json().await.unwrap();
    let id = &gate.id.to_string();
    let cookie = login(&app).await;
    for page in [
        html(get_page(&app, "/ui", Some(&cookie)).await, 200).await,
        gate_page(&app, id, &cookie).await,
    ] {
        assert!(!page.contains("<script"), "{page}");
        assert!(page.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"));
    }
}

#[tokio::test]
async fn aborting_without_a_reason_is_refused_and_the_gate_stays_pending() {
    let app = spawn_app().await;
    let gate = app.open("Deploy").await;
    let id = &gate.id.to_string();
    app.until_state(id, GateState::Pending).await;
    let cookie = login(&app).await;
    let page = gate_page(&app, id, &cookie).await;
    assert!(page.contains("id=\"abort-reason\" name=\"reason\" required"));
    let csrf = csrf_of(&page);
    let cases: [&[(&str, &str)]; 3] = [
        &[("csrf", &csrf)],
        &[("csrf", &csrf), ("reason", "")],
        &[("csrf", &csrf), ("reason", "   ")],
    ];
    for form in cases {
        let resp = post_form(&app, &format!("/ui/gates/{id}/abort"), Some(&cookie), form).await;
        let page = html(resp, 400).await;
        assert!(page.contains("A reason is required"), "{page}");
    }
    let resp = post_form(
        &app,
        &format!("/ui/gates/{id}/resume"),
        Some(&cookie),
        &[("csrf", &csrf), ("reason", &"x".repeat(1001))],
    )
    .await;
    assert!(html(resp, 400).await.contains("at most 1000"));
    let g = app.gate(id).await;
    assert_eq!(g.state, GateState::Pending);
    assert_eq!(g.proceed, None);
}

#[tokio::test]
async fn aborting_with_a_reason_stops_the_stage_and_is_logged() {
    let app = spawn_app().await;
    let gate = app.open("Deploy").await;
    let id = &gate.id.to_string();
    app.until_state(id, GateState::Pending).await;
    let cookie = login(&app).await;
    let csrf = csrf_of(&gate_page(&app, id, &cookie).await);
    let resp = post_form(
        &app,
        &format!("/ui/gates/{id}/abort"),
        Some(&cookie),
        &[("csrf", &csrf), ("reason", "wrong artifact")],
    )
    .await;
    assert_eq!(resp.status(), 303);
    assert_eq!(
        resp.headers()[LOCATION],
        format!("/ui/gates/{id}?done=aborted").as_str()
    );
    // Exactly what the operator API records.
    let g = app.gate(id).await;
    assert_eq!(g.state, GateState::Aborted);
    assert_eq!(g.proceed, Some(false));
    assert_eq!(g.decided_by.as_deref(), Some("operator:alice"));
    assert_eq!(g.message, "aborted by alice: wrong artifact");
    let last = app.events(id).await.last().unwrap().clone();
    assert_eq!(last.kind, "aborted");
    assert_eq!(last.actor, "operator:alice");
    assert_eq!(last.from_state, Some(GateState::Pending));
    assert_eq!(last.to_state, Some(GateState::Aborted));

    let page = html(
        get_page(&app, &format!("/ui/gates/{id}?done=aborted"), Some(&cookie)).await,
        200,
    )
    .await;
    assert!(page.contains("The gate is now aborted."), "{page}");
    assert!(page.contains("operator:alice"), "the event log: {page}");
    assert!(page.contains("pending → aborted"), "{page}");
    assert!(!page.contains("id=\"abort-form\""), "no forms once decided");
    let overview = html(get_page(&app, "/ui", Some(&cookie)).await, 200).await;
    let recent = &overview[overview.find("id=\"recent-decisions\"").unwrap()..];
    assert!(recent.contains(&format!("/ui/gates/{id}")), "{recent}");
    assert!(recent.contains("aborted by alice: wrong artifact"));
    assert!(
        !overview[..overview.find("id=\"recent-decisions\"").unwrap()]
            .contains(&format!("/ui/gates/{id}"))
    );

    // A second decision conflicts; the page says why.
    let resp = post_form(
        &app,
        &format!("/ui/gates/{id}/resume"),
        Some(&cookie),
        &[("csrf", &csrf), ("reason", "too late")],
    )
    .await;
    let page = html(resp, 409).await;
    assert!(
        page.contains("The gate is already aborted; it cannot be resumed."),
        "{page}"
    );
    assert_eq!(app.gate(id).await.state, GateState::Aborted);
}

#[tokio::test]
async fn resuming_with_a_reason_lets_the_stage_proceed() {
    let app = spawn_app().await;
    let gate = app.open("Deploy").await;
    let id = &gate.id.to_string();
    let cookie = login(&app).await;
    let csrf = csrf_of(&gate_page(&app, id, &cookie).await);
    let resp = post_form(
        &app,
        &format!("/ui/gates/{id}/resume"),
        Some(&cookie),
        &[("csrf", &csrf), ("reason", "CAB approved by phone")],
    )
    .await;
    assert_eq!(resp.status(), 303);
    let g = app.gate(id).await;
    assert_eq!(g.state, GateState::Resumed);
    assert_eq!(g.proceed, Some(true));
    assert_eq!(g.decided_by.as_deref(), Some("operator:alice"));
}

#[tokio::test]
async fn a_post_without_the_sessions_csrf_token_is_forbidden() {
    let app = spawn_app().await;
    let gate = app.open("Deploy").await;
    let id = &gate.id.to_string();
    let cookie = login(&app).await;
    let other_login = login(&app).await;
    let others_csrf = csrf_of(&gate_page(&app, id, &other_login).await);
    let cases: [&[(&str, &str)]; 3] = [
        &[("reason", "forged")],
        &[("reason", "forged"), ("csrf", "")],
        &[("reason", "forged"), ("csrf", &others_csrf)],
    ];
    for form in cases {
        for action in ["abort", "resume"] {
            let resp = post_form(
                &app,
                &format!("/ui/gates/{id}/{action}"),
                Some(&cookie),
                form,
            )
            .await;
            let page = html(resp, 403).await;
            assert!(page.contains("CSRF"), "{page}");
        }
    }
    let resp = post_form(&app, "/ui/logout", Some(&cookie), &[]).await;
    assert_eq!(resp.status(), 403, "logout needs the token too");
    assert_eq!(app.gate(id).await.state, GateState::Pending);
}

#[tokio::test]
async fn logging_out_ends_the_session_on_the_server_and_clears_the_cookie() {
    let app = spawn_app().await;
    let gate = app.open("Deploy").await;
    let id = &gate.id.to_string();
    let cookie = login(&app).await;
    let other = login(&app).await;
    let csrf = csrf_of(&gate_page(&app, id, &cookie).await);
    let resp = post_form(&app, "/ui/logout", Some(&cookie), &[("csrf", &csrf)]).await;
    assert_eq!(resp.status(), 303);
    assert_eq!(resp.headers()[LOCATION], "/ui/login");
    let set = resp.headers()[SET_COOKIE].to_str().unwrap();
    assert!(set.starts_with("snowgate_ui=;"), "{set}");
    assert!(set.contains("Max-Age=0"), "{set}");

    // The old cookie, replayed, opens nothing: not a page, not a form.
    for path in ["/ui".to_string(), format!("/ui/gates/{id}")] {
        let resp = get_page(&app, &path, Some(&cookie)).await;
        assert_eq!(resp.status(), 303, "{path}");
        assert_eq!(resp.headers()[LOCATION], "/ui/login");
    }
    let resp = post_form(
        &app,
        &format!("/ui/gates/{id}/abort"),
        Some(&cookie),
        &[("csrf", &csrf), ("reason", "after logout")],
    )
    .await;
    assert_eq!(resp.status(), 303);
    assert_eq!(resp.headers()[LOCATION], "/ui/login");
    assert_eq!(app.gate(id).await.state, GateState::Pending);
    // The login form is shown again, not skipped.
    html(get_page(&app, "/ui/login", Some(&cookie)).await, 200).await;
    // Another session of the same operator is not affected.
    html(get_page(&app, "/ui", Some(&other)).await, 200).await;
}

#[tokio::test]
async fn with_auth_disabled_the_page_works_without_login() {
    let app = spawn_app_with(sim_settings(), |s| s.auth.disabled = true).await;
    let gate = app.open("Deploy").await;
    let id = &gate.id.to_string();
    let page = html(get_page(&app, "/ui", None).await, 200).await;
    assert!(page.contains(&format!("/ui/gates/{id}")));
    assert!(!page.contains("Log out"));
    let csrf = csrf_of(&gate_page(&app, id, "").await);
    let resp = post_form(
        &app,
        &format!("/ui/gates/{id}/abort"),
        None,
        &[("reason", "no auth")],
    )
    .await;
    assert_eq!(resp.status(), 403, "the CSRF check still applies");
    let resp = post_form(
        &app,
        &format!("/ui/gates/{id}/abort"),
        None,
        &[("reason", "no auth"), ("csrf", &csrf)],
    )
    .await;
    assert_eq!(resp.status(), 303);
    assert_eq!(
        app.gate(id).await.decided_by.as_deref(),
        Some("operator:anonymous")
    );
}

#[tokio::test]
async fn an_unknown_gate_is_a_404_page() {
    let app = spawn_app().await;
    let cookie = login(&app).await;
    for path in [
        "/ui/gates/not-a-uuid".to_string(),
        "/ui/gates/00000000-0000-4000-8000-000000000000".to_string(),
    ] {
        let page = html(get_page(&app, &path, Some(&cookie)).await, 404).await;
        assert!(page.contains("There is no gate"), "{page}");
    }
}

/// The text log's colour codes (`ESC [ … m`) cut out.
fn without_ansi_colours(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The real binary with a debug-level log file: failed logins are logged with the client's
/// address and nothing of what was typed; a restart ends every session.
#[tokio::test]
async fn failed_logins_are_logged_without_the_token_and_a_restart_ends_every_session() {
    let sim_cfg = servicenow_sim::SimSettings::default();
    let sim = servicenow_sim::start(sim_cfg.clone()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = write_config(dir.path(), port, &sim, &sim_cfg, "200ms");
    let mut yaml = std::fs::read_to_string(&config).unwrap();
    yaml.push_str("log:\n  level: debug\n");
    std::fs::write(&config, &yaml).unwrap();
    let log = dir.path().join("snowgate.log");
    let address = format!("http://127.0.0.1:{port}");
    let mut bin = start_binary(&config, &address, &log).await;
    let post = |form: Vec<(&'static str, String)>| {
        let url = format!("{address}/ui/login");
        async move { no_redirects().post(url).form(&form).send().await.unwrap() }
    };

    let resp = post(vec![("token", OPERATOR_TOKEN.to_string())]).await;
    assert_eq!(resp.status(), 303);
    let set = resp.headers()[SET_COOKIE].to_str().unwrap();
    let cookie = set.split(';').next().unwrap().to_string();
    let guesses: Vec<String> = (0..6)
        .map(|i| format!("guess-q7Zx{i}-almost-a-token"))
        .collect();
    let mut statuses = Vec::new();
    for g in guesses.iter().chain([&PIPELINE_TOKEN.to_string()]) {
        statuses.push(post(vec![("token", g.clone())]).await.status().as_u16());
    }
    assert_eq!(statuses, [401, 401, 401, 401, 401, 429, 429]);
    let page = |cookie: String| {
        let url = format!("{address}/ui");
        async move {
            no_redirects()
                .get(url)
                .header(COOKIE, cookie)
                .send()
                .await
                .unwrap()
        }
    };
    assert_eq!(page(cookie.clone()).await.status(), 200);

    bin.child.kill().unwrap();
    bin.child.wait().unwrap();
    let mut bin = start_binary(&config, &address, &log).await;
    let resp = page(cookie.clone()).await;
    assert_eq!(resp.status(), 303, "a restart ends the session");
    assert_eq!(resp.headers()[LOCATION], "/ui/login");
    bin.child.kill().unwrap();
    bin.child.wait().unwrap();

    let logged = without_ansi_colours(&std::fs::read_to_string(&log).unwrap());
    let failed: Vec<&str> = logged
        .lines()
        .filter(|l| l.contains("status page login failed"))
        .collect();
    assert_eq!(failed.len(), 5, "one warning per failure:\n{logged}");
    for l in &failed {
        assert!(l.contains("WARN"), "{l}");
        assert!(l.contains("client=127.0.0.1"), "{l}");
    }
    assert!(
        logged.contains("too many failed logins"),
        "the refusals are logged too:\n{logged}"
    );
    // Not a guess, not a prefix of one, not a token, not the session id.
    for secret in [
        "guess-q7Zx",
        &PIPELINE_TOKEN[..12],
        &OPERATOR_TOKEN[..12],
        value_of(&cookie),
    ] {
        assert!(
            !logged.contains(secret),
            "{secret} is in the log:\n{logged}"
        );
    }
}

#[tokio::test]
async fn in_a_real_browser_an_operator_logs_in_sees_the_pending_gate_and_aborts_it() {
    let app = spawn_app().await;
    let gate = app.open("Deploy to production").await;
    let id = gate.id.to_string();
    app.until_state(&id, GateState::Pending).await;
    let mut browser = chromium::Browser::launch().await;
    let b = &mut browser.page;
    let js = |s: &str| serde_json::to_string(s).unwrap();

    // Not logged in: the page sends the browser to the login form.
    b.navigate(&app.url("/ui")).await;
    let at_login = b
        .wait_for("location.pathname === '/ui/login' && !!document.querySelector('#login-form')")
        .await;
    // Fill in the token and press the button, as a person would.
    let typed = b
        .eval(&format!(
            "document.querySelector('#token').value = {}; \
             document.querySelector('#login-form button[type=submit]').click(); true",
            js(OPERATOR_TOKEN)
        ))
        .await;
    let listed = b
        .wait_for(&format!(
            "location.pathname === '/ui' && \
             !!document.querySelector('#open-gates a[href=\"/ui/gates/{id}\"]')"
        ))
        .await;
    let row = b
        .eval(&format!(
            "document.querySelector('#gate-{id}') && document.querySelector('#gate-{id}').innerText"
        ))
        .await;
    // HttpOnly: the page's own scripts cannot read the session cookie.
    let cookie_seen_by_js = b.eval("document.cookie").await;
    let tail = browser.log_tail();
    let b = &mut browser.page;
    assert!(at_login, "never reached the login form:\n{tail}");
    assert_eq!(typed, Ok(json!(true)));
    assert!(listed, "the overview did not list the gate:\n{tail}");
    let row = row.unwrap();
    let row = row.as_str().unwrap_or_default();
    assert!(row.contains("Deploy to production"), "{row}");
    assert!(row.contains("pending"), "{row}");
    assert_eq!(cookie_seen_by_js, Ok(json!("")));

    // Follow the gate's link to its page.
    b.eval(&format!(
        "document.querySelector('#open-gates a[href=\"/ui/gates/{id}\"]').click(); true"
    ))
    .await
    .unwrap();
    assert!(
        b.wait_for(&format!(
            "location.pathname === '/ui/gates/{id}' && !!document.querySelector('#abort-form')"
        ))
        .await,
        "the gate page did not open"
    );

    // Without a reason the browser itself refuses to submit (the `required` attribute).
    let missing = b
        .eval(
            "document.querySelector('#abort-form button[type=submit]').click(); \
             document.querySelector('#abort-reason').validity.valueMissing",
        )
        .await;
    assert_eq!(missing, Ok(json!(true)));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(app.gate(&id).await.state, GateState::Pending);

    // With a reason the abort goes through and the page shows the new state.
    b.eval(&format!(
        "document.querySelector('#abort-reason').value = {}; \
         document.querySelector('#abort-form button[type=submit]').click(); true",
        js("wrong artifact, seen in the browser")
    ))
    .await
    .unwrap();
    let shown = b
        .wait_for(&format!(
            "location.pathname === '/ui/gates/{id}' && location.search === '?done=aborted' && \
             document.querySelector('#notice').innerText.includes('aborted') && \
             document.querySelector('#events').innerText.includes('operator:alice')"
        ))
        .await;
    let text = b.eval("document.body.innerText").await;
    assert!(shown, "the gate page did not show the abort: {text:?}");
    let g = app.gate(&id).await;
    assert_eq!(g.state, GateState::Aborted);
    assert_eq!(g.proceed, Some(false));
    assert_eq!(g.decided_by.as_deref(), Some("operator:alice"));
    assert_eq!(
        g.message,
        "aborted by alice: wrong artifact, seen in the browser"
    );
}

#[tokio::test]
async fn in_a_real_browser_the_status_page_shows_an_active_freeze_and_the_gate_it_holds() {
    let app = spawn_app().await;
    let now = chrono::Utc::now();
    let freeze = json!({"name": "Year-end freeze", "reason": "no production changes",
        "start": (now - chrono::Duration::minutes(5)).to_rfc3339(),
        "end": (now + chrono::Duration::hours(2)).to_rfc3339(), "jobs": ["shop/*"]});
    let resp = app
        .post_json("/api/v1/freezes", Some(OPERATOR_TOKEN), &freeze)
        .await;
    assert_eq!(resp.status(), 201);
    let f: snowgate::api::FreezeView = resp.json().await.unwrap();
    let gate = app.open("Deploy").await;
    let number = app.change_of("Deploy");
    assert_eq!(app.sim.approve(&number, "ok").await.unwrap(), Some(200));
    let id = gate.id.to_string();
    let cookie = login(&app).await;
    let mut browser = chromium::Browser::launch().await;
    browser.page.navigate(&app.url("/ui/login")).await;
    let at_login = browser
        .page
        .wait_for("location.pathname === '/ui/login' && !!document.querySelector('#token')")
        .await;
    assert!(at_login, "the login form did not load");
    // The session cookie is set through the login form, as a person would.
    let typed = browser
        .page
        .eval(&format!(
            "document.querySelector('#token').value = {}; \
             document.querySelector('#login-form button[type=submit]').click(); true",
            serde_json::to_string(OPERATOR_TOKEN).unwrap()
        ))
        .await;
    assert_eq!(typed, Ok(json!(true)));
    let fid = &f.freeze.id;
    let shown = browser
        .page
        .wait_for(&format!(
            "location.pathname === '/ui' && !!document.querySelector('#freeze-{fid}.frozen') && \
             document.querySelector('#freeze-{fid}').innerText.includes('Year-end freeze') && \
             document.querySelector('#freeze-{fid}').innerText.includes('active') && \
             !!document.querySelector('#freeze-{fid} a.held[href=\"/ui/gates/{id}\"]')"
        ))
        .await;
    let text = browser.page.eval("document.body.innerText").await;
    assert!(
        shown,
        "the freeze and its held gate are not shown: {text:?}"
    );
    // The same over HTTP, for the record: the held gate's message names the freeze.
    let page = html(get_page(&app, "/ui", Some(&cookie)).await, 200).await;
    assert!(page.contains("Year-end freeze"), "{page}");
    assert_eq!(app.gate(&id).await.state, GateState::Pending);
}
