//! The host's judgement of what a guest sent on its results port (the format is in init.sh):
//! the profiler's own JSON lines, read through the `records` crate, checked against what the
//! guest says it did. The parsing of the port is in `report`, the checks in `checks`, those of
//! the watches forced to a mode in `forced`, of the deaths only a guest can have in `deaths`,
//! and one module per scenario of its own (`ringloss`, `detach`, `pods`, `swap`).
use records::{Hook, Line};

mod checks;
mod deaths;
mod detach;
mod forced;
mod pods;
mod report;
mod ringloss;
mod stacks;
mod swap;

/// The scenario of the checks every guest is judged on, whatever it was told to run.
const ALWAYS: &str = "always";

pub(super) use report::GuestReport;

use checks::Watch;

/// One check and its outcome.
#[derive(Debug)]
pub(super) struct Check {
    /// What is checked.
    pub name: &'static str,
    /// Whether it held.
    pub passed: bool,
    /// The figures behind the outcome.
    pub detail: String,
}

impl Check {
    /// A check judged as `(problems, figures)`: it holds when nothing is wrong, and its detail
    /// gives the figures, after the problems when there are any.
    pub(super) fn judged(
        name: &'static str,
        (problems, figures): (Vec<String>, Vec<String>),
    ) -> Check {
        Check {
            name,
            passed: problems.is_empty(),
            detail: if problems.is_empty() {
                figures.join("; ")
            } else {
                format!("{}; measured: {}", problems.join("; "), figures.join("; "))
            },
        }
    }
}

/// The page-fault throughput with the profiler watching, relative to without.
#[derive(Debug)]
pub(super) struct Overhead {
    /// Rounds with both figures.
    pub rounds: usize,
    /// Median pages/s without the profiler.
    pub none: f64,
    /// Median pages/s with `profiler watch` on the cgroup.
    pub watch: f64,
    /// Per-round ratios watch/none: median, min, max.
    pub ratio: (f64, f64, f64),
}

/// Everything the host prints about one guest.
#[derive(Debug)]
pub(super) struct Verdict {
    /// `mode` of the watch's lines (else doctor's), e.g. `polling`.
    pub mode: Option<String>,
    /// Doctor's reason for the mode.
    pub mode_reason: Option<String>,
    /// Doctor's word on where OOM kills come from.
    pub oom_reason: Option<String>,
    /// Doctor's hooks: `name: status (detail)`.
    pub hooks: Vec<String>,
    /// The checks, in order.
    pub checks: Vec<Check>,
    /// The overhead figure of a watch in the mode it chose, when measured.
    pub overhead: Option<Overhead>,
    /// The same figure of a watch forced to the kprobe mode.
    pub kprobe_overhead: Option<Overhead>,
}

impl Verdict {
    /// Whether every check held.
    pub(super) fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.passed)
    }
}

/// The name of the check that is expected to fail until the charge path gets fentry/kprobe
/// programs for kernels without the memcg tracepoints.
pub(super) const NOT_POLLING: &str = "charge path hooked (mode is not polling)";

/// Judges a guest's report.
pub(super) fn judge(report: &GuestReport) -> Verdict {
    let doctor = report.json_document("doctor");
    let probe = doctor.as_ref().map(|d| &d.probe);
    let doctor_mode = probe.and_then(|p| p.mode.as_deref());
    let watch = Watch::of(report);
    let mode = watch_mode(&watch.lines, doctor_mode);
    let mode_reason = probe.and_then(|p| p.mode_reason.as_deref()).map(brief);
    let kprobe_overhead = overhead(report, "kprobe");
    let overhead = overhead(report, "watch");
    // Each check with the scenario of init.sh (`want NAME`) it judges: a guest told to run
    // only some (`--only`) is judged on those.
    let checks = vec![
        (ALWAYS, checks::sent_check(report)),
        (ALWAYS, checks::doctor_check(report, doctor.is_some())),
        ("leak", checks::start_check(report, &watch)),
        ("leak", checks::growth_check(&watch)),
        ("leak", checks::charge_check(&watch.lines, watch.cgroup)),
        ("leak", checks::psi_check(report, &watch)),
        ("leak", checks::kill_check(report, &watch)),
        (
            "leak",
            stacks::stacks_check(
                report,
                "watch",
                "--stacks samples the leak's charges and names them",
            ),
        ),
        ("kprobe", forced::KPROBE.check(report, probe)),
        ("kprobe", forced::KPROBE.stacks(report, probe)),
        ("fentry", forced::FENTRY.check(report, probe)),
        ("fentry", forced::FENTRY.stacks(report, probe)),
        ("adaptive", checks::adaptive_check(report)),
        ("group", deaths::group_check(report)),
        ("ringloss", ringloss::ringloss_check(report)),
        ("detach", detach::detach_check(report)),
        ("pods", pods::pods_check(report)),
        ("node", deaths::node_oom_check(report)),
        ("node", deaths::node_forecast_check(report)),
        ("swap", swap::swap_check(report)),
        (ALWAYS, checks::hang_check(report)),
        ("leak", checks::end_check(report, &watch)),
        (
            "leak",
            checks::mode_check(mode.as_deref(), doctor_mode, mode_reason.as_deref()),
        ),
        (
            "overhead",
            checks::overhead_check(report, overhead.as_ref(), kprobe_overhead.as_ref()),
        ),
    ];
    let only: Vec<&str> = report
        .fact("only")
        .unwrap_or("")
        .split(',')
        .filter(|s| !s.is_empty())
        .collect();
    let checks = checks
        .into_iter()
        .filter(|(scenario, _)| only.is_empty() || *scenario == ALWAYS || only.contains(scenario))
        .map(|(_, check)| check)
        .collect();
    Verdict {
        mode,
        mode_reason,
        oom_reason: probe.and_then(|p| p.oom_reason.as_deref()).map(brief),
        hooks: probe.map_or_else(Vec::new, |p| p.hooks.iter().map(hook).collect()),
        checks,
        overhead,
        kprobe_overhead,
    }
}

