//! One watched cgroup: who it belongs to, its kernel slot, what its files said at the start
//! and at the previous sample, and its outlook; and the taking of one sample.
use std::time::Instant;

use aya::maps::MapError;
use profiler_common::SlotCounters;
use thiserror::Error;

use super::{
    outlook::Outlook,
    sample::{build_sample, observation, Baseline, Prediction, SampleInputs},
    slot::KernelSlot,
    targets::{lineage_key, LineageKey},
    unix_now,
};
use crate::{
    ceilings::{
        assess,
        procs::{ContainerRuntimes, Findings},
    },
    cgroup::{CgroupError, LimitCache, MemoryCgroup, MemorySnapshot, SnapshotHandles},
    distributions::{Distributions, SampleFigures},
    forecast::{
        risk::{Change, Thresholds},
        Forecast,
    },
    mode::ChargeMode,
    pods::{
        limit::{applied_limit, applied_limit_given},
        AppliedLimit, Identity, LimitSource,
    },
    probe::KernelMaps,
    processes::{ProcessGrowth, ProcessesView},
    record::Sample,
};

/// Rounds between full reads of a quiet cgroup's files. A round without a charge-path event
/// reuses the last reading; but some figures move without one (statistics the kernel flushes
/// lazily, a limit raised, a child cgroup made, pressure), and this bounds how stale they get.
pub(super) const QUIET_REFRESH_ROUNDS: u32 = 10;

/// Whether the kernel programs saw nothing happen in a cgroup between two readings of its
/// counters: no charge-path event, no reclaim pass, no major fault.
fn nothing_charged(now: &SlotCounters, before: &SlotCounters) -> bool {
    now.events == before.events
        && now.reclaim_count == before.reclaim_count
        && now.major_faults == before.major_faults
}

/// Why a sample could not be taken.
#[derive(Debug, Error)]
pub(super) enum SampleError {
    /// The cgroup was removed.
    #[error("the cgroup was removed")]
    Gone,
    /// A cgroup file could not be read (other than removal).
    #[error(transparent)]
    Read(CgroupError),
    /// The kernel maps failed.
    #[error("reading the kernel programs' counters failed")]
    Kernel(#[from] MapError),
}

impl From<CgroupError> for SampleError {
    fn from(e: CgroupError) -> Self {
        match e {
            CgroupError::Gone { .. } => SampleError::Gone,
            other => SampleError::Read(other),
        }
    }
}

/// What the previous sample of a cgroup left for the next one.
#[derive(Debug)]
struct Previous {
    /// When it was taken.
    at: Instant,
    /// Reclaim stall since the watch started, µs.
    stall_us: Option<u64>,
    /// `failcnt` since the watch started.
    failcnt: Option<u64>,
}

/// What the collector needs to sample any cgroup, the same for all of them in one round.
pub(super) struct Round<'a> {
    /// The kernel programs' maps (`None` when no program is attached).
    pub(super) maps: Option<&'a mut KernelMaps>,
    /// How the charge path is observed.
    pub(super) mode: ChargeMode,
    /// Whether the charge path's programs are attached now (they may be detached while no
    /// container needs them: then charge figures are unknown, and reclaim's still count).
    pub(super) charge_traced: bool,
    /// The machine's page size.
    pub(super) page_size: u64,
    /// Ancestors' limits, read once per round.
    pub(super) limits: &'a mut LimitCache,
    /// The warning thresholds.
    pub(super) thresholds: &'a Thresholds,
    /// Whether a quiet round still reads the usage (one small read, which notices a
    /// removed cgroup); without it, a removal is noticed by the look at the node.
    pub(super) confirm_quiet: bool,
    /// The node's free swap, bytes, read once a round.
    pub(super) node_swap_free: u64,
}

/// What one sample gives.
#[derive(Debug)]
pub(super) struct SampleOutcome {
    /// The sample, with its forecast.
    pub(super) sample: Sample,
    /// Whether the subtree changed (the kernel filter was updated).
    pub(super) subtree_changed: bool,
    /// The forecast behind the sample.
    pub(super) forecast: Forecast,
    /// The warning level changed.
    pub(super) change: Option<Change>,
    /// Runtime processes and setting risks found for the first time.
    pub(super) findings: Findings,
}

