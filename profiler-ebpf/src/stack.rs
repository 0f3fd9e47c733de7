//! Charge stacks: one sample per so many pages a watched cgroup charges on a CPU, with the
//! user and kernel stacks of the task that charged. Only the charge that runs a slot's
//! countdown out comes here; the others pay a subtraction and a comparison (in `charge`).
use core::{ffi::c_void, ptr::addr_of_mut};

use aya_ebpf::{
    bindings::{BPF_F_USER_STACK, BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid,
        generated::{bpf_get_prandom_u32, bpf_get_stack, bpf_ktime_get_boot_ns},
    },
};
use profiler_common::{
    ChargeStack, RingEventHeader, RingEventKind, SlotCounters, COMM_LEN, STACK_KERNEL_FRAMES,
    STACK_RECHECK_PAGES, STACK_USER_FRAMES,
};

use crate::maps::{count_lost_stack, STACKS, STACK_SAMPLING};

/// The slot's countdown ran out on this CPU: takes a sample when the slot is sampled, and sets
/// the next countdown. The interval is drawn uniformly from half to one and a half times the
/// slot's setting, so an allocator that charges in a fixed period is not always caught at
/// the same point of it.
#[inline(never)]
pub(crate) fn sample_stack(ctx: *mut c_void, slot: u32, counters: &mut SlotCounters) {
    let interval = STACK_SAMPLING
        .get(slot)
        .map_or(0, |sampling| sampling.interval_pages) as u64;
    if interval == 0 {
        counters.stack_countdown_pages = STACK_RECHECK_PAGES;
        counters.stack_interval_pages = 0;
        return;
    }
    let previous = counters.stack_interval_pages;
    // The countdown has gone to zero or below: the pages since the last sample are the
    // interval set then plus the overshoot.
    let weight = previous - counters.stack_countdown_pages;
    // SAFETY: helper without preconditions.
    let random = u64::from(unsafe { bpf_get_prandom_u32() });
    // At least one page: 0 would read as "sampling off" at the next sample.
    let next = (interval / 2 + random % interval).max(1) as i64;
    counters.stack_countdown_pages = next;
    counters.stack_interval_pages = next;
    // Sampling was off until now: the pages charged before it was turned on are nobody's.
    if previous == 0 {
        return;
    }
    emit(ctx, slot, weight as u64);
}

/// Bytes waiting in the stacks ring past which a sample wakes user space (a quarter of it):
/// below, samples wait for user space's next look (every 250 ms). A wakeup per sample would
/// cost the charging task an interrupt (`irq_work`: an APIC write, which traps to the
/// hypervisor in a VM) and user space a context switch; that was most of the cost of a sample.
const WAKE_AT_BYTES: u64 = 256 * 1024;

/// Writes the sample straight into the ring buffer (the stacks are copied once, by the
/// helpers).
#[inline(always)]
fn emit(ctx: *mut c_void, slot: u32, weight_pages: u64) {
    let Some(mut entry) = STACKS.reserve::<ChargeStack>(0) else {
        count_lost_stack();
        return;
    };
    let sample = entry.as_mut_ptr();
    // SAFETY: `sample` points at a reserved, writable record of the right size; each helper
    // writes at most the size it is given (and zeroes what it does not fill).
    unsafe {
        (*sample).header = RingEventHeader {
            kind: RingEventKind::ChargeStack as u32,
            _pad: 0,
            ktime_ns: bpf_ktime_get_boot_ns(),
        };
        (*sample).slot = slot;
        (*sample).tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
        (*sample).weight_pages = weight_pages;
        (*sample).comm = bpf_get_current_comm().unwrap_or([0; COMM_LEN]);
        (*sample).user_bytes = bpf_get_stack(
            ctx,
            addr_of_mut!((*sample).user).cast(),
            (STACK_USER_FRAMES * 8) as u32,
            u64::from(BPF_F_USER_STACK),
        ) as i32;
        (*sample).kernel_bytes = bpf_get_stack(
            ctx,
            addr_of_mut!((*sample).kernel).cast(),
            (STACK_KERNEL_FRAMES * 8) as u32,
            0,
        ) as i32;
    }
    let flags = if STACKS.query(u64::from(BPF_RB_AVAIL_DATA)) >= WAKE_AT_BYTES {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    };
    entry.submit(u64::from(flags));
}
