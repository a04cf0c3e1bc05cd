//! OAuth grants, and injected faults on change calls and token grants.

use super::*;

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
