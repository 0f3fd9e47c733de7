//! What the report says: the recording's header, a table of every container, the kills, and
//! per container its charts, recommendation and warnings.
use crate::chart::{clock, Png};
use crate::html::{page_end, page_start, Html};
use crate::recommend::{quantile, recommend, History, Recommendation};
use crate::recording::{Damage, Header};
use crate::timeline::{Container, Death, Kill, Timeline};

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

fn mib(bytes: u64) -> String {
    let m = bytes as f64 / (1024.0 * 1024.0);
    if m >= 100.0 {
        format!("{m:.0} MiB")
    } else {
        format!("{m:.1} MiB")
    }
}

fn opt_mib(bytes: Option<u64>) -> String {
    bytes.map_or_else(|| "—".into(), mib)
}

fn seconds(s: f64) -> String {
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

/// The history the recommendation is made from.
pub fn history(container: &Container) -> History {
    let last_kill = container.kills.last();
    History {
        working_set: container.points.iter().map(|p| p.working_set).collect(),
        unreclaimable: container
            .points
            .iter()
            .filter_map(|p| p.unreclaimable)
            .collect(),
        kills: container.kills.len() as u64,
        limit_at_kill: last_kill.and_then(|kill| {
            kill.event.limit_bytes.or_else(|| {
                // Else the limit of the last sample before it.
                container
                    .points
                    .iter()
                    .rev()
                    .find(|p| p.t <= kill.t)
                    .and_then(|p| p.limit)
            })
        }),
    }
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
        let (request, limit) = match advice {
            Recommendation::Figures { request, limit, .. } => (mib(*request), mib(*limit)),
            Recommendation::NotEnoughHistory { .. } => {
                ("not enough history".into(), "not enough history".into())
            }
        };
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

/// What the warnings before `kill` (and after the kill before it) said, and how early.
fn warnings_before(container: &Container, kill: &Kill) -> String {
    let since = container
        .kills
        .iter()
        .map(|k| k.t)
        .filter(|&t| t < kill.t)
        .fold(f64::NEG_INFINITY, f64::max);
    let given: Vec<String> = container
        .warnings
        .iter()
        .filter(|w| w.t > since && w.t <= kill.t && w.warning.level != "cleared")
        .map(|w| {
            let forecast = w
                .warning
                .eta_seconds
                .map(|eta| format!(", forecasting the kill in {eta:.0} s"))
                .unwrap_or_default();
            format!(
                "{} {:.0} s before the kill{forecast}",
                w.warning.level,
                kill.t - w.t
            )
        })
        .collect();
    if given.is_empty() {
        "no warning was given before this kill".into()
    } else {
        format!("warned: {}", given.join("; "))
    }
}

/// One death for the "How containers ended" section: its `exit` line, the `oom_kill` line of
/// the same process, or both.
struct Ending<'a> {
    t: f64,
    container: &'a Container,
    death: Option<&'a Death>,
    kill: Option<&'a Kill>,
}

/// A kill and an `exit` of the same pid within this many seconds are one death.
const SAME_DEATH_S: f64 = 60.0;

fn endings(timeline: &Timeline) -> Vec<Ending<'_>> {
    let mut all = Vec::new();
    for container in &timeline.containers {
        let mut matched = vec![false; container.kills.len()];
        for death in &container.deaths {
            let kill = container.kills.iter().enumerate().find(|(i, k)| {
                !matched[*i]
                    && k.event.pid == death.exit.pid
                    && (death.t - k.t).abs() <= SAME_DEATH_S
            });
            if let Some((i, _)) = kill {
                matched[i] = true;
            }
            all.push(Ending {
                t: death.t,
                container,
                death: Some(death),
                kill: kill.map(|(_, k)| k),
            });
        }
        // Kills without an exit line: recordings from before deaths were told, or processes
        // whose exit was not seen.
        for (kill, _) in container.kills.iter().zip(&matched).filter(|(_, m)| !**m) {
            all.push(Ending {
                t: kill.t,
                container,
                death: None,
                kill: Some(kill),
            });
        }
    }
    all.sort_by(|a, b| a.t.total_cmp(&b.t));
    all
}

fn when(timeline: &Timeline, t: f64) -> String {
    match timeline.start {
        Some(start) => format!("{} ({} into the recording)", utc(start + t), clock(t)),
        None => clock(t),
    }
}

