//! The status page's charts, filters, timeline, evidence and conflict-check sections: over
//! HTTP after real decisions in the simulator, in a real headless Chromium (sizes of the
//! drawn charts, a screenshot), and the store query behind the charts on both backends.
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use serde_json::json;
use servicenow_sim::{ChgConflict, SimSettings};
use snowgate::configuration::ConflictPolicy;
use snowgate::domain::gate::Actor;
use snowgate::domain::{CallbackToken, GateSpec, GateState};
use snowgate::store::{GateStore, PgOptions, PostgresStore, SqliteStore, Transition};

use crate::change::{change_app_with, open_change};
use crate::chromium;
use crate::helpers::*;
use crate::pg::PgServer;
use crate::ui::{gate_page, get_page, html, login, until_change_known};

/// The markup of the element that starts with `<tag id="id"` up to its closing tag.
fn element<'a>(page: &'a str, tag: &str, id: &str) -> &'a str {
    let start = page
        .find(&format!("<{tag} id=\"{id}\""))
        .unwrap_or_else(|| panic!("no <{tag} id={id}> in {page}"));
    let end = start + page[start..].find(&format!("</{tag}>")).unwrap();
    &page[start..end]
}

/// Two gates of today decided in the simulator: `Deploy` approved, `Smoke` rejected.
async fn approved_and_rejected(app: &TestApp) -> (String, String) {
    let (a, b) = (app.open("Deploy").await, app.open("Smoke").await);
    let (a, b) = (a.id.to_string(), b.id.to_string());
    app.until_state(&a, GateState::Pending).await;
    app.until_state(&b, GateState::Pending).await;
    let status = app.sim.approve(&app.change_of("Deploy"), "CAB ok").await;
    assert_eq!(status.unwrap(), Some(200));
    let status = app.sim.reject(&app.change_of("Smoke"), "not now").await;
    assert_eq!(status.unwrap(), Some(200));
    app.until_state(&a, GateState::Approved).await;
    app.until_state(&b, GateState::Rejected).await;
    (a, b)
}

#[tokio::test]
async fn the_overview_charts_today_s_approved_and_rejected_decisions() {
    let app = spawn_app().await;
    let cookie = login(&app).await;
    let before = html(get_page(&app, "/ui", Some(&cookie)).await, 200).await;
    assert!(
        before.contains("id=\"decision-time-chart-empty\""),
        "{before}"
    );
    let (a, b) = approved_and_rejected(&app).await;
    // The UTC days the two were decided on: one, unless the test ran across midnight.
    let mut days = Vec::new();
    for id in [&a, &b] {
        let decided = app.gate(id).await.decided_at.expect("decided");
        days.push(decided[..10].to_string());
    }
    days.dedup();
    let page = html(get_page(&app, "/ui", Some(&cookie)).await, 200).await;
    let times = element(&page, "svg", "decision-time-chart");
    for part in [
        "role=\"img\"",
        "viewBox=\"0 0 720 260\"",
        "width=\"720\" height=\"260\"",
        "<title>Time to decision per day over the last 14 days",
        ">median</text>",
        ">90th percentile</text>",
    ] {
        assert!(times.contains(part), "{part} missing in {times}");
    }
    // A point per day with decisions on each line.
    assert_eq!(times.matches("class=\"point median\"").count(), days.len());
    assert_eq!(times.matches("class=\"point p90\"").count(), days.len());
    if days.len() == 1 {
        // One day: 13 days of gaps, so no line joins two points.
        assert!(times.contains("(2 decisions)</title>"), "{times}");
        assert!(!times.contains("<polyline"), "{times}");
    }
    assert!(!times.contains("-empty"));
    let outcomes = element(&page, "svg", "outcome-chart");
    for part in [
        "role=\"img\"",
        "viewBox=\"0 0 720 308\"",
        "<title>Decisions per day by outcome",
        "class=\"bar approved\"",
        "class=\"bar rejected\"",
        ": 1 approved</title>",
        ": 1 rejected</title>",
        ">approved 1</text>",
        ">rejected 1</text>",
        ">aborted 0</text>",
    ] {
        assert!(outcomes.contains(part), "{part} missing in {outcomes}");
    }
    if days.len() == 1 {
        assert!(outcomes.contains("text-anchor=\"middle\" font-size=\"11\">2</text>"));
    }
    assert!(!page.contains("<script"), "{page}");
}

