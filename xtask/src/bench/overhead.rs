//! `cargo xtask bench overhead`: what the profiler costs the workloads it watches.
//!
//! The machine is shared and noisy, so modes alternate run by run (the order rotates each
//! round), every mode gets the same number of runs, and medians with min–max are printed.
use std::{
    io::{BufRead as _, BufReader, Read as _},
    process::{Command, Stdio},
};

use anyhow::{bail, Context as _, Result};

use super::{median, spread};
use crate::{
    build::Binaries,
    memcg::{interrupt, Process, TempMemcg},
};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Attached {
    Nothing,
    Floor,
    Profiler,
}

impl Attached {
    fn label(self) -> &'static str {
        match self {
            Attached::Nothing => "no profiler",
            Attached::Floor => "empty programs (floor)",
            Attached::Profiler => "profiler watch",
        }
    }
}

/// Starts what `mode` attaches, watching `cgroup`; returns once it is attached.
fn attach(bins: &Binaries, mode: Attached, cgroup: &TempMemcg) -> Result<Option<Process>> {
    let mut cmd = Command::new(&bins.profiler);
    match mode {
        Attached::Nothing => return Ok(None),
        Attached::Floor => cmd.arg("attach-floor"),
        Attached::Profiler => cmd
            .arg("watch")
            .arg("--json")
            .arg("--cgroup")
            .arg(cgroup.path()),
    };
    let mut process = Process(
        cmd.stdout(Stdio::piped())
            .spawn()
            .context("starting the profiler")?,
    );
    let stdout = process.0.stdout.take().context("profiler stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    // The first line (`attached`, or `watch_start`) comes after every program is attached.
    match lines.next() {
        Some(Ok(_)) => {}
        _ => bail!("the profiler ({mode:?}) did not start"),
    }
    // Keep draining its output so it never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Ok(Some(process))
}

/// Runs the workload once in the cgroup and returns the figure it prints after `key=`.
fn workload_figure(bins: &Binaries, cgroup: &TempMemcg, args: &[String], key: &str) -> Result<f64> {
    let mut process = cgroup.spawn(
        Command::new(&bins.workload)
            .args(args)
            .stdout(Stdio::piped()),
    )?;
    let mut text = String::new();
    process
        .0
        .stdout
        .take()
        .context("workload stdout")?
        .read_to_string(&mut text)?;
    let status = process.0.wait().context("waiting for the workload")?;
    if !status.success() {
        bail!("workload {args:?} failed ({status})");
    }
    text.split_whitespace()
        .find_map(|w| w.strip_prefix(key).and_then(|v| v.parse().ok()))
        .with_context(|| format!("no {key} in the workload's output: {text}"))
}

/// Alternates `modes` for `runs` rounds and returns each mode's figures.
fn alternate(
    bins: &Binaries,
    cgroup: &TempMemcg,
    modes: &[Attached],
    runs: usize,
    args: &[String],
    key: &str,
) -> Result<Vec<Vec<f64>>> {
    let mut figures = vec![Vec::with_capacity(runs); modes.len()];
    for round in 0..runs {
        for k in 0..modes.len() {
            let i = (round + k) % modes.len();
            let attached = attach(bins, modes[i], cgroup)?;
            let figure = workload_figure(bins, cgroup, args, key)?;
            if let Some(mut p) = attached {
                interrupt(&mut p.0)?;
            }
            figures[i].push(figure);
        }
        eprint!(".");
    }
    eprintln!();
    Ok(figures)
}

fn print_table(title: &str, unit: &str, modes: &[Attached], figures: &[Vec<f64>]) {
    println!("{title}");
    println!(
        "  {:<24} {:>5} {:>14} {:>27}",
        "mode",
        "runs",
        &format!("median {unit}"),
        "min .. max"
    );
    for (mode, values) in modes.iter().zip(figures) {
        let (min, max) = spread(values);
        println!(
            "  {:<24} {:>5} {:>14.1} {:>13.1} .. {:<13.1}",
            mode.label(),
            values.len(),
            median(values),
            min,
            max
        );
    }
}

/// Alternates the workload `args` with and without `profiler watch`, and prints its figure
/// (`unit`, printed by the workload after `key`) and the ratio with/without against `goal`.
#[allow(
    clippy::too_many_arguments,
    reason = "one table's title, figure, workload and goal"
)]
fn with_and_without(
    bins: &Binaries,
    cgroup: &TempMemcg,
    runs: usize,
    title: &str,
    (unit, key): (&str, &str),
    args: &[&str],
    goal: f64,
) -> Result<()> {
    let modes = [Attached::Nothing, Attached::Profiler];
    let args: Vec<String> = args.iter().map(|&a| a.to_owned()).collect();
    let figures = alternate(bins, cgroup, &modes, runs, &args, key)?;
    print_table(title, unit, &modes, &figures);
    println!(
        "  profiler / none         {:.3}   (goal >= {goal:.2})",
        median(&figures[1]) / median(&figures[0])
    );
    let per_round: Vec<f64> = figures[1]
        .iter()
        .zip(&figures[0])
        .map(|(p, n)| p / n)
        .collect();
    let (lo, hi) = spread(&per_round);
    println!(
        "  profiler / none per round: median {:.3}, min {lo:.3}, max {hi:.3}",
        median(&per_round)
    );
    Ok(())
}

