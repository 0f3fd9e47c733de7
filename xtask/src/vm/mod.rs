//! `cargo xtask vm-test`: the profiler end to end on stock Debian LTS kernels (6.1 and 6.12,
//! which predate the memcg tracepoints), each booted under QEMU with pure cgroup v2.
//!
//! Per kernel: the newest package of the series is downloaded and its `vmlinuz` and zram
//! modules unpacked ([`kernels`], [`modules`]); one initramfs holds busybox, the release
//! binaries, the modules and `/init` ([`initramfs`]); the guest runs `profiler doctor`, watches
//! a leak in a 64 MiB cgroup to its OOM kill, measures the page-fault overhead of a watch, and
//! watches a leak that may swap to a zram device to its kill ([`qemu`], init.sh); the host
//! judges the JSON the guest sends back ([`verdict`]). Downloads and images are cached under
//! `<target>/vm/`; each guest's console log and results stay in `<target>/vm/runs/<kernel>/`.
mod apt;
pub(crate) mod backports;
mod initramfs;
mod kernels;
mod modules;
mod qemu;
mod verdict;

use std::{fmt::Write as _, path::Path, time::Duration};

use anyhow::{bail, Context as _, Result};

use crate::{build, memcg::require_root, setup};
use kernels::{Kernel, Series};
use verdict::Verdict;

/// Options of `cargo xtask vm-test`.
#[derive(Debug, clap::Args)]
pub(crate) struct Options {
    /// Boot only this kernel series (5.10, 6.1, 6.12, backports, sid); repeat for several.
    /// Default: all.
    #[arg(long = "kernel", value_name = "SERIES")]
    kernels: Vec<String>,
    /// Guests run at once. Each emulates on one core (instruction counting is
    /// single-threaded), so two use a two-core machine; their figures do not depend on it.
    #[arg(long, default_value_t = 2)]
    jobs: usize,
    /// Kill a guest that has not powered off after this long (e.g. 600s, 10m).
    #[arg(long, default_value = "20m", value_parser = parse_timeout)]
    timeout: Duration,
    /// Rounds of the overhead measurement (each: the page-fault workload once without and
    /// once with `profiler watch`).
    #[arg(long, default_value_t = 4)]
    rounds: u32,
    /// Run the guests on real time (multi-threaded TCG) instead of counting instructions:
    /// faster on an idle machine, but the overhead figure then follows the host's load.
    #[arg(long)]
    realtime: bool,
    /// Run only these scenarios of the guest (comma-separated: leak, kprobe, fentry, adaptive,
    /// group, early, ringloss, detach, pods, overhead, node, swap), and judge only their checks.
    #[arg(long, value_name = "SCENARIOS")]
    only: Option<String>,
    /// Extra words for the guests' kernel command line, e.g. `vmtest.limit_mib=128` or
    /// `vmtest.pf_mib=32` (init.sh lists the `vmtest.*` options).
    #[arg(long, value_name = "WORDS", allow_hyphen_values = true)]
    append: Option<String>,
}

impl Default for Options {
    /// What `cargo xtask test` runs: every kernel, the defaults of the command line.
    fn default() -> Self {
        Self {
            kernels: Vec::new(),
            jobs: 2,
            timeout: Duration::from_secs(1200),
            rounds: 4,
            realtime: false,
            only: None,
            append: None,
        }
    }
}

/// `600`, `600s` or `10m`.
fn parse_timeout(text: &str) -> Result<Duration, String> {
    let (number, scale) = match text.strip_suffix('m') {
        Some(minutes) => (minutes, 60),
        None => (text.strip_suffix('s').unwrap_or(text), 1),
    };
    match number.parse::<u64>() {
        Ok(n) if n > 0 => Ok(Duration::from_secs(n * scale)),
        _ => Err(format!(
            "`{text}` is not a time limit: use e.g. 600s or 10m"
        )),
    }
}

/// One guest's outcome, for the summary.
struct Outcome {
    kernel: Kernel,
    passed: bool,
    line: String,
}

