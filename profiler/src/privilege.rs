//! Checks that this process may load and attach BPF programs, before anything is half done.
use std::fs;

use thiserror::Error;

const CAP_SYS_ADMIN: u32 = 21;
const CAP_SYSLOG: u32 = 34;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// Missing privileges, with what to do about it.
#[derive(Debug, Error)]
pub(crate) enum PrivilegeError {
    /// The effective capability set lacks what BPF tracing needs.
    #[error(
        "{what} needs CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN) to load its kernel programs, \
         and CAP_SYSLOG to read the kernel log; this process is missing {missing}. \
         Run it as root: sudo profiler {what_cmd} ..."
    )]
    Missing {
        /// What needed them.
        what: &'static str,
        /// The subcommand, for the suggestion.
        what_cmd: &'static str,
        /// Comma-separated names of the missing capabilities.
        missing: String,
    },
    /// `/proc/self/status` could not be read or parsed.
    #[error("cannot read this process's capabilities from /proc/self/status: {0}")]
    Status(String),
}

/// The effective capability mask of this process.
pub(crate) fn effective_capabilities() -> Result<u64, PrivilegeError> {
    let status = fs::read_to_string("/proc/self/status")
        .map_err(|e| PrivilegeError::Status(e.to_string()))?;
    parse_cap_eff(&status).ok_or_else(|| PrivilegeError::Status("no CapEff line".into()))
}

/// The `CapEff:` mask of a `/proc/<pid>/status` text.
pub(crate) fn parse_cap_eff(status: &str) -> Option<u64> {
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))?
        .trim();
    u64::from_str_radix(hex, 16).ok()
}

/// Names of the capabilities `caps` lacks for tracing; empty when it has enough.
pub(crate) fn missing_for_tracing(caps: u64) -> Vec<&'static str> {
    let has = |cap: u32| caps & (1 << cap) != 0;
    let mut missing = Vec::new();
    if !has(CAP_SYS_ADMIN) {
        if !has(CAP_BPF) {
            missing.push("CAP_BPF");
        }
        if !has(CAP_PERFMON) {
            missing.push("CAP_PERFMON");
        }
        if !missing.is_empty() {
            missing.push("CAP_SYS_ADMIN");
        }
    }
    if !has(CAP_SYSLOG) && !has(CAP_SYS_ADMIN) {
        missing.push("CAP_SYSLOG");
    }
    missing
}

/// Fails with a message naming the missing capabilities unless this process has them.
pub(crate) fn require_tracing(
    what: &'static str,
    what_cmd: &'static str,
) -> Result<(), PrivilegeError> {
    let missing = missing_for_tracing(effective_capabilities()?);
    if missing.is_empty() {
        Ok(())
    } else {
        Err(PrivilegeError::Missing {
            what,
            what_cmd,
            missing: missing.join(", "),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_has_everything() {
        assert!(missing_for_tracing(0x1ff_ffff_ffff).is_empty());
    }

    #[test]
    fn unprivileged_lacks_bpf_perfmon_and_syslog() {
        assert_eq!(
            missing_for_tracing(0),
            ["CAP_BPF", "CAP_PERFMON", "CAP_SYS_ADMIN", "CAP_SYSLOG"]
        );
    }

    #[test]
    fn bpf_perfmon_syslog_suffice() {
        let caps = (1 << CAP_BPF) | (1 << CAP_PERFMON) | (1 << CAP_SYSLOG);
        assert!(missing_for_tracing(caps).is_empty());
    }

    #[test]
    fn parses_status() {
        let status = "Name:\tx\nCapInh:\t0000000000000000\nCapEff:\t000001ffffffffff\n";
        assert_eq!(parse_cap_eff(status), Some(0x1ff_ffff_ffff));
        assert_eq!(parse_cap_eff("Name: x\n"), None);
    }
}
