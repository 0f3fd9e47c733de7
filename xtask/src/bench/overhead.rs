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

/// How a workload's table ends: the ratio to hold against a goal, and whether the cost of each
/// operation (the workload's figure is operations per second) is worth printing.
struct Verdict {
    /// The workload's figure with the profiler over the figure with the empty programs (the
    /// hooks' own cost taken out) must be at least this; `None` for a worst case shown only.
    goal: Option<f64>,
    /// Print the time each operation gained, in ns: useful where the figure is a rate of
    /// single events (exits, signals), not where it is a rate of pages or documents.
    per_op: bool,
}

/// Alternates the workload `args` with no programs, the empty programs and `profiler watch`,
/// and prints its figure (`unit`, printed by the workload after `key`), the ratios and, per
/// [`Verdict`], the goal and the cost of one operation.
fn compare(
    bins: &Binaries,
    cgroup: &TempMemcg,
    runs: usize,
    title: &str,
    (unit, key): (&str, &str),
    args: &[&str],
    verdict: Verdict,
) -> Result<()> {
    let modes = [Attached::Nothing, Attached::Floor, Attached::Profiler];
    let args: Vec<String> = args.iter().map(|&a| a.to_owned()).collect();
    let figures = alternate(bins, cgroup, &modes, runs, &args, key)?;
    print_table(title, unit, &modes, &figures);
    let [none, floor, profiler] = [
        median(&figures[0]),
        median(&figures[1]),
        median(&figures[2]),
    ];
    println!("  floor / none            {:.3}", floor / none);
    println!("  profiler / none         {:.3}", profiler / none);
    match verdict.goal {
        Some(goal) => println!(
            "  profiler / floor        {:.3}   (goal >= {goal:.2})",
            profiler / floor
        ),
        None => println!(
            "  profiler / floor        {:.3}   (a worst case, no goal)",
            profiler / floor
        ),
    }
    // Ratios per round (same round, adjacent runs) show how much of the spread is the machine.
    let per_round: Vec<f64> = figures[2]
        .iter()
        .zip(&figures[1])
        .map(|(p, f)| p / f)
        .collect();
    let (lo, hi) = spread(&per_round);
    println!(
        "  profiler / floor per round: median {:.3}, min {lo:.3}, max {hi:.3}",
        median(&per_round)
    );
    if verdict.per_op {
        let added_ns = |rate: f64| (1.0 / rate - 1.0 / none) * 1e9;
        println!(
            "  time added per operation (medians): hooks {:.0} ns, profiler {:.0} ns \
             (of {:.0} ns)",
            added_ns(floor),
            added_ns(profiler),
            1e9 / none
        );
    }
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

    let (mib_arg, iters_arg) = (mib.to_string(), iters.to_string());
    compare(
        bins,
        &cgroup,
        runs,
        &format!("page-fault workload (mmap {mib} MiB, touch every page, munmap; x{iters})"),
        ("pages/s", "pages_per_sec="),
        &["pagefault", "--mib", &mib_arg, "--iters", &iters_arg],
        Verdict {
            goal: Some(0.97),
            per_op: false,
        },
    )?;

    let seconds = json_seconds.to_string();
    compare(
        bins,
        &cgroup,
        runs,
        &format!(
            "allocation-heavy workload (build, serialize, parse JSON documents; {json_seconds} s)"
        ),
        ("docs/s", "docs_per_sec="),
        &["json-churn", "--seconds", &seconds],
        Verdict {
            goal: Some(0.99),
            per_op: false,
        },
    )?;
    // The deaths' hooks fire on every exit and every SIGKILL or SIGTERM on the node: their
    // cost is the workloads that exit and signal most.
    let seconds = deaths_seconds.to_string();
    compare(
        bins,
        &cgroup,
        runs,
        &format!("fork/exit-heavy workload (run /bin/true in a loop; {deaths_seconds} s)"),
        ("runs/s", "spawns_per_sec="),
        &["spawn", "--seconds", &seconds],
        Verdict {
            goal: Some(0.98),
            per_op: true,
        },
    )?;
    compare(
        bins,
        &cgroup,
        runs,
        &format!(
            "signal-heavy workload (kill(2) SIGUSR1 to an ignoring child; {deaths_seconds} s)"
        ),
        ("signals/s", "signals_per_sec="),
        &["signals", "--signal", "usr1", "--seconds", &seconds],
        Verdict {
            goal: Some(0.98),
            per_op: true,
        },
    )?;
    compare(
        bins,
        &cgroup,
        runs,
        &format!(
            "SIGTERM flood (kill(2) SIGTERM to an ignoring child, each counted in a map; \
             {deaths_seconds} s)"
        ),
        ("signals/s", "signals_per_sec="),
        &["signals", "--signal", "term", "--seconds", &seconds],
        Verdict {
            goal: None,
            per_op: true,
        },
    )?;
    Ok(())
}
