//! `cargo xtask bench agent`: what `profiler serve` costs and how fast it answers, on the
//! scale benchmark's kubelet-like node ([`FakeNode`]).
//!
//! Issue 14 asks that `/metrics` for 500 containers render in 50 ms at most and that scrapes
//! never block sampling. The benchmark starts the agent on the node (`--interval 1s`, its
//! recording in a scratch directory), waits until every container is watched, then:
//! 1. times sequential scrapes in both formats, from the client (connect to last byte) and
//!    as the agent says (`profiler_scrape_duration_seconds` of the previous render);
//! 2. alternates windows with no scraper, one scrape a second, and 8 clients scraping in a
//!    loop, and finds every sampling round of each window in the rolling recording (a round
//!    is the `sample` lines up to its `node` line): the gap between the starts of consecutive
//!    rounds should stay 1 s whatever the scrapers do;
//! 3. asks for `/report` over the last minute and the last five, watching the agent's peak
//!    resident memory (the report is made in the agent's memory);
//! 4. stops the agent with SIGTERM, which must end it with status 0.
//!
//! The machine is shared: windows alternate (the order rotates each repeat) and figures are
//! medians with their spread.
use std::{
    fs,
    io::{Read as _, Write as _},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Command, ExitStatus, Stdio},
    sync::atomic::{AtomicBool, Ordering},
    thread,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{bail, Context as _, Result};

use super::{
    median,
    scale::{cpu_ms, max_cgroups, status_kib, tail, Driver, FakeNode, BUSY_EVERY},
    spread,
};
use crate::{build::Binaries, memcg::Process};

/// Seconds after every container is watched before anything is measured.
const WARM_UP: Duration = Duration::from_secs(5);
/// Times each kind of scraping window is measured.
const REPEATS: usize = 3;
/// Clients of the concurrent window.
const CLIENTS: usize = 8;
/// The goal for one render of `/metrics` on a node of 500 containers, ms.
const GOAL_MS: f64 = 50.0;
/// The sampling interval given to the agent, s.
const INTERVAL_S: f64 = 1.0;
/// The Accept header Prometheus sends when it prefers OpenMetrics.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0";

/// Checks the arguments before the (long) setup and build.
pub(super) fn check_arguments(containers: usize, scrapes: usize, seconds: u64) -> Result<()> {
    if containers == 0 {
        bail!("--containers must be at least 1");
    }
    if scrapes == 0 {
        bail!("--scrapes must be at least 1");
    }
    if seconds < 3 {
        bail!("--seconds must be at least 3 (each window holds a few 1 s rounds)");
    }
    Ok(())
}

/// Runs the agent benchmark on a node of `containers` containers.
pub(super) fn run(bins: &Binaries, containers: usize, scrapes: usize, seconds: u64) -> Result<()> {
    let built = Instant::now();
    let node = FakeNode::build(containers, Driver::Cgroupfs, BUSY_EVERY, &bins.workload, 0)?;
    eprintln!(
        "built {} containers in {:.1} s",
        node.containers.len(),
        built.elapsed().as_secs_f64()
    );
    // Inside the node's scratch directory: removed with the node on every path out.
    let record_dir = node.scratch().join("record");
    let result = measure(bins, &node, &record_dir, scrapes, seconds);
    let removed = fs::remove_dir_all(&record_dir)
        .with_context(|| format!("removing {}", record_dir.display()));
    result?;
    removed
}

/// The agent, its address and where its log goes.
struct Agent {
    process: Process,
    address: String,
    log: PathBuf,
}

impl Agent {
    fn pid(&self) -> u32 {
        self.process.0.id()
    }

    /// Its peak and current resident memory, MiB.
    fn memory_mib(&self) -> Result<(f64, f64)> {
        Ok((
            status_kib(self.pid(), "VmHWM:")? / 1024.0,
            status_kib(self.pid(), "VmRSS:")? / 1024.0,
        ))
    }

    /// Fails when the agent has ended.
    fn check_alive(&mut self) -> Result<()> {
        if let Some(status) = self.process.0.try_wait()? {
            bail!("the agent ended early ({status}): {}", tail(&self.log));
        }
        Ok(())
    }
}