/// Runs the overhead benchmark.
pub(super) fn run(
    bins: &Binaries,
    runs: usize,
    mib: u64,
    iters: u64,
    json_seconds: u64,
    deaths_seconds: u64,
) -> Result<()> {
    let cgroup = TempMemcg::new("profiler-bench", 2 << 30)?;
    println!(
        "overhead benchmark, {runs} runs per mode, modes alternating; cgroup {}",
        cgroup.path().display()
    );

    let modes = [Attached::Nothing, Attached::Floor, Attached::Profiler];
    let args: Vec<String> = [
        "pagefault",
        "--mib",
        &mib.to_string(),
        "--iters",
        &iters.to_string(),
    ]
    .map(String::from)
    .to_vec();
    let faults = alternate(bins, &cgroup, &modes, runs, &args, "pages_per_sec=")?;
    print_table(
        &format!("page-fault workload (mmap {mib} MiB, touch every page, munmap; x{iters})"),
        "pages/s",
        &modes,
        &faults,
    );
    let [none, floor, profiler] = [median(&faults[0]), median(&faults[1]), median(&faults[2])];
    println!("  floor / none            {:.3}", floor / none);
    println!("  profiler / none         {:.3}", profiler / none);
    println!(
        "  profiler / floor        {:.3}   (goal >= 0.97)",
        profiler / floor
    );
    // Ratios per round (same round, adjacent runs) show how much of the spread is the machine.
    let per_round: Vec<f64> = faults[2]
        .iter()
        .zip(&faults[1])
        .map(|(p, f)| p / f)
        .collect();
    let (lo, hi) = spread(&per_round);
    println!(
        "  profiler / floor per round: median {:.3}, min {lo:.3}, max {hi:.3}",
        median(&per_round)
    );

    let seconds = json_seconds.to_string();
    with_and_without(
        bins,
        &cgroup,
        runs,
        &format!(
            "allocation-heavy workload (build, serialize, parse JSON documents; {json_seconds} s)"
        ),
        ("docs/s", "docs_per_sec="),
        &["json-churn", "--seconds", &seconds],
        0.99,
    )?;
    // The deaths' hooks fire on every exit and every SIGKILL or SIGTERM on the node: their
    // cost is the workloads that exit and signal most.
    let seconds = deaths_seconds.to_string();
    with_and_without(
        bins,
        &cgroup,
        runs,
        &format!("fork/exit-heavy workload (run /bin/true in a loop; {deaths_seconds} s)"),
        ("runs/s", "spawns_per_sec="),
        &["spawn", "--seconds", &seconds],
        0.98,
    )?;
    with_and_without(
        bins,
        &cgroup,
        runs,
        &format!(
            "signal-heavy workload (kill(2) SIGUSR1 to an ignoring child; {deaths_seconds} s)"
        ),
        ("signals/s", "signals_per_sec="),
        &["signals", "--signal", "usr1", "--seconds", &seconds],
        0.98,
    )?;
    with_and_without(
        bins,
        &cgroup,
        runs,
        &format!(
            "SIGTERM flood (kill(2) SIGTERM to an ignoring child, each one reported; \
             {deaths_seconds} s)"
        ),
        ("signals/s", "signals_per_sec="),
        &["signals", "--signal", "term", "--seconds", &seconds],
        0.98,
    )?;
    Ok(())
}
