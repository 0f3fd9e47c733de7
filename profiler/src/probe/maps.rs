//! The maps user space shares with the kernel programs.
use aya::{
    maps::{Array, HashMap, MapData, MapError, PerCpuArray, PerCpuValues},
    util::nr_cpus,
    Ebpf,
};
use profiler_common::{BurstBudget, LastExit, SlotCounters, StackSampling};

use super::ProbeError;

/// Typed handles on the programs' maps, taken out of the [`Ebpf`] object.
pub(crate) struct KernelMaps {
    watched: HashMap<MapData, u64, u32>,
    generation: Array<MapData, u32>,
    counters: PerCpuArray<MapData, SlotCounters>,
    budgets: Array<MapData, BurstBudget>,
    lost: PerCpuArray<MapData, u64>,
    last_exit: PerCpuArray<MapData, LastExit>,
    stack_sampling: Array<MapData, StackSampling>,
    lost_stacks: PerCpuArray<MapData, u64>,
    cpus: usize,
    generation_value: u32,
    /// Entries of the per-slot maps.
    slots: u32,
}

fn take<T>(ebpf: &mut Ebpf, name: &'static str) -> Result<T, ProbeError>
where
    T: TryFrom<aya::maps::Map, Error = MapError>,
{
    let map = ebpf.take_map(name).ok_or(ProbeError::Map(
        name,
        MapError::InvalidName { name: name.into() },
    ))?;
    T::try_from(map).map_err(|e| ProbeError::Map(name, e))
}

impl KernelMaps {
    /// Takes the maps out of `ebpf` (the programs keep their own references).
    pub(crate) fn take(ebpf: &mut Ebpf, slots: u32) -> Result<Self, ProbeError> {
        let cpus = nr_cpus().map_err(|(what, e)| {
            ProbeError::Map(
                "COUNTERS",
                MapError::SyscallError(aya::sys::SyscallError {
                    call: what,
                    io_error: e,
                }),
            )
        })?;
        Ok(Self {
            watched: take(ebpf, "WATCHED")?,
            generation: take(ebpf, "GENERATION")?,
            counters: take(ebpf, "COUNTERS")?,
            budgets: take(ebpf, "BUDGETS")?,
            lost: take(ebpf, "LOST_EVENTS")?,
            last_exit: take(ebpf, "LAST_EXIT")?,
            stack_sampling: take(ebpf, "STACK_SAMPLING")?,
            lost_stacks: take(ebpf, "LOST_STACKS")?,
            cpus,
            generation_value: 0,
            slots,
        })
    }

    /// Makes the charges of cgroup `id` count towards `slot`.
    pub(crate) fn watch_id(&mut self, id: u64, slot: u32) -> Result<(), MapError> {
        self.watched.insert(id, slot, 0)
    }

    /// Stops counting the charges of cgroup `id`.
    pub(crate) fn unwatch_id(&mut self, id: u64) -> Result<(), MapError> {
        match self.watched.remove(&id) {
            Err(MapError::KeyNotFound) => Ok(()),
            other => other,
        }
    }

    /// How many cgroups the maps have slots for.
    pub(crate) fn slots(&self) -> u32 {
        self.slots
    }

    /// Publishes a change of the watch set: the kernel resolves cached memcgs again.
    pub(crate) fn bump_generation(&mut self) -> Result<(), MapError> {
        self.generation_value = self.generation_value.wrapping_add(1);
        self.generation.set(0, self.generation_value, 0)
    }

    /// Zeroes a slot's counters before it is given to a new cgroup.
    pub(crate) fn reset_slot(&mut self, slot: u32) -> Result<(), MapError> {
        debug_assert!(slot < self.slots);
        let zeros = PerCpuValues::try_from(vec![SlotCounters::default(); self.cpus])?;
        self.counters.set(slot, zeros, 0)?;
        let zeros = PerCpuValues::try_from(vec![LastExit::default(); self.cpus])?;
        self.last_exit.set(slot, zeros, 0)?;
        self.stack_sampling.set(slot, StackSampling::default(), 0)?;
        self.budgets.set(slot, BurstBudget::default(), 0)
    }

    /// The processes of the slot that ended since it was given out, and the last of them
    /// (the newest over the CPUs).
    pub(crate) fn last_exit(&self, slot: u32) -> Result<(u64, Option<LastExit>), MapError> {
        let per_cpu = self.last_exit.get(&slot, 0)?;
        let exits = per_cpu.iter().map(|e| e.exits).sum();
        let newest = per_cpu
            .iter()
            .filter(|e| e.exits > 0)
            .max_by_key(|e| e.ktime_ns)
            .copied();
        Ok((exits, newest))
    }

    /// The slot's counters, summed over CPUs.
    pub(crate) fn counters(&self, slot: u32) -> Result<SlotCounters, MapError> {
        let per_cpu = self.counters.get(&slot, 0)?;
        let mut total = SlotCounters::default();
        for c in per_cpu.iter() {
            total.accumulate(c);
        }
        Ok(total)
    }

    /// Gives the slot a fresh burst budget of `pages` and arms it.
    pub(crate) fn arm_budget(&mut self, slot: u32, pages: i64) -> Result<(), MapError> {
        let budget = BurstBudget {
            remaining_pages: pages,
            budget_pages: pages,
            armed: 1,
        };
        self.budgets.set(slot, budget, 0)
    }

    /// Samples the slot's charges every `interval_pages` pages on average (per CPU); 0 stops.
    pub(crate) fn set_stack_interval(
        &mut self,
        slot: u32,
        interval_pages: u32,
    ) -> Result<(), MapError> {
        let sampling = StackSampling {
            interval_pages,
            _pad: 0,
        };
        self.stack_sampling.set(slot, sampling, 0)
    }

    /// Stack samples the kernel could not put in their ring buffer since the programs were
    /// loaded.
    pub(crate) fn lost_stacks(&self) -> Result<u64, MapError> {
        Ok(self.lost_stacks.get(&0, 0)?.iter().sum())
    }

    /// Records the kernel could not put in the ring buffer since the programs were loaded.
    pub(crate) fn lost_events(&self) -> Result<u64, MapError> {
        Ok(self.lost.get(&0, 0)?.iter().sum())
    }
}
