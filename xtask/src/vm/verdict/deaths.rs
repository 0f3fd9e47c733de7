//! The checks of the deaths only a guest can have: a group kill (`memory.oom.group`, cgroup
//! v2) and a node (global) OOM, each judged on the watch's own lines against what the guest
//! and the kernel say happened.
use records::{Body, Exit, Line, NextVictim, OomKill};

use super::{Check, GuestReport};

/// The `oom_kill` line of `pid`, with its time.
fn kill_of(lines: &[Line], pid: u32) -> Option<(f64, &OomKill)> {
    lines.iter().find_map(|l| match &l.body {
        Body::OomKill(k) if k.pid == pid => Some((l.ts, k)),
        _ => None,
    })
}

/// The `exit` line of `pid`.
fn exit_of(lines: &[Line], pid: u32) -> Option<&Exit> {
    lines.iter().find_map(|l| match &l.body {
        Body::Exit(e) if e.pid == pid => Some(e),
        _ => None,
    })
}

fn pid_fact(report: &GuestReport, key: &str) -> Option<u32> {
    report.fact(key).and_then(|p| p.parse().ok())
}

/// The group kill: both processes killed by the kernel in one group kill of the cgroup; each
/// has an `oom_kill` naming the group and an `exit` with cause `oom_limit`, and one
/// `oom_group_kill` line names both. The kernel's `oom_group_kill` in memory.events agrees.
pub(super) fn group_check(report: &GuestReport) -> Check {
    let name = "a group kill names all its victims";
    if let Some(why) = report.fact("group_unavailable") {
        let v1 = report.fact("cgroup_version") == Some("1");
        return Check {
            name,
            passed: v1,
            detail: if v1 {
                format!("skipped: {why}")
            } else {
                format!("{why}, but the guest runs cgroup v2")
            },
        };
    }
    let lines = report.json_lines("group_watch");
    let group = report.fact("group_cgroup").unwrap_or("?");
    let (Some(held), Some(leak)) = (
        pid_fact(report, "group_held_pid"),
        pid_fact(report, "group_leak_pid"),
    ) else {
        return Check {
            name,
            passed: false,
            detail: format!(
                "the guest did not start the group's processes (group_set {}, watch stderr: {})",
                report.fact("group_set").unwrap_or("?"),
                report.one_line("group_stderr")
            ),
        };
    };
    let kernel_group_kills = report
        .sections
        .get("group_events")
        .into_iter()
        .flatten()
        .find_map(|l| l.strip_prefix("oom_group_kill "))
        .and_then(|n| n.trim().parse::<u64>().ok());
    let mut problems = Vec::new();
    for pid in [held, leak] {
        match kill_of(&lines, pid) {
            Some((_, k)) if k.oom_group.as_deref() == Some(group) => {}
            Some((_, k)) => problems.push(format!(
                "pid {pid}'s oom_kill says oom_group {:?}",
                k.oom_group
            )),
            None => problems.push(format!("no oom_kill for pid {pid}")),
        }
        match exit_of(&lines, pid) {
            Some(e) if e.cause == "oom_limit" && e.explanation.contains("memory.oom.group") => {}
            Some(e) => problems.push(format!(
                "pid {pid}'s exit: cause {}, {:?}",
                e.cause, e.explanation
            )),
            None => problems.push(format!("no exit line for pid {pid}")),
        }
    }
    let groups: Vec<Vec<u32>> = lines
        .iter()
        .filter_map(|l| match &l.body {
            Body::OomGroupKill(g) if g.oom_group == group => {
                Some(g.victims.iter().map(|v| v.pid).collect())
            }
            _ => None,
        })
        .collect();
    match groups.as_slice() {
        [one] if one.contains(&held) && one.contains(&leak) => {}
        other => problems.push(format!("oom_group_kill lines' victims: {other:?}")),
    }
    let killed = report.fact("group_held_status") == Some("137")
        && report.fact("group_leak_status") == Some("137")
        && kernel_group_kills == Some(1);
    if !killed {
        problems.push(format!(
            "the kernel's side: exit statuses {} and {}, memory.events oom_group_kill {:?}",
            report.fact("group_held_status").unwrap_or("?"),
            report.fact("group_leak_status").unwrap_or("?"),
            kernel_group_kills
        ));
    }
    Check {
        name,
        passed: problems.is_empty(),
        detail: if problems.is_empty() {
            format!(
                "pids {held} and {leak} killed together in {group}: one oom_group_kill line, \
                 each oom_kill names the group, each exit explains it"
            )
        } else {
            problems.join("; ")
        },
    }
}