/// Everything after the node is built.
fn measure(
    bins: &Binaries,
    node: &FakeNode,
    record_dir: &Path,
    scrapes: usize,
    seconds: u64,
) -> Result<()> {
    let containers = node.containers.len();
    let mut agent = start(bins, node, record_dir)?;
    let pid = agent.pid();
    let joined = Instant::now();
    wait_for_watch(&mut agent, containers)?;
    eprintln!(
        "agent watches {containers} containers after {:.1} s; warming up {} s",
        joined.elapsed().as_secs_f64(),
        WARM_UP.as_secs()
    );
    thread::sleep(WARM_UP);
    agent.check_alive()?;
    let health = get(&agent.address, "/healthz", None)?;
    if health.status != 200 {
        bail!(
            "/healthz answered {}: {}",
            health.status,
            health.body.trim()
        );
    }
    let startup_cpu_ms = cpu_ms(pid)?;
    let (hwm_start, rss_start) = agent.memory_mib()?;

    println!(
        "agent benchmark: profiler serve --interval 1s on a node of {containers} containers \
         (cgroupfs layout, one in {BUSY_EVERY} running a process, {} processes), after {} s of \
         warm-up",
        node.busy(),
        WARM_UP.as_secs()
    );
    println!(
        "  start-up CPU {startup_cpu_ms:.0} ms; resident memory after warm-up {rss_start:.1} MiB \
         (peak {hwm_start:.1} MiB)"
    );

    render_times(&agent, containers, scrapes)?;
    agent.check_alive()?;

    let windows = scrape_windows(&agent, seconds)?;
    agent.check_alive()?;
    let (hwm_windows, rss_windows) = agent.memory_mib()?;

    let reports = reports(&agent)?;
    agent.check_alive()?;
    let (hwm_end, rss_end) = agent.memory_mib()?;
    let disk = get(&agent.address, "/metrics", None)
        .ok()
        .and_then(|r| metric(&r.body, "profiler_recording_disk_bytes"));

    let (status, took) = terminate(&mut agent.process)?;
    if !status.success() {
        bail!(
            "the agent ended with {status} on SIGTERM (0 expected): {}",
            tail(&agent.log)
        );
    }

    // The recording is read once the agent is gone, so reading it costs the agent nothing.
    let rounds = rounds(record_dir)?;
    print_windows(&windows, &rounds, seconds);
    print_reports(&reports, &rounds);
    println!("memory (resident, MiB: current / peak)");
    println!("  after warm-up          {rss_start:>7.1} / {hwm_start:<7.1}");
    println!("  after the windows      {rss_windows:>7.1} / {hwm_windows:<7.1}");
    println!("  after the reports      {rss_end:>7.1} / {hwm_end:<7.1}");
    if let Some(bytes) = disk {
        println!(
            "recording: {:.1} MiB on disk after {:.0} s",
            bytes / f64::from(1 << 20),
            joined.elapsed().as_secs_f64()
        );
    }
    println!(
        "stop: SIGTERM -> exit status {} after {:.2} s",
        status.code().map_or("none".to_owned(), |c| c.to_string()),
        took.as_secs_f64()
    );
    Ok(())
}

/// Starts `profiler serve` on the node, on a free port.
fn start(bins: &Binaries, node: &FakeNode, record_dir: &Path) -> Result<Agent> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .context("finding a free port")?
        .port();
    let address = format!("127.0.0.1:{port}");
    let log = node.scratch().join("agent.err");
    let stderr = fs::File::create(&log).context("creating the agent's log")?;
    // Another build of the profiler to measure (e.g. the last release's), for comparisons.
    let profiler =
        std::env::var_os("PROFILER_AGENT_BIN").map_or(bins.profiler.clone(), PathBuf::from);
    let process = Process(
        Command::new(&profiler)
            .args(["serve", "--listen", &address, "--interval", "1s"])
            .arg("--record-dir")
            .arg(record_dir)
            .arg("--max-cgroups")
            .arg(max_cgroups(node.containers.len()).to_string())
            .args(node.roots_args())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("starting {} serve", profiler.display()))?,
    );
    Ok(Agent {
        process,
        address,
        log,
    })
}

