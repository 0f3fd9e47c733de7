//! `cargo xtask bench forecast`: the scenarios of [`super::scenario`] run for real, each in a
//! fresh memory cgroup with `profiler watch --json` recording, then evaluated
//! ([`super::evaluate`]) and printed as one table ([`super::report`]).
//!
//! Every recording is kept in `<target>/bench-forecast/<nn>-<scenario>-run<k>.jsonl`, beside
//! the workload's own lines (`.workload.txt`, each prefixed with the Unix time it was read),
//! so forecaster tests can be cut from them.
use std::{
    fs::{self, File},
    io::{BufRead as _, BufReader, BufWriter, Write as _},
    os::{fd::AsRawFd as _, unix::process::ExitStatusExt as _},
    path::{Path, PathBuf},
    process::{Child, ChildStdout, Command, ExitStatus, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    thread,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{bail, Context as _, Result};

use super::{
    evaluate::{evaluate, judge, Evaluation, Settings, Trace},
    report::{self, Row},
    scenario::{Scenario, PAGECACHE_FILE_FACTOR, SCENARIOS},
};
use crate::{
    build::{self, Binaries},
    memcg::{Process, TempMemcg},
};

/// The profiler's thresholds, scaled to the scenarios (the issue's `--warn 60s --critical 15s`).
const WARN: &str = "60s";
const CRITICAL: &str = "15s";
/// How long the profiler gets to attach before the workload starts.
const ATTACH: Duration = Duration::from_secs(2);
/// How long the profiler keeps recording after the workload ended.
const AFTERMATH: Duration = Duration::from_secs(2);

/// Set by Ctrl-C (SIGINT) or SIGTERM: the run in progress stops and its cgroup is removed.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn note_interrupt(_signal: libc::c_int) {
    INTERRUPTED.store(true, Ordering::Relaxed);
}

/// Catches SIGINT and SIGTERM, so an interrupted bench still removes its cgroup (the guards
/// run as the error unwinds). A handler, not `SIG_IGN`: exec resets handlers, so the profiler
/// and the workload still get Ctrl-C's SIGINT and end.
fn catch_interrupts() {
    let handler = note_interrupt as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, handler);
        libc::signal(libc::SIGTERM, handler);
    }
}

fn check_interrupted() -> Result<()> {
    if INTERRUPTED.load(Ordering::Relaxed) {
        bail!("interrupted");
    }
    Ok(())
}

/// Fails on arguments that cannot work, before the setup and the build.
pub(super) fn check_arguments(runs: usize, only: &[u8]) -> Result<()> {
    if runs == 0 {
        bail!("--runs must be at least 1");
    }
    if let Some(bad) = only.iter().find(|n| !(1..=9).contains(*n)) {
        bail!("--only {bad}: the scenarios are numbered 1 to 9");
    }
    Ok(())
}

/// Runs the selected scenarios `runs` times each (all scenarios once, then again) and prints
/// the table.
pub(super) fn run(bins: &Binaries, runs: usize, only: &[u8]) -> Result<()> {
    let started = Instant::now();
    catch_interrupts();
    let scenarios: Vec<&Scenario> = SCENARIOS
        .iter()
        .filter(|s| only.is_empty() || only.contains(&s.number))
        .collect();
    let out = build::target_dir(&build::workspace_root())?.join("bench-forecast");
    fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let forecaster = has_warn_option(&bins.profiler)?;
    if !forecaster {
        eprintln!(
            "bench forecast: {} has no `watch --warn` yet: recording without thresholds; the \
             profiler's columns show –",
            bins.profiler.display()
        );
    }
    let pagecache = scenarios
        .iter()
        .find(|s| s.number == 5)
        .map(|s| PagecacheFile::create(&out, s.limit_mib * PAGECACHE_FILE_FACTOR))
        .transpose()?;

    let total = runs * scenarios.len();
    let mut rows = Vec::with_capacity(total);
    let mut notes = Vec::new();
    for run in 1..=runs {
        for scenario in &scenarios {
            eprintln!(
                "bench forecast: [{}/{total}] {} run {run}: limit {} MiB",
                rows.len() + 1,
                scenario.name(),
                scenario.limit_mib
            );
            let recorded = run_once(bins, scenario, run, &out, pagecache.as_ref(), forecaster)
                .with_context(|| format!("scenario {} run {run}", scenario.name()))?;
            for note in &recorded.notes {
                eprintln!("  {note}");
            }
            notes.push((scenario.name(), run, recorded.notes));
            rows.push(Row {
                number: scenario.number,
                slug: scenario.slug,
                run,
                expect_oom: scenario.expect_oom,
                verdict: judge(scenario.goal, &recorded.evaluation),
                evaluation: recorded.evaluation,
            });
        }
    }

    println!(
        "forecast benchmark: profiler watch --interval 1s{}; baselines from the same samples: \
         predict_linear(working_set[30s], 60s) > limit, working_set > 90 % of the limit",
        if forecaster {
            format!(" --warn {WARN} --critical {CRITICAL}")
        } else {
            " (no forecaster: no --warn option)".to_owned()
        }
    );
    println!();
    print!("{}", report::render(&rows));
    println!();
    println!(
        "leads: from the first warning at or after the growth start to the kernel's kill; ideal: \
         the shorter of growth start → kill and 60 s; % ideal: lead / ideal; ETA err: |ETA − \
         time left| / time left at the first warning; false: warnings in a run without an OOM \
         kill, or before the growth start (profiler: warning/critical lines; baselines: alerts; \
         predict_linear's include the workload's start, when its baseline arrives within a \
         second)."
    );
    println!(
        "goals: 4, 5: no profiler warning at all; 1, 2, 3, 6, 8: lead ≥ predict_linear's and ≥ \
         70 % of ideal, ETA error ≤ 25 %; 7: the kill is recorded; 9: figures only."
    );
    println!();
    println!("notes:");
    for (name, run, run_notes) in &notes {
        println!("  {name} run {run}: {}", run_notes.join("; "));
    }
    println!();
    println!("recordings: {}", out.display());
    println!(
        "took {:.1} min for {total} run(s)",
        started.elapsed().as_secs_f64() / 60.0
    );
    Ok(())
}

