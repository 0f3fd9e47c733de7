//! The watches forced to one charge-path mode (`init.sh`'s `forced_mode`): `--mode kprobe`,
//! the fallback no kernel of the matrix chooses by itself, and `--mode fentry`, which the
//! kernels with the memcg tracepoints (7.x) never choose and 5.10 cannot run. A forced mode
//! either works (its samples say the mode and its hooks see a 32 MiB growth) or, where the
//! kernel lacks it and doctor said so, is refused: the watch exits non-zero at once with the
//! reason, and the check passes as skipped.
use records::{Body, Probe};

use super::{checks::charge_check, stacks, Check, GuestReport};

/// How a forced watch went.
enum Outcome {
    /// It ran: the modes its samples name, its exit status.
    Ran { modes: Vec<String>, status: String },
    /// The kernel cannot run the mode, doctor said so, and the watch said why (one line).
    Refused { why: String },
}

/// What the guest's forced watch in `mode` did; a watch that neither ran nor was refused as
/// it should is `Ran` with what it did, and fails its check.
fn outcome(report: &GuestReport, mode: &str, doctor: Option<&Probe>) -> Outcome {
    let modes: Vec<String> = report
        .json_lines(&format!("{mode}_watch"))
        .iter()
        .filter_map(|l| match &l.body {
            Body::Sample(sample) => sample.mode.clone(),
            _ => None,
        })
        .collect();
    let status = report
        .fact(&format!("{mode}_status"))
        .unwrap_or("?")
        .to_owned();
    let stderr = report.one_line(&format!("{mode}_stderr"));
    let doctor_refused = doctor.is_some_and(|p| {
        p.mode.as_deref() != Some(mode)
            && p.hooks
                .iter()
                .any(|h| h.kind.as_deref() == Some(mode) && h.status == "failed")
    });
    if modes.is_empty() && status != "0" && doctor_refused && stderr.contains(mode) {
        Outcome::Refused { why: stderr }
    } else {
        Outcome::Ran { modes, status }
    }
}

/// A mode forced on every guest.
pub(super) struct Forced {
    /// `kprobe`, `fentry`: the `--mode`, and the scenario's name (its facts and files).
    pub mode: &'static str,
    /// Whether a kernel that lacks the mode (as doctor found) may refuse it with a reason.
    may_refuse: bool,
    /// The names of its two checks: the mode and the charges, the stacks.
    names: [&'static str; 2],
}

/// `--mode kprobe`: every kernel of the matrix has kprobes, so it must run everywhere.
pub(super) const KPROBE: Forced = Forced {
    mode: "kprobe",
    may_refuse: false,
    names: [
        "--mode kprobe works and sees the charges",
        "--stacks in kprobe mode samples and names them",
    ],
};

/// `--mode fentry`: runs and sees the charges, or (5.10) is refused as doctor said.
pub(super) const FENTRY: Forced = Forced {
    mode: "fentry",
    may_refuse: true,
    names: [
        "--mode fentry works and sees the charges, or is refused with the kernel's reason",
        "--stacks in fentry mode samples and names them (unless refused)",
    ],
};

impl Forced {
    /// The run, judged: its samples all say the mode, its hooks see the growth, it ended 0 on
    /// SIGINT; or, where allowed, the kernel refused the mode as doctor said.
    pub(super) fn check(&self, report: &GuestReport, doctor: Option<&Probe>) -> Check {
        let (name, mode) = (self.names[0], self.mode);
        let (modes, status) = match outcome(report, mode, doctor) {
            Outcome::Refused { why } if self.may_refuse => {
                return Check {
                    name,
                    passed: true,
                    detail: format!(
                        "skipped: the kernel lacks the mode (doctor: its hooks failed); the \
                         watch said: {why}"
                    ),
                }
            }
            Outcome::Refused { why } => (Vec::new(), format!("refused: {why}")),
            Outcome::Ran { modes, status } => (modes, status),
        };
        let section = format!("{mode}_watch");
        let cgroup = report.fact(&format!("{mode}_cgroup")).unwrap_or("?");
        let charges = charge_check(&report.json_lines(&section), cgroup);
        let all_mode = !modes.is_empty() && modes.iter().all(|m| m == mode);
        let mut seen = modes.clone();
        seen.dedup();
        Check {
            name,
            passed: all_mode && charges.passed && status == "0",
            detail: format!(
                "{} samples, modes {seen:?}, exit status {status}; {}{}",
                modes.len(),
                charges.detail,
                if all_mode {
                    String::new()
                } else {
                    format!("; stderr: {}", report.one_line(&format!("{mode}_stderr")))
                }
            ),
        }
    }

