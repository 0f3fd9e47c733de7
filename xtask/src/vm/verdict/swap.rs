//! The check of the swap scenario: a cgroup with a memory limit and a swap allowance on a zram
//! swap device, leaking random bytes to its kill. What the kernel enforces is memory and swap
//! together; the samples must say what it may swap, and the forecast must aim at the kill the
//! kernel makes, not at the memory limit alone.
use records::{Body, Line, OomKill, Sample};

use super::{Check, GuestReport};

const MIB: f64 = 1024.0 * 1024.0;

/// The check's name.
pub(super) const SWAP: &str = "with swap the kill comes when memory and swap are full, as forecast";

/// How long before the kill the forecast that is judged was made, seconds.
const LEAD_S: f64 = 30.0;
/// The forecasts that may stand for it: made this long before the kill.
const LEADS_S: std::ops::RangeInclusive<f64> = 20.0..=45.0;
/// How far its ETA may be from the real time to the kill, as a share of that time.
const ETA_ERROR: f64 = 0.4;
/// How close `swap_max_bytes` must be to the swap limit the guest set (the node's free swap,
/// 256 MiB of zram, is far above it).
const SWAP_MAX_SLACK: f64 = 0.05;
/// Memory and swap are full at the kill: the last sample before it holds at least this share
/// of limit + swap allowance (the leak adds about 1.4 MiB/s in the guests, a sample a second;
/// they held 99 % of it).
const FULL: f64 = 0.85;

/// The guest's swap scenario, judged (skipped, and passed, only where the kernel cannot run
/// it: no zram, or cgroup v1).
pub(super) fn swap_check(report: &GuestReport) -> Check {
    if let Some(why) = report.fact("swap_unavailable") {
        let kernel_lacks_it = why.contains("the kernel has no zram") || why.contains("cgroup v1");
        return Check {
            name: SWAP,
            passed: kernel_lacks_it,
            detail: if kernel_lacks_it {
                format!("skipped: {why}")
            } else {
                why.to_owned()
            },
        };
    }
    Check::judged(SWAP, judge(report))
}

