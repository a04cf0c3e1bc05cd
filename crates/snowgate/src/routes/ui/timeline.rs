//! A gate's timeline as inline SVG: a bar from the gate's opening to its decision (or to now
//! while it is open; or on to its last event when that came after the decision), each event a
//! marked, labelled point with a `<title>` tooltip of its kind and time.
use chrono::{DateTime, Utc};
use maud::{html, Markup};

use super::layout::{human, utc};
use crate::domain::Gate;
use crate::store::Event;

const WIDTH: f64 = 900.0;
const HEIGHT: f64 = 190.0;
const LEFT: f64 = 20.0;
const RIGHT: f64 = 150.0;
/// The bar's y: the labels, slanted, rise above it.
const BAR_Y: f64 = 140.0;
/// The least room between two points, so that neighbours' slanted labels do not overlap.
const MIN_GAP: f64 = 18.0;

/// Where each point goes: proportional to its time between `start` and `end`, but at least
/// `MIN_GAP` after the one before (events often come milliseconds apart), pulled back from
/// the right end when that runs out of room. `times` are in order.
fn positions(times: &[DateTime<Utc>], start: DateTime<Utc>, end: DateTime<Utc>) -> Vec<f64> {
    let span = (end - start).num_milliseconds().max(1) as f64;
    let (lo, hi) = (LEFT, WIDTH - RIGHT);
    let gap = match times.len() {
        0 | 1 => MIN_GAP,
        k => MIN_GAP.min((hi - lo) / (k - 1) as f64),
    };
    let mut xs: Vec<f64> = Vec::with_capacity(times.len());
    for t in times {
        let by_time = lo + (*t - start).num_milliseconds().max(0) as f64 / span * (hi - lo);
        let after = xs.last().map_or(lo, |x| x + gap);
        xs.push(by_time.clamp(lo, hi).max(after));
    }
    // From the right: no point beyond the bar's end, each at least `gap` before the next.
    let mut limit = hi;
    for x in xs.iter_mut().rev() {
        *x = x.min(limit);
        limit = *x - gap;
    }
    xs
}

fn n(v: f64) -> String {
    format!("{v:.1}")
}

/// An event's time; one that cannot be read is placed at the gate's opening.
fn event_time(e: &Event, opened: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(&e.at)
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or(opened)
}

/// The timeline of `gate` with `events` (in order), as of `now`.
pub(super) fn timeline(gate: &Gate, events: &[Event], now: DateTime<Utc>) -> Markup {
    let start = gate.created_at;
    let times: Vec<DateTime<Utc>> = events.iter().map(|e| event_time(e, start)).collect();
    // The bar runs on past the decision to the events after it (its acknowledgement, the
    // stage's completion).
    let last = times.iter().max().copied().unwrap_or(start);
    let end = gate.decided_at.unwrap_or(now).max(last).max(start);
    let xs = positions(&times, start, end);
    let until = match gate.decided_at {
        Some(_) => format!("decided {}", gate.state.as_str()),
        None => "now (still open)".to_string(),
    };
    let title = format!(
        "Timeline of the gate: opened {}, {until} {} later, {} event(s)",
        utc(&start),
        human(gate.decided_at.unwrap_or(now) - start),
        events.len()
    );
    html! {
        svg id="timeline" class="chart" role="img" xmlns="http://www.w3.org/2000/svg"
            viewBox={ "0 0 " (WIDTH) " " (HEIGHT) } width=(WIDTH) height=(HEIGHT) {
            title { (title) }
            rect class="span" x=(n(LEFT)) y=(n(BAR_Y - 4.0)) width=(n(WIDTH - LEFT - RIGHT))
                height="8" rx="4" fill=(if gate.decided_at.is_some() { "#a0aec0" } else { "#f6e05e" }) {}
            text x=(n(LEFT)) y=(n(BAR_Y + 26.0)) font-size="11" { "opened " (utc(&start)) }
            text x=(n(WIDTH - RIGHT)) y=(n(BAR_Y + 26.0)) font-size="11" text-anchor="end" {
                (until) " · " (utc(&gate.decided_at.unwrap_or(now)))
            }
            text x=(n(WIDTH - RIGHT + 10.0)) y=(n(BAR_Y + 4.0)) font-size="11" fill="#667" {
                (human(end - start))
            }
            @for ((e, t), x) in events.iter().zip(&times).zip(&xs) {
                g class="event" {
                    circle cx=(n(*x)) cy=(n(BAR_Y)) r="5" fill=(mark_colour(e))
                        stroke="#1d2330" stroke-width="1" {
                        title { (e.kind) " at " (utc(t)) " — " (e.actor) }
                    }
                    text x=(n(*x)) y=(n(BAR_Y - 10.0)) font-size="10"
                        transform={ "rotate(-45 " (n(*x)) " " (n(BAR_Y - 10.0)) ")" } {
                        (e.kind)
                    }
                }
            }
        }
    }
}

/// A decision's mark shows its outcome's colour; the other events are grey.
fn mark_colour(e: &Event) -> &'static str {
    match e.to_state {
        Some(s) if s.is_terminal() => match s.as_str() {
            "approved" | "resumed" | "not_controlled" => "#2f855a",
            _ => "#c53030",
        },
        Some(_) => "#2b6cb0",
        None => "#e2e8f0",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn points_follow_their_times_and_keep_apart_within_the_bar() {
        let start = at("2026-01-01T00:00:00Z");
        let end = at("2026-01-01T01:00:00Z");
        let (lo, hi) = (LEFT, WIDTH - RIGHT);
        let xs = positions(&[start, at("2026-01-01T00:30:00Z"), end], start, end);
        assert_eq!(xs, vec![lo, (lo + hi) / 2.0, hi]);
        // Three events in the same millisecond, then one at the end.
        let xs = positions(&[start, start, start, end], start, end);
        assert_eq!(xs, vec![lo, lo + MIN_GAP, lo + 2.0 * MIN_GAP, hi]);
        // Crowded at the end: pulled back so every point stays on the bar.
        let xs = positions(&[end, end, end], start, end);
        assert_eq!(xs, vec![hi - 2.0 * MIN_GAP, hi - MIN_GAP, hi]);
        // More points than fit at MIN_GAP: spread evenly over the bar.
        let many = vec![start; 200];
        let xs = positions(&many, start, start);
        assert!(
            (xs[199] - hi).abs() < 1e-6 && (xs[0] - lo).abs() < 1e-6,
            "{xs:?}"
        );
        assert!(xs.windows(2).all(|w| w[1] > w[0]));
    }
}
