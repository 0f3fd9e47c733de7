//! What `profiler doctor --json` prints: one JSON document (on several lines).
use serde::Deserialize;
use thiserror::Error;

use crate::probe::Probe;

/// The document of `profiler doctor --json`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct Doctor {
    /// The probe report, whose fields are the document's own; without one (no probe could
    /// run) only `kernel` and `mode` (`unknown`) are there.
    #[serde(flatten)]
    pub probe: Probe,
    /// Why there is no probe report.
    #[serde(default)]
    pub probe_error: Option<String>,
}

/// Why doctor's output does not read.
#[derive(Debug, Error)]
#[error("not the JSON of `profiler doctor --json`: {error}")]
pub struct DoctorError {
    /// What the JSON reader said (in the message: it is about the text, not a cause below).
    error: serde_json::Error,
}

impl Doctor {
    /// Reads the document.
    pub fn parse(text: &str) -> Result<Doctor, DoctorError> {
        // Older doctors wrote `kernel` and `mode` twice (their own and the probe report's, the
        // same values): a typed read refuses a duplicate key, a JSON value keeps the last of
        // each, so the document goes through one.
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|error| DoctorError { error })?;
        serde_json::from_value(value).map_err(|error| DoctorError { error })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::Hook;

    #[test]
    fn a_doctor_with_a_probe_report() {
        let text = r#"{
  "btf_present": true,
  "cgroup_version": "v2",
  "missing_capabilities": [],
  "kernel": "6.12.117",
  "btf": {"Ok": null},
  "hooks": [
    {"hook": "mod_memcg_state", "kind": "raw_tracepoint", "status": "failed", "detail": "ENOENT"},
    {"hook": "__mod_memcg_state", "kind": "fentry", "status": "attached", "detail": null}
  ],
  "mode": "fentry",
  "mode_reason": "fentry attached",
  "oom_source": "mark_victim",
  "oom_reason": "raw tracepoint oom:mark_victim attached",
  "probe_error": null,
  "cgroup_root": "/sys/fs/cgroup"
}"#;
        let doctor = Doctor::parse(text).expect("reads");
        assert_eq!(doctor.probe.kernel.as_deref(), Some("6.12.117"));
        assert_eq!(doctor.probe.mode.as_deref(), Some("fentry"));
        assert_eq!(doctor.probe.mode_reason.as_deref(), Some("fentry attached"));
        assert_eq!(
            doctor.probe.oom_reason.as_deref(),
            Some("raw tracepoint oom:mark_victim attached")
        );
        assert_eq!(
            doctor.probe.hooks[0],
            Hook {
                hook: "mod_memcg_state".into(),
                kind: Some("raw_tracepoint".into()),
                status: "failed".into(),
                detail: Some("ENOENT".into()),
            }
        );
        assert_eq!(doctor.probe.hooks[1].detail, None);
        assert_eq!(doctor.probe_error, None);
    }

    #[test]
    fn an_older_doctor_with_keys_twice_and_tracepoint_hooks() {
        let text = r#"{"kernel": "6.12", "kernel": "6.12",
            "hooks": [{"tracepoint": "mark_victim", "status": "attached", "detail": null}],
            "mode": "polling", "mode_reason": "no tracepoints", "mode": "polling"}"#;
        let doctor = Doctor::parse(text).expect("reads");
        assert_eq!(doctor.probe.mode.as_deref(), Some("polling"));
        assert_eq!(doctor.probe.hooks[0].hook, "mark_victim");
        assert_eq!(doctor.probe.hooks[0].kind, None);
    }

    #[test]
    fn a_doctor_that_could_not_probe() {
        let text = r#"{"kernel": "6.1", "btf_present": false, "mode": "unknown",
            "probe_error": "not probed: missing CAP_BPF (run with sudo)"}"#;
        let doctor = Doctor::parse(text).expect("reads");
        assert_eq!(doctor.probe.mode.as_deref(), Some("unknown"));
        assert!(doctor.probe.hooks.is_empty());
        assert!(doctor.probe_error.is_some());
        assert!(Doctor::parse("exit status 1").is_err());
    }
}
