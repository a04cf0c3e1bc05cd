//! A Jenkins controller double that behaves as a Jenkins controller does: an input answers 404 until
//! the build reaches it, ids are matched case-sensitively (Jenkins capitalises the first
//! letter), Basic auth must be sent preemptively, and an answered input gives 400 with
//! `X-Error`.
use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use base64::Engine;
use serde_json::json;

#[derive(Clone, Debug)]
pub struct JenkinsRequest {
    pub method: String,
    pub path: String,
    pub query: String,
    pub authorization: Option<String>,
    pub body: String,
}

#[derive(Default)]
struct Build {
    building: bool,
    result: Option<String>,
    /// input id → (reached, answer)
    inputs: HashMap<String, (bool, Option<String>)>,
    /// input id → the only submitter allowed (`input submitter: 'alice'`).
    submitters: HashMap<String, String>,
}

#[derive(Default)]
struct State {
    builds: HashMap<String, Build>,
    requests: Vec<JenkinsRequest>,
}

pub struct JenkinsFake {
    pub url: String,
    pub user: String,
    pub token: String,
    state: Arc<Mutex<State>>,
    handle: actix_web::dev::ServerHandle,
}

impl Drop for JenkinsFake {
    fn drop(&mut self) {
        let h = self.handle.clone();
        tokio::spawn(async move { h.stop(false).await });
    }
}

fn expected_auth(user: &str, token: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{token}"))
    )
}

async fn handle(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<Arc<Mutex<State>>>,
    auth: web::Data<String>,
) -> HttpResponse {
    let presented = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let path = req.path().to_string();
    let mut st = state.lock().unwrap();
    st.requests.push(JenkinsRequest {
        method: req.method().to_string(),
        path: path.clone(),
        query: req.query_string().to_string(),
        authorization: presented.clone(),
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    // API tokens must come preemptively; without them Jenkins answers 401/403.
    if presented.as_deref() != Some(auth.get_ref().as_str()) {
        return HttpResponse::Unauthorized().body("Unauthorized");
    }
    if path == "/whoAmI/api/json" {
        return HttpResponse::Ok()
            .json(json!({"name": "snowgate", "authenticated": true, "anonymous": false}));
    }
    if let Some(build_path) = path.strip_suffix("api/json") {
        return match st.builds.get(build_path) {
            Some(b) => HttpResponse::Ok().json(json!({
                "_class": "org.jenkinsci.plugins.workflow.job.WorkflowRun",
                "building": b.building,
                "result": b.result,
            })),
            None => HttpResponse::NotFound().body("Not Found"),
        };
    }
    if req.method() != actix_web::http::Method::POST {
        return HttpResponse::MethodNotAllowed().finish();
    }
    let Some(idx) = path.find("/input/") else {
        return HttpResponse::NotFound().finish();
    };
    let build_path = &path[..idx + 1];
    let rest: Vec<&str> = path[idx + "/input/".len()..].split('/').collect();
    let [id, action] = rest[..] else {
        return HttpResponse::NotFound().finish();
    };
    let Some(build) = st.builds.get_mut(build_path) else {
        return HttpResponse::NotFound().finish();
    };
    match build.inputs.get_mut(id) {
        Some((true, answer)) if build.building => {
            if let Some(prev) = answer {
                let _ = prev;
                // InputStepExecution.preSubmissionCheck: a settled input.
                return HttpResponse::BadRequest()
                    .insert_header(("X-Error", "This input has been already given"))
                    .finish();
            }
            if !matches!(action, "proceedEmpty" | "proceed" | "abort") {
                return HttpResponse::NotFound().finish();
            }
            // InputStepExecution.preSubmissionCheck: only the named submitter may answer.
            if let Some(submitter) = build.submitters.get(id) {
                if submitter != "snowgate" {
                    return HttpResponse::BadRequest()
                        .insert_header((
                            "X-Error",
                            format!("You need to be {submitter} to submit this"),
                        ))
                        .finish();
                }
            }
            *answer = Some(action.to_string());
            build.building = action != "abort";
            // The input step's proceed, proceedEmpty and abort answer `HttpResponses.ok()`
            // (pipeline-input-step's InputStepExecution): a plain 200 with no body.
            HttpResponse::Ok().finish()
        }
        _ => HttpResponse::NotFound().body("Not Found"),
    }
}

impl JenkinsFake {
    pub async fn start() -> JenkinsFake {
        let state = Arc::new(Mutex::new(State::default()));
        let (user, token) = (
            "snowgate".to_string(),
            "jenkins-api-token-1234567890".to_string(),
        );
        let auth = expected_auth(&user, &token);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let data = web::Data::new(state.clone());
        let auth_data = web::Data::new(auth);
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .app_data(auth_data.clone())
                .default_service(web::to(handle))
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .unwrap()
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        JenkinsFake {
            url,
            user,
            token,
            state,
            handle,
        }
    }

    /// A running build at `path` (e.g. `/job/shop/job/app/42/`) with an input `id` (as Jenkins
    /// names it, capitalised), reached or not yet.
    pub fn add_build(&self, path: &str, id: &str, reached: bool) {
        let mut st = self.state.lock().unwrap();
        let b = st.builds.entry(path.to_string()).or_default();
        b.building = true;
        b.inputs.insert(id.to_string(), (reached, None));
    }

    /// Only `submitter` may answer the input (`input submitter: …`).
    pub fn restrict(&self, path: &str, id: &str, submitter: &str) {
        let mut st = self.state.lock().unwrap();
        st.builds
            .get_mut(path)
            .unwrap()
            .submitters
            .insert(id.to_string(), submitter.to_string());
    }

    pub fn reach(&self, path: &str, id: &str) {
        let mut st = self.state.lock().unwrap();
        st.builds
            .get_mut(path)
            .unwrap()
            .inputs
            .get_mut(id)
            .unwrap()
            .0 = true;
    }

    pub fn finish_build(&self, path: &str, result: &str) {
        let mut st = self.state.lock().unwrap();
        let b = st.builds.get_mut(path).unwrap();
        b.building = false;
        b.result = Some(result.to_string());
    }

    pub fn answer_of(&self, path: &str, id: &str) -> Option<String> {
        let st = self.state.lock().unwrap();
        st.builds.get(path)?.inputs.get(id)?.1.clone()
    }

    pub fn requests(&self) -> Vec<JenkinsRequest> {
        self.state.lock().unwrap().requests.clone()
    }

    pub fn expected_auth(&self) -> String {
        expected_auth(&self.user, &self.token)
    }
}