/// Waits until `profiler_watched_containers` is `containers`, up to 3 minutes.
fn wait_for_watch(agent: &mut Agent, containers: usize) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut watched = None;
    loop {
        agent.check_alive()?;
        if let Ok(r) = get(&agent.address, "/metrics", None) {
            watched = metric(&r.body, "profiler_watched_containers");
            if watched == Some(containers as f64) {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!(
                "the agent watches {} of {containers} containers after 3 minutes: {}",
                watched.map_or("none".to_owned(), |w| w.to_string()),
                tail(&agent.log)
            );
        }
        thread::sleep(Duration::from_millis(250));
    }
}

/// A response.
struct Response {
    status: u16,
    body: String,
    /// From before the connection to the last byte.
    elapsed: Duration,
}

/// `GET path` over HTTP/1.0 (the server closes the connection after the response), with an
/// `Accept` header if given.
fn get(address: &str, path: &str, accept: Option<&str>) -> Result<Response> {
    let started = Instant::now();
    let mut stream =
        TcpStream::connect(address).with_context(|| format!("connecting to {address}"))?;
    // A report of a big node takes tens of seconds, sent at once when made.
    stream.set_read_timeout(Some(Duration::from_secs(300)))?;
    let mut request = format!("GET {path} HTTP/1.0\r\nHost: {address}\r\n");
    if let Some(accept) = accept {
        request.push_str(&format!("Accept: {accept}\r\n"));
    }
    request.push_str("\r\n");
    stream
        .write_all(request.as_bytes())
        .with_context(|| format!("sending GET {path}"))?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .with_context(|| format!("reading the answer to GET {path}"))?;
    let elapsed = started.elapsed();
    let text = String::from_utf8(raw).with_context(|| format!("GET {path}: not UTF-8"))?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .with_context(|| format!("GET {path}: no end of the headers in {} bytes", text.len()))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("GET {path}: no status in {head:?}"))?;
    Ok(Response {
        status,
        body: body.to_owned(),
        elapsed,
    })
}

/// The value of metric `name` (without labels) in an exposition.
fn metric(body: &str, name: &str) -> Option<f64> {
    // One substring search (std's, optimized even in this debug build): the flooding clients
    // look for a line in every answer, and their CPU is taken from the agent's two cores.
    let at = body.find(&format!("\n{name} "))? + name.len() + 2;
    let rest = &body[at..];
    rest[..rest.find('\n').unwrap_or(rest.len())]
        .trim()
        .parse()
        .ok()
}

/// Sample lines (neither comments nor blank) in an exposition.
fn sample_lines(body: &str) -> usize {
    body.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .count()
}

