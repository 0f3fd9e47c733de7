//! `profiler watch`: validate, resolve pods and containers, probe the kernel, run the
//! collector.
use std::{
    fs::File,
    io::{self, IsTerminal},
    path::PathBuf,
};

use anyhow::{bail, Context as _, Result};

use super::start;
use crate::{
    cgroup::MemoryCgroup,
    cli::WatchArgs,
    collector::{self, Targets},
    output::{JsonSink, LiveSink, RecordingSink, Sink},
    pods::{Discovery, Inventory, NodeRoots, Selection, Selector},
    privilege,
};

/// Runs `profiler watch`.
pub async fn run(args: WatchArgs) -> Result<()> {
    // First: a SIGINT or SIGTERM during the start-up below must not be lost.
    let signals = collector::StopSignals::install()?;
    start::raise_file_limit();
    // Every argument is checked before anything is loaded into the kernel.
    start::check(&args.collect)?;
    let roots = start::roots(&args.node)?;
    let (targets, waiting) = if args.cgroups.is_empty() {
        let (discovery, waiting) = discover(&args, roots.clone())?;
        (Targets::Discovered(discovery), waiting)
    } else {
        (Targets::Fixed(fixed_cgroups(&args.cgroups)?), None)
    };
    // A user without the privileges learns that first, not that the watch is waiting.
    privilege::require_tracing("profiler watch", "watch")?;
    if let Some(waiting) = waiting {
        eprintln!("{waiting}");
    }
    // Before anything is loaded: an unwritable recording is an error now, not after a watch.
    let record_file = match &args.record {
        Some(path) => Some(File::create(path).with_context(|| {
            format!(
                "--record {}: cannot write the recording there; name a file in a writable \
                 directory",
                path.display()
            )
        })?),
        None => None,
    };
    let started = start::now();
    let (probes, report) = start::probes(&args.collect)?;

    let stdout = io::stdout().lock();
    let mut sink: Box<dyn Sink> = if args.json {
        Box::new(JsonSink::new(io::BufWriter::with_capacity(1 << 16, stdout)))
    } else {
        let redraw = io::stdout().is_terminal();
        Box::new(LiveSink::new(stdout, redraw))
    };
    if let (Some(file), Some(path)) = (record_file, &args.record) {
        let header = start::header(started, &roots, &args.collect, &report);
        sink = Box::new(
            RecordingSink::start(file, path, &header, sink)
                .with_context(|| format!("--record {}", path.display()))?,
        );
    }
    let stacks = if args.stacks {
        collector::StackPolicy::Always
    } else {
        collector::StackPolicy::Off
    };
    let options = start::options(
        targets,
        roots,
        &args.collect,
        args.duration,
        args.adaptive,
        stacks,
    );
    collector::run(options, signals, probes, &report, sink.as_mut()).await?;
    Ok(())
}

fn fixed_cgroups(paths: &[PathBuf]) -> Result<Vec<MemoryCgroup>> {
    let mut cgroups = Vec::with_capacity(paths.len());
    for path in paths {
        let cgroup =
            MemoryCgroup::open(path).with_context(|| format!("--cgroup {}", path.display()))?;
        if cgroups.iter().any(|c: &MemoryCgroup| c.id() == cgroup.id()) {
            continue;
        }
        cgroups.push(cgroup);
    }
    Ok(cgroups)
}

/// Resolves `--pod`, `--container` or `--all` against the node as it is now. Unknown names
/// are errors; a known pod with no container running is waited for (or an error with
/// `--no-wait`): then the second value is what to tell the user.
fn discover(args: &WatchArgs, roots: NodeRoots) -> Result<(Discovery, Option<String>)> {
    let selector = match (&args.pod, &args.container) {
        (Some(pod), container) => Selector::Pod {
            name: pod.clone(),
            namespace: args.namespace.clone(),
            container: container.clone(),
        },
        (None, Some(container)) => Selector::Container(container.clone()),
        (None, None) => Selector::All,
    };
    selector.validate()?;
    let inventory = Inventory::scan(&roots);
    let selection = selector.resolve(
        &inventory,
        &roots.pod_logs.display().to_string(),
        &roots.cgroup_root.display().to_string(),
    )?;
    let discovery = Discovery { roots, selection };
    if discovery.matching(&inventory).next().is_some() {
        return Ok((discovery, None));
    }
    let waiting = {
        let root = discovery.roots.cgroup_root.display();
        let what = match &discovery.selection {
            Selection::All => format!("no container found under {root}"),
            Selection::Pod { .. } => format!(
                "{} has no running container under {root}",
                discovery.selection.describe()
            ),
            other => format!("{} is not running under {root}", other.describe()),
        };
        if args.no_wait {
            bail!("{what} (--no-wait was given)");
        }
        match &discovery.selection {
            Selection::All => format!("{what}; waiting for containers to start"),
            Selection::Pod {
                namespace,
                name,
                container: None,
            } => format!(
                "waiting for a container of pod {namespace}/{name} to start under {root} \
                 (--no-wait fails instead)"
            ),
            other => format!(
                "waiting for {} to start under {root} (--no-wait fails instead)",
                other.describe()
            ),
        }
    };
    Ok((discovery, Some(waiting)))
}
