//! `cargo xtask bench forecast`: the scenarios of [`super::scenario`] run for real, each in a
//! fresh memory cgroup with `profiler watch --json` recording, then evaluated
//! ([`super::evaluate`]) and printed as one table ([`super::report`]).
//!
//! Every recording is kept in `<target>/bench-forecast/<nn>-<scenario>-run<k>.jsonl`, beside
//! the lines of the scenario's program (`.workload.txt`, each prefixed with the Unix time it
//! was read), so forecaster tests can be cut from them. The runtimes' programs are written
//! (and the Java one compiled) in `<target>/bench-forecast/runtimes`.
mod children;
mod pagecache;

use std::{
    fs,
    os::unix::process::ExitStatusExt as _,
    path::Path,
    process::{Command, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};

use self::{
    children::{read_workload, record, stop},
    pagecache::PagecacheFile,
};
use super::{
    evaluate::{evaluate, judge, Evaluation, Settings, Trace},
    report::{self, Row},
    runtimes::{Launcher, Runtimes},
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
    if let Some(bad) = only.iter().find(|&&n| !is_scenario(n)) {
        bail!(
            "--only {bad}: the scenarios are numbered 1 to {}",
            SCENARIOS.len()
        );
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
    let runtimes = Runtimes::prepare(&out.join("runtimes"), scenarios.iter().copied())?;
    let launcher = Launcher {
        workload: &bins.workload,
        pagecache_file: pagecache
            .as_ref()
            .map_or(Path::new(""), PagecacheFile::path),
        runtimes: &runtimes,
    };

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
            let recorded = run_once(
                &bins.profiler,
                scenario,
                run,
                &out,
                &launcher,
                pagecache.as_ref(),
                forecaster,
            )
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
         predict_linear's include the program's start, when its baseline arrives within a \
         second)."
    );
    println!(
        "{}",
        report::goals(scenarios.iter().map(|s| (s.number, s.goal)))
    );
    if !runtimes.versions().is_empty() {
        println!("runtimes: {}", runtimes.versions().join("; "));
    }
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

/// Whether `number` names a scenario.
fn is_scenario(number: u8) -> bool {
    SCENARIOS.iter().any(|s| s.number == number)
}

/// Runs one scenario once: a fresh cgroup, the profiler recording, the scenario's program,
/// evaluation.
fn run_once(
    profiler: &Path,
    scenario: &Scenario,
    run: usize,
    out: &Path,
    launcher: &Launcher<'_>,
    pagecache: Option<&PagecacheFile>,
    forecaster: bool,
) -> Result<Recorded> {
    let name = format!("{}-run{run}", scenario.name());
    let jsonl = out.join(format!("{name}.jsonl"));
    let workload_log = out.join(format!("{name}.workload.txt"));
    if scenario.number == 5 {
        // Pages left in memory would be read without being charged to the new cgroup.
        pagecache.context("no page-cache file")?.drop_from_cache()?;
    }
    let memcg = TempMemcg::new(
        &format!("profiler-forecast-{:02}", scenario.number),
        scenario.limit_mib << 20,
    )?;

    let mut command = Command::new(profiler);
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

    let mut workload = memcg.spawn(launcher.command(scenario).stdout(Stdio::piped()))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_takes_the_numbers_of_the_twelve_scenarios() {
        assert!(check_arguments(1, &[]).is_ok());
        assert!(check_arguments(2, &[1, 9, 10, 11, 12]).is_ok());
        for bad in [0, 13] {
            let error = check_arguments(1, &[5, bad]).expect_err("not a scenario");
            assert_eq!(
                error.to_string(),
                format!("--only {bad}: the scenarios are numbered 1 to 12")
            );
        }
        assert!(check_arguments(0, &[1]).is_err());
    }
}
