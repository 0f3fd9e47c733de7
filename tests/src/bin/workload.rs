//! The workload the end-to-end tests and the benchmarks run inside test memory cgroups.
//!
//! Each subcommand allocates memory in a known pattern and reports what it did on stdout, one line
//! per event, flushed at once, so the harness can time-stamp the moment it happened:
//!
//! ```text
//! workload [--comm NAME] leak --step-mib N --interval-ms M [--baseline-mib B] [--hold-s H]
//!                                                                 allocated <total_bytes> ...
//! workload [--comm NAME] grow --step-mib N --steps K --interval-ms M   ... done <total_bytes>
//! workload [--comm NAME] hold --mib N                             ready <bytes>
//! workload [--comm NAME] burst --mib N --delay-ms D               waiting, burst_start, burst_done
//! workload [--comm NAME] pagefault --mib N --iters I              pagefault pages=.. secs=.. pages_per_sec=..
//! workload [--comm NAME] churn --mib N --interval-ms M            ready (N MiB touched and freed every M ms)
//! workload [--comm NAME] json-churn --seconds S                   json-churn docs=.. secs=.. docs_per_sec=..
//! workload [--comm NAME] exit --code N --after-ms T               ready, then exits with N
//! workload [--comm NAME] ignore-term                              ready (SIGTERM ignored)
//! workload [--comm NAME] spawn --seconds S                        spawn runs=.. secs=.. spawns_per_sec=..
//! workload [--comm NAME] signals --signal usr1|term --seconds S   signals sent=.. secs=.. signals_per_sec=..
//! workload [--comm NAME] sigstorm --children N                    sigstorm children=N killed=N secs=..
//! ```
//!
//! `spawn` runs `/bin/true` in a loop (fork, exec, exit, wait): the fork/exit-heavy workload.
//! `signals` forks a child that ignores SIGUSR1 and SIGTERM and sends it one signal after
//! another with kill(2): SIGUSR1 is what signal-heavy programs send (and the profiler's kernel
//! filter drops), SIGTERM what the profiler reports, each one, to a watched process.
//! `sigstorm` forks N children in turn that each die of their own SIGKILL ([`sigstorm`]).
//!
//! `leak` with `--baseline-mib B` first touches B MiB, and with `--hold-s H` waits H seconds
//! before it leaks (both 0 by default: it leaks at once). It prints `growth_start <unix seconds>`
//! when the leak starts.
//!
//! The modes of `cargo xtask bench forecast` (`accelerate`, `sawtooth`, `pagecache`, `shmem`,
//! `spike`, `steps`, `multi`) are described in [`forecast`] and by `workload help`.
//!
//! `--comm NAME` may appear anywhere and sets the process name (`prctl(PR_SET_NAME)`, which the
//! kernel truncates to 15 bytes) before anything is allocated. Errors go to stderr, exit code 2.

// Beside this file in a directory of its own: a file directly in src/bin would be another binary.
#[path = "workload/forecast.rs"]
mod forecast;
#[path = "workload/sigstorm.rs"]
mod sigstorm;

use std::collections::HashMap;
use std::ffi::CString;
use std::io::{self, Write};
use std::process::ExitCode;
use std::ptr;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};

const MIB: usize = 1 << 20;
/// Touching one byte per 4 KiB faults in every page on x86_64 (and over-touches larger pages).
const PAGE: usize = 4096;

/// The subcommands, for error messages.
const SUBCOMMANDS: &str = "leak, grow, hold, burst, pagefault, churn, json-churn, exit, ignore-term, \
                           spawn, signals, sigstorm, accelerate, sawtooth, pagecache, shmem, spike, steps, multi; \
                           `workload help` describes them";

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if matches!(argv.as_slice(), [one] if one == "help" || one == "--help" || one == "-h") {
        print!("{}", forecast::HELP);
        return ExitCode::SUCCESS;
    }
    match run(argv) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("workload: {message}");
            ExitCode::from(2)
        }
    }
}