    /// The run's `--stacks` samples, named; skipped where the kernel refused the mode.
    pub(super) fn stacks(&self, report: &GuestReport, doctor: Option<&Probe>) -> Check {
        let name = self.names[1];
        match outcome(report, self.mode, doctor) {
            Outcome::Refused { .. } if self.may_refuse => Check {
                name,
                passed: true,
                detail: "skipped: the kernel lacks the mode".into(),
            },
            _ => stacks::stacks_check(report, &format!("{}_watch", self.mode), name),
        }
    }
}

#[cfg(test)]
mod tests {
    //! On two real guests' runs of the `fentry` scenario (issue 17), cut down to doctor and
    //! that scenario's facts and files: `fentry-7.2.txt` (Debian's 7.2.13, sid: the memcg
    //! tracepoints are chosen, the forced fentry watch saw a 16 MiB growth and named its
    //! stacks) and `fentry-5.10-refused.txt` (Debian's 5.10.0-46 on cgroup v1: the fentry
    //! programs call `bpf_get_func_arg`, which 5.10 lacks; doctor's fentry hooks failed and the
    //! forced watch exited 1 saying so).
    use super::*;
    use crate::vm::verdict::judge;

    const RAN: &str = include_str!("../testdata/fentry-7.2.txt");
    const REFUSED: &str = include_str!("../testdata/fentry-5.10-refused.txt");

    fn both(forced: &Forced, text: &str) -> [Check; 2] {
        let report = GuestReport::parse(text);
        let doctor = report.json_document("doctor");
        let probe = doctor.as_ref().map(|d| &d.probe);
        [forced.check(&report, probe), forced.stacks(&report, probe)]
    }

    #[test]
    fn fentry_forced_on_a_tracepoint_kernel_runs_and_sees_the_charges() {
        let [check, stacks] = both(&FENTRY, RAN);
        assert!(
            check.passed && !check.detail.starts_with("skipped"),
            "{check:?}"
        );
        assert!(check.detail.contains(r#"modes ["fentry"]"#), "{check:?}");
        assert!(
            stacks.passed && !stacks.detail.starts_with("skipped"),
            "{stacks:?}"
        );
        let verdict = judge(&GuestReport::parse(RAN));
        assert_eq!(verdict.mode.as_deref(), Some("tracepoint"));
        assert!(
            verdict.checks.iter().all(|c| c.passed),
            "{:?}",
            verdict.checks
        );
        assert_eq!(
            verdict.checks.len(),
            5,
            "sent, doctor, hang and the two fentry checks"
        );
    }

    #[test]
    fn fentry_refused_by_a_kernel_without_its_helper_is_skipped_with_the_reason() {
        let [check, stacks] = both(&FENTRY, REFUSED);
        assert!(check.passed, "{check:?}");
        assert!(check.detail.starts_with("skipped"), "{check:?}");
        assert!(check.detail.contains("bpf_get_func_arg"), "{check:?}");
        assert!(
            stacks.passed && stacks.detail.starts_with("skipped"),
            "{stacks:?}"
        );
    }

    #[test]
    fn a_refusal_doctor_did_not_foresee_fails() {
        // Doctor found the fentry hooks attached: the refusal is then the profiler's fault.
        let text = REFUSED.replace(
            r#""kind": "fentry",
      "status": "failed""#,
            r#""kind": "fentry",
      "status": "attached""#,
        );
        assert_ne!(text, REFUSED);
        let [check, stacks] = both(&FENTRY, &text);
        assert!(!check.passed, "{check:?}");
        assert!(!stacks.passed, "{stacks:?}");
    }

    #[test]
    fn kprobes_may_not_be_refused() {
        // The same refusal, had it been the kprobe mode's (doctor's kprobe hooks failed, and
        // it fell back to polling): every kernel has kprobes, so this is a failure.
        let text = REFUSED
            .replace(r#""mode": "kprobe""#, r#""mode": "polling""#)
            .replace("fentry_", "kprobe_")
            .replace(r#""kind": "fentry""#, r#""kind": "kprobe""#)
            .replace("--mode fentry", "--mode kprobe");
        let [check, stacks] = both(&KPROBE, &text);
        assert!(!check.passed, "{check:?}");
        assert!(
            check.detail.contains("refused: error: --mode kprobe"),
            "{check:?}"
        );
        assert!(!stacks.passed, "{stacks:?}");
    }

    #[test]
    fn a_forced_watch_in_another_mode_fails() {
        let text = RAN.replace(r#""mode":"fentry""#, r#""mode":"tracepoint""#);
        assert_ne!(text, RAN);
        let [check, _] = both(&FENTRY, &text);
        assert!(!check.passed, "{check:?}");
        assert!(check.detail.contains("tracepoint"), "{check:?}");
    }
}
