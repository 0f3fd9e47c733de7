//! What the report says: the recording's header, a table of every container, the kills, and
//! per container its runtime settings found wrong, its swap, charts, runtimes and their heap
//! ceilings, processes by growth, flame graph of the bytes charged, recommendation and
//! warnings.
use crate::chart::{clock, Png};
use crate::endings::endings_section;
use crate::history::history;
use crate::html::{page_end, page_start, Html};
use crate::node::node_section;
use crate::processes::processes_section;
use crate::recommend::{quantile, recommend, Recommendation, RUNTIME_FIRST};
use crate::recording::{Damage, Header};
use crate::runtimes::{ceilings_section, risk_callouts, swap_line};
use crate::stacks::{lost_note, stacks_section};
use crate::timeline::{Container, Timeline};

/// Usage at or above this share of the limit counts as "near the limit".
pub const NEAR_LIMIT: f64 = 0.9;
/// The window before a kill the growth rate is measured over, seconds.
pub const GROWTH_WINDOW_S: f64 = 60.0;

/// The charts of one container, as files next to the page and inline in it.
pub struct Charts {
    /// Memory over time.
    pub memory: Png,
    /// Its file name.
    pub memory_file: String,
    /// Working-set histogram.
    pub percentiles: Png,
    /// Its file name.
    pub percentiles_file: String,
}

/// Everything the page is made from.
pub struct Input<'a> {
    /// The recording's header.
    pub header: &'a Header,
    /// Its containers.
    pub timeline: &'a Timeline,
    /// Where reading stopped early.
    pub damage: Option<&'a Damage>,
    /// Lines read after the header.
    pub lines: usize,
    /// One per container, in the same order.
    pub charts: &'a [Charts],
}

pub(crate) fn mib(bytes: u64) -> String {
    let m = bytes as f64 / (1024.0 * 1024.0);
    if m >= 100.0 {
        format!("{m:.0} MiB")
    } else {
        format!("{m:.1} MiB")
    }
}

pub(crate) fn opt_mib(bytes: Option<u64>) -> String {
    bytes.map_or_else(|| "—".into(), mib)
}

pub(crate) fn seconds(s: f64) -> String {
    if s >= 120.0 {
        format!("{} ({s:.0} s)", clock(s))
    } else {
        format!("{s:.1} s")
    }
}