fn run(argv: Vec<String>) -> Result<(), String> {
    let command = Command::parse(argv)?;
    if let Some(name) = &command.comm {
        set_comm(name)?;
    }
    let options = &command.options;
    match command.name.as_str() {
        "leak" => {
            options.allow(&["step-mib", "interval-ms", "baseline-mib", "hold-s"])?;
            let quiet = Quiet {
                baseline: options.mib_or("baseline-mib", 0)?,
                hold: options.secs_or("hold-s", 0)?,
            };
            leak(
                options.mib("step-mib")?,
                options.millis("interval-ms")?,
                None,
                &quiet,
            )
        }
        "grow" => {
            options.allow(&["step-mib", "steps", "interval-ms"])?;
            leak(
                options.mib("step-mib")?,
                options.millis("interval-ms")?,
                Some(options.number("steps")?),
                &Quiet::NONE,
            )
        }
        "hold" => {
            options.allow(&["mib"])?;
            hold(options.mib("mib")?)
        }
        "burst" => {
            options.allow(&["mib", "delay-ms"])?;
            burst(options.mib("mib")?, options.millis("delay-ms")?)
        }
        "pagefault" => {
            options.allow(&["mib", "iters"])?;
            pagefault(options.mib("mib")?, options.number("iters")?)
        }
        "churn" => {
            options.allow(&["mib", "interval-ms"])?;
            churn(options.mib("mib")?, options.millis("interval-ms")?)
        }
        "json-churn" => {
            options.allow(&["seconds"])?;
            json_churn(Duration::from_secs(options.number("seconds")?))
        }
        "exit" => {
            options.allow(&["code", "after-ms"])?;
            let code = u8::try_from(options.number("code")?)
                .map_err(|_| "--code takes 0 to 255".to_string())?;
            say("ready")?;
            thread::sleep(options.millis("after-ms")?);
            std::process::exit(i32::from(code))
        }
        "ignore-term" => {
            options.allow(&[])?;
            ignore_term()
        }
        "spawn" => {
            options.allow(&["seconds"])?;
            spawn(Duration::from_secs(options.number("seconds")?))
        }
        "signals" => {
            options.allow(&["signal", "seconds"])?;
            let signal = match options.text("signal")? {
                "usr1" => libc::SIGUSR1,
                "term" => libc::SIGTERM,
                other => return Err(format!("--signal takes usr1 or term, not {other:?}")),
            };
            signals(signal, Duration::from_secs(options.number("seconds")?))
        }
        "sigstorm" => {
            options.allow(&["children"])?;
            sigstorm::run(options.number("children")?)
        }
        other => match forecast::run(other, options) {
            Some(result) => result,
            None => Err(format!("unknown subcommand {other:?} ({SUBCOMMANDS})")),
        },
    }
}

/// The parsed command line: the subcommand, its `--key value` options and the global `--comm`.
struct Command {
    name: String,
    comm: Option<String>,
    options: Options,
}

impl Command {
    fn parse(argv: Vec<String>) -> Result<Self, String> {
        let mut name = None;
        let mut comm = None;
        let mut options = HashMap::new();
        let mut args = argv.into_iter();
        while let Some(arg) = args.next() {
            if let Some(key) = arg.strip_prefix("--") {
                let value = args
                    .next()
                    .ok_or_else(|| format!("option --{key} needs a value"))?;
                if key == "comm" {
                    comm = Some(value);
                } else if options.insert(key.to_owned(), value).is_some() {
                    return Err(format!("option --{key} given twice"));
                }
            } else if name.is_none() {
                name = Some(arg);
            } else {
                return Err(format!("unexpected argument {arg:?}"));
            }
        }
        let name = name.ok_or_else(|| format!("no subcommand given ({SUBCOMMANDS})"))?;
        Ok(Self {
            name,
            comm,
            options: Options(options),
        })
    }
}

