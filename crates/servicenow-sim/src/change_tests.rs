//! The change API (`sn_chg_rest`), OAuth and their admin API, against a running simulator (real
//! HTTP on port 0), plus the pure rules (query language, state model) on their own.

use std::time::Duration;

use reqwest::{Method, RequestBuilder};
use serde_json::{json, Value};

use super::change::query::EncodedQuery;
use super::change::{allowed_transition, parse_patch_state, ChangeType};
use super::model::CrState;
use super::*;

const TITLE: &str = r#"Jenkins: Deploy "app" build 42 to "Production""#;

fn chg(sim: &SimHandle, path: &str) -> String {
    format!("{}/api/sn_chg_rest/{path}", sim.url())
}

/// A request with Basic auth and `Accept: application/json`.
fn call(sim: &SimHandle, method: Method, path: &str) -> RequestBuilder {
    reqwest::Client::new()
        .request(method, chg(sim, path))
        .basic_auth("admin", Some("admin-password"))
        .header("Accept", "application/json")
}

/// A request with Basic auth and this `Accept` (`""`: none; reqwest sends `*/*` unless told).
fn call_accepting(sim: &SimHandle, method: Method, path: &str, accept: &str) -> RequestBuilder {
    reqwest::Client::new()
        .request(method, chg(sim, path))
        .basic_auth("admin", Some("admin-password"))
        .header("Accept", accept)
}

fn call_without_accept(sim: &SimHandle, method: Method, path: &str) -> RequestBuilder {
    call_accepting(sim, method, path, "")
}