/// The guest's scenarios (init.sh's `want NAME`), in the order it runs them.
const SCENARIOS: [&str; 12] = [
    "leak", "kprobe", "fentry", "adaptive", "group", "early", "ringloss", "detach", "pods",
    "overhead", "node", "swap",
];

/// The scenarios `--only` names, each one the guest knows.
fn scenarios(only: &str) -> Result<Vec<&str>> {
    let names: Vec<&str> = only.split(',').map(str::trim).collect();
    if let Some(unknown) = names.iter().find(|n| !SCENARIOS.contains(n)) {
        bail!(
            "--only: no scenario {unknown:?}; the scenarios are {}",
            SCENARIOS.join(", ")
        );
    }
    Ok(names)
}

/// Runs the VM test; fails when any check on any kernel fails.
pub(crate) fn run(options: Options) -> Result<()> {
    require_root("cargo xtask vm-test")?;
    let only = options.only.as_deref().map(scenarios).transpose()?;
    let series = if options.kernels.is_empty() {
        Series::ALL.to_vec()
    } else {
        options
            .kernels
            .iter()
            .map(|k| Series::parse(k))
            .collect::<Result<Vec<_>>>()?
    };
    setup::run()?;
    let bins = build::run()?;
    let root = build::workspace_root();
    let cache = build::target_dir(&root)?.join("vm");
    let busybox = which("busybox")?;
    let kernels = kernels::prepare(&series, &cache, &busybox)?;
    let initramfs = initramfs::prepare(&bins, &busybox, &kernels, &cache)?;
    let mut guest_options = vec![format!("vmtest.rounds={}", options.rounds)];
    if let Some(only) = &only {
        guest_options.push(format!("vmtest.only={}", only.join(",")));
    }
    guest_options.extend(
        options
            .append
            .iter()
            .flat_map(|words| words.split_whitespace().map(str::to_owned)),
    );

    // A queue of guests and `jobs` workers taking from it; each guest's report is printed
    // whole when it ends, so two reports never interleave.
    let queue = std::sync::Mutex::new(
        kernels
            .into_iter()
            .collect::<std::collections::VecDeque<_>>(),
    );
    let outcomes = std::sync::Mutex::new(Vec::new());
    let jobs = options.jobs.max(1);
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| loop {
                let Some(kernel) = queue.lock().map_or(None, |mut q| q.pop_front()) else {
                    return;
                };
                let outcome = boot(&kernel, &cache, &initramfs, &guest_options, &options);
                if let Ok(mut o) = outcomes.lock() {
                    o.push(outcome);
                }
            });
        }
    });
    let mut outcomes = outcomes
        .into_inner()
        .map_err(|_| anyhow::anyhow!("a guest's worker panicked"))?;
    outcomes.sort_by_key(|o| Series::ALL.iter().position(|s| *s == o.kernel.series));
    println!("\nvm-test summary:");
    for o in &outcomes {
        println!(
            "  {:<4} {:<27} {}",
            if o.passed { "ok" } else { "FAIL" },
            o.kernel.release,
            o.line
        );
    }
    let failed = outcomes.iter().filter(|o| !o.passed).count();
    if failed > 0 {
        bail!("{failed} of {} kernels failed a check", outcomes.len());
    }
    Ok(())
}

