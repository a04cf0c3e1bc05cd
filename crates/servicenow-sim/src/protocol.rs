//! Pure parsing of what arrives at the simulated sn_devops API: paths, credentials, media
//! types, query values and the Jenkins names hidden in orchestration URLs. No I/O here, so
//! every rule is unit-tested on its own.

use base64::Engine;
use percent_encoding::percent_decode_str;

use super::SimSettings;

/// Which `/api/sn_devops/{api_version}/…` flavour a request used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ApiVersion {
    /// `/api/sn_devops/devops/…` (the API reference's "Default URL").
    Default,
    V1,
    V2,
}

/// The sn_devops orchestration endpoints the simulator serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Endpoint {
    ChangeControlGet,
    ChangeControlPost,
    /// `PUT …/changeControl/{changeControlId}` (the acknowledgement).
    ChangeControlPut {
        id: String,
    },
    StepMappingGet,
    StepMappingPost,
    ChangeInfoGet,
    /// `PUT …/changeInfo` or `PUT …/changeInfo/{changeInfo}`.
    ChangeInfoPut {
        id: Option<String>,
    },
    CallbackGet,
    /// `POST …/devops/tool/{capability}` (ServiceNow's DevOps API reference "DevOps - POST /devops/tool/{capability}"),
    /// `capability` lower-cased; the official plugin's stage events use `orchestration`.
    ToolEvent {
        capability: String,
    },
    /// `POST …/devops/artifact/registration`.
    ArtifactRegistration,
    /// `POST …/devops/package/registration`.
    PackageRegistration,
}

impl Endpoint {
    /// The key a [`super::Fault`] names this endpoint by.
    pub(crate) fn fault_key(&self) -> &'static str {
        match self {
            Endpoint::ChangeControlGet => "changeControl.get",
            Endpoint::ChangeControlPost => "changeControl.post",
            Endpoint::ChangeControlPut { .. } => "changeControl.put",
            Endpoint::StepMappingGet => "stepMapping.get",
            Endpoint::StepMappingPost => "stepMapping.post",
            Endpoint::ChangeInfoGet => "changeInfo.get",
            Endpoint::ChangeInfoPut { .. } => "changeInfo.put",
            Endpoint::CallbackGet => "callback.get",
            Endpoint::ToolEvent { .. } => "tool.post",
            Endpoint::ArtifactRegistration => "artifactRegistration.post",
            Endpoint::PackageRegistration => "packageRegistration.post",
        }
    }

    /// POST and PUT carry a JSON body (the API reference: "Content-Type … Only supports application/json").
    pub(crate) fn has_body(&self) -> bool {
        matches!(
            self,
            Endpoint::ChangeControlPost
                | Endpoint::ChangeControlPut { .. }
                | Endpoint::StepMappingPost
                | Endpoint::ChangeInfoPut { .. }
                | Endpoint::ToolEvent { .. }
                | Endpoint::ArtifactRegistration
                | Endpoint::PackageRegistration
        )
    }

    /// Only `POST changeControl` documents a default for `Accept` ("Default: application/json");
    /// every other endpoint says "Only supports application/json", and a request without the
    /// header is refused, as ServiceNow does.
    pub(crate) fn accept_defaults_to_json(&self) -> bool {
        matches!(self, Endpoint::ChangeControlPost)
    }

    /// `PUT changeInfo` is the one orchestration endpoint whose section in the API reference lists no `toolId`
    /// (and the official plugin sends only `changeRequestNumber`); there a given `toolId` must
    /// still be right. Registrations check their tools themselves (see `is_registration`).
    pub(crate) fn requires_tool_id(&self) -> bool {
        !matches!(self, Endpoint::ChangeInfoPut { .. }) && !self.is_registration()
    }

    /// Artifact and package registration: their `toolId` names an *artifact* tool (optional),
    /// and the orchestration tool comes as `orchestrationToolId` (required).
    pub(crate) fn is_registration(&self) -> bool {
        matches!(
            self,
            Endpoint::ArtifactRegistration | Endpoint::PackageRegistration
        )
    }
}

/// A parsed API route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Route {
    pub(crate) version: ApiVersion,
    pub(crate) endpoint: Endpoint,
}

/// Why a path did not name an endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RouteError {
    /// ServiceNow: 400 "Requested URI does not represent any resource".
    UnknownResource,
    /// A known resource, but not with this method.
    MethodNotAllowed,
}

