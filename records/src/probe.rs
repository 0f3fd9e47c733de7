//! What the kernel offered the profiler: its probe report, in a recording's header and in
//! `profiler doctor --json`.
use serde::Deserialize;

/// The probe report: the kernel, every hook tried, and the modes chosen.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct Probe {
    /// `uname -r`.
    pub kernel: Option<String>,
    /// Charge-path mode.
    pub mode: Option<String>,
    /// Why that mode.
    pub mode_reason: Option<String>,
    /// Where OOM kills come from.
    pub oom_source: Option<String>,
    /// Why that source.
    pub oom_reason: Option<String>,
    /// Every hook and whether it attached.
    pub hooks: Vec<Hook>,
}

/// One hook.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct Hook {
    /// The tracepoint or function (`tracepoint` in output from before fentry mode).
    #[serde(alias = "tracepoint")]
    pub hook: String,
    /// `raw_tracepoint`, `fentry` or `kprobe` (absent before fentry mode: raw tracepoints).
    #[serde(default)]
    pub kind: Option<String>,
    /// `attached`, `skipped`, `failed`.
    pub status: String,
    /// Why it was skipped or failed (a failed load carries the verifier's whole log).
    #[serde(default)]
    pub detail: Option<String>,
}
