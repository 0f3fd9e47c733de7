//! Load-time constants, the maps shared by every program, and the memcg → slot resolution.
use aya_ebpf::{
    helpers::bpf_probe_read_kernel,
    macros::map,
    maps::{Array, HashMap, PerCpuArray, RingBuf},
    Global,
};
use profiler_common::{
    BurstBudget, ChargeLayout, MemcgSlot, SlotCounters, TaskLayout, MAX_SLOTS, MAX_WATCHED_IDS,
    MEMCG_CACHE_ENTRIES, SLOT_UNWATCHED,
};

/// Item numbers and cgroup-id offsets, from the running kernel's BTF (set by the loader).
#[unsafe(no_mangle)]
pub static CHARGE_LAYOUT: Global<ChargeLayout> = Global::new(ChargeLayout {
    item_anon: u32::MAX,
    item_file: u32::MAX,
    item_shmem: u32::MAX,
    item_kmem: u32::MAX,
    event_pgmajfault: u32::MAX,
    memcg_css: 0,
    css_cgroup: 0,
    cgroup_kn: 0,
    kn_id: 0,
    pn_lruvec: 0,
    pn_memcg: 0,
    _pad: 0,
});

/// `task_struct` offsets for the OOM-victim and reclaim programs (set by the loader).
#[unsafe(no_mangle)]
pub static TASK_LAYOUT: Global<TaskLayout> = Global::new(TaskLayout {
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
    _pad: [0; 4],
});

/// The filter: cgroup id (kernfs inode) → slot. A watched cgroup and its descendants map to the
/// watched cgroup's slot. Only user space writes it.
#[map]
pub static WATCHED: HashMap<u64, u32> = HashMap::with_max_entries(MAX_WATCHED_IDS, 0);

/// `struct mem_cgroup *` → slot, so the hot path does an array access instead of three kernel
/// reads and a hash lookup. Per CPU, so entries are never written by two CPUs at once; direct
/// mapped by a hash of the pointer, since an array lookup is inlined by the verifier and a hash
/// map lookup is a helper call. Entries carry the watch-set generation they were resolved
/// under; a memcg freed and reallocated at the same address keeps its old entry until user
/// space next sees the subtree change and bumps the generation (one interval at most).
#[map]
pub static MEMCG_CACHE: PerCpuArray<MemcgSlot> =
    PerCpuArray::with_max_entries(MEMCG_CACHE_ENTRIES, 0);

/// Watch-set generation, bumped by user space after every change to [`WATCHED`]; cached
/// entries of an older generation are resolved again.
#[map]
pub static GENERATION: Array<u32> = Array::with_max_entries(1, 0);

/// Per-CPU counters of each slot.
#[map]
pub static COUNTERS: PerCpuArray<SlotCounters> = PerCpuArray::with_max_entries(MAX_SLOTS, 0);

/// Burst budget of each slot (shared between CPUs, updated atomically).
#[map]
pub static BUDGETS: Array<BurstBudget> = Array::with_max_entries(MAX_SLOTS, 0);

/// Records for user space: bursts and OOM victims.
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(256 * 1024, 0);

/// Records that did not fit in [`EVENTS`] (index 0), so overflow is reported, never silent.
#[map]
pub static LOST_EVENTS: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Reads a kernel value at `base + offset`.
#[inline(always)]
pub fn read_at<T>(base: u64, offset: u32) -> Option<T> {
    // SAFETY: bpf_probe_read_kernel checks the address; a bad pointer is an error, not a fault.
    unsafe { bpf_probe_read_kernel((base + offset as u64) as *const T).ok() }
}

/// The cgroup id of a `struct mem_cgroup *`: `memcg->css.cgroup->kn->id`.
#[inline(always)]
pub fn memcg_cgroup_id(memcg: u64, layout: &ChargeLayout) -> Option<u64> {
    let cgroup: u64 = read_at(memcg, layout.memcg_css + layout.css_cgroup)?;
    let kn: u64 = read_at(cgroup, layout.cgroup_kn)?;
    read_at(kn, layout.kn_id)
}

