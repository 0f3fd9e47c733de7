//! The detach scenario's check (scenarios/detach.sh): not written yet.
use super::{Check, GuestReport};

/// Not written yet: fails.
pub(super) fn detach_check(report: &GuestReport) -> Check {
    Check {
        name: "detach",
        passed: false,
        detail: format!("not written yet ({} facts)", report.facts.len()),
    }
}
