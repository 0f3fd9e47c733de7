//! One watched cgroup: its slot in the kernel maps, its subtree, its baselines.
use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    time::Instant,
};

use profiler_common::SlotCounters;

use super::sample::{build_sample, burst_budget_bytes, Baseline, SampleInputs};
use crate::{
    cgroup::{CgroupError, LimitCache, MemoryCgroup},
    forecast::{
        risk::{Change, RiskTracker, Thresholds},
        summary::{Distributions, SampleFigures},
        Forecast, Forecaster, Observation,
    },
    mode::ChargeMode,
    pods::{limit::applied_limit, AppliedLimit, Identity, LimitSource},
    probe::KernelMaps,
    record::Sample,
};

/// Why a sample could not be taken.
#[derive(Debug)]
pub enum SampleError {
    /// The cgroup was removed.
    Gone,
    /// A cgroup file could not be read (other than removal).
    Read(CgroupError),
    /// The kernel maps failed.
    Kernel(aya::maps::MapError),
}

impl From<CgroupError> for SampleError {
    fn from(e: CgroupError) -> Self {
        match e {
            CgroupError::Gone { .. } => SampleError::Gone,
            other => SampleError::Read(other),
        }
    }
}

impl From<aya::maps::MapError> for SampleError {
    fn from(e: aya::maps::MapError) -> Self {
        SampleError::Kernel(e)
    }
}

/// A watched cgroup.
#[derive(Debug)]
pub struct Watched {
    pub cgroup: MemoryCgroup,
    /// Its slot in the kernel's counter and budget arrays.
    pub slot: u32,
    /// Cgroup ids counted towards this slot (itself and its descendants) → their paths.
    pub subtree: HashMap<u64, PathBuf>,
    pub baseline: Option<Baseline>,
    pub limit: Option<u64>,
    /// Whose limit `limit` is.
    pub limit_source: LimitSource,
    /// Who the cgroup belongs to.
    pub identity: Identity,
    /// The node's memory: the limit when no cgroup has one.
    node_memory: Option<u64>,
    previous: SlotCounters,
    last_sample: Instant,
    /// OOM kills reported (kernel programs or kernel log) since the watch started, for a
    /// cgroup that is not a pod's container (those count in their lineage).
    pub kills_reported: u64,
    /// A burst was reported since the last sample (one per interval is enough).
    pub burst_seen: bool,
    pub gone: bool,
    /// Time to the kill, from the samples.
    pub forecaster: Forecaster,
    /// Warning level, from the forecasts.
    pub risk: RiskTracker,
    /// Warnings raised so far.
    pub warnings_raised: u64,
    /// Highest level reached.
    pub worst_risk: crate::forecast::risk::Risk,
    /// Distributions for the summary.
    pub distributions: Distributions,
    /// When the watch of this cgroup started (Unix seconds).
    pub started: f64,
    /// Reclaim stall at the previous sample (µs since the watch started).
    previous_stall_us: Option<u64>,
    /// `failcnt` at the previous sample.
    previous_failcnt: Option<u64>,
}

/// What one sample gives.
#[derive(Debug)]
pub struct SampleOutcome {
    /// The sample, with its forecast.
    pub sample: Sample,
    /// Whether the subtree changed (the kernel filter was updated).
    pub subtree_changed: bool,
    /// The forecast behind the sample.
    pub forecast: Forecast,
    /// The warning level changed.
    pub change: Option<Change>,
}

impl Watched {
    pub fn new(
        cgroup: MemoryCgroup,
        slot: u32,
        identity: Identity,
        node_memory: Option<u64>,
        limits: &mut LimitCache,
    ) -> Self {
        let applied = applied_limit(&cgroup, node_memory, limits).unwrap_or(AppliedLimit {
            bytes: None,
            source: LimitSource::Cgroup,
        });
        let baseline = cgroup
            .read_snapshot()
            .ok()
            .map(|s| Baseline::from_snapshot(&s));
        let mut subtree = HashMap::new();
        subtree.insert(cgroup.id(), cgroup.path().to_path_buf());
        Self {
            cgroup,
            slot,
            subtree,
            baseline,
            limit: applied.bytes,
            limit_source: applied.source,
            identity,
            node_memory,
            previous: SlotCounters::default(),
            last_sample: Instant::now(),
            kills_reported: 0,
            burst_seen: false,
            gone: false,
            forecaster: Forecaster::new(),
            risk: RiskTracker::default(),
            warnings_raised: 0,
            worst_risk: crate::forecast::risk::Risk::Ok,
            distributions: Distributions::default(),
            started: super::unix_now(),
            previous_stall_us: None,
            previous_failcnt: None,
        }
    }

    pub fn path(&self) -> PathBuf {
        self.cgroup.path().to_path_buf()
    }

    /// Puts the cgroup and its descendants in the kernel's filter, with fresh counters.
    pub fn attach(&mut self, maps: &mut KernelMaps) -> Result<(), aya::maps::MapError> {
        maps.reset_slot(self.slot)?;
        self.refresh_subtree(None).ok();
        for id in self.subtree.keys() {
            maps.watch_id(*id, self.slot)?;
        }
        Ok(())
    }

    /// Takes the cgroup and its descendants out of the kernel's filter.
    pub fn detach(&mut self, maps: &mut KernelMaps) -> Result<(), aya::maps::MapError> {
        for id in self.subtree.keys() {
            maps.unwatch_id(*id)?;
        }
        maps.arm_budget(self.slot, 0)
    }

    /// Gives the slot a burst budget for the next interval.
    pub fn arm(
        &mut self,
        maps: &mut KernelMaps,
        page_size: u64,
    ) -> Result<(), aya::maps::MapError> {
        let usage = self
            .cgroup
            .read_snapshot()
            .map(|s| s.usage_bytes)
            .unwrap_or(0);
        self.arm_for(maps, usage, page_size)
    }