/// A subcommand's `--key value` options.
struct Options(HashMap<String, String>);

impl Options {
    /// Fails on an option the subcommand does not know, so a misspelt one is not ignored.
    fn allow(&self, known: &[&str]) -> Result<(), String> {
        let mut unknown: Vec<&str> = self
            .0
            .keys()
            .map(String::as_str)
            .filter(|key| !known.contains(key))
            .collect();
        unknown.sort_unstable();
        match unknown.first() {
            None => Ok(()),
            Some(key) => Err(format!(
                "unknown option --{key} (this subcommand takes --{})",
                known.join(", --")
            )),
        }
    }

    fn text(&self, key: &str) -> Result<&str, String> {
        self.0
            .get(key)
            .map(String::as_str)
            .ok_or_else(|| format!("missing option --{key}"))
    }

    fn number(&self, key: &str) -> Result<u64, String> {
        let value = self.text(key)?;
        value
            .parse()
            .map_err(|e| format!("--{key} {value:?} is not a non-negative integer: {e}"))
    }

    fn number_or(&self, key: &str, default: u64) -> Result<u64, String> {
        if self.0.contains_key(key) {
            self.number(key)
        } else {
            Ok(default)
        }
    }

    fn mib(&self, key: &str) -> Result<usize, String> {
        to_bytes(key, self.number(key)?)
    }

    fn mib_or(&self, key: &str, default: u64) -> Result<usize, String> {
        to_bytes(key, self.number_or(key, default)?)
    }

    fn millis(&self, key: &str) -> Result<Duration, String> {
        Ok(Duration::from_millis(self.number(key)?))
    }

    fn millis_or(&self, key: &str, default: u64) -> Result<Duration, String> {
        Ok(Duration::from_millis(self.number_or(key, default)?))
    }

    fn secs_or(&self, key: &str, default: u64) -> Result<Duration, String> {
        Ok(Duration::from_secs(self.number_or(key, default)?))
    }
}

/// `mib` MiB in bytes.
fn to_bytes(key: &str, mib: u64) -> Result<usize, String> {
    let mib = usize::try_from(mib).map_err(|e| format!("--{key}: {e}"))?;
    mib.checked_mul(MIB)
        .ok_or_else(|| format!("--{key} {mib} MiB does not fit in memory"))
}

fn set_comm(name: &str) -> Result<(), String> {
    let name = CString::new(name).map_err(|_| format!("--comm {name:?} contains a NUL byte"))?;
    // SAFETY: PR_SET_NAME reads a NUL-terminated string (at most 16 bytes of it) from the pointer.
    let rc = unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr(), 0, 0, 0) };
    if rc != 0 {
        return Err(format!(
            "prctl(PR_SET_NAME): {}",
            io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// Anonymous private memory obtained with mmap, unmapped on drop.
struct Region {
    ptr: *mut u8,
    len: usize,
}

impl Region {
    /// Maps `len` bytes and writes one byte per page, so every page is faulted in and charged.
    fn touched(len: usize) -> Result<Self, String> {
        // SAFETY: a fresh anonymous mapping; no existing memory is affected.
        let ptr = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len.max(1),
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(format!(
                "mmap of {len} bytes: {}",
                io::Error::last_os_error()
            ));
        }
        let region = Self {
            ptr: ptr.cast(),
            len,
        };
        for offset in (0..len).step_by(PAGE) {
            // SAFETY: offset < len, inside the mapping; volatile so the write is not elided.
            unsafe { region.ptr.add(offset).write_volatile(1) };
        }
        Ok(region)
    }

    fn pages(&self) -> usize {
        self.len.div_ceil(PAGE)
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: ptr/len are the mapping made in `touched`, unmapped exactly once.
        unsafe { libc::munmap(self.ptr.cast(), self.len.max(1)) };
    }
}

/// Prints one line and flushes it, so the harness sees it the moment it is written.
fn say(line: &str) -> Result<(), String> {
    let mut out = io::stdout().lock();
    writeln!(out, "{line}")
        .and_then(|()| out.flush())
        .map_err(|e| format!("writing to stdout: {e}"))
}

fn sleep_forever() -> ! {
    loop {
        thread::sleep(Duration::from_secs(3600));
    }
}

/// What a workload does before its growth starts: it touches a baseline, then holds it quietly.
struct Quiet {
    /// Bytes touched first and held to the end.
    baseline: usize,
    /// How long the baseline alone is held.
    hold: Duration,
}

impl Quiet {
    /// No baseline, no hold: the growth starts at once.
    const NONE: Quiet = Quiet {
        baseline: 0,
        hold: Duration::ZERO,
    };

    /// Touches the baseline (printing `baseline <bytes>`) and holds it for the quiet phase; the
    /// returned region (if any) must be kept to the end.
    fn run(&self) -> Result<Option<Region>, String> {
        let baseline = if self.baseline > 0 {
            let region = Region::touched(self.baseline)?;
            say(&format!("baseline {}", self.baseline))?;
            Some(region)
        } else {
            None
        };
        thread::sleep(self.hold);
        Ok(baseline)
    }
}

/// Prints `growth_start <unix seconds>`: the harness measures warning leads from it.
fn say_growth_start() -> Result<(), String> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| format!("the clock is before 1970: {e}"))?;
    say(&format!("growth_start {:.3}", now.as_secs_f64()))
}

