//! The memcg charge path: every memcg stat update goes through these hooks, several times per
//! page fault in the whole node, so each program does the least it can: compare the item, find
//! the slot (one cached lookup), bump per-CPU counters. Only a burst leaves the fast path.
//!
//! Three ways in, one body: raw tracepoints on the `memcg:*` stat-update tracepoints (kernels
//! that have them), fentry on the functions those tracepoints sit in (`__mod_memcg_state`,
//! `__mod_memcg_lruvec_state`, `__count_memcg_events`: every LTS kernel has them), and kprobes
//! on the same functions where fentry is refused. User space loads the cheapest that works.
use core::{
    ffi::c_void,
    intrinsics::{atomic_xadd, AtomicOrdering},
    ptr::{read_volatile, write_volatile},
};

use aya_ebpf::{
    helpers::generated::{bpf_get_func_arg, bpf_ktime_get_boot_ns},
    macros::{fentry, kprobe, raw_tracepoint},
    programs::{FEntryContext, ProbeContext, RawTracePointContext},
    EbpfContext as _,
};
use profiler_common::{BurstEvent, RingEventHeader, RingEventKind, BUDGET_BATCH_PAGES};

use crate::{
    maps::{count_lost_event, BUDGETS, CHARGE_LAYOUT, COUNTERS, EVENTS},
    memcg::{memcg_cgroup_id, memcg_of_lruvec, slot_of_lruvec, slot_of_memcg},
    stack::sample_stack,
};

/// Whose stat changed: the tracepoints and `__mod_memcg_state` name the memcg,
/// `__mod_memcg_lruvec_state` its per-node lruvec.
#[derive(Clone, Copy)]
enum Owner {
    Memcg(u64),
    Lruvec(u64),
}

impl Owner {
    #[inline(always)]
    fn slot(self) -> Option<u32> {
        match self {
            Owner::Memcg(memcg) => slot_of_memcg(memcg),
            Owner::Lruvec(lruvec) => slot_of_lruvec(lruvec),
        }
    }

    /// The memcg itself (cold path: only a burst report needs it).
    #[inline(always)]
    fn memcg(self) -> Option<u64> {
        match self {
            Owner::Memcg(memcg) => Some(memcg),
            Owner::Lruvec(lruvec) => memcg_of_lruvec(lruvec),
        }
    }
}

// /sys/kernel/tracing/events/memcg/mod_memcg_lruvec_state/format (6.18), for reference; the raw
// tracepoint gets the TP_PROTO arguments instead: (struct mem_cgroup *memcg, int item, int val).
//   field:u64 id;  field:int item;  field:int val;
/// `memcg:mod_memcg_lruvec_state`: anon, file and shmem pages of a memcg's LRU vectors.
#[raw_tracepoint(tracepoint = "mod_memcg_lruvec_state")]
pub(crate) fn memcg_lruvec_state(ctx: RawTracePointContext) -> i32 {
    on_stat_update(
        ctx.as_ptr(),
        Owner::Memcg(ctx.arg(0)),
        ctx.arg(1),
        ctx.arg(2),
    );
    0
}

/// `memcg:mod_memcg_state`: memcg-wide items, of which the kernel-memory charge (`MEMCG_KMEM`).
#[raw_tracepoint(tracepoint = "mod_memcg_state")]
pub(crate) fn memcg_state(ctx: RawTracePointContext) -> i32 {
    on_stat_update(
        ctx.as_ptr(),
        Owner::Memcg(ctx.arg(0)),
        ctx.arg(1),
        ctx.arg(2),
    );
    0
}

/// `memcg:count_memcg_events` (struct mem_cgroup *, int item, unsigned long count): major faults.
#[raw_tracepoint(tracepoint = "count_memcg_events")]
pub(crate) fn memcg_events(ctx: RawTracePointContext) -> i32 {
    on_event_count(ctx.arg(0), ctx.arg(1), ctx.arg(2));
    0
}