    /// Gives the slot a burst budget for the next interval, from `usage`.
    fn arm_for(
        &self,
        maps: &mut KernelMaps,
        usage: u64,
        page_size: u64,
    ) -> Result<(), aya::maps::MapError> {
        let pages = match burst_budget_bytes(usage, self.limit) {
            Some(bytes) => i64::try_from(bytes / page_size).unwrap_or(i64::MAX),
            // No limit, no headroom to guard: a budget that never runs out.
            None => i64::MAX / 2,
        };
        maps.arm_budget(self.slot, pages)
    }

    /// Walks the subtree again; new cgroups join the filter, removed ones leave it. Returns
    /// whether anything changed (the caller then bumps the generation).
    pub fn refresh_subtree(
        &mut self,
        mut maps: Option<&mut KernelMaps>,
    ) -> Result<bool, SampleError> {
        let mut now: HashMap<u64, PathBuf> = self
            .cgroup
            .descendants()?
            .into_iter()
            .map(|(p, id)| (id, p))
            .collect();
        now.insert(self.cgroup.id(), self.path());
        let mut changed = false;
        for (id, path) in &now {
            if !self.subtree.contains_key(id) {
                if let Some(maps) = maps.as_deref_mut() {
                    maps.watch_id(*id, self.slot)?;
                }
                log::debug!(
                    "{} joins the watch of {}",
                    path.display(),
                    self.path().display()
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

    /// The path of a cgroup in this subtree whose path relative to the hierarchy root is
    /// `relative` (as the kernel log names it).
    pub fn find_by_suffix(&self, relative: &str) -> Option<PathBuf> {
        let relative = Path::new(relative);
        if relative.as_os_str().is_empty() {
            return None;
        }
        self.subtree
            .values()
            .find(|p| p.ends_with(relative))
            .cloned()
    }

    /// Reads the files and counters and builds a sample; re-arms the burst budget.
    /// `history` is the kills and restarts to report (the lineage's, for a pod's container).
    pub fn sample(
        &mut self,
        mut maps: Option<&mut KernelMaps>,
        mode: ChargeMode,
        page_size: u64,
        history: (u64, u64),
        limits: &mut LimitCache,
        thresholds: &Thresholds,
    ) -> Result<SampleOutcome, SampleError> {
        let snapshot = self.cgroup.read_snapshot()?;
        let applied = applied_limit(&self.cgroup, self.node_memory, limits)?;
        self.limit = applied.bytes;
        self.limit_source = applied.source;
        let baseline = *self
            .baseline
            .get_or_insert_with(|| Baseline::from_snapshot(&snapshot));
        let changed = self.refresh_subtree(maps.as_deref_mut())?;
        let now = Instant::now();
        let counters = match maps.as_deref_mut() {
            // Maps exist whenever any program attached (the OOM or reclaim hooks, say), but
            // without a charge-path hook the counters stay at zero: a rate of 0 would be a
            // lie, so polling reports none.
            Some(_) if mode == ChargeMode::Polling => None,
            Some(maps) => {
                let current = maps.counters(self.slot)?;
                let before = std::mem::replace(&mut self.previous, current);
                Some((current, before))
            }
            None => None,
        };
        let elapsed = (now - self.last_sample).as_secs_f64();
        let mut sample = build_sample(SampleInputs {
            snapshot: &snapshot,
            limit_bytes: self.limit,
            limit_source: self.limit_source,
            baseline,
            counters,
            elapsed: now - self.last_sample,
            kills_reported: history.0,
            restarts: history.1,
            page_size,
            mode,
        });
        self.last_sample = now;
        if let Some(maps) = maps {
            self.arm_for(maps, snapshot.usage_bytes, page_size)?;
        }
        self.burst_seen = false;
        let stall_us = match (sample.reclaim_stall_us, self.previous_stall_us) {
            (Some(now_us), Some(before)) => Some(now_us.saturating_sub(before)),
            _ => None,
        };
        let stall_per_s = stall_us
            .filter(|_| elapsed > 0.0)
            .map(|us| us as f64 / elapsed);
        self.previous_stall_us = sample.reclaim_stall_us;
        let limit_hits = match (sample.failcnt, self.previous_failcnt) {
            (Some(now_n), Some(before)) => Some(now_n.saturating_sub(before)),
            _ => None,
        };
        self.previous_failcnt = sample.failcnt;
        self.distributions.record(SampleFigures {
            usage: sample.usage_bytes,
            working_set: sample.working_set_bytes,
            unreclaimable: sample.unreclaimable_bytes,
            charge_rate: sample.charge_rate_bytes_per_s,
            reclaim_stall_us_per_s: stall_per_s,
        });
        let t = super::unix_now();
        let forecast = self.forecaster.observe(Observation {
            t,
            unreclaimable: sample.unreclaimable_bytes,
            limit: sample.limit_bytes,
            reclaim_stall_us: stall_us,
            limit_hits,
            psi_some_avg10: sample.psi_some_avg10,
        });
        let change = self.risk.update(t, &forecast, thresholds);
        if let Some(c) = change {
            if c.to > c.from {
                self.warnings_raised += 1;
            }
            self.worst_risk = self.worst_risk.max(c.to);
        }
        sample.eta_seconds = forecast.eta_s;
        sample.eta_low_seconds = forecast.low_s;
        sample.eta_high_seconds = forecast.high_s;
        sample.risk = self.risk.level();
        Ok(SampleOutcome {
            sample,
            subtree_changed: changed,
            forecast,
            change,
        })
    }
}