/// A watched cgroup.
#[derive(Debug)]
pub(super) struct Watched {
    /// The cgroup.
    pub(super) cgroup: MemoryCgroup,
    /// Who it belongs to.
    pub(super) identity: Identity,
    /// Its place in the kernel's maps.
    pub(super) slot: KernelSlot,
    /// The limit that applies, and whose it is, at the last look.
    pub(super) limit: AppliedLimit,
    /// The forecast and warning level.
    pub(super) outlook: Outlook,
    /// Distributions for the summary.
    pub(super) distributions: Distributions,
    /// OOM kills reported (kernel programs or kernel log) since the watch started, for a
    /// cgroup that is not a pod's container (those count in their lineage).
    pub(super) kills_reported: u64,
    /// When the watch of this cgroup started (Unix seconds).
    pub(super) started: f64,
    /// Reported gone; it leaves the list at the next round.
    pub(super) gone: bool,
    /// The node's memory: the limit when no cgroup has one.
    node_memory: Option<u64>,
    /// The kernel's counters in the cgroup files at the start of the watch.
    baseline: Option<Baseline>,
    /// What the previous sample left.
    previous: Previous,
    /// Its files, held open between samples.
    handles: SnapshotHandles,
    /// The last full reading of its files.
    last_read: Option<MemorySnapshot>,
    /// Quiet rounds since that reading (see [`QUIET_REFRESH_ROUNDS`]).
    quiet_rounds: u32,
    /// The last look at the node did not find it where it was: read it in full next.
    pub(super) suspect: bool,
    /// Samples since its subtree was last listed.
    subtree_age: u32,
    /// Its pod container's key, when it is one (kept with the identity: looked up for every
    /// sample).
    pub(super) lineage: Option<LineageKey>,
    /// Its runtime processes and their heap ceilings.
    runtimes: ContainerRuntimes,
    /// What it could swap at the last sample.
    pub(super) last_swap: Option<crate::forecast::Swap>,
    /// Its charge stacks waiting for their line, and whether the kernel samples it.
    pub(super) stacks: super::stacks::ContainerStacks,
    /// Its processes' memory and growth.
    pub(super) processes: ProcessGrowth,
    /// The last `processes` line written, and when.
    pub(super) processes_line: Option<(f64, ProcessesView)>,
}

impl Watched {
    /// Starts watching `cgroup` in kernel slot `slot`.
    pub(super) fn new(
        cgroup: MemoryCgroup,
        slot: u32,
        identity: Identity,
        node_memory: Option<u64>,
        limits: &mut LimitCache,
    ) -> Self {
        let limit = applied_limit(&cgroup, node_memory, limits).unwrap_or(AppliedLimit {
            bytes: None,
            source: LimitSource::Cgroup,
        });
        let baseline = cgroup
            .read_snapshot()
            .ok()
            .map(|s| Baseline::from_snapshot(&s));
        let cgroup_version = cgroup.version();
        Self {
            slot: KernelSlot::new(slot, &cgroup),
            cgroup,
            limit,
            outlook: Outlook::new(),
            distributions: Distributions::default(),
            kills_reported: 0,
            started: unix_now(),
            gone: false,
            node_memory,
            baseline,
            previous: Previous {
                at: Instant::now(),
                stall_us: None,
                failcnt: None,
            },
            handles: SnapshotHandles::new(cgroup_version),
            last_read: None,
            quiet_rounds: 0,
            subtree_age: 0,
            suspect: false,
            lineage: lineage_key(&identity),
            identity,
            runtimes: ContainerRuntimes::new(node_memory),
            last_swap: None,
            stacks: super::stacks::ContainerStacks::default(),
            processes: ProcessGrowth::new(super::processes::GROWTH_WINDOW_S),
            processes_line: None,
        }
    }

