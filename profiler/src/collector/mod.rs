//! The collector: joins the cgroup files (absolute values), the kernel programs' counters
//! (charge rate, reclaim) and their events (bursts, OOM victims) into records.
mod sample;
mod watched;

use std::{
    future::pending,
    io,
    path::PathBuf,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use thiserror::Error;
use tokio::{
    io::unix::AsyncFd,
    signal::unix::{signal, SignalKind},
};

pub use sample::{build_sample, burst_budget_bytes, Baseline, SampleInputs};
use watched::Watched;

use crate::{
    cgroup::MemoryCgroup,
    kmsg::{KmsgOomKill, KmsgOomWatcher},
    mode::{ChargeMode, OomSource},
    output::Sink,
    probe::{KernelEvent, KernelMaps, ProbeReport, Probes},
    record::{
        Burst, End, EndReason, KillSource, LostEvents, OomKill, Record, RecordBody, WatchStart,
    },
};

/// What to watch and how often.
#[derive(Debug)]
pub struct WatchOptions {
    /// The memory cgroups to watch (validated).
    pub cgroups: Vec<MemoryCgroup>,
    /// Time between samples.
    pub interval: Duration,
    /// Stop after this long (`None`: until a signal or every cgroup is gone).
    pub duration: Option<Duration>,
}

/// Why a watch could not go on.
#[derive(Debug, Error)]
pub enum CollectError {
    /// Writing the output failed (other than a closed pipe, which ends the watch quietly).
    #[error("writing output failed: {0}")]
    Output(#[source] io::Error),
    /// A map of the kernel programs could not be read or written.
    #[error("talking to the kernel programs failed: {0}")]
    Kernel(#[from] aya::maps::MapError),
    /// Setting up signal handling or the event loop failed.
    #[error("setting up the event loop failed: {0}")]
    Setup(#[source] io::Error),
    /// The kernel log could not be read for OOM kills.
    #[error(transparent)]
    Kmsg(#[from] crate::kmsg::KmsgError),
    /// Too many cgroups to watch.
    #[error("at most {0} cgroups can be watched at once")]
    TooMany(u32),
}

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Converts a kernel `CLOCK_BOOTTIME` timestamp (ns) into Unix seconds.
fn boot_ns_to_unix(ktime_ns: u64) -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer to a timespec.
    if unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) } != 0 {
        return unix_now();
    }
    let boot_now = ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9;
    unix_now() - (boot_now - ktime_ns as f64 / 1e9).max(0.0)
}

/// The page size of this machine.
pub fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size).ok().filter(|&s| s > 0).unwrap_or(4096)
}

struct Collector<'s> {
    watched: Vec<Watched>,
    sink: &'s mut dyn Sink,
    maps: Option<KernelMaps>,
    mode: ChargeMode,
    page_size: u64,
    lost_reported: u64,
}

