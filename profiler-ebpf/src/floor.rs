//! Programs that return at once, on the same hooks as the charge path and the deaths: the cost
//! of the hooks alone, which `cargo xtask bench overhead` measures the real programs against.
use aya_ebpf::{macros::raw_tracepoint, programs::RawTracePointContext};

/// Floor on `mod_memcg_lruvec_state`.
#[raw_tracepoint(tracepoint = "mod_memcg_lruvec_state")]
pub(crate) fn floor_lruvec_state(_ctx: RawTracePointContext) -> i32 {
    0
}

/// Floor on `mod_memcg_state`.
#[raw_tracepoint(tracepoint = "mod_memcg_state")]
pub(crate) fn floor_state(_ctx: RawTracePointContext) -> i32 {
    0
}

/// Floor on `count_memcg_events`.
#[raw_tracepoint(tracepoint = "count_memcg_events")]
pub(crate) fn floor_events(_ctx: RawTracePointContext) -> i32 {
    0
}

/// Floor on `sched_process_exit`, for the fork/exit-heavy workloads.
#[raw_tracepoint(tracepoint = "sched_process_exit")]
pub(crate) fn floor_process_exit(_ctx: RawTracePointContext) -> i32 {
    0
}

/// Floor on `signal_generate`, for the signal-heavy workloads.
#[raw_tracepoint(tracepoint = "signal_generate")]
pub(crate) fn floor_signal_generate(_ctx: RawTracePointContext) -> i32 {
    0
}