/// The `p`-quantile (nearest rank) of `values`; NaN when empty.
fn quantile(values: &[f64], p: f64) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    let rank = (p * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

/// `median  min  max  p90` of `values`.
fn summary(values: &[f64]) -> String {
    let (min, max) = spread(values);
    format!(
        "{:>9.2} {:>9.2} {:>9.2} {:>9.2}",
        median(values),
        min,
        max,
        quantile(values, 0.9)
    )
}

/// The two formats, and the `Accept` that asks for each.
const FORMATS: [(&str, Option<&str>); 2] =
    [("text 0.0.4", None), ("OpenMetrics", Some(OPENMETRICS))];

/// Figures of one format's scrapes.
#[derive(Default)]
struct Scrapes {
    client_ms: Vec<f64>,
    render_ms: Vec<f64>,
    body_kib: Vec<f64>,
    samples: Vec<f64>,
}

/// `scrapes` sequential scrapes in each format, the formats alternating (the first of each
/// pair rotating): client latency, the agent's render time, body size and sample lines.
fn render_times(agent: &Agent, containers: usize, scrapes: usize) -> Result<()> {
    let mut figures = [Scrapes::default(), Scrapes::default()];
    // The render a response reports is the previous request's: which format that was.
    let mut previous: Option<usize> = None;
    for i in 0..scrapes {
        for k in 0..FORMATS.len() {
            let f = (i + k) % FORMATS.len();
            let r = get(&agent.address, "/metrics", FORMATS[f].1)?;
            if r.status != 200 {
                bail!("/metrics answered {}: {}", r.status, r.body.trim());
            }
            if let (Some(p), Some(s)) = (
                previous,
                metric(&r.body, "profiler_scrape_duration_seconds"),
            ) {
                figures[p].render_ms.push(s * 1e3);
            }
            let scrape = &mut figures[f];
            scrape.client_ms.push(r.elapsed.as_secs_f64() * 1e3);
            scrape.body_kib.push(r.body.len() as f64 / 1024.0);
            scrape.samples.push(sample_lines(&r.body) as f64);
            previous = Some(f);
        }
    }
    // The last render, told by one more scrape.
    let r = get(&agent.address, "/metrics", None)?;
    if let (Some(p), Some(s)) = (
        previous,
        metric(&r.body, "profiler_scrape_duration_seconds"),
    ) {
        figures[p].render_ms.push(s * 1e3);
    }
    println!(
        "/metrics, {scrapes} sequential scrapes per format (alternating), {containers} containers"
    );
    println!(
        "  {:<12} {:<26} {:>9} {:>9} {:>9} {:>9}",
        "format", "figure", "median", "min", "max", "p90"
    );
    for ((name, _), f) in FORMATS.iter().zip(&figures) {
        for (label, values) in [
            ("client ms (connect..end)", &f.client_ms),
            ("agent render ms", &f.render_ms),
            ("body KiB", &f.body_kib),
            ("sample lines", &f.samples),
        ] {
            println!("  {name:<12} {label:<26} {}", summary(values));
        }
    }
    let worst = figures
        .iter()
        .map(|f| quantile(&f.render_ms, 0.9))
        .fold(f64::NEG_INFINITY, f64::max);
    let medians: Vec<String> = FORMATS
        .iter()
        .zip(&figures)
        .map(|((name, _), f)| format!("{name} {:.1} ms", median(&f.render_ms)))
        .collect();
    println!(
        "  goal: render <= {GOAL_MS:.0} ms for 500 containers; here {containers}: median {}, \
         p90 of the slower {worst:.1} ms -> {}",
        medians.join(", "),
        if worst <= GOAL_MS { "met" } else { "NOT met" }
    );
    Ok(())
}

/// Who scrapes during a window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scrapers {
    /// Nobody.
    None,
    /// One scrape a second, as Prometheus does.
    PerSecond,
    /// [`CLIENTS`] clients, each scraping again as soon as it has its answer.
    Flood,
}

impl Scrapers {
    const ALL: [Scrapers; 3] = [Scrapers::None, Scrapers::PerSecond, Scrapers::Flood];

    fn label(self) -> &'static str {
        match self {
            Scrapers::None => "none",
            Scrapers::PerSecond => "1 per second",
            Scrapers::Flood => "8 in a loop",
        }
    }
}

/// What one window measured while it ran.
struct Window {
    scrapers: Scrapers,
    /// Unix seconds.
    from: f64,
    to: f64,
    /// The agent's CPU per second of the window, ms.
    cpu_ms_per_s: f64,
    /// Client latencies of the scrapes, ms.
    latency_ms: Vec<f64>,
    /// Scrapes that failed (an error, or a status other than 200).
    failed: usize,
    /// Distinct `profiler_round_duration_seconds` values the scrapes saw, ms.
    round_gauge_ms: Vec<f64>,
    /// The agent's resident memory at the end, MiB.
    rss_mib: f64,
}

/// Unix time now, seconds.
fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// [`REPEATS`] rounds of the three windows, `seconds` each, the order rotating.
fn scrape_windows(agent: &Agent, seconds: u64) -> Result<Vec<Window>> {
    let mut windows = Vec::new();
    eprint!("scraping windows ({REPEATS} x 3 x {seconds} s) ");
    for repeat in 0..REPEATS {
        for k in 0..Scrapers::ALL.len() {
            let scrapers = Scrapers::ALL[(repeat + k) % Scrapers::ALL.len()];
            windows.push(window(agent, scrapers, Duration::from_secs(seconds))?);
            eprint!(".");
        }
    }
    eprintln!();
    Ok(windows)
}

/// What one client saw.
#[derive(Default)]
struct Seen {
    latency_ms: Vec<f64>,
    failed: usize,
    round_ms: Vec<f64>,
}

impl Seen {
    fn scrape(&mut self, address: &str) {
        match get(address, "/metrics", None) {
            Ok(r) if r.status == 200 => {
                self.latency_ms.push(r.elapsed.as_secs_f64() * 1e3);
                if let Some(s) = metric(&r.body, "profiler_round_duration_seconds") {
                    self.round_ms.push(s * 1e3);
                }
            }
            _ => self.failed += 1,
        }
    }
}