impl Collector<'_> {
    fn emit(&mut self, cgroup: Option<PathBuf>, body: RecordBody) -> Result<(), CollectError> {
        self.emit_at(unix_now(), cgroup, body)
    }

    fn emit_at(
        &mut self,
        ts: f64,
        cgroup: Option<PathBuf>,
        body: RecordBody,
    ) -> Result<(), CollectError> {
        self.sink
            .emit(&Record { ts, cgroup, body })
            .map_err(CollectError::Output)
    }

    fn start(&mut self) -> Result<(), CollectError> {
        for i in 0..self.watched.len() {
            let w = &mut self.watched[i];
            if let Some(maps) = self.maps.as_mut() {
                w.attach(maps)?;
            }
            let start = WatchStart {
                cgroup_id: w.cgroup.id(),
                cgroup_version: w.cgroup.version(),
                limit_bytes: w.limit,
                mode: self.mode,
            };
            let path = w.path();
            self.emit(Some(path), RecordBody::WatchStart(start))?;
        }
        if let Some(maps) = self.maps.as_mut() {
            maps.bump_generation()?;
            for w in &mut self.watched {
                w.arm(maps, self.page_size)?;
            }
        }
        self.sink.flush().map_err(CollectError::Output)
    }

    /// One round of samples. Returns false when nothing is left to watch.
    fn tick(&mut self) -> Result<bool, CollectError> {
        let mut changed = false;
        for i in 0..self.watched.len() {
            if self.watched[i].gone {
                continue;
            }
            let outcome = self.watched[i].sample(self.maps.as_mut(), self.mode, self.page_size);
            match outcome {
                Ok((sample, subtree_changed)) => {
                    changed |= subtree_changed;
                    let path = self.watched[i].path();
                    self.emit(Some(path), RecordBody::Sample(sample))?;
                }
                Err(watched::SampleError::Gone) => {
                    changed = true;
                    if let Some(maps) = self.maps.as_mut() {
                        self.watched[i].detach(maps)?;
                    }
                    self.watched[i].gone = true;
                    let path = self.watched[i].path();
                    self.emit(Some(path), RecordBody::CgroupGone)?;
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
                self.emit(
                    None,
                    RecordBody::LostEvents(LostEvents {
                        count,
                        source: "ring_buffer",
                    }),
                )?;
            }
        }
        self.sink.flush().map_err(CollectError::Output)?;
        Ok(self.watched.iter().any(|w| !w.gone))
    }

    fn on_kernel_event(&mut self, event: KernelEvent) -> Result<(), CollectError> {
        match event {
            KernelEvent::Burst(burst) => {
                let Some(w) = self
                    .watched
                    .iter_mut()
                    .find(|w| w.slot == burst.slot && !w.gone)
                else {
                    return Ok(());
                };
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
                let path = w.path();
                self.emit_at(boot_ns_to_unix(burst.header.ktime_ns), Some(path), body)
            }
            KernelEvent::OomVictim(v) => {
                let found = self.find_by_id(v.cgroup_id)?;
                let Some((index, victim_path)) = found else {
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
                let w = &mut self.watched[index];
                w.kills_reported += 1;
                let kill = OomKill {
                    limit_bytes: limit_of(&victim_path).or(w.limit),
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
                let path = w.path();
                self.emit_at(
                    boot_ns_to_unix(v.header.ktime_ns),
                    Some(path),
                    RecordBody::OomKill(kill),
                )
            }
            KernelEvent::Unknown { kind, len } => {
                log::warn!("unknown kernel record kind {kind} ({len} bytes) ignored");
                Ok(())
            }
        }
    }

    fn on_kmsg_kill(&mut self, kill: KmsgOomKill) -> Result<(), CollectError> {
        let Some(task_memcg) = kill.task_memcg.as_deref() else {
            log::debug!("kernel log kill of pid {} names no memcg", kill.pid);
            return Ok(());
        };
        let relative = task_memcg.trim_start_matches('/');
        let found = self
            .watched
            .iter()
            .enumerate()
            .filter(|(_, w)| !w.gone)
            .find_map(|(i, w)| w.find_by_suffix(relative).map(|p| (i, p)));
        let Some((index, victim_path)) = found else {
            log::debug!(
                "kernel log kill of pid {} in {task_memcg} (not watched)",
                kill.pid
            );
            return Ok(());
        };
        let w = &mut self.watched[index];
        w.kills_reported += 1;
        let body = RecordBody::OomKill(OomKill {
            limit_bytes: limit_of(&victim_path).or(w.limit),
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
        let path = w.path();
        self.emit(Some(path), body)
    }

    /// The watched cgroup whose subtree holds cgroup `id`, and that cgroup's path. A cgroup
    /// created since the last sample is found by walking the subtrees again.
    fn find_by_id(&mut self, id: u64) -> Result<Option<(usize, PathBuf)>, CollectError> {
        let lookup = |ws: &[Watched]| {
            ws.iter()
                .enumerate()
                .filter(|(_, w)| !w.gone)
                .find_map(|(i, w)| w.subtree.get(&id).map(|p| (i, p.clone())))
        };
        if let Some(found) = lookup(&self.watched) {
            return Ok(Some(found));
        }
        let mut changed = false;
        for w in self.watched.iter_mut().filter(|w| !w.gone) {
            changed |= w.refresh_subtree(self.maps.as_mut()).unwrap_or(false);
        }
        if changed {
            if let Some(maps) = self.maps.as_mut() {
                maps.bump_generation()?;
            }
        }
        Ok(lookup(&self.watched))
    }
}

fn limit_of(path: &std::path::Path) -> Option<u64> {
    MemoryCgroup::open(path)
        .ok()
        .and_then(|c| c.effective_limit().ok().flatten())
}

/// Runs a watch until `--duration` elapses, a signal arrives, or every cgroup is gone.
pub async fn run(
    options: WatchOptions,
    probes: Option<Probes>,
    report: &ProbeReport,
    sink: &mut dyn Sink,
) -> Result<EndReason, CollectError> {
    let WatchOptions {
        cgroups,
        interval,
        duration,
    } = options;
    if cgroups.len() > profiler_common::MAX_SLOTS as usize {
        return Err(CollectError::TooMany(profiler_common::MAX_SLOTS));
    }
    let mut interrupt = signal(SignalKind::interrupt()).map_err(CollectError::Setup)?;
    let mut terminate = signal(SignalKind::terminate()).map_err(CollectError::Setup)?;

    let (attached, maps, mut ring, logger) = match probes {
        Some(p) => {
            let (attached, logger, maps, ring) = p.split();
            (Some(attached), Some(maps), Some(ring), Some(logger))
        }
        None => (None, None, None, None),
    };
    let mut logger = match logger {
        // SAFETY: the logger owns its ring buffer fd for as long as it lives.
        Some(l) => {
            Some(unsafe { AsyncFd::register(l) }.map_err(|e| CollectError::Setup(e.into()))?)
        }
        None => None,
    };
    let mut kmsg = match report.oom_source {
        OomSource::Kmsg => Some(KmsgOomWatcher::open()?),
        OomSource::MarkVictim => None,
    };

    let watched = cgroups
        .into_iter()
        .enumerate()
        .map(|(slot, cgroup)| Watched::new(cgroup, slot as u32))
        .collect();
    let mut collector = Collector {
        watched,
        sink,
        maps,
        mode: report.mode,
        page_size: page_size(),
        lost_reported: 0,
    };
    collector.start()?;

    let deadline = duration.map(|d| tokio::time::Instant::now() + d);
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut kmsg_lost = 0;
    let reason = loop {
        tokio::select! {
            _ = ticker.tick() => {
                if !collector.tick()? {
                    break EndReason::AllGone;
                }
                if let Some(k) = &kmsg {
                    let lost = k.overwritten();
                    if lost > kmsg_lost {
                        let count = lost - kmsg_lost;
                        kmsg_lost = lost;
                        collector.emit(None, RecordBody::LostEvents(LostEvents { count, source: "kmsg" }))?;
                    }
                }
            }
            batch = async {
                match ring.as_mut() {
                    Some(r) => r.next_batch().await,
                    None => pending().await,
                }
            } => {
                for event in batch.map_err(CollectError::Setup)? {
                    collector.on_kernel_event(event)?;
                }
            }
            kill = async {
                match kmsg.as_mut() {
                    Some(k) => k.next_kill().await,
                    None => pending().await,
                }
            } => {
                match kill {
                    Ok(kill) => collector.on_kmsg_kill(kill)?,
                    Err(e) => {
                        log::warn!("reading the kernel log failed, OOM kills are no longer reported: {e}");
                        kmsg = None;
                    }
                }
            }
            ready = async {
                match logger.as_mut() {
                    Some(l) => l.readable_mut().await.map(Some),
                    None => pending().await,
                }
            } => {
                if let Ok(Some(mut guard)) = ready {
                    guard.get_inner_mut().flush();
                    guard.clear_ready();
                }
            }
            _ = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => pending().await,
                }
            } => break EndReason::Duration,
            _ = interrupt.recv() => break EndReason::Signal,
            _ = terminate.recv() => break EndReason::Signal,
        }
    };
    // Whatever the kernel sent before the end is still reported.
    if let Some(r) = ring.as_mut() {
        if let Ok(Ok(batch)) = tokio::time::timeout(Duration::from_millis(1), r.next_batch()).await
        {
            for event in batch {
                collector.on_kernel_event(event)?;
            }
        }
    }
    collector.emit(None, RecordBody::End(End { reason }))?;
    collector.sink.flush().map_err(CollectError::Output)?;
    // Detach before returning, so the programs are gone when the process reports its exit.
    drop(attached);
    Ok(reason)
}