#[tokio::test]
async fn the_overview_filters_by_state_job_and_a_search_that_matches_the_cr_number() {
    let app = spawn_app().await;
    let (deploy, smoke) = (app.open("Deploy").await, app.open("Smoke").await);
    let (deploy, smoke) = (deploy.id.to_string(), smoke.id.to_string());
    app.until_state(&deploy, GateState::Pending).await;
    let g = until_change_known(&app, &deploy).await;
    until_change_known(&app, &smoke).await;
    let number = cr_number(&g).unwrap().to_string();
    let cookie = login(&app).await;
    let shown = |page: &str, id: &str| page.contains(&format!("<tr id=\"gate-{id}\">"));
    let get = |q: String| {
        let (app, cookie) = (&app, &cookie);
        async move { html(get_page(app, &format!("/ui{q}"), Some(cookie)).await, 200).await }
    };

    let all = get(String::new()).await;
    assert!(shown(&all, &deploy) && shown(&all, &smoke), "{all}");
    // A search for the CR number, in lower case, finds only its gate.
    let page = get(format!("?state=&job=&q={}", number.to_lowercase())).await;
    assert!(shown(&page, &deploy) && !shown(&page, &smoke), "{page}");
    assert!(
        page.contains(&format!("value=\"{}\"", number.to_lowercase())),
        "the search stays in the form: {page}"
    );
    assert!(page.contains("id=\"clear-filters\""));

    // Decided, the smoke gate leaves `state=pending` and is what `state=rejected` lists.
    let status = app.sim.reject(&app.change_of("Smoke"), "no").await;
    assert_eq!(status.unwrap(), Some(200));
    app.until_state(&smoke, GateState::Rejected).await;
    let page = get("?state=pending".into()).await;
    assert!(shown(&page, &deploy) && !shown(&page, &smoke), "{page}");
    assert!(
        page.contains("<option value=\"pending\" selected>"),
        "{page}"
    );
    let page = get("?state=rejected".into()).await;
    assert!(!shown(&page, &deploy) && shown(&page, &smoke), "{page}");
    let recent = element(&page, "table", "recent-decisions");
    assert!(recent.contains(&format!("/ui/gates/{smoke}")), "{recent}");

    // The job filter matches the job's URL or name, ignoring case.
    let page = get("?job=SHOP%2Fjob%2FAPP".into()).await;
    assert!(shown(&page, &deploy) && shown(&page, &smoke), "{page}");
    let page = get("?job=elsewhere&q=".into()).await;
    assert!(!shown(&page, &deploy) && !shown(&page, &smoke), "{page}");
    assert!(page.contains("No stage is waiting."));
    assert!(page.contains("value=\"elsewhere\""));
    // Text typed into the form comes back escaped.
    let page = get("?q=%22%3E%3Cscript%3E".into()).await;
    assert!(!page.contains("<script"), "{page}");
    assert!(
        page.contains("value=\"&quot;&gt;&lt;script&gt;\""),
        "{page}"
    );
}

#[tokio::test]
async fn bad_filter_values_are_a_400_page_naming_the_parameter() {
    let app = spawn_app().await;
    let cookie = login(&app).await;
    let long = "x".repeat(501);
    for (query, named) in [
        ("state=bogus".to_string(), "`state`"),
        ("state=pending&state=approved".to_string(), "`state`"),
        (format!("q={long}"), "`q`"),
        (format!("job={long}"), "`job`"),
        ("colour=red".to_string(), "`colour`"),
    ] {
        let page = html(
            get_page(&app, &format!("/ui?{query}"), Some(&cookie)).await,
            400,
        )
        .await;
        assert!(page.contains(named), "{query}: {page}");
        assert!(page.contains("The query parameter"), "{query}: {page}");
    }
}

