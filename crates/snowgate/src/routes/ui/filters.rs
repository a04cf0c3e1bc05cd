//! The overview's filters: a plain GET form (`/ui?state=pending&job=…&q=…`), read here into a
//! [`Filter`] that the listed gates are matched against on the server. A value that cannot be
//! a filter is a 400 page naming its parameter.
use actix_web::http::StatusCode;
use maud::{html, Markup};

use super::layout::Text;
use super::UiError;
use crate::domain::gate::ALL_STATES;
use crate::domain::{Gate, GateState};

/// The longest `job` or `q` value: far longer than any job URL or search anyone types, short
/// enough that matching it against a thousand gates costs nothing.
pub(super) const MAX_FILTER: usize = 500;

/// What the overview lists: gates in `state`, of a job matching `job`, with `q` somewhere in
/// their job URL, stage, CR number or message. Text matches ignore case.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Filter {
    pub state: Option<GateState>,
    pub job: String,
    pub q: String,
}

fn bad(parameter: &str, why: &str) -> UiError {
    UiError::Status(
        StatusCode::BAD_REQUEST,
        format!("The query parameter `{parameter}` {why}."),
    )
}

impl Filter {
    /// The filter of a query string; empty values (what the form sends for "any") filter
    /// nothing.
    pub fn parse(query: &str) -> Result<Filter, UiError> {
        let mut f = Filter::default();
        let mut seen: Vec<String> = Vec::new();
        for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
            if seen.iter().any(|k| *k == key) {
                return Err(bad(&short(&key), "is given more than once"));
            }
            seen.push(key.to_string());
            let value = value.trim();
            match key.as_ref() {
                "state" if value.is_empty() => {}
                "state" => {
                    f.state = Some(GateState::parse(value).ok_or_else(|| {
                        bad(
                            "state",
                            "must be one of the gate states (pending, approved, …)",
                        )
                    })?)
                }
                "job" | "q" if value.chars().count() > MAX_FILTER => {
                    return Err(bad(
                        &key,
                        &format!("is longer than {MAX_FILTER} characters"),
                    ))
                }
                "job" => f.job = value.to_string(),
                "q" => f.q = value.to_string(),
                other => {
                    return Err(bad(
                        &short(other),
                        "is not known here (state, job and q are)",
                    ))
                }
            }
        }
        Ok(f)
    }

    pub fn is_empty(&self) -> bool {
        self == &Filter::default()
    }

    pub fn matches(&self, gate: &Gate) -> bool {
        if self.state.is_some_and(|s| s != gate.state) {
            return false;
        }
        let job = self.job.to_lowercase();
        if !job.is_empty()
            && !contains(&gate.spec.job_url, &job)
            && !contains(&gate.spec.item_name(), &job)
        {
            return false;
        }
        let q = self.q.to_lowercase();
        if q.is_empty() {
            return true;
        }
        let number = gate
            .change_request
            .as_ref()
            .and_then(|cr| cr.number.as_deref())
            .unwrap_or_default();
        [
            gate.spec.job_url.as_str(),
            &gate.spec.stage_path(),
            number,
            &gate.message,
        ]
        .iter()
        .any(|field| contains(field, &q))
    }
}

/// Whether `haystack` contains `lower` (already lower case), ignoring case.
fn contains(haystack: &str, lower: &str) -> bool {
    haystack.to_lowercase().contains(lower)
}

/// A parameter name as a page may repeat it: at most 40 characters.
fn short(name: &str) -> String {
    name.chars().take(40).collect()
}

/// The filter form, showing the values in use.
pub(super) fn form(f: &Filter) -> Markup {
    html! {
        form id="filters" method="get" action="/ui" class="filters" {
            label for="filter-state" { "State " }
            select id="filter-state" name="state" {
                option value="" selected[f.state.is_none()] { "any" }
                @for s in ALL_STATES {
                    option value=(s.as_str()) selected[f.state == Some(s)] { (s.as_str()) }
                }
            }
            " "
            label for="filter-job" { "Job " }
            input type="text" id="filter-job" name="job" value=(Text(&f.job))
                maxlength=(MAX_FILTER) placeholder="e.g. shop/app";
            " "
            label for="filter-q" { "Search " }
            input type="search" id="filter-q" name="q" value=(Text(&f.q)) maxlength=(MAX_FILTER)
                placeholder="job URL, stage, CR number, message";
            " "
            button type="submit" { "Filter" }
            @if !f.is_empty() {
                " " a href="/ui" id="clear-filters" { "clear" }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use actix_web::ResponseError as _;

    use super::*;

    fn message(e: UiError) -> String {
        e.to_string()
    }

    #[test]
    fn a_query_becomes_a_filter_and_empty_values_filter_nothing() {
        assert!(Filter::parse("").unwrap().is_empty());
        assert!(Filter::parse("state=&job=&q=").unwrap().is_empty());
        let f = Filter::parse("state=pending&job=shop%2Fapp&q=+CHG0001+").unwrap();
        assert_eq!(f.state, Some(GateState::Pending));
        assert_eq!(f.job, "shop/app");
        assert_eq!(f.q, "CHG0001");
    }

    #[test]
    fn bad_values_name_their_parameter() {
        for (query, part) in [
            ("state=nope", "`state`"),
            ("state=Pending", "`state`"),
            ("q=a&q=b", "`q` is given more than once"),
            ("colour=red", "`colour` is not known"),
        ] {
            let e = Filter::parse(query).unwrap_err();
            assert_eq!(e.status_code(), StatusCode::BAD_REQUEST, "{query}");
            assert!(message(e).contains(part), "{query}");
        }
        let long = format!("job={}", "x".repeat(MAX_FILTER + 1));
        assert!(message(Filter::parse(&long).unwrap_err()).contains("`job` is longer"));
        assert!(Filter::parse(&format!("q={}", "x".repeat(MAX_FILTER))).is_ok());
    }

    #[test]
    fn the_form_keeps_the_values_in_use_escaped() {
        let f = Filter {
            state: Some(GateState::Rejected),
            job: "a\"><b>".into(),
            q: "it's".into(),
        };
        let html = form(&f).into_string();
        assert!(
            html.contains("<option value=\"rejected\" selected>"),
            "{html}"
        );
        assert!(html.contains("value=\"a&quot;&gt;&lt;b&gt;\""), "{html}");
        assert!(html.contains("value=\"it&#39;s\""), "{html}");
        assert!(html.contains("id=\"clear-filters\""));
        let html = form(&Filter::default()).into_string();
        assert!(
            html.contains("<option value=\"\" selected>any</option>"),
            "{html}"
        );
    }
}
