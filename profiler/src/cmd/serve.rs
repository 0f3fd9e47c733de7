//! `profiler serve`: the node agent. Watches every container as `watch --all` does, keeps
//! the Prometheus metrics and a rolling recording, and serves both over HTTP.
use std::{fs, path::Path, sync::Arc, time::Duration};

use anyhow::{Context as _, Result};
use tokio::{net::TcpListener, sync::Semaphore};

use super::start;
use crate::{
    cgroup::{self, CgroupVersion},
    cli::{ChargeTracing, ServeArgs},
    collector::{self, Targets},
    output::{Fanout, Sink},
    pods::{Discovery, Inventory, Selector},
    privilege,
    serve::{http, AgentMetrics, Bounds, MetricsSink, RollingRecording},
};

/// Runs `profiler serve`.
pub async fn run(args: ServeArgs) -> Result<()> {
    // First: a SIGTERM during the start-up below must not be lost.
    let signals = collector::StopSignals::install()?;
    start::raise_file_limit();
    start::check(&args.collect)?;
    let roots = start::roots(&args.node)?;
    // Everything the user named is checked before the programs are loaded.
    let listener = TcpListener::bind(args.listen).await.with_context(|| {
        format!(
            "--listen {}: cannot serve there (is another agent running, or is the address \
             not this host's?); choose another ADDR:PORT",
            args.listen
        )
    })?;
    // A user without the privileges learns that first (not that /var/lib/profiler is not
    // theirs to write).
    privilege::require_tracing("profiler serve", "serve")?;
    check_record_dir(&args.record_dir)?;
    let inventory = Inventory::scan(&roots);
    let selection = Selector::All.resolve(
        &inventory,
        &roots.pod_logs.display().to_string(),
        &roots.cgroup_root.display().to_string(),
    )?;

    let metrics = Arc::new(AgentMetrics::new());
    let started = start::now();
    let (probes, report) = start::probes(&args.collect)?;
    let cgroup_version = match cgroup::hierarchy_version(&roots.cgroup_root) {
        Some(CgroupVersion::V1) => "v1",
        Some(CgroupVersion::V2) => "v2",
        None => "",
    };
    metrics.set_build(
        &report.kernel,
        &report.decision.mode.to_string(),
        cgroup_version,
    );
    // The programs were attached to find the mode that works; with --charge-tracing
    // adaptive, the first round detaches the charge path's unless a container needs them.
    if report.decision.mode != crate::mode::ChargeMode::Polling {
        metrics.charge_armed.set(1);
        metrics.charge_arms.inc();
    }
    let header = start::header(started, &roots, &args.collect, &report);
    let bounds = Bounds {
        retain_s: args.retain.as_secs_f64(),
        max_disk: args.max_disk,
    };
    let recording = RollingRecording::open(
        &args.record_dir,
        header,
        bounds,
        Arc::clone(&metrics),
        started,
    )
    .with_context(|| {
        format!(
            "--record-dir {}: cannot record there; name a writable directory",
            args.record_dir.display()
        )
    })?;

    let state = Arc::new(http::State {
        metrics: Arc::clone(&metrics),
        record_dir: args.record_dir.clone(),
        retain_s: args.retain.as_secs_f64(),
        stale_after: (args.collect.interval * 10).max(Duration::from_secs(30)),
        render: Semaphore::new(1),
        report: Semaphore::new(1),
    });
    let address = listener.local_addr().unwrap_or(args.listen);
    let server = tokio::spawn(http::serve(listener, state));
    eprintln!(
        "profiler serve: http://{address}/metrics, /report?since=1h, /healthz; recording in {} \
         (--retain {:?}, --max-disk {} bytes); {} mode",
        args.record_dir.display(),
        args.retain,
        args.max_disk,
        report.decision.mode
    );

    let mut sink = Fanout(vec![
        Box::new(MetricsSink::new(
            Arc::clone(&metrics),
            args.series_retention,
        )) as Box<dyn Sink>,
        Box::new(recording),
    ]);
    let discovery = Discovery {
        roots: roots.clone(),
        selection,
    };
    let options = start::options(
        Targets::Discovered(discovery),
        roots,
        &args.collect,
        args.duration,
        args.charge_tracing == ChargeTracing::Adaptive,
        match args.stacks {
            crate::cli::Stacks::AtRisk => collector::StackPolicy::AtRisk,
            crate::cli::Stacks::Always => collector::StackPolicy::Always,
            crate::cli::Stacks::Off => collector::StackPolicy::Off,
        },
    );
    let ended = collector::run(options, signals, probes, &report, &mut sink).await;
    server.abort();
    ended?;
    Ok(())
}

/// The recording directory exists (or is made) and takes files.
fn check_record_dir(dir: &Path) -> Result<()> {
    let hint = || {
        format!(
            "--record-dir {}: cannot record there; name a writable directory",
            dir.display()
        )
    };
    fs::create_dir_all(dir).with_context(hint)?;
    let probe = dir.join(format!(".profiler-write-test-{}", std::process::id()));
    fs::write(&probe, b"").with_context(hint)?;
    let _ = fs::remove_file(&probe);
    Ok(())
}
