//! What the charge-path and reclaim programs count per watched cgroup, and how they find the
//! cgroup's slot.

/// How many memory cgroups one profiler watches at once by default (slots in the counter
/// arrays; `watch --max-cgroups` sizes them at load time).
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
    /// Pages this CPU may still charge before its next stack sample (or, with sampling off,
    /// before the setting is looked at again).
    pub stack_countdown_pages: i64,
    /// What [`Self::stack_countdown_pages`] was set to; 0 while sampling is off. A sample
    /// stands for this minus the countdown (which has gone to zero or below).
    pub stack_interval_pages: i64,
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
        // The stack countdowns are each CPU's own: a sum of them means nothing.
    }
}

/// Burst budget of one watched cgroup (a shared, non-per-CPU array entry).
///
/// User space sets `remaining_pages` at each sync (a share of the cgroup's headroom). The
/// kernel subtracts every charge atomically; the first charge that finds it at zero or below
/// sends a [`BurstEvent`](crate::BurstEvent), so a burst is seen within milliseconds, not at
/// the next poll.
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
    use super::{BurstBudget, MemcgSlot, ReclaimStart, SlotCounters};

    // SAFETY: all of these are `#[repr(C)]`, made of integers, with no implicit padding, so
    // every bit pattern is a valid value.
    unsafe impl aya::Pod for SlotCounters {}
    // SAFETY: as above.
    unsafe impl aya::Pod for BurstBudget {}
    // SAFETY: as above.
    unsafe impl aya::Pod for MemcgSlot {}
    // SAFETY: as above.
    unsafe impl aya::Pod for ReclaimStart {}
}

// The layouts are part of the kernel/user contract: fail the build if padding creeps in.
const _: () = assert!(size_of::<SlotCounters>() == 112);
const _: () = assert!(size_of::<BurstBudget>() == 24);
const _: () = assert!(size_of::<MemcgSlot>() == 16);
const _: () = assert!(size_of::<ReclaimStart>() == 16);