/// A pointer argument of an fentry program as a plain number. Read from the context, the
/// verifier types it from BTF (`ptr_lruvec`) and refuses the arithmetic of the cache's hash
/// ("math between ptr_ pointer and ... is not allowed", seen on 6.1 and 6.12);
/// `bpf_get_func_arg` hands over the same value untyped, and the verifier inlines it for
/// fentry programs, so it costs a few instructions, not a call.
#[inline(always)]
fn pointer_arg(ctx: &FEntryContext, n: u32) -> Option<u64> {
    let mut value = 0u64;
    // SAFETY: `value` is a valid u64 on this stack; the helper checks `n` against the
    // function's argument count.
    let status = unsafe { bpf_get_func_arg(ctx.as_ptr(), n, &mut value) };
    (status == 0).then_some(value)
}

/// `__mod_memcg_lruvec_state(struct lruvec *lruvec, enum node_stat_item idx, int val)`.
#[fentry(function = "__mod_memcg_lruvec_state")]
pub(crate) fn fentry_memcg_lruvec_state(ctx: FEntryContext) -> i32 {
    if let Some(lruvec) = pointer_arg(&ctx, 0) {
        on_stat_update(ctx.as_ptr(), Owner::Lruvec(lruvec), ctx.arg(1), ctx.arg(2));
    }
    0
}

/// `__mod_memcg_state(struct mem_cgroup *memcg, int idx, int val)`.
#[fentry(function = "__mod_memcg_state")]
pub(crate) fn fentry_memcg_state(ctx: FEntryContext) -> i32 {
    if let Some(memcg) = pointer_arg(&ctx, 0) {
        on_stat_update(ctx.as_ptr(), Owner::Memcg(memcg), ctx.arg(1), ctx.arg(2));
    }
    0
}

/// `__count_memcg_events(struct mem_cgroup *memcg, enum vm_event_item idx, unsigned long
/// count)`.
#[fentry(function = "__count_memcg_events")]
pub(crate) fn fentry_memcg_events(ctx: FEntryContext) -> i32 {
    if let Some(memcg) = pointer_arg(&ctx, 0) {
        on_event_count(memcg, ctx.arg(1), ctx.arg(2));
    }
    0
}

/// [`fentry_memcg_lruvec_state`] as a kprobe.
#[kprobe]
pub(crate) fn kprobe_memcg_lruvec_state(ctx: ProbeContext) -> u32 {
    if let (Some(lruvec), Some(item), Some(val)) = (ctx.arg(0), ctx.arg(1), ctx.arg(2)) {
        on_stat_update(ctx.as_ptr(), Owner::Lruvec(lruvec), item, val);
    }
    0
}

/// [`fentry_memcg_state`] as a kprobe.
#[kprobe]
pub(crate) fn kprobe_memcg_state(ctx: ProbeContext) -> u32 {
    if let (Some(memcg), Some(item), Some(val)) = (ctx.arg(0), ctx.arg(1), ctx.arg(2)) {
        on_stat_update(ctx.as_ptr(), Owner::Memcg(memcg), item, val);
    }
    0
}

/// [`fentry_memcg_events`] as a kprobe.
#[kprobe]
pub(crate) fn kprobe_memcg_events(ctx: ProbeContext) -> u32 {
    if let (Some(memcg), Some(item), Some(count)) = (ctx.arg(0), ctx.arg(1), ctx.arg(2)) {
        on_event_count(memcg, item, count);
    }
    0
}

/// A memcg event count: only major faults are kept.
#[inline(always)]
fn on_event_count(memcg: u64, item: u64, count: u64) {
    if item as u32 != CHARGE_LAYOUT.load().event_pgmajfault {
        return;
    }
    let Some(slot) = slot_of_memcg(memcg) else {
        return;
    };
    if let Some(counters) = COUNTERS.get_ptr_mut(slot) {
        // SAFETY: per-CPU value, only this CPU writes it.
        unsafe { (*counters).major_faults += count };
    }
}

