//! From a `struct mem_cgroup *` (or a task, or an lruvec) to the watched slot it counts
//! towards: the pointer chains into kernel structures, and the per-CPU cache that keeps them
//! off the hot path.
use aya_ebpf::helpers::bpf_probe_read_kernel;
use profiler_common::{ChargeLayout, MemcgSlot, TaskLayout, MEMCG_CACHE_ENTRIES, SLOT_UNWATCHED};

use crate::maps::{CHARGE_LAYOUT, GENERATION, MEMCG_CACHE, WATCHED};

/// Reads a kernel value at `base + offset`.
#[inline(always)]
pub(crate) fn read_at<T>(base: u64, offset: u32) -> Option<T> {
    // SAFETY: bpf_probe_read_kernel checks the address; a bad pointer is an error, not a fault.
    unsafe { bpf_probe_read_kernel((base + offset as u64) as *const T).ok() }
}

/// The cgroup id of a `struct mem_cgroup *`: `memcg->css.cgroup->kn->id`.
#[inline(always)]
pub(crate) fn memcg_cgroup_id(memcg: u64, layout: &ChargeLayout) -> Option<u64> {
    let cgroup: u64 = read_at(memcg, layout.memcg_css + layout.css_cgroup)?;
    let kn: u64 = read_at(cgroup, layout.cgroup_kn)?;
    read_at(kn, layout.kn_id)
}

/// The watched slot a memcg's events count towards, or `None` for a memcg nobody watches.
///
/// This is on the hot path of every charge in the node: when the memcg was seen before under
/// the current watch set, it costs a read of the generation and one entry of the per-CPU,
/// direct-mapped cache (no helper call, no kernel read).
#[inline(always)]
pub(crate) fn slot_of_memcg(memcg: u64) -> Option<u32> {
    slot_of(memcg, Some)
}

/// Like [`slot_of_memcg`], checked against the filter: the cache can still map a memcg freed
/// and reallocated at the same address to the old cgroup's slot for up to one interval, which
/// a count can bear but a death cannot (it would be told as another container's). Only a
/// memcg whose slot was found pays for the check: deaths and signals, not charges.
#[inline(always)]
pub(crate) fn checked_slot_of_memcg(memcg: u64) -> Option<u32> {
    let slot = slot_of_memcg(memcg)?;
    let id = memcg_cgroup_id(memcg, &CHARGE_LAYOUT.load())?;
    // SAFETY: copied out at once.
    let watched = unsafe { WATCHED.get(id) }.copied()?;
    (watched == slot).then_some(slot)
}

/// Like [`slot_of_memcg`], for a `struct lruvec *` (what `__mod_memcg_lruvec_state` gets on
/// kernels without the memcg tracepoints). The cache is keyed by the lruvec itself, so the hot
/// path is the same single probe; only the slow path goes from the lruvec to its memcg.
#[inline(always)]
pub(crate) fn slot_of_lruvec(lruvec: u64) -> Option<u32> {
    slot_of(lruvec, memcg_of_lruvec)
}

/// The memcg of a memcg's per-node `lruvec`: `container_of(lruvec, struct
/// mem_cgroup_per_node, lruvec)->memcg`.
#[inline(always)]
pub(crate) fn memcg_of_lruvec(lruvec: u64) -> Option<u64> {
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
pub(crate) fn task_memcg(
    task: u64,
    task_layout: &TaskLayout,
    charge: &ChargeLayout,
) -> Option<u64> {
    let css_set: u64 = read_at(task, task_layout.cgroups)?;
    let css: u64 = read_at(css_set, task_layout.css_set_memory)?;
    if css == 0 {
        return None;
    }
    Some(css - charge.memcg_css as u64)
}