    /// Who it belongs to changed (a log link made after the cgroup, say).
    pub(super) fn set_identity(&mut self, identity: Identity) {
        self.lineage = lineage_key(&identity);
        self.identity = identity;
    }

    /// Puts the cgroup in the kernel's filter and gives it a burst budget.
    pub(super) fn attach(&mut self, maps: &mut KernelMaps, page_size: u64) -> Result<(), MapError> {
        self.slot.attach(&self.cgroup, maps)?;
        let usage = self
            .cgroup
            .read_snapshot()
            .map(|s| s.usage_bytes)
            .unwrap_or(0);
        self.slot.arm(maps, usage, self.limit.bytes, page_size)
    }

    /// The last reading, when this round may reuse it: the kernel programs saw no charge-path
    /// event and no reclaim since the last sample, the refresh is not due, the last look at
    /// the node found the cgroup where it was, and with `confirm` the usage (one small read,
    /// which also notices a removed cgroup) is what that reading said.
    fn quiet(
        &mut self,
        counters: Option<&(SlotCounters, SlotCounters)>,
        mode: ChargeMode,
        charge_traced: bool,
        confirm: bool,
    ) -> Result<Option<MemorySnapshot>, CgroupError> {
        let (Some((now, before)), Some(last)) = (counters, &self.last_read) else {
            return Ok(None);
        };
        // With the charge path detached (adaptive tracing), the counters see reclaim but no
        // charge: the usage, one small read, must then say that nothing changed.
        let confirm = confirm || !charge_traced;
        let quiet_counters = if charge_traced {
            nothing_charged(now, before)
        } else {
            now.reclaim_count == before.reclaim_count
        };
        let still = mode != ChargeMode::Polling
            && !self.suspect
            && quiet_counters
            && self.quiet_rounds + 1 < QUIET_REFRESH_ROUNDS;
        if !still
            || (confirm && self.cgroup.read_usage_held(&mut self.handles)? != last.usage_bytes)
        {
            return Ok(None);
        }
        self.quiet_rounds += 1;
        Ok(Some(last.clone()))
    }

