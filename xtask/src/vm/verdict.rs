//! The host's judgement of what a guest sent on its results port (the format is in init.sh):
//! the profiler's own JSON lines, checked against what the guest says it did.
use std::collections::BTreeMap;

use serde_json::Value;

/// What the guest sent, split into its parts.
#[derive(Debug, Default)]
pub struct GuestReport {
    /// `=== kv KEY VALUE` facts (the last one of a key wins).
    pub facts: BTreeMap<String, String>,
    /// `=== begin NAME` … `=== end NAME` files, line by line.
    pub sections: BTreeMap<String, Vec<String>>,
    /// `=== overhead MODE ROUND VALUE`: pages per second (`None` when the run printed none).
    pub overhead: Vec<(String, u32, Option<f64>)>,
    /// Whether `=== done` came: everything was sent.
    pub done: bool,
}

impl GuestReport {
    /// Parses the results port's text; lines outside the protocol are ignored.
    pub fn parse(text: &str) -> GuestReport {
        let mut report = GuestReport::default();
        let mut open: Option<(String, Vec<String>)> = None;
        for line in text.lines().map(|l| l.trim_end_matches('\r')) {
            if let Some((name, lines)) = open.as_mut() {
                if line.strip_prefix("=== end ") == Some(name.as_str()) {
                    if let Some((name, lines)) = open.take() {
                        report.sections.insert(name, lines);
                    }
                } else {
                    lines.push(line.to_owned());
                }
                continue;
            }
            let Some(rest) = line.strip_prefix("=== ") else {
                continue;
            };
            let (word, rest) = rest.split_once(' ').unwrap_or((rest, ""));
            match word {
                "kv" => {
                    let (key, value) = rest.split_once(' ').unwrap_or((rest, ""));
                    report.facts.insert(key.to_owned(), value.trim().to_owned());
                }
                "begin" => open = Some((rest.to_owned(), Vec::new())),
                "overhead" => {
                    let mut words = rest.split_whitespace();
                    if let (Some(mode), Some(Ok(round))) =
                        (words.next(), words.next().map(str::parse))
                    {
                        let value = words.next().and_then(|v| v.parse().ok());
                        report.overhead.push((mode.to_owned(), round, value));
                    }
                }
                "done" => report.done = true,
                _ => {}
            }
        }
        // A section cut short (the guest died while sending it) still counts for what it has.
        if let Some((name, lines)) = open {
            report.sections.insert(name, lines);
        }
        report
    }

    /// A fact, if the guest sent it.
    pub fn fact(&self, key: &str) -> Option<&str> {
        self.facts.get(key).map(String::as_str)
    }

    /// A section on one line (empty when missing), for messages.
    pub fn one_line(&self, name: &str) -> String {
        self.sections
            .get(name)
            .map(|l| l.join(" / "))
            .unwrap_or_default()
    }

