//! PATCH along the state model, and the state model's rules on their own.

use super::*;

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
