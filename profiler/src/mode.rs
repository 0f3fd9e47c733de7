//! How the profiler observes the kernel, chosen at start-up from what the kernel offers.
use std::fmt;

use serde::Serialize;

/// How the charge path is observed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChargeMode {
    /// Raw tracepoints on the memcg stat updates (`memcg:*`, kernels from 2025 on).
    Tracepoint,
    /// No charge-path hook: the cgroup files are read every interval.
    #[default]
    Polling,
}

impl fmt::Display for ChargeMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ChargeMode::Tracepoint => "tracepoint",
            ChargeMode::Polling => "polling",
        })
    }
}

/// Where OOM kills come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OomSource {
    /// The `oom:mark_victim` raw tracepoint.
    MarkVictim,
    /// The kernel log (`/dev/kmsg`).
    Kmsg,
}

/// What the user asked for with `--mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ModeRequest {
    /// The best mode that works on this kernel.
    Auto,
    /// Raw tracepoints on the charge path; an error if they do not load.
    Tracepoint,
    /// Read cgroup files only (OOM kills from the kernel log).
    Polling,
}
