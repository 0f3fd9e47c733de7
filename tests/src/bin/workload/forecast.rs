//! The modes `cargo xtask bench forecast` runs: memory growth shapes that end in an OOM kill or
//! must not raise a warning. Each is time-compressed (limits of 64–256 MiB, a minute or two).
//!
//! Every mode prints `growth_start <unix seconds>` the moment its growth starts. All but the
//! sawtooth first touch a baseline and hold it for a quiet phase (`--hold-s`, 25 s by default):
//! the forecaster never warns in its first 20 s on a container (its learning time), so growth
//! that started earlier could not be warned about in time, and would not test it. The sawtooth
//! runs from the first second, as a garbage-collected runtime does, and only its floor waits.
use std::{
    fs::File,
    io::{self, Read as _},
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    process::{Child, Command, Stdio},
    ptr, thread,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use super::{say, say_growth_start, sleep_forever, Options, Quiet, Region, XorShift, MIB, PAGE};

/// `workload help`.
pub(crate) const HELP: &str = "\
workload [--comm NAME] SUBCOMMAND [--key value ...]

Test modes (see the source's header): leak, grow, hold, burst, pagefault, churn, json-churn, and
for the deaths: `exit --code N --after-ms T` (exits with N after T ms) and `ignore-term` (ignores
SIGTERM and sleeps, as a program that leaves a stop to the grace period's SIGKILL); for the ring
overflow: `sigstorm --children N` (N children in turn, each killing itself with SIGKILL).

Modes of `cargo xtask bench forecast`. Each prints `growth_start <unix seconds>` when its growth
starts. All but sawtooth first touch --baseline-mib (default 16) and hold it for --hold-s
(default 25): the forecaster does not warn in its first 20 s on a container (learning time), so
the growth must start after that.

  accelerate [--rate-kib-s 560] [--double-s 30] [--tick-ms 100]
      A leak whose rate starts at --rate-kib-s KiB/s and doubles every --double-s seconds.
  sawtooth [--floor-mib 32] [--peak-mib 96] [--period-ms 6000] [--floor-step-mib 0]
           [--hold-s 25] [--jitter-pct 0]
      A garbage collector's heap: from the first second it grows from the floor to the peak
      over 85 % of each period, holds, then frees back to the floor (munmap). The peak varies
      by +-jitter-pct % per cycle. With --floor-step-mib S > 0 the floor (and the peak) rises by
      S MiB per cycle once --hold-s has passed: growth_start is printed then; with S = 0 at once.
  pagecache --file PATH [--chunk-kib 1024] [--mib-per-s 64]
      Reads PATH with read(2) from start to end, over and over, at most --mib-per-s MiB/s
      (0: as fast as it can). Page cache, never an OOM.
  shmem [--step-mib 1] [--interval-ms 600]
      Grows a memfd (shmem, charged to this process's memory cgroup) by --step-mib every
      --interval-ms, mapped and touched; freed when the process dies.
  spike --mib N
      Touches N MiB at once, as fast as it can (give twice the limit).
  steps [--step-mib 12] [--plateau-s 8]
      Touches --step-mib at once, then holds for --plateau-s, over and over.
  multi [--procs 3] [--holder-mib 32] [--step-mib 1] [--interval-ms 600]
      --procs processes in the cgroup: this one, which starts the others (re-executing itself)
      and prints their lines; --procs - 1 holders of --holder-mib MiB (comm holder-K); one
      leaker (comm leaker) of --baseline-mib that leaks --step-mib every --interval-ms after
      --hold-s. Exits when the leaker dies (137 if it was SIGKILLed), killing the holders; on
      SIGTERM or SIGINT it kills them all and exits.
";

/// Runs the forecast mode `name`, or returns `None` if there is none of that name.
pub(crate) fn run(name: &str, options: &Options) -> Option<Result<(), String>> {
    let result = match name {
        "accelerate" => accelerate(options),
        "sawtooth" => sawtooth(options),
        "pagecache" => pagecache(options),
        "shmem" => shmem(options),
        "spike" => spike(options),
        "steps" => steps(options),
        "multi" => multi(options),
        _ => return None,
    };
    Some(result)
}

/// The options every mode with a quiet start takes.
const QUIET_KEYS: [&str; 2] = ["baseline-mib", "hold-s"];

fn quiet(options: &Options) -> Result<Quiet, String> {
    Ok(Quiet {
        baseline: options.mib_or("baseline-mib", 16)?,
        hold: options.secs_or("hold-s", 25)?,
    })
}

/// Fails on options outside `QUIET_KEYS` and `own`.
fn allow(options: &Options, own: &[&str]) -> Result<(), String> {
    let known: Vec<&str> = QUIET_KEYS.iter().chain(own).copied().collect();
    options.allow(&known)
}

/// Memory that only grows (or is freed all at once): touched anonymous regions.
#[derive(Default)]
struct Heap {
    regions: Vec<Region>,
    bytes: usize,
}

impl Heap {
    /// Touches `bytes` more (rounded down to whole pages; nothing if that is 0).
    fn grow(&mut self, bytes: usize) -> Result<(), String> {
        let bytes = bytes / PAGE * PAGE;
        if bytes > 0 {
            self.regions.push(Region::touched(bytes)?);
            self.bytes += bytes;
        }
        Ok(())
    }

    /// Grows to `target` bytes if it is below; returns whether it grew.
    fn grow_to(&mut self, target: usize) -> Result<bool, String> {
        let before = self.bytes;
        if target > self.bytes {
            self.grow(target - self.bytes)?;
        }
        Ok(self.bytes > before)
    }

    /// Unmaps everything, so the memory cgroup uncharges it at once.
    fn free(&mut self) {
        self.regions.clear();
        self.bytes = 0;
    }
}

/// A leak whose rate doubles every `double-s` seconds: bytes leaked after t seconds are
/// r0 · D / ln 2 · (2^(t/D) − 1).
fn accelerate(options: &Options) -> Result<(), String> {
    allow(options, &["rate-kib-s", "double-s", "tick-ms"])?;
    let rate = options.number_or("rate-kib-s", 560)? as f64 * 1024.0;
    let doubling = options.number_or("double-s", 30)? as f64;
    let tick = options.millis_or("tick-ms", 100)?;
    if doubling <= 0.0 {
        return Err("--double-s must be at least 1".to_owned());
    }
    let _baseline = quiet(options)?.run()?;
    say_growth_start()?;
    let start = Instant::now();
    let mut heap = Heap::default();
    loop {
        let t = start.elapsed().as_secs_f64();
        let target = rate * doubling / std::f64::consts::LN_2 * ((t / doubling).exp2() - 1.0);
        if heap.grow_to(target as usize)? {
            let now_rate = rate * (t / doubling).exp2();
            say(&format!("allocated {} rate {now_rate:.0}", heap.bytes))?;
        }
        thread::sleep(tick);
    }
}

/// Part of a period spent growing toward the peak; the rest is spent at the peak (the
/// collector's marking), so that a sampler ticking every second sees the peaks.
const RAMP: f64 = 0.85;

/// A garbage collector's sawtooth, with a floor that may rise after the hold.
fn sawtooth(options: &Options) -> Result<(), String> {
    options.allow(&[
        "floor-mib",
        "peak-mib",
        "period-ms",
        "floor-step-mib",
        "hold-s",
        "jitter-pct",
    ])?;
    let floor = options.mib_or("floor-mib", 32)?;
    let peak = options.mib_or("peak-mib", 96)?;
    let period = options.millis_or("period-ms", 6000)?;
    let step = options.mib_or("floor-step-mib", 0)?;
    let hold = options.secs_or("hold-s", 25)?;
    let jitter = options.number_or("jitter-pct", 0)? as f64 / 100.0;
    if peak <= floor {
        return Err(format!(
            "--peak-mib ({}) must be above --floor-mib ({})",
            peak / MIB,
            floor / MIB
        ));
    }
    if period < Duration::from_millis(500) {
        return Err("--period-ms must be at least 500".to_owned());
    }
    let amplitude = peak - floor;
    let tick = Duration::from_millis(100);
    let mut random = XorShift(seed());
    let mut live = Heap::default();
    live.grow(floor)?;
    say(&format!("baseline {}", live.bytes))?;
    if step == 0 {
        say_growth_start()?;
    }
    let start = Instant::now();
    let mut rising = false;
    let mut garbage = Heap::default();
    let mut cycle = 0u64;
    loop {
        if step > 0 && !rising && start.elapsed() >= hold {
            rising = true;
            say_growth_start()?;
        }
        if rising {
            live.grow(step)?;
        }
        // Uniform in [-jitter, +jitter] of the peak.
        let spread = (random.below(2001) as f64 / 1000.0 - 1.0) * jitter;
        let cycle_peak = (live.bytes + amplitude) as f64 * (1.0 + spread);
        let target = (cycle_peak as usize).saturating_sub(live.bytes);
        let cycle_start = Instant::now();
        while cycle_start.elapsed() < period {
            let part =
                (cycle_start.elapsed().as_secs_f64() / (period.as_secs_f64() * RAMP)).min(1.0);
            garbage.grow_to((target as f64 * part) as usize)?;
            thread::sleep(tick.min(period.saturating_sub(cycle_start.elapsed())));
        }
        say(&format!(
            "cycle {cycle} floor {} peak {}",
            live.bytes,
            live.bytes + garbage.bytes
        ))?;
        // The collection: everything allocated this cycle is garbage.
        garbage.free();
        cycle += 1;
    }
}

/// A seed that differs run to run, so jitter is not the same sequence every time.
fn seed() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1);
    (nanos ^ u64::from(std::process::id())) | 1
}

/// Reads a file over and over with read(2): page cache that the kernel reclaims as needed.
fn pagecache(options: &Options) -> Result<(), String> {
    allow(options, &["file", "chunk-kib", "mib-per-s"])?;
    let path = options.text("file")?.to_owned();
    let chunk = usize::try_from(options.number_or("chunk-kib", 1024)?)
        .map_err(|e| format!("--chunk-kib: {e}"))?
        .max(4)
        * 1024;
    let rate = options.number_or("mib-per-s", 64)? as f64 * MIB as f64;
    let mut file = File::open(&path).map_err(|e| format!("opening {path}: {e}"))?;
    let _baseline = quiet(options)?.run()?;
    let mut buffer = vec![0u8; chunk];
    say_growth_start()?;
    let start = Instant::now();
    let mut total = 0u64;
    let mut pass = 0u64;
    loop {
        pass += 1;
        let mut read = 0u64;
        loop {
            let n = file
                .read(&mut buffer)
                .map_err(|e| format!("reading {path}: {e}"))?;
            if n == 0 {
                break;
            }
            read += n as u64;
            total += n as u64;
            if rate > 0.0 {
                let due = Duration::from_secs_f64(total as f64 / rate);
                if let Some(ahead) = due.checked_sub(start.elapsed()) {
                    thread::sleep(ahead);
                }
            }
        }
        if read == 0 {
            return Err(format!("{path} is empty"));
        }
        say(&format!("pass {pass} read {read} total {total}"))?;
        io::Seek::rewind(&mut file).map_err(|e| format!("rewinding {path}: {e}"))?;
    }
}

/// A memfd, grown by mapping and touching each new part: shmem charged to this memory cgroup.
fn shmem(options: &Options) -> Result<(), String> {
    allow(options, &["step-mib", "interval-ms"])?;
    let step = options.mib_or("step-mib", 1)?;
    let interval = options.millis_or("interval-ms", 600)?;
    // SAFETY: the name is a NUL-terminated literal; the fd returned is checked and owned below.
    let fd = unsafe { libc::memfd_create(c"workload-shmem".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(format!("memfd_create: {}", io::Error::last_os_error()));
    }
    // SAFETY: fd is a fresh descriptor that nothing else owns.
    let memfd = unsafe { OwnedFd::from_raw_fd(fd) };
    let _baseline = quiet(options)?.run()?;
    say_growth_start()?;
    let mut mapped = Vec::new();
    let mut size = 0usize;
    loop {
        mapped.push(SharedRegion::grow(&memfd, size, step)?);
        size += step;
        say(&format!("shmem {size}"))?;
        thread::sleep(interval);
    }
}

/// A shared mapping of part of a memfd, unmapped on drop (the memfd keeps the pages).
struct SharedRegion {
    ptr: *mut u8,
    len: usize,
}

impl SharedRegion {
    /// Extends the memfd from `offset` by `len` bytes, maps that part and touches every page.
    fn grow(memfd: &OwnedFd, offset: usize, len: usize) -> Result<Self, String> {
        let end = libc::off_t::try_from(offset + len).map_err(|e| format!("memfd size: {e}"))?;
        let at = libc::off_t::try_from(offset).map_err(|e| format!("memfd offset: {e}"))?;
        // SAFETY: ftruncate on a descriptor we own.
        if unsafe { libc::ftruncate(memfd.as_raw_fd(), end) } != 0 {
            return Err(format!("ftruncate memfd: {}", io::Error::last_os_error()));
        }
        // SAFETY: a new shared mapping of a range of our memfd; no existing memory is affected.
        let ptr = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len.max(1),
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                memfd.as_raw_fd(),
                at,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(format!("mmap memfd: {}", io::Error::last_os_error()));
        }
        let region = Self {
            ptr: ptr.cast(),
            len,
        };
        for page in (0..len).step_by(PAGE) {
            // SAFETY: page < len, inside the mapping; volatile so the write is not elided.
            unsafe { region.ptr.add(page).write_volatile(1) };
        }
        Ok(region)
    }
}

impl Drop for SharedRegion {
    fn drop(&mut self) {
        // SAFETY: ptr/len are the mapping made in `grow`, unmapped exactly once.
        unsafe { libc::munmap(self.ptr.cast(), self.len.max(1)) };
    }
}

/// Touches `--mib` at once after the hold.
fn spike(options: &Options) -> Result<(), String> {
    allow(options, &["mib"])?;
    let len = options.mib("mib")?;
    let _baseline = quiet(options)?.run()?;
    say_growth_start()?;
    let _spike = Region::touched(len)?;
    say(&format!("spike_done {len}"))?;
    sleep_forever()
}

/// Steps of `--step-mib`, each followed by a plateau.
fn steps(options: &Options) -> Result<(), String> {
    allow(options, &["step-mib", "plateau-s"])?;
    let step = options.mib_or("step-mib", 12)?;
    let plateau = options.secs_or("plateau-s", 8)?;
    let _baseline = quiet(options)?.run()?;
    say_growth_start()?;
    let mut heap = Heap::default();
    loop {
        heap.grow(step)?;
        say(&format!("allocated {}", heap.bytes))?;
        thread::sleep(plateau);
    }
}

/// Several processes in the cgroup, one leaking; see [`HELP`].
fn multi(options: &Options) -> Result<(), String> {
    allow(options, &["procs", "holder-mib", "step-mib", "interval-ms"])?;
    let procs = options.number_or("procs", 3)?;
    if procs < 2 {
        return Err("--procs must be at least 2 (holders and one leaker)".to_owned());
    }
    let holder_mib = options.number_or("holder-mib", 32)?.to_string();
    let baseline = options.number_or("baseline-mib", 16)?.to_string();
    let hold = options.number_or("hold-s", 25)?.to_string();
    let step = options.number_or("step-mib", 1)?.to_string();
    let interval = options.number_or("interval-ms", 600)?.to_string();

    // SIGTERM and SIGINT are taken with sigtimedwait below; blocked before any thread starts,
    // so no thread takes them. (Children get an empty mask: std resets it before exec.)
    let signals = stop_signals();
    // SAFETY: a valid signal set; the old mask is not needed.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &signals, ptr::null_mut()) };
    if rc != 0 {
        return Err(format!(
            "pthread_sigmask: {}",
            io::Error::from_raw_os_error(rc)
        ));
    }

    let mut children = Children(Vec::new());
    for k in 1..procs {
        let comm = format!("holder-{k}");
        children.0.push(respawn(
            &["--comm", &comm, "hold", "--mib", &holder_mib],
            Stdio::null(),
        )?);
    }
    let mut leaker = respawn(
        &[
            "--comm",
            "leaker",
            "leak",
            "--baseline-mib",
            &baseline,
            "--hold-s",
            &hold,
            "--step-mib",
            &step,
            "--interval-ms",
            &interval,
        ],
        Stdio::piped(),
    )?;
    say(&format!(
        "children holders {} leaker {}",
        children
            .0
            .iter()
            .map(|c| c.id().to_string())
            .collect::<Vec<_>>()
            .join(","),
        leaker.id()
    ))?;
    // The leaker's lines (growth_start, allocated ...) become ours, as they come.
    let stdout = leaker.stdout.take().ok_or("the leaker has no stdout")?;
    thread::spawn(move || {
        for line in io::BufRead::lines(io::BufReader::new(stdout)).map_while(Result::ok) {
            if say(&line).is_err() {
                break;
            }
        }
    });
    let timeout = libc::timespec {
        tv_sec: 0,
        tv_nsec: 100_000_000,
    };
    loop {
        if let Some(status) = leaker
            .try_wait()
            .map_err(|e| format!("waiting for the leaker: {e}"))?
        {
            use std::os::unix::process::ExitStatusExt as _;
            say(&format!("leaker_exit {status}"))?;
            drop(children);
            let code = match (status.signal(), status.code()) {
                (Some(signal), _) => 128 + signal,
                (None, Some(code)) => code,
                (None, None) => 1,
            };
            std::process::exit(code);
        }
        // SAFETY: a valid signal set and timeout; no siginfo wanted.
        let signal = unsafe { libc::sigtimedwait(&signals, ptr::null_mut(), &timeout) };
        if signal > 0 {
            say(&format!("stopping on signal {signal}"))?;
            children.0.push(leaker);
            drop(children);
            std::process::exit(128 + signal);
        }
    }
}

fn stop_signals() -> libc::sigset_t {
    // SAFETY: sigemptyset initialises the set; sigaddset with valid signal numbers.
    unsafe {
        let mut set = std::mem::zeroed::<libc::sigset_t>();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        set
    }
}

/// Starts this program again with `args`; the child is SIGKILLed if this process dies.
fn respawn(args: &[&str], stdout: Stdio) -> Result<Child, String> {
    use std::os::unix::process::CommandExt as _;
    let exe = std::env::current_exe().map_err(|e| format!("finding this program: {e}"))?;
    let mut command = Command::new(exe);
    command.args(args).stdout(stdout);
    // SAFETY: prctl is async-signal-safe. PR_SET_PDEATHSIG: the child dies with this process,
    // even if it is SIGKILLed, so nothing is left in the cgroup.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    command
        .spawn()
        .map_err(|e| format!("starting {args:?}: {e}"))
}

/// Child processes, SIGKILLed (by their pids, not yet reaped, so still theirs) and reaped on
/// drop.
struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for child in &mut self.0 {
            if matches!(child.try_wait(), Ok(None)) {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
    }
}
