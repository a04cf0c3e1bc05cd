//! The Jenkins allow-list: where snowgate may send the Jenkins credentials.
//!
//! Input: one line is a build URL checked against `jenkins.url` http://jenkins.internal:8080/
//! and `jenkins.allowed_urls` [https://ci.example.com/jenkins/]; several lines are
//! `jenkins.url`, then `allowed_urls`, then the build URL last.
//!
//! Beyond "no panic", the security property. Whatever `resolve` accepts was given with the
//! scheme, host and port of an allowed base and a path under that base's path, written plainly
//! (no backslash, no user information, no empty, `.` or `..` segment, also percent-encoded);
//! it is rebased onto `jenkins.url` (same scheme, host and port, path under its path), again
//! with no such segment, backslash, user information, query or fragment, is permitted by
//! `permits`, and resolves to itself again. Whatever `permits` accepts is on `jenkins.url`,
//! with no user information and no empty or dot segment.
#![no_main]

use libfuzzer_sys::fuzz_target;
use percent_encoding::percent_decode_str;
use snowgate::jenkins::AllowList;
use url::Url;

/// Same scheme, host and port as `base`, and a path at or under `base`'s path.
fn on_base(base: &Url, url: &Url) -> bool {
    let base_path = base.path().trim_end_matches('/');
    url.scheme() == base.scheme()
        && url.host() == base.host()
        && url.port_or_known_default() == base.port_or_known_default()
        && url
            .path()
            .strip_prefix(base_path)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// A segment that a reader could take for something else: empty, `.` or `..` (also written
/// with `%2e`), or holding a `/` or `\` once percent-decoded.
fn tricky_segment(segment: &str) -> bool {
    let decoded = percent_decode_str(segment).decode_utf8_lossy();
    matches!(&*decoded, "" | "." | "..") || decoded.contains(['/', '\\'])
}

/// The path's segments (after the leading `/`), less the empty one a trailing `/` leaves.
fn segments(path: &str) -> Vec<&str> {
    let mut segments: Vec<&str> = path.split('/').skip(1).collect();
    if segments.last() == Some(&"") {
        segments.pop();
    }
    segments
}

/// The raw text `resolve` accepted, read without a URL parser: `http(s)://`, an authority
/// without `@`, then a path of plain segments, and nothing a parser would rewrite.
fn check_accepted_text(text: &str) {
    assert!(!text.contains('\\'), "accepted a backslash: {text:?}");
    assert!(
        !text.contains(['?', '#']),
        "accepted a query or fragment: {text:?}"
    );
    assert!(
        !text.chars().any(|c| c.is_control() || c.is_whitespace()),
        "accepted a control character or space: {text:?}"
    );
    let lower = text.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("http://")
        .or_else(|| lower.strip_prefix("https://"))
        .unwrap_or_else(|| panic!("accepted without `http://` or `https://`: {text:?}"));
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    assert!(
        !authority.contains('@'),
        "accepted user information: {text:?}"
    );
    for segment in segments(path) {
        assert!(
            !tricky_segment(segment),
            "accepted the segment {segment:?}: {text:?}"
        );
    }
}

/// What snowgate sends a request to: no user information, no backslash, plain segments.
fn check_outbound(url: &Url, from: &str) {
    assert!(
        url.username().is_empty() && url.password().is_none(),
        "{url} (from {from:?}) has user information"
    );
    assert!(!url.as_str().contains('\\'), "{url} (from {from:?})");
    for segment in segments(url.path()) {
        assert!(
            !tricky_segment(segment),
            "{url} (from {from:?}) has the segment {segment:?}"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (bases, build_url): (Vec<String>, &str) = match text.rsplit_once('\n') {
        Some((head, last)) => (head.split('\n').take(4).map(str::to_string).collect(), last),
        None => (
            vec![
                "http://jenkins.internal:8080/".to_string(),
                "https://ci.example.com/jenkins/".to_string(),
            ],
            text,
        ),
    };
    let Some((base, also)) = bases.split_first() else {
        return;
    };
    let Ok(list) = AllowList::new(base, also) else {
        return;
    };
    let jenkins = list.base().clone();
    let known: Vec<Url> = bases.iter().filter_map(|b| Url::parse(b).ok()).collect();

    if let Ok(url) = list.resolve(build_url) {
        check_accepted_text(build_url);
        assert!(
            on_base(&jenkins, &url),
            "{build_url:?} resolved to {url} outside jenkins.url {jenkins}"
        );
        check_outbound(&url, build_url);
        assert!(url.query().is_none() && url.fragment().is_none(), "{url}");
        assert!(
            list.permits(&url),
            "{build_url:?} resolved to {url}, which permits refuses"
        );
        let given = Url::parse(build_url).expect("an accepted build URL parses");
        assert!(
            known.iter().any(|k| on_base(k, &given)),
            "{build_url:?} accepted though under no known base"
        );
        assert_eq!(
            list.resolve(url.as_str()).as_ref(),
            Ok(&url),
            "{url} (from {build_url:?}) does not resolve to itself"
        );
    }
    if let Ok(url) = Url::parse(build_url) {
        if list.permits(&url) {
            assert!(on_base(&jenkins, &url), "permits {url} outside {jenkins}");
            check_outbound(&url, build_url);
        }
    }
});
