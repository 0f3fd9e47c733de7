//! OOM kills: `oom:mark_victim`, attributed to the victim's own memory cgroup.
//!
//! The raw tracepoint gets `(struct task_struct *tsk, uid_t uid)` (6.8+; user space checks the
//! prototype in BTF before attaching). The victim is read here, in the kernel, because by the
//! time user space hears of it the process may be gone. Tools that report the cgroup of the task
//! that *triggered* the OOM get it wrong when that is not the victim's.
//
// /sys/kernel/tracing/events/oom/mark_victim/format (6.18), the classic form of the same event:
//   field:int pid; field:__data_loc char[] comm; field:unsigned long total_vm;
//   field:unsigned long anon_rss; field:unsigned long file_rss; field:unsigned long shmem_rss;
//   field:uid_t uid; field:unsigned long pgtables; field:short oom_score_adj;
use aya_ebpf::{
    helpers::{bpf_probe_read_kernel_buf, generated::bpf_ktime_get_boot_ns},
    macros::raw_tracepoint,
    programs::RawTracePointContext,
};
use aya_log_ebpf::warn;
use profiler_common::{
    read_error, OomVictim, RingEventHeader, RingEventKind, TaskLayout, COMM_LEN,
};

use crate::{
    maps::{count_lost_event, CHARGE_LAYOUT, EVENTS, TASK_LAYOUT},
    memcg::{memcg_cgroup_id, read_at, task_memcg},
};

/// `oom:mark_victim`.
#[raw_tracepoint(tracepoint = "mark_victim")]
pub(crate) fn oom_mark_victim(ctx: RawTracePointContext) -> i32 {
    let layout = TASK_LAYOUT.load();
    if layout.valid == 0 {
        return 0;
    }
    let task: u64 = ctx.arg(0);
    let Some(mut entry) = EVENTS.reserve::<OomVictim>(0) else {
        count_lost_event();
        warn!(&ctx, "ring buffer full: an OOM victim was not reported");
        return 0;
    };
    let mut victim = OomVictim {
        header: RingEventHeader {
            kind: RingEventKind::OomVictim as u32,
            _pad: 0,
            // SAFETY: helper without preconditions.
            ktime_ns: unsafe { bpf_ktime_get_boot_ns() },
        },
        cgroup_id: 0,
        tgid: read_at::<u32>(task, layout.tgid).unwrap_or(0),
        pid: read_at::<u32>(task, layout.pid).unwrap_or(0),
        anon_rss_pages: 0,
        file_rss_pages: 0,
        shmem_rss_pages: 0,
        total_vm_pages: 0,
        oom_score_adj: 0,
        read_errors: 0,
        comm: [0; COMM_LEN],
    };
    // SAFETY: bpf_probe_read_kernel_buf checks the address.
    let _ = unsafe {
        bpf_probe_read_kernel_buf((task + layout.comm as u64) as *const u8, &mut victim.comm)
    };
    let charge = CHARGE_LAYOUT.load();
    match task_memcg(task, &layout, &charge).and_then(|memcg| memcg_cgroup_id(memcg, &charge)) {
        Some(id) => victim.cgroup_id = id,
        None => victim.read_errors |= read_error::CGROUP,
    }
    if let Some(signal) = read_at::<u64>(task, layout.signal) {
        victim.oom_score_adj = read_at::<i16>(signal, layout.oom_score_adj).unwrap_or(0) as i32;
    }
    if read_mm(task, &layout, &mut victim).is_none() {
        victim.read_errors |= read_error::MM;
        warn!(&ctx, "could not read the mm of OOM victim {}", victim.tgid);
    }
    entry.write(victim);
    entry.submit(0);
    0
}

#[inline(always)]
fn read_mm(task: u64, layout: &TaskLayout, victim: &mut OomVictim) -> Option<()> {
    let mm: u64 = read_at(task, layout.mm)?;
    if mm == 0 {
        return None;
    }
    victim.total_vm_pages = read_at(mm, layout.mm_total_vm)?;
    victim.anon_rss_pages = rss_counter(mm, layout, layout.mm_anonpages)?;
    victim.file_rss_pages = rss_counter(mm, layout, layout.mm_filepages)?;
    victim.shmem_rss_pages = rss_counter(mm, layout, layout.mm_shmempages)?;
    Some(())
}

/// One of the mm's RSS counters, as the kernel's own `get_mm_counter()` reads it: the shared
/// `count` of the per-CPU counter (6.2+), or the atomic (before), never below zero.
#[inline(always)]
fn rss_counter(mm: u64, layout: &TaskLayout, member: u32) -> Option<i64> {
    let offset = layout.mm_rss_stat + member * layout.rss_stride + layout.rss_count;
    // Both layouts hold a signed long; the per-CPU form can be transiently negative.
    let value: i64 = read_at(mm, offset)?;
    Some(value.max(0))
}