/// Boots one guest, prints its results and returns its outcome.
fn boot(
    kernel: &Kernel,
    cache: &Path,
    initramfs: &Path,
    guest_options: &[String],
    options: &Options,
) -> Outcome {
    eprintln!(
        "vm-test: booting {} ({} {}), cgroup v{}, time limit {} s",
        kernel.release,
        kernel.package,
        kernel.version,
        if kernel.series.cgroup_v1() { 1 } else { 2 },
        options.timeout.as_secs()
    );
    // A run of some scenarios only has a directory of its own, so it can run beside a full one.
    let out_dir = cache.join("runs").join(match &options.only {
        Some(only) => format!("{}-only-{}", kernel.release, only.replace(',', "-")),
        None => kernel.release.clone(),
    });
    let run = qemu::run(&qemu::Boot {
        label: kernel.series.name(),
        vmlinuz: &kernel.vmlinuz,
        initramfs,
        options: guest_options,
        out_dir: &out_dir,
        timeout: options.timeout,
        realtime: options.realtime,
        cgroup_v1: kernel.series.cgroup_v1(),
    });
    let (outcome, text) = match run {
        Ok(run) => report(kernel.clone(), &run, options.realtime),
        Err(e) => {
            let line = format!("the guest did not run: {e:#}");
            (
                Outcome {
                    kernel: kernel.clone(),
                    passed: false,
                    line: line.clone(),
                },
                format!("\n== {}\n   {line}\n", kernel.release),
            )
        }
    };
    print!("{text}");
    outcome
}

/// One guest's results as text, and its summary line.
fn report(kernel: Kernel, run: &qemu::Run, realtime: bool) -> (Outcome, String) {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n== {} ({} {})",
        kernel.release, kernel.package, kernel.version
    );
    let guest = verdict::GuestReport::parse(&run.results);
    let elapsed = run.elapsed.as_secs_f64();
    let broken = match (&run.end, run.panicked) {
        (qemu::End::TimedOut, _) => Some(format!("timed out after {elapsed:.0} s; QEMU killed")),
        (qemu::End::Exited, true) => Some(format!("kernel panic after {elapsed:.0} s")),
        (qemu::End::Exited, false) if !guest.done => Some(format!(
            "QEMU exited after {elapsed:.0} s before the guest sent everything"
        )),
        _ => None,
    };
    if guest.done {
        let _ = writeln!(
            out,
            "   boot to verdict: {elapsed:.1} s (QEMU start to power-off; guest clock at the \
             verdict {} s)",
            guest.fact("uptime").unwrap_or("?")
        );
    } else {
        let _ = writeln!(out, "   no verdict: the guest ran {elapsed:.1} s");
    }
    let _ = writeln!(
        out,
        "   kernel in guest: {}, BTF {}, memcg tracepoints: {}",
        guest.fact("kernel").unwrap_or("?"),
        guest.fact("btf").unwrap_or("?"),
        match guest.fact("memcg_tracepoints") {
            Some("") => "none",
            Some(list) => list,
            None => "?",
        }
    );
    let verdict = verdict::judge(&guest);
    let sent_nothing = guest.facts.is_empty() && guest.sections.is_empty();
    if sent_nothing {
        // Every check would fail for the same reason; the console tail below says which.
        let _ = writeln!(out, "   checks: none could run, the guest sent no results");
    } else {
        print_verdict(&mut out, &verdict, realtime);
    }
    if let Some(why) = &broken {
        let _ = writeln!(out, "   GUEST FAILED: {why}; last console lines:");
        for line in &run.console_tail {
            let _ = writeln!(out, "     | {line}");
        }
    }
    let _ = writeln!(
        out,
        "   logs: {} and {}",
        run.console_log.display(),
        run.console_log.with_file_name("results.txt").display()
    );
    let failed: Vec<&str> = verdict
        .checks
        .iter()
        .filter(|c| !c.passed)
        .map(|c| c.name)
        .collect();
    let line = if sent_nothing {
        format!(
            "no results ({})",
            broken.as_deref().unwrap_or("the guest sent nothing")
        )
    } else {
        format!(
            "cgroup v{}, mode {}, {} of {} checks passed{}{}{}{}, {elapsed:.0} s",
            report_cgroup_version(&guest),
            verdict.mode.as_deref().unwrap_or("unknown"),
            verdict.checks.len() - failed.len(),
            verdict.checks.len(),
            // A check of what this kernel or cgroup version cannot have passes as skipped.
            match verdict
                .checks
                .iter()
                .filter(|c| c.passed && c.detail.starts_with("skipped"))
                .count()
            {
                0 => String::new(),
                n => format!(" ({n} skipped)"),
            },
            if failed.is_empty() {
                String::new()
            } else {
                format!(" (failed: {})", failed.join("; "))
            },
            verdict.overhead.as_ref().map_or(String::new(), |o| format!(
                ", overhead ratio {:.3}",
                o.ratio.0
            )),
            verdict
                .kprobe_overhead
                .as_ref()
                .map_or(String::new(), |o| format!(" (kprobe {:.3})", o.ratio.0)),
        )
    };
    (
        Outcome {
            kernel,
            passed: broken.is_none() && verdict.passed(),
            line,
        },
        out,
    )
}