    /// Reads the files and counters, forecasts, and builds the sample; re-arms the burst
    /// budget. `history` is the kills and restarts to report (the lineage's, for a pod's
    /// container).
    pub(super) fn sample(
        &mut self,
        round: &mut Round<'_>,
        history: (u64, u64),
    ) -> Result<SampleOutcome, SampleError> {
        let counters = match round.maps.as_deref_mut() {
            // Maps exist whenever any program attached (the OOM or reclaim hooks, say), but
            // without a charge-path hook the counters stay at zero: a rate of 0 would be a
            // lie, so polling reports none.
            Some(_) if round.mode == ChargeMode::Polling => None,
            Some(maps) => Some(self.slot.counters(maps)?),
            None => None,
        };
        // A cgroup removed (or removed and made again under its name) fails in these reads
        // with `Gone`: its held files belong to the removed one.
        let quiet = self.quiet(
            counters.as_ref(),
            round.mode,
            round.charge_traced,
            round.confirm_quiet,
        )?;
        self.subtree_age = self.subtree_age.saturating_add(1);
        let was_quiet = quiet.is_some();
        let (snapshot, subtree_changed) = match quiet {
            Some(last) => (last, false),
            None => {
                let snapshot = self.cgroup.read_snapshot_held(&mut self.handles)?;
                self.limit = applied_limit_given(
                    &self.cgroup,
                    snapshot.limit_bytes,
                    self.node_memory,
                    round.limits,
                )?;
                // Child cgroups made inside a container (rare: nested runtimes, systemd in a
                // container) join its kernel filter within QUIET_REFRESH_ROUNDS; its usage
                // counts them at once, being hierarchical. A busy container is read in full
                // every round, and listing its directory every round was a tenth of a
                // watch's time with an OOM kill in progress.
                let changed = if self.last_read.is_none()
                    || self.suspect
                    || self.subtree_age >= QUIET_REFRESH_ROUNDS
                {
                    self.subtree_age = 0;
                    self.slot
                        .refresh_subtree(&self.cgroup, round.maps.as_deref_mut())?
                } else {
                    false
                };
                // Refreshes spread over the rounds by slot: cgroups that joined together do
                // not all read in full on the same round.
                self.quiet_rounds = match self.last_read {
                    None => self.slot.index() % QUIET_REFRESH_ROUNDS,
                    Some(_) => 0,
                };
                self.last_read = Some(snapshot.clone());
                self.suspect = false;
                (snapshot, changed)
            }
        };
        let baseline = *self
            .baseline
            .get_or_insert_with(|| Baseline::from_snapshot(&snapshot));
        // A new process charges memory: a quiet round has none to find.
        let findings = if was_quiet {
            Findings::default()
        } else {
            self.look_at_runtimes()
        };
        let reach = assess::reach(
            super::sample::unreclaimable_bytes(&snapshot),
            self.runtimes.processes(),
        );
        let now = Instant::now();
        let elapsed = now - self.previous.at;
        let inputs = SampleInputs {
            snapshot: &snapshot,
            limit_bytes: self.limit.bytes,
            limit_source: self.limit.source,
            baseline,
            counters,
            elapsed,
            kills_reported: history.0,
            restarts: history.1,
            page_size: round.page_size,
            mode: round.mode,
            charge_traced: round.charge_traced,
            reach,
            node_swap_free: round.node_swap_free,
        };
        let seen = observation(
            &inputs,
            unix_now(),
            self.previous.stall_us,
            self.previous.failcnt,
        );
        self.last_swap = seen.swap;
        let (forecast, change) = self.outlook.observe(seen, round.thresholds);
        let sample = build_sample(
            inputs,
            Prediction {
                forecast: &forecast,
                risk: self.outlook.level(),
            },
        );
        // A quiet round charged nothing: the burst budget is as it was armed.
        if let (Some(maps), false) = (round.maps.as_deref_mut(), was_quiet) {
            self.slot.arm(
                maps,
                snapshot.usage_bytes,
                self.limit.bytes,
                round.page_size,
            )?;
        }
        self.slot.rearm_burst();
        let secs = elapsed.as_secs_f64();
        self.distributions.record(SampleFigures {
            usage: sample.usage_bytes,
            working_set: sample.working_set_bytes,
            unreclaimable: sample.unreclaimable_bytes,
            charge_rate: sample.charge_rate_bytes_per_s,
            reclaim_stall_us_per_s: seen
                .reclaim_stall_us
                .filter(|_| secs > 0.0)
                .map(|us| us as f64 / secs),
        });
        self.previous = Previous {
            at: now,
            stall_us: sample.reclaim_stall_us,
            failcnt: sample.failcnt,
        };
        Ok(SampleOutcome {
            sample,
            subtree_changed,
            forecast,
            change,
            findings,
        })
    }

    /// Its runtime processes.
    pub(super) fn runtimes(&self) -> &ContainerRuntimes {
        &self.runtimes
    }

    /// Looks for runtime processes not seen before and reads the runtimes' memory when due.
    /// A runtime sizes its default heap from the limit of its container (the node's memory
    /// when it has none).
    fn look_at_runtimes(&mut self) -> Findings {
        let limited = self.limit.source != LimitSource::Node;
        let Some(memory) = self.limit.bytes.or(self.node_memory) else {
            return Findings::default();
        };
        self.runtimes
            .refresh(self.cgroup.path(), unix_now(), memory, limited)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cgroup_is_quiet_only_when_no_counter_moved() {
        let before = SlotCounters {
            events: 10,
            reclaim_count: 2,
            major_faults: 1,
            charged_pages: 40,
            ..SlotCounters::default()
        };
        assert!(nothing_charged(&before, &before));
        for moved in [
            SlotCounters {
                events: 11,
                ..before
            },
            SlotCounters {
                reclaim_count: 3,
                ..before
            },
            SlotCounters {
                major_faults: 2,
                ..before
            },
        ] {
            assert!(!nothing_charged(&moved, &before), "{moved:?}");
        }
    }
}