/// A stat update: `item` and `val` as the hook got them, in 64-bit argument slots; `ctx` is
/// the program's context (for a stack sample).
#[inline(always)]
fn on_stat_update(ctx: *mut c_void, owner: Owner, item: u64, val: u64) {
    let layout = CHARGE_LAYOUT.load();
    let item = item as u32;
    let is_anon = item == layout.item_anon;
    let is_file = item == layout.item_file;
    let is_shmem = item == layout.item_shmem;
    let is_kmem = item == layout.item_kmem;
    if !(is_anon || is_file || is_shmem || is_kmem) {
        return;
    }
    let Some(slot) = owner.slot() else {
        return;
    };
    // `val` is an `int` in pages; the register holds it sign-extended or not depending on the
    // caller, so take the low 32 bits and sign-extend here.
    let val = val as u32 as i32 as i64;
    let Some(counters) = COUNTERS.get_ptr_mut(slot) else {
        return;
    };
    // SAFETY: per-CPU value, only this CPU writes it.
    let counters = unsafe { &mut *counters };
    counters.events += 1;
    if is_anon {
        counters.anon_delta += val;
    } else if is_file {
        counters.file_delta += val;
    } else if is_shmem {
        // Shmem pages are file pages too (NR_FILE_PAGES counts them): not a charge of its own.
        counters.shmem_delta += val;
        return;
    } else {
        counters.kernel_delta += val;
    }
    if val < 0 {
        counters.uncharged_pages += (-val) as u64;
        return;
    }
    counters.charged_pages += val as u64;
    // The stack sampling's whole cost on a charge while its slot is not sampled: one
    // subtraction and a comparison; the setting is looked at every few MiB.
    counters.stack_countdown_pages -= val;
    if counters.stack_countdown_pages <= 0 {
        sample_stack(ctx, slot, counters);
    }
    counters.unbudgeted_pages += val as u64;
    if counters.unbudgeted_pages >= BUDGET_BATCH_PAGES {
        let pages = counters.unbudgeted_pages as i64;
        counters.unbudgeted_pages = 0;
        // Two plain arguments: a BPF function call passes each in one register.
        let (key, is_lruvec) = match owner {
            Owner::Memcg(memcg) => (memcg, false),
            Owner::Lruvec(lruvec) => (lruvec, true),
        };
        spend_budget(slot, pages, key, is_lruvec);
    }
}

/// Takes `pages` off the slot's burst budget; reports a burst the first time it runs out.
#[inline(never)]
fn spend_budget(slot: u32, pages: i64, key: u64, is_lruvec: bool) {
    let Some(budget) = BUDGETS.get_ptr_mut(slot) else {
        return;
    };
    // The BPF target has no `core::sync::atomic` read-modify-write, and bpf-linker targets the
    // v1 ISA, whose only atomic is an add that returns nothing. So: add atomically, then read.
    // Every charge after the budget runs out sees it at or below zero while the slot is armed,
    // so a burst is never missed; two CPUs may both report one, and user space keeps the first.
    // SAFETY: the array value lives as long as the map; every CPU adds to it atomically.
    unsafe {
        atomic_xadd::<i64, i64, { AtomicOrdering::Relaxed }>(
            &raw mut (*budget).remaining_pages,
            -pages,
        )
    };
    // SAFETY: plain reads and writes of the same map value.
    unsafe {
        if read_volatile(&raw const (*budget).remaining_pages) > 0
            || read_volatile(&raw const (*budget).armed) == 0
        {
            return;
        }
        write_volatile(&raw mut (*budget).armed, 0);
    }
    // SAFETY: plain read of a value user space set before arming.
    let budget_pages = unsafe { (*budget).budget_pages };
    let owner = if is_lruvec {
        Owner::Lruvec(key)
    } else {
        Owner::Memcg(key)
    };
    report_burst(slot, budget_pages, owner.memcg().unwrap_or(0));
}

#[inline(never)]
fn report_burst(slot: u32, budget_pages: i64, memcg: u64) {
    let Some(mut entry) = EVENTS.reserve::<BurstEvent>(0) else {
        count_lost_event();
        return;
    };
    let layout = CHARGE_LAYOUT.load();
    entry.write(BurstEvent {
        header: RingEventHeader {
            kind: RingEventKind::Burst as u32,
            _pad: 0,
            // SAFETY: helper without preconditions.
            ktime_ns: unsafe { bpf_ktime_get_boot_ns() },
        },
        slot,
        _pad: 0,
        budget_pages,
        cgroup_id: memcg_cgroup_id(memcg, &layout).unwrap_or(0),
    });
    entry.submit(0);
}
