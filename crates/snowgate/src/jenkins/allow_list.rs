//! Where snowgate may send the Jenkins credentials: `jenkins.url`, and build URLs under
//! `jenkins.url` or one of `jenkins.allowed_urls` (rewritten onto `jenkins.url`).
//!
//! The decision is taken on the parsed URL: scheme, host and port must equal an allowed base's
//! and the parsed path must lie under the base's path. Because a URL parser normalises what it
//! reads (`\` becomes `/`, `.` and `..` segments disappear, tabs and newlines are dropped), the
//! raw text is refused first when it holds anything a parser would rewrite or that could make
//! two readers disagree on the host or the path: backslashes, control characters and spaces,
//! empty, `.` or `..` path segments, percent-encoded `/`, `\` or `.`, and user information.
//! Jenkins itself never writes any of these into a build URL (a branch `feature/x` of a
//! multibranch project is `job/feature%252Fx/`).
use url::Url;

#[derive(Clone, Debug)]
pub struct AllowList {
    base: Url,
    known_as: Vec<Url>,
}

impl AllowList {
    /// `base` is `jenkins.url`; `also` are `jenkins.allowed_urls`. Each must be an absolute
    /// http(s) URL without user information, query or fragment.
    pub fn new(base: &str, also: &[String]) -> Result<AllowList, String> {
        let base = parse_base(base)?;
        let mut known_as = vec![base.clone()];
        for u in also {
            known_as.push(parse_base(u)?);
        }
        Ok(AllowList { base, known_as })
    }

    pub fn base(&self) -> &Url {
        &self.base
    }