/// What is wrong, and the figures measured.
fn judge(report: &GuestReport) -> (Vec<String>, Vec<String>) {
    let mut problems = Vec::new();
    let mut figures = Vec::new();
    let fact = |key: &str| report.fact(key).and_then(|v| v.parse::<u64>().ok());
    let (Some(cgroup), Some(limit), Some(swap_set), Some(pid)) = (
        report.fact("swap_cgroup"),
        fact("swap_limit_bytes"),
        fact("swap_max_set_bytes"),
        report.fact("swap_pid").and_then(|p| p.parse::<u32>().ok()),
    ) else {
        problems.push(format!(
            "the guest did not run the swap leak (watch stderr: {})",
            report.one_line("swap_stderr")
        ));
        return (problems, figures);
    };
    let lines = report.json_lines("swap_watch");
    let kill: Option<(f64, &OomKill)> = lines.iter().find_map(|l| match &l.body {
        Body::OomKill(k) if k.pid == pid => Some((l.ts, k)),
        _ => None,
    });
    let kernel_kills = report
        .sections
        .get("swap_memory_events")
        .into_iter()
        .flatten()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .and_then(|n| n.trim().parse::<u64>().ok());
    if report.fact("swap_leak_status") != Some("137") || kernel_kills != Some(1) {
        problems.push(format!(
            "the kernel's side: the reader's exit status {}, memory.events oom_kill {kernel_kills:?}",
            report.fact("swap_leak_status").unwrap_or("?")
        ));
    }
    let Some((kill_ts, _)) = kill else {
        problems.push(format!("no oom_kill line for pid {pid}"));
        return (problems, figures);
    };
    let samples: Vec<(f64, &Sample)> = samples_before(&lines, cgroup, kill_ts);
    let allowance = swap_set as f64;

    // What the samples say it may swap, and what it did.
    let maxes: Vec<u64> = samples
        .iter()
        .filter_map(|(_, s)| s.swap_max_bytes)
        .collect();
    let off = maxes
        .iter()
        .filter(|&&m| (m as f64 - allowance).abs() > SWAP_MAX_SLACK * allowance)
        .count();
    if maxes.len() < samples.len() || off > 0 || samples.is_empty() {
        problems.push(format!(
            "swap_max_bytes in {} of {} samples, {off} of them more than {:.0} % from the \
             {:.0} MiB set",
            maxes.len(),
            samples.len(),
            SWAP_MAX_SLACK * 100.0,
            allowance / MIB
        ));
    }
    let swapped = samples
        .iter()
        .filter_map(|(_, s)| s.swap_bytes)
        .max()
        .unwrap_or(0);
    if swapped == 0 {
        problems.push("no sample before the kill shows swap in use".into());
    }
    figures.push(format!(
        "{} samples before the kill: swap up to {:.1} MiB, swap_max_bytes {} (set {:.0} MiB)",
        samples.len(),
        swapped as f64 / MIB,
        range_mib(&maxes),
        allowance / MIB
    ));

    // Full at the kill: memory and swap, not the memory limit alone.
    let both = (limit + swap_set) as f64;
    let held = |s: &Sample| s.unreclaimable_bytes.unwrap_or(0) + s.swap_bytes.unwrap_or(0);
    match samples.last() {
        Some((ts, last)) => {
            let total = held(last) as f64;
            if total < FULL * both {
                problems.push(format!(
                    "the last sample before the kill holds {:.1} MiB, under {:.0} % of the \
                     {:.0} MiB of memory and swap",
                    total / MIB,
                    FULL * 100.0,
                    both / MIB
                ));
            }
            figures.push(format!(
                "killed at unreclaimable {:.1} + swap {:.1} = {:.1} MiB of {:.0} + {:.0} MiB \
                 ({:.1} s after the last sample)",
                last.unreclaimable_bytes.unwrap_or(0) as f64 / MIB,
                last.swap_bytes.unwrap_or(0) as f64 / MIB,
                total / MIB,
                limit as f64 / MIB,
                allowance / MIB,
                kill_ts - ts
            ));
        }
        None => problems.push("no sample before the kill".into()),
    }
    let peak = |key: &str| fact(key).map(|p| p as f64);
    if let Some(swap_peak) = peak("swap_swap_peak") {
        if swap_peak < FULL * allowance {
            problems.push(format!(
                "the kernel's memory.swap.peak is {:.1} MiB of the {:.0} MiB allowed",
                swap_peak / MIB,
                allowance / MIB
            ));
        }
    }
    figures.push(format!(
        "kernel: memory.peak {}, memory.swap.peak {}, memory.swap.events {}",
        peak("swap_memory_peak").map_or("?".into(), |p| format!("{:.1} MiB", p / MIB)),
        peak("swap_swap_peak").map_or("? (no such file)".into(), |p| format!("{:.1} MiB", p / MIB)),
        report.one_line("swap_swap_events")
    ));
    // Where a forecast against the memory limit alone would have put the kill.
    if let Some((ts, _)) = samples.iter().find(|(_, s)| held(s) >= limit) {
        figures.push(format!(
            "memory + swap passed the {:.0} MiB memory limit {:.1} s before the kill",
            limit as f64 / MIB,
            kill_ts - ts
        ));
    }

    // The forecast made about 30 s before the kill.
    let forecast = samples
        .iter()
        .filter_map(|(ts, s)| Some((kill_ts - ts, s.eta_seconds?)))
        .filter(|(lead, _)| LEADS_S.contains(lead))
        .min_by(|a, b| (a.0 - LEAD_S).abs().total_cmp(&(b.0 - LEAD_S).abs()));
    match forecast {
        Some((lead, eta)) => {
            let error = (eta - lead) / lead;
            if error.abs() > ETA_ERROR {
                problems.push(format!(
                    "the forecast {lead:.1} s before the kill said {eta:.1} s ({:+.0} %, \
                     allowed ±{:.0} %)",
                    error * 100.0,
                    ETA_ERROR * 100.0
                ));
            }
            figures.push(format!(
                "forecast {lead:.1} s before the kill: ETA {eta:.1} s ({:+.0} %)",
                error * 100.0
            ));
        }
        None => problems.push(format!(
            "no sample {:.0}..{:.0} s before the kill carries an ETA (ETAs at {})",
            LEADS_S.start(),
            LEADS_S.end(),
            samples
                .iter()
                .filter_map(|(ts, s)| Some(format!("{:.0}s:{:.0}", kill_ts - ts, s.eta_seconds?)))
                .collect::<Vec<_>>()
                .join(" ")
        )),
    }
    // The warning names swap among what fills up.
    let reason = lines.iter().rev().find_map(|l| match &l.body {
        Body::Warning(w) if l.ts <= kill_ts && l.cgroup.as_deref() == Some(cgroup) => {
            Some(w.reason.as_str())
        }
        _ => None,
    });
    match reason {
        Some(reason) if reason.contains("swap") => {
            figures.push(format!("last warning before the kill: {reason:?}"));
        }
        Some(reason) => problems.push(format!(
            "the last warning before the kill does not mention swap: {reason:?}"
        )),
        None => problems.push("no warning before the kill".into()),
    }
    if let Some(stat) = report.fact("zram_mm_stat") {
        figures.push(format!("zram mm_stat after the kill: {stat}"));
    }
    (problems, figures)
}

/// The samples of `cgroup` before `kill_ts`, with their times.
fn samples_before<'a>(lines: &'a [Line], cgroup: &str, kill_ts: f64) -> Vec<(f64, &'a Sample)> {
    lines
        .iter()
        .filter(|l| l.ts < kill_ts && l.cgroup.as_deref() == Some(cgroup))
        .filter_map(|l| match &l.body {
            Body::Sample(s) => Some((l.ts, s)),
            _ => None,
        })
        .collect()
}

/// `a..b MiB` (or `a MiB`, or `none`).
fn range_mib(values: &[u64]) -> String {
    match (values.iter().min(), values.iter().max()) {
        (Some(&lo), Some(&hi)) if lo == hi => format!("{:.1} MiB", lo as f64 / MIB),
        (Some(&lo), Some(&hi)) => format!("{:.1}..{:.1} MiB", lo as f64 / MIB, hi as f64 / MIB),
        _ => "none".into(),
    }
}
