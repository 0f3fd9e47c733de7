//! The ringloss scenario's check (scenarios/ringloss.sh): the events ring overflowed on purpose
//! (the watch's reader stalled while processes of the watched cgroup died of SIGKILL, two
//! ring records each), and every record is accounted for, exactly: the `signal` and `exit`
//! lines of the storm (one line per record read: none is merged with another) plus the
//! `lost_events` lines' count equal the records produced, and that count equals the kernel's
//! own `LOST_EVENTS`, read with bpftool before the watch ended. A process killed after the
//! stall has its lines: the watch went on.
use records::{Body, Line};
use serde_json::Value;

use super::{Check, GuestReport};

/// The command name of the storm's processes, and of the one killed after the stall.
const STORM: &str = "ringstorm";
const AFTER: &str = "ringafter";

/// The figures the check compares.
#[derive(Debug, PartialEq)]
struct Figures {
    /// Processes the storm killed (two records each).
    killed: u64,
    /// The storm's `signal` lines of SIGKILL.
    signals: u64,
    /// The storm's `exit` lines of death by SIGKILL.
    exits: u64,
    /// The `lost_events` lines' count for the ring buffer.
    lost_lines: u64,
    /// The process killed after the stall: its `signal` and `exit` lines.
    after: (u64, u64),
}

impl Figures {
    fn of(lines: &[Line], killed: u64) -> Figures {
        let count = |kind: KillOf, who: &str| {
            lines
                .iter()
                .filter_map(|l| kind(&l.body))
                .filter(|(comm, signal)| *comm == who && *signal == Some("SIGKILL"))
                .count() as u64
        };
        Figures {
            killed,
            signals: count(signal, STORM),
            exits: count(exit, STORM),
            lost_lines: lines
                .iter()
                .filter_map(|l| match &l.body {
                    Body::LostEvents { count, source }
                        if source.as_deref() == Some("ring_buffer") =>
                    {
                        Some(*count)
                    }
                    _ => None,
                })
                .sum(),
            after: (count(signal, AFTER), count(exit, AFTER)),
        }
    }
}

/// Reads a kind of line as (process, signal), or `None` for other kinds.
type KillOf = fn(&Body) -> Option<(&str, Option<&str>)>;

/// A `signal` line's target and signal.
fn signal(body: &Body) -> Option<(&str, Option<&str>)> {
    match body {
        Body::Signal(s) => Some((s.comm.as_str(), Some(s.signal.as_str()))),
        _ => None,
    }
}

/// An `exit` line's process and the signal that ended it.
fn exit(body: &Body) -> Option<(&str, Option<&str>)> {
    match body {
        Body::Exit(e) => Some((e.comm.as_str(), e.signal.as_deref())),
        _ => None,
    }
}

/// The number after `name=` in a workload's line.
fn field(line: &str, name: &str) -> Option<u64> {
    line.split_whitespace()
        .find_map(|word| word.strip_prefix(name)?.strip_prefix('=')?.parse().ok())
}

/// The sum over the CPUs of entry 0 of a per-CPU array of `u64`, from `bpftool -j map dump`
/// (`[{"key":..,"values":[{"cpu":0,"value":V},..]}]`, V a number with BTF, little-endian
/// `"0x.."` bytes without). The section holds one dump per map found: there must be one.
fn kernel_lost(section: &[String]) -> Result<u64, String> {
    let dumps: Vec<&str> = section
        .iter()
        .map(|l| l.trim())
        .filter(|l| !l.is_empty())
        .collect();
    let [dump] = dumps.as_slice() else {
        return Err(format!(
            "{} map dumps of LOST_EVENTS, not one: {}",
            dumps.len(),
            dumps.join(" / ")
        ));
    };
    let read = || -> Option<u64> {
        let dump: Value = serde_json::from_str(dump).ok()?;
        let values = dump.as_array()?.first()?["values"].as_array()?;
        values.iter().map(|v| value_u64(&v["value"])).sum()
    };
    read().ok_or_else(|| format!("bpftool's dump of LOST_EVENTS did not read: {dump}"))
}