async fn answer(request: RequestBuilder) -> (u16, Value) {
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// `GET /change?sysparm_query=…` (plus other parameters) → (status, result numbers, total).
async fn search(sim: &SimHandle, params: &[(&str, &str)]) -> (u16, Vec<String>, Option<String>) {
    let response = call(sim, Method::GET, "change")
        .query(params)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let total = response
        .headers()
        .get("x-total-count")
        .map(|v| v.to_str().unwrap().to_string());
    let body: Value = response.json().await.unwrap();
    let numbers = body["result"]
        .as_array()
        .map(|records| {
            records
                .iter()
                .map(|r| r["number"]["value"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default();
    (status, numbers, total)
}

async fn password_grant(sim: &SimHandle) -> (u16, Value) {
    answer(
        reqwest::Client::new()
            .post(format!("{}/oauth_token.do", sim.url()))
            .form(&[
                ("grant_type", "password"),
                ("client_id", "sim-oauth-client"),
                ("client_secret", "sim-oauth-secret"),
                ("username", "admin"),
                ("password", "admin-password"),
            ]),
    )
    .await
}

async fn refresh_grant(sim: &SimHandle, refresh_token: &str) -> (u16, Value) {
    answer(
        reqwest::Client::new()
            .post(format!("{}/oauth_token.do", sim.url()))
            .form(&[
                ("grant_type", "refresh_token"),
                ("client_id", "sim-oauth-client"),
                ("client_secret", "sim-oauth-secret"),
                ("refresh_token", refresh_token),
            ]),
    )
    .await
}

fn bearer_get(sim: &SimHandle, token: &str) -> RequestBuilder {
    reqwest::Client::new()
        .get(chg(sim, "change"))
        .bearer_auth(token)
        .header("Accept", "application/json")
}

fn text(record: &Value, field: &str) -> String {
    record[field]["value"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn the_query_language_selects_orders_and_pages_changes() {
    let sim = start(SimSettings::default()).await.unwrap();
    let plant = |title: &str, state: &str| {
        sim.chg_create(json!({ "short_description": title }), "normal", state)
            .unwrap()
            .number
    };
    let open = plant(TITLE, "New"); // CHG0040001
    let closed = plant(TITLE, "Closed"); // CHG0040002: the decoy a re-run must not reuse
    let staging = plant(
        r#"Jenkins: Deploy "app" build 42 to "Staging""#,
        "Implement",
    );
    let build_4 = plant(r#"Jenkins: Deploy "app" build 4 to "Production""#, "New");
    let other_case = plant(&TITLE.to_lowercase(), "Assess");
    let all = [&open, &closed, &staging, &build_4, &other_case];

    let exact = format!("short_description={TITLE}^active=true");
    let any = format!("short_description={TITLE}");
    let sorted = |mut v: Vec<&String>| {
        v.sort();
        v.into_iter().cloned().collect::<Vec<_>>()
    };
    // (query, expected numbers, whether the order is the query's)
    let cases: Vec<(String, Vec<String>, bool)> = vec![
        // `=` ignores case like a MySQL-backed instance: the client checks the exact title.
        (exact.clone(), sorted(vec![&open, &other_case]), false),
        (any, sorted(vec![&open, &closed, &other_case]), false),
        (
            "active=true".into(),
            sorted(vec![&open, &staging, &build_4, &other_case]),
            false,
        ),
        ("active=false".into(), vec![closed.clone()], false),
        (
            "state=-1^ORstate=3".into(),
            sorted(vec![&closed, &staging]),
            false,
        ),
        (
            "state!=-5^state!=-4".into(),
            sorted(vec![&closed, &staging]),
            false,
        ),
        (
            "short_descriptionLIKEstaging".into(),
            vec![staging.clone()],
            false,
        ),
        (
            r#"short_descriptionSTARTSWITHJenkins: Deploy "app" build 4 to"#.into(),
            vec![build_4.clone()],
            false,
        ),
        (format!("number={staging}"), vec![staging.clone()], false),
        (
            "state=-1^NQstate=3".into(),
            sorted(vec![&closed, &staging]),
            false,
        ),
        (
            "ORDERBYDESCnumber".into(),
            all.iter().rev().map(|n| n.to_string()).collect(),
            true,
        ),
        (
            "active=true^ORDERBYstate^ORDERBYDESCnumber".into(),
            vec![
                build_4.clone(),
                open.clone(),
                other_case.clone(),
                staging.clone(),
            ],
            true,
        ),
        ("short_description=nothing like it".into(), vec![], false),
    ];
    for (query, expected, ordered) in cases {
        let (status, mut found, _) = search(&sim, &[("sysparm_query", &query)]).await;
        assert_eq!(status, 200, "{query}");
        if !ordered {
            found.sort();
        }
        assert_eq!(found, expected, "{query}");
    }

    // The same through the versioned path.
    let r = reqwest::Client::new()
        .get(chg(&sim, "v1/change"))
        .query(&[("sysparm_query", exact.as_str())])
        .basic_auth("admin", Some("admin-password"))
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);

    // Plain name=value parameters are ANDed equalities.
    let (_, found, _) = search(&sim, &[("active", "false")]).await;
    assert_eq!(found, vec![closed.clone()]);
    let (_, mut found, _) = search(&sim, &[("short_description", TITLE), ("active", "true")]).await;
    found.sort();
    assert_eq!(found, sorted(vec![&open, &other_case]));

    // Paging: the total counts every match.
    let (status, found, total) = search(
        &sim,
        &[
            ("sysparm_query", "ORDERBYnumber"),
            ("sysparm_limit", "2"),
            ("sysparm_offset", "1"),
        ],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(found, vec![closed.clone(), staging.clone()]);
    assert_eq!(total.as_deref(), Some("5"));

    for bad in [
        vec![("sysparm_query", "short_description~x")],
        vec![("sysparm_query", "ORstate=3")],
        vec![("sysparm_query", "Short_description=x")],
        vec![("sysparm_query", "stateISEMPTYx")],
        vec![("sysparm_limit", "ten")],
        vec![("sysparm_limit", "0")],
        vec![("sysparm_offset", "-1")],
        vec![("Bad Name", "x")],
    ] {
        let (status, body) = answer(call(&sim, Method::GET, "change").query(&bad)).await;
        assert_eq!(status, 400, "{bad:?}");
        assert_eq!(body["status"], json!("failure"));
    }
    sim.stop().await;
}

#[tokio::test]
async fn a_query_travels_percent_encoded_with_its_quotes() {
    let sim = start(SimSettings::default()).await.unwrap();
    let number = sim
        .chg_create(json!({ "short_description": TITLE }), "normal", "New")
        .unwrap()
        .number;
    let encoded: String = url::form_urlencoded::byte_serialize(
        format!("short_description={TITLE}^active=true").as_bytes(),
    )
    .collect();
    let url = format!("{}?sysparm_query={encoded}", chg(&sim, "change"));
    let r = reqwest::Client::new()
        .get(url)
        .basic_auth("admin", Some("admin-password"))
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap();
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["result"][0]["number"]["value"], json!(number));
    assert_eq!(
        body["result"][0]["short_description"]["value"],
        json!(TITLE)
    );
    sim.stop().await;
}

#[tokio::test]
async fn each_change_type_is_created_new_with_number_meta_and_fields() {
    let sim = start(SimSettings::default()).await.unwrap();

    // Normal, fields as a JSON body.
    let (status, body) = answer(call(&sim, Method::POST, "change/normal").json(&json!({
        "short_description": TITLE,
        "description": "Build 42",
        "assigned_to": "beth.anglin",
        "start_date": "2030-01-01 08:00:00",
        "number": "CHG9999999",
        "sys_id": "0123",
        "Not A Field": "x",
    })))
    .await;
    assert_eq!(status, 200);
    let normal = &body["result"];
    assert!(normal.is_object(), "a create answers one object: {body}");
    assert_eq!(
        normal["number"],
        json!({"value": "CHG0040001", "display_value": "CHG0040001"})
    );
    let sys_id = text(normal, "sys_id");
    assert_eq!(sys_id.len(), 32);
    assert!(sys_id.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(
        normal["type"],
        json!({"value": "normal", "display_value": "Normal"})
    );
    assert_eq!(
        normal["state"],
        json!({"value": "-5", "display_value": "New"})
    );
    assert_eq!(
        normal["active"],
        json!({"value": "true", "display_value": "true"})
    );
    assert_eq!(
        normal["approval"],
        json!({"value": "not requested", "display_value": "Not Yet Requested"})
    );
    assert_eq!(text(normal, "short_description"), TITLE);
    assert_eq!(text(normal, "assigned_to"), "beth.anglin");
    for empty in ["close_code", "close_notes", "assignment_group", "end_date"] {
        assert_eq!(text(normal, empty), "", "{empty}");
    }
    assert_eq!(
        normal["start_date"],
        json!({
            "value": "2030-01-01 08:00:00",
            "display_value": "01/01/2030 12:00:00 AM",
            "display_value_internal": "2030-01-01 00:00:00",
        })
    );
    assert_eq!(
        normal["__meta"]["ignoredFields"],
        json!(["Not A Field", "number", "sys_id"])
    );

    // Emergency, fields as query parameters and an empty JSON body.
    let (status, body) = answer(
        call(&sim, Method::POST, "v1/change/emergency")
            .query(&[("short_description", "Hotfix"), ("sysparm_fields", "")])
            .header("Content-Type", "application/json"),
    )
    .await;
    assert_eq!(status, 200);
    let emergency = &body["result"];
    assert_eq!(text(emergency, "number"), "CHG0040002");
    assert_eq!(text(emergency, "type"), "emergency");
    assert_eq!(text(emergency, "short_description"), "Hotfix");
    assert_eq!(emergency["__meta"]["ignoredFields"], json!([]));

    // Standard, from the template found by name; the template gives the title unless given.
    let (status, body) = answer(
        call(&sim, Method::GET, "change/standard/template")
            .query(&[("sysparm_query", "name=Jenkins deployment^active=true")]),
    )
    .await;
    assert_eq!(status, 200);
    let template_id = text(&body["result"][0], "sys_id");
    let (status, body) = answer(
        call(
            &sim,
            Method::POST,
            &format!("change/standard/{template_id}"),
        )
        .json(&json!({})),
    )
    .await;
    assert_eq!(status, 200);
    let standard = &body["result"];
    assert_eq!(text(standard, "type"), "standard");
    assert_eq!(text(standard, "state"), "-5");
    assert_eq!(text(standard, "short_description"), "Jenkins deployment");

    let changes = sim.chg_changes();
    assert_eq!(changes.len(), 3);
    assert_eq!(changes[2].template.as_deref(), Some("Jenkins deployment"));
    assert_eq!(changes[0].fields["description"], "Build 42");
    assert!(changes.iter().all(|c| c.created_by_api));

    // GET one by sys_id; an unknown one is a 404.
    let (status, body) = answer(call(&sim, Method::GET, &format!("change/{sys_id}"))).await;
    assert_eq!(status, 200);
    assert_eq!(text(&body["result"], "number"), "CHG0040001");
    let (status, body) = answer(call(&sim, Method::GET, "change/0000")).await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["message"], json!("No Record found"));

    // Bad values are refused.
    for bad in [
        json!({"start_date": "tomorrow"}),
        json!({"short_description": {"value": "x"}}),
    ] {
        let (status, _) = answer(call(&sim, Method::POST, "change/normal").json(&bad)).await;
        assert_eq!(status, 400, "{bad}");
    }
    assert_eq!(sim.chg_changes().len(), 3);
    sim.stop().await;
}

#[tokio::test]
async fn the_other_answer_shapes_are_available_for_clients_that_must_read_them() {
    let sim = start(SimSettings {
        chg_create_as_array: true,
        chg_numeric_values: true,
        chg_plain_sys_id: true,
        ..SimSettings::default()
    })
    .await
    .unwrap();
    let (status, body) =
        answer(call(&sim, Method::POST, "change/normal").json(&json!({"short_description": "x"})))
            .await;
    assert_eq!(status, 200);
    let record = &body["result"][0];
    assert!(record["sys_id"].is_string());
    assert_eq!(
        record["state"],
        json!({"value": -5, "display_value": "New"})
    );
    assert_eq!(
        record["active"],
        json!({"value": true, "display_value": "true"})
    );
    sim.stop().await;
}

#[tokio::test]
async fn standard_templates_must_exist_and_be_active() {
    let sim = start(SimSettings::default()).await.unwrap();
    let old = sim.chg_add_template("Old deployment", false);
    let lookup = |name: &str| format!("name={name}^active=true");

    let (status, body) = answer(
        call(&sim, Method::GET, "change/standard/template")
            .query(&[("sysparm_query", lookup("Old deployment"))]),
    )
    .await;
    assert_eq!((status, body), (200, json!({"result": []})));

    let (status, body) = answer(
        call(&sim, Method::GET, "change/standard/template")
            .query(&[("sysparm_query", "nameSTARTSWITHOld")]),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        body["result"][0],
        json!({
            "sys_id": {"value": old.sys_id, "display_value": old.sys_id},
            "name": {"value": "Old deployment", "display_value": "Old deployment"},
            "active": {"value": "false", "display_value": "false"},
            "short_description": {"value": "Old deployment", "display_value": "Old deployment"},
        })
    );

    let (status, body) = answer(
        call(
            &sim,
            Method::POST,
            &format!("change/standard/{}", old.sys_id),
        )
        .json(&json!({})),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["status"], json!("failure"));
    let (status, _) =
        answer(call(&sim, Method::POST, "change/standard/ffffffff").json(&json!({}))).await;
    assert_eq!(status, 404);

    sim.chg_set_template_active("Jenkins deployment", false)
        .unwrap();
    let (_, body) = answer(
        call(&sim, Method::GET, "change/standard/template")
            .query(&[("sysparm_query", lookup("Jenkins deployment"))]),
    )
    .await;
    assert_eq!(body, json!({"result": []}));
    assert!(sim.chg_set_template_active("No such", true).is_err());
    assert!(sim.chg_changes().is_empty());
    sim.stop().await;
}

#[tokio::test]
async fn patch_moves_along_the_state_model_and_journals_work_notes() {
    let sim = start(SimSettings::default()).await.unwrap();
    let template = sim.chg_templates()[0].sys_id.clone();
    let (_, body) = answer(
        call(&sim, Method::POST, &format!("change/standard/{template}"))
            .json(&json!({"short_description": TITLE})),
    )
    .await;
    let sys_id = text(&body["result"], "sys_id");
    let path = format!("change/{sys_id}");
    let patch = |body: Value| answer(call(&sim, Method::PATCH, &path).json(&body));

    // By lower-case name, then by value, with a work note.
    let (status, body) = patch(json!({"state": "scheduled"})).await;
    assert_eq!(status, 200);
    assert_eq!(
        body["result"]["state"],
        json!({"value": "-2", "display_value": "Scheduled"})
    );
    assert_eq!(text(&body["result"], "approval"), "approved");
    let (status, body) = patch(json!({"state": "-1", "work_notes": "Deploying build 42"})).await;
    assert_eq!(status, 200);
    assert_eq!(text(&body["result"], "state"), "-1");
    assert!(body["result"].get("work_notes").is_none());
    let (status, body) =
        patch(json!({"work_notes": "Build 42 deployed", "number": "CHG1", "u_note": 7})).await;
    assert_eq!(status, 200);
    assert_eq!(body["result"]["__meta"]["ignoredFields"], json!(["number"]));
    assert_eq!(text(&body["result"], "u_note"), "7");
    let notes: Vec<String> = sim
        .chg_work_notes("CHG0040001")
        .unwrap()
        .into_iter()
        .map(|n| n.text)
        .collect();
    assert_eq!(notes, vec!["Deploying build 42", "Build 42 deployed"]);
    assert_eq!(sim.chg_work_notes("CHG0049999"), None);

    // Refused: display names, unknown states, skipping a state, closing without close fields.
    for bad in [
        json!({"state": "Review"}),
        json!({"state": "sideways"}),
        json!({"state": "-3"}),
        json!({"state": 1}),
    ] {
        let (status, body) = patch(bad.clone()).await;
        assert_eq!(status, 400, "{bad}");
        assert_eq!(body["status"], json!("failure"));
    }
    assert_eq!(patch(json!({"state": "review"})).await.0, 200);
    let (status, body) = patch(json!({"state": "closed", "close_code": "successful"})).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["message"], json!("Data Policy Exception"));
    let (status, body) = patch(json!({
        "state": 3,
        "close_code": "successful",
        "close_notes": "Deployed by Jenkins",
    }))
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        body["result"]["state"],
        json!({"value": "3", "display_value": "Closed"})
    );
    assert_eq!(text(&body["result"], "active"), "false");
    assert_eq!(text(&body["result"], "close_notes"), "Deployed by Jenkins");
    assert_eq!(patch(json!({"state": "implement"})).await.0, 400);

    // A normal change cannot approve itself.
    let (_, body) = answer(call(&sim, Method::POST, "change/normal").json(&json!({}))).await;
    let normal = format!("change/{}", text(&body["result"], "sys_id"));
    for state in ["implement", "scheduled"] {
        let (status, _) =
            answer(call(&sim, Method::PATCH, &normal).json(&json!({ "state": state }))).await;
        assert_eq!(status, 400, "{state}");
    }
    for state in ["assess", "authorize"] {
        let (status, _) =
            answer(call(&sim, Method::PATCH, &normal).json(&json!({ "state": state }))).await;
        assert_eq!(status, 200, "{state}");
    }
    assert_eq!(sim.chg_change("latest").unwrap().approval, "requested");
    let (status, _) =
        answer(call(&sim, Method::PATCH, &normal).json(&json!({"state": "scheduled"}))).await;
    assert_eq!(status, 400);
    sim.chg_set_approval("latest", "approved").unwrap();
    let (status, _) =
        answer(call(&sim, Method::PATCH, &normal).json(&json!({"state": "scheduled"}))).await;
    assert_eq!(status, 200);

    // Unknown records and bodies.
    let (status, _) =
        answer(call(&sim, Method::PATCH, "change/0000").json(&json!({"state": "-1"}))).await;
    assert_eq!(status, 404);
    let (status, _) = answer(
        call(&sim, Method::PATCH, &path)
            .header("Content-Type", "application/json")
            .body(""),
    )
    .await;
    assert_eq!(status, 400);
    sim.stop().await;
}

#[tokio::test]
async fn bearer_and_basic_authenticate_and_nothing_else_does() {
    let sim = start(SimSettings::default()).await.unwrap();
    let unauthenticated = json!({
        "error": {"message": "User Not Authenticated", "detail": "Required to provide Auth information"},
        "status": "failure",
    });
    let anonymous = reqwest::Client::new()
        .get(chg(&sim, "change"))
        .header("Accept", "application/json");
    assert_eq!(answer(anonymous).await, (401, unauthenticated.clone()));
    let wrong = reqwest::Client::new()
        .get(chg(&sim, "change"))
        .basic_auth("admin", Some("nope"))
        .header("Accept", "application/json");
    assert_eq!(answer(wrong).await, (401, unauthenticated.clone()));

    let (status, grant) = password_grant(&sim).await;
    assert_eq!(status, 200);
    let token = grant["access_token"].as_str().unwrap().to_string();
    assert_eq!(answer(bearer_get(&sim, &token)).await.0, 200);
    assert_eq!(answer(bearer_get(&sim, "made-up")).await.0, 401);

    sim.oauth_expire_tokens();
    assert_eq!(
        answer(bearer_get(&sim, &token)).await,
        (401, unauthenticated)
    );
    // Basic still works.
    assert_eq!(answer(call(&sim, Method::GET, "change")).await.0, 200);
    sim.stop().await;

    // A short lifetime runs out on its own.
    let sim = start(SimSettings {
        oauth_token_lifetime: Duration::from_millis(500),
        ..SimSettings::default()
    })
    .await
    .unwrap();
    let (_, grant) = password_grant(&sim).await;
    assert_eq!(grant["expires_in"], json!(1));
    let token = grant["access_token"].as_str().unwrap().to_string();
    assert_eq!(answer(bearer_get(&sim, &token)).await.0, 200);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(answer(bearer_get(&sim, &token)).await.0, 401);
    sim.stop().await;
}

#[tokio::test]
async fn roles_decide_who_reads_and_who_writes() {
    let sim = start(SimSettings::default()).await.unwrap();
    let (_, body) = answer(call(&sim, Method::POST, "change/normal").json(&json!({}))).await;
    let patch_path = format!("change/{}", text(&body["result"], "sys_id"));
    // (roles, may read, may write)
    let cases: [(&[&str], bool, bool); 5] = [
        (&["sn_change_read", "sn_change_write"], true, true),
        (&["sn_change_read"], true, false),
        (&["sn_change_write"], false, true),
        (&["itil"], true, true),
        (&[], false, false),
    ];
    for (roles, read, write) in cases {
        sim.chg_set_roles(roles.iter().copied());
        let expect = |allowed: bool| if allowed { 200 } else { 403 };
        let (status, body) = answer(call(&sim, Method::GET, "change")).await;
        assert_eq!(status, expect(read), "{roles:?} GET");
        if !read {
            assert_eq!(body["error"]["message"], json!("User Not Authorized"));
        }
        let (status, _) = answer(
            call(&sim, Method::GET, "change/standard/template")
                .query(&[("sysparm_query", "active=true")]),
        )
        .await;
        assert_eq!(status, expect(read), "{roles:?} GET template");
        let (status, body) =
            answer(call(&sim, Method::POST, "change/normal").json(&json!({}))).await;
        assert_eq!(status, expect(write), "{roles:?} POST");
        if !write {
            assert_eq!(body["status"], json!("failure"));
            assert!(body["error"]["detail"]
                .as_str()
                .unwrap()
                .contains("ACL Exception"));
        }
        let (status, _) =
            answer(call(&sim, Method::PATCH, &patch_path).json(&json!({"work_notes": "x"}))).await;
        assert_eq!(status, expect(write), "{roles:?} PATCH");
    }
    assert_eq!(sim.chg_roles(), Vec::<String>::new());
    sim.stop().await;
}

#[tokio::test]
async fn missing_accept_or_content_type_is_a_bad_request() {
    let sim = start(SimSettings::default()).await.unwrap();
    let (_, body) = answer(call(&sim, Method::POST, "change/normal").json(&json!({}))).await;
    let one = format!("change/{}", text(&body["result"], "sys_id"));
    let cases: Vec<(&str, RequestBuilder, u16)> = vec![
        (
            "GET without Accept",
            call_without_accept(&sim, Method::GET, "change"),
            400,
        ),
        (
            "GET one without Accept",
            call_without_accept(&sim, Method::GET, &one),
            400,
        ),
        (
            "GET wanting XML",
            call_accepting(&sim, Method::GET, "change", "application/xml"),
            406,
        ),
        (
            "POST without Content-Type",
            call(&sim, Method::POST, "change/normal").body("{}"),
            400,
        ),
        (
            "POST as a form",
            call(&sim, Method::POST, "change/normal").form(&[("short_description", "x")]),
            400,
        ),
        (
            "PATCH without Content-Type",
            call(&sim, Method::PATCH, &one).body(r#"{"state":"assess"}"#),
            400,
        ),
        (
            "PATCH without Accept",
            call_without_accept(&sim, Method::PATCH, &one).json(&json!({"state": "assess"})),
            400,
        ),
        (
            "POST with a JSON array",
            call(&sim, Method::POST, "change/normal").json(&json!([1])),
            400,
        ),
        (
            "POST with broken JSON",
            call(&sim, Method::POST, "change/normal")
                .header("Content-Type", "application/json")
                .body("{"),
            400,
        ),
        (
            "POST on the list",
            call(&sim, Method::POST, "change").json(&json!({})),
            405,
        ),
        (
            "an unknown resource",
            call(&sim, Method::GET, "change/normal/x/y"),
            400,
        ),
        (
            "an unknown API version",
            call(&sim, Method::GET, "v2/change"),
            400,
        ),
    ];
    for (name, request, expected) in cases {
        let (status, body) = answer(request).await;
        assert_eq!(status, expected, "{name}");
        assert_eq!(body["status"], json!("failure"), "{name}");
        assert!(body["error"]["message"].is_string(), "{name}");
    }
    assert_eq!(sim.chg_changes().len(), 1);
    assert_eq!(sim.chg_change("latest").unwrap().state, "New");
    sim.stop().await;
}

#[tokio::test]
async fn oauth_grants_issue_refresh_and_refuse_like_the_instance() {
    let sim = start(SimSettings::default()).await.unwrap();
    let (status, grant) = password_grant(&sim).await;
    assert_eq!(status, 200);
    assert_eq!(grant["scope"], json!("useraccount"));
    assert_eq!(grant["token_type"], json!("Bearer"));
    assert_eq!(grant["expires_in"], json!(1800));
    let access = grant["access_token"].as_str().unwrap().to_string();
    let refresh = grant["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(access, refresh);

    let (status, renewed) = refresh_grant(&sim, &refresh).await;
    assert_eq!(status, 200);
    assert_eq!(renewed["refresh_token"], json!(refresh));
    let renewed_access = renewed["access_token"].as_str().unwrap();
    assert_ne!(renewed_access, access);
    assert_eq!(answer(bearer_get(&sim, renewed_access)).await.0, 200);
    assert_eq!(sim.oauth_grants(), (1, 1));

    // Revoked refresh tokens fail; a new password grant brings a good one.
    sim.oauth_revoke_refresh();
    assert_eq!(refresh_grant(&sim, &refresh).await.0, 401);
    let (_, grant) = password_grant(&sim).await;
    let refresh = grant["refresh_token"].as_str().unwrap().to_string();
    assert_eq!(refresh_grant(&sim, &refresh).await.0, 200);
    assert_eq!(sim.oauth_grants(), (2, 2));

    let token_url = format!("{}/oauth_token.do", sim.url());
    let client = reqwest::Client::new();
    let form = |pairs: &[(&str, &str)]| client.post(&token_url).form(pairs);
    let cases: Vec<(&str, RequestBuilder, u16)> = vec![
        (
            "a JSON body",
            client.post(&token_url).json(&json!({
                "grant_type": "password", "client_id": "sim-oauth-client",
                "client_secret": "sim-oauth-secret", "username": "admin",
                "password": "admin-password",
            })),
            400,
        ),
        (
            "a wrong client secret",
            form(&[
                ("grant_type", "password"),
                ("client_id", "sim-oauth-client"),
                ("client_secret", "nope"),
                ("username", "admin"),
                ("password", "admin-password"),
            ]),
            401,
        ),
        (
            "a wrong password",
            form(&[
                ("grant_type", "password"),
                ("client_id", "sim-oauth-client"),
                ("client_secret", "sim-oauth-secret"),
                ("username", "admin"),
                ("password", "nope"),
            ]),
            401,
        ),
        (
            "an unknown refresh token",
            form(&[
                ("grant_type", "refresh_token"),
                ("client_id", "sim-oauth-client"),
                ("client_secret", "sim-oauth-secret"),
                ("refresh_token", "made-up"),
            ]),
            401,
        ),
        (
            "no grant type",
            form(&[("client_id", "sim-oauth-client")]),
            400,
        ),
        (
            "client credentials",
            form(&[
                ("grant_type", "client_credentials"),
                ("client_id", "sim-oauth-client"),
                ("client_secret", "sim-oauth-secret"),
            ]),
            400,
        ),
        ("a GET", client.get(&token_url), 405),
    ];
    for (name, request, expected) in cases {
        assert_eq!(answer(request).await.0, expected, "{name}");
    }
    assert_eq!(sim.oauth_grants(), (2, 2));
    sim.stop().await;

    let sim = start(SimSettings {
        oauth_refresh_omits_token: true,
        ..SimSettings::default()
    })
    .await
    .unwrap();
    let (_, grant) = password_grant(&sim).await;
    let refresh = grant["refresh_token"].as_str().unwrap().to_string();
    let (status, renewed) = refresh_grant(&sim, &refresh).await;
    assert_eq!(status, 200);
    assert!(renewed.get("refresh_token").is_none(), "{renewed}");
    // The old refresh token stays good.
    assert_eq!(refresh_grant(&sim, &refresh).await.0, 200);
    sim.stop().await;
}

#[tokio::test]
async fn injected_faults_fail_change_calls_and_token_grants() {
    let sim = start(SimSettings::default()).await.unwrap();
    for (endpoint, status) in [("change.get", 429), ("change.post", 500), ("oauth", 503)] {
        sim.inject_fault(Fault {
            endpoint: endpoint.into(),
            fail_next: 1,
            status,
            latency_ms: 0,
        });
    }
    let r = call(&sim, Method::GET, "change").send().await.unwrap();
    assert_eq!(r.status().as_u16(), 429);
    assert_eq!(r.headers()["retry-after"], "1");
    assert_eq!(answer(call(&sim, Method::GET, "change")).await.0, 200);
    let create = || call(&sim, Method::POST, "change/normal").json(&json!({}));
    assert_eq!(answer(create()).await.0, 500);
    assert_eq!(answer(create()).await.0, 200);
    assert_eq!(password_grant(&sim).await.0, 503);
    assert_eq!(password_grant(&sim).await.0, 200);

    // The admin API knows the new keys.
    let r = reqwest::Client::new()
        .post(format!("{}/__sim/faults", sim.url()))
        .json(&json!({"endpoint": "change.template", "status": 404}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let (status, _) = answer(call(&sim, Method::GET, "change/standard/template")).await;
    assert_eq!(status, 404);
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_timer_implements_new_changes_of_the_change_api() {
    let sim = start(SimSettings {
        auto_approve_after: Some(Duration::from_millis(50)),
        ..SimSettings::default()
    })
    .await
    .unwrap();
    let (status, _) = answer(call(&sim, Method::POST, "change/normal").json(&json!({}))).await;
    assert_eq!(status, 200);
    let decoy = sim.chg_create(json!({}), "normal", "Closed").unwrap();
    for _ in 0..200 {
        if sim.chg_change("CHG0040001").unwrap().state == "Implement" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let change = sim.chg_change("CHG0040001").unwrap();
    assert_eq!(change.state, "Implement");
    assert_eq!(change.approval, "approved");
    assert_eq!(sim.chg_change(&decoy.number).unwrap().state, "Closed");
    sim.stop().await;
}

#[tokio::test]
async fn the_admin_api_plants_moves_and_reports() {
    let sim = start(SimSettings::default()).await.unwrap();
    let admin = |path: &str| format!("{}/__sim/chg/{path}", sim.url());
    let client = reqwest::Client::new();

    let (status, planted) = answer(client.post(admin("changes")).json(&json!({
        "type": "normal",
        "state": "Implement",
        "fields": {"short_description": TITLE},
    })))
    .await;
    assert_eq!(status, 200);
    assert_eq!(planted["number"], json!("CHG0040001"));
    assert_eq!(planted["state"], json!("Implement"));
    assert_eq!(planted["approval"], json!("approved"));
    assert_eq!(planted["createdByApi"], json!(false));

    let (status, moved) = answer(client.post(admin("changes/latest/state")).body(
        r#"{"state":"Scheduled","startDate":"2030-01-01 08:00:00","endDate":"2030-01-01 10:00:00"}"#,
    ))
    .await;
    assert_eq!(status, 200);
    assert_eq!(moved["state"], json!("Scheduled"));
    assert_eq!(moved["startDate"], json!("2030-01-01 08:00:00"));
    let (_, moved) = answer(
        client
            .post(admin("changes/CHG0040001/state"))
            .json(&json!({"endDate": "", "approval": "rejected"})),
    )
    .await;
    assert_eq!(moved["endDate"], Value::Null);
    assert_eq!(moved["approval"], json!("rejected"));
    assert_eq!(moved["state"], json!("Scheduled"));
    let (status, _) = answer(
        client
            .post(admin("changes/CHG0040001/state"))
            .json(&json!({"startDate": "soon"})),
    )
    .await;
    assert_eq!(status, 400);

    // The API sees the planted CR, dates as UTC values.
    let sys_id = sim.chg_change("CHG0040001").unwrap().sys_id;
    let (_, body) = answer(call(&sim, Method::GET, &format!("change/{sys_id}"))).await;
    assert_eq!(text(&body["result"], "start_date"), "2030-01-01 08:00:00");
    assert_eq!(text(&body["result"], "end_date"), "");
    answer(
        call(&sim, Method::PATCH, &format!("change/{sys_id}"))
            .json(&json!({"work_notes": "Waiting for the window"})),
    )
    .await;
    let (status, one) = answer(client.get(admin("changes/CHG0040001"))).await;
    assert_eq!(status, 200);
    assert_eq!(one["workNotes"][0]["text"], json!("Waiting for the window"));
    assert_eq!(one["workNotes"][0]["by"], json!("admin"));
    let (_, notes) = answer(client.get(admin("changes/CHG0040001/work-notes"))).await;
    assert_eq!(notes["workNotes"].as_array().unwrap().len(), 1);
    assert_eq!(answer(client.get(admin("changes/CHG0049999"))).await.0, 404);
    let (_, all) = answer(client.get(admin("changes"))).await;
    assert_eq!(all.as_array().unwrap().len(), 1);

    // Templates, roles, OAuth.
    let (_, template) = answer(
        client
            .post(admin("templates"))
            .json(&json!({"name": "Hotfix", "active": true})),
    )
    .await;
    assert_eq!(template["active"], json!(true));
    let (status, _) = answer(
        client
            .post(admin("templates/Hotfix"))
            .json(&json!({"active": false})),
    )
    .await;
    assert_eq!(status, 200);
    let (_, templates) = answer(client.get(admin("templates"))).await;
    assert_eq!(templates[1]["active"], json!(false));
    let (_, roles) = answer(
        client
            .post(admin("roles"))
            .json(&json!({"roles": ["itil"]})),
    )
    .await;
    assert_eq!(roles, json!({"roles": ["itil"]}));
    assert_eq!(sim.chg_roles(), vec!["itil"]);

    password_grant(&sim).await;
    let (_, status) = answer(client.get(admin("oauth"))).await;
    assert_eq!(status["passwordGrants"], json!(1));
    assert_eq!(status["activeAccessTokens"], json!(1));
    let (_, status) = answer(client.post(admin("oauth/expire-tokens"))).await;
    assert_eq!(status["activeAccessTokens"], json!(0));
    answer(client.post(admin("oauth/revoke-refresh"))).await;
    assert_eq!(answer(client.get(admin("nothing"))).await.0, 404);

    // The sn_devops admin API next door still answers.
    assert_eq!(
        answer(client.get(format!("{}/__sim/changes", sim.url())))
            .await
            .0,
        200
    );
    // Admin calls are not recorded; API calls are.
    assert!(sim.requests().iter().all(|r| !r.path.starts_with("/__sim")));
    assert!(sim.requests().iter().any(|r| r.path == "/oauth_token.do"));
    sim.stop().await;
}

#[test]
fn the_state_model_allows_the_default_lifecycle_only() {
    use CrState::*;
    let normal = [New, Assess, Authorize, Scheduled, Implement, Review, Closed];
    let emergency = [New, Authorize, Scheduled, Implement, Review, Closed];
    let standard = [New, Scheduled, Implement, Review, Closed];
    for (kind, path) in [
        (ChangeType::Normal, &normal[..]),
        (ChangeType::Emergency, &emergency[..]),
        (ChangeType::Standard, &standard[..]),
    ] {
        for pair in path.windows(2) {
            assert!(
                allowed_transition(kind, pair[0], pair[1]),
                "{kind:?} {pair:?}"
            );
            assert!(!allowed_transition(kind, pair[1], pair[0]) || pair[0] == New);
        }
        for skip in path.windows(3) {
            assert!(
                !allowed_transition(kind, skip[0], skip[2]),
                "{kind:?} {skip:?}"
            );
        }
        assert!(allowed_transition(kind, Scheduled, Canceled));
        assert!(!allowed_transition(kind, Closed, New));
        assert!(!allowed_transition(kind, Canceled, Implement));
        assert!(allowed_transition(kind, Implement, Implement));
    }
    assert!(!allowed_transition(ChangeType::Emergency, New, Assess));
    assert!(!allowed_transition(ChangeType::Standard, New, Authorize));
}

#[test]
fn patch_states_are_values_or_lower_case_names() {
    assert_eq!(parse_patch_state(&json!("-1")), Some(CrState::Implement));
    assert_eq!(parse_patch_state(&json!(-1)), Some(CrState::Implement));
    assert_eq!(
        parse_patch_state(&json!("implement")),
        Some(CrState::Implement)
    );
    assert_eq!(
        parse_patch_state(&json!("canceled")),
        Some(CrState::Canceled)
    );
    for bad in [
        json!("Implement"),
        json!("cancelled"),
        json!("1"),
        json!(null),
    ] {
        assert_eq!(parse_patch_state(&bad), None, "{bad}");
    }
}

#[test]
fn encoded_queries_parse_escapes_or_groups_and_orders() {
    let q = EncodedQuery::parse("a=1^ORb=2^c!=3^ORDERBYDESCd^NQe=x^^y^ORDERBYf").unwrap();
    assert_eq!(q.blocks.len(), 2);
    assert_eq!(q.blocks[0].len(), 2);
    assert_eq!(q.blocks[0][0].len(), 2);
    assert_eq!(q.blocks[1][0][0].value, "x^y");
    assert_eq!(
        q.order,
        vec![("d".to_string(), true), ("f".to_string(), false)]
    );
    let values = |pairs: &'static [(&'static str, &'static str)]| {
        move |f: &str| {
            pairs
                .iter()
                .find(|(n, _)| *n == f)
                .map(|(_, v)| v.to_string())
                .unwrap_or_default()
        }
    };
    assert!(q.matches(values(&[("b", "2"), ("c", "4")])));
    assert!(!q.matches(values(&[("b", "2"), ("c", "3")])));
    assert!(q.matches(values(&[("e", "X^Y")])));
    assert!(EncodedQuery::parse("").unwrap().matches(values(&[])));
    assert!(EncodedQuery::parse("closed_atISEMPTY")
        .unwrap()
        .matches(values(&[])));
    for bad in [
        "=x",
        "ORa=1",
        "a~1",
        "ORDERBY",
        "ORDERBYDESCBad",
        "aISEMPTYx",
    ] {
        assert!(EncodedQuery::parse(bad).is_err(), "{bad}");
    }
}