fn endings_section(html: &mut Html, timeline: &Timeline) {
    html.raw("<h2 id=\"kills\">How containers ended</h2>\n");
    let all = endings(timeline);
    if all.is_empty() {
        html.raw(
            "<p>No process was OOM-killed, killed by a signal, and no container's last process \
             exited while the recording ran.</p>\n",
        );
        return;
    }
    for ending in all {
        let (comm, pid) = match (ending.death, ending.kill) {
            (Some(d), _) => (d.exit.comm.as_str(), d.exit.pid),
            (None, Some(k)) => (k.event.comm.as_str(), k.event.pid),
            (None, None) => continue,
        };
        let container = ending.container;
        html.raw("<div class=\"kill\">\n").element(
            "<h3>",
            format!("{comm} (pid {pid}) in {}", container.name()),
            "</h3>\n",
        );
        if let Some(death) = ending.death {
            html.element(
                "<p class=\"explanation\">",
                death.exit.explanation.clone(),
                "</p>\n",
            );
        }
        html.raw("<table>\n")
            .row(["Time".to_string(), when_of(timeline, &ending)]);
        if let Some(death) = ending.death {
            death_rows(html, container, death);
        }
        if let Some(kill) = ending.kill {
            kill_rows(html, container, kill);
        }
        html.raw("</table>\n</div>\n");
    }
}

fn when_of(timeline: &Timeline, ending: &Ending<'_>) -> String {
    when(timeline, ending.kill.map_or(ending.t, |k| k.t))
}

/// The evidence of an `exit` line: the code, and the signal with its sender, or the limit.
fn death_rows(html: &mut Html, container: &Container, death: &Death) {
    let e = &death.exit;
    let status = match &e.signal {
        Some(signal) => format!("{} ({signal})", e.exit_code),
        None => e.exit_code.to_string(),
    };
    html.row(["Exit code".to_string(), status])
        .row(["Cause".to_string(), e.cause.replace('_', " ")]);
    if let (Some(cgroup), Some(source)) = (&e.oom_cgroup, &e.limit_source) {
        html.row([
            "Limit reached".to_string(),
            format!("{source} cgroup {cgroup}"),
        ]);
    }
    if let (Some(sender), Some(pid)) = (&e.sender_comm, e.sender_pid) {
        let container_of = e
            .sender_container
            .as_ref()
            .map(|c| format!(", container {c}"))
            .unwrap_or_default();
        html.row([
            "Sent by".to_string(),
            format!("{sender} (pid {pid}{container_of})"),
        ]);
    }
    let signals: Vec<String> = container
        .signals
        .iter()
        .filter(|s| s.signal.pid == e.pid && s.t <= death.t)
        .map(|s| {
            format!(
                "{} from {} (pid {}) {:.1} s before",
                s.signal.signal,
                s.signal.sender_comm,
                s.signal.sender_pid,
                death.t - s.t
            )
        })
        .collect();
    if !signals.is_empty() {
        html.row(["Signals".to_string(), signals.join("; ")]);
    }
}