fn print_verdict(out: &mut String, verdict: &Verdict, realtime: bool) {
    let _ = writeln!(
        out,
        "   charge-path mode: {} ({})",
        verdict.mode.as_deref().unwrap_or("unknown"),
        verdict
            .mode_reason
            .as_deref()
            .unwrap_or("doctor gave no reason")
    );
    if let Some(oom) = &verdict.oom_reason {
        let _ = writeln!(out, "   OOM kills from: {oom}");
    }
    if !verdict.hooks.is_empty() {
        let _ = writeln!(out, "   hooks (doctor):");
        for hook in &verdict.hooks {
            let _ = writeln!(out, "     {hook}");
        }
    }
    let _ = writeln!(out, "   checks:");
    for c in &verdict.checks {
        let _ = writeln!(
            out,
            "     {}  {}: {}",
            if c.passed { "PASS" } else { "FAIL" },
            c.name,
            c.detail
        );
    }
    let _ = match &verdict.overhead {
        Some(o) => writeln!(
            out,
            "   overhead (page faults, watch/none): median {:.3} [{:.3}..{:.3}] over {} rounds; \
             medians {:.0} pages/s without, {:.0} with the profiler ({})",
            o.ratio.0,
            o.ratio.1,
            o.ratio.2,
            o.rounds,
            o.none,
            o.watch,
            if realtime {
                "guest on real time: the figures follow the host's load"
            } else {
                "guest clock counts instructions"
            }
        ),
        None => writeln!(out, "   overhead: not measured"),
    };
    if let Some(o) = &verdict.kprobe_overhead {
        let _ = writeln!(
            out,
            "   overhead of --mode kprobe (page faults, watch/none): median {:.3} [{:.3}..{:.3}] \
             over {} rounds; median {:.0} pages/s",
            o.ratio.0, o.ratio.1, o.ratio.2, o.rounds, o.watch
        );
    }
}

/// The cgroup version the guest says it ran (`?` if it did not say).
fn report_cgroup_version(guest: &verdict::GuestReport) -> &str {
    guest.fact("cgroup_version").unwrap_or("?")
}

/// The first `name` on PATH.
pub(super) fn which(name: &str) -> Result<std::path::PathBuf> {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(name))
        .find(|p| Path::new(p).is_file())
        .with_context(|| format!("`{name}` is not on PATH (cargo xtask setup installs it)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `want NAME` of the guest's script is a scenario `--only` accepts, and the other way
    /// round: a scenario added to one and not the other would run always, or never.
    #[test]
    fn the_scenarios_are_those_the_guest_knows() {
        let script = include_str!("init.sh");
        let mut wanted: Vec<&str> = script
            .split("want ")
            .skip(1)
            .filter_map(|rest| rest.split([' ', ';', '\n']).next())
            .filter(|name| !name.is_empty() && name.chars().all(|c| c.is_ascii_lowercase()))
            .collect();
        wanted.sort_unstable();
        wanted.dedup();
        let mut known = SCENARIOS.to_vec();
        known.sort_unstable();
        assert_eq!(wanted, known);
    }

    #[test]
    fn only_names_scenarios_and_refuses_others() {
        assert_eq!(
            scenarios("leak, fentry").expect("two scenarios"),
            ["leak", "fentry"]
        );
        let err = scenarios("leak,fenty")
            .expect_err("a misspelt scenario")
            .to_string();
        assert!(err.contains("\"fenty\"") && err.contains("fentry"), "{err}");
        assert!(scenarios("").is_err());
    }
}
