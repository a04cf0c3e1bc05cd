//! The one HTTP client builder of the ServiceNow clients (DevOps, Change API, OAuth).
use crate::configuration::ServiceNowSettings;

/// The client every ServiceNow call goes through: timeouts, proxy, extra CA certificates, the
/// user agent, and no redirects. A redirect would re-send the request (the registration carries
/// the callback URL and token, the grant the password) to whatever host `Location` names, so a
/// 3xx is an error instead (`ServiceNowError::Redirect`).
pub fn http_client(s: &ServiceNowSettings) -> anyhow::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .timeout(s.timeout.0)
        .connect_timeout(s.connect_timeout.0)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("snowgate/", env!("CARGO_PKG_VERSION")));
    if let Some(p) = &s.proxy {
        builder = builder.proxy(reqwest::Proxy::all(p)?);
    }
    if let Some(ca) = &s.ca_file {
        let pem = std::fs::read(ca)
            .map_err(|e| anyhow::anyhow!("servicenow.ca_file {}: {e}", ca.display()))?;
        for cert in reqwest::Certificate::from_pem_bundle(&pem)? {
            builder = builder.add_root_certificate(cert);
        }
    }
    Ok(builder.build()?)
}

/// The host (and port) a redirect's `Location` names, for the error; never its path or query,
/// which may carry a token.
pub fn location_host(headers: &reqwest::header::HeaderMap) -> String {
    let Some(location) = headers
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
    else {
        return "nowhere (no Location header)".into();
    };
    match url::Url::parse(location) {
        Ok(u) => match (u.host_str(), u.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_string(),
            (None, _) => "a URL without a host".into(),
        },
        Err(_) => "a path on the same host".into(),
    }
}
