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