/// One window of `length` with `scrapers`.
fn window(agent: &Agent, scrapers: Scrapers, length: Duration) -> Result<Window> {
    let address = agent.address.as_str();
    let cpu_before = cpu_ms(agent.pid())?;
    let from = unix_now();
    let started = Instant::now();
    let end = started + length;
    let seen: Vec<Seen> = match scrapers {
        Scrapers::None => {
            thread::sleep(length);
            Vec::new()
        }
        Scrapers::PerSecond => {
            let mut seen = Seen::default();
            let mut next = started;
            while next < end {
                seen.scrape(address);
                next += Duration::from_secs(1);
                thread::sleep(next.saturating_duration_since(Instant::now()));
            }
            vec![seen]
        }
        Scrapers::Flood => {
            let stop = AtomicBool::new(false);
            thread::scope(|scope| {
                let clients: Vec<_> = (0..CLIENTS)
                    .map(|_| {
                        scope.spawn(|| {
                            let mut seen = Seen::default();
                            while !stop.load(Ordering::Relaxed) {
                                seen.scrape(address);
                            }
                            seen
                        })
                    })
                    .collect();
                thread::sleep(length);
                stop.store(true, Ordering::Relaxed);
                clients
                    .into_iter()
                    .map(|c| c.join().unwrap_or_default())
                    .collect()
            })
        }
    };
    let elapsed = started.elapsed().as_secs_f64();
    let to = unix_now();
    let cpu = cpu_ms(agent.pid())? - cpu_before;
    let (_, rss_mib) = agent.memory_mib()?;
    let mut round_gauge_ms: Vec<f64> = seen.iter().flat_map(|s| s.round_ms.clone()).collect();
    round_gauge_ms.sort_by(f64::total_cmp);
    // Each round's value is seen by many scrapes: keep one of each.
    round_gauge_ms.dedup();
    Ok(Window {
        scrapers,
        from,
        to,
        cpu_ms_per_s: cpu / elapsed,
        latency_ms: seen.iter().flat_map(|s| s.latency_ms.clone()).collect(),
        failed: seen.iter().map(|s| s.failed).sum(),
        round_gauge_ms,
        rss_mib,
    })
}

/// One report asked for.
struct Report {
    since: &'static str,
    from: f64,
    to: f64,
    status: u16,
    latency_ms: f64,
    html_kib: f64,
    /// What the agent said instead of a report.
    refusal: Option<String>,
    /// The agent's peak and current resident memory before and after, MiB.
    before: (f64, f64),
    after: (f64, f64),
}

/// `/report` of the whole node (refused past 100 containers), of one namespace (a twelfth of
/// the node's containers) over one and five minutes, and of one pod.
fn reports(agent: &Agent) -> Result<Vec<Report>> {
    let mut reports = Vec::new();
    for since in [
        "1m",
        "5m&namespace=ns-0",
        "1m&namespace=ns-0",
        "5m&namespace=ns-1",
        "5m&pod=pod-0",
    ] {
        let before = agent.memory_mib()?;
        let from = unix_now();
        let r = get(&agent.address, &format!("/report?since={since}"), None)?;
        let to = unix_now();
        reports.push(Report {
            since,
            from,
            to,
            status: r.status,
            latency_ms: r.elapsed.as_secs_f64() * 1e3,
            html_kib: r.body.len() as f64 / 1024.0,
            refusal: (r.status != 200).then(|| r.body.trim().to_owned()),
            before,
            after: agent.memory_mib()?,
        });
        // A second between reports, for the rounds around each to be told apart.
        thread::sleep(Duration::from_secs(2));
    }
    Ok(reports)
}

