//! How the profiler observes the kernel, chosen at start-up from what the kernel offers.
use std::fmt;

use serde::Serialize;

/// How the charge path is observed, cheapest first. Samples and events mean the same in every
/// mode; only the cost of watching, and polling's lack of charge rates and bursts, differ.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChargeMode {
    /// Raw tracepoints on the memcg stat updates (`memcg:*`, kernels from 2025 on).
    Tracepoint,
    /// fentry on the kernel functions those tracepoints sit in (`__mod_memcg_lruvec_state`,
    /// `__mod_memcg_state`, `__count_memcg_events`): every LTS kernel with BTF.
    Fentry,
    /// kprobes on the same functions, where fentry is refused.
    Kprobe,
    /// No charge-path hook: the cgroup files are read every interval.
    #[default]
    Polling,
}

impl fmt::Display for ChargeMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ChargeMode::Tracepoint => "tracepoint",
            ChargeMode::Fentry => "fentry",
            ChargeMode::Kprobe => "kprobe",
            ChargeMode::Polling => "polling",
        })
    }
}

/// Where OOM kills come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum OomSource {
    /// The `oom:mark_victim` raw tracepoint.
    MarkVictim,
    /// The kernel log (`/dev/kmsg`).
    Kmsg,
}

/// What the user asked for with `--mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ModeRequest {
    /// The cheapest mode that works on this kernel: tracepoint, fentry, kprobe, polling.
    Auto,
    /// Raw tracepoints on the charge path; an error if they do not load.
    Tracepoint,
    /// fentry on the charge-path functions; an error if it does not load.
    Fentry,
    /// kprobes on the charge-path functions; an error if they do not load.
    Kprobe,
    /// Read cgroup files only (OOM kills from the kernel log).
    Polling,
}

impl ModeRequest {
    /// The one mode asked for, `None` for `auto`.
    pub fn only(self) -> Option<ChargeMode> {
        match self {
            ModeRequest::Auto => None,
            ModeRequest::Tracepoint => Some(ChargeMode::Tracepoint),
            ModeRequest::Fentry => Some(ChargeMode::Fentry),
            ModeRequest::Kprobe => Some(ChargeMode::Kprobe),
            ModeRequest::Polling => Some(ChargeMode::Polling),
        }
    }
}