    /// The build URL rebased onto `jenkins.url` (with a trailing `/`), or why it is refused.
    pub fn resolve(&self, build_url: &str) -> Result<Url, String> {
        check_raw(build_url)?;
        let parsed = Url::parse(build_url).map_err(|e| format!("is not a URL: {e}"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(format!(
                "must be an http or https URL, not `{}:`",
                parsed.scheme()
            ));
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err("must not carry user information (`user@`)".into());
        }
        if parsed.query().is_some() || parsed.fragment().is_some() {
            return Err("must not carry a query or fragment".into());
        }
        for known in &self.known_as {
            if let Some(rest) = under(known, &parsed) {
                let mut path = self.base.path().trim_end_matches('/').to_string();
                path.push('/');
                path.push_str(rest);
                if !path.ends_with('/') {
                    path.push('/');
                }
                let mut rebuilt = self.base.clone();
                rebuilt.set_path(&path);
                // Rebuilding must not have changed what the check saw.
                return if self.permits(&rebuilt) {
                    Ok(rebuilt)
                } else {
                    Err("cannot be rebased onto jenkins.url".into())
                };
            }
        }
        Err(format!(
            "is not under jenkins.url or jenkins.allowed_urls ({}); snowgate sends Jenkins credentials only there",
            self.known_as
                .iter()
                .map(Url::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        ))
    }

    /// Whether an outbound request to `url` stays on `jenkins.url`: checked again just before
    /// every call, whatever built the URL.
    pub fn permits(&self, url: &Url) -> bool {
        url.username().is_empty()
            && url.password().is_none()
            && under(&self.base, url).is_some()
            && check_raw(url.as_str()).is_ok()
    }
}

fn parse_base(u: &str) -> Result<Url, String> {
    let parsed = Url::parse(u).map_err(|e| format!("`{u}` is not a URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
        return Err(format!("`{u}` must be an http or https URL"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(format!("`{u}` must not carry user information"));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(format!("`{u}` must not carry a query or fragment"));
    }
    Ok(parsed)
}

/// The rest of `url`'s path after `base`'s path, when scheme, host and port are the same and
/// the path lies under the base's at a segment boundary.
fn under<'a>(base: &Url, url: &'a Url) -> Option<&'a str> {
    if url.scheme() != base.scheme()
        || url.host() != base.host()
        || url.port_or_known_default() != base.port_or_known_default()
    {
        return None;
    }
    let base_path = base.path().trim_end_matches('/');
    let rest = url.path().strip_prefix(base_path)?;
    match rest {
        "" => Some(rest),
        r if r.starts_with('/') => Some(&r[1..]),
        _ => None,
    }
}

/// Refuse what a URL parser would silently rewrite, before parsing.
fn check_raw(text: &str) -> Result<(), String> {
    if let Some(c) = text.chars().find(|c| c.is_control() || c.is_whitespace()) {
        return Err(format!("must not contain {c:?}"));
    }
    if text.contains('\\') {
        return Err("must not contain `\\`".into());
    }
    let lower = text.to_ascii_lowercase();
    for (encoded, what) in [("%2f", "/"), ("%5c", "\\"), ("%2e", ".")] {
        if lower.contains(encoded) {
            return Err(format!(
                "must not contain a percent-encoded `{what}` ({encoded})"
            ));
        }
    }
    // The scheme must be followed by `://` itself: the parser also reads `http:/host` and
    // `http:host`, and a later `://` would then be taken for the start of the host here.
    let after_scheme = text
        .split_once("://")
        .filter(|(scheme, _)| {
            scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https")
        })
        .map(|(_, r)| r)
        .ok_or("must be an absolute http or https URL")?;
    let path_and_more = match after_scheme.find('/') {
        Some(i) => &after_scheme[i..],
        None => "",
    };
    if after_scheme[..after_scheme.len() - path_and_more.len()].contains('@') {
        return Err("must not carry user information (`user@`)".into());
    }
    let path = path_and_more
        .split(['?', '#'])
        .next()
        .unwrap_or(path_and_more);
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    for (i, segment) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        match *segment {
            "" if !last => return Err("must not contain an empty path segment (`//`)".into()),
            "." | ".." => return Err(format!("must not contain a `{segment}` path segment")),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list() -> AllowList {
        AllowList::new(
            "http://jenkins.internal:8080/",
            &["https://ci.example.com/jenkins/".into()],
        )
        .unwrap()
    }

    #[test]
    fn build_urls_under_a_known_base_are_rebased_onto_jenkins_url() {
        let l = list();
        for (given, expected) in [
            (
                "https://ci.example.com/jenkins/job/app/42/",
                "http://jenkins.internal:8080/job/app/42/",
            ),
            (
                "https://CI.example.com:443/jenkins/job/app/42",
                "http://jenkins.internal:8080/job/app/42/",
            ),
            (
                "http://jenkins.internal:8080/job/a%20b/7",
                "http://jenkins.internal:8080/job/a%20b/7/",
            ),
            (
                "http://jenkins.internal:8080/job/mb/job/feature%252Fx/3/",
                "http://jenkins.internal:8080/job/mb/job/feature%252Fx/3/",
            ),
        ] {
            assert_eq!(l.resolve(given).unwrap().as_str(), expected, "{given}");
        }
    }

    #[test]
    fn a_base_under_a_path_keeps_its_path() {
        let l = AllowList::new("http://j:8080/ci/", &[]).unwrap();
        assert_eq!(
            l.resolve("http://j:8080/ci/job/x/1/").unwrap().as_str(),
            "http://j:8080/ci/job/x/1/"
        );
        assert!(l.resolve("http://j:8080/cix/job/x/1/").is_err());
        assert!(l.resolve("http://j:8080/job/x/1/").is_err());
        // Without the trailing `/` (found by fuzzing: rebased onto `/cijob/x/1/`, then refused).
        let l = AllowList::new("http://j:8080/ci", &[]).unwrap();
        assert_eq!(
            l.resolve("http://j:8080/ci/job/x/1/").unwrap().as_str(),
            "http://j:8080/ci/job/x/1/"
        );
        assert!(l.resolve("http://j:8080/cix/job/x/1/").is_err());
        // The fuzz target's input: `//jenkin` was accepted as `/ci/jenkin/`.
        let l = AllowList::new("http://j:8080/ci", &["http://ttp/".into()]).unwrap();
        assert!(l.resolve("http:/ttp://jenkin").is_err());
    }

    #[test]
    fn the_raw_checks_start_after_the_schemes_own_slashes() {
        // Found by fuzzing: the parser reads `http:/host` and `http:host` too, and the raw
        // checks took a later `://` for the start of the host, so `//` and `..` went unseen.
        for case in [
            "http:/jenkins.internal:8080//x/1/a://b",
            "http:/jenkins.internal:8080/job/../../a://x",
            "http:jenkins.internal:8080//x/1/a://b",
            "http:/ttp://jenkin",
        ] {
            assert_eq!(
                check_raw(case),
                Err("must be an absolute http or https URL".to_string()),
                "{case}"
            );
            assert!(list().resolve(case).is_err(), "accepted {case:?}");
        }
        assert!(check_raw("HTTPS://ci.example.com/jenkins/job/x/1/").is_ok());
    }

    #[test]
    fn every_class_of_trick_is_refused() {
        let l = list();
        let cases = [
            // Extra slashes and backslashes that resolve to another host.
            "http://jenkins.internal:8080//other-host:9000/job/x/1/",
            "http://jenkins.internal:8080///other-host/job/x/1/",
            "http://jenkins.internal:8080/\\\\other-host/job/x/1/",
            "http://jenkins.internal:8080\\\\other-host/job/x/1/",
            "http://jenkins.internal:8080/\\other-host/job/x/1/",
            "http://jenkins.internal:8080/job//x/1/",
            // Dot segments.
            "http://jenkins.internal:8080/job/../../x/1/",
            "https://ci.example.com/jenkins/../job/x/1/",
            "http://jenkins.internal:8080/./job/x/1/",
            // Percent-encoded slash, backslash and dot.
            "http://jenkins.internal:8080/job/x%2F..%2F..%2Fy/1/",
            "http://jenkins.internal:8080/job/x%5cy/1/",
            "http://jenkins.internal:8080/job/%2e%2e/1/",
            "http://jenkins.internal:8080/job/%2E/1/",
            // User information.
            "http://user@jenkins.internal:8080/job/x/1/",
            "http://jenkins.internal:8080@other-host/job/x/1/",
            "http://u:p@jenkins.internal:8080/job/x/1/",
            // Other scheme, host or port.
            "https://jenkins.internal:8080/job/x/1/",
            "ftp://jenkins.internal:8080/job/x/1/",
            "http://jenkins.internal:8081/job/x/1/",
            "http://jenkins.internal/job/x/1/",
            "http://other-host:8080/job/x/1/",
            "http://jenkins.internal.evil.org:8080/job/x/1/",
            "https://ci.example.com/jenkinsx/job/x/1/",
            "https://ci.example.com/job/x/1/",
            "http://127.0.0.2:8080/job/x/1/",
            // Characters a parser drops or rewrites.
            "http://jenkins.internal:8080/jo\tb/x/1/",
            "http://jenkins.internal:8080/job/x/1/\n",
            " http://jenkins.internal:8080/job/x/1/",
            // Query and fragment.
            "http://jenkins.internal:8080/job/x/1/?a=b",
            "http://jenkins.internal:8080/job/x/1/#top",
            // Not a URL at all.
            "jenkins.internal:8080/job/x/1/",
            "/job/x/1/",
            "",
        ];
        for case in cases {
            assert!(l.resolve(case).is_err(), "accepted {case:?}");
        }
    }

    #[test]
    fn outbound_urls_are_checked_against_jenkins_url_only() {
        let l = list();
        let ok = Url::parse("http://jenkins.internal:8080/job/x/1/input/A/proceedEmpty").unwrap();
        assert!(l.permits(&ok));
        for bad in [
            "https://ci.example.com/jenkins/job/x/1/",
            "http://other-host:8080/job/x/1/",
            "http://jenkins.internal:8081/job/x/1/",
            "http://u@jenkins.internal:8080/job/x/1/",
            "http://jenkins.internal:8080//x/1/",
        ] {
            assert!(!l.permits(&Url::parse(bad).unwrap()), "{bad}");
        }
    }

    #[test]
    fn bases_with_user_information_or_queries_are_refused() {
        assert!(AllowList::new("http://u:p@j/", &[]).is_err());
        assert!(AllowList::new("http://j/?x", &[]).is_err());
        assert!(AllowList::new("ftp://j/", &[]).is_err());
        assert!(AllowList::new("http://j/", &["http://a@b/".into()]).is_err());
    }
}
