//! The Attachment API's raw-body upload, `POST /api/now/attachment/file`, against a running
//! simulator (real HTTP on port 0).

use reqwest::RequestBuilder;
use serde_json::{json, Value};

use crate::*;

/// The SHA-256 of `abc` (FIPS 180-4's first example).
const ABC_SHA256: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

/// A CR of the change API to attach to; its sys_id.
fn plant_cr(sim: &SimHandle) -> String {
    sim.chg_create(json!({"short_description": "attach here"}), "normal", "New")
        .unwrap()
        .sys_id
}

/// An upload with Basic auth, `Accept: application/json` and these query parameters.
fn upload(sim: &SimHandle, path: &str, params: &[(&str, &str)]) -> RequestBuilder {
    reqwest::Client::new()
        .post(format!("{}{path}", sim.url()))
        .basic_auth("admin", Some("admin-password"))
        .header("Accept", "application/json")
        .query(params)
}

fn params<'a>(table: &'a str, sys_id: &'a str, file: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("table_name", table),
        ("table_sys_id", sys_id),
        ("file_name", file),
    ]
}

async fn answer(request: RequestBuilder) -> (u16, Value) {
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn an_upload_answers_201_with_location_and_the_documented_metadata() {
    let sim = start(SimSettings::default()).await.unwrap();
    let cr = plant_cr(&sim);
    let response = upload(
        &sim,
        "/api/now/attachment/file",
        &params("change_request", &cr, "evidence.json"),
    )
    .header("Content-Type", "application/json")
    .body("abc")
    .send()
    .await
    .unwrap();
    assert_eq!(response.status().as_u16(), 201);
    let location = response.headers()["location"].to_str().unwrap().to_string();
    let body: Value = response.json().await.unwrap();
    let result = &body["result"];
    let sys_id = result["sys_id"].as_str().unwrap();
    assert_eq!(sys_id.len(), 32);
    assert!(sys_id
        .bytes()
        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    assert_eq!(
        location,
        format!("{}/api/now/attachment/{sys_id}", sim.url())
    );
    assert_eq!(
        result["download_link"],
        json!(format!("{}/api/now/attachment/{sys_id}/file", sim.url()))
    );
    let expected = [
        ("file_name", "evidence.json"),
        ("content_type", "application/json"),
        ("size_bytes", "3"),
        ("table_name", "change_request"),
        ("table_sys_id", cr.as_str()),
        ("sys_created_by", "admin"),
        ("sys_updated_by", "admin"),
        ("compressed", "false"),
        ("size_compressed", ""),
        ("image_height", ""),
        ("image_width", ""),
        ("average_image_color", ""),
        ("sys_mod_count", "0"),
        ("sys_tags", ""),
    ];
    for (field, value) in expected {
        assert_eq!(result[field], json!(value), "{field}");
    }
    let created = result["sys_created_on"].as_str().unwrap();
    assert!(chrono::NaiveDateTime::parse_from_str(created, "%Y-%m-%d %H:%M:%S").is_ok());
    assert_eq!(result["sys_updated_on"], json!(created));
    assert!(result.as_object().unwrap().values().all(Value::is_string));
    sim.stop().await;
}

#[tokio::test]
async fn the_stored_upload_keeps_the_bytes_and_their_sha256() {
    let sim = start(SimSettings::default()).await.unwrap();
    let cr = plant_cr(&sim);
    let (status, _) = answer(
        upload(
            &sim,
            "/api/now/attachment/file",
            &params("change_request", &cr, "a.txt"),
        )
        .header("Content-Type", "text/plain")
        .body("abc"),
    )
    .await;
    assert_eq!(status, 201);
    // 5 MB of every byte value, over the actix default limit and the sidecar's largest upload.
    let big: Vec<u8> = (0..5_000_000u32).map(|i| (i % 251) as u8).collect();
    let (status, body) = answer(
        upload(
            &sim,
            "/api/now/v1/attachment/file",
            &params("change_request", &cr, "big.bin"),
        )
        .header("Content-Type", "application/octet-stream")
        .body(big.clone()),
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(body["result"]["size_bytes"], json!("5000000"));

    let stored = sim.attachments();
    assert_eq!(stored.len(), 2);
    assert_eq!(stored[0].content, b"abc");
    assert_eq!(stored[0].sha256, ABC_SHA256);
    assert_eq!(stored[0].size_bytes, 3);
    assert_eq!(stored[0].content_type, "text/plain");
    assert_eq!(stored[0].table_sys_id, cr);
    assert_eq!(stored[1].content, big);
    assert_eq!(stored[1].file_name, "big.bin");
    assert_eq!(json!(stored[1].sys_id), body["result"]["sys_id"]);

    let listed: Value = reqwest::get(format!("{}/__sim/attachments", sim.url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["attachments"][0]["sha256"], json!(ABC_SHA256));
    assert_eq!(listed["attachments"][1]["sizeBytes"], json!(5_000_000));
    assert!(listed["attachments"][0].get("content").is_none());
    sim.stop().await;
}

#[tokio::test]
async fn a_missing_parameter_or_content_type_is_a_400() {
    let sim = start(SimSettings::default()).await.unwrap();
    let cr = plant_cr(&sim);
    let all = params("change_request", &cr, "a.txt");
    for missing in ["table_name", "table_sys_id", "file_name"] {
        let absent: Vec<_> = all.iter().copied().filter(|(k, _)| *k != missing).collect();
        let empty: Vec<_> = all
            .iter()
            .map(|&(k, v)| if k == missing { (k, "") } else { (k, v) })
            .collect();
        for query in [absent, empty] {
            let (status, body) = answer(
                upload(&sim, "/api/now/attachment/file", &query)
                    .header("Content-Type", "text/plain")
                    .body("abc"),
            )
            .await;
            assert_eq!(status, 400, "{missing}");
            assert_eq!(body["status"], json!("failure"));
            assert!(body["error"]["detail"].as_str().unwrap().contains(missing));
        }
    }
    // reqwest sets no Content-Type for a plain byte body.
    let (status, body) = answer(upload(&sim, "/api/now/attachment/file", &all).body("abc")).await;
    assert_eq!(status, 400);
    assert_eq!(
        body["error"]["message"],
        json!("Content-Type header is required")
    );
    assert!(sim.attachments().is_empty());
    sim.stop().await;
}

#[tokio::test]
async fn another_table_or_an_unknown_record_is_a_404() {
    let sim = start(SimSettings::default()).await.unwrap();
    let cr = plant_cr(&sim);
    let unknown = "0".repeat(32);
    for query in [
        params("incident", &cr, "a.txt"),
        params("change_request", &unknown, "a.txt"),
    ] {
        let (status, body) = answer(
            upload(&sim, "/api/now/attachment/file", &query)
                .header("Content-Type", "text/plain")
                .body("abc"),
        )
        .await;
        assert_eq!(status, 404);
        assert_eq!(body["status"], json!("failure"));
    }
    assert!(sim.attachments().is_empty());
    sim.stop().await;
}

#[tokio::test]
async fn only_the_change_apis_accounts_may_upload() {
    let sim = start(SimSettings::default()).await.unwrap();
    let cr = plant_cr(&sim);
    let url = format!("{}/api/now/attachment/file", sim.url());
    let query = params("change_request", &cr, "a.txt");
    let anonymous = reqwest::Client::new()
        .post(&url)
        .query(&query)
        .header("Content-Type", "text/plain")
        .body("abc");
    let (status, body) = answer(anonymous).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["message"], json!("User Not Authenticated"));
    let wrong = reqwest::Client::new()
        .post(&url)
        .basic_auth("admin", Some("nope"))
        .query(&query)
        .header("Content-Type", "text/plain")
        .body("abc");
    assert_eq!(answer(wrong).await.0, 401);

    // An OAuth access token from the password grant works as it does on the change API.
    let (_, grant) = answer(
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
    .await;
    let token = grant["access_token"].as_str().unwrap();
    let bearer = reqwest::Client::new()
        .post(&url)
        .bearer_auth(token)
        .query(&query)
        .header("Content-Type", "text/plain")
        .body("abc");
    assert_eq!(answer(bearer).await.0, 201);

    // Read-only accounts may not write the CR, so may not attach to it.
    sim.chg_set_roles(["sn_change_read"]);
    let (status, _) = answer(
        upload(&sim, "/api/now/attachment/file", &query)
            .header("Content-Type", "text/plain")
            .body("abc"),
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(sim.attachments().len(), 1);
    sim.stop().await;
}

#[tokio::test]
async fn an_injected_fault_answers_its_status_before_storing() {
    let sim = start(SimSettings::default()).await.unwrap();
    let cr = plant_cr(&sim);
    sim.inject_fault(Fault {
        endpoint: "attachment.post".into(),
        fail_next: 1,
        status: 503,
        latency_ms: 0,
    });
    let query = params("change_request", &cr, "a.txt");
    let send = || {
        upload(&sim, "/api/now/attachment/file", &query)
            .header("Content-Type", "text/plain")
            .body("abc")
    };
    let (status, body) = answer(send()).await;
    assert_eq!(status, 503);
    assert_eq!(body["status"], json!("failure"));
    assert!(sim.attachments().is_empty());
    assert_eq!(answer(send()).await.0, 201);
    assert_eq!(sim.attachments().len(), 1);
    sim.stop().await;
}

#[tokio::test]
async fn only_post_is_served_on_the_upload_path() {
    let sim = start(SimSettings::default()).await.unwrap();
    let response = reqwest::Client::new()
        .get(format!("{}/api/now/v1/attachment/file", sim.url()))
        .basic_auth("admin", Some("admin-password"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 405);
    sim.stop().await;
}

#[tokio::test]
async fn attachments_are_listed_by_encoded_query_and_read_back_with_their_bytes() {
    let sim = start(SimSettings::default()).await.unwrap();
    let cr = plant_cr(&sim);
    for (file, body) in [("a.txt", "abc"), ("b.txt", "other")] {
        let (status, _) = answer(
            upload(
                &sim,
                "/api/now/attachment/file",
                &params("change_request", &cr, file),
            )
            .header("Content-Type", "text/plain")
            .body(body),
        )
        .await;
        assert_eq!(status, 201);
    }
    let client = reqwest::Client::new();
    let list = |query: String| {
        client
            .get(format!("{}/api/now/attachment", sim.url()))
            .basic_auth("admin", Some("admin-password"))
            .query(&[("sysparm_query", query)])
    };
    let (status, body) = answer(list(format!(
        "table_name=change_request^table_sys_id={cr}^file_name=a.txt^ORDERBYsys_created_on"
    )))
    .await;
    assert_eq!(status, 200, "{body}");
    let rows = body["result"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{body}");
    assert_eq!(rows[0]["file_name"], "a.txt");
    assert_eq!(rows[0]["size_bytes"], "3");
    let id = rows[0]["sys_id"].as_str().unwrap();
    let file = client
        .get(format!("{}/api/now/attachment/{id}/file", sim.url()))
        .basic_auth("admin", Some("admin-password"))
        .send()
        .await
        .unwrap();
    assert_eq!(file.status().as_u16(), 200);
    assert_eq!(file.headers()["content-type"], "text/plain");
    assert_eq!(&file.bytes().await.unwrap()[..], b"abc");
    // A condition the simulator cannot read is refused, never answered with every row.
    let (status, _) = answer(list("size_bytes>1".into())).await;
    assert_eq!(status, 400);
    // Authentication as for the upload.
    let (status, _) = answer(
        client
            .get(format!("{}/api/now/attachment", sim.url()))
            .query(&[("sysparm_query", "file_name=a.txt")]),
    )
    .await;
    assert_eq!(status, 401);
    let (status, _) = answer(
        client
            .get(format!("{}/api/now/attachment/nope/file", sim.url()))
            .basic_auth("admin", Some("admin-password")),
    )
    .await;
    assert_eq!(status, 404);
}