#[tokio::test]
async fn the_gate_page_shows_a_timeline_point_for_every_event() {
    let app = spawn_app().await;
    let gate = app.open("Deploy").await;
    let id = gate.id.to_string();
    app.until_state(&id, GateState::Pending).await;
    let cookie = login(&app).await;
    let open = gate_page(&app, &id, &cookie).await;
    assert!(
        element(&open, "svg", "timeline").contains("now (still open)"),
        "{open}"
    );
    let status = app.sim.approve(&app.change_of("Deploy"), "ok").await;
    assert_eq!(status.unwrap(), Some(200));
    app.until_state(&id, GateState::Approved).await;
    // The decision's acknowledgement is the gate's last event: the timeline is complete.
    until_event(&app, &id, "acknowledge_done", "").await;
    let events = app.events(&id).await;
    let page = gate_page(&app, &id, &cookie).await;
    let svg = element(&page, "svg", "timeline");
    for part in [
        "role=\"img\"",
        "viewBox=\"0 0 900 190\"",
        "<title>Timeline of the gate: opened",
        "decided approved",
    ] {
        assert!(svg.contains(part), "{part} missing in {svg}");
    }
    assert_eq!(
        svg.matches("<g class=\"event\">").count(),
        events.len(),
        "{svg}"
    );
    for e in &events {
        assert!(
            svg.contains(&format!("<title>{} at ", e.kind)),
            "{} missing in {svg}",
            e.kind
        );
        assert!(
            svg.contains(&format!(">{}</text>", e.kind)),
            "label {} missing",
            e.kind
        );
    }
    assert!(events.iter().any(|e| e.kind == "opened"));
    // A gate without evidence or conflict checks says so in both sections.
    assert!(element(&page, "table", "evidence").contains("No evidence was sent"));
    assert!(element(&page, "table", "conflicts").contains("No conflict check reported"));
}

