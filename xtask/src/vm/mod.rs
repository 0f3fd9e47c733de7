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
pub(crate) mod backports;
mod initramfs;
mod kernels;
mod modules;
mod qemu;
mod verdict;

use std::{path::Path, time::Duration};

use anyhow::{bail, Context as _, Result};

use crate::{build, memcg::require_root, setup};
use kernels::{Kernel, Series};
use verdict::Verdict;

/// Options of `cargo xtask vm-test`.
#[derive(Debug, clap::Args)]
pub(crate) struct Options {
    /// Boot only this kernel series (6.1 or 6.12); repeat for several. Default: both.
    #[arg(long = "kernel", value_name = "SERIES")]
    kernels: Vec<String>,
    /// Kill a guest that has not powered off after this long (e.g. 600s, 10m).
    #[arg(long, default_value = "10m", value_parser = parse_timeout)]
    timeout: Duration,
    /// Rounds of the overhead measurement (each: the page-fault workload once without and
    /// once with `profiler watch`).
    #[arg(long, default_value_t = 4)]
    rounds: u32,
    /// Run the guests on real time (multi-threaded TCG) instead of counting instructions:
    /// faster on an idle machine, but the overhead figure then follows the host's load.
    #[arg(long)]
    realtime: bool,
    /// Run only these scenarios of the guest (comma-separated: leak, kprobe, adaptive, group,
    /// early, ringloss, detach, pods, overhead, node, swap), and judge only their checks.
    #[arg(long, value_name = "SCENARIOS")]
    only: Option<String>,
    /// Extra words for the guests' kernel command line, e.g. `vmtest.limit_mib=128` or
    /// `vmtest.pf_mib=32` (init.sh lists the `vmtest.*` options).
    #[arg(long, value_name = "WORDS", allow_hyphen_values = true)]
    append: Option<String>,
}

impl Default for Options {
    /// What `cargo xtask test` runs: both kernels, the defaults of the command line.
    fn default() -> Self {
        Self {
            kernels: Vec::new(),
            timeout: Duration::from_secs(600),
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

/// Runs the VM test; fails when any check on any kernel fails.
pub(crate) fn run(options: Options) -> Result<()> {
    require_root("cargo xtask vm-test")?;
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
    if let Some(only) = &options.only {
        guest_options.push(format!("vmtest.only={only}"));
    }
    guest_options.extend(
        options
            .append
            .iter()
            .flat_map(|words| words.split_whitespace().map(str::to_owned)),
    );

    let mut outcomes = Vec::new();
    for kernel in kernels {
        eprintln!(
            "vm-test: booting {} ({} {}), time limit {} s",
            kernel.release,
            kernel.package,
            kernel.version,
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
            initramfs: &initramfs,
            options: &guest_options,
            out_dir: &out_dir,
            timeout: options.timeout,
            realtime: options.realtime,
        })
        .with_context(|| format!("running the {} guest", kernel.release))?;
        outcomes.push(report(kernel, &run, options.realtime));
    }
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

/// Prints one guest's results and returns its summary line.
fn report(kernel: Kernel, run: &qemu::Run, realtime: bool) -> Outcome {
    println!(
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
        println!(
            "   boot to verdict: {elapsed:.1} s (QEMU start to power-off; guest clock at the \
             verdict {} s)",
            guest.fact("uptime").unwrap_or("?")
        );
    } else {
        println!("   no verdict: the guest ran {elapsed:.1} s");
    }
    println!(
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
        println!("   checks: none could run, the guest sent no results");
    } else {
        print_verdict(&verdict, realtime);
    }
    if let Some(why) = &broken {
        println!("   GUEST FAILED: {why}; last console lines:");
        for line in &run.console_tail {
            println!("     | {line}");
        }
    }
    println!(
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
            "mode {}, {} of {} checks passed{}{}, {elapsed:.0} s",
            verdict.mode.as_deref().unwrap_or("unknown"),
            verdict.checks.len() - failed.len(),
            verdict.checks.len(),
            if failed.is_empty() {
                String::new()
            } else {
                format!(" (failed: {})", failed.join("; "))
            },
            verdict.overhead.as_ref().map_or(String::new(), |o| format!(
                ", overhead ratio {:.3}",
                o.ratio.0
            )),
        )
    };
    Outcome {
        kernel,
        passed: broken.is_none() && verdict.passed(),
        line,
    }
}

fn print_verdict(verdict: &Verdict, realtime: bool) {
    println!(
        "   charge-path mode: {} ({})",
        verdict.mode.as_deref().unwrap_or("unknown"),
        verdict
            .mode_reason
            .as_deref()
            .unwrap_or("doctor gave no reason")
    );
    if let Some(oom) = &verdict.oom_reason {
        println!("   OOM kills from: {oom}");
    }
    if !verdict.hooks.is_empty() {
        println!("   hooks (doctor):");
        for hook in &verdict.hooks {
            println!("     {hook}");
        }
    }
    println!("   checks:");
    for c in &verdict.checks {
        println!(
            "     {}  {}: {}",
            if c.passed { "PASS" } else { "FAIL" },
            c.name,
            c.detail
        );
    }
    match &verdict.overhead {
        Some(o) => println!(
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
        None => println!("   overhead: not measured"),
    }
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
