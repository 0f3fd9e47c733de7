//! Where the programs find what they read in the running kernel's structures.
//!
//! Rust eBPF has no CO-RE relocations: user space resolves every enum value and struct offset
//! from the kernel's BTF at start-up (`profiler::btf`) and hands these layouts to the programs
//! as load-time constants.

/// An item number that matches no event.
pub const ITEM_NONE: u32 = u32::MAX;

/// Where the charge-path programs find what they need in the running kernel.
///
/// Item numbers are enum values of `node_stat_item` / `memcg_stat_item` / `vm_event_item`;
/// offsets are byte offsets of struct members.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChargeLayout {
    /// `NR_ANON_MAPPED`.
    pub item_anon: u32,
    /// `NR_FILE_PAGES`.
    pub item_file: u32,
    /// `NR_SHMEM`.
    pub item_shmem: u32,
    /// `MEMCG_KMEM`, or [`ITEM_NONE`] when the kernel has no such item.
    pub item_kmem: u32,
    /// `PGMAJFAULT` (a `vm_event_item`), or [`ITEM_NONE`].
    pub event_pgmajfault: u32,
    /// `offsetof(struct mem_cgroup, css)`.
    pub memcg_css: u32,
    /// `offsetof(struct cgroup_subsys_state, cgroup)`.
    pub css_cgroup: u32,
    /// `offsetof(struct cgroup, kn)`.
    pub cgroup_kn: u32,
    /// `offsetof(struct kernfs_node, id)`.
    pub kn_id: u32,
    /// `offsetof(struct mem_cgroup_per_node, lruvec)`: where a `struct lruvec *` (the first
    /// argument of `__mod_memcg_lruvec_state` on kernels without the memcg tracepoints) sits
    /// in its per-node struct, whose `memcg` field leads to the memory cgroup.
    pub pn_lruvec: u32,
    /// `offsetof(struct mem_cgroup_per_node, memcg)`.
    pub pn_memcg: u32,
    /// Explicit padding (always zero).
    pub _pad: u32,
}

impl ChargeLayout {
    /// The layout before user space has resolved it: no item matches, so a program that runs
    /// with it counts nothing.
    pub const UNRESOLVED: ChargeLayout = ChargeLayout {
        item_anon: ITEM_NONE,
        item_file: ITEM_NONE,
        item_shmem: ITEM_NONE,
        item_kmem: ITEM_NONE,
        event_pgmajfault: ITEM_NONE,
        memcg_css: 0,
        css_cgroup: 0,
        cgroup_kn: 0,
        kn_id: 0,
        pn_lruvec: 0,
        pn_memcg: 0,
        _pad: 0,
    };
}

/// Where the task-based programs (OOM victim, reclaim) find what they need in a `task_struct`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TaskLayout {
    /// `offsetof(task_struct, pid)`.
    pub pid: u32,
    /// `offsetof(task_struct, tgid)`.
    pub tgid: u32,
    /// `offsetof(task_struct, comm)`.
    pub comm: u32,
    /// `offsetof(task_struct, cgroups)` (a `struct css_set *`).
    pub cgroups: u32,
    /// `offsetof(css_set, subsys)` plus `memory_cgrp_id * sizeof(void *)`: the memory css.
    pub css_set_memory: u32,
    /// `offsetof(task_struct, mm)`.
    pub mm: u32,
    /// `offsetof(task_struct, signal)`.
    pub signal: u32,
    /// `offsetof(signal_struct, oom_score_adj)` (a `short`).
    pub oom_score_adj: u32,
    /// Where `mm->rss_stat` starts: counter `i`'s value is at
    /// `mm_rss_stat + i * rss_stride + rss_count`. That covers both layouts (an array of
    /// `percpu_counter` since 6.2, of `atomic_long_t` before), which user space tells apart
    /// from BTF.
    pub mm_rss_stat: u32,
    /// Bytes between two consecutive RSS counters.
    pub rss_stride: u32,
    /// Offset of the counter's value inside one element.
    pub rss_count: u32,
    /// `MM_FILEPAGES`.
    pub mm_filepages: u32,
    /// `MM_ANONPAGES`.
    pub mm_anonpages: u32,
    /// `MM_SHMEMPAGES`.
    pub mm_shmempages: u32,
    /// `offsetof(mm_struct, total_vm)`.
    pub mm_total_vm: u32,
    /// Non-zero when the rest of this layout was filled in (the OOM program stays quiet otherwise).
    pub valid: u32,
    /// `offsetof(task_struct, exit_code)` (an `int`, in `wait(2)` status form once the task
    /// is exiting).
    pub exit_code: u32,
    /// `offsetof(signal_struct, live)` (an `atomic_t`: the threads of the process still alive;
    /// 0 once its last thread is exiting).
    pub signal_live: u32,
    /// `offsetof(kernel_siginfo, si_code)` (an `int`).
    pub siginfo_code: u32,
    /// Explicit padding (always zero).
    pub _pad: u32,
}

impl TaskLayout {
    /// The layout before user space has resolved it: `valid` is 0, so the programs that read
    /// tasks stay quiet.
    pub const UNRESOLVED: TaskLayout = TaskLayout {
        pid: 0,
        tgid: 0,
        comm: 0,
        cgroups: 0,
        css_set_memory: 0,
        mm: 0,
        signal: 0,
        oom_score_adj: 0,
        mm_rss_stat: 0,
        rss_stride: 0,
        rss_count: 0,
        mm_filepages: 0,
        mm_anonpages: 0,
        mm_shmempages: 0,
        mm_total_vm: 0,
        valid: 0,
        exit_code: 0,
        signal_live: 0,
        siginfo_code: 0,
        _pad: 0,
    };
}

#[cfg(feature = "user")]
mod user {
    use super::{ChargeLayout, TaskLayout};

    // SAFETY: `#[repr(C)]`, made of `u32`s, with no implicit padding: every bit pattern is a
    // valid value.
    unsafe impl aya::Pod for ChargeLayout {}
    // SAFETY: as above.
    unsafe impl aya::Pod for TaskLayout {}
}

// The layouts are part of the kernel/user contract: fail the build if padding creeps in.
const _: () = assert!(size_of::<ChargeLayout>() == 48);
const _: () = assert!(size_of::<TaskLayout>() == 80);
