//! The collector's state between events, and its rounds: the watched cgroups joining, sampled
//! and leaving, with what each pod container went through. Kernel events are attributed in
//! `attribution`.
use std::{
    collections::{HashMap, HashSet},
    path::{Path, PathBuf},
};

use profiler_common::MAX_SLOTS;

use super::{
    arming::{Arming, Pressure, Switch},
    deaths::DeathLog,
    on_warning, page_size,
    targets::{lineage_key, LineageKey, Lineages, Slots, Targets},
    unix_now,
    watched::{Round, SampleError, Watched, QUIET_REFRESH_ROUNDS},
    CollectError,
};
use crate::{
    cgroup::{LimitCache, MemoryCgroup},
    errors,
    forecast::risk::Thresholds,
    mode::{ChargeMode, OomSource},
    node::NodeWatch,
    output::Sink,
    pods::{
        limit::node_memory, Discovery, Identity, LogTree, NodeChanges, NodeRoots, RuntimeNames,
        Selection,
    },
    probe::{report::Decision, KernelMaps},
    record::{
        HeapCeilingRecord, LostEvents, Record, RecordBody, SummaryRecord, Warning, WatchStart,
    },
};

/// How often state left by gone containers is pruned, seconds.
const PRUNE_EVERY_S: f64 = 60.0;
/// How long a pod container's kills and restarts are remembered after its last container
/// went: longer than the kubelet's longest restart back-off (5 minutes).
const LINEAGE_KEEP_S: f64 = 600.0;

/// The collector between events: what it watches, the kernel maps, and where records go.
pub(super) struct Collector<'s> {
    /// Every watched cgroup, those reported gone in the last round included.
    pub(super) watched: Vec<Watched>,
    /// Where records go.
    sink: &'s mut dyn Sink,
    /// The kernel programs' maps (`None` in polling mode without programs).
    pub(super) maps: Option<KernelMaps>,
    /// How the charge path is observed.
    mode: ChargeMode,
    /// The machine's page size.
    pub(super) page_size: u64,
    /// Ring buffer records lost, as reported so far.
    lost_reported: u64,
    /// What to watch.
    targets: Targets,
    /// Where fixed cgroups' owners are looked up (discovered ones carry theirs), and senders'.
    pub(super) roots: NodeRoots,
    /// The free kernel slots.
    slots: Slots,
    /// What each pod container went through, across restarts.
    pub(super) lineages: Lineages,
    /// The node's memory: the limit where no cgroup has one.
    node_memory: Option<u64>,
    /// Cgroups the slots ran out for, each warned about once.
    refused: HashSet<PathBuf>,
    /// Whether anything was watched yet.
    ever_watched: bool,
    /// Ancestors' limits, read once per round.
    limits: LimitCache,
    /// ETA thresholds of the warning levels.
    thresholds: Thresholds,
    /// `--on-warning`.
    on_warning: Option<String>,
    /// Where OOM kills are learned from.
    pub(super) oom_source: OomSource,
    /// What is remembered to tell deaths.
    pub(super) deaths: DeathLog,
    /// The node's memory, forecast and next victims (a `node` line every round).
    pub(super) node: Option<NodeWatch>,
    /// Whether the node changed since the last look (discovered targets).
    changes: NodeChanges,
    /// Whether the selection existed at the last look.
    selection_exists: bool,
    /// When state of gone containers was last pruned (Unix seconds).
    last_prune: f64,
    /// Rounds so far.
    rounds: u32,
    /// Whether the charge path's programs are attached now.
    pub(super) charge_traced: bool,
    /// `--adaptive`: decides when the charge path is needed.
    pub(super) arming: Option<Arming>,
    /// What the last round decided about the charge path, for the event loop to do.
    pub(super) switch: Option<Switch>,
    /// Charge stacks: on for which containers, and their naming (`None`: off).
    pub(super) stack_work: Option<super::stacks::StackWork>,
}

