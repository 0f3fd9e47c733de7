//! The twelve scenarios of `cargo xtask bench forecast`: a limit, a program and a goal each.
//! Scenarios 1–9 run the tests crate's `workload` (see `workload help`); 10–12 run a real JVM
//! or Node.js ([`super::runtimes`]) with a heap ceiling on its command line.
//!
//! Time-compressed: every program holds a baseline for 25 s, longer than the forecaster's
//! 20 s learning time, then grows; those that end in an OOM kill are sized so the kill comes
//! about 60–90 s after the growth starts.
use std::{path::Path, time::Duration};

use super::{
    evaluate::Goal,
    runtimes::{Program, Runtime},
};

/// The quiet phase of every workload, seconds.
const HOLD_S: &str = "25";
/// The baseline every workload touches first, MiB.
const BASELINE_MIB: &str = "16";

/// One scenario.
pub(super) struct Scenario {
    /// 1–12: 1–9 as the forecast's issue numbers them, 10–12 the runtimes' issue's.
    pub number: u8,
    /// For file names and the table.
    pub slug: &'static str,
    /// The memory cgroup's limit, MiB.
    pub limit_mib: u64,
    /// Whether the workload is meant to be OOM-killed.
    pub expect_oom: bool,
    /// How long the workload runs: no-OOM scenarios are stopped then; OOM scenarios that are
    /// still alive then are stopped and reported as not killed.
    pub duration: Duration,
    pub goal: Goal,
    pub program: Program,
}

/// The page-cache scenario's file, this many times its limit.
pub(super) const PAGECACHE_FILE_FACTOR: u64 = 2;

/// Every scenario, in the issues' order.
pub(super) const SCENARIOS: [Scenario; 12] = [
    Scenario {
        number: 1,
        slug: "linear-leak",
        limit_mib: 128,
        expect_oom: true,
        duration: Duration::from_secs(180),
        goal: Goal::EarlyAndAccurate,
        program: Program::Workload,
    },
    Scenario {
        number: 2,
        slug: "accelerating-leak",
        limit_mib: 128,
        expect_oom: true,
        duration: Duration::from_secs(180),
        goal: Goal::EarlyAndAccurate,
        program: Program::Workload,
    },
    Scenario {
        number: 3,
        slug: "sawtooth-rising",
        limit_mib: 256,
        expect_oom: true,
        duration: Duration::from_secs(180),
        goal: Goal::EarlyAndAccurate,
        program: Program::Workload,
    },
    Scenario {
        number: 4,
        slug: "sawtooth-85pct",
        limit_mib: 128,
        expect_oom: false,
        duration: Duration::from_secs(90),
        goal: Goal::NoWarning,
        program: Program::Workload,
    },
    Scenario {
        number: 5,
        slug: "page-cache",
        limit_mib: 96,
        expect_oom: false,
        duration: Duration::from_secs(90),
        goal: Goal::NoWarning,
        program: Program::Workload,
    },
    Scenario {
        number: 6,
        slug: "shmem-growth",
        limit_mib: 96,
        expect_oom: true,
        duration: Duration::from_secs(180),
        goal: Goal::EarlyAndAccurate,
        program: Program::Workload,
    },
    Scenario {
        number: 7,
        slug: "spike-2x",
        limit_mib: 64,
        expect_oom: true,
        duration: Duration::from_secs(60),
        goal: Goal::KillCaptured,
        program: Program::Workload,
    },
    Scenario {
        number: 8,
        slug: "steps",
        limit_mib: 128,
        expect_oom: true,
        duration: Duration::from_secs(180),
        goal: Goal::EarlyAndAccurate,
        program: Program::Workload,
    },
    Scenario {
        number: 9,
        slug: "multi-process",
        limit_mib: 192,
        expect_oom: true,
        duration: Duration::from_secs(180),
        goal: Goal::ReportOnly,
        program: Program::Workload,
    },
    Scenario {
        number: 10,
        slug: "jvm-leak",
        limit_mib: 256,
        expect_oom: true,
        duration: Duration::from_secs(180),
        goal: Goal::EarlyAndAccurate,
        program: Program::Runtime {
            runtime: Runtime::Java,
            // A max heap twice the limit: the kernel kills the JVM long before its own
            // OutOfMemoryError could fire.
            options: &["-Xmx512m"],
            // 2 MiB/s kept beside 16 MiB/s of garbage: the heap (and its young generation
            // with it) grows past the limit ~75 s after the growth start.
            args: &[
                "leak",
                "--baseline-mib",
                BASELINE_MIB,
                "--hold-s",
                HOLD_S,
                "--rate-kib-s",
                "2048",
                "--garbage-kib-s",
                "16384",
            ],
        },
    },
    Scenario {
        number: 11,
        slug: "node-leak",
        limit_mib: 256,
        expect_oom: true,
        duration: Duration::from_secs(180),
        goal: Goal::EarlyAndAccurate,
        program: Program::Runtime {
            runtime: Runtime::Node,
            // An old space twice the limit: V8 never gets to its own "heap out of memory".
            options: &["--max-old-space-size=512"],
            // 2.25 MiB/s kept beside 16 MiB/s of garbage: killed ~75 s after the growth start.
            args: &[
                "leak",
                "--baseline-mib",
                BASELINE_MIB,
                "--hold-s",
                HOLD_S,
                "--rate-kib-s",
                "2304",
                "--garbage-kib-s",
                "16384",
            ],
        },
    },
    Scenario {
        number: 12,
        slug: "jvm-warmup",
        limit_mib: 320,
        expect_oom: false,
        // The heap is full ~30 s after the growth start; then 45 s of steady state.
        duration: Duration::from_secs(100),
        goal: Goal::NoWarning,
        program: Program::Runtime {
            runtime: Runtime::Java,
            // The heap cannot pass 128 MiB, so the container stays far under its limit
            // however fast the heap warms up.
            options: &["-Xms128m", "-Xmx128m"],
            // 4.5 MiB/s allocated, the newest 40 MiB of it live: what outlives a young
            // collection fills the old generation at about that rate until the heap is
            // full (~30 s: the trend a forecaster without the ceiling warns on), then the
            // live set stays at 40 MiB and the rest is garbage.
            args: &[
                "warmup",
                "--baseline-mib",
                BASELINE_MIB,
                "--hold-s",
                HOLD_S,
                "--rate-kib-s",
                "4608",
                "--live-mib",
                "40",
            ],
        },
    },
];