/// Sends SIGTERM to the agent and waits up to 30 s (then kills it): its status and how long
/// it took.
fn terminate(process: &mut Process) -> Result<(ExitStatus, Duration)> {
    let pid = libc::pid_t::try_from(process.0.id()).context("pid out of range")?;
    let sent = Instant::now();
    if process.0.try_wait()?.is_none() {
        // SAFETY: plain kill(2) on a child we have not reaped, so the pid is still ours.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
    loop {
        if let Some(status) = process.0.try_wait()? {
            return Ok((status, sent.elapsed()));
        }
        if sent.elapsed() > Duration::from_secs(30) {
            bail!("the agent did not end within 30 s of SIGTERM");
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// A sampling round as the recording shows it: the time of its first `sample` line and of its
/// `node` line (which ends it), Unix seconds.
#[derive(Clone, Copy, Debug)]
struct Round {
    start: f64,
    end: f64,
}

/// The rounds in the recording's segments, in order.
fn rounds(record_dir: &Path) -> Result<Vec<Round>> {
    let mut segments: Vec<PathBuf> = fs::read_dir(record_dir)
        .with_context(|| format!("listing {}", record_dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("segment-") && n.ends_with(".rec"))
        })
        .collect();
    // Names hold the start time, zero-padded: they sort by time.
    segments.sort();
    let mut rounds = Vec::new();
    let mut first_sample: Option<f64> = None;
    for segment in &segments {
        let text = fs::read_to_string(segment)
            .with_context(|| format!("reading {}", segment.display()))?;
        for line in text.lines() {
            // Only the two record types matter: skip parsing the rest.
            let sample = line.contains("\"type\":\"sample\"");
            if !sample && !line.contains("\"type\":\"node\"") {
                continue;
            }
            let Ok(record) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            let (Some(ts), Some(kind)) = (record["ts"].as_f64(), record["type"].as_str()) else {
                continue;
            };
            match kind {
                "sample" => {
                    first_sample.get_or_insert(ts);
                }
                "node" => {
                    if let Some(start) = first_sample.take() {
                        rounds.push(Round { start, end: ts });
                    }
                }
                _ => {}
            }
        }
    }
    if rounds.is_empty() {
        bail!(
            "no sampling round (sample lines, then a node line) in the recording in {}",
            record_dir.display()
        );
    }
    Ok(rounds)
}

/// Figures of the rounds between `from` and `to`.
struct RoundFigures {
    /// Rounds wholly within.
    count: usize,
    /// Between the starts of consecutive rounds, ms.
    gaps_ms: Vec<f64>,
    /// From the first sample to the node line, ms.
    spans_ms: Vec<f64>,
}

fn rounds_within(rounds: &[Round], from: f64, to: f64) -> RoundFigures {
    let inside: Vec<Round> = rounds
        .iter()
        .copied()
        .filter(|r| r.start >= from && r.end <= to)
        .collect();
    RoundFigures {
        count: inside.len(),
        gaps_ms: inside
            .windows(2)
            .map(|w| (w[1].start - w[0].start) * 1e3)
            .collect(),
        spans_ms: inside.iter().map(|r| (r.end - r.start) * 1e3).collect(),
    }
}

/// The largest distance of a gap from the interval, ms.
fn worst_deviation(gaps_ms: &[f64]) -> f64 {
    gaps_ms
        .iter()
        .map(|g| (g - INTERVAL_S * 1e3).abs())
        .fold(0.0, f64::max)
}

fn print_windows(windows: &[Window], rounds: &[Round], seconds: u64) {
    println!(
        "scrapes and sampling: {REPEATS} x 3 windows of {seconds} s, alternating; rounds from \
         the rolling recording"
    );
    println!(
        "  {:<13} {:>6} {:>8} {:>8} {:>8} {:>9} {:>8} {:>8} {:>9} {:>8} {:>8} {:>8} {:>6} {:>8}",
        "scrapers",
        "rounds",
        "gap med",
        "gap min",
        "gap max",
        "|gap-1s|",
        "span med",
        "span max",
        "gauge max",
        "CPU ms/s",
        "scrapes",
        "scr p50",
        "failed",
        "RSS MiB"
    );
    for w in windows {
        let r = rounds_within(rounds, w.from, w.to);
        let (gap_min, gap_max) = spread(&r.gaps_ms);
        let (_, span_max) = spread(&r.spans_ms);
        let (_, gauge_max) = spread(&w.round_gauge_ms);
        println!(
            "  {:<13} {:>6} {:>8.1} {:>8.1} {:>8.1} {:>9.1} {:>8.1} {:>8.1} {:>9} {:>8.1} {:>8} {:>8} {:>6} {:>8.1}",
            w.scrapers.label(),
            r.count,
            median(&r.gaps_ms),
            gap_min,
            gap_max,
            worst_deviation(&r.gaps_ms),
            median(&r.spans_ms),
            span_max,
            if w.round_gauge_ms.is_empty() {
                "-".to_owned()
            } else {
                format!("{gauge_max:.1}")
            },
            w.cpu_ms_per_s,
            w.latency_ms.len(),
            if w.latency_ms.is_empty() {
                "-".to_owned()
            } else {
                format!("{:.1}", median(&w.latency_ms))
            },
            w.failed,
            w.rss_mib,
        );
    }
    println!("  per kind of window, the {REPEATS} windows together:");
    for scrapers in Scrapers::ALL {
        let of_kind: Vec<&Window> = windows.iter().filter(|w| w.scrapers == scrapers).collect();
        let figures: Vec<RoundFigures> = of_kind
            .iter()
            .map(|w| rounds_within(rounds, w.from, w.to))
            .collect();
        let gaps: Vec<f64> = figures.iter().flat_map(|f| f.gaps_ms.clone()).collect();
        let spans: Vec<f64> = figures.iter().flat_map(|f| f.spans_ms.clone()).collect();
        let cpu: Vec<f64> = of_kind.iter().map(|w| w.cpu_ms_per_s).collect();
        let latency: Vec<f64> = of_kind.iter().flat_map(|w| w.latency_ms.clone()).collect();
        let (cpu_min, cpu_max) = spread(&cpu);
        let (_, gap_max) = spread(&gaps);
        let (_, span_max) = spread(&spans);
        let scrapes = if latency.is_empty() {
            "no scrapes".to_owned()
        } else {
            let (_, lat_max) = spread(&latency);
            format!(
                "{} scrapes ({:.1}/s), latency median {:.1} ms, p90 {:.1}, max {lat_max:.1}",
                latency.len(),
                latency.len() as f64 / (seconds as f64 * of_kind.len() as f64),
                median(&latency),
                quantile(&latency, 0.9)
            )
        };
        println!(
            "  {:<13} {} rounds; gap median {:.1} ms, max {gap_max:.1} ms (|gap-1s| max {:.1} \
             ms); span median {:.1} ms, p90 {:.1}, max {span_max:.1}; CPU {:.1} ms/s ({cpu_min:.1} \
             .. {cpu_max:.1}); {scrapes}",
            scrapers.label(),
            figures.iter().map(|f| f.count).sum::<usize>(),
            median(&gaps),
            worst_deviation(&gaps),
            median(&spans),
            quantile(&spans, 0.9),
            median(&cpu),
        );
    }
    println!(
        "  (gap: from the first sample of a round to the first of the next, ideally {:.0} ms; \
         span: first sample to the node line; gauge max: the largest \
         profiler_round_duration_seconds the scrapes saw, ms; CPU: the agent's user + system per \
         second of the window; scr p50: median client latency of the window's scrapes, ms; RSS: the agent's resident memory at the end of the window)",
        INTERVAL_S * 1e3
    );
}

fn print_reports(reports: &[Report], rounds: &[Round]) {
    println!("/report, one at a time, 2 s apart");
    println!(
        "  {:<20} {:>6} {:>10} {:>9} {:>17} {:>17} {:>12}",
        "since",
        "status",
        "latency ms",
        "HTML KiB",
        "RSS before/after",
        "peak before/after",
        "round gap max"
    );
    for r in reports {
        // The rounds from just before the report to just after it.
        let f = rounds_within(rounds, r.from - INTERVAL_S * 1.5, r.to + INTERVAL_S * 1.5);
        let (_, gap_max) = spread(&f.gaps_ms);
        println!(
            "  {:<20} {:>6} {:>10.1} {:>9.1} {:>8.1}/{:<8.1} {:>8.1}/{:<8.1} {:>12}",
            r.since,
            r.status,
            r.latency_ms,
            r.html_kib,
            r.before.1,
            r.after.1,
            r.before.0,
            r.after.0,
            if f.gaps_ms.is_empty() {
                "-".to_owned()
            } else {
                format!("{gap_max:.1} ms")
            }
        );
    }
    for r in reports {
        if let Some(refusal) = &r.refusal {
            println!("  since={}: {} {refusal}", r.since, r.status);
        }
    }
}