impl<'s> Collector<'s> {
    /// A collector that watches `targets`, writing to `sink`; nothing is watched before
    /// [`start`](Self::start).
    pub(super) fn new(
        sink: &'s mut dyn Sink,
        maps: Option<KernelMaps>,
        decision: &Decision,
        targets: Targets,
        roots: NodeRoots,
        thresholds: Thresholds,
        on_warning: Option<String>,
    ) -> Self {
        let slot_count = maps.as_ref().map_or(MAX_SLOTS, KernelMaps::slots);
        Self {
            watched: Vec::new(),
            sink,
            maps,
            mode: decision.mode,
            page_size: page_size(),
            lost_reported: 0,
            targets,
            roots,
            slots: Slots::new(slot_count),
            lineages: Lineages::default(),
            node_memory: node_memory(),
            refused: HashSet::new(),
            ever_watched: false,
            limits: LimitCache::default(),
            thresholds,
            on_warning,
            oom_source: decision.oom_source,
            deaths: DeathLog::default(),
            node: None,
            changes: NodeChanges::new(),
            selection_exists: true,
            last_prune: unix_now(),
            rounds: 0,
            charge_traced: decision.mode != ChargeMode::Polling,
            arming: None,
            switch: None,
            stack_work: None,
        }
    }

    /// A node-wide record.
    pub(super) fn emit_node(&mut self, body: RecordBody) -> Result<(), CollectError> {
        let record = Record {
            ts: unix_now(),
            cgroup: None,
            identity: None,
            body,
        };
        self.sink.emit(&record).map_err(CollectError::Output)
    }

    /// A record about watched cgroup `index`.
    pub(super) fn emit_about(
        &mut self,
        ts: f64,
        index: usize,
        body: RecordBody,
    ) -> Result<(), CollectError> {
        let w = &self.watched[index];
        let record = Record {
            ts,
            cgroup: Some(w.cgroup.path().to_path_buf()),
            identity: Some(w.identity.clone()),
            body,
        };
        self.sink.emit(&record).map_err(CollectError::Output)
    }

    pub(super) fn flush(&mut self) -> Result<(), CollectError> {
        self.sink.flush().map_err(CollectError::Output)
    }

    /// Watches the first cgroups: the fixed ones, or the containers found now.
    pub(super) fn start(&mut self) -> Result<(), CollectError> {
        match &mut self.targets {
            Targets::Fixed(cgroups) => {
                let logs = LogTree::read(&self.roots.pod_logs, &self.roots.container_logs);
                let names = RuntimeNames::read(&self.roots.runtime_state);
                let cgroups = std::mem::take(cgroups);
                for cgroup in cgroups {
                    let identity = Identity::of(cgroup.path(), &logs, &names);
                    self.add(cgroup, identity)?;
                }
            }
            Targets::Discovered(_) => {
                self.discover()?;
            }
        }
        if let Some(maps) = self.maps.as_mut() {
            maps.bump_generation()?;
        }
        self.flush()
    }

    /// Puts a cgroup under watch: a slot, the kernel filter, a `watch_start` line.
    fn add(&mut self, cgroup: MemoryCgroup, identity: Identity) -> Result<(), CollectError> {
        let Some(slot) = self.slots.take() else {
            if self.refused.insert(cgroup.path().to_path_buf()) {
                log::warn!(
                    "not watching {}: at most {} cgroups can be watched at once (raise it \
                     with --max-cgroups)",
                    cgroup.path().display(),
                    self.maps.as_ref().map_or(MAX_SLOTS, KernelMaps::slots)
                );
            }
            return Ok(());
        };
        self.deaths.slot_reset(slot);
        if let Some(key) = lineage_key(&identity) {
            if self.lineages.join(&key, identity.container_id.as_deref()) {
                log::info!(
                    "{}/{}/{} restarted as container {}",
                    key.0,
                    key.1,
                    key.2,
                    identity.container_id.as_deref().unwrap_or("?")
                );
            }
        }
        let mut w = Watched::new(cgroup, slot, identity, self.node_memory, &mut self.limits);
        if let Some(maps) = self.maps.as_mut() {
            w.attach(maps, self.page_size)?;
        }
        let start = WatchStart {
            cgroup_id: w.cgroup.id(),
            cgroup_version: w.cgroup.version(),
            limit_bytes: w.limit.bytes,
            limit_source: w.limit.source,
            mode: self.mode,
        };
        self.watched.push(w);
        self.ever_watched = true;
        // Stacks sampled from the start (`--stacks`), not from the first round on.
        self.steer_stacks(self.watched.len() - 1, unix_now())?;
        self.emit_about(
            unix_now(),
            self.watched.len() - 1,
            RecordBody::WatchStart(start),
        )
    }

