//! Types shared byte for byte between the kernel programs (`profiler-ebpf`) and the collector
//! (`profiler`).
//!
//! Every type here is `#[repr(C)]`, `Copy`, made of fixed-width integers and padded explicitly,
//! so both sides agree on the layout without a serializer. With the `user` feature the types
//! implement [`aya::Pod`] so they can be read from and written to maps.
#![no_std]

/// How many memory cgroups one profiler can watch at once (slots in the counter arrays).
///
/// A watched cgroup and its descendants share one slot: charges in a child count towards the
/// watched parent, which is what a limit on the parent means.
pub const MAX_SLOTS: u32 = 1024;

/// How many cgroup ids (watched cgroups plus their descendants) the filter map can hold.
pub const MAX_WATCHED_IDS: u32 = 16384;

/// Entries per CPU of the direct-mapped `memcg` pointer → slot cache of the kernel programs.
pub const MEMCG_CACHE_ENTRIES: u32 = 1024;

/// Charges a CPU accumulates before it takes them off the shared burst budget (1 MiB with 4 KiB
/// pages). Batching keeps the atomic operation off almost every charge; it lets a burst go
/// unseen by at most this much per CPU, far below the smallest budget.
pub const BUDGET_BATCH_PAGES: u64 = 256;

/// Slot value cached for a memcg that is not watched, so the next event for it costs one lookup.
pub const SLOT_UNWATCHED: u32 = u32::MAX;

/// Length of a task's command name in the kernel (`TASK_COMM_LEN`).
pub const COMM_LEN: usize = 16;

/// Per-CPU counters of one watched cgroup, summed over CPUs by user space.
///
/// All memory figures are in pages as the kernel reports them (`val` of the memcg stat
/// tracepoints); user space converts to bytes with the page size.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SlotCounters {
    /// Pages charged as anon, file or kernel memory (sum of the positive deltas).
    pub charged_pages: u64,
    /// Pages uncharged (sum of the magnitudes of the negative deltas).
    pub uncharged_pages: u64,
    /// Net change of anonymous memory (`NR_ANON_MAPPED`), pages.
    pub anon_delta: i64,
    /// Net change of page cache (`NR_FILE_PAGES`, includes shmem), pages.
    pub file_delta: i64,
    /// Net change of shmem/tmpfs (`NR_SHMEM`), pages.
    pub shmem_delta: i64,
    /// Net change of kernel memory charged to the cgroup (`MEMCG_KMEM`), pages.
    pub kernel_delta: i64,
    /// Charge-path events seen for this slot (all tracked items).
    pub events: u64,
    /// Major faults (`PGMAJFAULT`) in the cgroup.
    pub major_faults: u64,
    /// Completed memcg reclaim passes (`mm_vmscan_memcg_reclaim_begin`/`_end` pairs).
    pub reclaim_count: u64,
    /// Time spent in those passes, nanoseconds.
    pub reclaim_ns: u64,
    /// Pages those passes reclaimed.
    pub reclaimed_pages: u64,
    /// Charges of this CPU not yet taken off the burst budget (see [`BUDGET_BATCH_PAGES`]).
    pub unbudgeted_pages: u64,
}

/// Burst budget of one watched cgroup (a shared, non-per-CPU array entry).
///
/// User space sets `remaining_pages` at each sync (a share of the cgroup's headroom). The
/// kernel subtracts every charge atomically; the first charge that finds it at zero or below
/// sends a [`BurstEvent`], so a burst is seen within milliseconds, not at the next poll.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BurstBudget {
    /// Pages the cgroup may still charge before a burst is reported.
    pub remaining_pages: i64,
    /// The budget user space set at the last sync, pages (reported back in the event).
    pub budget_pages: i64,
    /// 1 while no burst has been reported since the last sync; the kernel clears it when it
    /// reports one. (Two CPUs may both report; user space keeps one per sync.)
    pub armed: i64,
}

/// Cached result of resolving a `struct mem_cgroup *` to a slot (one entry of a per-CPU,
/// direct-mapped cache).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemcgSlot {
    /// The `struct mem_cgroup *` this entry is for (0: empty).
    pub memcg: u64,
    /// Slot index, or [`SLOT_UNWATCHED`].
    pub slot: u32,
    /// Watch-set generation this entry was resolved under; stale when it differs.
    pub generation: u32,
}

/// Kind of a [`RingEvent`]. The discriminants are part of the kernel/user contract.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingEventKind {
    /// A watched cgroup spent its burst budget: see [`BurstEvent`].
    Burst = 1,
    /// The kernel chose an OOM victim: see [`OomVictim`].
    OomVictim = 2,
}

/// Header at the start of every ring buffer record.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingEventHeader {
    /// A [`RingEventKind`] discriminant.
    pub kind: u32,
    /// Explicit padding (always zero).
    pub _pad: u32,
    /// `bpf_ktime_get_boot_ns()` when the kernel produced the record.
    pub ktime_ns: u64,
}