/// Parses a raw (still percent-encoded) request path such as
/// `/api/sn_devops/v2/devops/orchestration/changeControl/pipeline_…`.
pub(crate) fn parse_route(method: &str, path: &str) -> Result<Route, RouteError> {
    let rest = path
        .strip_prefix("/api/sn_devops/")
        .ok_or(RouteError::UnknownResource)?;
    let (version, rest) = if let Some(r) = rest.strip_prefix("v1/") {
        (ApiVersion::V1, r)
    } else if let Some(r) = rest.strip_prefix("v2/") {
        (ApiVersion::V2, r)
    } else {
        (ApiVersion::Default, rest)
    };
    let rest = rest
        .strip_prefix("devops/")
        .ok_or(RouteError::UnknownResource)?;
    let endpoint = match registration_or_tool_endpoint(rest, method) {
        Some(endpoint) => endpoint?,
        None => orchestration_endpoint(rest, method)?,
    };
    Ok(Route { version, endpoint })
}

/// `artifact/registration`, `package/registration` and `tool/{capability}` (stage events), all
/// POST only; `None` for any other path under `devops/`.
fn registration_or_tool_endpoint(rest: &str, method: &str) -> Option<Result<Endpoint, RouteError>> {
    match rest {
        "artifact/registration" | "package/registration" if method != "POST" => {
            return Some(Err(RouteError::MethodNotAllowed))
        }
        "artifact/registration" => return Some(Ok(Endpoint::ArtifactRegistration)),
        "package/registration" => return Some(Ok(Endpoint::PackageRegistration)),
        _ => {}
    }
    let capability = rest.strip_prefix("tool/")?;
    if capability.is_empty() || capability.contains('/') {
        return Some(Err(RouteError::UnknownResource));
    }
    if method != "POST" {
        return Some(Err(RouteError::MethodNotAllowed));
    }
    Some(Ok(Endpoint::ToolEvent {
        capability: decode_again(capability).to_ascii_lowercase(),
    }))
}

/// `orchestration/{changeControl|stepMapping|changeInfo|callback}[/{id}]`.
fn orchestration_endpoint(rest: &str, method: &str) -> Result<Endpoint, RouteError> {
    let rest = rest
        .strip_prefix("orchestration/")
        .ok_or(RouteError::UnknownResource)?;
    let (resource, id) = match rest.split_once('/') {
        Some((resource, id)) => {
            if id.is_empty() || id.contains('/') {
                return Err(RouteError::UnknownResource);
            }
            (resource, Some(decode_again(id)))
        }
        None => (rest, None),
    };
    let endpoint = match (resource, id, method) {
        ("changeControl", None, "GET") => Endpoint::ChangeControlGet,
        ("changeControl", None, "POST") => Endpoint::ChangeControlPost,
        ("changeControl", Some(id), "PUT") => Endpoint::ChangeControlPut { id },
        ("stepMapping", None, "GET") => Endpoint::StepMappingGet,
        ("stepMapping", None, "POST") => Endpoint::StepMappingPost,
        ("changeInfo", None, "GET") => Endpoint::ChangeInfoGet,
        ("changeInfo", id, "PUT") => Endpoint::ChangeInfoPut { id },
        ("callback", None, "GET") => Endpoint::CallbackGet,
        ("changeControl" | "stepMapping" | "changeInfo" | "callback", _, _) => {
            return Err(RouteError::MethodNotAllowed)
        }
        _ => return Err(RouteError::UnknownResource),
    };
    Ok(endpoint)
}

/// Credentials found in one `Authorization` header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Credentials {
    Basic { user: String, password: String },
    DevOpsToken { tool_id: String, token: String },
}

/// Parses `Basic <base64(user:password)>` or `sn_devops.DevOpsToken <tool_sys_id>:<token>`.
/// Anything else (other schemes, bad base64, no colon) is `None`.
pub(crate) fn parse_authorization(value: &str) -> Option<Credentials> {
    let value = value.trim();
    let (scheme, rest) = value.split_once(' ')?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("basic") {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .ok()?;
        let text = String::from_utf8(bytes).ok()?;
        let (user, password) = text.split_once(':')?;
        Some(Credentials::Basic {
            user: user.to_string(),
            password: password.to_string(),
        })
    } else if scheme.eq_ignore_ascii_case("sn_devops.DevOpsToken") {
        let (tool_id, token) = rest.split_once(':')?;
        if tool_id.is_empty() || token.is_empty() {
            return None;
        }
        Some(Credentials::DevOpsToken {
            tool_id: tool_id.to_string(),
            token: token.to_string(),
        })
    } else {
        None
    }
}

