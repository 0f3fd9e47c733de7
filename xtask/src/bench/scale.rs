//! `cargo xtask bench scale`: what `profiler watch --all` costs on a node of many containers.
//!
//! For each size it builds a kubelet-like node ([`node::FakeNode`]: real memory cgroups in the
//! chosen driver's layout, services beside the pods, the kubelet's log trees, one container in
//! twenty running a process), starts `profiler watch --all --json --interval 1s` on it with
//! its output to a file, waits until every container is watched, lets it warm up, then reads
//! its CPU time (user + system, `/proc/PID/stat`) over the measured window, its peak resident
//! memory (`VmHWM`) and its open descriptors. The floor is the same files read by one tight
//! loop, each opened, read and closed once per pass.
mod node;

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};

pub(crate) use node::Driver;
pub(super) use node::FakeNode;

use crate::{
    build::Binaries,
    memcg::{interrupt, Process},
};

/// One container in this many runs a process (the rest are idle, as most are on a node).
pub(super) const BUSY_EVERY: usize = 20;
/// Seconds after every container joined before the window starts.
const WARM_UP: Duration = Duration::from_secs(3);

/// What else happens on the node while the watch is measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Load {
    /// Nothing but the node's own processes.
    Steady,
    /// One more container leaks into a 64 MiB limit and is OOM-killed, again and again.
    Kills,
}

/// Where the watch's JSON goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Output {
    /// A file, as a recording agent keeps it.
    File,
    /// `/dev/null`: the lines are made but not stored.
    Null,
}

/// One measured configuration.
struct Case {
    containers: usize,
    driver: Driver,
    load: Load,
    output: Output,
}

/// What one case measured.
struct Figures {
    /// Containers that got a `watch_start` line.
    watched: usize,
    /// Processes running in containers.
    busy: usize,
    /// CPU time from the start to the end of the warm-up, ms.
    startup_cpu_ms: f64,
    /// CPU time per 1 s interval over the window, ms.
    cpu_ms_per_interval: f64,
    /// Peak resident memory, MiB.
    peak_rss_mib: f64,
    /// Resident memory at the end of the window, MiB.
    rss_mib: f64,
    /// Open file descriptors at the end of the window.
    fds: usize,
    /// Sample lines per container per second in the window (1.0 when every round sampled all).
    samples_per_container_s: f64,
    /// OOM kills told (`oom_kill` lines) in the whole run, and made by the kernel.
    kills: Option<(usize, u64)>,
    /// One tight pass over the same files, CPU ms (median of five).
    floor_ms: f64,
}

/// Runs the scale benchmark: `sizes` with the cgroupfs driver, then (without `others`) one
/// size (the middle one) with the systemd driver, with a kill in progress, and with the JSON
/// thrown away.
pub(super) fn run(bins: &Binaries, sizes: &[usize], seconds: u64, others: usize) -> Result<()> {
    if sizes.is_empty() {
        bail!("--containers needs at least one size, e.g. --containers 50,500,2000");
    }
    let mut cases: Vec<Case> = sizes
        .iter()
        .map(|&containers| Case {
            containers,
            driver: Driver::Cgroupfs,
            load: Load::Steady,
            output: Output::File,
        })
        .collect();
    let middle = sizes[sizes.len() / 2];
    // With a big tree of other cgroups (minutes to make and remove), the sizes only.
    let extras = if others > 0 { 0 } else { 3 };
    for (driver, load, output) in [
        (Driver::Systemd, Load::Steady, Output::File),
        (Driver::Cgroupfs, Load::Kills, Output::File),
        (Driver::Cgroupfs, Load::Steady, Output::Null),
    ]
    .into_iter()
    .take(extras)
    {
        cases.push(Case {
            containers: middle,
            driver,
            load,
            output,
        });
    }
    println!(
        "scale benchmark: profiler watch --all --json --interval 1s, {seconds} s measured after \
         {} s of warm-up; one container in {BUSY_EVERY} runs a process; {others} more cgroups \
         that are not containers",
        WARM_UP.as_secs()
    );
    println!(
        "  {:>10} {:<8} {:<6} {:<5} {:>7} {:>5} {:>9} {:>10} {:>12} {:>9} {:>8} {:>5} {:>8} {:>9} {:>8}",
        "containers",
        "driver",
        "load",
        "json",
        "watched",
        "busy",
        "start ms",
        "ms/interval",
        "µs/container",
        "peak MiB",
        "RSS MiB",
        "fds",
        "samples",
        "floor ms",
        "kills"
    );
    for case in &cases {
        let f = measure(bins, case, seconds, others)
            .with_context(|| format!("{} containers ({:?})", case.containers, case.driver))?;
        println!(
            "  {:>10} {:<8} {:<6} {:<5} {:>7} {:>5} {:>9.0} {:>10.1} {:>12.1} {:>9.1} {:>8.1} {:>5} {:>8.2} {:>9.2} {:>8}",
            case.containers,
            format!("{:?}", case.driver).to_lowercase(),
            format!("{:?}", case.load).to_lowercase(),
            match case.output {
                Output::File => "file",
                Output::Null => "null",
            },
            f.watched,
            f.busy,
            f.startup_cpu_ms,
            f.cpu_ms_per_interval,
            f.cpu_ms_per_interval * 1e3 / f.watched.max(1) as f64,
            f.peak_rss_mib,
            f.rss_mib,
            f.fds,
            f.samples_per_container_s,
            f.floor_ms,
            f.kills
                .map_or("-".to_owned(), |(told, made)| format!("{told}/{made}")),
        );
    }
    println!(
        "  (ms/interval: user + system CPU of the watch per 1 s round; µs/container: per watched container; samples: sample lines per \
         container per second, 1.00 when every round sampled every container; floor: one pass \
         opening, reading and closing the same files in a tight loop; kills: oom_kill lines / \
         the kernel's count)"
    );
    Ok(())
}

