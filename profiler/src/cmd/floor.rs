//! `profiler attach-floor` (hidden): programs that return at once on the charge-path and death
//! hooks, so the overhead benchmark can tell the cost of the hooks from the cost of the
//! profiler's work.
use std::io::Write as _;

use anyhow::{Context as _, Result};
use aya::{programs::RawTracePoint, EbpfLoader};
use tokio::signal::unix::{signal, SignalKind};

use crate::{cli::FloorArgs, privilege, probe};

const FLOOR: [(&str, &str); 5] = [
    ("floor_lruvec_state", "mod_memcg_lruvec_state"),
    ("floor_state", "mod_memcg_state"),
    ("floor_events", "count_memcg_events"),
    ("floor_process_exit", "sched_process_exit"),
    ("floor_signal_generate", "signal_generate"),
];

/// Runs `profiler attach-floor`.
pub async fn run(args: FloorArgs) -> Result<()> {
    privilege::require_tracing("profiler attach-floor", "attach-floor")?;
    let mut ebpf = EbpfLoader::new()
        .load(probe::programs())
        .context("loading the kernel programs")?;
    for (name, tracepoint) in FLOOR {
        let program: &mut RawTracePoint = ebpf
            .program_mut(name)
            .with_context(|| format!("program {name} missing from the object"))?
            .try_into()?;
        program.load().with_context(|| format!("loading {name}"))?;
        program
            .attach(tracepoint)
            .with_context(|| format!("attaching {name} to {tracepoint}"))?;
    }
    println!("attached");
    std::io::stdout().flush()?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let forever = args
        .duration
        .unwrap_or(std::time::Duration::from_secs(u64::MAX / 4));
    tokio::select! {
        _ = tokio::time::sleep(forever) => {}
        _ = interrupt.recv() => {}
        _ = terminate.recv() => {}
    }
    drop(ebpf);
    Ok(())
}