/// The evidence of an `oom_kill` line: the victim, the limit, what the container did before,
/// and the warnings given.
fn kill_rows(html: &mut Html, container: &Container, kill: &Kill) {
    let e = &kill.event;
    html.row(["Process".to_string(), format!("{} (pid {})", e.comm, e.pid)])
        .row([
            "RSS at the kill".to_string(),
            format!(
                "anonymous {}, file {}, shared memory {}; virtual size {}",
                opt_mib(e.anon_rss_bytes),
                opt_mib(e.file_rss_bytes),
                opt_mib(e.shmem_rss_bytes),
                opt_mib(e.total_vm_bytes)
            ),
        ])
        .row([
            "oom_score_adj".to_string(),
            e.oom_score_adj
                .map_or_else(|| "—".into(), |v| v.to_string()),
        ])
        .row(["Limit".to_string(), opt_mib(e.limit_bytes)]);
    if let Some(cgroup) = e.victim_cgroup.as_ref().or(kill.cgroup.as_ref()) {
        html.row(["Cgroup".to_string(), cgroup.clone()]);
    }
    let before = container.points.iter().rev().find(|p| p.t <= kill.t);
    let doing = match (before, container.growth_before(kill.t, GROWTH_WINDOW_S)) {
        (Some(p), growth) => {
            let share = p
                .limit
                .filter(|&l| l > 0)
                .map(|l| format!(" ({:.0} % of the limit)", p.usage as f64 * 100.0 / l as f64))
                .unwrap_or_default();
            let rate = growth.map_or_else(
                || "growth unknown (too few samples)".into(),
                |g| {
                    format!(
                        "unreclaimable memory grew {:.2} MiB/s over the last {GROWTH_WINDOW_S:.0} s",
                        g / (1024.0 * 1024.0)
                    )
                },
            );
            format!(
                "usage {}{share} at the last sample, {:.1} s before; {rate}",
                mib(p.usage),
                kill.t - p.t
            )
        }
        (None, _) => "no sample before the kill".into(),
    };
    if let Some(constraint) = &e.constraint {
        let limit = match (&e.oom_cgroup, &e.oom_limit_source) {
            (Some(cgroup), Some(source)) => format!(": the {source} cgroup {cgroup}"),
            _ => String::new(),
        };
        html.row(["Constraint".to_string(), format!("{constraint}{limit}")]);
    }
    html.row(["Before it".to_string(), doing])
        .row(["Warnings".to_string(), warnings_before(container, kill)]);
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
    html.raw("<h3>Recommendation</h3>\n");
    match advice {
        Recommendation::Figures {
            request,
            limit,
            reasoning,
        } => {
            html.element(
                "<p>",
                format!(
                    "memory request {}, memory limit {}",
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
        Recommendation::NotEnoughHistory { reason } => {
            html.element("<p>", format!("Not enough history: {reason}."), "</p>\n");
        }
    }
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
mod tests {
    use super::*;

    fn timeline(lines: &[&str]) -> Timeline {
        let mut timeline = Timeline::new(Some(100.0));
        for text in lines {
            let line =
                crate::recording::Line::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            timeline.add(line);
        }
        timeline
    }

    const WHO: &str = r#""cgroup":"/sys/fs/cgroup/x","namespace":null,"pod":null,"container":null"#;

    #[test]
    fn a_death_is_one_entry_with_its_kill_and_its_signals() {
        let timeline = timeline(&[
            &format!(
                r#"{{"ts":101,{WHO},"type":"oom_kill","pid":7,"comm":"<b>leak</b>","limit_bytes":67108864,"constraint":"memcg","oom_cgroup":"/sys/fs/cgroup/x","oom_limit_source":"cgroup","source":"bpf"}}"#
            ),
            &format!(
                r#"{{"ts":101.1,{WHO},"type":"exit","pid":7,"comm":"<b>leak</b>","exit_code":137,"signal":"SIGKILL","cause":"oom_limit","oom_cgroup":"/sys/fs/cgroup/x","limit_source":"cgroup","explanation":"OOM-killed: its cgroup's limit of 64.0MiB was reached"}}"#
            ),
            &format!(
                r#"{{"ts":105,{WHO},"type":"signal","pid":8,"comm":"sleep","signal":"SIGTERM","sender_pid":3,"sender_comm":"runc"}}"#
            ),
            &format!(
                r#"{{"ts":135,{WHO},"type":"exit","pid":8,"comm":"sleep","exit_code":137,"signal":"SIGKILL","cause":"signal","sender_pid":3,"sender_comm":"runc","explanation":"SIGKILL from runc (pid 3) 30 s after a SIGTERM: stopped by the runtime when the grace period ran out, not an OOM kill"}}"#
            ),
        ]);
        let all = endings(&timeline);
        assert_eq!(all.len(), 2, "the kill and its exit are one death");
        assert!(all[0].kill.is_some() && all[0].death.is_some());
        assert!(all[1].kill.is_none());
        let mut html = Html::default();
        endings_section(&mut html, &timeline);
        let page = html.finish();
        assert!(page.contains("How containers ended"));
        assert!(page.contains("&lt;b&gt;leak&lt;/b&gt; (pid 7)"), "{page}");
        assert!(!page.contains("<b>leak"), "names are escaped");
        assert!(
            page.contains("OOM-killed: its cgroup&#39;s limit of 64.0MiB was reached"),
            "{page}"
        );
        assert!(
            page.contains("SIGTERM from runc (pid 3) 30.0 s before"),
            "{page}"
        );
        assert!(page.contains("cgroup cgroup /sys/fs/cgroup/x"), "{page}");
    }

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0.0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400.0), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_795_627_057.4), "2026-11-25 17:17:37 UTC");
    }
}
