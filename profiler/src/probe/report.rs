//! What probing found, as `profiler doctor` prints it and recordings keep it: every hook with
//! its status and reason, the mode chosen and why, and where OOM kills come from.
use serde::Serialize;

use super::hooks::{Hook, HookKind};
use crate::mode::{ChargeMode, OomSource};

/// What happened to one hook.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct HookReport {
    /// The tracepoint or kernel function.
    pub hook: &'static str,
    /// `raw_tracepoint`, `fentry` or `kprobe`.
    pub kind: HookKind,
    /// `attached`, `skipped` or `failed`.
    pub status: HookStatus,
    /// Why it was skipped or failed.
    pub detail: Option<String>,
}

impl HookReport {
    pub(crate) fn new(
        hook: &Hook,
        target: &'static str,
        status: HookStatus,
        detail: Option<String>,
    ) -> Self {
        Self {
            hook: target,
            kind: hook.kind,
            status,
            detail,
        }
    }
}

/// Outcome of trying a hook.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum HookStatus {
    /// Loaded and attached.
    Attached,
    /// Not tried, because something it needs is missing.
    Skipped,
    /// Tried, and the kernel refused.
    Failed,
}

impl HookStatus {
    /// The word `profiler doctor` prints.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            HookStatus::Attached => "attached",
            HookStatus::Skipped => "skipped",
            HookStatus::Failed => "failed",
        }
    }
}

/// The mode choice: every hook's outcome, the charge-path mode and where OOM kills come from,
/// each with its reason.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct Decision {
    /// Every hook, in order of preference.
    pub hooks: Vec<HookReport>,
    /// The charge-path mode chosen.
    pub mode: ChargeMode,
    /// Why that mode.
    pub mode_reason: String,
    /// Where OOM kills come from.
    pub oom_source: OomSource,
    /// Why that source.
    pub oom_reason: String,
    /// Whether deaths are followed from the kernel: both `sched_process_exit` and
    /// `signal_generate` attached.
    pub deaths: bool,
    /// Why, or why not.
    pub deaths_reason: String,
}

/// What the kernel offers and what was chosen; `profiler doctor` prints it, and recordings
/// keep it in their header.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct ProbeReport {
    /// `uname -r`.
    pub kernel: String,
    /// Whether `/sys/kernel/btf/vmlinux` was read, or why not.
    pub btf: Result<(), String>,
    /// The choice made.
    #[serde(flatten)]
    pub decision: Decision,
}
