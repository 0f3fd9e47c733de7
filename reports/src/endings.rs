//! The "How containers ended" section: one entry per death, with its explanation and the
//! evidence (the `exit` line, the `oom_kill` line of the same process, the signals before it,
//! and for a node OOM the next-victim ranking just before), and for a kill the process that
//! grew and the stacks that charged most before it.
use crate::chart::clock;
use crate::html::Html;
use crate::node::ranking_row;
use crate::page::{mib, opt_mib, utc, GROWTH_WINDOW_S};
use crate::processes::kill_growth;
use crate::stacks::kill_stacks;
use crate::timeline::{Container, Death, Kill, Timeline};

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

pub(crate) fn endings_section(html: &mut Html, timeline: &Timeline) {
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
        let by_node = ending.death.is_some_and(|d| d.exit.cause == "oom_node")
            || ending
                .kill
                .is_some_and(|k| k.event.constraint.as_deref() == Some("node"));
        if by_node {
            ranking_row(html, &timeline.node, when_t(&ending), pid);
        }
        html.raw("</table>\n");
        if let Some(kill) = ending.kill {
            kill_growth(html, timeline, container, kill);
            kill_stacks(html, container, kill);
        }
        html.raw("</div>\n");
    }
}

/// When the death happened: the kill's time when there was one (the exit comes after).
fn when_t(ending: &Ending<'_>) -> f64 {
    ending.kill.map_or(ending.t, |k| k.t)
}

fn when_of(timeline: &Timeline, ending: &Ending<'_>) -> String {
    when(timeline, when_t(ending))
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
            let repeats = match s.signal.repeats {
                0 => String::new(),
                n => format!(" (repeated {n} times after the one before it)"),
            };
            format!(
                "{} from {} (pid {}) {:.1} s before{repeats}",
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
    if let Some(group) = &e.oom_group {
        let record = container
            .group_kills
            .iter()
            .find(|g| &g.group.oom_group == group && (g.t - kill.t).abs() <= SAME_DEATH_S);
        let victims = record.map_or_else(String::new, |g| {
            let all: Vec<String> = g
                .group
                .victims
                .iter()
                .map(|v| format!("{} (pid {})", v.comm, v.pid))
                .collect();
            format!(": {}", all.join(", "))
        });
        html.row([
            "Group kill".to_string(),
            format!("every process of {group} (memory.oom.group is set){victims}"),
        ]);
    }
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
}
