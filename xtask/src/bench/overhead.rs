//! `cargo xtask bench overhead`: what the profiler costs the workloads it watches.
//!
//! The machine is shared and noisy, so modes alternate run by run (the order rotates each
//! round), every mode gets the same number of runs, and medians with min–max are printed.
use std::{
    io::{BufRead as _, BufReader, Read as _},
    process::{Command, Stdio},
};

use anyhow::{bail, Context as _, Result};

mod stacks;

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
    /// `profiler serve` as deployed: the charge path attached only while a container needs
    /// it (none does here).
    AgentAdaptive,
    /// `profiler serve --charge-tracing always`.
    AgentAlways,
}

impl Attached {
    fn label(self) -> &'static str {
        match self {
            Attached::Nothing => "no profiler",
            Attached::Floor => "empty programs (floor)",
            Attached::Profiler => "profiler watch",
            Attached::AgentAdaptive => "agent, adaptive (idle)",
            Attached::AgentAlways => "agent, always traced",
        }
    }
}

/// Starts `profiler serve` and returns once its charge path is in the state the mode means
/// (`profiler_charge_tracing_armed` in its metrics).
fn start_agent(bins: &Binaries, mode: Attached) -> Result<Process> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let address = format!("127.0.0.1:{port}");
    let dir = std::env::temp_dir().join(format!("profiler-bench-agent-{}", std::process::id()));
    let tracing = if mode == Attached::AgentAlways {
        "always"
    } else {
        "adaptive"
    };
    let process = Process(
        Command::new(&bins.profiler)
            .args(["serve", "--listen", &address, "--charge-tracing", tracing])
            .arg("--record-dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting profiler serve")?,
    );
    let want = if mode == Attached::AgentAlways {
        "profiler_charge_tracing_armed 1"
    } else {
        "profiler_charge_tracing_armed 0"
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let settled = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let metrics = http_get(&address, "/metrics").unwrap_or_default();
        // A round has ended (adaptive mode decides at the end of the first).
        let round_ended = metrics.contains("profiler_round_duration_seconds ");
        if round_ended && metrics.contains(want) {
            return Ok(process);
        }
        // A container of this node may need the charge path (near its limit): then the run
        // measures that, and says so.
        if round_ended && std::time::Instant::now() > settled {
            let why = metrics
                .lines()
                .find(|l| l.starts_with("profiler_charge_tracing_reason{") && l.ends_with(" 1"))
                .unwrap_or("no reason");
            eprintln!("\nnote: the agent's charge path is not as wanted ({want}): {why}");
            return Ok(process);
        }
        if std::time::Instant::now() > deadline {
            bail!("profiler serve did not finish a round within a minute");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// `GET path` over HTTP/1.0: the whole response.
fn http_get(address: &str, path: &str) -> Result<String> {
    use std::io::Write as _;
    let mut stream = std::net::TcpStream::connect(address)?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n")?;
    let mut text = String::new();
    stream.read_to_string(&mut text)?;
    Ok(text)
}

/// Starts what `mode` attaches, watching `cgroup`; returns once it is attached.
fn attach(bins: &Binaries, mode: Attached, cgroup: &TempMemcg) -> Result<Option<Process>> {
    let mut cmd = Command::new(&bins.profiler);
    match mode {
        Attached::Nothing => return Ok(None),
        Attached::AgentAdaptive | Attached::AgentAlways => {
            return start_agent(bins, mode).map(Some)
        }
        Attached::Floor => cmd.arg("attach-floor"),
        Attached::Profiler => cmd
            .arg("watch")
            .arg("--json")
            .arg("--cgroup")
            .arg(cgroup.path()),
    };
    let (process, lines) = start_profiler(&mut cmd, &format!("{mode:?}"))?;
    // Keep draining its output so it never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Ok(Some(process))
}

/// Starts the profiler `cmd` with its stdout piped, and returns once its first line came
/// (`attached`, or `watch_start`: after every program is attached), with the rest to read.
fn start_profiler(
    cmd: &mut Command,
    what: &str,
) -> Result<(
    Process,
    std::io::Lines<BufReader<std::process::ChildStdout>>,
)> {
    let mut process = Process(
        cmd.stdout(Stdio::piped())
            .spawn()
            .context("starting the profiler")?,
    );
    let stdout = process.0.stdout.take().context("profiler stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    match lines.next() {
        Some(Ok(_)) => Ok((process, lines)),
        _ => bail!("the profiler ({what}) did not start"),
    }
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

/// The agent's cost on the page-fault workload (the worst case of the charge path) when no
/// container needs the charge path, against no agent and against the charge path always
/// attached.
fn agent_page_faults(
    bins: &Binaries,
    cgroup: &TempMemcg,
    runs: usize,
    (mib, iters): (&str, &str),
) -> Result<()> {
    let modes = [
        Attached::Nothing,
        Attached::AgentAdaptive,
        Attached::AgentAlways,
    ];
    let args: Vec<String> = ["pagefault", "--mib", mib, "--iters", iters]
        .iter()
        .map(|&a| a.to_owned())
        .collect();
    let figures = alternate(bins, cgroup, &modes, runs, &args, "pages_per_sec=");
    let _ = std::fs::remove_dir_all(
        std::env::temp_dir().join(format!("profiler-bench-agent-{}", std::process::id())),
    );
    let figures = figures?;
    print_table(
        &format!(
            "page-fault workload with the agent running (mmap {mib} MiB, touch, munmap; x{iters})"
        ),
        "pages/s",
        &modes,
        &figures,
    );
    let [none, adaptive, always] = [
        median(&figures[0]),
        median(&figures[1]),
        median(&figures[2]),
    ];
    println!(
        "  agent adaptive / none   {:.3}   (goal >= 0.98)",
        adaptive / none
    );
    println!("  agent always / none     {:.3}", always / none);
    let per_round: Vec<f64> = figures[1]
        .iter()
        .zip(&figures[0])
        .map(|(a, n)| a / n)
        .collect();
    let (lo, hi) = spread(&per_round);
    println!(
        "  adaptive / none per round: median {:.3}, min {lo:.3}, max {hi:.3}",
        median(&per_round)
    );
    Ok(())
}

/// How soon adaptive tracing attaches the charge path once a container starts to grow, and
/// how soon after that the kernel reports its first burst: `watch --adaptive` (the agent's
/// collector) on a 256 MiB cgroup that a leak fills at 80 MiB/s.
fn arm_latency(bins: &Binaries, runs: usize) -> Result<()> {
    let mut to_armed = Vec::new();
    let mut to_burst = Vec::new();
    let mut burst_delay = Vec::new();
    for _ in 0..runs {
        let cgroup = TempMemcg::new("profiler-bench-arm", 256 << 20)?;
        let mut watch = Process(
            Command::new(&bins.profiler)
                .args(["watch", "--json", "--adaptive", "--cgroup"])
                .arg(cgroup.path())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .context("starting profiler watch --adaptive")?,
        );
        let stdout = watch.0.stdout.take().context("profiler stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        // Wait until the first round has detached the charge path.
        let mut detached = false;
        for line in lines.by_ref() {
            let line = line?;
            if line.contains("\"type\":\"charge_tracing\"") && line.contains("\"armed\":false") {
                detached = true;
                break;
            }
        }
        if !detached {
            bail!("watch --adaptive never detached the charge path");
        }
        let grow = std::time::Instant::now();
        let mut leak = cgroup.spawn(
            Command::new(&bins.workload)
                .args(["leak", "--step-mib", "4", "--interval-ms", "50"])
                .stdout(Stdio::null()),
        )?;
        let mut armed = None;
        for line in lines.by_ref() {
            let line = line?;
            if armed.is_none()
                && line.contains("\"type\":\"charge_tracing\"")
                && line.contains("\"armed\":true")
            {
                armed = Some(grow.elapsed());
            }
            if let (Some(at), true) = (armed, line.contains("\"type\":\"burst\"")) {
                to_armed.push(at.as_secs_f64());
                to_burst.push((grow.elapsed() - at).as_secs_f64() * 1000.0);
                // The line's time is the kernel's, when the budget ran out.
                let seen = serde_json::from_str::<serde_json::Value>(&line)
                    .ok()
                    .and_then(|v| v["ts"].as_f64());
                if let Some(ts) = seen {
                    burst_delay.push((unix_now() - ts) * 1000.0);
                }
                break;
            }
            if line.contains("\"type\":\"oom_kill\"") {
                break;
            }
        }
        let _ = leak.0.kill();
        let _ = leak.0.wait();
        interrupt(&mut watch.0)?;
        eprint!(".");
    }
    eprintln!();
    if to_armed.is_empty() {
        bail!("no run saw the charge path attached and then a burst");
    }
    let (lo, hi) = spread(&to_armed);
    println!(
        "adaptive tracing, a leak of 80 MiB/s in 256 MiB ({} of {runs} runs saw a burst)",
        to_armed.len()
    );
    println!(
        "  growth start -> charge path attached: median {:.2} s ({lo:.2} .. {hi:.2}; one \
         1 s interval is the polling that sees it)",
        median(&to_armed)
    );
    let (lo, hi) = spread(&to_burst);
    println!(
        "  attached -> first burst reported:     median {:.0} ms ({lo:.0} .. {hi:.0}; the \
         budget, half the headroom, must run out first)",
        median(&to_burst)
    );
    if !burst_delay.is_empty() {
        let (lo, hi) = spread(&burst_delay);
        println!(
            "  budget out (kernel) -> burst line read: median {:.1} ms ({lo:.1} .. {hi:.1})",
            median(&burst_delay)
        );
    }
    Ok(())
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Runs the overhead benchmark.
pub(super) fn run(
    bins: &Binaries,
    runs: usize,
    (mib, iters): (u64, u64),
    (json_seconds, deaths_seconds): (u64, u64),
    only: &[String],
) -> Result<()> {
    const PARTS: [&str; 8] = [
        "pagefault",
        "stacks",
        "agent",
        "arm",
        "json",
        "spawn",
        "signals",
        "sigterm",
    ];
    if let Some(unknown) = only.iter().find(|p| !PARTS.contains(&p.as_str())) {
        bail!("--only {unknown}: the parts are {}", PARTS.join(", "));
    }
    let part = |name: &str| only.is_empty() || only.iter().any(|p| p == name);
    let cgroup = TempMemcg::new("profiler-bench", 2 << 30)?;
    println!(
        "overhead benchmark, {runs} runs per mode, modes alternating; cgroup {}",
        cgroup.path().display()
    );

    let (mib_arg, iters_arg) = (mib.to_string(), iters.to_string());
    if part("pagefault") {
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
    }
    if part("agent") {
        agent_page_faults(bins, &cgroup, runs, (&mib_arg, &iters_arg))?;
    }
    if part("stacks") {
        let pages = (mib * 256 * iters) as f64;
        stacks::compare(
            bins,
            &cgroup,
            runs,
            &format!(
                "charge stacks on the page-fault workload (mmap {mib} MiB, touch, munmap; \
                 x{iters}), the worst case"
            ),
            ("pages/s", "pages_per_sec="),
            (
                &["pagefault", "--mib", &mib_arg, "--iters", &iters_arg],
                stacks::Work::Ops(pages),
            ),
            0.98,
        )?;
        let seconds = json_seconds.to_string();
        stacks::compare(
            bins,
            &cgroup,
            runs,
            &format!(
                "charge stacks on the allocation-heavy workload (JSON documents; \
                 {json_seconds} s), the realistic case"
            ),
            ("docs/s", "docs_per_sec="),
            (
                &["json-churn", "--seconds", &seconds],
                stacks::Work::Seconds(json_seconds as f64),
            ),
            0.99,
        )?;
    }
    if part("arm") {
        arm_latency(bins, runs.min(5))?;
    }

    let seconds = json_seconds.to_string();
    if part("json") {
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
    }
    // The deaths' hooks fire on every exit and every SIGKILL or SIGTERM on the node: their
    // cost is the workloads that exit and signal most.
    let seconds = deaths_seconds.to_string();
    if part("spawn") {
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
    }
    if part("signals") {
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
    }
    if part("sigterm") {
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
    }
    Ok(())
}
