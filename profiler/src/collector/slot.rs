//! A watched cgroup's place in the kernel programs' maps: its slot, the cgroup ids counted
//! towards it (itself and its descendants), its burst budget, and the counters read last.
use std::{
    collections::HashMap,
    path::{Path, PathBuf},
};

use aya::maps::MapError;
use profiler_common::SlotCounters;

use super::{sample::burst_budget_bytes, SampleError};
use crate::{cgroup::MemoryCgroup, probe::KernelMaps};

/// The kernel side of one watched cgroup.
#[derive(Debug)]
pub(super) struct KernelSlot {
    /// Its index in the kernel's counter and budget arrays.
    index: u32,
    /// Cgroup ids counted towards this slot (the watched cgroup and its descendants) → their
    /// paths. Kept in polling mode too: kills are attributed through it.
    subtree: HashMap<u64, PathBuf>,
    /// The counters at the previous sample.
    previous: SlotCounters,
    /// A burst was reported since the last sample (one per interval is enough).
    burst_seen: bool,
}

impl KernelSlot {
    /// Slot `index` for `cgroup`, whose subtree is for now the cgroup alone.
    pub(super) fn new(index: u32, cgroup: &MemoryCgroup) -> Self {
        Self {
            index,
            subtree: HashMap::from([(cgroup.id(), cgroup.path().to_path_buf())]),
            previous: SlotCounters::default(),
            burst_seen: false,
        }
    }

    /// The slot's index.
    pub(super) fn index(&self) -> u32 {
        self.index
    }

    /// Puts the cgroup and its descendants in the kernel's filter, with fresh counters.
    pub(super) fn attach(
        &mut self,
        cgroup: &MemoryCgroup,
        maps: &mut KernelMaps,
    ) -> Result<(), MapError> {
        maps.reset_slot(self.index)?;
        // A subtree that cannot be walked now is walked again at the first sample.
        if let Err(e) = self.refresh_subtree(cgroup, None) {
            log::debug!("{}: {e:?}", cgroup.path().display());
        }
        for id in self.subtree.keys() {
            maps.watch_id(*id, self.index)?;
        }
        Ok(())
    }

    /// Takes the cgroup and its descendants out of the kernel's filter.
    pub(super) fn detach(&self, maps: &mut KernelMaps) -> Result<(), MapError> {
        for id in self.subtree.keys() {
            maps.unwatch_id(*id)?;
        }
        maps.arm_budget(self.index, 0)
    }

    /// Gives the slot a burst budget for the next interval, from `usage` and the limit.
    pub(super) fn arm(
        &self,
        maps: &mut KernelMaps,
        usage: u64,
        limit: Option<u64>,
        page_size: u64,
    ) -> Result<(), MapError> {
        let pages = match burst_budget_bytes(usage, limit) {
            Some(bytes) => i64::try_from(bytes / page_size).unwrap_or(i64::MAX),
            // No limit, no headroom to guard: a budget that never runs out.
            None => i64::MAX / 2,
        };
        maps.arm_budget(self.index, pages)
    }

    /// Walks the subtree again; new cgroups join the filter, removed ones leave it. Returns
    /// whether anything changed (the caller then bumps the generation).
    pub(super) fn refresh_subtree(
        &mut self,
        cgroup: &MemoryCgroup,
        mut maps: Option<&mut KernelMaps>,
    ) -> Result<bool, SampleError> {
        let mut now: HashMap<u64, PathBuf> = cgroup
            .descendants()?
            .into_iter()
            .map(|(p, id)| (id, p))
            .collect();
        now.insert(cgroup.id(), cgroup.path().to_path_buf());
        let mut changed = false;
        for (id, path) in &now {
            if !self.subtree.contains_key(id) {
                if let Some(maps) = maps.as_deref_mut() {
                    maps.watch_id(*id, self.index)?;
                }
                log::debug!(
                    "{} joins the watch of {}",
                    path.display(),
                    cgroup.path().display()
                );
                changed = true;
            }
        }
        for id in self.subtree.keys() {
            if !now.contains_key(id) {
                if let Some(maps) = maps.as_deref_mut() {
                    maps.unwatch_id(*id)?;
                }
                changed = true;
            }
        }
        self.subtree = now;
        Ok(changed)
    }

    /// The counters now and at the previous call, summed over CPUs.
    pub(super) fn counters(
        &mut self,
        maps: &KernelMaps,
    ) -> Result<(SlotCounters, SlotCounters), MapError> {
        let now = maps.counters(self.index)?;
        Ok((now, std::mem::replace(&mut self.previous, now)))
    }

    /// Whether this is the first burst since the last sample (it is then reported).
    pub(super) fn first_burst(&mut self) -> bool {
        !std::mem::replace(&mut self.burst_seen, true)
    }

    /// A new interval starts: the next burst is reported again.
    pub(super) fn rearm_burst(&mut self) {
        self.burst_seen = false;
    }

    /// The paths of the cgroup and its descendants.
    pub(super) fn paths(&self) -> impl Iterator<Item = &Path> {
        self.subtree.values().map(PathBuf::as_path)
    }

    /// The path of cgroup `id`, if it is in this subtree.
    pub(super) fn path_of(&self, id: u64) -> Option<&Path> {
        self.subtree.get(&id).map(PathBuf::as_path)
    }

    /// The path of a cgroup in this subtree whose path relative to the hierarchy root is
    /// `relative` (as the kernel log names it).
    pub(super) fn find_by_suffix(&self, relative: &str) -> Option<&Path> {
        let relative = Path::new(relative);
        if relative.as_os_str().is_empty() {
            return None;
        }
        self.subtree
            .values()
            .find(|p| p.ends_with(relative))
            .map(PathBuf::as_path)
    }
}

#[cfg(test)]
impl KernelSlot {
    /// A slot whose subtree is given, without a cgroup on disk.
    pub(super) fn with_subtree(index: u32, subtree: HashMap<u64, PathBuf>) -> Self {
        Self {
            index,
            subtree,
            previous: SlotCounters::default(),
            burst_seen: false,
        }
    }
}