/// A burst: the cgroup in `slot` charged its whole budget before user space's next sync.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BurstEvent {
    /// Common header, kind [`RingEventKind::Burst`].
    pub header: RingEventHeader,
    /// Slot of the watched cgroup.
    pub slot: u32,
    /// Explicit padding (always zero).
    pub _pad: u32,
    /// The budget that was spent, pages.
    pub budget_pages: i64,
    /// Cgroup id (kernfs inode) of the memcg that made the charge that spent it.
    pub cgroup_id: u64,
}

/// The victim the OOM killer marked (`oom:mark_victim`), with what the kernel knew of it.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OomVictim {
    /// Common header, kind [`RingEventKind::OomVictim`].
    pub header: RingEventHeader,
    /// Cgroup id (kernfs inode) of the victim's own memory cgroup.
    pub cgroup_id: u64,
    /// Thread group id (the "pid" users see) of the victim.
    pub tgid: u32,
    /// Thread id of the victim task.
    pub pid: u32,
    /// Anonymous RSS, pages.
    pub anon_rss_pages: i64,
    /// File-backed RSS, pages.
    pub file_rss_pages: i64,
    /// Shared-memory RSS, pages.
    pub shmem_rss_pages: i64,
    /// Virtual size, pages.
    pub total_vm_pages: u64,
    /// `oom_score_adj` of the victim (-1000 ..= 1000).
    pub oom_score_adj: i32,
    /// Bit 0: the cgroup chain could not be read; bit 1: the mm could not be read.
    pub read_errors: u32,
    /// Command name, NUL padded.
    pub comm: [u8; COMM_LEN],
}

/// Bits of [`OomVictim::read_errors`].
pub mod read_error {
    /// The victim's cgroup could not be read.
    pub const CGROUP: u32 = 1;
    /// The victim's memory counters could not be read.
    pub const MM: u32 = 2;
}

/// Where the charge-path programs find what they need in the running kernel.
///
/// Item numbers are enum values of `node_stat_item` / `memcg_stat_item` / `vm_event_item`;
/// offsets are byte offsets of struct members. User space fills this in from BTF and hands it to
/// the programs as a load-time constant.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
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

/// An item number that matches no event.
pub const ITEM_NONE: u32 = u32::MAX;

/// Where the task-based programs (OOM victim, reclaim) find what they need in a `task_struct`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
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
    /// Explicit padding (always zero).
    pub _pad: [u32; 4],
}

/// A reclaim pass in progress, keyed by thread id between `_begin` and `_end`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReclaimStart {
    /// `bpf_ktime_get_ns()` at `_begin`.
    pub start_ns: u64,
    /// Slot of the watched cgroup the reclaiming task belongs to.
    pub slot: u32,
    /// Explicit padding (always zero).
    pub _pad: u32,
}

#[cfg(feature = "user")]
mod user {
    use super::*;

    // SAFETY: all of these are `#[repr(C)]`, made of integers and arrays of integers, with no
    // implicit padding, so every bit pattern is a valid value.
    unsafe impl aya::Pod for SlotCounters {}
    unsafe impl aya::Pod for BurstBudget {}
    unsafe impl aya::Pod for MemcgSlot {}
    unsafe impl aya::Pod for ChargeLayout {}
    unsafe impl aya::Pod for TaskLayout {}
    unsafe impl aya::Pod for ReclaimStart {}
}

impl SlotCounters {
    /// Adds `other` into `self` (used to sum the per-CPU copies).
    pub fn accumulate(&mut self, other: &SlotCounters) {
        self.charged_pages = self.charged_pages.wrapping_add(other.charged_pages);
        self.uncharged_pages = self.uncharged_pages.wrapping_add(other.uncharged_pages);
        self.anon_delta = self.anon_delta.wrapping_add(other.anon_delta);
        self.file_delta = self.file_delta.wrapping_add(other.file_delta);
        self.shmem_delta = self.shmem_delta.wrapping_add(other.shmem_delta);
        self.kernel_delta = self.kernel_delta.wrapping_add(other.kernel_delta);
        self.events = self.events.wrapping_add(other.events);
        self.major_faults = self.major_faults.wrapping_add(other.major_faults);
        self.reclaim_count = self.reclaim_count.wrapping_add(other.reclaim_count);
        self.reclaim_ns = self.reclaim_ns.wrapping_add(other.reclaim_ns);
        self.reclaimed_pages = self.reclaimed_pages.wrapping_add(other.reclaimed_pages);
        self.unbudgeted_pages = self.unbudgeted_pages.wrapping_add(other.unbudgeted_pages);
    }
}

// The layouts are part of the kernel/user contract: fail the build if padding creeps in.
const _: () = assert!(core::mem::size_of::<SlotCounters>() == 96);
const _: () = assert!(core::mem::size_of::<MemcgSlot>() == 16);
const _: () = assert!(core::mem::size_of::<RingEventHeader>() == 16);
const _: () = assert!(core::mem::size_of::<BurstEvent>() == 40);
const _: () = assert!(core::mem::size_of::<OomVictim>() == 88);
const _: () = assert!(core::mem::size_of::<ChargeLayout>() == 48);
const _: () = assert!(core::mem::size_of::<TaskLayout>() == 80);