/// Decides authentication from every `Authorization` header value of a request.
///
/// Seed (every orchestration section): token authentication exists "starting with v2", and "if
/// Basic Auth details … are provided in addition to an authorization header with token, Basic
/// Auth takes precedence" — so a wrong Basic pair fails even next to a good token. The default
/// URL (`/api/sn_devops/devops/…`) means "the latest version" of the instance, which the API reference
/// does not fix, so a token is not taken there: only an explicit `/v2/` promises token support.
pub(crate) fn is_authorized(values: &[&str], version: ApiVersion, settings: &SimSettings) -> bool {
    let credentials: Vec<Credentials> = values
        .iter()
        .filter_map(|v| parse_authorization(v))
        .collect();
    if let Some(Credentials::Basic { user, password }) = credentials
        .iter()
        .find(|c| matches!(c, Credentials::Basic { .. }))
    {
        return same(user, &settings.user) && same(password, &settings.password);
    }
    if version != ApiVersion::V2 {
        return false;
    }
    credentials.iter().any(|c| match c {
        Credentials::DevOpsToken { tool_id, token } => {
            same(tool_id, &settings.tool_id) && same(token, &settings.token)
        }
        Credentials::Basic { .. } => false,
    })
}

/// Equality that does not stop at the first differing byte.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The outcome of checking an `Accept` header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AcceptCheck {
    Missing,
    Json,
    NotAcceptable,
}

/// Whether an `Accept` header admits `application/json`. Wildcards count (Java's
/// `HttpURLConnection`, which the official plugin uses, sends `…, *; q=.2, */*; q=.2`), ranges
/// with `q=0` do not.
pub(crate) fn check_accept(value: Option<&str>) -> AcceptCheck {
    let Some(value) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return AcceptCheck::Missing;
    };
    for range in value.split(',') {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let refused = parts.any(|p| {
            p.trim()
                .strip_prefix("q=")
                .and_then(|q| q.trim().parse::<f32>().ok())
                .is_some_and(|q| q <= 0.0)
        });
        if refused {
            continue;
        }
        if matches!(
            media.as_str(),
            "application/json" | "application/*" | "*/*" | "*"
        ) {
            return AcceptCheck::Json;
        }
    }
    AcceptCheck::NotAcceptable
}

/// `application/json`, with or without parameters such as `charset=UTF-8`.
pub(crate) fn is_json_content_type(value: Option<&str>) -> bool {
    value
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
}

/// Query pairs decoded once, as a servlet container decodes them (`+` is a space).
pub(crate) fn query_pairs(raw: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(raw.as_bytes())
        .into_owned()
        .collect()
}

/// One more percent-decoding pass. The official plugin encodes URL-valued query parameters
/// itself before its HTTP layer encodes them again (the API reference's `https%253A%252F%252F…`), so the
/// script behind the API decodes a second time.
pub(crate) fn decode_again(value: &str) -> String {
    percent_decode_str(value).decode_utf8_lossy().into_owned()
}

/// The stage part of an orchestration task URL or name: what follows `#`, without the trailing
/// `/` (`https://ci/job/app#Deploy/Prod/` → `Deploy/Prod`; `app#Deploy` → `Deploy`).
pub(crate) fn stage_after_hash(value: &str) -> Option<String> {
    let (_, after) = value.split_once('#')?;
    let stage = after.strip_suffix('/').unwrap_or(after);
    (!stage.is_empty()).then(|| stage.to_string())
}

/// Like [`stage_after_hash`] for a query value decoded once: a `#` arrives as `%23` there.
pub(crate) fn stage_from_query_value(value: &str) -> Option<String> {
    stage_after_hash(value).or_else(|| stage_after_hash(&decode_again(value)))
}

/// Path segments of a URL (scheme, host, query and fragment removed), still encoded.
fn path_segments(url: &str) -> Vec<&str> {
    let before_fragment = url.split('#').next().unwrap_or("");
    let without_query = before_fragment.split('?').next().unwrap_or("");
    let path = match without_query.find("://") {
        Some(i) => {
            let rest = &without_query[i + 3..];
            rest.find('/').map_or("", |j| &rest[j..])
        }
        None => without_query,
    };
    path.split('/').filter(|s| !s.is_empty()).collect()
}