/// What one run produced.
struct Recorded {
    evaluation: Evaluation,
    /// What happened, for the notes under the table.
    notes: Vec<String>,
}

/// Runs one scenario once: a fresh cgroup, the profiler recording, the workload, evaluation.
fn run_once(
    bins: &Binaries,
    scenario: &Scenario,
    run: usize,
    out: &Path,
    pagecache: Option<&PagecacheFile>,
    forecaster: bool,
) -> Result<Recorded> {
    let name = format!("{}-run{run}", scenario.name());
    let jsonl = out.join(format!("{name}.jsonl"));
    let workload_log = out.join(format!("{name}.workload.txt"));
    let file = pagecache.map_or_else(PathBuf::new, |p| p.path.clone());
    if scenario.number == 5 {
        // Pages left in memory would be read without being charged to the new cgroup.
        pagecache.context("no page-cache file")?.drop_from_cache()?;
    }
    let memcg = TempMemcg::new(
        &format!("profiler-forecast-{:02}", scenario.number),
        scenario.limit_mib << 20,
    )?;

    let mut command = Command::new(&bins.profiler);
    command
        .arg("watch")
        .arg("--cgroup")
        .arg(memcg.path())
        .args(["--json", "--interval", "1s"]);
    if forecaster {
        command.args(["--warn", WARN, "--critical", CRITICAL]);
    }
    let spawned_at = Instant::now();
    let mut profiler = Process(
        command
            .stdout(Stdio::piped())
            .spawn()
            .context("starting profiler watch")?,
    );
    let stdout = profiler.0.stdout.take().context("profiler stdout")?;
    let (first_line, attached) = mpsc::channel();
    let recorder = {
        let jsonl = jsonl.clone();
        thread::spawn(move || record(stdout, &jsonl, first_line))
    };
    if attached.recv_timeout(Duration::from_secs(30)).is_err() {
        check_interrupted()?;
        bail!("profiler watch printed nothing within 30 s");
    }
    thread::sleep(ATTACH.saturating_sub(spawned_at.elapsed()));
    if let Some(status) = profiler.0.try_wait()? {
        bail!("profiler watch exited before the workload started ({status})");
    }

    let mut workload = memcg.spawn(
        Command::new(&bins.workload)
            .args(scenario.workload_args(&file))
            .stdout(Stdio::piped()),
    )?;
    let workload_stdout = workload.0.stdout.take().context("workload stdout")?;
    let reader = thread::spawn(move || read_workload(workload_stdout, &workload_log));
    let deadline = Instant::now() + scenario.duration;
    let mut notes = Vec::new();
    let status = loop {
        check_interrupted()?;
        if let Some(status) = workload.0.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            let (status, killed) = stop(&mut workload.0, libc::SIGTERM, Duration::from_secs(5))?;
            notes.push(format!(
                "workload stopped after {} s{}",
                scenario.duration.as_secs(),
                if killed { " (SIGKILL)" } else { "" }
            ));
            break status;
        }
        thread::sleep(Duration::from_millis(100));
    };
    check_interrupted()?;
    let sigkilled = status.signal() == Some(libc::SIGKILL) || status.code() == Some(137);
    let stopped = !notes.is_empty();
    if !stopped && !sigkilled {
        bail!("the workload exited on its own ({status}); see its message above");
    }
    thread::sleep(AFTERMATH);
    let (profiler_status, killed) = stop(&mut profiler.0, libc::SIGINT, Duration::from_secs(15))?;
    if killed || !profiler_status.success() {
        notes.push(format!(
            "profiler watch ended with {profiler_status}{}",
            if killed { " after SIGKILL" } else { "" }
        ));
    }
    let lines = recorder
        .join()
        .map_err(|_| anyhow::anyhow!("the recorder thread panicked"))??;
    let growth_start = reader
        .join()
        .map_err(|_| anyhow::anyhow!("the workload reader panicked"))??;
    let memcg_kills = memcg.oom_kills();
    drop(workload);
    drop(profiler);
    drop(memcg);

    let trace = Trace::parse(lines.iter().map(String::as_str))
        .map_err(anyhow::Error::msg)
        .with_context(|| format!("reading {}", jsonl.display()))?;
    let evaluation = evaluate(&trace, growth_start, &Settings::default());
    describe(
        &mut notes,
        &evaluation,
        memcg_kills,
        sigkilled,
        growth_start,
    );
    Ok(Recorded { evaluation, notes })
}