fn value_u64(value: &Value) -> Option<u64> {
    if let Some(n) = value.as_u64() {
        return Some(n);
    }
    let bytes = value.as_array()?;
    let mut n = 0u64;
    for (i, byte) in bytes.iter().enumerate().take(8) {
        let byte = u64::from_str_radix(byte.as_str()?.strip_prefix("0x")?, 16).ok()?;
        n |= byte << (8 * i);
    }
    Some(n)
}

/// Records produced == read + lost, the lines' lost == the kernel's, both non-zero, and the
/// watch went on after the stall and ended cleanly.
pub(super) fn ringloss_check(report: &GuestReport) -> Check {
    let name = "a full events ring is counted record by record, and the watch goes on";
    let fail = |detail: String| Check {
        name,
        passed: false,
        detail,
    };
    if report.fact("ringloss_watch_started") != Some("yes") {
        return fail(format!(
            "the watch did not start: {}",
            report.one_line("ringloss_stderr")
        ));
    }
    let storm = report.one_line("ringloss_storm");
    let killed = match (
        report.fact("ringloss_storm_status"),
        field(&storm, "killed"),
    ) {
        (Some("0"), Some(killed)) => killed,
        (status, _) => {
            return fail(format!(
                "the storm failed (status {}): {storm}",
                status.unwrap_or("?")
            ))
        }
    };
    let lines = report.json_lines("ringloss_watch");
    let f = Figures::of(&lines, killed);
    let kernel = report
        .sections
        .get("ringloss_lost_map")
        .map_or_else(|| Err("no bpftool dump".to_owned()), |s| kernel_lost(s));
    let produced = 2 * f.killed;
    let received = f.signals + f.exits;
    let mut detail = format!(
        "{} killed in {} s (reader stalled {} s): {produced} records produced, {} signal + {} \
         exit lines = {received} read, {} lost by the lost_events lines, {} by the kernel's \
         LOST_EVENTS; after the stall {} signal and {} exit line(s), seen {} s in; watch status {}",
        f.killed,
        report.fact("ringloss_storm_end_s").unwrap_or("?"),
        report.fact("ringloss_stall_s").unwrap_or("?"),
        f.signals,
        f.exits,
        f.lost_lines,
        kernel.as_ref().map_or_else(|e| e.clone(), u64::to_string),
        f.after.0,
        f.after.1,
        report.fact("ringloss_after_seen_s").unwrap_or("?"),
        report.fact("ringloss_status").unwrap_or("?"),
    );
    let mut problems = Vec::new();
    if f.lost_lines == 0 {
        problems.push("no record was lost: the ring never overflowed, nothing was tested".into());
    }
    match &kernel {
        Ok(k) if *k == f.lost_lines => {}
        Ok(k) => problems.push(format!(
            "the lines count {} lost, the kernel {k}",
            f.lost_lines
        )),
        Err(e) => problems.push(format!("the kernel's count: {e}")),
    }
    if received + f.lost_lines != produced {
        problems.push(format!(
            "read + lost = {}, not the {produced} produced",
            received + f.lost_lines
        ));
    }
    if f.after != (1, 1) {
        problems.push("the process killed after the stall lacks its signal or exit line".into());
    }
    if report.fact("ringloss_status") != Some("0") {
        problems.push("the watch did not end cleanly on SIGINT".into());
    }
    if !lines.iter().any(|l| matches!(l.body, Body::End(_))) {
        problems.push("no end line".into());
    }
    let passed = problems.is_empty();
    if !passed {
        detail = format!("{}; {detail}", problems.join("; "));
    }
    Check {
        name,
        passed,
        detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 6.12 guest's results.txt (`cargo xtask vm-test --only ringloss`), trimmed: of the
    /// storm's 1,560 `signal` and 1,560 `exit` lines read, the first 20 of each are kept (and
    /// two `sample` and `node` lines, no doctor). 4,000 processes killed, 4,880 records lost.
    const TRIMMED: &str = include_str!("../testdata/ringloss-6.12.txt");
    /// The processes the kept lines and the lost records account for: (40 + 4,880) / 2.
    const KEPT_KILLED: &str = "killed=2460";

    /// The recording as if the storm had killed only the processes its kept lines are of.
    fn consistent() -> String {
        TRIMMED.replace("killed=4000", KEPT_KILLED)
    }

    #[test]
    fn the_recorded_figures_are_read() {
        let report = GuestReport::parse(TRIMMED);
        let figures = Figures::of(&report.json_lines("ringloss_watch"), 4000);
        assert_eq!(
            figures,
            Figures {
                killed: 4000,
                signals: 20,
                exits: 20,
                lost_lines: 4880,
                after: (1, 1),
            }
        );
        let map = &report.sections["ringloss_lost_map"];
        assert_eq!(kernel_lost(map), Ok(4880));
    }

    #[test]
    fn lines_and_losses_that_add_up_pass() {
        let check = ringloss_check(&GuestReport::parse(&consistent()));
        assert!(check.passed, "{}", check.detail);
        assert!(
            check.detail.contains("4920 records produced"),
            "{}",
            check.detail
        );
    }

    #[test]
    fn lines_missing_break_the_accounting() {
        // The trimmed recording as it is: 3,080 lines are missing.
        let check = ringloss_check(&GuestReport::parse(TRIMMED));
        assert!(!check.passed, "{}", check.detail);
        assert!(
            check
                .detail
                .contains("read + lost = 4920, not the 8000 produced"),
            "{}",
            check.detail
        );
    }

    #[test]
    fn a_kernel_count_that_differs_fails() {
        // One more record lost on CPU 0 (0x0202 -> 0x0203) than the lines say.
        let text = consistent().replacen(r#"["0x02","0x02","#, r#"["0x03","0x02","#, 1);
        let check = ringloss_check(&GuestReport::parse(&text));
        assert!(!check.passed, "{}", check.detail);
        assert!(
            check
                .detail
                .contains("the lines count 4880 lost, the kernel 4881"),
            "{}",
            check.detail
        );
    }

    #[test]
    fn no_loss_proves_nothing() {
        let text: String = consistent()
            .lines()
            .filter(|l| !l.contains(r#""type":"lost_events""#))
            .map(|l| format!("{l}\n"))
            .collect();
        let check = ringloss_check(&GuestReport::parse(&text));
        assert!(!check.passed, "{}", check.detail);
        assert!(
            check.detail.contains("never overflowed"),
            "{}",
            check.detail
        );
    }

    #[test]
    fn a_watch_that_stopped_reading_fails() {
        // The process killed after the stall was never told.
        let text: String = consistent()
            .lines()
            .filter(|l| !l.contains(r#""comm":"ringafter""#))
            .map(|l| format!("{l}\n"))
            .collect();
        let check = ringloss_check(&GuestReport::parse(&text));
        assert!(!check.passed, "{}", check.detail);
        assert!(
            check.detail.contains("after the stall lacks"),
            "{}",
            check.detail
        );
    }

    #[test]
    fn bpftool_values_read_as_numbers_or_bytes() {
        let bytes = [concat!(
            r#"[{"key":["0x00","0x00","0x00","0x00"],"values":["#,
            r#"{"cpu":0,"value":["0x10","0x13","0x00","0x00","0x00","0x00","0x00","0x00"]},"#,
            r#"{"cpu":1,"value":["0x02","0x00","0x00","0x00","0x00","0x00","0x00","0x00"]}]}]"#
        )
        .to_owned()];
        assert_eq!(kernel_lost(&bytes), Ok(0x1310 + 2));
        let numbers =
            [r#"[{"key":0,"values":[{"cpu":0,"value":7},{"cpu":1,"value":3}]}]"#.to_owned()];
        assert_eq!(kernel_lost(&numbers), Ok(10));
        assert!(kernel_lost(&[]).is_err());
        assert!(kernel_lost(&[numbers[0].clone(), numbers[0].clone()]).is_err());
    }
}
