//! `profiler watch`: validate, probe the kernel, run the collector.
use std::io::{self, IsTerminal};

use anyhow::{Context as _, Result};

use crate::{
    cgroup::MemoryCgroup,
    cli::WatchArgs,
    collector::{self, WatchOptions},
    output::{JsonSink, LiveSink, Sink},
    privilege, probe,
};

/// Runs `profiler watch`.
pub async fn run(args: WatchArgs) -> Result<()> {
    // Every argument is checked before anything is loaded into the kernel.
    let mut cgroups = Vec::with_capacity(args.cgroups.len());
    for path in &args.cgroups {
        let cgroup =
            MemoryCgroup::open(path).with_context(|| format!("--cgroup {}", path.display()))?;
        if cgroups.iter().any(|c: &MemoryCgroup| c.id() == cgroup.id()) {
            continue;
        }
        cgroups.push(cgroup);
    }
    privilege::require_tracing("profiler watch", "watch")?;
    let (probes, report) = probe::start(args.mode, &args.btf)?;
    if let Err(why) = &report.btf {
        eprintln!("warning: {why}; falling back to {} mode", report.mode);
    }
    log::info!("mode {}: {}", report.mode, report.mode_reason);
    log::info!("OOM kills: {}", report.oom_reason);

    let stdout = io::stdout().lock();
    let mut sink: Box<dyn Sink> = if args.json {
        Box::new(JsonSink::new(stdout))
    } else {
        let redraw = io::stdout().is_terminal();
        Box::new(LiveSink::new(stdout, redraw))
    };
    let options = WatchOptions {
        cgroups,
        interval: args.interval,
        duration: args.duration,
    };
    collector::run(options, probes, &report, sink.as_mut()).await?;
    Ok(())
}
