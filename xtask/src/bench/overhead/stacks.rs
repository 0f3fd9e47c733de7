//! The cost of charge stacks on top of charge tracing: `profiler watch` against `profiler
//! watch --stacks` (the default interval), alternating, on the same workload; and what one
//! sample costs, two ways: from the time the workload lost and the samples the profiler
//! reported (noisy on a shared machine), and from the kernel's own count of the time spent in
//! the charge programs (`kernel.bpf_stats_enabled`, read with `bpftool`), which the stacks
//! add to.
use std::{
    process::{Command, Stdio},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    thread::JoinHandle,
};

use anyhow::Result;

use super::{super::median, super::spread, start_profiler, workload_figure};
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
    cmd.stderr(Stdio::null());
    let (process, lines) = start_profiler(&mut cmd, &format!("stacks: {stacks}"))?;
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
    /// Time the kernel spent in the charge programs during the run, ns (`None`: unknown).
    kernel_ns: Option<u64>,
}

/// Turns the kernel's run-time statistics of BPF programs on for the benchmark and back to
/// what they were when dropped.
pub(crate) struct BpfStats {
    before: Option<String>,
}

const BPF_STATS: &str = "/proc/sys/kernel/bpf_stats_enabled";

impl BpfStats {
    /// On; `None` (said once) when the sysctl cannot be written.
    pub(crate) fn enable() -> Option<Self> {
        let before = std::fs::read_to_string(BPF_STATS).ok();
        match std::fs::write(BPF_STATS, "1") {
            Ok(()) => Some(Self { before }),
            Err(e) => {
                println!("  ({BPF_STATS}: {e}; the kernel time per sample is not measured)");
                None
            }
        }
    }
}

impl Drop for BpfStats {
    fn drop(&mut self) {
        let before = self.before.as_deref().map_or("0", str::trim);
        let _ = std::fs::write(BPF_STATS, before);
    }
}

/// Whether a program (its name as bpftool gives it, cut to 15 characters) is one of the
/// charge path's: `memcg_lruvec_state`, `memcg_state`, `memcg_events` and their fentry and
/// kprobe twins. The reclaim programs are not.
fn is_charge_program(name: &str) -> bool {
    let name = name
        .strip_prefix("fentry_")
        .or_else(|| name.strip_prefix("kprobe_"))
        .unwrap_or(name);
    name.starts_with("memcg_") && !name.starts_with("memcg_reclaim")
}

/// Nanoseconds the kernel spent in charge programs loaded at or after `since` (Unix seconds):
/// the watch of this run (the benchmark runs alone).
fn charge_run_ns(since: u64) -> Option<u64> {
    let out = Command::new("bpftool")
        .args(["prog", "show", "-j"])
        .output()
        .ok()?;
    let programs: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    let total = programs
        .as_array()?
        .iter()
        .filter(|p| p["loaded_at"].as_u64().is_some_and(|t| t >= since))
        .filter(|p| p["name"].as_str().is_some_and(is_charge_program))
        .filter_map(|p| p["run_time_ns"].as_u64())
        .sum();
    Some(total)
}

fn unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn run_once(
    bins: &Binaries,
    cgroup: &TempMemcg,
    stacks: bool,
    args: &[String],
    key: &str,
) -> Result<Run> {
    let since = unix_secs();
    let mut watch = start(bins, cgroup, stacks)?;
    let before = charge_run_ns(since);
    let figure = workload_figure(bins, cgroup, args, key);
    let after = charge_run_ns(since);
    // The last round's line is written when the watch ends.
    interrupt(&mut watch.process.0)?;
    let _ = watch.reader.join();
    Ok(Run {
        figure: figure?,
        samples: watch.samples.load(Ordering::Relaxed),
        lost: watch.lost.load(Ordering::Relaxed),
        kernel_ns: before.zip(after).map(|(b, a)| a.saturating_sub(b)),
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
    let stats = BpfStats::enable();
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
    if stats.is_some() {
        print_kernel_time(&without, &with, work);
    }
    drop(stats);
    Ok(())
}

/// The kernel's own count of the time in the charge programs: without and with stacks, what
/// one sample adds, and that as a share of the workload's run.
fn print_kernel_time(without: &[Run], with: &[Run], work: Work) {
    let ms = |runs: &[Run]| -> Vec<f64> {
        runs.iter()
            .filter_map(|r| r.kernel_ns)
            .map(|ns| ns as f64 / 1e6)
            .collect()
    };
    let (base, stacked) = (ms(without), ms(with));
    if base.is_empty() || stacked.is_empty() {
        println!("  kernel time in the charge programs: not measured (bpftool missing?)");
        return;
    }
    let per_sample_us: Vec<f64> = with
        .iter()
        .filter(|r| r.samples > 0)
        .filter_map(|r| r.kernel_ns.map(|ns| (ns, r.samples)))
        .map(|(ns, samples)| (ns as f64 / 1e6 - median(&base)) * 1e3 / samples as f64)
        .collect();
    println!(
        "  kernel time in the charge programs per run (bpf_stats): median {:.1} ms without \
         stacks, {:.1} ms with",
        median(&base),
        median(&stacked)
    );
    if !per_sample_us.is_empty() {
        let (lo, hi) = spread(&per_sample_us);
        let run_s = match work {
            Work::Ops(ops) => ops / median(&with.iter().map(|r| r.figure).collect::<Vec<_>>()),
            Work::Seconds(s) => s,
        };
        let added_ms = median(&stacked) - median(&base);
        println!(
            "  kernel time per sample: median {:.2} us ({lo:.2} .. {hi:.2}); the stacks' \
             kernel time is {:.2} % of the workload's run",
            median(&per_sample_us),
            added_ms / (run_s * 1e3) * 100.0
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_charge_programs_are_told_by_their_names_in_every_mode() {
        // As bpftool gives them: cut to 15 characters.
        for name in [
            "memcg_lruvec_st",
            "memcg_state",
            "memcg_events",
            "fentry_memcg_lr",
            "kprobe_memcg_st",
        ] {
            assert!(is_charge_program(name), "{name}");
        }
        for name in [
            "memcg_reclaim_b",
            "mark_victim",
            "sched_process_e",
            "fentry_other",
        ] {
            assert!(!is_charge_program(name), "{name}");
        }
    }
}
