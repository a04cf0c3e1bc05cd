//! The overview at `/ui`: the stages waiting now, longest wait first, and the latest decisions,
//! both narrowed by the filter form; change freezes; and charts of the last days' decisions.
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use maud::{html, Markup};

use super::filters::{self, Filter};
use super::layout::{
    build_cell, cr_cell, cr_state, deadline_text, human, job_cell, layout, proceed_text,
    stage_cell, state_badge, utc, utc_or_dash, Text,
};
use super::session::session;
use super::stats::{self, Day};
use super::{charts, page, to_login, UiError};
use crate::domain::Gate;
use crate::state::AppState;

/// How many decided gates the "recent decisions" table shows.
const RECENT_DECISIONS: u32 = 50;
/// The most open gates the page lists (the longest waits).
const OPEN_LIMIT: u32 = 1000;
/// The most gates a filter looks through: the open ones and the latest decisions (or the
/// latest gates of the state asked for), so a filtered page costs what an unfiltered one does.
const FILTER_SCAN: u32 = 1000;
/// The most decisions the charts count: far more than a fortnight brings anywhere we know of,
/// and a bounded read (three short columns each) when something runs away.
const CHART_LIMIT: u32 = 20_000;
/// The overview reloads itself (a `<meta refresh>`, no script) so a wall display stays current.
const REFRESH_SECS: u32 = 30;

/// What the overview shows, gathered in one place so the queries behind it can change alone.
struct OverviewData {
    /// Pending and registering gates, the longest wait first: that is the stage someone is
    /// most likely asking about.
    open: Vec<Gate>,
    /// At most `RECENT_DECISIONS` decided gates, the latest decision first.
    decided: Vec<Gate>,
    /// Change freezes active and upcoming, with the gates each holds.
    freezes: crate::api::FreezeList,
    /// The decisions of the last `stats::DAYS` days, per day; `truncated` when there were more
    /// than `CHART_LIMIT`.
    days: Vec<Day>,
    truncated: bool,
}

async fn overview_data(
    state: &AppState,
    filter: &Filter,
    now: DateTime<Utc>,
) -> Result<OverviewData, UiError> {
    let (open, decided) = if filter.is_empty() {
        (
            state.store.open_gates(OPEN_LIMIT).await?,
            state.store.recent_decisions(RECENT_DECISIONS).await?,
        )
    } else {
        filtered(state, filter).await?
    };
    let times = state
        .store
        .decision_times(stats::window_start(now), CHART_LIMIT)
        .await?;
    Ok(OverviewData {
        open,
        decided,
        freezes: crate::routes::freezes::freeze_list(state).await?,
        truncated: times.len() >= CHART_LIMIT as usize,
        days: stats::daily(&times, now),
    })
}

/// The open and the decided gates `filter` lets through, out of the latest `FILTER_SCAN`;
/// the open ones the longest wait first, the decided ones the latest decision first.
async fn filtered(state: &AppState, filter: &Filter) -> Result<(Vec<Gate>, Vec<Gate>), UiError> {
    let candidates = match filter.state {
        Some(s) => state.store.list_gates(Some(s), FILTER_SCAN).await?,
        None => {
            let mut all = state.store.open_gates(OPEN_LIMIT).await?;
            all.extend(state.store.recent_decisions(FILTER_SCAN).await?);
            all
        }
    };
    let (mut decided, mut open): (Vec<Gate>, Vec<Gate>) = candidates
        .into_iter()
        .filter(|g| filter.matches(g))
        .partition(|g| g.state.is_terminal());
    open.sort_by_key(|g| g.created_at);
    decided.sort_by_key(|g| std::cmp::Reverse(g.decided_at));
    Ok((open, decided))
}

