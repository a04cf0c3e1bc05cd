//! The OpenAPI document: served without a token, the same as the committed `openapi.json`, and
//! naming every route of routes/mod.rs (so a new route without documentation fails here).
use std::collections::BTreeSet;
use std::path::PathBuf;

use serde_json::Value;

use crate::helpers::*;

/// How to bring the committed file up to date; printed when it differs.
const REGENERATE: &str = "SNOWGATE_UPDATE_OPENAPI=1 cargo test -p snowgate --test api -- openapi::";

fn committed_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../openapi.json")
}

/// The served document, fetched from a running snowgate without a token.
async fn served(app: &TestApp) -> String {
    let resp = app.get("/api/v1/openapi.json", None).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    resp.text().await.unwrap()
}

#[tokio::test]
async fn the_committed_openapi_json_is_the_document_the_server_serves() {
    let app = spawn_app().await;
    let served = served(&app).await;
    let doc: Value = serde_json::from_str(&served).unwrap();
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    if std::env::var_os("SNOWGATE_UPDATE_OPENAPI").is_some() {
        std::fs::write(committed_path(), &served).unwrap();
    }
    let committed = std::fs::read_to_string(committed_path()).unwrap_or_default();
    assert!(
        committed == served,
        "openapi.json at the repository root is not the document the server serves; regenerate it with\n    {REGENERATE}\nand commit it"
    );
}

/// `(method, path)` of every `.route("…", web::method()…)` in routes/mod.rs, with the prefix of
/// the `web::scope("…")` it is inside; `web::route()` (any method) is `ANY`. The status page's
/// scope (`ui::scope()`) is HTML and outside the document.
fn routes_of(source: &str) -> Vec<(String, String)> {
    let scopes: Vec<(usize, usize, String)> = source
        .match_indices("web::scope(\"")
        .map(|(at, m)| {
            let rest = &source[at + m.len()..];
            let prefix = rest[..rest.find('"').unwrap()].to_string();
            (at, scope_end(source, at), prefix)
        })
        .collect();
    let mut routes = Vec::new();
    for (at, m) in source.match_indices(".route(") {
        let rest = source[at + m.len()..].trim_start();
        let Some(rest) = rest.strip_prefix('"') else {
            continue;
        };
        let path = &rest[..rest.find('"').unwrap()];
        let after = &rest[path.len() + 1..];
        let method = after[after.find("web::").unwrap() + 5..]
            .split('(')
            .next()
            .unwrap()
            .to_uppercase();
        let method = if method == "ROUTE" {
            "ANY".into()
        } else {
            method
        };
        let prefix = scopes
            .iter()
            .find(|(start, end, _)| *start < at && at < *end)
            .map_or("", |(_, _, p)| p.as_str());
        routes.push((method, format!("{prefix}{path}")));
    }
    routes
}

/// Where the `.service(…)` holding the scope that starts at `at` closes.
fn scope_end(source: &str, at: usize) -> usize {
    let mut depth = 0i32;
    for (i, c) in source[at..].char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth < 0 {
                    return at + i;
                }
            }
            _ => {}
        }
    }
    source.len()
}

#[tokio::test]
async fn every_route_of_the_service_is_in_the_document() {
    let app = spawn_app().await;
    let doc: Value = serde_json::from_str(&served(&app).await).unwrap();
    let source = include_str!("../../src/routes/mod.rs");
    let routes = routes_of(source);
    // Probes and metrics, the document, 17 more API routes and the callback.
    assert!(routes.len() >= 22, "routes/mod.rs read as {routes:?}");
    assert!(routes.contains(&("POST".into(), "/api/v1/gates".into())));
    assert!(routes.contains(&("ANY".into(), "/sn-devops/{token}".into())));
    let mut missing = BTreeSet::new();
    for (method, path) in &routes {
        let item = &doc["paths"][path.as_str()];
        let documented = match method.as_str() {
            "ANY" => item.as_object().is_some_and(|o| !o.is_empty()),
            m => item[m.to_lowercase()].is_object(),
        };
        if !documented {
            missing.insert(format!("{method} {path}"));
        }
    }
    assert!(
        missing.is_empty(),
        "routes without an operation in the OpenAPI document (add #[utoipa::path] and list the handler in src/openapi.rs): {missing:?}"
    );
    // And nothing documented that the service does not route.
    let routed: BTreeSet<&str> = routes.iter().map(|(_, p)| p.as_str()).collect();
    let documented: BTreeSet<&str> = doc["paths"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(documented, routed);
    assert!(doc["paths"].get("/ui").is_none());
}

#[tokio::test]
async fn operations_name_the_token_scope_they_need() {
    let app = spawn_app().await;
    let doc: Value = serde_json::from_str(&served(&app).await).unwrap();
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["pipeline"]["scheme"], "bearer");
    assert_eq!(schemes["operator"]["scheme"], "bearer");
    let security = |path: &str, method: &str| doc["paths"][path][method]["security"].clone();
    let operator_only = serde_json::json!([{"operator": []}]);
    assert_eq!(security("/api/v1/gates/{id}/resume", "post"), operator_only);
    assert_eq!(security("/api/v1/freezes", "post"), operator_only);
    assert_eq!(
        security("/api/v1/gates", "post"),
        serde_json::json!([{"pipeline": []}, {"operator": []}])
    );
    assert!(security("/healthz", "get").is_null());
    // An operator endpoint documents the 403 a pipeline token gets, with the JSON error body.
    let forbidden = &doc["components"]["responses"]["Forbidden"]["content"]["application/json"];
    assert_eq!(
        forbidden["schema"]["$ref"],
        "#/components/schemas/ErrorBody"
    );
}

/// Findings of scripts/schemathesis.sh, kept: each answered 4xx naming the field, sending nothing.
#[tokio::test]
async fn change_request_fields_that_cannot_be_servicenow_field_names_are_refused_by_name() {
    let app = spawn_app().await;
    app.sim.clear_requests();
    for body in [
        serde_json::json!({"": {}}),
        serde_json::json!({"íç ¬": "x"}),
        serde_json::json!({"changeRequestDetails": {"Work Notes": "x"}}),
        serde_json::json!({"work_notes": "x", "a/b": 1}),
        serde_json::json!({"x".repeat(81): 1}),
    ] {
        let resp = app
            .client
            .put(app.url("/api/v1/change-info/CHG0030001"))
            .bearer_auth(PIPELINE_TOKEN)
            .header("Content-Type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let err = assert_error(resp, 400, "invalid_field").await;
        assert_eq!(
            err.error.field.as_deref(),
            Some("changeRequestDetails"),
            "{body}"
        );
    }
    let sent: Vec<_> = app
        .sim
        .requests()
        .into_iter()
        .filter(|r| r.path.contains("changeInfo"))
        .collect();
    assert!(sent.is_empty(), "{sent:?}");
}