    /// Looks at the node again (discovered targets only): matching containers not yet
    /// watched join, and owners named since (a log link made after the cgroup) are updated.
    /// Returns whether anything joined, and whether the selection still exists.
    pub(super) fn discover(&mut self) -> Result<(bool, bool), CollectError> {
        let Targets::Discovered(discovery) = &self.targets else {
            return Ok((false, true));
        };
        let looked_at = std::time::Instant::now();
        // A quiet node is not walked again: only when a directory the last look listed
        // changed, a watched cgroup went, or a full look is due.
        if !self.changes.due(looked_at) {
            return Ok((false, self.selection_exists));
        }
        let changes = &mut self.changes;
        let inventory = discovery.scan_with(&mut |dir| changes.watch(dir));
        // Each pod's log directory: watched after it was listed, so a container's directory
        // made in between is seen by the next look only; the kubelet then makes its log link
        // in the container log directory, watched before it was listed, which is a change.
        self.changes.looked(&inventory.logs.pod_dirs, looked_at);
        log::debug!(
            "looked at the node in {:.2} ms: {} containers",
            looked_at.elapsed().as_secs_f64() * 1e3,
            inventory.containers.len()
        );
        let exists = discovery.selection.still_exists(&inventory);
        self.selection_exists = exists;
        // A watched container this look did not find, or found under another inode (removed
        // and made again under its name), is read in full at its next sample, which tells
        // whether it is gone: quiet rounds do not read its files.
        let listed: HashMap<&Path, u64> = inventory
            .containers
            .iter()
            .map(|c| (c.path.as_path(), c.inode))
            .collect();
        for w in self.watched.iter_mut().filter(|w| !w.gone) {
            if listed.get(w.cgroup.path()) != Some(&w.cgroup.id()) {
                w.suspect = true;
            }
        }
        let found: Vec<(PathBuf, Identity)> = discovery
            .matching(&inventory)
            .map(|c| (c.path.clone(), c.identity.clone()))
            .collect();
        let mut joined = false;
        // By path, once per round: a search of the list for each container found was
        // quadratic in the node's containers (500 found × 500 watched, every second).
        let live: HashMap<PathBuf, usize> = self
            .watched
            .iter()
            .enumerate()
            .filter(|(_, w)| !w.gone)
            .map(|(i, w)| (w.cgroup.path().to_path_buf(), i))
            .collect();
        for (path, identity) in found {
            // A cgroup removed and made again under the same name (`docker restart` keeps the
            // id) is a new cgroup: the old one's held files fail with `Gone` at its next
            // sample, it retires, and the new one joins at the round after.
            let known = live.get(&path).copied();
            match known {
                Some(i) if self.watched[i].identity != identity => {
                    if let Some(key) = lineage_key(&identity) {
                        self.lineages.join(&key, identity.container_id.as_deref());
                    }
                    self.watched[i].set_identity(identity);
                }
                Some(_) => {}
                // Refused already, and still no slot: not opened again every round.
                None if self.slots.all_taken() && self.refused.contains(&path) => {}
                None => match MemoryCgroup::open(&path) {
                    Ok(cgroup) => {
                        self.add(cgroup, identity)?;
                        joined = true;
                    }
                    // Gone again already, or not a memory cgroup (e.g. v2 without memory
                    // enabled below its parent): nothing to watch there.
                    Err(e) => log::debug!("not watching {}: {}", path.display(), errors::chain(&e)),
                },
            }
        }
        Ok((joined, exists))
    }