impl Scenario {
    /// `nn-slug`, e.g. `03-sawtooth-rising`.
    pub(super) fn name(&self) -> String {
        format!("{:02}-{}", self.number, self.slug)
    }

    /// The workload's arguments (none for a scenario of a runtime); `pagecache_file` is the
    /// file scenario 5 reads.
    pub(super) fn workload_args(&self, pagecache_file: &Path) -> Vec<String> {
        let quiet = ["--baseline-mib", BASELINE_MIB, "--hold-s", HOLD_S];
        let file = pagecache_file.to_string_lossy();
        let (comm, mode, own): (&str, &str, Vec<&str>) = match self.number {
            // ~110 MiB of headroom at 1 MiB per 0.6 s: killed ~66 s after the growth start.
            1 => (
                "fc-leak",
                "leak",
                vec!["--step-mib", "1", "--interval-ms", "600"],
            ),
            // 560 KiB/s doubling every 30 s: 110 MiB after ~75 s (at 3 MiB/s by then).
            2 => (
                "fc-accel",
                "accelerate",
                vec!["--rate-kib-s", "560", "--double-s", "30"],
            ),
            // 64 → 128 MiB every 6 s from the start; from the first cycle after 25 s (30 s)
            // the floor rises 10 MiB per cycle: the peak reaches 256 MiB after ~13 cycles,
            // ~75 s after the growth start.
            3 => {
                return to_strings(&[
                    "--comm",
                    "fc-saw-rise",
                    "sawtooth",
                    "--floor-mib",
                    "64",
                    "--peak-mib",
                    "128",
                    "--period-ms",
                    "6000",
                    "--floor-step-mib",
                    "10",
                    "--hold-s",
                    HOLD_S,
                    "--jitter-pct",
                    "2",
                ])
            }
            // 40 → 107 MiB (± 2 %) every 6 s, plus ~1.5 MiB of the process: peaks at ~85 %.
            4 => {
                return to_strings(&[
                    "--comm",
                    "fc-saw-flat",
                    "sawtooth",
                    "--floor-mib",
                    "40",
                    "--peak-mib",
                    "107",
                    "--period-ms",
                    "6000",
                    "--floor-step-mib",
                    "0",
                    "--jitter-pct",
                    "2",
                ])
            }
            // A 192 MiB file read at 64 MiB/s, over and over, under a 96 MiB limit.
            5 => (
                "fc-pagecache",
                "pagecache",
                vec!["--file", &file, "--mib-per-s", "64"],
            ),
            // ~78 MiB of headroom at 1 MiB per 0.9 s: killed ~70 s after the growth start.
            6 => (
                "fc-shmem",
                "shmem",
                vec!["--step-mib", "1", "--interval-ms", "900"],
            ),
            // Twice the limit at once.
            7 => ("fc-spike", "spike", vec!["--mib", "128"]),
            // 12 MiB every 8 s from 16 MiB: the 10th step, 72 s after the growth start, is
            // over 128 MiB.
            8 => (
                "fc-steps",
                "steps",
                vec!["--step-mib", "12", "--plateau-s", "8"],
            ),
            // Two holders of 32 MiB, a leaker from 16 MiB at 1 MiB per 0.6 s: ~107 MiB of
            // headroom, killed ~65 s after the growth start.
            9 => (
                "fc-multi",
                "multi",
                vec![
                    "--procs",
                    "3",
                    "--holder-mib",
                    "32",
                    "--step-mib",
                    "1",
                    "--interval-ms",
                    "600",
                ],
            ),
            _ => return Vec::new(),
        };
        let mut args = to_strings(&["--comm", comm, mode]);
        args.extend(to_strings(&quiet));
        args.extend(to_strings(&own));
        args
    }
}

fn to_strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|&a| a.to_owned()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenarios_are_numbered_in_order_with_limits_in_range() {
        for (index, scenario) in SCENARIOS.iter().enumerate() {
            assert_eq!(usize::from(scenario.number), index + 1);
            assert!((64..=320).contains(&scenario.limit_mib));
            assert!(scenario.duration <= Duration::from_secs(180));
            let args = scenario.workload_args(Path::new("/f"));
            match scenario.program {
                Program::Workload => assert_eq!(args[0], "--comm"),
                Program::Runtime { .. } => assert!(args.is_empty(), "{}", scenario.slug),
            }
        }
        assert!(SCENARIOS[4]
            .workload_args(Path::new("/f"))
            .contains(&"/f".to_owned()));
    }
}