/// The watched slot a memcg's events count towards, or `None` for a memcg nobody watches.
///
/// This is on the hot path of every charge in the node: one array read and one LRU lookup when
/// the memcg was seen before under the current watch set.
#[inline(always)]
pub fn slot_of_memcg(memcg: u64) -> Option<u32> {
    slot_of(memcg, Some)
}

/// Like [`slot_of_memcg`], for a `struct lruvec *` (what `__mod_memcg_lruvec_state` gets on
/// kernels without the memcg tracepoints). The cache is keyed by the lruvec itself, so the hot
/// path is the same single probe; only the slow path goes from the lruvec to its memcg.
#[inline(always)]
pub fn slot_of_lruvec(lruvec: u64) -> Option<u32> {
    slot_of(lruvec, memcg_of_lruvec)
}

/// The memcg of a memcg's per-node `lruvec`: `container_of(lruvec, struct
/// mem_cgroup_per_node, lruvec)->memcg`.
#[inline(always)]
pub fn memcg_of_lruvec(lruvec: u64) -> Option<u64> {
    let layout = CHARGE_LAYOUT.load();
    let per_node = lruvec.checked_sub(layout.pn_lruvec as u64)?;
    read_at(per_node, layout.pn_memcg)
}

/// The cached slot of `key` (a memcg or an lruvec pointer: they never share an address, a
/// lruvec lives inside a per-node struct, not at the start of a memcg), resolved through
/// `memcg_of` on a miss.
#[inline(always)]
fn slot_of(key: u64, memcg_of: impl FnOnce(u64) -> Option<u64>) -> Option<u32> {
    let generation = GENERATION.get(0).copied().unwrap_or(0);
    // Fibonacci hashing: memcgs are large allocations, so the low bits of their addresses
    // carry little; the top bits of the product mix all of them.
    let index = (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 54) as u32 % MEMCG_CACHE_ENTRIES;
    let entry = MEMCG_CACHE.get_ptr_mut(index)?;
    // SAFETY: per-CPU value, only this CPU reads and writes it, and tracing programs do not
    // nest on one CPU.
    let entry = unsafe { &mut *entry };
    if entry.memcg == key && entry.generation == generation {
        return (entry.slot != SLOT_UNWATCHED).then_some(entry.slot);
    }
    let slot = resolve_slot(memcg_of(key)?)?;
    *entry = MemcgSlot {
        memcg: key,
        slot,
        generation,
    };
    (slot != SLOT_UNWATCHED).then_some(slot)
}

/// The slow path: the memcg's cgroup id, looked up in the filter.
#[inline(never)]
fn resolve_slot(memcg: u64) -> Option<u32> {
    let layout = CHARGE_LAYOUT.load();
    let id = memcg_cgroup_id(memcg, &layout)?;
    // SAFETY: copied out at once.
    Some(
        unsafe { WATCHED.get(id) }
            .copied()
            .unwrap_or(SLOT_UNWATCHED),
    )
}

/// The `struct mem_cgroup *` of a task's memory cgroup: `task->cgroups->subsys[memory]`,
/// minus the offset of `css` in `mem_cgroup`.
#[inline(always)]
pub fn task_memcg(task: u64, task_layout: &TaskLayout, charge: &ChargeLayout) -> Option<u64> {
    let css_set: u64 = read_at(task, task_layout.cgroups)?;
    let css: u64 = read_at(css_set, task_layout.css_set_memory)?;
    if css == 0 {
        return None;
    }
    Some(css - charge.memcg_css as u64)
}

/// Counts a record that could not be reserved in the ring buffer.
#[inline(always)]
pub fn count_lost_event() {
    if let Some(lost) = LOST_EVENTS.get_ptr_mut(0) {
        // SAFETY: per-CPU slot, only this CPU writes it.
        unsafe { *lost += 1 };
    }
}