    /// One round: new containers join, every watched cgroup is sampled. Returns false when
    /// nothing is left to watch.
    pub(super) fn tick(&mut self) -> Result<bool, CollectError> {
        let round_started = std::time::Instant::now();
        // Ancestors' limits (pod, QoS parent, kubepods) are read afresh every 10th round, each
        // once: a container's own limit is in every full reading, and a pod's changes seldom
        // (an in-place resize shows within 10 rounds).
        self.rounds = self.rounds.wrapping_add(1);
        if self.rounds.is_multiple_of(QUIET_REFRESH_ROUNDS) {
            self.limits.clear();
        }
        // Cgroups reported gone at the previous round leave now: a kill that raced with the
        // removal had one round to be attributed.
        let mut i = 0;
        while i < self.watched.len() {
            if self.watched[i].gone {
                let w = self.watched.swap_remove(i);
                self.slots.give_back(w.slot.index());
            } else {
                i += 1;
            }
        }
        // Containers that join now are sampled from the next round on, a whole interval after
        // their counters were reset.
        let before = self.watched.len();
        let (mut changed, exists) = self.discover()?;
        let mut pressures: Vec<Pressure> = Vec::new();
        let mut node_eta = None;
        let node_swap_free = crate::node::memory::NodeMemory::read().map_or(0, |m| m.swap_free);
        for i in 0..before {
            let history = self.history(i);
            let mut round = Round {
                maps: self.maps.as_mut(),
                mode: self.mode,
                page_size: self.page_size,
                limits: &mut self.limits,
                thresholds: &self.thresholds,
                charge_traced: self.charge_traced,
                // Fixed cgroups are not looked for by a walk of the node, which would notice
                // their removal: a quiet round reads their usage instead.
                confirm_quiet: matches!(self.targets, Targets::Fixed(_)),
                node_swap_free,
            };
            let outcome = self.watched[i].sample(&mut round, history);
            match outcome {
                Ok(out) => {
                    changed |= out.subtree_changed;
                    let unreclaimable = out.sample.unreclaimable_bytes;
                    let usage = out.sample.usage_bytes;
                    let limit = out.sample.limit_bytes;
                    if self.arming.is_some() {
                        pressures.push(Pressure {
                            key: self.watched[i].slot.index(),
                            unreclaimable,
                            limit,
                            eta_s: out.sample.eta_seconds,
                            psi_some: out.sample.psi_some_avg10,
                        });
                    }
                    for (pid, comm, ceiling) in out.findings.new_ceilings {
                        let record = HeapCeilingRecord { pid, comm, ceiling };
                        self.emit_about(unix_now(), i, RecordBody::HeapCeiling(record))?;
                    }
                    for risk in out.findings.new_risks {
                        self.emit_about(unix_now(), i, RecordBody::ConfigRisk(risk))?;
                    }
                    self.emit_about(unix_now(), i, RecordBody::Sample(out.sample))?;
                    self.check_last_exit(i, false)?;
                    let risk_rose = out.change.as_ref().is_some_and(|c| c.to > c.from);
                    self.follow_processes(i, unix_now(), risk_rose)?;
                    self.steer_stacks(i, unix_now())?;
                    if let Some(change) = out.change {
                        let warning = Warning {
                            level: change.to.into(),
                            previous: change.from,
                            eta_seconds: out.forecast.eta_s,
                            eta_low_seconds: out.forecast.low_s,
                            eta_high_seconds: out.forecast.high_s,
                            reason: out.forecast.reason,
                            unreclaimable_bytes: unreclaimable,
                            usage_bytes: usage,
                            limit_bytes: limit,
                        };
                        self.emit_warning(i, warning)?;
                    }
                }
                Err(SampleError::Gone) => {
                    changed = true;
                    self.retire(i)?;
                }
                Err(SampleError::Kernel(e)) => return Err(e.into()),
                Err(SampleError::Read(e)) => {
                    log::warn!(
                        "{}: {}",
                        self.watched[i].cgroup.path().display(),
                        errors::chain(&e)
                    );
                }
            }
        }
        if let Some(maps) = self.maps.as_mut() {
            if changed {
                maps.bump_generation()?;
            }
            let lost = maps.lost_events()?;
            if lost > self.lost_reported {
                let count = lost - self.lost_reported;
                self.lost_reported = lost;
                self.emit_node(RecordBody::LostEvents(LostEvents {
                    count,
                    source: "ring_buffer",
                }))?;
            }
        }
        self.flush_stacks(unix_now())?;
        self.prune(unix_now());
        if let Some(node) = self.node.as_mut() {
            let watched = &self.watched;
            // The next victims' containers, from those watched where they are.
            let known = |path: &Path| {
                watched
                    .iter()
                    .find(|w| !w.gone && w.cgroup.path() == path)
                    .map(|w| w.identity.clone())
            };
            if let Some(record) = node.observe(unix_now(), &self.roots, &known) {
                node_eta = record.eta_eviction_seconds;
                self.emit_node(RecordBody::Node(record))?;
            }
        }
        if let Some(arming) = self.arming.as_mut() {
            let watched = &self.watched;
            let name = |slot: u32| {
                watched.iter().find(|w| w.slot.index() == slot).map_or_else(
                    || format!("slot {slot}"),
                    |w| describe(&w.identity, w.cgroup.path()),
                )
            };
            self.switch = arming.observe(unix_now(), &pressures, node_eta, &name);
        }
        self.flush()?;
        self.sink.round_done(round_started.elapsed());
        let any_live = self.watched.iter().any(|w| !w.gone);
        Ok(match self.targets {
            Targets::Fixed(_) => any_live,
            // A pod with no container running (between restarts, or not started yet) is
            // still watched while it exists; a container named by id until it has come and
            // gone.
            Targets::Discovered(Discovery {
                selection: Selection::ContainerId(_),
                ..
            }) => any_live || !self.ever_watched,
            Targets::Discovered(_) => any_live || exists,
        })
    }