    /// The JSON objects of a section (lines that do not parse are skipped).
    pub fn json_lines(&self, name: &str) -> Vec<Value> {
        self.sections
            .get(name)
            .into_iter()
            .flatten()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// A section parsed as one JSON document (`profiler doctor --json` prints several lines).
    pub fn json_document(&self, name: &str) -> Option<Value> {
        serde_json::from_str(&self.sections.get(name)?.join("\n")).ok()
    }
}

/// One check and its outcome.
#[derive(Debug)]
pub struct Check {
    /// What is checked.
    pub name: &'static str,
    /// Whether it held.
    pub passed: bool,
    /// The figures behind the outcome.
    pub detail: String,
}

/// The page-fault throughput with the profiler watching, relative to without.
#[derive(Debug)]
pub struct Overhead {
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
pub struct Verdict {
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
    /// The overhead figure, when measured.
    pub overhead: Option<Overhead>,
}

impl Verdict {
    /// Whether every check held.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.passed)
    }
}

/// The name of the check that is expected to fail until the charge path gets fentry/kprobe
/// programs for kernels without the memcg tracepoints.
pub const NOT_POLLING: &str = "charge path hooked (mode is not polling)";

const MIB: f64 = 1024.0 * 1024.0;

fn check(checks: &mut Vec<Check>, name: &'static str, passed: bool, detail: String) {
    checks.push(Check {
        name,
        passed,
        detail,
    });
}

/// Judges a guest's report.
pub fn judge(report: &GuestReport) -> Verdict {
    let mut checks = Vec::new();
    check(
        &mut checks,
        "guest sent every result",
        report.done,
        if report.done {
            format!("guest uptime {} s", report.fact("uptime").unwrap_or("?"))
        } else {
            "the results port ends before `=== done`".into()
        },
    );

    let doctor = report.json_document("doctor");
    let text = |v: Option<&Value>| v.and_then(Value::as_str).map(brief);
    let hooks = doctor
        .as_ref()
        .and_then(|d| d.get("hooks"))
        .and_then(Value::as_array)
        .map(|hooks| {
            hooks
                .iter()
                .map(|h| {
                    let field = |key| h.get(key).and_then(Value::as_str);
                    // `hook` and `kind` since the fentry/kprobe modes; `tracepoint` before.
                    let name = field("hook").or(field("tracepoint")).unwrap_or("?");
                    let kind = field("kind").map_or(String::new(), |k| format!("{k} "));
                    let status = field("status").unwrap_or("?");
                    match field("detail") {
                        Some(detail) => format!("{kind}{name}: {status} ({})", brief(detail)),
                        None => format!("{kind}{name}: {status}"),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    check(
        &mut checks,
        "profiler doctor ran",
        report.fact("doctor_status") == Some("0") && doctor.is_some(),
        format!(
            "exit status {}, {}",
            report.fact("doctor_status").unwrap_or("?"),
            if doctor.is_some() {
                "JSON read".to_owned()
            } else {
                format!("no JSON; stderr: {}", report.one_line("doctor_stderr"))
            }
        ),
    );

    let cgroup = report.fact("cgroup").unwrap_or("?");
    let limit: Option<u64> = report.fact("limit_bytes").and_then(|l| l.parse().ok());
    let lines = report.json_lines("watch");
    let of_type = |kind: &'static str| {
        lines
            .iter()
            .filter(move |l| l.get("type").and_then(Value::as_str) == Some(kind))
    };
    let start =
        of_type("watch_start").find(|l| l.get("cgroup").and_then(Value::as_str) == Some(cgroup));
    let start_ok = start.is_some_and(|s| {
        s.get("cgroup_version").and_then(Value::as_str) == Some("v2")
            && s.get("limit_bytes").and_then(Value::as_u64) == limit
    });
    check(
        &mut checks,
        "watch started on the v2 cgroup with its limit",
        start_ok,
        match start {
            Some(s) => format!(
                "{cgroup}: cgroup_version {}, limit_bytes {} (set {})",
                s.get("cgroup_version").unwrap_or(&Value::Null),
                s.get("limit_bytes").unwrap_or(&Value::Null),
                limit.map_or("?".into(), |l| l.to_string())
            ),
            None => format!(
                "no watch_start for {cgroup} (watch_started {}; stderr: {})",
                report.fact("watch_started").unwrap_or("?"),
                report.one_line("watch_stderr")
            ),
        },
    );

    checks.push(growth_check(&lines, cgroup, limit));
    checks.push(charge_check(&lines, cgroup));
    checks.push(psi_check(&lines, cgroup));
    checks.push(kill_check(report, &lines, cgroup));
    checks.push(kprobe_check(report));
    let stack = report.one_line("hang_stack");
    check(
        &mut checks,
        "nothing hung",
        report.fact("hang").is_none(),
        match report.fact("hang") {
            Some(hang) => format!("{hang}; kernel stack: {stack}"),
            None => "every process ended when told to".into(),
        },
    );

    let end = of_type("end").next_back();
    let end_reason = end.and_then(|e| e.get("reason")).and_then(Value::as_str);
    check(
        &mut checks,
        "watch ended on SIGINT",
        end_reason == Some("signal") && report.fact("watch_status") == Some("0"),
        format!(
            "end reason {}, exit status {}",
            end_reason.unwrap_or("none"),
            report.fact("watch_status").unwrap_or("?")
        ),
    );

    // The mode the watch used, from every line that carries one, else doctor's.
    let mut modes: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.get("mode").and_then(Value::as_str))
        .collect();
    modes.sort_unstable();
    modes.dedup();
    let doctor_mode = doctor
        .as_ref()
        .and_then(|d| d.get("mode"))
        .and_then(Value::as_str);
    let mode = match modes.as_slice() {
        [one] => Some((*one).to_owned()),
        [] => doctor_mode.map(str::to_owned),
        several => Some(several.join("+")),
    };
    let mode_reason = text(doctor.as_ref().and_then(|d| d.get("mode_reason")));
    check(
        &mut checks,
        NOT_POLLING,
        mode.as_deref()
            .is_some_and(|m| m != "polling" && !m.contains('+'))
            && doctor_mode.is_none_or(|d| d != "polling"),
        format!(
            "watch mode {}, doctor mode {}: {}",
            mode.as_deref().unwrap_or("unknown"),
            doctor_mode.unwrap_or("unknown"),
            mode_reason.as_deref().unwrap_or("no reason given")
        ),
    );

    let overhead = overhead(report);
    let expected_rounds: Option<usize> = report.fact("rounds").and_then(|r| r.parse().ok());
    check(
        &mut checks,
        "overhead measured",
        overhead.as_ref().is_some_and(|o| o.rounds > 0) && report.fact("overhead_error").is_none(),
        match (&overhead, report.fact("overhead_error")) {
            (_, Some(error)) => error.to_owned(),
            (Some(o), None) => format!(
                "{} of {} rounds with both figures",
                o.rounds,
                expected_rounds.map_or("?".into(), |r| r.to_string())
            ),
            (None, None) => "no round gave both figures".into(),
        },
    );

    Verdict {
        mode,
        mode_reason,
        oom_reason: text(doctor.as_ref().and_then(|d| d.get("oom_reason"))),
        hooks,
        checks,
        overhead,
    }
}

/// The samples before the kill rise toward the limit: at least three, each within 5 % of the
/// limit of the one before or above it, the highest at ≥ 50 % of the limit and ≥ 25 % of it
/// above the first.
fn growth_check(lines: &[Value], cgroup: &str, limit: Option<u64>) -> Check {
    let before_kill = lines
        .iter()
        .take_while(|l| l.get("type").and_then(Value::as_str) != Some("oom_kill"));
    let usage: Vec<u64> = before_kill
        .filter(|l| {
            l.get("type").and_then(Value::as_str) == Some("sample")
                && l.get("cgroup").and_then(Value::as_str) == Some(cgroup)
        })
        .filter_map(|l| l.get("usage_bytes").and_then(Value::as_u64))
        .collect();
    let name = "samples follow the growth";
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

/// The samples of `cgroup` before the kill.
fn samples_before_kill<'a>(lines: &'a [Value], cgroup: &'a str) -> impl Iterator<Item = &'a Value> {
    lines
        .iter()
        .take_while(|l| l.get("type").and_then(Value::as_str) != Some("oom_kill"))
        .filter(move |l| {
            l.get("type").and_then(Value::as_str) == Some("sample")
                && l.get("cgroup").and_then(Value::as_str) == Some(cgroup)
        })
}

/// The charge-path hooks fire on the real charges (a hooked function whose calls the compiler
/// inlined would attach and see nothing): the bytes the charge rates add up to between the
/// first and the last sample before the kill are at least half the usage's growth (and not
/// absurdly more: the leak only allocates).
fn charge_check(lines: &[Value], cgroup: &str) -> Check {
    let samples: Vec<(f64, f64, u64)> = samples_before_kill(lines, cgroup)
        .filter_map(|l| {
            Some((
                l.get("ts")?.as_f64()?,
                l.get("charge_rate_bytes_per_s")?.as_f64()?,
                l.get("usage_bytes")?.as_u64()?,
            ))
        })
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

/// The forced `--mode kprobe` run: its samples say `kprobe` and its hooks see the growth.
fn kprobe_check(report: &GuestReport) -> Check {
    let name = "--mode kprobe works and sees the charges";
    let cgroup = report.fact("kprobe_cgroup").unwrap_or("?");
    let lines = report.json_lines("kprobe_watch");
    let modes: Vec<&str> = lines
        .iter()
        .filter(|l| l.get("type").and_then(Value::as_str) == Some("sample"))
        .filter_map(|l| l.get("mode").and_then(Value::as_str))
        .collect();
    let charges = charge_check(&lines, cgroup);
    let all_kprobe = !modes.is_empty() && modes.iter().all(|m| *m == "kprobe");
    Check {
        name,
        passed: all_kprobe && charges.passed && report.fact("kprobe_status") == Some("0"),
        detail: format!(
            "{} samples, modes {:?}, exit status {}; {}{}",
            modes.len(),
            {
                let mut m = modes.clone();
                m.dedup();
                m
            },
            report.fact("kprobe_status").unwrap_or("?"),
            charges.detail,
            if all_kprobe {
                String::new()
            } else {
                format!("; stderr: {}", report.one_line("kprobe_stderr"))
            }
        ),
    }
}

/// cgroup v2 with PSI (Debian's kernels have it on): the samples carry `psi_some_avg10`.
fn psi_check(lines: &[Value], cgroup: &str) -> Check {
    let values: Vec<f64> = samples_before_kill(lines, cgroup)
        .filter_map(|l| l.get("psi_some_avg10").and_then(Value::as_f64))
        .collect();
    let total = samples_before_kill(lines, cgroup).count();
    Check {
        name: "samples carry PSI (memory.pressure)",
        passed: total > 0 && values.len() == total,
        detail: format!(
            "{} of {total} samples with psi_some_avg10, highest {:.2} %",
            values.len(),
            values.iter().copied().fold(0.0, f64::max)
        ),
    }
}

/// An `oom_kill` line names the workload's pid, in the watched cgroup, and the kernel did
/// kill it (exit status 137, `oom_kill` in memory.events).
fn kill_check(report: &GuestReport, lines: &[Value], cgroup: &str) -> Check {
    let pid: Option<u64> = report.fact("workload_pid").and_then(|p| p.parse().ok());
    let kernel_kills = report
        .sections
        .get("memory_events")
        .into_iter()
        .flatten()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .and_then(|n| n.trim().parse::<u64>().ok());
    let kills: Vec<&Value> = lines
        .iter()
        .filter(|l| l.get("type").and_then(Value::as_str) == Some("oom_kill"))
        .collect();
    let ours = kills.iter().find(|k| {
        pid.is_some()
            && k.get("pid").and_then(Value::as_u64) == pid
            && k.get("cgroup").and_then(Value::as_str) == Some(cgroup)
            && k.get("victim_cgroup").and_then(Value::as_str) == Some(cgroup)
    });
    let killed = report.fact("workload_status") == Some("137")
        && kernel_kills.is_some_and(|n| n >= 1)
        && report.fact("workload_timeout").is_none();
    let field = |k: &Value, f: &str| k.get(f).map_or("null".into(), Value::to_string);
    let detail =
        match ours {
            Some(k) => format!(
            "pid {} comm {} cgroup {} victim_cgroup {} source {}; workload exit {}, memory.events \
             oom_kill {}",
            field(k, "pid"),
            field(k, "comm"),
            field(k, "cgroup"),
            field(k, "victim_cgroup"),
            field(k, "source"),
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
                .map(|k| format!("(pid {} cgroup {})", field(k, "pid"), field(k, "victim_cgroup")))
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

/// `text` on one line, each verifier log in it cut down to its complaint (the last line before
/// its statistics): doctor's details carry whole logs, hundreds of lines each.
pub fn brief(text: &str) -> String {
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

/// Pairs the two modes' figures round by round.
fn overhead(report: &GuestReport) -> Option<Overhead> {
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
        .filter_map(|r| Some((figure("none", r)?, figure("watch", r)?)))
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
