//! The detach scenario's check (scenarios/detach.sh): a `kill -9` of a watch, and of the
//! agent, runs none of the profiler's own clean-up, so everything it attached must go with its
//! file descriptors. The guest counts the kernel's BPF programs, maps and links, the perf
//! events holding programs and the lines of kprobe_events and uprobe_events before, during and
//! after each run; this check holds every run to "more while it ran, as before once it died".
use std::collections::BTreeMap;

use super::{Check, GuestReport};

/// The check's name.
pub(super) const DETACH: &str = "kill -9 of a watch leaves no program, link or map behind";

/// The runs that must start on every kernel: the default mode, the kprobe fallback (kprobes on
/// the charge-path functions exist wherever fentry does) and the agent. Other forced modes
/// may be refused where the kernel lacks them (`--mode tracepoint` before the memcg
/// tracepoints), as long as the refusal leaves nothing behind either.
const REQUIRED: [&str; 3] = ["auto", "kprobe", "serve"];

/// The kinds whose counts must be back where they were after the kill (`btfs`: the BTF the
/// programs' object loads into the kernel, beside the kernel's own).
const BACK: [&str; 7] = [
    "progs",
    "maps",
    "links",
    "btfs",
    "perf",
    "kprobe_events",
    "uprobe_events",
];

/// One count of the guest's `detach_count`: `progs=N maps=N ...` (`none` for a tracefs file
/// the kernel lacks).
type Count = BTreeMap<String, String>;

fn parse_count(text: &str) -> Count {
    text.split_whitespace()
        .filter_map(|w| w.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// One run's facts.
struct Run {
    before: Count,
    during: Option<Count>,
    after: Option<Count>,
}

impl Run {
    fn of(report: &GuestReport, name: &str) -> Run {
        let count = |when: &str| {
            report
                .fact(&format!("detach_{name}_{when}"))
                .map(parse_count)
        };
        Run {
            before: count("before").unwrap_or_default(),
            during: count("during"),
            after: count("after"),
        }
    }

    /// `kind` before → during → after, e.g. `0→11→0`.
    fn figures(&self, kind: &str) -> String {
        fn of<'c>(count: Option<&'c Count>, kind: &str) -> &'c str {
            count.and_then(|c| c.get(kind)).map_or("?", String::as_str)
        }
        match &self.during {
            Some(during) => format!(
                "{}→{}→{}",
                of(Some(&self.before), kind),
                of(Some(during), kind),
                of(self.after.as_ref(), kind)
            ),
            None => format!(
                "{}→{}",
                of(Some(&self.before), kind),
                of(self.after.as_ref(), kind)
            ),
        }
    }
}

/// Every run of the guest's detach scenario, judged.
pub(super) fn detach_check(report: &GuestReport) -> Check {
    Check::judged(DETACH, judge(report))
}

