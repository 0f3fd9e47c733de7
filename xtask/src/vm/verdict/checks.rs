//! The checks of a guest's report, one function each, in the order [`judge`](super::judge)
//! lists them. Each says what it checks, whether it held, and the figures behind that.
use records::{Body, Line, OomKill, Sample, WatchStart};

use super::{Check, GuestReport, Overhead, NOT_POLLING};

const MIB: f64 = 1024.0 * 1024.0;

/// The watch of the leak: its lines, and the cgroup and limit the guest set up for it.
pub(super) struct Watch<'a> {
    /// The watched cgroup's path.
    pub cgroup: &'a str,
    /// The limit the guest wrote, bytes.
    pub limit: Option<u64>,
    /// The watch's JSON lines.
    pub lines: Vec<Line>,
}

impl<'a> Watch<'a> {
    /// The `watch` section and the facts about it.
    pub(super) fn of(report: &'a GuestReport) -> Self {
        Watch {
            cgroup: report.fact("cgroup").unwrap_or("?"),
            limit: report.fact("limit_bytes").and_then(|l| l.parse().ok()),
            lines: report.json_lines("watch"),
        }
    }
}

/// `=== done` came: the guest sent everything.
pub(super) fn sent_check(report: &GuestReport) -> Check {
    Check {
        name: "guest sent every result",
        passed: report.done,
        detail: if report.done {
            format!("guest uptime {} s", report.fact("uptime").unwrap_or("?"))
        } else {
            "the results port ends before `=== done`".into()
        },
    }
}

/// `profiler doctor --json` exited 0 and its JSON read (`read`).
pub(super) fn doctor_check(report: &GuestReport, read: bool) -> Check {
    Check {
        name: "profiler doctor ran",
        passed: report.fact("doctor_status") == Some("0") && read,
        detail: format!(
            "exit status {}, {}",
            report.fact("doctor_status").unwrap_or("?"),
            if read {
                "JSON read".to_owned()
            } else {
                format!("no JSON; stderr: {}", report.one_line("doctor_stderr"))
            }
        ),
    }
}

/// Whether the guest ran the memory controller on cgroup v1 (`vmtest.cgroup=1`).
pub(super) fn cgroup_v1(report: &GuestReport) -> bool {
    report.fact("cgroup_version") == Some("1")
}

/// The watch's `watch_start` for the cgroup says the guest's cgroup version and the limit the
/// guest set.
pub(super) fn start_check(report: &GuestReport, watch: &Watch<'_>) -> Check {
    let cgroup = watch.cgroup;
    let version = if cgroup_v1(report) { "v1" } else { "v2" };
    let start: Option<&WatchStart> = watch.lines.iter().find_map(|l| match &l.body {
        Body::WatchStart(start) if l.cgroup.as_deref() == Some(cgroup) => Some(start),
        _ => None,
    });
    Check {
        name: "watch started on the guest's cgroup version with its limit",
        passed: start.is_some_and(|s| {
            s.cgroup_version.as_deref() == Some(version) && s.limit_bytes == watch.limit
        }),
        detail: match start {
            Some(s) => format!(
                "{cgroup}: cgroup_version {}, limit_bytes {} (set {})",
                json_string(s.cgroup_version.as_deref()),
                json_number(s.limit_bytes),
                watch.limit.map_or("?".into(), |l| l.to_string())
            ),
            None => format!(
                "no watch_start for {cgroup} (watch_started {}; stderr: {})",
                report.fact("watch_started").unwrap_or("?"),
                report.one_line("watch_stderr")
            ),
        },
    }
}