/// `leak` (steps = None: forever) and `grow` (steps = Some(K), then `done` and sleep).
fn leak(step: usize, interval: Duration, steps: Option<u64>, quiet: &Quiet) -> Result<(), String> {
    let _baseline = quiet.run()?;
    say_growth_start()?;
    let mut held = Vec::new();
    let mut total = 0usize;
    let mut done = 0u64;
    while steps.is_none_or(|steps| done < steps) {
        held.push(Region::touched(step)?);
        total += step;
        done += 1;
        say(&format!("allocated {total}"))?;
        thread::sleep(interval);
    }
    say(&format!("done {total}"))?;
    sleep_forever()
}

/// Ignores SIGTERM, as a program that does not handle it would leave a runtime's stop to the
/// SIGKILL after the grace period, and sleeps.
fn ignore_term() -> Result<(), String> {
    // SAFETY: setting a signal's disposition to SIG_IGN has no preconditions.
    if unsafe { libc::signal(libc::SIGTERM, libc::SIG_IGN) } == libc::SIG_ERR {
        return Err(format!(
            "signal(SIGTERM, SIG_IGN): {}",
            io::Error::last_os_error()
        ));
    }
    say("ready")?;
    sleep_forever()
}

fn spawn(seconds: Duration) -> Result<(), String> {
    let start = Instant::now();
    let mut runs = 0u64;
    while start.elapsed() < seconds {
        let status = std::process::Command::new("/bin/true")
            .status()
            .map_err(|e| format!("running /bin/true: {e}"))?;
        if !status.success() {
            return Err(format!("/bin/true: {status}"));
        }
        runs += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    say(&format!(
        "spawn runs={runs} secs={secs} spawns_per_sec={}",
        runs as f64 / secs
    ))
}

fn signals(signal: i32, seconds: Duration) -> Result<(), String> {
    // SAFETY: fork in a single-threaded process; the child only calls async-signal-safe
    // functions (signal, pause, _exit).
    let child = unsafe { libc::fork() };
    if child < 0 {
        return Err(format!("fork: {}", io::Error::last_os_error()));
    }
    if child == 0 {
        // SAFETY: as above.
        unsafe {
            libc::signal(libc::SIGUSR1, libc::SIG_IGN);
            libc::signal(libc::SIGTERM, libc::SIG_IGN);
            loop {
                libc::pause();
            }
        }
    }
    // The child ignores the signals only once it has run: give it the time to.
    thread::sleep(Duration::from_millis(100));
    let start = Instant::now();
    let mut sent = 0u64;
    let mut failed = None;
    while start.elapsed() < seconds {
        for _ in 0..100 {
            // SAFETY: kill(2) on our own child.
            if unsafe { libc::kill(child, signal) } != 0 {
                failed = Some(io::Error::last_os_error());
            }
        }
        sent += 100;
    }
    let secs = start.elapsed().as_secs_f64();
    // SAFETY: kill(2) and waitpid(2) on our own child.
    unsafe {
        libc::kill(child, libc::SIGKILL);
        libc::waitpid(child, ptr::null_mut(), 0);
    }
    if let Some(error) = failed {
        return Err(format!("kill(2): {error}"));
    }
    say(&format!(
        "signals sent={sent} secs={secs} signals_per_sec={}",
        sent as f64 / secs
    ))
}

fn hold(len: usize) -> Result<(), String> {
    let _held = Region::touched(len)?;
    say(&format!("ready {len}"))?;
    sleep_forever()
}

fn burst(len: usize, delay: Duration) -> Result<(), String> {
    say("waiting")?;
    thread::sleep(delay);
    say("burst_start")?;
    let _held = Region::touched(len)?;
    say("burst_done")?;
    sleep_forever()
}

fn pagefault(len: usize, iterations: u64) -> Result<(), String> {
    let start = Instant::now();
    let mut pages = 0usize;
    for _ in 0..iterations {
        pages += Region::touched(len)?.pages();
    }
    let secs = start.elapsed().as_secs_f64();
    say(&format!(
        "pagefault pages={pages} secs={secs} pages_per_sec={}",
        pages as f64 / secs
    ))
}

/// A busy but steady container: maps `len` bytes, touches them, unmaps them, then sleeps
/// `interval`, until killed; charges and uncharges every round, the usage stays put.
fn churn(len: usize, interval: Duration) -> Result<(), String> {
    say("ready")?;
    loop {
        drop(Region::touched(len)?);
        thread::sleep(interval);
    }
}

fn json_churn(duration: Duration) -> Result<(), String> {
    let start = Instant::now();
    let mut random = XorShift(0x9e37_79b9_7f4a_7c15);
    let mut docs = 0u64;
    while start.elapsed() < duration {
        let document = build_document(&mut random);
        let text = serde_json::to_string(&document).map_err(|e| format!("serialize: {e}"))?;
        let parsed: Value = serde_json::from_str(&text).map_err(|e| format!("parse: {e}"))?;
        if parsed != document {
            return Err("a document did not survive serialize + parse".to_owned());
        }
        docs += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    say(&format!(
        "json-churn docs={docs} secs={secs} docs_per_sec={}",
        docs as f64 / secs
    ))
}

/// About 3 MB of serialized JSON: orders with customers, line items, tags and free text.
fn build_document(random: &mut XorShift) -> Value {
    let orders: Vec<Value> = (0..6000)
        .map(|id| {
            let items: Vec<Value> = (0..random.below(6) + 1)
                .map(|line| {
                    json!({
                        "line": line,
                        "sku": format!("SKU-{:08x}", random.next()),
                        "quantity": random.below(20) + 1,
                        "unit_price": random.below(100_000) as f64 / 100.0,
                    })
                })
                .collect();
            let mut customer = Map::new();
            customer.insert("id".to_owned(), json!(random.below(1_000_000)));
            customer.insert(
                "name".to_owned(),
                json!(format!("customer {}", random.next())),
            );
            customer.insert(
                "tags".to_owned(),
                json!(["retail", "priority", "eu-west"][..(random.below(3) + 1) as usize]),
            );
            json!({
                "id": id,
                "customer": customer,
                "items": items,
                "note": "x".repeat(random.below(200) as usize),
                "paid": random.below(2) == 1,
            })
        })
        .collect();
    json!({ "version": 1, "orders": orders })
}

/// A small deterministic generator, so the workload needs no extra dependency.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }
}