pub(super) async fn overview(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, UiError> {
    let Some(session) = session(&req, &state) else {
        return Ok(to_login());
    };
    let filter = Filter::parse(req.query_string())?;
    let now = Utc::now();
    let data = overview_data(&state, &filter, now).await?;
    let content = html! {
        h1 { "Waiting stages" }
        (filters::form(&filter))
        p class="muted" {
            (data.open.len()) " open gate(s)"
            @if !filter.is_empty() { " matching the filter" }
            " · as of " (utc(&now)) " · reloads every " (REFRESH_SECS) "s"
        }
        (open_table(&data.open, now))
        h2 { "Change freezes" }
        (freezes_table(&data.freezes, now))
        h2 { "Recent decisions" }
        @if !filter.is_empty() {
            p class="muted" {
                (data.decided.len()) " decided gate(s) matching the filter, among the latest "
                (FILTER_SCAN) " gates"
            }
        }
        (decided_table(&data.decided))
        (charts_section(&data))
    };
    Ok(page(
        StatusCode::OK,
        layout("Status", Some(&session), Some(REFRESH_SECS), content),
    ))
}

/// The last days' decisions, whatever the filter: how long decisions take and how they end.
fn charts_section(data: &OverviewData) -> Markup {
    html! {
        h2 { "The last " (stats::DAYS) " days" }
        @if data.truncated {
            p class="muted" { "Counting the latest " (CHART_LIMIT) " decisions only." }
        }
        div class="charts" {
            figure {
                (charts::decision_time_chart(&data.days))
                figcaption { "Time from a gate's opening to its decision, per day (UTC)." }
            }
            figure {
                (charts::outcome_chart(&data.days))
                figcaption { "Decisions per day, by outcome." }
            }
        }
    }
}

fn open_table(open: &[Gate], now: DateTime<Utc>) -> Markup {
    html! {
        table id="open-gates" {
            thead { tr {
                th { "State" } th { "Job" } th { "Build" } th { "Stage" }
                th { "Change request" } th { "CR state" } th { "Age" } th { "Deadline" }
                th { "Message" }
            } }
            tbody {
                @if open.is_empty() {
                    tr { td colspan="9" class="muted" { "No stage is waiting." } }
                }
                @for g in open {
                    tr id={ "gate-" (g.id) } {
                        td { (state_badge(g.state)) }
                        td { (job_cell(g)) }
                        td { (build_cell(g)) }
                        td { (stage_cell(g)) }
                        td { (cr_cell(g)) }
                        td { (Text(cr_state(g))) }
                        td { (human(now - g.created_at)) }
                        td { (Text(&deadline_text(g.view().deadline.as_deref(), now))) }
                        td { (Text(&g.message)) }
                    }
                }
            }
        }
    }
}

/// Active and upcoming freezes, and the gates whose approval each holds back.
fn freezes_table(list: &crate::api::FreezeList, now: DateTime<Utc>) -> Markup {
    html! {
        table id="freezes" {
            thead { tr {
                th { "Freeze" } th { "Status" } th { "From" } th { "Until" } th { "Jobs" }
                th { "Environments" } th { "Reason" } th { "Holds" }
            } }
            tbody {
                @if list.freezes.is_empty() {
                    tr { td colspan="8" class="muted" { "No change freeze is active or upcoming." } }
                }
                @for f in &list.freezes {
                    tr id={ "freeze-" (f.freeze.id) } class=(if f.active { "frozen" } else { "" }) {
                        td { (Text(&f.freeze.name)) }
                        td { @if f.active { "active" } @else { "starts in " (human(f.freeze.start - now)) } }
                        td { (utc(&f.freeze.start)) }
                        td { (utc(&f.freeze.end)) }
                        td { (Text(&all_or(&f.freeze.jobs))) }
                        td { (Text(&all_or(&f.freeze.environments))) }
                        td { (Text(&f.freeze.reason)) }
                        td {
                            @if f.held_gates.is_empty() { span class="muted" { "—" } }
                            @for id in &f.held_gates {
                                a href=(super::layout::gate_href(*id)) class="held" { (id.to_string()[..8]) } " "
                            }
                        }
                    }
                }
            }
        }
    }
}

fn all_or(items: &[String]) -> String {
    if items.is_empty() {
        "all".into()
    } else {
        items.join(", ")
    }
}

fn decided_table(decided: &[Gate]) -> Markup {
    html! {
        table id="recent-decisions" {
            thead { tr {
                th { "Decided at" } th { "Job" } th { "Build" } th { "Stage" }
                th { "Change request" } th { "State" } th { "Proceed" } th { "Decided by" }
                th { "Message" }
            } }
            tbody {
                @if decided.is_empty() {
                    tr { td colspan="9" class="muted" { "No decisions yet." } }
                }
                @for g in decided {
                    tr id={ "gate-" (g.id) } {
                        td { (utc_or_dash(g.decided_at.as_ref())) }
                        td { (job_cell(g)) }
                        td { (build_cell(g)) }
                        td { (stage_cell(g)) }
                        td { (cr_cell(g)) }
                        td { (state_badge(g.state)) }
                        td { (proceed_text(g.proceed)) }
                        td { (Text(g.decided_by.as_deref().unwrap_or("—"))) }
                        td { (Text(&g.message)) }
                    }
                }
            }
        }
    }
}
