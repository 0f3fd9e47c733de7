//! Deaths of watched processes: how each ended (`sched:sched_process_exit`) and who sent it
//! SIGKILL or SIGTERM (`signal:signal_generate`).
//!
//! Both tracepoints fire for every process on the node: each program compares what it can
//! before reading a task (the signal number), then finds the watched slot through the same
//! per-CPU memcg cache as the charge path, and stops there for everything not watched. Only a
//! death by signal, a SIGKILL or a SIGTERM leaves a ring record; a normal exit is counted in
//! `LAST_EXIT`, so a fork-heavy container costs no ring traffic, and a signal sent again by the
//! same sender to the same target within a second is counted in `SIGNALS_SEEN`, so a process
//! that sends SIGTERM in a loop costs one record a second.
//
// /sys/kernel/tracing/events/sched/sched_process_exit/format (6.18), for reference; the raw
// tracepoint gets (struct task_struct *p) (and, since 6.16, bool group_dead, not read here):
//   field:char comm[16]; field:pid_t pid; field:int prio; field:bool group_dead;
// /sys/kernel/tracing/events/signal/signal_generate/format: the raw tracepoint gets
// (int sig, struct kernel_siginfo *info, struct task_struct *task, int type, int result):
//   field:int sig; field:int errno; field:int code; field:char comm[16]; field:pid_t pid;
//   field:int group; field:int result;
use aya_ebpf::{
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_probe_read_kernel_buf,
        generated::{bpf_get_current_task, bpf_ktime_get_boot_ns},
    },
    macros::raw_tracepoint,
    programs::RawTracePointContext,
};
use core::{
    intrinsics::{atomic_xadd, AtomicOrdering},
    ptr::{read_volatile, write_volatile},
};

use profiler_common::{
    LastExit, ProcessExit, RingEventHeader, RingEventKind, SignalKey, SignalSeen, SignalSent,
    TaskLayout, COMM_LEN, SIGKILL, SIGNAL_REPEAT_NS, SIGTERM, SI_KERNEL, SI_USER,
};

use crate::{
    maps::{count_lost_event, CHARGE_LAYOUT, EVENTS, LAST_EXIT, SIGNALS_SEEN, TASK_LAYOUT},
    memcg::{checked_slot_of_memcg, memcg_cgroup_id, read_at, task_memcg},
};

/// `sched:sched_process_exit`: one thread exits; the process ends with its last thread.
#[raw_tracepoint(tracepoint = "sched_process_exit")]
pub(crate) fn process_exit(ctx: RawTracePointContext) -> i32 {
    let layout = TASK_LAYOUT.load();
    if layout.valid == 0 {
        return 0;
    }
    let task: u64 = ctx.arg(0);
    let charge = CHARGE_LAYOUT.load();
    let Some(memcg) = task_memcg(task, &layout, &charge) else {
        return 0;
    };
    let Some(slot) = checked_slot_of_memcg(memcg) else {
        return 0;
    };
    // `signal->live` was decremented before this tracepoint: 0 means the last thread.
    let Some(signal) = read_at::<u64>(task, layout.signal) else {
        return 0;
    };
    if read_at::<i32>(signal, layout.signal_live) != Some(0) {
        return 0;
    }
    let tgid = read_at::<u32>(task, layout.tgid).unwrap_or(0);
    let exit_code = read_at::<u32>(task, layout.exit_code).unwrap_or(0);
    // SAFETY: helper without preconditions.
    let now = unsafe { bpf_ktime_get_boot_ns() };
    let comm = task_comm(task, &layout);
    if let Some(last) = LAST_EXIT.get_ptr_mut(slot) {
        // SAFETY: per-CPU entry, only this CPU writes it, and tracing programs do not nest.
        let last = unsafe { &mut *last };
        *last = LastExit {
            exits: last.exits + 1,
            ktime_ns: now,
            tgid,
            exit_code,
            comm,
        };
    }
    // A signal in the low 7 bits of the wait status: killed, not exited.
    if exit_code & 0x7f == 0 {
        return 0;
    }
    let Some(mut entry) = EVENTS.reserve::<ProcessExit>(0) else {
        count_lost_event();
        return 0;
    };
    entry.write(ProcessExit {
        header: RingEventHeader {
            kind: RingEventKind::ProcessExit as u32,
            _pad: 0,
            ktime_ns: now,
        },
        cgroup_id: memcg_cgroup_id(memcg, &charge).unwrap_or(0),
        slot,
        tgid,
        exit_code,
        _pad: 0,
        comm,
    });
    entry.submit(0);
    0
}