/// Builds the node of `case`, measures the watch on it, and takes the node down.
fn measure(bins: &Binaries, case: &Case, seconds: u64, others: usize) -> Result<Figures> {
    let built = Instant::now();
    let node = FakeNode::build(
        case.containers,
        case.driver,
        BUSY_EVERY,
        &bins.workload,
        others,
    )?;
    eprintln!(
        "built {} containers ({:?}) in {:.1} s",
        node.containers.len(),
        case.driver,
        built.elapsed().as_secs_f64()
    );
    let floor_ms = floor(&node.containers, node.is_v2());
    let out = node.scratch().join("watch.jsonl");
    let stdout = match case.output {
        Output::File => fs::File::create(&out).context("creating the watch's output")?,
        Output::Null => fs::File::create("/dev/null")?,
    };
    let stderr = fs::File::create(node.scratch().join("watch.err"))?;
    // The leaking container is made before the watch starts, so it is one of the containers
    // counted; its process comes after.
    let leaker = match case.load {
        Load::Kills => Some(leak_container(&node)?),
        Load::Steady => None,
    };
    let started = Instant::now();
    // Another build of the profiler to measure (e.g. the last release's), for comparisons.
    let profiler =
        std::env::var_os("PROFILER_SCALE_BIN").map_or(bins.profiler.clone(), PathBuf::from);
    let mut watch = Process(
        Command::new(&profiler)
            .args([
                "watch",
                "--all",
                "--json",
                "--interval",
                "1s",
                "--max-cgroups",
            ])
            // Room for every container, as a user of a node this big would give it.
            .arg(max_cgroups(case.containers).to_string())
            .args(node.roots_args())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .context("starting profiler watch")?,
    );
    let pid = watch.0.id();
    let expected = case.containers + usize::from(leaker.is_some());
    let watched = wait_for_watch(&mut watch, &out, expected, case.output, &node)?;
    thread::sleep(WARM_UP);
    let startup_cpu_ms = cpu_ms(pid)?;
    let _kills = leaker
        .as_ref()
        .map(|dir| KillLoop::start(dir.clone(), bins.workload.clone()));
    let lines_before = count_lines(&out, "\"type\":\"sample\"");
    let window = Instant::now();
    thread::sleep(Duration::from_secs(seconds));
    let cpu = cpu_ms(pid)? - startup_cpu_ms;
    let elapsed = window.elapsed().as_secs_f64();
    let lines_after = count_lines(&out, "\"type\":\"sample\"");
    let peak_rss_mib = status_kib(pid, "VmHWM:")? / 1024.0;
    let rss_mib = status_kib(pid, "VmRSS:")? / 1024.0;
    let fds = fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0);
    drop(_kills);
    let status = interrupt(&mut watch.0)?;
    if !status.success() {
        bail!(
            "the watch ended with {status}: {}",
            tail(&node.scratch().join("watch.err"))
        );
    }
    let kills = leaker.as_ref().map(|dir| {
        (
            count_lines(&out, "\"type\":\"oom_kill\""),
            crate::memcg::oom_kills_in(dir),
        )
    });
    let samples_per_container_s = match case.output {
        Output::File => (lines_after - lines_before) as f64 / elapsed / expected as f64,
        Output::Null => f64::NAN,
    };
    eprintln!("measured in {:.1} s", started.elapsed().as_secs_f64());
    let busy = node.busy();
    if let Some(dir) = leaker {
        // Its pod directory too; the node removes the rest.
        let _ = fs::remove_dir(&dir);
        if let Some(pod) = dir.parent() {
            let _ = fs::remove_dir(pod);
        }
    }
    drop(node);
    Ok(Figures {
        watched,
        busy,
        startup_cpu_ms,
        cpu_ms_per_interval: cpu / elapsed,
        peak_rss_mib,
        rss_mib,
        fds,
        samples_per_container_s,
        kills,
        floor_ms,
    })
}

/// `--max-cgroups` for a node of `containers`: the default (1024), or the next power of two
/// that holds them all.
pub(super) fn max_cgroups(containers: usize) -> usize {
    (containers + 1).next_power_of_two().max(1024)
}

