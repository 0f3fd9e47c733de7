//! Reclaim forced by a memcg limit: `mm_vmscan_memcg_reclaim_begin/end`, paired per thread.
//!
//! The tracepoints do not name the memcg; the reclaim runs in the context of the task whose
//! charge went over a limit, so the pass is counted for that task's memory cgroup (and so for
//! the watched cgroup it belongs to). Rare next to charges: reading the task here is fine.
use aya_ebpf::{
    helpers::{
        bpf_get_current_pid_tgid, generated::bpf_get_current_task, generated::bpf_ktime_get_ns,
    },
    macros::{map, raw_tracepoint},
    maps::HashMap,
    programs::RawTracePointContext,
};
use profiler_common::ReclaimStart;

use crate::{
    maps::{CHARGE_LAYOUT, COUNTERS, TASK_LAYOUT},
    memcg::{slot_of_memcg, task_memcg},
};

/// Reclaim passes in progress, by thread id.
#[map]
static RECLAIM_START: HashMap<u32, ReclaimStart> = HashMap::with_max_entries(4096, 0);

/// `vmscan:mm_vmscan_memcg_reclaim_begin` (int order, gfp_t gfp_flags).
#[raw_tracepoint(tracepoint = "mm_vmscan_memcg_reclaim_begin")]
pub(crate) fn memcg_reclaim_begin(_ctx: RawTracePointContext) -> i32 {
    let task_layout = TASK_LAYOUT.load();
    if task_layout.valid == 0 {
        return 0;
    }
    // SAFETY: helper without preconditions.
    let task = unsafe { bpf_get_current_task() };
    let Some(memcg) = task_memcg(task, &task_layout, &CHARGE_LAYOUT.load()) else {
        return 0;
    };
    let Some(slot) = slot_of_memcg(memcg) else {
        return 0;
    };
    let tid = bpf_get_current_pid_tgid() as u32;
    let start = ReclaimStart {
        // SAFETY: helper without preconditions.
        start_ns: unsafe { bpf_ktime_get_ns() },
        slot,
        _pad: 0,
    };
    let _ = RECLAIM_START.insert(tid, start, 0);
    0
}

/// `vmscan:mm_vmscan_memcg_reclaim_end` (unsigned long nr_reclaimed).
#[raw_tracepoint(tracepoint = "mm_vmscan_memcg_reclaim_end")]
pub(crate) fn memcg_reclaim_end(ctx: RawTracePointContext) -> i32 {
    let tid = bpf_get_current_pid_tgid() as u32;
    // SAFETY: copied out at once.
    let Some(start) = (unsafe { RECLAIM_START.get(tid) }).copied() else {
        return 0;
    };
    let _ = RECLAIM_START.remove(tid);
    // SAFETY: helper without preconditions.
    let elapsed = unsafe { bpf_ktime_get_ns() }.saturating_sub(start.start_ns);
    let reclaimed: u64 = ctx.arg(0);
    if let Some(counters) = COUNTERS.get_ptr_mut(start.slot) {
        // SAFETY: per-CPU value, only this CPU writes it.
        let counters = unsafe { &mut *counters };
        counters.reclaim_count += 1;
        counters.reclaim_ns += elapsed;
        counters.reclaimed_pages += reclaimed;
    }
    0
}
