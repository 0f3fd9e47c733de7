//! The load-time layouts and the maps every program shares with user space.
use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf},
    Global,
};
use profiler_common::{
    BurstBudget, ChargeLayout, LastExit, MemcgSlot, SignalKey, SignalSeen, SlotCounters,
    StackSampling, TaskLayout, MAX_SIGNAL_KEYS, MAX_SLOTS, MAX_WATCHED_IDS, MEMCG_CACHE_ENTRIES,
};

/// Item numbers and cgroup-id offsets, from the running kernel's BTF (set by the loader).
#[unsafe(no_mangle)]
pub(crate) static CHARGE_LAYOUT: Global<ChargeLayout> = Global::new(ChargeLayout::UNRESOLVED);

/// `task_struct` offsets for the OOM-victim and reclaim programs (set by the loader).
#[unsafe(no_mangle)]
pub(crate) static TASK_LAYOUT: Global<TaskLayout> = Global::new(TaskLayout::UNRESOLVED);

/// The filter: cgroup id (kernfs inode) → slot. A watched cgroup and its descendants map to the
/// watched cgroup's slot. Only user space writes it.
#[map]
pub(crate) static WATCHED: HashMap<u64, u32> = HashMap::with_max_entries(MAX_WATCHED_IDS, 0);

/// `struct mem_cgroup *` → slot, so the hot path does an array access instead of three kernel
/// reads and a hash lookup. Per CPU, so entries are never written by two CPUs at once; direct
/// mapped by a hash of the pointer, since an array lookup is inlined by the verifier and a hash
/// map lookup is a helper call. Entries carry the watch-set generation they were resolved
/// under; a memcg freed and reallocated at the same address keeps its old entry until user
/// space next sees the subtree change and bumps the generation (one interval at most).
#[map]
pub(crate) static MEMCG_CACHE: PerCpuArray<MemcgSlot> =
    PerCpuArray::with_max_entries(MEMCG_CACHE_ENTRIES, 0);

/// Watch-set generation, bumped by user space after every change to [`WATCHED`]; cached
/// entries of an older generation are resolved again.
#[map]
pub(crate) static GENERATION: Array<u32> = Array::with_max_entries(1, 0);

/// Per-CPU counters of each slot.
#[map]
pub(crate) static COUNTERS: PerCpuArray<SlotCounters> = PerCpuArray::with_max_entries(MAX_SLOTS, 0);

/// Burst budget of each slot (shared between CPUs, updated atomically).
#[map]
pub(crate) static BUDGETS: Array<BurstBudget> = Array::with_max_entries(MAX_SLOTS, 0);

/// Per CPU, the processes of each slot that ended, and the last one: a container's last
/// process is known without a ring record per exit.
#[map]
pub(crate) static LAST_EXIT: PerCpuArray<LastExit> = PerCpuArray::with_max_entries(MAX_SLOTS, 0);

/// The repeat filter of SIGKILLs and SIGTERMs to watched tasks: when each (target, sender,
/// signal) was last recorded, and its repeats since.
#[map]
pub(crate) static SIGNALS_SEEN: LruHashMap<SignalKey, SignalSeen> =
    LruHashMap::with_max_entries(MAX_SIGNAL_KEYS, 0);

/// Records for user space: bursts, OOM victims, deaths by signal, SIGKILLs and SIGTERMs.
#[map]
pub(crate) static EVENTS: RingBuf = RingBuf::with_byte_size(256 * 1024, 0);

/// Stack sampling of each slot (user space turns it on and off).
#[map]
pub(crate) static STACK_SAMPLING: Array<StackSampling> = Array::with_max_entries(MAX_SLOTS, 0);

/// Sampled charge stacks for user space: apart from [`EVENTS`], so a storm of samples cannot
/// crowd out an OOM kill. 1 MiB holds about 1,200 samples; user space drains it as soon as it
/// is woken.
#[map]
pub(crate) static STACKS: RingBuf = RingBuf::with_byte_size(1024 * 1024, 0);

/// Samples that did not fit in [`STACKS`] (index 0).
#[map]
pub(crate) static LOST_STACKS: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Records that did not fit in [`EVENTS`] (index 0), so overflow is reported, never silent.
#[map]
pub(crate) static LOST_EVENTS: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Counts a record that could not be reserved in the ring buffer.
#[inline(always)]
pub(crate) fn count_lost_event() {
    if let Some(lost) = LOST_EVENTS.get_ptr_mut(0) {
        // SAFETY: per-CPU slot, only this CPU writes it.
        unsafe { *lost += 1 };
    }
}

/// Counts a sample that could not be reserved in the stacks ring buffer.
#[inline(always)]
pub(crate) fn count_lost_stack() {
    if let Some(lost) = LOST_STACKS.get_ptr_mut(0) {
        // SAFETY: per-CPU slot, only this CPU writes it.
        unsafe { *lost += 1 };
    }
}