/// The Jenkins job names along a job URL, each decoded once:
/// `https://ci/job/folder/job/app#Deploy/` → `["folder", "app"]`.
pub(crate) fn job_segments(url: &str) -> Vec<String> {
    let segments = path_segments(url);
    let mut names = Vec::new();
    let mut i = 0;
    while i + 1 < segments.len() {
        if segments[i] == "job" {
            names.push(decode_again(segments[i + 1]));
            i += 2;
        } else {
            i += 1;
        }
    }
    names
}

/// The last path segment of a callback URL: `…/sn-devops/pipeline_<uuid>` → `pipeline_<uuid>`.
pub(crate) fn callback_token(callback_url: &str) -> Option<String> {
    let parsed = url::Url::parse(callback_url).ok()?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return None;
    }
    let token = parsed
        .path_segments()?
        .rev()
        .find(|s| !s.is_empty())?
        .to_string();
    Some(decode_again(&token))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(user: &str, password: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        )
    }

    fn token(tool_id: &str, token: &str) -> String {
        format!("sn_devops.DevOpsToken {tool_id}:{token}")
    }

    #[test]
    fn basic_and_token_headers_are_parsed() {
        assert_eq!(
            parse_authorization(&basic("admin", "p:w")),
            Some(Credentials::Basic {
                user: "admin".into(),
                password: "p:w".into()
            })
        );
        assert_eq!(
            parse_authorization("sn_devops.DevOpsToken abc:FtN13"),
            Some(Credentials::DevOpsToken {
                tool_id: "abc".into(),
                token: "FtN13".into()
            })
        );
        for bad in [
            "",
            "Basic",
            "Basic !!!",
            "Bearer abc",
            "sn_devops.DevOpsToken abc",
            "sn_devops.DevOpsToken :x",
            "Basic YWRtaW4=", // "admin" without a colon
        ] {
            assert_eq!(parse_authorization(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn tokens_only_authenticate_on_v2_and_basic_takes_precedence() {
        let s = SimSettings::default();
        let good_basic = basic(&s.user, &s.password);
        let good_token = token(&s.tool_id, &s.token);
        for version in [ApiVersion::Default, ApiVersion::V1, ApiVersion::V2] {
            assert!(is_authorized(&[&good_basic], version, &s));
        }
        assert!(is_authorized(&[&good_token], ApiVersion::V2, &s));
        assert!(!is_authorized(&[&good_token], ApiVersion::V1, &s));
        assert!(!is_authorized(&[&good_token], ApiVersion::Default, &s));
        let wrong_tool = token("0000", &s.token);
        assert!(!is_authorized(&[&wrong_tool], ApiVersion::V2, &s));
        let bad_basic = basic(&s.user, "nope");
        assert!(!is_authorized(
            &[&bad_basic, &good_token],
            ApiVersion::V2,
            &s
        ));
        assert!(!is_authorized(&[], ApiVersion::V2, &s));
    }

    #[test]
    fn accept_headers_are_judged_like_servicenow() {
        assert_eq!(check_accept(None), AcceptCheck::Missing);
        assert_eq!(check_accept(Some("  ")), AcceptCheck::Missing);
        for ok in [
            "application/json",
            "Application/JSON; charset=utf-8",
            "text/html, image/gif, image/jpeg, *; q=.2, */*; q=.2",
            "application/*",
        ] {
            assert_eq!(check_accept(Some(ok)), AcceptCheck::Json, "{ok}");
        }
        for bad in ["text/html", "application/xml", "application/json;q=0"] {
            assert_eq!(check_accept(Some(bad)), AcceptCheck::NotAcceptable, "{bad}");
        }
    }

    #[test]
    fn json_content_types_may_carry_a_charset() {
        assert!(is_json_content_type(Some("application/json")));
        assert!(is_json_content_type(Some(
            "application/json; charset=UTF-8"
        )));
        assert!(!is_json_content_type(Some("text/plain")));
        assert!(!is_json_content_type(Some(
            "application/x-www-form-urlencoded"
        )));
        assert!(!is_json_content_type(None));
    }

    #[test]
    fn routes_cover_every_version_and_endpoint() {
        let r = parse_route("GET", "/api/sn_devops/devops/orchestration/changeControl").unwrap();
        assert_eq!(r.version, ApiVersion::Default);
        assert_eq!(r.endpoint, Endpoint::ChangeControlGet);
        let r = parse_route(
            "PUT",
            "/api/sn_devops/v2/devops/orchestration/changeControl/pipeline_1",
        )
        .unwrap();
        assert_eq!(r.version, ApiVersion::V2);
        assert_eq!(
            r.endpoint,
            Endpoint::ChangeControlPut {
                id: "pipeline_1".into()
            }
        );
        let r = parse_route("PUT", "/api/sn_devops/v1/devops/orchestration/changeInfo").unwrap();
        assert_eq!(r.endpoint, Endpoint::ChangeInfoPut { id: None });
        let r = parse_route("GET", "/api/sn_devops/v1/devops/orchestration/callback").unwrap();
        assert_eq!(r.endpoint.fault_key(), "callback.get");
        let r = parse_route("POST", "/api/sn_devops/v2/devops/tool/Orchestration").unwrap();
        assert_eq!(
            r.endpoint,
            Endpoint::ToolEvent {
                capability: "orchestration".into()
            }
        );
        assert_eq!(
            parse_route("GET", "/api/sn_devops/v2/devops/tool/orchestration"),
            Err(RouteError::MethodNotAllowed)
        );
        let r = parse_route("POST", "/api/sn_devops/v2/devops/artifact/registration").unwrap();
        assert_eq!(r.endpoint, Endpoint::ArtifactRegistration);
        let r = parse_route("POST", "/api/sn_devops/devops/package/registration").unwrap();
        assert_eq!(r.version, ApiVersion::Default);
        assert_eq!(r.endpoint.fault_key(), "packageRegistration.post");
        assert_eq!(
            parse_route("GET", "/api/sn_devops/v1/devops/package/registration"),
            Err(RouteError::MethodNotAllowed)
        );
        assert_eq!(
            parse_route(
                "DELETE",
                "/api/sn_devops/v1/devops/orchestration/changeControl"
            ),
            Err(RouteError::MethodNotAllowed)
        );
        for unknown in [
            "/api/sn_devops/v3/devops/orchestration/changeControl",
            "/api/sn_devops/v1/devops/orchestration/nothing",
            "/api/sn_devops/v1/devops/orchestration/changeControl/a/b",
            "/api/sn_devops/v1/devops/artifact/registration/x",
            "/api/sn_devops/v1/devops/orchestration/artifact/registration",
            "/api/now/table/change_request",
        ] {
            assert_eq!(
                parse_route("GET", unknown),
                Err(RouteError::UnknownResource),
                "{unknown}"
            );
        }
    }

    #[test]
    fn stages_come_from_the_part_after_the_hash() {
        assert_eq!(
            stage_after_hash("https://ci/job/folder/job/app#Deploy/").as_deref(),
            Some("Deploy")
        );
        assert_eq!(
            stage_after_hash("https://ci/job/app#Deploy/Prod/").as_deref(),
            Some("Deploy/Prod")
        );
        assert_eq!(
            stage_after_hash("app#deploy PROD").as_deref(),
            Some("deploy PROD")
        );
        assert_eq!(stage_after_hash("https://ci/job/app/"), None);
        assert_eq!(stage_after_hash("app#"), None);
        assert_eq!(
            stage_from_query_value("app%23Deploy").as_deref(),
            Some("Deploy")
        );
    }

    #[test]
    fn job_names_come_from_jenkins_urls() {
        assert_eq!(
            job_segments("https://ci/job/folder/job/app#Deploy/"),
            vec!["folder", "app"]
        );
        assert_eq!(
            job_segments("http://192.168.0.4:3000/jenkins/job/mb/job/feature%252Fx/"),
            vec!["mb", "feature%2Fx"]
        );
    }

    #[test]
    fn callback_tokens_are_the_last_path_segment() {
        assert_eq!(
            callback_token("https://sg.example.com/sn-devops/pipeline_839b7605-b98d").as_deref(),
            Some("pipeline_839b7605-b98d")
        );
        assert_eq!(
            callback_token("http://127.0.0.1:8080/sn-devops/pipeline_x/").as_deref(),
            Some("pipeline_x")
        );
        assert_eq!(callback_token("not a url"), None);
        assert_eq!(callback_token("ftp://h/x"), None);
        assert_eq!(callback_token("http://h/"), None);
    }
}
