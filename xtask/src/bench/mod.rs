//! `cargo xtask bench`: benchmarks that print figures.
//!
//! - `overhead`: what the profiler costs the workloads it watches.
//! - `forecast`: how early and how well the profiler warns before OOM kills, against two
//!   baselines, on real workloads in real memory cgroups.
//! - `scale`: what `profiler watch --all` costs on a node of many containers.
//! - `churn`: the end-to-end churn test (`tests/tests/churn.rs`) run for minutes.
//! - `agent`: `profiler serve` on a node of many containers: how fast `/metrics` renders,
//!   whether scrapes delay the sampling, the agent's CPU and memory, and `/report`.
mod agent;
mod evaluate;
mod forecast;
mod overhead;
mod report;
mod runtimes;
mod scale;
mod scenario;

use anyhow::Result;
use clap::Subcommand;

use crate::{build, memcg::require_root, setup};

/// Which benchmark.
#[derive(Subcommand)]
pub(crate) enum Which {
    /// Page-fault microbenchmark, an allocation-heavy workload, and fork/exit- and signal-heavy
    /// ones (the deaths' hooks), with and without the profiler.
    Overhead {
        /// Runs per mode (at least 7 for a median worth reading).
        #[arg(long, default_value_t = 9)]
        runs: usize,
        /// Pages touched per page-fault run: mmap this many MiB, touch, munmap, `iters` times.
        #[arg(long, default_value_t = 64)]
        mib: u64,
        /// Iterations per page-fault run.
        #[arg(long, default_value_t = 40)]
        iters: u64,
        /// Seconds per allocation-heavy (JSON) run.
        #[arg(long, default_value_t = 3)]
        json_seconds: u64,
        /// Seconds per fork/exit-heavy and signal-heavy run.
        #[arg(long, default_value_t = 3)]
        deaths_seconds: u64,
        /// Only these parts (repeat): pagefault, agent, arm, json, spawn, signals, sigterm.
        #[arg(long, value_name = "PART")]
        only: Vec<String>,
    },
    /// Twelve growth scenarios in memory cgroups of 64–320 MiB: nine of the test workload
    /// (leaks, GC sawtooth, page cache, shmem, spike, steps, several processes) and three of
    /// real runtimes (a JVM and a Node.js leak with a heap ceiling above the limit, a JVM
    /// warming a heap that stays far under it), each recorded by `profiler watch --json`
    /// (about 20 minutes per run of all twelve): how early the profiler warns before the OOM
    /// kill, how right its ETA is, and its false warnings, beside `predict_linear` and a 90 %
    /// threshold computed from the same samples. Scenarios 10–12 need `java`, `javac` (OpenJDK)
    /// and `node` on PATH. Recordings go to <target>/bench-forecast.
    Forecast {
        /// Runs of each scenario.
        #[arg(long, default_value_t = 1)]
        runs: usize,
        /// Only these scenarios, by number (1–12), e.g. `--only 1,4,5` or `--only 10,11,12`.
        #[arg(long, value_delimiter = ',', num_args = 1..)]
        only: Vec<u8>,
    },
    /// The churn test for longer (10 containers made and removed a second, one in ten
    /// OOM-killed, while `watch --all` runs): prints the watch's resident memory and open
    /// descriptors every 5 s, and fails as the test does.
    Churn {
        /// Minutes of churn.
        #[arg(long, default_value_t = 10)]
        minutes: u64,
    },
    /// `profiler watch --all` on kubelet-like nodes of real memory cgroups (50, 500, 2000
    /// containers by default; the middle size again with the systemd driver's layout, with an
    /// OOM kill every half second, and with the JSON thrown away): CPU per 1 s interval, peak
    /// resident memory, descriptors, and the floor of reading the same files once.
    Scale {
        /// Node sizes, in containers.
        #[arg(long, value_delimiter = ',', num_args = 1.., default_values_t = [50, 500, 2000])]
        containers: Vec<usize>,
        /// Seconds measured per size, after the warm-up.
        #[arg(long, default_value_t = 20)]
        seconds: u64,
        /// Cgroups that are not containers to add to every node (e.g. 20000: a tree that must
        /// not slow the watch of the containers).
        #[arg(long, default_value_t = 0)]
        other_cgroups: usize,
    },
    /// `profiler serve --interval 1s` on the scale benchmark's kubelet-like node: how long
    /// `/metrics` takes to render (text and OpenMetrics; the goal is 50 ms for 500
    /// containers), whether scrapes (none, one a second, 8 clients in a loop; windows
    /// alternating) delay the 1 s sampling rounds, the agent's CPU and memory, `/report`, and
    /// its exit on SIGTERM.
    Agent {
        /// Containers on the node.
        #[arg(long, default_value_t = 500)]
        containers: usize,
        /// Sequential scrapes timed per format.
        #[arg(long, default_value_t = 30)]
        scrapes: usize,
        /// Seconds per scraping window (three kinds, three times each).
        #[arg(long, default_value_t = 20)]
        seconds: u64,
    },
}

/// Runs a benchmark.
pub(crate) fn run(which: Which) -> Result<()> {
    require_root("cargo xtask bench")?;
    // Arguments are checked before the (long) setup and build.
    if let Which::Forecast { runs, only } = &which {
        forecast::check_arguments(*runs, only)?;
    }
    if let Which::Agent {
        containers,
        scrapes,
        seconds,
    } = &which
    {
        agent::check_arguments(*containers, *scrapes, *seconds)?;
    }
    setup::run()?;
    let bins = build::run()?;
    match which {
        Which::Overhead {
            runs,
            mib,
            iters,
            json_seconds,
            deaths_seconds,
            only,
        } => overhead::run(
            &bins,
            runs,
            (mib, iters),
            (json_seconds, deaths_seconds),
            &only,
        ),
        Which::Forecast { runs, only } => forecast::run(&bins, runs, &only),
        Which::Scale {
            containers,
            seconds,
            other_cgroups,
        } => scale::run(&bins, &containers, seconds, other_cgroups),
        Which::Churn { minutes } => churn(&bins, minutes),
        Which::Agent {
            containers,
            scrapes,
            seconds,
        } => agent::run(&bins, containers, scrapes, seconds),
    }
}

/// Runs the churn test for `minutes`, its output shown.
fn churn(bins: &build::Binaries, minutes: u64) -> Result<()> {
    setup::run_cmd(
        std::process::Command::new("cargo")
            .current_dir(build::workspace_root())
            .args([
                "test",
                "--release",
                "-p",
                "profiler-e2e",
                "--test",
                "churn",
                "--",
                "--nocapture",
            ])
            .env("PROFILER_CHURN_SECONDS", (minutes * 60).to_string())
            .env("PROFILER_BIN", &bins.profiler)
            .env("PROFILER_STATIC_WORKLOAD", &bins.static_workload),
    )
}

/// The median of `values` (NaN when empty).
fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The smallest and largest of `values`.
fn spread(values: &[f64]) -> (f64, f64) {
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (min, max)
}