/// The samples before the kill rise toward the limit: at least three, each within 5 % of the
/// limit of the one before or above it, the highest at ≥ 50 % of the limit and ≥ 25 % of it
/// above the first.
pub(super) fn growth_check(watch: &Watch<'_>) -> Check {
    let usage: Vec<u64> = samples_before_kill(&watch.lines, watch.cgroup)
        .map(|(_, s)| s.usage_bytes)
        .collect();
    let name = "samples follow the growth";
    let limit = watch.limit;
    let (Some(limit), Some(&first), Some(&max)) = (limit, usage.first(), usage.iter().max()) else {
        return Check {
            name,
            passed: false,
            detail: format!("{} samples before the kill, limit {limit:?}", usage.len()),
        };
    };
    let slack = limit / 20;
    let falls = usage.windows(2).filter(|w| w[1] + slack < w[0]).count();
    let passed = usage.len() >= 3
        && falls == 0
        && max * 2 >= limit
        && max.saturating_sub(first) * 4 >= limit;
    let shown: Vec<String> = usage
        .iter()
        .map(|u| format!("{:.1}", *u as f64 / MIB))
        .collect();
    Check {
        name,
        passed,
        detail: format!(
            "{} samples before the kill, usage MiB {} (peak {:.0} % of the {:.0} MiB limit){}",
            usage.len(),
            shown.join(" "),
            max as f64 * 100.0 / limit as f64,
            limit as f64 / MIB,
            if falls > 0 {
                format!(", {falls} drops of more than 5 % of the limit")
            } else {
                String::new()
            }
        ),
    }
}

/// The samples of `cgroup` before the first kill, with their times.
fn samples_before_kill<'a>(
    lines: &'a [Line],
    cgroup: &'a str,
) -> impl Iterator<Item = (f64, &'a Sample)> {
    lines
        .iter()
        .take_while(|l| !matches!(l.body, Body::OomKill(_)))
        .filter(move |l| l.cgroup.as_deref() == Some(cgroup))
        .filter_map(|l| match &l.body {
            Body::Sample(sample) => Some((l.ts, sample)),
            _ => None,
        })
}

/// The charge-path hooks fire on the real charges (a hooked function whose calls the compiler
/// inlined would attach and see nothing): the bytes the charge rates add up to between the
/// first and the last sample before the kill are at least half the usage's growth (and not
/// absurdly more: the leak only allocates).
pub(super) fn charge_check(lines: &[Line], cgroup: &str) -> Check {
    let samples: Vec<(f64, f64, u64)> = samples_before_kill(lines, cgroup)
        .filter_map(|(ts, s)| Some((ts, s.charge_rate_bytes_per_s?, s.usage_bytes)))
        .collect();
    let name = "the charge path sees the charges";
    let (Some(first), Some(last)) = (samples.first(), samples.last()) else {
        return Check {
            name,
            passed: false,
            detail: "no sample before the kill carries a charge rate".into(),
        };
    };
    // Each rate covers the time since the sample before it.
    let charged: f64 = samples
        .windows(2)
        .map(|w| w[1].1 * (w[1].0 - w[0].0).max(0.0))
        .sum();
    let grown = last.2.saturating_sub(first.2) as f64;
    let ratio = if grown > 0.0 { charged / grown } else { 0.0 };
    Check {
        name,
        passed: grown > 0.0 && (0.5..=4.0).contains(&ratio),
        detail: format!(
            "{:.1} MiB charged by the hooks while usage grew {:.1} MiB (ratio {ratio:.2}, goal 0.5..4)",
            charged / MIB,
            grown / MIB
        ),
    }
}

/// cgroup v2 with PSI (Debian's kernels have it on): the samples carry `psi_some_avg10`. A v1
/// cgroup has no pressure file of its own: there no sample may claim one.
pub(super) fn psi_check(report: &GuestReport, watch: &Watch<'_>) -> Check {
    let v1 = cgroup_v1(report);
    let values: Vec<f64> = samples_before_kill(&watch.lines, watch.cgroup)
        .filter_map(|(_, s)| s.psi_some_avg10)
        .collect();
    let total = samples_before_kill(&watch.lines, watch.cgroup).count();
    Check {
        name: "samples carry PSI where the cgroup has it (v2 memory.pressure)",
        passed: total > 0 && values.len() == if v1 { 0 } else { total },
        detail: format!(
            "{}{} of {total} samples with psi_some_avg10, highest {:.2} %",
            if v1 {
                "cgroup v1, no memory.pressure: "
            } else {
                ""
            },
            values.len(),
            values.iter().copied().fold(0.0, f64::max)
        ),
    }
}