/// Until gate `id` has an event of `kind` whose message contains `part`.
async fn until_event(app: &TestApp, id: &str, kind: &str, part: &str) {
    for _ in 0..200 {
        let events = app.events(id).await;
        if events
            .iter()
            .any(|e| e.kind == kind && e.message.contains(part))
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no {kind} event: {:?}", app.events(id).await);
}

#[tokio::test]
async fn the_gate_page_lists_evidence_with_its_size_digest_and_attachment_sys_id() {
    let app = change_app_with(SimSettings::default(), |_| {}).await;
    let g = open_change(&app, "Deploy", json!({})).await;
    let id = g.id.to_string();
    let path = format!("/api/v1/gates/{id}/evidence");
    let file = json!({"name": "junit.xml", "contentType": "application/xml",
                      "content": "<testsuite tests=\"3\"/>\n"});
    let link = json!({"name": "sonar", "url": "https://sonar.example.com/dashboard?id=shop"});
    for body in [&file, &link] {
        let resp = app.post_json(&path, Some(PIPELINE_TOKEN), body).await;
        assert_eq!(resp.status(), 202);
    }
    until_event(&app, &id, "attach_done", "junit.xml").await;
    until_event(&app, &id, "change_update_done", "evidence link sonar").await;
    let attached = app.sim.attachments();
    assert_eq!(attached.len(), 1);
    let cookie = login(&app).await;
    let page = gate_page(&app, &id, &cookie).await;
    let table = element(&page, "table", "evidence");
    assert_eq!(
        table.matches("<tr class=\"evidence\">").count(),
        2,
        "{table}"
    );
    for part in [
        "junit.xml",
        "23 bytes of application/xml",
        "23 B",
        &format!("<code>{}</code>", &attached[0].sha256[..12]),
        "attached",
        &attached[0].sys_id,
        "sonar",
        "link https://sonar.example.com/dashboard?id=shop",
        "sent",
    ] {
        assert!(table.contains(part), "{part} missing in {table}");
    }
}

#[tokio::test]
async fn the_gate_page_shows_the_conflicts_servicenow_reported() {
    let app = change_app_with(SimSettings::default(), |s| {
        s.change.conflicts = ConflictPolicy::Fail;
        s.change.fields.insert("cmdb_ci".into(), "web-01".into());
    })
    .await;
    let other = open_change(&app, "Other", json!({})).await;
    let other = cr_number(&other).unwrap().to_string();
    let g = open_change(&app, "Deploy", json!({})).await;
    let (id, number) = (g.id.to_string(), cr_number(&g).unwrap().to_string());
    let conflict = ChgConflict {
        change_number: other.clone(),
        kind: "not_in_maintenance_window".into(),
        kind_display: "Not In Maintenance Window".into(),
        schedule: None,
    };
    app.sim.chg_add_conflict(&number, conflict).unwrap();
    app.sim
        .chg_set_state(&number, "Implement", None, None)
        .unwrap();
    app.until_state(&id, GateState::Failed).await;
    let cookie = login(&app).await;
    let page = gate_page(&app, &id, &cookie).await;
    let table = element(&page, "table", "conflicts");
    for part in [
        "conflicts: the gate failed",
        &format!("<span class=\"state conflict-item\">{other} (Not In Maintenance Window)</span>"),
        "change.conflicts: fail",
    ] {
        assert!(table.contains(part), "{part} missing in {table}");
    }
}

fn spec(stage: &str) -> GateSpec {
    GateSpec::parse(&gate_body(stage)).unwrap()
}

/// The chart query's contract: decided gates only, since the cutoff, the newest first,
/// at most `limit`.
async fn decision_times_contract(store: Arc<dyn GateStore>) {
    let start = chrono::Utc::now() - chrono::Duration::seconds(1);
    let mut ids = Vec::new();
    for stage in ["A", "B", "C"] {
        let opened = store
            .open_gate(spec(stage), CallbackToken::generate(), Duration::ZERO)
            .await
            .unwrap();
        ids.push(opened.gate.id);
    }
    for (id, to) in [(ids[0], GateState::Approved), (ids[1], GateState::Rejected)] {
        let t = Transition {
            gate_id: id,
            to,
            proceed: Some(to == GateState::Approved),
            message: format!("test {to}"),
            actor: Actor::ServiceNow,
            event_kind: "decided",
            change_request: None,
            outbox: Vec::new(),
            timers: Default::default(),
        };
        store.transition(t, |_, _| Vec::new()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let times = store.decision_times(start, 100).await.unwrap();
    let states: Vec<GateState> = times.iter().map(|t| t.state).collect();
    assert_eq!(states, [GateState::Rejected, GateState::Approved]);
    for t in &times {
        assert!(
            t.created_at >= start - chrono::Duration::seconds(1),
            "{t:?}"
        );
        assert!(t.decided_at >= t.created_at, "{t:?}");
    }
    assert_eq!(store.decision_times(start, 1).await.unwrap().len(), 1);
    let later = chrono::Utc::now() + chrono::Duration::seconds(5);
    assert!(store.decision_times(later, 100).await.unwrap().is_empty());
}

#[tokio::test]
async fn the_sqlite_store_reads_decision_times_since_a_cutoff() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("s.db")).unwrap();
    decision_times_contract(Arc::new(store)).await;
}

#[tokio::test]
async fn the_postgres_store_reads_decision_times_since_a_cutoff() {
    let pg = PgServer::start();
    pg.database("charts").await;
    let store = PostgresStore::connect(PgOptions {
        url: pg.url("charts"),
        password: None,
        pool_size: 2,
        connect_timeout: Duration::from_secs(5),
        statement_timeout: Duration::from_secs(5),
        ca_file: None,
    })
    .await
    .unwrap();
    decision_times_contract(Arc::new(store)).await;
}

/// A PNG's width and height, after checking its signature and the CRC-32 of every chunk
/// through to `IEND` (RFC 2083: chunk length, type, data, CRC over type and data).
fn png_size(bytes: &[u8]) -> (u32, u32) {
    const SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";
    assert!(bytes.starts_with(SIGNATURE), "not a PNG");
    let (mut at, mut size, mut idat) = (SIGNATURE.len(), None, 0);
    loop {
        let len = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        let body = &bytes[at + 4..at + 8 + len];
        let crc = u32::from_be_bytes(bytes[at + 8 + len..at + 12 + len].try_into().unwrap());
        assert_eq!(crc32(body), crc, "chunk at {at}");
        let data = &body[4..];
        match &body[..4] {
            b"IHDR" => {
                let word = |i: usize| u32::from_be_bytes(data[i..i + 4].try_into().unwrap());
                size = Some((word(0), word(4)));
            }
            b"IDAT" => idat += len,
            b"IEND" => break,
            _ => {}
        }
        at += 12 + len;
    }
    assert!(idat > 0, "no image data");
    assert_eq!(at + 12, bytes.len(), "bytes after IEND");
    size.expect("an IHDR chunk")
}

/// CRC-32 (ISO-HDLC, the one PNG uses), bit by bit.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for b in data {
        crc ^= u32::from(*b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[test]
fn the_png_check_knows_the_crc_of_iend() {
    assert_eq!(crc32(b"IEND"), 0xAE42_6082);
}

/// Width and height of the element `selector` as the browser laid it out.
async fn laid_out(b: &mut chromium::Cdp, selector: &str) -> (f64, f64) {
    let js = serde_json::to_string(selector).unwrap();
    let r = b
        .eval(&format!(
            "(() => {{ const r = document.querySelector({js}).getBoundingClientRect(); \
             return [r.width, r.height]; }})()"
        ))
        .await
        .unwrap_or_else(|e| panic!("{selector}: {e}"));
    (r[0].as_f64().unwrap(), r[1].as_f64().unwrap())
}

/// Log in through the login form, as a person would; the browser lands on the overview.
async fn log_in(b: &mut chromium::Cdp, app: &TestApp) {
    b.navigate(&app.url("/ui/login")).await;
    let at_login = b
        .wait_for(
            "location.pathname === '/ui/login' && !!document.querySelector('#login-form #token')",
        )
        .await;
    assert!(at_login, "the login form did not load");
    let typed = b
        .eval(&format!(
            "document.querySelector('#token').value = {}; \
             document.querySelector('#login-form button[type=submit]').click(); true",
            serde_json::to_string(OPERATOR_TOKEN).unwrap()
        ))
        .await;
    assert_eq!(typed, Ok(json!(true)));
}

/// A screenshot of the page (`Page.captureScreenshot`), saved as `name` in `dir`, read back.
async fn screenshot(b: &mut chromium::Cdp, dir: &std::path::Path, name: &str) -> Vec<u8> {
    let shot = b
        .call("Page.captureScreenshot", json!({"format": "png"}))
        .await
        .expect("a screenshot");
    let png = base64::engine::general_purpose::STANDARD
        .decode(shot["data"].as_str().expect("base64 data"))
        .unwrap();
    let file = dir.join(name);
    std::fs::write(&file, &png).unwrap();
    std::fs::read(&file).unwrap()
}

#[tokio::test]
async fn in_a_real_browser_the_charts_and_the_timeline_are_drawn_and_a_screenshot_is_a_png() {
    let app = spawn_app().await;
    let (approved, _) = approved_and_rejected(&app).await;
    // The decision's acknowledgement is the gate's last event: the timeline is complete.
    until_event(&app, &approved, "acknowledge_done", "").await;
    let mut browser = chromium::Browser::launch().await;
    log_in(&mut browser.page, &app).await;
    let charts = browser
        .page
        .wait_for(
            "location.pathname === '/ui' && !!document.querySelector('#decision-time-chart') \
             && !!document.querySelector('#outcome-chart .bar.rejected')",
        )
        .await;
    let tail = browser.log_tail();
    let b = &mut browser.page;
    assert!(charts, "the overview's charts did not load:\n{tail}");
    for selector in [
        "#decision-time-chart",
        "#outcome-chart",
        "#outcome-chart .bar.approved",
        "#decision-time-chart .point.median",
    ] {
        let (w, h) = laid_out(b, selector).await;
        assert!(w > 0.0 && h > 0.0, "{selector}: {w} x {h}");
    }
    let (w, _) = laid_out(b, "#decision-time-chart").await;
    assert!(w >= 300.0, "the chart is {w} px wide");
    let dir = tempfile::tempdir().unwrap();
    let png = screenshot(b, dir.path(), "overview.png").await;
    assert!(png.len() > 5_000, "a {} byte screenshot", png.len());
    let (pw, ph) = png_size(&png);
    assert!(pw >= 300 && ph >= 200, "{pw} x {ph}");

    b.navigate(&app.url(&format!("/ui/gates/{approved}"))).await;
    let timeline = b
        .wait_for(&format!(
            "location.pathname === '/ui/gates/{approved}' && \
             !!document.querySelector('#timeline') && !!document.querySelector('#evidence')"
        ))
        .await;
    assert!(timeline, "the gate page did not load");
    let (w, h) = laid_out(b, "#timeline").await;
    assert!(w > 0.0 && h > 0.0, "timeline: {w} x {h}");
    let points = b
        .eval("document.querySelectorAll('#timeline g.event circle').length")
        .await;
    let events = app.events(&approved).await.len();
    assert_eq!(points, Ok(json!(events)));
}
