//! Authentication, roles, and the `Accept` and `Content-Type` headers.

use super::*;

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
