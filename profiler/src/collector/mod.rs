//! The collector: joins the cgroup files (absolute values), the kernel programs' counters
//! (charge rate, reclaim) and their events (bursts, OOM victims) into records.
mod arming;
mod attribution;
mod deaths;
mod group;
mod on_warning;
mod outlook;
mod processes;
mod sample;
mod slot;
mod stacks;
mod state;
mod targets;
mod watched;

use std::{
    future::pending,
    io,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use thiserror::Error;
use tokio::{
    io::unix::AsyncFd,
    signal::unix::{signal, Signal, SignalKind},
};

pub(crate) use arming::Why;
pub(crate) use stacks::{StackOptions, StackPolicy};
use state::Collector;
pub(crate) use targets::Targets;
use watched::SampleError;

use crate::{
    forecast::risk::Thresholds,
    kmsg::KmsgOomWatcher,
    mode::OomSource,
    output::Sink,
    pods::NodeRoots,
    probe::{ProbeReport, Probes},
    record::{End, EndReason, LostEvents, RecordBody},
};

/// What to watch and how often.
#[derive(Debug)]
pub(crate) struct WatchOptions {
    /// The memory cgroups to watch: fixed, or containers found on the node.
    pub targets: Targets,
    /// Where the node's cgroups and the kubelet's logs are (owners of cgroups are looked up
    /// there).
    pub roots: NodeRoots,
    /// Time between samples.
    pub interval: Duration,
    /// Stop after this long (`None`: until a signal or every cgroup is gone).
    pub duration: Option<Duration>,
    /// ETA thresholds of the warning levels.
    pub thresholds: Thresholds,
    /// `--on-warning`: run on every change of a container's warning level.
    pub on_warning: Option<String>,
    /// The kubelet's eviction threshold, for the `node` lines.
    pub eviction_threshold: crate::node::EvictionThreshold,
    /// Attach the charge path only while some container needs it.
    pub adaptive: bool,
    /// Which containers have their charges' stacks sampled, and how often.
    pub stacks: StackOptions,
    /// `--debug-stall-events` (tests only): the kernel's records are not read for this long
    /// from the start, so the ring overflows on purpose.
    pub stall_events: Option<Duration>,
}

/// Why a watch could not go on.
#[derive(Debug, Error)]
pub(crate) enum CollectError {
    /// Writing the output failed (other than a closed pipe, which ends the watch quietly).
    #[error("writing output failed")]
    Output(#[source] io::Error),
    /// A map of the kernel programs could not be read or written.
    #[error("talking to the kernel programs failed")]
    Kernel(#[from] aya::maps::MapError),
    /// Setting up signal handling or the event loop failed.
    #[error("setting up the event loop failed")]
    Setup(#[source] io::Error),
    /// The kernel log could not be read for OOM kills.
    #[error(transparent)]
    Kmsg(#[from] crate::kmsg::KmsgError),
    /// Too many cgroups to watch.
    #[error("at most {0} cgroups can be watched at once (raise it with --max-cgroups)")]
    TooMany(u32),
}

/// SIGINT and SIGTERM, caught from the start of `profiler watch` on. Loading and attaching the
/// kernel programs takes seconds on a slow machine, and a signal sent then must still end the
/// watch (as soon as it is set up): a script's background job starts with SIGINT ignored, and
/// until a handler is installed the kernel discards it, so the watch would run on for good.
#[derive(Debug)]
pub(crate) struct StopSignals {
    interrupt: Signal,
    terminate: Signal,
}

impl StopSignals {
    /// Installs the handlers (inside the tokio runtime, whose signal driver they feed).
    pub(crate) fn install() -> Result<Self, CollectError> {
        Ok(Self {
            interrupt: signal(SignalKind::interrupt()).map_err(CollectError::Setup)?,
            terminate: signal(SignalKind::terminate()).map_err(CollectError::Setup)?,
        })
    }
}

/// Seconds since the Unix epoch, now.
pub(crate) fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Attaches or detaches the charge path as the last round decided, and tells it.
fn switch_charge_path(
    collector: &mut Collector<'_>,
    attached: &mut crate::probe::Attached,
    switch: arming::Switch,
) -> Result<(), CollectError> {
    let started = std::time::Instant::now();
    let (armed, why, reason) = match attached.set_charge(switch.on) {
        Ok(()) => (switch.on, switch.why, switch.reason),
        Err(e) => {
            if let Some(arming) = collector.arming.as_mut() {
                arming.failed();
            }
            (
                false,
                Why::AttachFailed,
                format!(
                    "{}; attaching the charge path failed: {}",
                    switch.reason,
                    crate::errors::chain(&e)
                ),
            )
        }
    };
    log::info!(
        "charge path {} in {:?}: {reason}",
        if armed { "attached" } else { "detached" },
        started.elapsed()
    );
    collector.charge_traced = armed;
    collector.emit_node(RecordBody::ChargeTracing(crate::record::ChargeTracing {
        armed,
        why,
        reason,
    }))
}

/// How often the stacks ring is drained while some container is sampled (besides when the
/// kernel says it is filling up). Each look is a timer wakeup, which costs about 0.4 ms of
/// CPU in a VM: 4 a second, not 10.
const STACK_DRAIN_EVERY: Duration = Duration::from_millis(250);

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

/// The page size of the running machine.
pub(crate) fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size).ok().filter(|&s| s > 0).unwrap_or(4096)
}

/// Runs a watch until `--duration` elapses, a signal arrives, or every cgroup is gone.
pub(crate) async fn run(
    options: WatchOptions,
    signals: StopSignals,
    probes: Option<Probes>,
    report: &ProbeReport,
    sink: &mut dyn Sink,
) -> Result<EndReason, CollectError> {
    let WatchOptions {
        targets,
        roots,
        interval,
        duration,
        thresholds,
        on_warning,
        eviction_threshold,
        adaptive,
        stacks,
        stall_events,
    } = options;
    if let Targets::Fixed(cgroups) = &targets {
        let slots = probes
            .as_ref()
            .map_or(profiler_common::MAX_SLOTS, |p| p.maps.slots());
        if cgroups.len() > slots as usize {
            return Err(CollectError::TooMany(slots));
        }
    }
    let StopSignals {
        mut interrupt,
        mut terminate,
    } = signals;

    let (mut attached, maps, mut ring, mut stack_ring, logger) = match probes {
        Some(p) => {
            let (attached, logger, maps, ring, stack_ring) = p.split();
            (
                Some(attached),
                Some(maps),
                Some(ring),
                Some(stack_ring),
                Some(logger),
            )
        }
        None => (None, None, None, None, None),
    };
    if stacks.policy != StackPolicy::Off && maps.is_none() {
        log::warn!("charge stacks need the kernel programs, and none is attached: no stacks");
    }
    let mut logger = match logger {
        Some(l) => {
            // SAFETY: the logger owns its ring buffer fd for as long as it lives.
            let registered = unsafe { AsyncFd::register(l) };
            Some(registered.map_err(|e| CollectError::Setup(e.into()))?)
        }
        None => None,
    };
    let oom_source = report.decision.oom_source;
    // In polling mode the kernel log is where kills come from; with the kernel programs it
    // says which limit each kill was for, and a watch goes on without that.
    let mut kmsg = match oom_source {
        OomSource::Kmsg => Some(KmsgOomWatcher::open()?),
        OomSource::MarkVictim => match KmsgOomWatcher::open() {
            Ok(watcher) => Some(watcher),
            Err(e) => {
                log::warn!(
                    "the kernel log cannot be read, so OOM kills will not say which limit was \
                     reached: {}",
                    crate::errors::chain(&e)
                );
                None
            }
        },
    };

    let mut collector = Collector::new(
        sink,
        maps,
        &report.decision,
        targets,
        roots,
        thresholds,
        on_warning,
    );
    collector.node = Some(crate::node::NodeWatch::new(eviction_threshold));
    if collector.maps.is_some() {
        collector.stack_work = stacks::StackWork::new(stacks);
    }
    if adaptive {
        match attached.as_ref() {
            Some(a) if a.has_charge_path() => {
                collector.arming = Some(arming::Arming::new(thresholds.warn_s, true));
            }
            _ => log::info!("--adaptive: no charge-path program is attached, nothing to switch"),
        }
    }
    collector.deaths.kmsg_context = oom_source == OomSource::MarkVictim && kmsg.is_some();
    collector.start()?;

    let deadline = duration.map(|d| tokio::time::Instant::now() + d);
    // The kernel wakes the stack reader only when its ring fills up (a wakeup per sample was
    // most of a sample's cost): it is drained on this timer while a container is sampled, so
    // a sample waits at most this long for its normalisation, while its process most likely
    // still exists.
    let mut stack_drain = tokio::time::interval(STACK_DRAIN_EVERY);
    stack_drain.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut kmsg_lost = 0;
    // `--debug-stall-events`: the ring's branch is off until then; the branch of its own
    // below wakes the loop at that moment and turns it back on.
    let mut events_stalled_until = stall_events.map(|d| tokio::time::Instant::now() + d);
    if let Some(d) = stall_events {
        log::info!("--debug-stall-events: the kernel's records are not read for {d:?}");
    }
    let reason = loop {
        tokio::select! {
            _ = ticker.tick() => {
                if let Some(r) = stack_ring.as_mut() {
                    collector.on_stack_samples(r.drain());
                }
                collector.flush_deaths(unix_now())?;
                let more = collector.tick()?;
                if let (Some(switch), Some(a)) = (collector.switch.take(), attached.as_mut()) {
                    switch_charge_path(&mut collector, a, switch)?;
                }
                if !more {
                    break EndReason::AllGone;
                }
                if let (Some(k), OomSource::Kmsg) = (&kmsg, oom_source) {
                    let lost = k.overwritten();
                    if lost > kmsg_lost {
                        let count = lost - kmsg_lost;
                        kmsg_lost = lost;
                        collector.emit_node(RecordBody::LostEvents(LostEvents { count, source: "kmsg" }))?;
                    }
                }
            }
            _ = stack_drain.tick(), if stack_ring.is_some() && collector.stacks_sampled() => {
                if let Some(r) = stack_ring.as_mut() {
                    collector.on_stack_samples(r.drain());
                }
            }
            samples = async {
                match stack_ring.as_mut() {
                    Some(r) => r.next_batch().await,
                    None => pending().await,
                }
            } => {
                collector.on_stack_samples(samples.map_err(CollectError::Setup)?);
            }
            batch = async {
                match ring.as_mut() {
                    Some(r) => r.next_batch().await,
                    None => pending().await,
                }
            }, if events_stalled_until.is_none() => {
                for event in batch.map_err(CollectError::Setup)? {
                    collector.on_kernel_event(event)?;
                }
            }
            _ = async {
                match events_stalled_until {
                    Some(until) => tokio::time::sleep_until(until).await,
                    None => pending().await,
                }
            } => {
                log::info!("--debug-stall-events: the kernel's records are read again");
                events_stalled_until = None;
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
                        log::warn!(
                            "reading the kernel log failed; OOM kills are no longer {}: {}",
                            match oom_source {
                                OomSource::Kmsg => "reported",
                                OomSource::MarkVictim => "told which limit was reached",
                            },
                            crate::errors::chain(&e)
                        );
                        kmsg = None;
                        collector.deaths.kmsg_context = false;
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
                match collector.deaths.next_deadline() {
                    Some(due) => tokio::time::sleep(Duration::from_secs_f64((due - unix_now()).clamp(0.0, 10.0))).await,
                    None => pending().await,
                }
            } => collector.flush_deaths(unix_now())?,
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
    if let Some(r) = stack_ring.as_mut() {
        collector.on_stack_samples(r.drain());
    }
    collector.flush_stacks(unix_now())?;
    if let Some(r) = ring.as_mut() {
        if let Ok(Ok(batch)) = tokio::time::timeout(Duration::from_millis(1), r.next_batch()).await
        {
            for event in batch {
                collector.on_kernel_event(event)?;
            }
        }
    }
    collector.flush_all_deaths()?;
    collector.emit_summaries()?;
    collector.emit_node(RecordBody::End(End { reason }))?;
    collector.flush()?;
    // Detach before returning, so the programs are gone when the process reports its exit.
    drop(attached);
    Ok(reason)
}
