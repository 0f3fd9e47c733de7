//! The workload the end-to-end tests run inside test memory cgroups.
//!
//! Each subcommand allocates memory in a known pattern and reports what it did on stdout, one line
//! per event, flushed at once, so the harness can time-stamp the moment it happened:
//!
//! ```text
//! workload [--comm NAME] leak --step-mib N --interval-ms M        allocated <total_bytes> ...
//! workload [--comm NAME] grow --step-mib N --steps K --interval-ms M   ... done <total_bytes>
//! workload [--comm NAME] hold --mib N                             ready <bytes>
//! workload [--comm NAME] burst --mib N --delay-ms D               waiting, burst_start, burst_done
//! workload [--comm NAME] pagefault --mib N --iters I              pagefault pages=.. secs=.. pages_per_sec=..
//! workload [--comm NAME] json-churn --seconds S                   json-churn docs=.. secs=.. docs_per_sec=..
//! ```
//!
//! `--comm NAME` may appear anywhere and sets the process name (`prctl(PR_SET_NAME)`, which the
//! kernel truncates to 15 bytes) before anything is allocated. Errors go to stderr, exit code 2.

use std::collections::HashMap;
use std::ffi::CString;
use std::io::{self, Write};
use std::process::ExitCode;
use std::ptr;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

const MIB: usize = 1 << 20;
/// Touching one byte per 4 KiB faults in every page on x86_64 (and over-touches larger pages).
const PAGE: usize = 4096;

fn main() -> ExitCode {
    match run(std::env::args().skip(1).collect()) {
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
        "leak" => leak(
            options.mib("step-mib")?,
            options.millis("interval-ms")?,
            None,
        ),
        "grow" => leak(
            options.mib("step-mib")?,
            options.millis("interval-ms")?,
            Some(options.number("steps")?),
        ),
        "hold" => hold(options.mib("mib")?),
        "burst" => burst(options.mib("mib")?, options.millis("delay-ms")?),
        "pagefault" => pagefault(options.mib("mib")?, options.number("iters")?),
        "json-churn" => json_churn(Duration::from_secs(options.number("seconds")?)),
        other => Err(format!(
            "unknown subcommand {other:?} (leak, grow, hold, burst, pagefault, json-churn)"
        )),
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
        let name =
            name.ok_or("no subcommand given (leak, grow, hold, burst, pagefault, json-churn)")?;
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
    fn number(&self, key: &str) -> Result<u64, String> {
        let value = self
            .0
            .get(key)
            .ok_or_else(|| format!("missing option --{key}"))?;
        value
            .parse()
            .map_err(|e| format!("--{key} {value:?} is not a non-negative integer: {e}"))
    }

    fn mib(&self, key: &str) -> Result<usize, String> {
        let mib = usize::try_from(self.number(key)?).map_err(|e| format!("--{key}: {e}"))?;
        mib.checked_mul(MIB)
            .ok_or_else(|| format!("--{key} {mib} MiB does not fit in memory"))
    }

    fn millis(&self, key: &str) -> Result<Duration, String> {
        Ok(Duration::from_millis(self.number(key)?))
    }
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

/// `leak` (steps = None: forever) and `grow` (steps = Some(K), then `done` and sleep).
fn leak(step: usize, interval: Duration, steps: Option<u64>) -> Result<(), String> {
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
