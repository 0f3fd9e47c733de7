//! The events ring buffer is bounded, and a full one is counted record by record, never
//! silent, and the watch goes on. The profiler's reader is stalled on purpose (the hidden
//! `--debug-stall-events`) while 4,000 processes of the watched cgroup die of their own
//! SIGKILL one after another: each costs the kernel programs two records (its SIGKILL, its
//! death by signal; see the workload's `sigstorm`), 1.3 MB in all for a 256 KiB ring. Each
//! record the reader got is one line (`signal` or `exit`; none is merged with another), each
//! the kernel dropped is counted in `LOST_EVENTS` and comes out in `lost_events` lines
//! (`source` `ring_buffer`): lines + lost == records produced, exactly, and the lost count the
//! lines give equals the kernel's own map, read with bpftool. A process killed after the stall
//! still gets its lines.

use std::fs;
use std::process::Command;
use std::time::{Duration, Instant};

use profiler_e2e::{start_test, Profiler, TestCgroup, PATIENCE};
use serde_json::Value;

/// Processes the storm kills: 8,000 records, about three times what the ring holds.
const CHILDREN: u64 = 4000;
/// How long the reader is stalled from the start of the watch: the storm takes under a
/// second here, but the machine is shared.
const STALL: Duration = Duration::from_secs(10);

#[test]
fn an_overflowing_events_ring_is_counted_record_by_record() {
    let _test = start_test!();
    let cgroup = TestCgroup::without_limit("ring-overflow");
    let path = cgroup.path_str().to_owned();
    // No limit, so no burst budget runs out: the storm's are the only records.
    let stall = format!("{}s", STALL.as_secs());
    let mut profiler = Profiler::watch(&[
        "--cgroup",
        &path,
        "--interval",
        "1s",
        "--debug-stall-events",
        &stall,
    ]);
    profiler.wait_watching(&[&path]);
    // The stall starts as the watch_start line is written.
    let stall_from = profiler
        .lines_so_far()
        .into_iter()
        .find(|(_, l)| l["type"] == "watch_start")
        .map_or_else(Instant::now, |(at, _)| at);
    let children = CHILDREN.to_string();
    let mut storm = cgroup.spawn(&["--comm", "ringstorm", "sigstorm", "--children", &children]);
    let (storm_done, line) = storm.wait_line("sigstorm ", PATIENCE);
    let killed = field(&line, "killed").unwrap_or_else(|| storm.fail("no killed= in its line"));
    let (status, _) = storm.wait_exit(PATIENCE);
    assert!(
        status.success(),
        "the storm failed: {status}\n{}",
        storm.report()
    );
    if storm_done > stall_from + STALL {
        storm.fail(format_args!(
            "the storm ended {:?} after the watch started, past the {STALL:?} stall: the \
             reader was not stalled all through it (too slow a machine?)",
            storm_done - stall_from
        ));
    }

    // After the stall: a process killed now is read as usual.
    let resume = stall_from + STALL + Duration::from_secs(1);
    std::thread::sleep(resume.saturating_duration_since(Instant::now()));
    let after = cgroup.spawn(&["--comm", "ringafter", "sigstorm", "--children", "1"]);
    let (status, _) = after.wait_exit(PATIENCE);
    assert!(status.success(), "{}", after.report());
    profiler.wait_for(
        "the exit line of the process killed after the stall",
        PATIENCE,
        |l| is_kill(l, "exit", "ringafter"),
    );
    // A round after the last loss has passed long since; one more for good measure, then the
    // kernel's count, before the profiler (and its maps) go.
    std::thread::sleep(Duration::from_millis(1500));
    let kernel_lost = kernel_lost_events(profiler.pid()).unwrap_or_else(|e| profiler.fail(e));
    profiler.interrupt();
    let (status, _) = profiler.wait(PATIENCE);
    assert!(
        status.success(),
        "the watch failed: {status}\n{}",
        profiler.report()
    );

    let lines: Vec<Value> = profiler
        .lines_so_far()
        .into_iter()
        .map(|(_, l)| l)
        .collect();
    let count = |kind: &str, comm: &str| lines.iter().filter(|l| is_kill(l, kind, comm)).count();
    let (signals, exits) = (count("signal", "ringstorm"), count("exit", "ringstorm"));
    let received = (signals + exits) as u64;
    let lost: u64 = lines
        .iter()
        .filter(|l| l["type"] == "lost_events" && l["source"] == "ring_buffer")
        .map(|l| l["count"].as_u64().unwrap_or(0))
        .sum();
    let produced = 2 * killed;
    let after_lines = (count("signal", "ringafter"), count("exit", "ringafter"));
    eprintln!(
        "{killed} processes killed: {produced} records produced; {signals} signal + {exits} exit \
         lines = {received} received; {lost} lost by the lost_events lines, {kernel_lost} by \
         the kernel's LOST_EVENTS; after the stall: {} signal, {} exit line",
        after_lines.0, after_lines.1
    );
    if lost == 0 {
        profiler.fail(format_args!(
            "no lost_events line for the ring buffer ({received} of {produced} records \
             received): the ring never overflowed, so this test proves nothing"
        ));
    }
    if lost != kernel_lost {
        profiler.fail(format_args!(
            "the lost_events lines count {lost} records lost, the kernel's LOST_EVENTS {kernel_lost}"
        ));
    }
    if received + lost != produced {
        profiler.fail(format_args!(
            "{signals} signal + {exits} exit lines + {lost} lost = {} records, for {produced} \
             produced ({killed} processes killed, two records each)",
            received + lost
        ));
    }
    if after_lines != (1, 1) {
        profiler.fail(format_args!(
            "the process killed after the stall has {} signal and {} exit lines, not one each",
            after_lines.0, after_lines.1
        ));
    }
}