/// An `oom_kill` line names the workload's pid, in the watched cgroup, and the kernel did
/// kill it (exit status 137, `oom_kill` in memory.events).
pub(super) fn kill_check(report: &GuestReport, watch: &Watch<'_>) -> Check {
    let cgroup = watch.cgroup;
    let pid: Option<u64> = report.fact("workload_pid").and_then(|p| p.parse().ok());
    let kernel_kills = report
        .sections
        .get("memory_events")
        .into_iter()
        .flatten()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .and_then(|n| n.trim().parse::<u64>().ok());
    let kills: Vec<(&Line, &OomKill)> = watch
        .lines
        .iter()
        .filter_map(|l| match &l.body {
            Body::OomKill(kill) => Some((l, kill)),
            _ => None,
        })
        .collect();
    let ours = kills.iter().find(|(line, k)| {
        pid.is_some()
            && Some(u64::from(k.pid)) == pid
            && line.cgroup.as_deref() == Some(cgroup)
            && k.victim_cgroup.as_deref() == Some(cgroup)
    });
    let killed = report.fact("workload_status") == Some("137")
        && kernel_kills.is_some_and(|n| n >= 1)
        && report.fact("workload_timeout").is_none();
    let detail = match ours {
        Some((line, k)) => format!(
            "pid {} comm {} cgroup {} victim_cgroup {} source {}; workload exit {}, memory.events \
             oom_kill {}",
            k.pid,
            json_string(Some(&k.comm)),
            json_string(line.cgroup.as_deref()),
            json_string(k.victim_cgroup.as_deref()),
            json_string(k.source.as_deref()),
            report.fact("workload_status").unwrap_or("?"),
            kernel_kills.map_or("?".into(), |n| n.to_string())
        ),
        None => format!(
            "no oom_kill with pid {} in {cgroup} among {} oom_kill lines {}; workload exit {}, \
             memory.events oom_kill {}{}",
            pid.map_or("?".into(), |p| p.to_string()),
            kills.len(),
            kills
                .iter()
                .map(|(_, k)| format!(
                    "(pid {} cgroup {})",
                    k.pid,
                    json_string(k.victim_cgroup.as_deref())
                ))
                .collect::<Vec<_>>()
                .join(" "),
            report.fact("workload_status").unwrap_or("?"),
            kernel_kills.map_or("?".into(), |n| n.to_string()),
            report
                .fact("workload_timeout")
                .map_or(String::new(), |t| format!(", not killed within {t} s"))
        ),
    };
    Check {
        name: "oom_kill names the workload's pid and cgroup",
        passed: ours.is_some() && killed,
        detail,
    }
}

/// `watch --adaptive`: the charge path detached while the cgroup was idle, attached again
/// (its programs loaded anew: fentry's or kprobe's, on these kernels) when it grew, and then
/// the samples carry charge rates from the hooks.
pub(super) fn adaptive_check(report: &GuestReport) -> Check {
    let name = "adaptive tracing detaches, re-attaches and sees the charges";
    let cgroup = report.fact("adaptive_cgroup").unwrap_or("?");
    let lines = report.json_lines("adaptive_watch");
    let switches: Vec<(f64, bool, String)> = lines
        .iter()
        .filter_map(|l| match &l.body {
            Body::ChargeTracing { armed, why } => {
                Some((l.ts, *armed, why.clone().unwrap_or_default()))
            }
            _ => None,
        })
        .collect();
    let detached = switches.iter().position(|(_, armed, _)| !armed);
    let attached = detached.and_then(|d| {
        switches[d..]
            .iter()
            .find(|(_, armed, _)| *armed)
            .map(|(ts, _, why)| (*ts, why.clone()))
    });
    // Samples after the re-attach that carry a charge rate, and one that saw the growth.
    let traced: Vec<f64> = attached.as_ref().map_or_else(Vec::new, |(at, _)| {
        lines
            .iter()
            .filter(|l| l.ts > *at && l.cgroup.as_deref() == Some(cgroup))
            .filter_map(|l| match &l.body {
                Body::Sample(s) => s.charge_rate_bytes_per_s,
                _ => None,
            })
            .collect()
    });
    let saw_growth = traced.iter().any(|&rate| rate > 1.0 * MIB);
    Check {
        name,
        passed: detached.is_some()
            && attached.is_some()
            && saw_growth
            && report.fact("adaptive_status") == Some("0"),
        detail: format!(
            "switches {:?}; {} samples with a charge rate after the re-attach, highest {:.1} \
             MiB/s; exit status {}{}",
            switches
                .iter()
                .map(|(_, armed, why)| format!("{}:{why}", if *armed { "on" } else { "off" }))
                .collect::<Vec<_>>(),
            traced.len(),
            traced.iter().copied().fold(0.0, f64::max) / MIB,
            report.fact("adaptive_status").unwrap_or("?"),
            if attached.is_some() {
                String::new()
            } else {
                format!("; stderr: {}", report.one_line("adaptive_stderr"))
            }
        ),
    }
}