/// Waits until `expected` containers got their `watch_start` line (or, with the output thrown
/// away or the watch refusing some, until the count stops growing for 3 s), up to 120 s.
fn wait_for_watch(
    watch: &mut Process,
    out: &Path,
    expected: usize,
    output: Output,
    node: &FakeNode,
) -> Result<usize> {
    let deadline = Instant::now() + Duration::from_secs(120);
    let (mut last, mut still_since) = (0, Instant::now());
    loop {
        if let Some(status) = watch.0.try_wait()? {
            bail!(
                "the watch ended early ({status}): {}",
                tail(&node.scratch().join("watch.err"))
            );
        }
        if output == Output::Null {
            // Nothing to count: the first samples come one interval after the watch starts.
            thread::sleep(Duration::from_secs(3));
            return Ok(expected);
        }
        let n = count_lines(out, "\"type\":\"watch_start\"");
        if n >= expected {
            return Ok(n);
        }
        if n != last {
            (last, still_since) = (n, Instant::now());
        } else if n > 0 && still_since.elapsed() > Duration::from_secs(3) {
            eprintln!("only {n} of {expected} containers watched");
            return Ok(n);
        }
        if Instant::now() > deadline {
            bail!("{n} of {expected} containers watched after 120 s");
        }
        thread::sleep(Duration::from_millis(200));
    }
}

/// A container with a 64 MiB limit, made for the kill loop.
fn leak_container(node: &FakeNode) -> Result<PathBuf> {
    // A BestEffort-like pod of its own in the cgroupfs layout, named so the watch finds it.
    let dir = node
        .cgroup_root()
        .join("kubepods/besteffort/pod0000dead-0000-4000-8000-00000000dead");
    fs::create_dir_all(&dir)?;
    let dir = dir.join("dead".repeat(16));
    fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let file = if node.is_v2() {
        "memory.max"
    } else {
        "memory.limit_in_bytes"
    };
    fs::write(dir.join(file), (64u64 << 20).to_string())?;
    Ok(dir)
}

/// A thread that starts a leak in a container again each time the kernel kills it, until
/// dropped.
struct KillLoop {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl KillLoop {
    fn start(dir: PathBuf, workload: PathBuf) -> Self {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = thread::spawn(move || {
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                let Ok(mut leak) = crate::memcg::spawn_in(
                    &dir,
                    Command::new(&workload)
                        .args(["leak", "--step-mib", "8", "--interval-ms", "20"])
                        .stdout(Stdio::null()),
                ) else {
                    return;
                };
                // Killed after about 160 ms; a pause before the next keeps it near two a second.
                let _ = leak.0.wait();
                thread::sleep(Duration::from_millis(300));
            }
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for KillLoop {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One tight pass over the files a sample reads, CPU ms, median of five passes.
fn floor(containers: &[PathBuf], v2: bool) -> f64 {
    let files: &[&str] = if v2 {
        &[
            "memory.stat",
            "memory.current",
            "memory.max",
            "memory.events",
            "memory.pressure",
        ]
    } else {
        &[
            "memory.stat",
            "memory.usage_in_bytes",
            "memory.limit_in_bytes",
            "memory.failcnt",
            "memory.kmem.usage_in_bytes",
            "memory.oom_control",
        ]
    };
    let mut passes: Vec<f64> = (0..5)
        .map(|_| {
            let start = process_cpu_ns();
            let mut bytes = 0usize;
            for dir in containers {
                for f in files {
                    bytes += fs::read_to_string(dir.join(f)).map_or(0, |t| t.len());
                }
            }
            std::hint::black_box(bytes);
            (process_cpu_ns() - start) as f64 / 1e6
        })
        .collect();
    passes.sort_by(f64::total_cmp);
    passes[passes.len() / 2]
}

/// This process's CPU time, ns.
fn process_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    u64::try_from(ts.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(ts.tv_nsec).unwrap_or(0)
}

/// User + system CPU time of process `pid` (all its threads), ms.
pub(super) fn cpu_ms(pid: u32) -> Result<f64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces), from field 3 on: utime is 14,
    // stime 15.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("no command name in /proc/PID/stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> Result<f64> {
        fields
            .get(i - 3)
            .and_then(|v| v.parse::<f64>().ok())
            .with_context(|| format!("field {i} of /proc/{pid}/stat"))
    };
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Ok((ticks(14)? + ticks(15)?) * 1e3 / hz)
}

/// A `kB` field of `/proc/PID/status`, KiB.
pub(super) fn status_kib(pid: u32, key: &str) -> Result<f64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .with_context(|| format!("no {key} in /proc/{pid}/status"))
}

/// Lines of `path` containing `needle`.
fn count_lines(path: &Path, needle: &str) -> usize {
    fs::read_to_string(path).map_or(0, |t| t.lines().filter(|l| l.contains(needle)).count())
}

/// The last lines of a file, for an error message.
pub(super) fn tail(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(5)..].join(" | ")
}