/// The mode the watch used, from every line that carries one (several joined by `+`), else
/// doctor's.
fn watch_mode(lines: &[Line], doctor_mode: Option<&str>) -> Option<String> {
    let mut modes: Vec<&str> = lines.iter().filter_map(|l| l.body.mode()).collect();
    modes.sort_unstable();
    modes.dedup();
    match modes.as_slice() {
        [one] => Some((*one).to_owned()),
        [] => doctor_mode.map(str::to_owned),
        several => Some(several.join("+")),
    }
}

/// One of doctor's hooks: `kind name: status (detail)`.
fn hook(hook: &Hook) -> String {
    let kind = hook
        .kind
        .as_ref()
        .map_or(String::new(), |k| format!("{k} "));
    let (name, status) = (&hook.hook, &hook.status);
    match &hook.detail {
        Some(detail) => format!("{kind}{name}: {status} ({})", brief(detail)),
        None => format!("{kind}{name}: {status}"),
    }
}

/// `text` on one line, each verifier log in it cut down to its complaint (the last line before
/// its statistics): doctor's details carry whole logs, hundreds of lines each.
pub(super) fn brief(text: &str) -> String {
    const LOG: &str = "Verifier output:";
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find(LOG) {
        out.push_str(&rest[..at]);
        let log = &rest[at + LOG.len()..];
        let end = log.find("\nverification time").unwrap_or(log.len());
        let complaint = log[..end]
            .lines()
            .rev()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or("");
        out.push_str("verifier: ");
        out.push_str(complaint);
        // The statistics end where the error's source continues (`: Invalid argument ...`).
        rest = match log[end..].find("\n:") {
            Some(i) => &log[end + i + 1..],
            None => "",
        };
    }
    out.push_str(rest);
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Pairs the figures of `with` (`watch` or `kprobe`) with those without a watch, round by round.
fn overhead(report: &GuestReport, with: &str) -> Option<Overhead> {
    let figure = |mode: &str, round: u32| {
        report
            .overhead
            .iter()
            .find(|(m, r, _)| m == mode && *r == round)
            .and_then(|(_, _, v)| *v)
    };
    let mut rounds: Vec<u32> = report.overhead.iter().map(|(_, r, _)| *r).collect();
    rounds.sort_unstable();
    rounds.dedup();
    let pairs: Vec<(f64, f64)> = rounds
        .into_iter()
        .filter_map(|r| Some((figure("none", r)?, figure(with, r)?)))
        .filter(|(none, _)| *none > 0.0)
        .collect();
    if pairs.is_empty() {
        return None;
    }
    let mut ratios: Vec<f64> = pairs.iter().map(|(n, w)| w / n).collect();
    let none: Vec<f64> = pairs.iter().map(|p| p.0).collect();
    let watch: Vec<f64> = pairs.iter().map(|p| p.1).collect();
    ratios.sort_by(f64::total_cmp);
    Some(Overhead {
        rounds: pairs.len(),
        none: median(none),
        watch: median(watch),
        ratio: (median(ratios.clone()), ratios[0], ratios[ratios.len() - 1]),
    })
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => values[n / 2],
        _ => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

#[cfg(test)]
mod tests;
