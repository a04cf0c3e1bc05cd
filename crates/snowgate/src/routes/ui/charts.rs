//! The overview's two charts as inline SVG, drawn on the server: time to decision per day
//! (median and 90th percentile) and decisions per day by outcome. Inline SVG needs no script
//! and no request of its own, so it works under the page's CSP and without internet access.
//! Every mark carries a `<title>`, which browsers show as a tooltip and screen readers read.
use maud::{html, Markup};

use super::layout::human;
use super::stats::{Day, DAYS, OUTCOMES};
use crate::domain::GateState;

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 260.0;
/// Room for the y labels on the left, the legend above and the day labels below.
const LEFT: f64 = 70.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 34.0;
const BOTTOM: f64 = 44.0;
const PLOT_W: f64 = WIDTH - LEFT - RIGHT;
const PLOT_H: f64 = HEIGHT - TOP - BOTTOM;
/// Gridlines above the zero line.
const TICKS: u32 = 4;

/// A coordinate with one decimal: enough for a pixel, and short markup.
fn n(v: f64) -> String {
    format!("{v:.1}")
}

fn slot() -> f64 {
    PLOT_W / f64::from(DAYS)
}

/// The x of the middle of day `i`'s slot.
fn day_x(i: usize) -> f64 {
    LEFT + (i as f64 + 0.5) * slot()
}

/// The y of `v` on a scale from 0 to `max`.
fn value_y(v: f64, max: f64) -> f64 {
    TOP + PLOT_H - (v / max) * PLOT_H
}

/// A top of the time scale at or above `secs` that divides into `TICKS` readable steps.
fn time_scale(secs: f64) -> f64 {
    const STEPS: [f64; 13] = [
        4.0, 20.0, 60.0, 120.0, 240.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0, 14_400.0, 28_800.0,
        86_400.0,
    ];
    match STEPS.iter().find(|s| **s >= secs) {
        Some(s) => *s,
        None => (secs / 86_400.0).ceil() * 86_400.0,
    }
}

/// A top of the count scale at or above `count` that divides into `TICKS` whole steps.
fn count_scale(count: u32) -> u32 {
    count.max(1).div_ceil(TICKS) * TICKS
}

fn secs_text(secs: f64) -> String {
    human(chrono::Duration::milliseconds((secs * 1000.0) as i64))
}

/// The frame both charts share: the gridlines with their labels, the day labels and the axis
/// titles, around `marks`.
fn frame(id: &str, title: &str, y_title: &str, days: &[Day], ticks: &[String]) -> Markup {
    html! {
        title { (title) }
        @for (k, label) in ticks.iter().enumerate() {
            @let y = TOP + PLOT_H - PLOT_H * k as f64 / f64::from(TICKS);
            line class="grid" x1=(n(LEFT)) x2=(n(WIDTH - RIGHT)) y1=(n(y)) y2=(n(y))
                stroke=(if k == 0 { "#667" } else { "#d8dce3" }) {}
            text x=(n(LEFT - 6.0)) y=(n(y + 4.0)) text-anchor="end" font-size="11" { (label) }
        }
        @for (i, d) in days.iter().enumerate() {
            text class="day" x=(n(day_x(i))) y=(n(TOP + PLOT_H + 16.0)) text-anchor="middle"
                font-size="11" { (d.date.format("%m-%d")) }
        }
        text x=(n(LEFT + PLOT_W / 2.0)) y=(n(HEIGHT - 8.0)) text-anchor="middle" font-size="12" {
            "day (UTC)"
        }
        text x="14" y=(n(TOP + PLOT_H / 2.0)) text-anchor="middle" font-size="12"
            transform={ "rotate(-90 14 " (n(TOP + PLOT_H / 2.0)) ")" } { (y_title) }
        @if days.iter().all(|d| d.decisions == 0) {
            text id={ (id) "-empty" } x=(n(LEFT + PLOT_W / 2.0)) y=(n(TOP + PLOT_H / 2.0))
                text-anchor="middle" fill="#667" font-size="13" {
                "No decisions in the last " (DAYS) " days."
            }
        }
    }
}

/// The median and the 90th percentile of the time to decision, one point per day with
/// decisions; a day without any is a gap in both lines.
pub(super) fn decision_time_chart(days: &[Day]) -> Markup {
    let top = time_scale(days.iter().filter_map(|d| d.p90_secs).fold(0.0, f64::max));
    let ticks: Vec<String> = (0..=TICKS)
        .map(|k| secs_text(top * f64::from(k) / f64::from(TICKS)))
        .collect();
    let title =
        format!("Time to decision per day over the last {DAYS} days: median and 90th percentile");
    html! {
        svg id="decision-time-chart" class="chart" role="img" xmlns="http://www.w3.org/2000/svg"
            viewBox={ "0 0 " (WIDTH) " " (HEIGHT) } width=(WIDTH) height=(HEIGHT) {
            (frame("decision-time-chart", &title, "time to decision", days, &ticks))
            (series(days, "p90", "#c05621", "90th percentile", top, |d| d.p90_secs))
            (series(days, "median", "#2b6cb0", "median", top, |d| d.median_secs))
            (legend_entry(LEFT, "median", "#2b6cb0", "median"))
            (legend_entry(LEFT + 110.0, "p90", "#c05621", "90th percentile"))
        }
    }
}