/// How long before a node OOM kill the ranking that names its victim first may be.
const RANKED_WITHIN_S: f64 = 5.0;

/// The node OOM: the kernel killed the BestEffort-like process first (the Guaranteed-like one
/// lived); its `oom_kill` says constraint `node` and rank 1, its `exit` cause `oom_node`, and a
/// `node` line shortly before ranked it first.
pub(super) fn node_oom_check(report: &GuestReport) -> Check {
    let name = "a node OOM is told, its victim ranked first before it";
    let lines = report.json_lines("node_watch");
    let Some(best) = pid_fact(report, "node_best_pid") else {
        return Check {
            name,
            passed: false,
            detail: format!(
                "the guest did not start the node OOM (stderr: {})",
                report.one_line("node_stderr")
            ),
        };
    };
    let mut problems = Vec::new();
    let kill = kill_of(&lines, best);
    match kill {
        Some((_, k))
            if k.constraint.as_deref() == Some("node") && k.next_victim_rank == Some(1) => {}
        Some((_, k)) => problems.push(format!(
            "its oom_kill: constraint {:?}, next_victim_rank {:?}",
            k.constraint, k.next_victim_rank
        )),
        None => problems.push(format!("no oom_kill for pid {best}")),
    }
    match exit_of(&lines, best) {
        Some(e) if e.cause == "oom_node" && e.exit_code == 137 => {}
        Some(e) => problems.push(format!(
            "its exit: cause {}, code {}, {:?}",
            e.cause, e.exit_code, e.explanation
        )),
        None => problems.push(format!("no exit line for pid {best}")),
    }
    let ranked_first = kill.and_then(|(t, _)| {
        lines.iter().rev().find_map(|l| match &l.body {
            Body::Node(n)
                if l.ts <= t
                    && t - l.ts <= RANKED_WITHIN_S
                    && n.next_victims
                        .first()
                        .is_some_and(|v: &NextVictim| v.pid == best) =>
            {
                Some(t - l.ts)
            }
            _ => None,
        })
    });
    if ranked_first.is_none() {
        problems.push(format!(
            "no node line within {RANKED_WITHIN_S} s before the kill ranks pid {best} first"
        ));
    }
    if report.fact("node_best_alive") != Some("no")
        || report.fact("node_guaranteed_alive") != Some("yes")
    {
        problems.push(format!(
            "the kernel's side: BestEffort-like alive {}, Guaranteed-like alive {}",
            report.fact("node_best_alive").unwrap_or("?"),
            report.fact("node_guaranteed_alive").unwrap_or("?")
        ));
    }
    Check {
        name,
        passed: problems.is_empty(),
        detail: if problems.is_empty() {
            format!(
                "pid {best} (oom_score_adj 1000) killed with constraint node, ranked first {:.1} \
                 s before; the -997 process lived",
                ranked_first.unwrap_or_default()
            )
        } else {
            problems.join("; ")
        },
    }
}

/// The node lines forecast the node running out before it did: a line before the first kill
/// gives a time to the eviction threshold or to running out.
pub(super) fn node_forecast_check(report: &GuestReport) -> Check {
    let lines = report.json_lines("node_watch");
    let first_kill = lines
        .iter()
        .find(|l| matches!(l.body, Body::OomKill(_)))
        .map(|l| l.ts);
    let nodes: Vec<(f64, &records::Node)> = lines
        .iter()
        .filter_map(|l| match &l.body {
            Body::Node(n) => Some((l.ts, n)),
            _ => None,
        })
        .collect();
    let forecast = first_kill.and_then(|kill| {
        nodes.iter().find_map(|(t, n)| {
            let eta = n.eta_eviction_seconds.or(n.eta_oom_seconds)?;
            (*t < kill).then_some((kill - t, eta))
        })
    });
    Check {
        name: "node lines forecast the node running out",
        passed: forecast.is_some(),
        detail: match (first_kill, forecast) {
            (Some(_), Some((lead, eta))) => format!(
                "first forecast {lead:.1} s before the kill: threshold or OOM in {eta:.1} s \
                 ({} node lines)",
                nodes.len()
            ),
            (Some(_), None) => format!(
                "no forecast in the {} node lines before the kill",
                nodes.len()
            ),
            (None, _) => format!("no kill among {} lines", lines.len()),
        },
    }
}
