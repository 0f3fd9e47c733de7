//! The start-up `watch` and `serve` share: checking the options, finding the node's roots,
//! loading the kernel programs, and the recording's header.
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use crate::{
    cgroup,
    cli::{CollectArgs, NodeArgs},
    collector::{self, Targets, WatchOptions},
    forecast::risk::Thresholds,
    output::{
        recording::{host_name, RECORDING_VERSION},
        RecordingHeader,
    },
    pods::{self, NodeRoots},
    probe::{self, ProbeReport, Probes},
};

/// Every container's files are held open between samples: raise the open file limit. And
/// kernels before 5.11 count BPF maps against the locked-memory limit: lift it where that is
/// allowed (CAP_SYS_RESOURCE); later kernels charge them to the memory cgroup instead.
pub(crate) fn raise_file_limit() {
    match cgroup::raise_open_file_limit() {
        Ok(limit) => log::debug!("open file limit: {limit}"),
        Err(e) => {
            log::warn!("could not raise the open file limit ({e}): files past it are read by path")
        }
    }
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit reads the struct we own.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) } != 0 {
        log::debug!(
            "locked-memory limit kept ({}): only kernels before 5.11 count BPF maps against it",
            std::io::Error::last_os_error()
        );
    }
}

/// Checks what the options say together (each was checked alone by the parser).
pub(crate) fn check(collect: &CollectArgs) -> Result<()> {
    if collect.critical >= collect.warn {
        bail!(
            "--critical ({:?}) must be shorter than --warn ({:?}): critical is the nearer \
             forecast",
            collect.critical,
            collect.warn
        );
    }
    Ok(())
}

/// Where the node's cgroups and the kubelet's logs are.
pub(crate) fn roots(node: &NodeArgs) -> Result<NodeRoots> {
    Ok(NodeRoots {
        cgroup_root: match &node.cgroup_root {
            Some(root) => check_dir(root, "--cgroup-root")?,
            None => pods::default_cgroup_root(),
        },
        pod_logs: node.pod_logs.clone(),
        container_logs: node.container_logs.clone(),
        runtime_state: node.runtime_state.clone(),
    })
}

/// Probes the kernel and loads the programs, telling the user what was chosen.
pub(crate) fn probes(collect: &CollectArgs) -> Result<(Option<Probes>, ProbeReport)> {
    let (probes, report) = probe::start(collect.mode, &collect.btf, collect.max_cgroups)?;
    if let Err(why) = &report.btf {
        eprintln!(
            "warning: {why}; falling back to {} mode",
            report.decision.mode
        );
    }
    log::info!(
        "mode {}: {}",
        report.decision.mode,
        report.decision.mode_reason
    );
    log::info!("OOM kills: {}", report.decision.oom_reason);
    Ok((probes, report))
}

/// The first line of a recording made with these options.
pub(crate) fn header(
    started: f64,
    roots: &NodeRoots,
    collect: &CollectArgs,
    report: &ProbeReport,
) -> RecordingHeader {
    RecordingHeader {
        kind: "recording",
        format: "profiler-recording",
        version: RECORDING_VERSION,
        profiler_version: env!("CARGO_PKG_VERSION"),
        started,
        node: host_name(),
        cgroup_version: cgroup::hierarchy_version(&roots.cgroup_root),
        interval_s: collect.interval.as_secs_f64(),
        warn_s: collect.warn.as_secs_f64(),
        critical_s: collect.critical.as_secs_f64(),
        probe: report.clone(),
    }
}

/// What the collector is to do.
pub(crate) fn options(
    targets: Targets,
    roots: NodeRoots,
    collect: &CollectArgs,
    duration: Option<std::time::Duration>,
    adaptive: bool,
    stacks: collector::StackPolicy,
) -> WatchOptions {
    WatchOptions {
        targets,
        roots,
        interval: collect.interval,
        duration,
        thresholds: Thresholds {
            warn_s: collect.warn.as_secs_f64(),
            critical_s: collect.critical.as_secs_f64(),
        },
        on_warning: collect.on_warning.clone(),
        eviction_threshold: collect.eviction_threshold,
        adaptive,
        stacks: collector::StackOptions {
            policy: stacks,
            interval_bytes: collect.stack_interval,
        },
        stall_events: collect.debug_stall_events,
    }
}

/// Seconds since the Unix epoch.
pub(crate) fn now() -> f64 {
    collector::unix_now()
}

fn check_dir(path: &Path, flag: &str) -> Result<PathBuf> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => Ok(path.to_path_buf()),
        Ok(_) => bail!("{flag} {}: not a directory", path.display()),
        Err(e) => bail!(
            "{flag} {}: {e}; name the cgroup hierarchy that holds the containers' memory \
             cgroups",
            path.display()
        ),
    }
}