/// One line of the time chart: a polyline per run of consecutive days with a value, and a
/// point with its tooltip for each day.
fn series(
    days: &[Day],
    class: &str,
    colour: &str,
    label: &str,
    top: f64,
    value: fn(&Day) -> Option<f64>,
) -> Markup {
    let mut runs: Vec<Vec<(f64, f64)>> = Vec::new();
    let mut open = false;
    for (i, d) in days.iter().enumerate() {
        match value(d) {
            Some(v) if open => runs
                .last_mut()
                .into_iter()
                .for_each(|r| r.push((day_x(i), v))),
            Some(v) => {
                runs.push(vec![(day_x(i), v)]);
                open = true;
            }
            None => open = false,
        }
    }
    let dash = if class == "p90" { "5 3" } else { "none" };
    html! {
        @for run in runs.iter().filter(|r| r.len() > 1) {
            polyline class={ "line " (class) } fill="none" stroke=(colour) stroke-width="2"
                stroke-dasharray=(dash)
                points=(run.iter().map(|(x, v)| format!("{},{}", n(*x), n(value_y(*v, top))))
                    .collect::<Vec<_>>().join(" ")) {}
        }
        @for (i, d) in days.iter().enumerate() {
            @if let Some(v) = value(d) {
                circle class={ "point " (class) } cx=(n(day_x(i))) cy=(n(value_y(v, top))) r="3.5"
                    fill=(colour) {
                    title {
                        (d.date) ": " (label) " " (secs_text(v)) " (" (d.decisions)
                        " decision" @if d.decisions != 1 { "s" } ")"
                    }
                }
            }
        }
    }
}

fn legend_entry(x: f64, class: &str, colour: &str, label: &str) -> Markup {
    let dash = if class == "p90" { "5 3" } else { "none" };
    html! {
        g class={ "legend " (class) } {
            line x1=(n(x)) x2=(n(x + 22.0)) y1="14" y2="14" stroke=(colour) stroke-width="2"
                stroke-dasharray=(dash) {}
            text x=(n(x + 28.0)) y="18" font-size="12" { (label) }
        }
    }
}

/// The fill of an outcome's bars: greens for the outcomes that let the stage proceed, reds
/// and others for the rest (the page's state badges use the same split).
fn outcome_colour(s: GateState) -> &'static str {
    match s {
        GateState::Approved => "#2f855a",
        GateState::Resumed => "#68d391",
        GateState::NotControlled => "#9ae6b4",
        GateState::Rejected => "#c53030",
        GateState::Canceled => "#dd6b20",
        GateState::Failed => "#742a2a",
        GateState::TimedOut => "#d69e2e",
        GateState::Aborted => "#805ad5",
        _ => "#718096",
    }
}

/// Legend rows under the outcome chart.
const LEGEND_COLUMNS: usize = 5;
const OUTCOME_HEIGHT: f64 = HEIGHT + 48.0;

/// Decisions per day, stacked by outcome, with each day's count above its bar and each
/// outcome's count over the whole window in the legend.
pub(super) fn outcome_chart(days: &[Day]) -> Markup {
    let top = count_scale(days.iter().map(|d| d.decisions).max().unwrap_or(0));
    let ticks: Vec<String> = (0..=TICKS).map(|k| (top / TICKS * k).to_string()).collect();
    let title = format!("Decisions per day by outcome over the last {DAYS} days");
    html! {
        svg id="outcome-chart" class="chart" role="img" xmlns="http://www.w3.org/2000/svg"
            viewBox={ "0 0 " (WIDTH) " " (OUTCOME_HEIGHT) } width=(WIDTH) height=(OUTCOME_HEIGHT) {
            (frame("outcome-chart", &title, "decisions", days, &ticks))
            @for (i, d) in days.iter().enumerate() {
                (day_bar(i, d, f64::from(top)))
            }
            (outcome_legend(days))
        }
    }
}

/// One day's stacked bar and its count.
fn day_bar(i: usize, d: &Day, top: f64) -> Markup {
    let w = slot() * 0.6;
    let x = day_x(i) - w / 2.0;
    // Each outcome's segment: its state, count, top and height, stacked from the zero line.
    let mut below = 0u32;
    let mut segments = Vec::new();
    for (k, count) in d.outcomes.iter().enumerate().filter(|(_, c)| **c > 0) {
        let y = value_y(f64::from(below + count), top);
        let h = value_y(f64::from(below), top) - y;
        segments.push((OUTCOMES[k], *count, y, h));
        below += count;
    }
    html! {
        @for (state, count, y, h) in segments {
            rect class={ "bar " (state.as_str()) } x=(n(x)) y=(n(y)) width=(n(w)) height=(n(h))
                fill=(outcome_colour(state)) {
                title { (d.date) ": " (count) " " (state.as_str()) }
            }
        }
        @if d.decisions > 0 {
            text class="count" x=(n(day_x(i))) y=(n(value_y(f64::from(d.decisions), top) - 4.0))
                text-anchor="middle" font-size="11" { (d.decisions) }
        }
    }
}