    /// Forgets, once a minute, what gone containers left behind: lineages no container was
    /// watched in for [`LINEAGE_KEEP_S`], and refused cgroups that are gone.
    fn prune(&mut self, now: f64) {
        if now - self.last_prune < PRUNE_EVERY_S {
            return;
        }
        self.last_prune = now;
        let live: HashSet<LineageKey> = self
            .watched
            .iter()
            .filter(|w| !w.gone)
            .filter_map(|w| w.lineage.clone())
            .collect();
        self.lineages.prune(&live, now, LINEAGE_KEEP_S);
        self.refused.retain(|path| path.exists());
    }

    /// Watched cgroup `index` is gone: out of the kernel's filter, a `cgroup_gone` line and
    /// its summary. It leaves the list (and frees its slot) at the next round.
    fn retire(&mut self, index: usize) -> Result<(), CollectError> {
        // Its last process's exit comes before the news that it is gone.
        self.check_last_exit(index, true)?;
        if let Some(maps) = self.maps.as_mut() {
            self.watched[index].slot.detach(maps)?;
        }
        self.watched[index].gone = true;
        // One made again under its name joins at the next look.
        self.changes.force();
        self.emit_about(unix_now(), index, RecordBody::CgroupGone)?;
        self.emit_summary(index)
    }

    /// A `warning` line, and the `--on-warning` command.
    fn emit_warning(&mut self, index: usize, warning: Warning) -> Result<(), CollectError> {
        let w = &self.watched[index];
        let record = Record {
            ts: unix_now(),
            cgroup: Some(w.cgroup.path().to_path_buf()),
            identity: Some(w.identity.clone()),
            body: RecordBody::Warning(warning),
        };
        self.sink.emit(&record).map_err(CollectError::Output)?;
        if let Some(command) = &self.on_warning {
            on_warning::run(command, &record);
        }
        Ok(())
    }

    /// The `summary` line of watched cgroup `index`.
    fn emit_summary(&mut self, index: usize) -> Result<(), CollectError> {
        let (kills, _) = self.history(index);
        let w = &self.watched[index];
        let body = RecordBody::Summary(SummaryRecord {
            duration_s: (unix_now() - w.started).max(0.0),
            summary: w.distributions.summary(),
            oom_kills: kills,
            warnings: w.outlook.warnings_raised(),
            worst_risk: w.outlook.worst(),
        });
        self.emit_about(unix_now(), index, body)
    }

    /// Summaries of every cgroup still watched (at the end of the watch).
    pub(super) fn emit_summaries(&mut self) -> Result<(), CollectError> {
        for i in 0..self.watched.len() {
            if !self.watched[i].gone {
                self.emit_summary(i)?;
            }
        }
        Ok(())
    }

    /// `(kills, restarts)` to report for watched cgroup `index`.
    fn history(&self, index: usize) -> (u64, u64) {
        let w = &self.watched[index];
        match &w.lineage {
            Some(key) => self.lineages.history(key),
            None => (w.kills_reported, 0),
        }
    }
}

/// `namespace/pod/container`, the container's name or id, or the cgroup's path.
fn describe(identity: &Identity, path: &Path) -> String {
    match (&identity.namespace, &identity.pod, &identity.container) {
        (Some(ns), Some(pod), Some(c)) => format!("{ns}/{pod}/{c}"),
        (_, _, Some(c)) => c.clone(),
        _ => identity
            .container_id
            .clone()
            .unwrap_or_else(|| path.display().to_string()),
    }
}