/// A `signal` or `exit` line (`kind`) of a SIGKILL of a process named `comm`.
fn is_kill(line: &Value, kind: &str, comm: &str) -> bool {
    line["type"] == kind && line["comm"] == comm && line["signal"] == "SIGKILL"
}

/// The number after `name=` in a workload's line.
fn field(line: &str, name: &str) -> Option<u64> {
    line.split_whitespace()
        .find_map(|word| word.strip_prefix(name)?.strip_prefix('=')?.parse().ok())
}

/// The kernel's `LOST_EVENTS` of the profiler `pid` (its map, found through the process's
/// descriptors, so other profilers' do not count), summed over the CPUs, read with bpftool.
fn kernel_lost_events(pid: u32) -> Result<u64, String> {
    let mut found = Vec::new();
    let fdinfo = format!("/proc/{pid}/fdinfo");
    let entries = fs::read_dir(&fdinfo).map_err(|e| format!("{fdinfo}: {e}"))?;
    for entry in entries.flatten() {
        let Ok(text) = fs::read_to_string(entry.path()) else {
            continue;
        };
        let Some(id) = text
            .lines()
            .find_map(|l| l.strip_prefix("map_id:"))
            .map(str::trim)
        else {
            continue;
        };
        let show = bpftool(&["map", "show", "id", id])?;
        if show["name"] == "LOST_EVENTS" {
            found.push(id.to_owned());
        }
    }
    let [id] = found.as_slice() else {
        return Err(format!(
            "profiler pid {pid} holds {} maps named LOST_EVENTS ({found:?}), not one",
            found.len()
        ));
    };
    let dump = bpftool(&["map", "dump", "id", id])?;
    per_cpu_sum(&dump).ok_or_else(|| format!("bpftool's dump of LOST_EVENTS did not read: {dump}"))
}

/// `bpftool -j ARGS`, parsed.
fn bpftool(args: &[&str]) -> Result<Value, String> {
    let output = Command::new("bpftool")
        .arg("-j")
        .args(args)
        .output()
        .map_err(|e| format!("bpftool {args:?} (needed to read the kernel's count): {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "bpftool {args:?}: {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    serde_json::from_slice(&output.stdout).map_err(|e| format!("bpftool {args:?}: {e}"))
}

/// The sum over the CPUs of entry 0 of a per-CPU array of `u64`, from bpftool's JSON dump:
/// `[{"key":..,"values":[{"cpu":0,"value":V},..]}]`, V a number (with BTF) or little-endian
/// bytes as `"0x.."` strings (without).
fn per_cpu_sum(dump: &Value) -> Option<u64> {
    let values = dump.as_array()?.first()?["values"].as_array()?;
    values.iter().map(|v| value_u64(&v["value"])).sum()
}

fn value_u64(value: &Value) -> Option<u64> {
    if let Some(n) = value.as_u64() {
        return Some(n);
    }
    let bytes = value.as_array()?;
    let mut n = 0u64;
    for (i, byte) in bytes.iter().enumerate().take(8) {
        let byte = u64::from_str_radix(byte.as_str()?.strip_prefix("0x")?, 16).ok()?;
        n |= byte << (8 * i);
    }
    Some(n)
}
