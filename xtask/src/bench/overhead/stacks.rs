//! The cost of charge stacks on top of charge tracing: `profiler watch` against `profiler
//! watch --stacks` (the default interval), alternating, on the same workload; and what one
//! sample costs, from the time the workload lost and the samples the profiler reported.
use std::{
    io::{BufRead as _, BufReader},
    process::{Command, Stdio},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    thread::JoinHandle,
};

use anyhow::{bail, Context as _, Result};

use super::{super::median, super::spread, workload_figure};
use crate::{
    build::Binaries,
    memcg::{interrupt, Process, TempMemcg},
};

/// A watch of the cgroup, with or without stacks, counting the samples it reports.
struct Watch {
    process: Process,
    samples: Arc<AtomicU64>,
    lost: Arc<AtomicU64>,
    reader: JoinHandle<()>,
}

fn start(bins: &Binaries, cgroup: &TempMemcg, stacks: bool) -> Result<Watch> {
    let mut cmd = Command::new(&bins.profiler);
    cmd.args(["watch", "--json", "--cgroup"]).arg(cgroup.path());
    if stacks {
        cmd.arg("--stacks");
    }
    let mut process = Process(
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("starting the profiler")?,
    );
    let stdout = process.0.stdout.take().context("profiler stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    // The first line (`watch_start`) comes after every program is attached.
    match lines.next() {
        Some(Ok(_)) => {}
        _ => bail!("the profiler (stacks: {stacks}) did not start"),
    }
    let samples = Arc::new(AtomicU64::new(0));
    let lost = Arc::new(AtomicU64::new(0));
    let (s, l) = (Arc::clone(&samples), Arc::clone(&lost));
    let reader = std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            let kind = |t: &str| line.contains(&format!("\"type\":\"{t}\""));
            if !(kind("charge_stacks") || kind("lost_events")) {
                continue;
            }
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            if kind("charge_stacks") {
                s.fetch_add(v["samples"].as_u64().unwrap_or(0), Ordering::Relaxed);
            } else if v["source"] == "charge_stacks" {
                l.fetch_add(v["count"].as_u64().unwrap_or(0), Ordering::Relaxed);
            }
        }
    });
    Ok(Watch {
        process,
        samples,
        lost,
        reader,
    })
}

/// What the workload of one run gave, and what the watch reported.
struct Run {
    figure: f64,
    samples: u64,
    lost: u64,
}

fn run_once(
    bins: &Binaries,
    cgroup: &TempMemcg,
    stacks: bool,
    args: &[String],
    key: &str,
) -> Result<Run> {
    let mut watch = start(bins, cgroup, stacks)?;
    let figure = workload_figure(bins, cgroup, args, key);
    // The last round's line is written when the watch ends.
    interrupt(&mut watch.process.0)?;
    let _ = watch.reader.join();
    Ok(Run {
        figure: figure?,
        samples: watch.samples.load(Ordering::Relaxed),
        lost: watch.lost.load(Ordering::Relaxed),
    })
}

/// How much work one run of a workload is, to turn its rate into time.
#[derive(Clone, Copy)]
pub(crate) enum Work {
    /// A fixed number of operations (pages): the run's time is this over the rate.
    Ops(f64),
    /// A fixed time, seconds: the rate says how much of it went to the workload.
    Seconds(f64),
}

impl Work {
    /// Seconds the workload lost with stacks, given the rates without and with them.
    fn lost_s(self, base: f64, stacked: f64) -> f64 {
        match self {
            Work::Ops(ops) => ops / stacked - ops / base,
            Work::Seconds(s) => s * (1.0 - stacked / base),
        }
    }
}

/// Alternates a watch without and with stacks on the workload `args` (`runs` each; the order
/// flips every round), and prints the figures, the ratio against `goal`, and the cost of one
/// sample: the time the workload lost to stacks in a round, over the samples taken then.
pub(crate) fn compare(
    bins: &Binaries,
    cgroup: &TempMemcg,
    runs: usize,
    title: &str,
    (unit, key): (&str, &str),
    (args, work): (&[&str], Work),
    goal: f64,
) -> Result<()> {
    let args: Vec<String> = args.iter().map(|&a| a.to_owned()).collect();
    let mut without = Vec::with_capacity(runs);
    let mut with = Vec::with_capacity(runs);
    for round in 0..runs {
        for stacks in [round % 2 == 1, round % 2 == 0] {
            let run = run_once(bins, cgroup, stacks, &args, key)?;
            if stacks {
                with.push(run);
            } else {
                without.push(run);
            }
        }
        eprint!(".");
    }
    eprintln!();
    let figures = |runs: &[Run]| runs.iter().map(|r| r.figure).collect::<Vec<_>>();
    let (base, stacked) = (figures(&without), figures(&with));
    println!("{title}");
    println!(
        "  {:<28} {:>5} {:>14} {:>27}",
        "mode",
        "runs",
        format!("median {unit}"),
        "min .. max"
    );
    for (label, values) in [
        ("profiler watch", &base),
        ("profiler watch --stacks", &stacked),
    ] {
        let (lo, hi) = spread(values);
        println!(
            "  {label:<28} {:>5} {:>14.1} {lo:>13.1} .. {hi:<13.1}",
            values.len(),
            median(values)
        );
    }
    let ratio = median(&stacked) / median(&base);
    println!("  stacks / watch          {ratio:.3}   (goal >= {goal:.2})");
    let per_round: Vec<f64> = stacked.iter().zip(&base).map(|(s, b)| s / b).collect();
    let (lo, hi) = spread(&per_round);
    println!(
        "  stacks / watch per round: median {:.3}, min {lo:.3}, max {hi:.3}",
        median(&per_round)
    );
    let samples: Vec<f64> = with.iter().map(|r| r.samples as f64).collect();
    let lost: u64 = with.iter().map(|r| r.lost).sum();
    let (lo, hi) = spread(&samples);
    println!(
        "  samples per run: median {:.0} ({lo:.0} .. {hi:.0}); lost (ring full): {lost}",
        median(&samples)
    );
    // Per round, so a slow stretch of the machine weighs on both modes alike.
    let per_sample_us: Vec<f64> = with
        .iter()
        .zip(&without)
        .filter(|(w, _)| w.samples > 0)
        .map(|(w, b)| work.lost_s(b.figure, w.figure) / w.samples as f64 * 1e6)
        .collect();
    if per_sample_us.is_empty() {
        println!("  no sample was taken: the cost of one cannot be told");
    } else {
        let (lo, hi) = spread(&per_sample_us);
        println!(
            "  workload time lost per sample: median {:.1} us ({lo:.1} .. {hi:.1}; noise \
             makes single rounds negative)",
            median(&per_sample_us)
        );
    }
    Ok(())
}