/// What is wrong, and per run the figures measured.
fn judge(report: &GuestReport) -> (Vec<String>, Vec<String>) {
    let mut problems = Vec::new();
    let mut figures = Vec::new();
    let Some(runs) = report.fact("detach_runs") else {
        problems.push("the guest did not finish the detach scenario (no detach_runs)".into());
        return (problems, figures);
    };
    match report.fact("detach_bpftool") {
        Some("ok") => {}
        other => problems.push(format!("bpftool did not list programs: {other:?}")),
    }
    let runs: Vec<&str> = runs.split_whitespace().collect();
    for required in REQUIRED {
        if !runs.contains(&required) {
            problems.push(format!("no {required} run"));
        }
    }
    for name in runs {
        let run = Run::of(report, name);
        let fact = |what: &str| report.fact(&format!("detach_{name}_{what}"));
        let mode = fact("mode").filter(|m| !m.is_empty());
        let label = match mode {
            Some(mode) if mode != name => format!("{name} ({mode})"),
            _ => name.to_owned(),
        };
        let settle = match fact("settle_ms") {
            Some("timeout") => "not back after 10 s".to_owned(),
            Some(ms) => format!("back in {ms} ms"),
            None => "never counted after".to_owned(),
        };
        let counts = BACK
            .iter()
            .map(|kind| format!("{kind} {}", run.figures(kind)))
            .collect::<Vec<_>>()
            .join(", ");
        match fact("refused") {
            Some(why) => {
                if REQUIRED.contains(&name) {
                    problems.push(format!("{label} did not start: {why}"));
                }
                figures.push(format!(
                    "{label}: refused ({}), {counts}, {settle}",
                    why.trim()
                ));
            }
            None => {
                if fact("status") != Some("137") {
                    problems.push(format!(
                        "{label}: exit status {} (137 is a SIGKILL)",
                        fact("status").unwrap_or("?")
                    ));
                }
                if let Some(slow) = fact("slow") {
                    problems.push(format!("{label}: {slow}"));
                }
                let count = |c: Option<&Count>| {
                    c.and_then(|c| c.get("progs"))
                        .and_then(|n| n.parse::<u64>().ok())
                };
                match (count(Some(&run.before)), count(run.during.as_ref())) {
                    (Some(before), Some(during)) if during > before => {}
                    _ => problems.push(format!(
                        "{label}: programs {}: the count does not see the running profiler",
                        run.figures("progs")
                    )),
                }
                figures.push(format!("{label}: {counts}, {settle}"));
            }
        }
        let after = run.after.as_ref();
        let differ: Vec<&str> = BACK
            .into_iter()
            // A kind not counted before is not known to be back either.
            .filter(|kind| {
                !run.before.contains_key(*kind)
                    || after.and_then(|a| a.get(*kind)) != run.before.get(*kind)
            })
            .collect();
        if !differ.is_empty() {
            problems.push(format!(
                "{label} left {} behind ({}; ids not there before: {}; bpftool: {})",
                differ.join(", "),
                differ
                    .iter()
                    .map(|k| format!("{k} {}", run.figures(k)))
                    .collect::<Vec<_>>()
                    .join(", "),
                fact("left").unwrap_or("?"),
                report.one_line(&format!("detach_{name}_after_bpftool"))
            ));
        } else if let Some(left) = fact("left").filter(|l| *l != "none") {
            // Counts back but other ids: something went and something else came.
            problems.push(format!("{label}: ids there after and not before: {left}"));
        }
    }
    (problems, figures)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The detach facts of a 6.12 guest run (`--only detach`), trimmed.
    const GUEST_6_12: &str = include_str!("../testdata/detach-6.12.txt");

    fn with(text: &str, edit: impl Fn(&str) -> Option<String>) -> GuestReport {
        let edited: Vec<String> = text
            .lines()
            .filter_map(|l| edit(l).or(Some(l.to_owned())).filter(|l| !l.is_empty()))
            .collect();
        GuestReport::parse(&edited.join("\n"))
    }

    #[test]
    fn the_guest_run_passes() {
        let check = detach_check(&GuestReport::parse(GUEST_6_12));
        assert!(check.passed, "{}", check.detail);
        assert!(
            check.detail.contains("auto (fentry): progs 0→11→0"),
            "{}",
            check.detail
        );
        assert!(
            check.detail.contains("tracepoint: refused"),
            "{}",
            check.detail
        );
        assert!(check.detail.contains("serve (fentry)"), "{}", check.detail);
    }

    #[test]
    fn a_program_left_after_the_kill_fails() {
        let report = with(GUEST_6_12, |l| {
            l.starts_with("=== kv detach_kprobe_after ").then(|| {
                "=== kv detach_kprobe_after progs=1 maps=0 links=1 btfs=1 perf=0 kprobe_events=0 \
                 uprobe_events=0"
                    .to_owned()
            })
        });
        let check = detach_check(&report);
        assert!(!check.passed);
        assert!(
            check.detail.contains("kprobe left progs, links behind"),
            "{}",
            check.detail
        );
    }

    #[test]
    fn a_legacy_kprobe_left_in_tracefs_fails() {
        let report = with(GUEST_6_12, |l| {
            l.starts_with("=== kv detach_serve_after ").then(|| {
                "=== kv detach_serve_after progs=0 maps=0 links=0 btfs=1 perf=0 kprobe_events=3 \
                 uprobe_events=0"
                    .to_owned()
            })
        });
        let check = detach_check(&report);
        assert!(!check.passed);
        assert!(
            check.detail.contains("serve (fentry) left kprobe_events"),
            "{}",
            check.detail
        );
    }

    #[test]
    fn a_count_that_does_not_see_the_watch_fails() {
        let report = with(GUEST_6_12, |l| {
            l.starts_with("=== kv detach_auto_during ").then(|| {
                "=== kv detach_auto_during progs=0 maps=0 links=0 btfs=1 perf=0 kprobe_events=0 \
                 uprobe_events=0"
                    .to_owned()
            })
        });
        let check = detach_check(&report);
        assert!(!check.passed);
        assert!(
            check.detail.contains("does not see the running profiler"),
            "{}",
            check.detail
        );
    }

    #[test]
    fn a_required_run_refused_or_missing_fails() {
        let refused = with(GUEST_6_12, |l| {
            l.starts_with("=== kv detach_kprobe_during ")
                .then(|| "=== kv detach_kprobe_refused error: no kprobes".to_owned())
        });
        assert!(!detach_check(&refused).passed);
        let missing = with(GUEST_6_12, |l| {
            l.starts_with("=== kv detach_runs ")
                .then(|| "=== kv detach_runs auto kprobe fentry tracepoint".to_owned())
        });
        let check = detach_check(&missing);
        assert!(!check.passed);
        assert!(check.detail.contains("no serve run"), "{}", check.detail);
        assert!(!detach_check(&GuestReport::parse("=== kv only detach\n=== done")).passed);
    }

    #[test]
    fn a_run_not_killed_by_sigkill_fails() {
        let report = with(GUEST_6_12, |l| {
            l.starts_with("=== kv detach_fentry_status ")
                .then(|| "=== kv detach_fentry_status 0".to_owned())
        });
        assert!(!detach_check(&report).passed);
    }

    #[test]
    fn other_ids_after_the_kill_fail() {
        let report = with(GUEST_6_12, |l| {
            l.starts_with("=== kv detach_auto_left ")
                .then(|| "=== kv detach_auto_left prog 42".to_owned())
        });
        let check = detach_check(&report);
        assert!(!check.passed);
        assert!(check.detail.contains("prog 42"), "{}", check.detail);
    }
}
