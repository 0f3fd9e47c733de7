//! The collector's state between events: the watched cgroups, their kernel slots, and what
//! each pod container went through.
use std::{
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

use profiler_common::KernelEvent;

use super::{
    boot_ns_to_unix,
    targets::{lineage_key, Lineages, Slots, Targets},
    unix_now,
    watched::{self, Watched},
    CollectError,
};
use crate::{
    cgroup::{LimitCache, MemoryCgroup},
    forecast::risk::Thresholds,
    kmsg::KmsgOomKill,
    mode::ChargeMode,
    output::Sink,
    pods::{Discovery, Identity, LogTree, NodeRoots, RuntimeNames, Selection},
    probe::KernelMaps,
    record::{
        Burst, KillSource, LostEvents, OomKill, Record, RecordBody, SummaryRecord, Warning,
        WatchStart,
    },
};

pub(super) struct Collector<'s> {
    pub watched: Vec<Watched>,
    pub sink: &'s mut dyn Sink,
    pub maps: Option<KernelMaps>,
    pub mode: ChargeMode,
    pub page_size: u64,
    pub lost_reported: u64,
    pub targets: Targets,
    /// Where fixed cgroups' owners are looked up (discovered ones carry theirs).
    pub roots: NodeRoots,
    pub slots: Slots,
    pub lineages: Lineages,
    pub node_memory: Option<u64>,
    /// Cgroups the slots ran out for, each warned about once.
    pub refused: Vec<PathBuf>,
    /// Whether anything was watched yet.
    pub ever_watched: bool,
    /// Ancestors' limits, read once per round.
    pub limits: LimitCache,
    /// ETA thresholds of the warning levels.
    pub thresholds: Thresholds,
    /// `--on-warning`.
    pub on_warning: Option<String>,
}