/// Notes on one run: the kill and its cross-checks, timing, peaks.
fn describe(
    notes: &mut Vec<String>,
    evaluation: &Evaluation,
    memcg_kills: u64,
    sigkilled: bool,
    growth_start: Option<f64>,
) {
    if growth_start.is_none() {
        notes.push("no growth_start line from the workload (!)".to_owned());
    }
    match &evaluation.kill {
        Some(kill) => notes.push(format!(
            "OOM kill of {} (pid {}){}",
            kill.comm,
            kill.pid,
            evaluation
                .growth_to_kill
                .map(|s| format!(" {s:.1} s after the growth start"))
                .unwrap_or_default()
        )),
        None => notes.push("no oom_kill line".to_owned()),
    }
    let lines = evaluation.kills as u64;
    if lines != memcg_kills || (lines > 0) != sigkilled {
        notes.push(format!(
            "cross-check (!): {lines} oom_kill line(s), memory.oom_control oom_kill {memcg_kills}, \
             workload {}",
            if sigkilled { "SIGKILLed" } else { "not SIGKILLed" }
        ));
    }
    if let Some(peak) = evaluation.peak_working_set {
        notes.push(format!(
            "peak working set {:.1} % of the limit, page cache {:.0} MiB, shmem {:.0} MiB",
            100.0 * peak,
            evaluation.peak_file / 1048576.0,
            evaluation.peak_shmem / 1048576.0
        ));
    }
}

/// Writes every line of the profiler to `path` and returns them; tells `first_line` when the
/// first one (`watch_start`, printed once attached) arrives.
fn record(stdout: ChildStdout, path: &Path, first_line: mpsc::Sender<()>) -> Result<Vec<String>> {
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

/// Copies the workload's lines to `path`, each after the Unix time it was read, and returns
/// the time of its `growth_start` line (its own clock, which is the profiler's).
fn read_workload(stdout: ChildStdout, path: &Path) -> Result<Option<f64>> {
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

/// Whether the profiler has the forecaster's thresholds (`watch --warn`).
fn has_warn_option(profiler: &Path) -> Result<bool> {
    let output = Command::new(profiler)
        .args(["watch", "--help"])
        .output()
        .with_context(|| format!("running {} watch --help", profiler.display()))?;
    if !output.status.success() {
        bail!(
            "{} watch --help failed ({})",
            profiler.display(),
            output.status
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).contains("--warn"))
}

/// Sends `signal` to a child we started (unless it has ended) and waits up to `grace` for it,
/// then SIGKILLs it. Returns its status and whether it had to be killed.
fn stop(child: &mut Child, signal: libc::c_int, grace: Duration) -> Result<(ExitStatus, bool)> {
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

/// The file the page-cache scenario reads: on the target directory's (disk) file system, not
/// tmpfs, whose pages would be shmem charged to whoever wrote them. Removed when dropped.
struct PagecacheFile {
    path: PathBuf,
}

impl PagecacheFile {
    /// Writes `mib` MiB to `<dir>/pagecache.data` (from this process, outside the test cgroups)
    /// and flushes it to disk.
    fn create(dir: &Path, mib: u64) -> Result<Self> {
        let path = dir.join("pagecache.data");
        let this = Self { path };
        let mut file = BufWriter::new(
            File::create(&this.path)
                .with_context(|| format!("creating {}", this.path.display()))?,
        );
        let chunk: Vec<u8> = (0..1 << 20).map(|i: u32| (i % 251) as u8).collect();
        for _ in 0..mib {
            file.write_all(&chunk)
                .with_context(|| format!("writing {}", this.path.display()))?;
        }
        let file = file.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()
            .with_context(|| format!("syncing {}", this.path.display()))?;
        Ok(this)
    }

    /// Evicts the file's (clean) pages from the page cache, so each run reads it from disk and
    /// its cgroup is charged for the cache.
    fn drop_from_cache(&self) -> Result<()> {
        let file =
            File::open(&self.path).with_context(|| format!("opening {}", self.path.display()))?;
        // SAFETY: fadvise on a descriptor we own; offset 0, length 0 means the whole file.
        let rc = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        if rc != 0 {
            bail!(
                "posix_fadvise(DONTNEED) on {}: {}",
                self.path.display(),
                std::io::Error::from_raw_os_error(rc)
            );
        }
        Ok(())
    }
}

impl Drop for PagecacheFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}