/// `signal:signal_generate`: SIGKILL and SIGTERM to tasks of watched cgroups, with the sender.
#[raw_tracepoint(tracepoint = "signal_generate")]
pub(crate) fn signal_generate(ctx: RawTracePointContext) -> i32 {
    let sig = ctx.arg::<u64>(0) as u32;
    if sig != SIGKILL && sig != SIGTERM {
        return 0;
    }
    let layout = TASK_LAYOUT.load();
    if layout.valid == 0 {
        return 0;
    }
    let target: u64 = ctx.arg(2);
    let charge = CHARGE_LAYOUT.load();
    let Some(memcg) = task_memcg(target, &layout, &charge) else {
        return 0;
    };
    let Some(slot) = checked_slot_of_memcg(memcg) else {
        return 0;
    };
    // `SEND_SIG_NOINFO` (0) is kill(2)'s; `SEND_SIG_PRIV` (1) the kernel's own.
    let info: u64 = ctx.arg(1);
    let si_code = match info {
        0 => SI_USER,
        1 => SI_KERNEL,
        _ => read_at::<i32>(info, layout.siginfo_code).unwrap_or(SI_USER),
    };
    let target_tgid = read_at::<u32>(target, layout.tgid).unwrap_or(0);
    let sender_tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    // SAFETY: helper without preconditions.
    let now = unsafe { bpf_ktime_get_boot_ns() };
    let Some(repeats) = first_in_window(target_tgid, sender_tgid, sig, now) else {
        return 0;
    };
    // SAFETY: helper without preconditions.
    let sender = unsafe { bpf_get_current_task() };
    let sender_cgroup_id = task_memcg(sender, &layout, &charge)
        .and_then(|m| memcg_cgroup_id(m, &charge))
        .unwrap_or(0);
    let Some(mut entry) = EVENTS.reserve::<SignalSent>(0) else {
        count_lost_event();
        return 0;
    };
    entry.write(SignalSent {
        header: RingEventHeader {
            kind: RingEventKind::SignalSent as u32,
            _pad: 0,
            ktime_ns: now,
        },
        target_cgroup_id: memcg_cgroup_id(memcg, &charge).unwrap_or(0),
        sender_cgroup_id,
        slot,
        sig,
        target_tgid,
        sender_tgid,
        si_code,
        result: ctx.arg::<u64>(4) as i32,
        target_comm: task_comm(target, &layout),
        sender_comm: bpf_get_current_comm().unwrap_or([0; COMM_LEN]),
        repeats,
        _pad: 0,
    });
    entry.submit(0);
    0
}

/// The repeat filter: `Some(repeats since the last record)` when this signal is to be
/// recorded (the first from this sender to this target, or the first after
/// [`SIGNAL_REPEAT_NS`]), `None` when it is a repeat, counted.
#[inline(always)]
fn first_in_window(target_tgid: u32, sender_tgid: u32, sig: u32, now: u64) -> Option<u32> {
    let key = SignalKey {
        target_tgid,
        sender_tgid,
        sig,
        _pad: 0,
    };
    if let Some(seen) = SIGNALS_SEEN.get_ptr_mut(key) {
        // SAFETY: a pointer into the map's value, valid for this program run. Other CPUs may
        // update it at the same time: the count only ever grows, by an atomic add (the BPF
        // target's one read-modify-write); two CPUs past the window at once both record,
        // which is harmless.
        unsafe {
            if now.wrapping_sub(read_volatile(&raw const (*seen).recorded_ns)) < SIGNAL_REPEAT_NS {
                atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(&raw mut (*seen).repeats, 1);
                return None;
            }
            let total = read_volatile(&raw const (*seen).repeats);
            let since = total.wrapping_sub(read_volatile(&raw const (*seen).repeats_recorded));
            write_volatile(&raw mut (*seen).repeats_recorded, total);
            write_volatile(&raw mut (*seen).recorded_ns, now);
            return Some(u32::try_from(since).unwrap_or(u32::MAX));
        }
    }
    let seen = SignalSeen {
        recorded_ns: now,
        repeats: 0,
        repeats_recorded: 0,
    };
    // A full map evicts the least recently used key; a failed insert only costs a repeat
    // filter entry, and the signal is still recorded.
    let _ = SIGNALS_SEEN.insert(key, seen, 0);
    Some(0)
}

/// A task's command name (zeros when it cannot be read).
#[inline(always)]
fn task_comm(task: u64, layout: &TaskLayout) -> [u8; COMM_LEN] {
    let mut comm = [0u8; COMM_LEN];
    // SAFETY: bpf_probe_read_kernel_buf checks the address.
    let _unread = unsafe {
        bpf_probe_read_kernel_buf((task + u64::from(layout.comm)) as *const u8, &mut comm)
    };
    comm
}