impl Collector<'_> {
    /// A node-wide record.
    pub fn emit_node(&mut self, body: RecordBody) -> Result<(), CollectError> {
        let record = Record {
            ts: unix_now(),
            cgroup: None,
            identity: None,
            body,
        };
        self.sink.emit(&record).map_err(CollectError::Output)
    }

    /// A record about watched cgroup `index`.
    fn emit_about(&mut self, ts: f64, index: usize, body: RecordBody) -> Result<(), CollectError> {
        let w = &self.watched[index];
        let record = Record {
            ts,
            cgroup: Some(w.path()),
            identity: Some(w.identity.clone()),
            body,
        };
        self.sink.emit(&record).map_err(CollectError::Output)
    }

    pub fn flush(&mut self) -> Result<(), CollectError> {
        self.sink.flush().map_err(CollectError::Output)
    }

    /// Watches the first cgroups: the fixed ones, or the containers found now.
    pub fn start(&mut self) -> Result<(), CollectError> {
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
            if !self.refused.contains(&cgroup.path().to_path_buf()) {
                log::warn!(
                    "not watching {}: at most {} cgroups can be watched at once",
                    cgroup.path().display(),
                    profiler_common::MAX_SLOTS
                );
                self.refused.push(cgroup.path().to_path_buf());
            }
            return Ok(());
        };
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
            w.attach(maps)?;
            w.arm(maps, self.page_size)?;
        }
        let start = WatchStart {
            cgroup_id: w.cgroup.id(),
            cgroup_version: w.cgroup.version(),
            limit_bytes: w.limit,
            limit_source: w.limit_source,
            mode: self.mode,
        };
        self.watched.push(w);
        self.ever_watched = true;
        self.emit_about(
            unix_now(),
            self.watched.len() - 1,
            RecordBody::WatchStart(start),
        )
    }

    /// Looks at the node again (discovered targets only): matching containers not yet
    /// watched join, and owners named since (a log link made after the cgroup) are updated.
    /// Returns whether anything joined, and whether the selection still exists.
    pub fn discover(&mut self) -> Result<(bool, bool), CollectError> {
        let Targets::Discovered(discovery) = &self.targets else {
            return Ok((false, true));
        };
        let looked_at = std::time::Instant::now();
        let inventory = discovery.scan();
        log::debug!(
            "looked at the node in {:.2} ms: {} containers",
            looked_at.elapsed().as_secs_f64() * 1e3,
            inventory.containers.len()
        );
        let exists = discovery.selection.still_exists(&inventory);
        let found: Vec<(PathBuf, Identity)> = discovery
            .matching(&inventory)
            .map(|c| (c.path.clone(), c.identity.clone()))
            .collect();
        let mut joined = false;
        for (path, identity) in found {
            let mut known = self
                .watched
                .iter()
                .position(|w| !w.gone && w.cgroup.path() == path);
            if let Some(i) = known {
                // Removed and made again under the same name (`docker restart` keeps the id):
                // a new cgroup, with a new id for the kernel's filter.
                let inode = std::fs::metadata(&path).map(|m| m.ino()).ok();
                if inode.is_some_and(|ino| ino != self.watched[i].cgroup.id()) {
                    self.retire(i)?;
                    known = None;
                }
            }
            match known {
                Some(i) if self.watched[i].identity != identity => {
                    if let Some(key) = lineage_key(&identity) {
                        self.lineages.join(&key, identity.container_id.as_deref());
                    }
                    self.watched[i].identity = identity;
                }
                Some(_) => {}
                None => match MemoryCgroup::open(&path) {
                    Ok(cgroup) => {
                        self.add(cgroup, identity)?;
                        joined = true;
                    }
                    // Gone again already, or not a memory cgroup (e.g. v2 without memory
                    // enabled below its parent): nothing to watch there.
                    Err(e) => log::debug!("not watching {}: {e}", path.display()),
                },
            }
        }
        Ok((joined, exists))
    }

    /// One round: new containers join, every watched cgroup is sampled. Returns false when
    /// nothing is left to watch.
    pub fn tick(&mut self) -> Result<bool, CollectError> {
        // Limits are read afresh every round, each ancestor's once.
        self.limits.clear();
        // Cgroups reported gone at the previous round leave now: a kill that raced with the
        // removal had one round to be attributed.
        let mut i = 0;
        while i < self.watched.len() {
            if self.watched[i].gone {
                let w = self.watched.swap_remove(i);
                self.slots.give_back(w.slot);
            } else {
                i += 1;
            }
        }
        // Containers that join now are sampled from the next round on, a whole interval after
        // their counters were reset.
        let before = self.watched.len();
        let (mut changed, exists) = self.discover()?;
        for i in 0..before {
            let history = self.history(i);
            let outcome = self.watched[i].sample(
                self.maps.as_mut(),
                self.mode,
                self.page_size,
                history,
                &mut self.limits,
                &self.thresholds,
            );
            match outcome {
                Ok(out) => {
                    changed |= out.subtree_changed;
                    let unreclaimable = out.sample.unreclaimable_bytes;
                    let usage = out.sample.usage_bytes;
                    let limit = out.sample.limit_bytes;
                    self.emit_about(unix_now(), i, RecordBody::Sample(out.sample))?;
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
                Err(watched::SampleError::Gone) => {
                    changed = true;
                    self.retire(i)?;
                }
                Err(watched::SampleError::Kernel(e)) => return Err(e.into()),
                Err(watched::SampleError::Read(e)) => {
                    log::warn!("{}: {e}", self.watched[i].path().display());
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
        self.flush()?;
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

    /// Watched cgroup `index` is gone: out of the kernel's filter, a `cgroup_gone` line and
    /// its summary. It leaves the list (and frees its slot) at the next round.
    fn retire(&mut self, index: usize) -> Result<(), CollectError> {
        if let Some(maps) = self.maps.as_mut() {
            self.watched[index].detach(maps)?;
        }
        self.watched[index].gone = true;
        self.emit_about(unix_now(), index, RecordBody::CgroupGone)?;
        self.emit_summary(index)
    }

    /// A `warning` line, and the `--on-warning` command.
    fn emit_warning(&mut self, index: usize, warning: Warning) -> Result<(), CollectError> {
        let w = &self.watched[index];
        let record = Record {
            ts: unix_now(),
            cgroup: Some(w.path()),
            identity: Some(w.identity.clone()),
            body: RecordBody::Warning(warning),
        };
        self.sink.emit(&record).map_err(CollectError::Output)?;
        if let Some(command) = &self.on_warning {
            super::hook::run_hook(command, &record);
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
            warnings: w.warnings_raised,
            worst_risk: w.worst_risk,
        });
        self.emit_about(unix_now(), index, body)
    }

    /// Summaries of every cgroup still watched (at the end of the watch).
    pub fn emit_summaries(&mut self) -> Result<(), CollectError> {
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
        match lineage_key(&w.identity) {
            Some(key) => self.lineages.history(&key),
            None => (w.kills_reported, 0),
        }
    }

    /// Counts a kill in watched cgroup `index`; its forecast starts over (what it followed
    /// is gone).
    fn count_kill(&mut self, index: usize) {
        let w = &mut self.watched[index];
        w.forecaster.reset();
        match lineage_key(&w.identity) {
            Some(key) => self.lineages.add_kill(&key),
            None => w.kills_reported += 1,
        }
    }

    pub fn on_kernel_event(&mut self, event: KernelEvent) -> Result<(), CollectError> {
        match event {
            KernelEvent::Burst(burst) => {
                let Some(index) = self
                    .watched
                    .iter()
                    .position(|w| w.slot == burst.slot && !w.gone)
                else {
                    return Ok(());
                };
                let w = &mut self.watched[index];
                if w.burst_seen {
                    return Ok(());
                }
                w.burst_seen = true;
                let usage = w.cgroup.read_snapshot().ok().map(|s| s.usage_bytes);
                let body = RecordBody::Burst(Burst {
                    budget_bytes: u64::try_from(burst.budget_pages).unwrap_or(0) * self.page_size,
                    usage_bytes: usage,
                    limit_bytes: w.limit,
                });
                self.emit_about(boot_ns_to_unix(burst.header.ktime_ns), index, body)
            }
            KernelEvent::OomVictim(v) => {
                let Some((index, victim_path)) = self.find_by_id(v.cgroup_id)? else {
                    log::debug!(
                        "OOM kill of pid {} in cgroup {} (not watched)",
                        v.tgid,
                        v.cgroup_id
                    );
                    return Ok(());
                };
                let comm_len = v.comm.iter().position(|&b| b == 0).unwrap_or(v.comm.len());
                let page = self.page_size;
                let pages = |p: i64| u64::try_from(p).ok().map(|p| p * page);
                self.count_kill(index);
                let kill = OomKill {
                    limit_bytes: limit_of(&victim_path).or(self.watched[index].limit),
                    victim_cgroup: Some(victim_path),
                    pid: v.tgid,
                    comm: String::from_utf8_lossy(&v.comm[..comm_len]).into_owned(),
                    anon_rss_bytes: pages(v.anon_rss_pages),
                    file_rss_bytes: pages(v.file_rss_pages),
                    shmem_rss_bytes: pages(v.shmem_rss_pages),
                    total_vm_bytes: Some(v.total_vm_pages * page),
                    oom_score_adj: Some(v.oom_score_adj),
                    source: KillSource::Bpf,
                };
                self.emit_about(
                    boot_ns_to_unix(v.header.ktime_ns),
                    index,
                    RecordBody::OomKill(kill),
                )
            }
            KernelEvent::Unknown { kind, len } => {
                log::warn!("unknown kernel record kind {kind} ({len} bytes) ignored");
                Ok(())
            }
        }
    }

    pub fn on_kmsg_kill(&mut self, kill: KmsgOomKill) -> Result<(), CollectError> {
        let Some(task_memcg) = kill.task_memcg.as_deref() else {
            log::debug!("kernel log kill of pid {} names no memcg", kill.pid);
            return Ok(());
        };
        let relative = task_memcg.trim_start_matches('/');
        let find = |ws: &[Watched]| {
            ws.iter()
                .enumerate()
                .find_map(|(i, w)| w.find_by_suffix(relative).map(|p| (i, p)))
        };
        let mut found = find(&self.watched);
        if found.is_none() {
            // A container that started since the last look.
            self.discover()?;
            found = find(&self.watched);
        }
        let Some((index, victim_path)) = found else {
            log::debug!(
                "kernel log kill of pid {} in {task_memcg} (not watched)",
                kill.pid
            );
            return Ok(());
        };
        self.count_kill(index);
        let body = RecordBody::OomKill(OomKill {
            limit_bytes: limit_of(&victim_path).or(self.watched[index].limit),
            victim_cgroup: Some(victim_path),
            pid: kill.pid,
            comm: kill.comm,
            anon_rss_bytes: kill.anon_rss_bytes,
            file_rss_bytes: kill.file_rss_bytes,
            shmem_rss_bytes: kill.shmem_rss_bytes,
            total_vm_bytes: kill.total_vm_bytes,
            oom_score_adj: kill.oom_score_adj,
            source: KillSource::Kmsg,
        });
        self.emit_about(unix_now(), index, body)
    }

    /// The watched cgroup whose subtree holds cgroup `id`, and that cgroup's path. Cgroups
    /// reported gone in the last round still count (a kill races with the runtime removing
    /// the container's cgroup). A cgroup created since the last sample is found by walking
    /// the subtrees, and looking for new containers, again.
    fn find_by_id(&mut self, id: u64) -> Result<Option<(usize, PathBuf)>, CollectError> {
        let lookup = |ws: &[Watched]| {
            ws.iter()
                .enumerate()
                .find_map(|(i, w)| w.subtree.get(&id).map(|p| (i, p.clone())))
        };
        if let Some(found) = lookup(&self.watched) {
            return Ok(Some(found));
        }
        let mut changed = false;
        for w in self.watched.iter_mut().filter(|w| !w.gone) {
            changed |= w.refresh_subtree(self.maps.as_mut()).unwrap_or(false);
        }
        changed |= self.discover()?.0;
        if changed {
            if let Some(maps) = self.maps.as_mut() {
                maps.bump_generation()?;
            }
        }
        Ok(lookup(&self.watched))
    }
}

fn limit_of(path: &Path) -> Option<u64> {
    MemoryCgroup::open(path)
        .ok()
        .and_then(|c| c.effective_limit().ok().flatten())
}