/// `2026-11-30 17:04:05 UTC` for Unix seconds.
pub fn utc(unix: f64) -> String {
    let secs = unix.max(0.0) as i64;
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

/// Writes the whole page.
pub fn render(input: &Input<'_>) -> String {
    let mut html = Html::default();
    let node = input.header.node.as_deref().unwrap_or("unknown node");
    page_start(&mut html, &format!("Memory report: {node}"));
    html.element("<h1>", format!("Memory report: {node}"), "</h1>\n");
    meta(&mut html, input);
    damage(&mut html, input);
    // One recommendation per container, for the overview and its own section.
    let advice: Vec<Recommendation> = input
        .timeline
        .containers
        .iter()
        .map(|c| recommend(&history(c)))
        .collect();
    overview(&mut html, input, &advice);
    node_section(&mut html, input.timeline);
    endings_section(&mut html, input.timeline);
    for ((index, container), advice) in input.timeline.containers.iter().enumerate().zip(&advice) {
        details(
            &mut html,
            container,
            input.charts.get(index),
            advice,
            input.header,
        );
    }
    page_end(&mut html);
    html.finish()
}

fn meta(html: &mut Html, input: &Input<'_>) {
    let h = input.header;
    let probe = h.probe.as_ref();
    let mut parts = vec![
        format!(
            "kernel {}",
            probe.and_then(|p| p.kernel.as_deref()).unwrap_or("unknown")
        ),
        format!(
            "cgroup {}",
            h.cgroup_version.as_deref().unwrap_or("unknown")
        ),
        format!(
            "charge path: {}",
            probe.and_then(|p| p.mode.as_deref()).unwrap_or("unknown")
        ),
    ];
    if let Some(start) = h.started {
        parts.push(format!(
            "recorded from {} for {}",
            utc(start),
            seconds(input.timeline.span)
        ));
    }
    if let Some(interval) = h.interval_s {
        parts.push(format!("a sample every {interval} s"));
    }
    if let (Some(warn), Some(critical)) = (h.warn_s, h.critical_s) {
        parts.push(format!(
            "warnings at {warn:.0} s, critical at {critical:.0} s before the forecast kill"
        ));
    }
    if let Some(version) = &h.profiler_version {
        parts.push(format!("profiler {version}"));
    }
    html.element("<p class=\"meta\">", parts.join(" · "), "</p>\n");
}

fn damage(html: &mut Html, input: &Input<'_>) {
    match input.damage {
        Some(Damage::BadLine { line, reason }) => {
            html.raw("<div class=\"damage\" role=\"alert\" id=\"damage\"><strong>This recording is damaged.</strong> ")
                .text(format!(
                    "Line {line} is not a record ({reason}); reading stopped there. This report \
                     shows the {} lines before it; anything after line {line} is missing.",
                    input.lines
                ))
                .raw("</div>\n");
        }
        Some(Damage::CutShort { line }) => {
            html.raw("<div class=\"note\" role=\"note\" id=\"damage\">")
                .text(format!(
                    "The last line ({line}) was cut short: the watch was stopped while writing it. \
                     It is left out; everything before it is here."
                ))
                .raw("</div>\n");
        }
        None => {}
    }
    if input.timeline.lost_events > 0 {
        html.element(
            "<div class=\"damage\" role=\"alert\">",
            format!(
                "The watch lost {} kernel records (its ring buffer was full or the kernel log \
                 was overwritten): a kill among them would be missing from this report.",
                input.timeline.lost_events
            ),
            "</div>\n",
        );
    }
    lost_note(html, input.timeline);
    if input.timeline.unknown_lines > 0 {
        html.element(
            "<div class=\"note\">",
            format!(
                "{} lines of types this profiler does not know were skipped (the recording is \
                 from a newer profiler).",
                input.timeline.unknown_lines
            ),
            "</div>\n",
        );
    }
}

fn overview(html: &mut Html, input: &Input<'_>, advice: &[Recommendation]) {
    html.raw("<h2>Containers</h2>\n");
    if input.timeline.containers.is_empty() {
        html.raw("<p>The recording holds no samples of any container.</p>\n");
        return;
    }
    let interval = input.header.interval_s.unwrap_or(1.0);
    html.raw("<div class=\"wide\"><table id=\"overview\">\n")
        .header_row(&[
            "Container",
            "Peak usage",
            "Working set p50",
            "p95",
            "p99",
            "OOM kills",
            "Restarts",
            "Time ≥ 90 % of limit",
            "Reclaim stall",
            "Recommended request",
            "Recommended limit",
        ]);
    for (container, advice) in input.timeline.containers.iter().zip(advice) {
        let ws: Vec<u64> = container.points.iter().map(|p| p.working_set).collect();
        let peak = container.points.iter().map(|p| p.usage).max();
        let (request, mut limit) = match advice {
            Recommendation::Figures { request, limit, .. } => (mib(*request), mib(*limit)),
            Recommendation::NotEnoughHistory { .. } => {
                ("not enough history".into(), "not enough history".into())
            }
        };
        let first: Vec<&str> = advice.first().iter().map(|f| f.label).collect();
        if !first.is_empty() {
            limit = format!("{limit} ({})", first.join("; "));
        }
        html.row([
            container.name(),
            opt_mib(peak),
            opt_mib(quantile(&ws, 0.50)),
            opt_mib(quantile(&ws, 0.95)),
            opt_mib(quantile(&ws, 0.99)),
            container.kills.len().to_string(),
            container.restarts.to_string(),
            seconds(container.time_above(NEAR_LIMIT, 2.0 * interval)),
            seconds(container.reclaim_stall_us as f64 / 1e6),
            request,
            limit,
        ]);
    }
    html.raw("</table></div>\n");
}

/// The recommendation: what to do first, then the figures and how they were made.
fn recommendation(html: &mut Html, advice: &Recommendation) {
    html.raw("<h3>Recommendation</h3>\n");
    for first in advice.first() {
        html.element(
            "<div class=\"first\" role=\"note\"><strong>First:</strong> ",
            &first.text,
            "</div>\n",
        );
    }
    match advice {
        Recommendation::Figures {
            first,
            request,
            limit,
            reasoning,
        } => {
            // With a runtime setting to fix, the figures are for keeping it: fixed, the
            // container needs what it then does, which only a new watch shows.
            let kept = if first.iter().any(|f| f.label == RUNTIME_FIRST) {
                "to keep the runtime setting as it is: "
            } else {
                ""
            };
            let refit = if kept.is_empty() {
                ""
            } else {
                "; once it is fixed, watch again for figures that fit it"
            };
            html.element(
                "<p>",
                format!(
                    "{kept}memory request {}, memory limit {}{refit}",
                    mib(*request),
                    mib(*limit)
                ),
                "</p>\n",
            )
            .raw("<ul class=\"reasoning\">\n");
            for step in reasoning {
                html.element("<li>", step, "</li>\n");
            }
            html.raw("</ul>\n");
        }
        Recommendation::NotEnoughHistory { reason, .. } => {
            html.element("<p>", format!("Not enough history: {reason}."), "</p>\n");
        }
    }
}

fn details(
    html: &mut Html,
    container: &Container,
    charts: Option<&Charts>,
    advice: &Recommendation,
    header: &Header,
) {
    html.raw("<section class=\"container\">\n")
        .element("<h2>", container.name(), "</h2>\n");
    // A setting that will get the container killed goes before everything else about it.
    risk_callouts(html, container);
    let id = &container.identity;
    let mut facts = Vec::new();
    if let Some(cid) = &id.container_id {
        facts.push(format!("container id {cid}"));
    }
    if let Some(qos) = &id.qos {
        facts.push(format!("QoS {qos}"));
    }
    facts.push(format!("{} samples", container.points.len()));
    html.element("<p class=\"meta\">", facts.join(" · "), "</p>\n");
    for cgroup in &container.cgroups {
        html.raw("<p class=\"meta\">cgroup <code>")
            .text(cgroup)
            .raw("</code></p>\n");
    }
    swap_line(html, container);
    if let Some(charts) = charts {
        html.png(
            &charts.memory,
            &format!("Memory of {} over time", container.name()),
        )
        .element(
            "<p class=\"meta\">",
            format!(
                "Dashed black: the limit. Dotted vertical lines: warnings; the thick dashed \
                     line from each runs to the kill its forecast predicted. Solid red: OOM kills. \
                     Also saved as {} and {}.",
                charts.memory_file, charts.percentiles_file
            ),
            "</p>\n",
        )
        .png(
            &charts.percentiles,
            &format!("Working-set distribution of {}", container.name()),
        );
    }
    ceilings_section(html, container);
    processes_section(html, container);
    stacks_section(html, container);
    recommendation(html, advice);
    html.raw("<h3>Warnings</h3>\n");
    if container.warnings.is_empty() {
        let thresholds = match (header.warn_s, header.critical_s) {
            (Some(w), Some(c)) => format!(" (thresholds {w:.0} s and {c:.0} s)"),
            _ => String::new(),
        };
        html.element(
            "<p>",
            format!("No warning was raised{thresholds}."),
            "</p>\n",
        );
    } else {
        html.raw("<table>\n")
            .header_row(&["Time", "Level", "Forecast kill in", "Range", "Reason"]);
        for w in &container.warnings {
            let range = match (w.warning.eta_low_seconds, w.warning.eta_high_seconds) {
                (Some(low), Some(high)) => format!("{low:.0}–{high:.0} s"),
                (Some(low), None) => format!("≥ {low:.0} s"),
                _ => "—".into(),
            };
            html.row([
                clock(w.t),
                w.warning.level.clone(),
                w.warning
                    .eta_seconds
                    .map_or_else(|| "—".into(), |e| format!("{e:.0} s")),
                range,
                w.warning.reason.clone(),
            ]);
        }
        html.raw("</table>\n");
    }
    html.raw("</section>\n");
}

#[cfg(test)]
mod tests;
