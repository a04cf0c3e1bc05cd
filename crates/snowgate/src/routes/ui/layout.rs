//! The frame every page shares (head, CSS, header with the operator and the logout form), the
//! escaping of spliced text, and the small cells and formats the overview and the gate page
//! both show.
use chrono::{DateTime, Utc};
use maud::{html, Markup, Render, DOCTYPE};
use uuid::Uuid;

use super::session::Session;
use crate::domain::{Gate, GateState};

/// Text spliced into a template, escaped by maud (`&`, `<`, `>`, `"`) and, beyond what maud
/// does, with `'` as `&#39;`: the value then stays inert even in a single-quoted attribute, and
/// the page reads exactly as it did before the templates.
pub(super) struct Text<'a>(pub &'a str);

impl Render for Text<'_> {
    fn render_to(&self, buffer: &mut String) {
        let mut parts = self.0.split('\'');
        if let Some(first) = parts.next() {
            first.render_to(buffer);
        }
        for part in parts {
            buffer.push_str("&#39;");
            part.render_to(buffer);
        }
    }
}

/// The page's only style sheet, inline: the CSP allows inline styles and nothing else, and the
/// page must work without internet access.
const CSS: &str = "
body{font-family:system-ui,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
header{display:flex;align-items:center;gap:1em;background:#1d2330;color:#fff;padding:.6em 1.2em}
header a{color:#fff;text-decoration:none;font-weight:600}
header .who{margin-left:auto;font-size:.9em}
header form{display:inline;margin:0}
main{padding:1em 1.2em}
h1{font-size:1.3em}h2{font-size:1.1em;margin-top:1.6em}
table{border-collapse:collapse;width:100%;background:#fff;font-size:.9em}
th,td{border:1px solid #d8dce3;padding:.35em .5em;text-align:left;vertical-align:top}
th{background:#eceff3}
dl{display:grid;grid-template-columns:max-content auto;gap:.3em 1em;background:#fff;padding:1em}
dt{font-weight:600}dd{margin:0}
.state{padding:.1em .45em;border-radius:.3em;background:#e3e6ea;white-space:nowrap}
.pending,.registering{background:#fff1c2}
.approved,.resumed,.not_controlled{background:#d4f3d9}
.frozen{background:#dfe8f7}
.rejected,.canceled,.failed,.timed_out,.aborted,.superseded{background:#f8d3d3}
.error{color:#8a1010;background:#fde8e8;padding:.6em;border:1px solid #f1b5b5}
.notice{background:#e6f2ff;padding:.6em;border:1px solid #b7d6f5}
.actions{display:flex;gap:2em;flex-wrap:wrap}
.actions form{background:#fff;padding:1em;border:1px solid #d8dce3}
input[type=text],input[type=password]{width:24em;max-width:100%}
button{padding:.3em .9em}
.muted{color:#667}
.filters{background:#fff;padding:.6em;border:1px solid #d8dce3;margin-bottom:.8em}
.filters input[type=text],.filters input[type=search]{width:16em}
.charts{display:flex;flex-wrap:wrap;gap:1em}
figure{margin:0;background:#fff;border:1px solid #d8dce3;padding:.5em}
figcaption{font-size:.85em;color:#667}
svg.chart{display:block;max-width:100%;height:auto;font-family:system-ui,sans-serif}
";

/// A whole page around `content`. `refresh`: reload every so many seconds (a `<meta refresh>`,
/// no script).
pub(super) fn layout(
    title: &str,
    session: Option<&Session>,
    refresh: Option<u32>,
    content: Markup,
) -> Markup {
    html! {
        (DOCTYPE) "\n"
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                @if let Some(secs) = refresh {
                    meta http-equiv="refresh" content=(secs);
                }
                title { (Text(title)) " · snowgate" }
                style { (CSS) }
            }
            body {
                header {
                    a href="/ui" { "snowgate" }
                    span { "change-controlled stages" }
                    @if let Some(s) = session {
                        (operator(s))
                    }
                }
                main { (content) }
            }
        }
        "\n"
    }
}

/// The header's right end: who is logged in, and the logout form when there is a login.
fn operator(s: &Session) -> Markup {
    html! {
        span class="who" { "operator " strong { (Text(&s.operator)) } }
        @if s.cookie {
            form method="post" action="/ui/logout" {
                input type="hidden" name="csrf" value=(Text(&s.csrf()));
                button type="submit" { "Log out" }
            }
        }
    }
}

/// A URL fit for an `href`: absolute http(s) only, so a value such as `javascript:…` from a
/// request or a callback never becomes a link.
fn safe_href(url: &str) -> Option<&str> {
    match url::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Some(url),
        _ => None,
    }
}

/// `text`, linked to `url` when it is a safe http(s) URL.
pub(super) fn link_or_text(text: &str, url: Option<&str>) -> Markup {
    html! {
        @match url.and_then(safe_href) {
            Some(href) => { a href=(Text(href)) rel="noopener noreferrer" { (Text(text)) } }
            None => { (Text(text)) }
        }
    }
}

pub(super) fn utc(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// An RFC 3339 time from the store or a gate view, shown in UTC; unparseable text as it is.
pub(super) fn utc_text(s: &str) -> String {
    match DateTime::parse_from_rfc3339(s) {
        Ok(t) => utc(&t.with_timezone(&Utc)),
        Err(_) => s.to_string(),
    }
}

/// A time or `—` when there is none.
pub(super) fn utc_or_dash(t: Option<&DateTime<Utc>>) -> String {
    t.map(utc).unwrap_or_else(|| "—".into())
}

/// A duration for people: `45s`, `3m 12s`, `2h 05m`, `3d 4h`.
pub(super) fn human(d: chrono::Duration) -> String {
    let s = d.num_seconds().max(0);
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m {:02}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h {:02}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d {}h", s / 86_400, (s % 86_400) / 3600),
    }
}

pub(super) fn deadline_text(deadline: Option<&str>, now: DateTime<Utc>) -> String {
    let Some(d) = deadline else {
        return "—".into();
    };
    match DateTime::parse_from_rfc3339(d) {
        Ok(t) => {
            let t = t.with_timezone(&Utc);
            let rel = if t > now {
                format!("in {}", human(t - now))
            } else {
                "passed".into()
            };
            format!("{} ({rel})", utc(&t))
        }
        Err(_) => d.to_string(),
    }
}

pub(super) fn state_badge(state: GateState) -> Markup {
    html! {
        span class={ "state " (state.as_str()) } { (state.as_str()) }
    }
}

fn job_text(gate: &Gate) -> String {
    let name = gate.spec.item_name();
    let name = if name.is_empty() {
        gate.spec.job_url.clone()
    } else {
        name
    };
    match &gate.spec.branch_name {
        Some(b) if gate.spec.is_multi_branch => format!("{name} ({b})"),
        _ => name,
    }
}

pub(super) fn job_cell(gate: &Gate) -> Markup {
    link_or_text(&job_text(gate), Some(&gate.spec.job_url))
}

pub(super) fn build_cell(gate: &Gate) -> Markup {
    link_or_text(
        &format!("#{}", gate.spec.build_number),
        gate.spec.build_url.as_deref(),
    )
}

pub(super) fn gate_href(id: Uuid) -> String {
    format!("/ui/gates/{id}")
}

/// The stage's name, linked to its gate page.
pub(super) fn stage_cell(gate: &Gate) -> Markup {
    html! {
        a href=(gate_href(gate.id)) { (Text(&gate.spec.stage_path())) }
    }
}

pub(super) fn cr_cell(gate: &Gate) -> Markup {
    let Some(cr) = gate.change_request.as_ref() else {
        return html! { "—" };
    };
    match (cr.number.as_deref(), cr.url.as_deref()) {
        (Some(n), url) => link_or_text(n, url),
        (None, Some(url)) => link_or_text("change request", Some(url)),
        (None, None) => html! { "—" },
    }
}

pub(super) fn cr_state(gate: &Gate) -> &str {
    gate.change_request
        .as_ref()
        .and_then(|cr| cr.state.as_deref())
        .unwrap_or("—")
}

pub(super) fn proceed_text(p: Option<bool>) -> &'static str {
    match p {
        Some(true) => "yes",
        Some(false) => "no",
        None => "—",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> String {
        html! { (Text(s)) }.into_string()
    }

    #[test]
    fn spliced_text_has_every_html_special_character_neutralised() {
        assert_eq!(
            text(r#"<script>alert("x")</script> & 'y'"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;y&#39;"
        );
        assert_eq!(text("plain Deploy/Prod ü"), "plain Deploy/Prod ü");
        assert_eq!(text("&amp;"), "&amp;amp;");
        assert_eq!(text("''"), "&#39;&#39;");
        assert_eq!(text(""), "");
    }

    #[test]
    fn only_http_urls_become_links() {
        let link = |text: &str, url: &str| link_or_text(text, Some(url)).into_string();
        assert_eq!(
            link("CHG1", "https://sn.example.com/x?a=1&b=2"),
            "<a href=\"https://sn.example.com/x?a=1&amp;b=2\" rel=\"noopener noreferrer\">CHG1</a>"
        );
        for bad in [
            "javascript:alert(1)",
            "JAVASCRIPT:alert(1)",
            "data:text/html,<b>x</b>",
            "/relative",
            "",
        ] {
            assert_eq!(link("<CHG1>", bad), "&lt;CHG1&gt;", "{bad}");
        }
        assert_eq!(
            link("x", "https://a/\"><script>"),
            "<a href=\"https://a/&quot;&gt;&lt;script&gt;\" rel=\"noopener noreferrer\">x</a>"
        );
    }

    #[test]
    fn durations_read_like_people_write_them() {
        let d = chrono::Duration::seconds;
        assert_eq!(human(d(-5)), "0s");
        assert_eq!(human(d(45)), "45s");
        assert_eq!(human(d(192)), "3m 12s");
        assert_eq!(human(d(2 * 3600 + 5 * 60)), "2h 05m");
        assert_eq!(human(d(3 * 86_400 + 4 * 3600)), "3d 4h");
    }

    #[test]
    fn deadlines_show_in_utc_with_the_time_left() {
        let now = DateTime::parse_from_rfc3339("2026-01-01T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(deadline_text(None, now), "—");
        assert_eq!(
            deadline_text(Some("2026-01-01T12:05:00.000Z"), now),
            "2026-01-01 12:05:00 UTC (in 5m 00s)"
        );
        assert_eq!(
            deadline_text(Some("2026-01-01T11:00:00+00:00"), now),
            "2026-01-01 11:00:00 UTC (passed)"
        );
    }
}