/// Every process the guest started ended when told to (else the guest names it and sends its
/// kernel stack).
pub(super) fn hang_check(report: &GuestReport) -> Check {
    Check {
        name: "nothing hung",
        passed: report.fact("hang").is_none(),
        detail: match report.fact("hang") {
            // The rest of the guest's report on it (signal state per thread, system calls,
            // descriptors, output) is in results.txt, sections hang_*.
            Some(hang) => format!(
                "{hang}; kernel stack: {}; then: {}",
                report.one_line("hang_stack"),
                report.fact("hang_retry").unwrap_or("?")
            ),
            None => "every process ended when told to".into(),
        },
    }
}

/// The watch's last `end` line says `signal`, and it exited 0.
pub(super) fn end_check(report: &GuestReport, watch: &Watch<'_>) -> Check {
    let end_reason = watch
        .lines
        .iter()
        .rev()
        .find_map(|l| match &l.body {
            Body::End(end) => Some(end),
            _ => None,
        })
        .and_then(|end| end.reason.as_deref());
    Check {
        name: "watch ended on SIGINT",
        passed: end_reason == Some("signal") && report.fact("watch_status") == Some("0"),
        detail: format!(
            "end reason {}, exit status {}",
            end_reason.unwrap_or("none"),
            report.fact("watch_status").unwrap_or("?")
        ),
    }
}

/// The watch hooked the charge path (one mode, not polling), and so did doctor.
pub(super) fn mode_check(
    mode: Option<&str>,
    doctor_mode: Option<&str>,
    mode_reason: Option<&str>,
) -> Check {
    Check {
        name: NOT_POLLING,
        passed: mode.is_some_and(|m| m != "polling" && !m.contains('+'))
            && doctor_mode.is_none_or(|d| d != "polling"),
        detail: format!(
            "watch mode {}, doctor mode {}: {}",
            mode.unwrap_or("unknown"),
            doctor_mode.unwrap_or("unknown"),
            mode_reason.unwrap_or("no reason given")
        ),
    }
}

/// At least one overhead round gave all three figures (none, the watch in its own mode, the
/// watch forced to kprobe), and the guest reported no error.
pub(super) fn overhead_check(
    report: &GuestReport,
    overhead: Option<&Overhead>,
    kprobe: Option<&Overhead>,
) -> Check {
    let expected_rounds: Option<usize> = report.fact("rounds").and_then(|r| r.parse().ok());
    let rounds = |o: Option<&Overhead>| o.map_or(0, |o| o.rounds);
    Check {
        name: "overhead measured",
        passed: rounds(overhead) > 0
            && rounds(kprobe) > 0
            && report.fact("overhead_error").is_none(),
        detail: match report.fact("overhead_error") {
            Some(error) => error.to_owned(),
            None => format!(
                "{} of {} rounds with both figures, {} with the kprobe mode's",
                rounds(overhead),
                expected_rounds.map_or("?".into(), |r| r.to_string()),
                rounds(kprobe)
            ),
        },
    }
}

/// A string field as the JSON line has it (quoted and escaped, or `null`): the details show
/// the profiler's own words, so a comm or path with odd characters stays readable.
fn json_string(value: Option<&str>) -> String {
    value.map_or_else(
        || "null".to_owned(),
        |s| serde_json::to_string(s).unwrap_or_default(),
    )
}

/// A number field as the JSON line has it (`null` when absent).
fn json_number(value: Option<u64>) -> String {
    value.map_or_else(|| "null".to_owned(), |n| n.to_string())
}
