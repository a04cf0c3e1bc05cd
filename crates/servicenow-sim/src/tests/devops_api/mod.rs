//! Scenarios against a running simulator (real HTTP on port 0) and a small callback receiver.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use serde_json::{json, Value};

use crate::plugin_forms::{plugin_acknowledgement, plugin_registration};
use crate::*;

mod admin;
mod lifecycle;
mod refusals;

/// The callbacks a [`Receiver`] got: `Authorization` header and JSON body.
type Seen = Arc<Mutex<Vec<(Option<String>, Value)>>>;

/// A pipeline-side endpoint that records every callback it gets.
struct Receiver {
    url: String,
    seen: Seen,
    server: actix_web::dev::ServerHandle,
}

impl Receiver {
    async fn start() -> Receiver {
        let seen: Seen = Arc::default();
        let data = web::Data::new(Arc::clone(&seen));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = HttpServer::new(move || {
            App::new().app_data(data.clone()).default_service(web::to(
                |req: HttpRequest, body: web::Bytes, seen: web::Data<Seen>| async move {
                    let auth = req
                        .headers()
                        .get("authorization")
                        .map(|v| v.to_str().unwrap().to_string());
                    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    seen.lock().unwrap().push((auth, body));
                    HttpResponse::Ok().json(json!({"ok": true}))
                },
            ))
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .unwrap()
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        Receiver {
            url,
            seen,
            server: handle,
        }
    }

    fn callback_url(&self, token: &str) -> String {
        format!("{}/sn-devops/{token}", self.url)
    }

    fn seen(&self) -> Vec<(Option<String>, Value)> {
        self.seen.lock().unwrap().clone()
    }

    async fn wait_for(&self, count: usize) -> Vec<(Option<String>, Value)> {
        for _ in 0..200 {
            let seen = self.seen();
            if seen.len() >= count {
                return seen;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("expected {count} callbacks, got {:?}", self.seen());
    }

    async fn stop(self) {
        self.server.stop(false).await;
    }
}

fn api(sim: &SimHandle, version: &str, resource: &str) -> String {
    let version = if version.is_empty() {
        String::new()
    } else {
        format!("{version}/")
    };
    format!(
        "{}/api/sn_devops/{version}devops/orchestration/{resource}",
        sim.url()
    )
}

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

fn tool_id() -> String {
    SimSettings::default().tool_id
}

/// The official plugin's registration for `stage` of build `build` of a known pipeline.
fn registration(callback_url: &str, stage: &str, build: u32) -> Value {
    plugin_registration(
        callback_url,
        "https://ci.example.com/job/folder/job/app/",
        stage,
        build,
        None,
    )
}

async fn register(sim: &SimHandle, body: &Value) -> (u16, Value) {
    let response = client()
        .post(api(sim, "v1", "changeControl"))
        .query(&[("toolId", tool_id().as_str()), ("toolType", "jenkins")])
        .basic_auth("admin", Some("admin-password"))
        .header("Accept", "application/json")
        .json(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}
