//! The children of one forecast run, seen from the bench: the lines they print, recorded as
//! they come, and how they are stopped.
use std::{
    fs::File,
    io::{BufRead as _, BufReader, BufWriter, Write as _},
    path::Path,
    process::{Child, ChildStdout, ExitStatus},
    sync::mpsc,
    thread,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context as _, Result};

/// Writes every line of the profiler to `path` and returns them; tells `first_line` when the
/// first one (`watch_start`, printed once attached) arrives.
pub(super) fn record(
    stdout: ChildStdout,
    path: &Path,
    first_line: mpsc::Sender<()>,
) -> Result<Vec<String>> {
    let mut file =
        BufWriter::new(File::create(path).with_context(|| format!("creating {}", path.display()))?);
    let mut lines = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.context("reading the profiler's output")?;
        writeln!(file, "{line}").with_context(|| format!("writing {}", path.display()))?;
        if lines.is_empty() {
            let _ = first_line.send(());
        }
        lines.push(line);
    }
    file.flush()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(lines)
}

/// Copies the lines of the scenario's program (the workload, or a runtime's program, which
/// print alike) to `path`, each after the Unix time it was read, and returns the time of its
/// `growth_start` line (its own clock, which is the profiler's).
pub(super) fn read_workload(stdout: ChildStdout, path: &Path) -> Result<Option<f64>> {
    let mut file =
        BufWriter::new(File::create(path).with_context(|| format!("creating {}", path.display()))?);
    let mut growth_start = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.context("reading the workload's output")?;
        writeln!(file, "{:.3} {line}", unix_now())
            .with_context(|| format!("writing {}", path.display()))?;
        if let Some(ts) = line.strip_prefix("growth_start ") {
            growth_start = Some(
                ts.trim()
                    .parse()
                    .with_context(|| format!("the workload printed {line:?}"))?,
            );
        }
    }
    file.flush()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(growth_start)
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Sends `signal` to a child we started (unless it has ended) and waits up to `grace` for it,
/// then SIGKILLs it. Returns its status and whether it had to be killed.
pub(super) fn stop(
    child: &mut Child,
    signal: libc::c_int,
    grace: Duration,
) -> Result<(ExitStatus, bool)> {
    if let Some(status) = child.try_wait()? {
        return Ok((status, false));
    }
    let pid = libc::pid_t::try_from(child.id()).context("pid out of range")?;
    // SAFETY: kill(2) on a child we have not reaped, so the pid is still ours.
    unsafe { libc::kill(pid, signal) };
    let until = Instant::now() + grace;
    while Instant::now() < until {
        if let Some(status) = child.try_wait()? {
            return Ok((status, false));
        }
        thread::sleep(Duration::from_millis(50));
    }
    child.kill().context("killing a child that did not stop")?;
    Ok((child.wait().context("waiting for the child")?, true))
}