fn outcome_legend(days: &[Day]) -> Markup {
    let totals: Vec<u32> = (0..OUTCOMES.len())
        .map(|k| days.iter().map(|d| d.outcomes[k]).sum())
        .collect();
    let column = PLOT_W / LEGEND_COLUMNS as f64;
    html! {
        @for (k, state) in OUTCOMES.iter().enumerate() {
            @let x = LEFT + column * (k % LEGEND_COLUMNS) as f64;
            @let y = HEIGHT + 4.0 + 20.0 * (k / LEGEND_COLUMNS) as f64;
            g class={ "legend " (state.as_str()) } {
                rect x=(n(x)) y=(n(y)) width="12" height="12" fill=(outcome_colour(*state)) {}
                text x=(n(x + 17.0)) y=(n(y + 10.5)) font-size="12" {
                    (state.as_str()) " " (totals[k])
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};

    use super::super::stats::daily;
    use super::*;
    use crate::store::DecisionTimes;

    fn days() -> Vec<Day> {
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let d = |c: &str, dec: &str, state| DecisionTimes {
            created_at: at(c),
            decided_at: at(dec),
            state,
        };
        daily(
            &[
                d(
                    "2026-03-14T09:00:00Z",
                    "2026-03-14T09:00:10Z",
                    GateState::Approved,
                ),
                d(
                    "2026-03-14T09:00:00Z",
                    "2026-03-14T09:01:00Z",
                    GateState::Rejected,
                ),
                d(
                    "2026-03-12T09:00:00Z",
                    "2026-03-12T09:00:05Z",
                    GateState::Approved,
                ),
                d(
                    "2026-03-11T09:00:00Z",
                    "2026-03-11T09:00:08Z",
                    GateState::Approved,
                ),
            ],
            at("2026-03-14T12:00:00Z"),
        )
    }

    #[test]
    fn the_time_chart_has_a_point_per_day_with_decisions_and_gaps_between_runs() {
        let svg = decision_time_chart(&days()).into_string();
        assert!(svg.starts_with("<svg id=\"decision-time-chart\""), "{svg}");
        for part in [
            "role=\"img\"",
            "viewBox=\"0 0 720 260\"",
            "width=\"720\" height=\"260\"",
            "<title>Time to decision per day",
            "2026-03-14: median 35s (2 decisions)",
            "2026-03-12: 90th percentile 5s (1 decision)",
            ">03-01</text>",
            ">median</text>",
            ">90th percentile</text>",
        ] {
            assert!(svg.contains(part), "{part} missing in {svg}");
        }
        assert_eq!(svg.matches("class=\"point median\"").count(), 3);
        assert_eq!(svg.matches("class=\"point p90\"").count(), 3);
        // 03-11 and 03-12 are one run; 03-13 has none, so 03-14 stands alone.
        assert_eq!(svg.matches("class=\"line median\"").count(), 1);
        assert!(!svg.contains("-empty"));
        // Every element is closed: an HTML parser would nest an unclosed `<circle>`.
        assert_eq!(
            svg.matches("<circle").count(),
            svg.matches("</circle>").count()
        );
    }

    #[test]
    fn the_outcome_chart_stacks_each_days_outcomes_with_counts() {
        let svg = outcome_chart(&days()).into_string();
        assert!(svg.starts_with("<svg id=\"outcome-chart\""), "{svg}");
        assert_eq!(svg.matches("class=\"bar approved\"").count(), 3);
        assert_eq!(svg.matches("class=\"bar rejected\"").count(), 1);
        for part in [
            "<title>2026-03-14: 1 rejected</title>",
            ">approved 3</text>",
            ">rejected 1</text>",
            ">timed_out 0</text>",
            "class=\"count\"",
        ] {
            assert!(svg.contains(part), "{part} missing in {svg}");
        }
        assert_eq!(svg.matches("<rect").count(), svg.matches("</rect>").count());
    }

    #[test]
    fn without_decisions_both_charts_say_so() {
        let empty = daily(&[], Utc::now());
        assert!(decision_time_chart(&empty)
            .into_string()
            .contains("No decisions in the last 14 days."));
        let svg = outcome_chart(&empty).into_string();
        assert!(svg.contains("id=\"outcome-chart-empty\""));
        assert!(!svg.contains("class=\"bar "));
    }

    #[test]
    fn scales_end_on_round_values() {
        assert_eq!(time_scale(0.0), 4.0);
        assert_eq!(time_scale(35.0), 60.0);
        assert_eq!(time_scale(3601.0), 7200.0);
        assert_eq!(time_scale(3.0 * 86_400.0 + 1.0), 4.0 * 86_400.0);
        assert_eq!(count_scale(0), 4);
        assert_eq!(count_scale(5), 8);
    }
}
