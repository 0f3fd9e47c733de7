//! The stacks ring buffer is bounded, and a full one is counted, never silent: a page-fault
//! workload sampled at every page (`--stack-interval 4KiB`, 128 times the default) charges
//! far faster than user space reads the 1 MiB ring, and the samples the kernel could not
//! hand over come out as `lost_events` lines with `source` `charge_stacks`. Every page is
//! either a sample read or a sample counted lost.

use std::time::Duration;

use profiler_e2e::{start_test, Profiler, TestCgroup, MIB, PATIENCE};
use serde_json::Value;

/// Pages the workload faults in: 64 MiB, 20 times.
const PAGES: u64 = 64 * 256 * 20;

#[test]
fn a_full_stacks_ring_is_counted_sample_by_sample() {
    let _test = start_test!();
    let cgroup = TestCgroup::new("stacks-ring", 1024 * MIB);
    let path = cgroup.path_str().to_owned();
    let mut profiler = Profiler::watch(&[
        "--cgroup",
        &path,
        "--stacks",
        "--stack-interval",
        "4KiB",
        "--interval",
        "1s",
    ]);
    profiler.wait_watching(&[&path]);
    let workload = cgroup.spawn(&["pagefault", "--mib", "64", "--iters", "20"]);
    let (status, _) = workload.wait_exit(PATIENCE);
    assert!(status.success(), "the page-fault workload failed: {status}");
    // Two rounds for the last samples to be read and their line written.
    std::thread::sleep(Duration::from_secs(2));
    profiler.interrupt();
    profiler.wait(PATIENCE);
    let lines: Vec<Value> = profiler
        .lines_so_far()
        .into_iter()
        .map(|(_, l)| l)
        .collect();
    let read: u64 = lines
        .iter()
        .filter(|l| l["type"] == "charge_stacks" && l["cgroup"] == path.as_str())
        .map(|l| l["samples"].as_u64().unwrap_or(0))
        .sum();
    let lost: u64 = lines
        .iter()
        .filter(|l| l["type"] == "lost_events" && l["source"] == "charge_stacks")
        .map(|l| l["count"].as_u64().unwrap_or(0))
        .sum();
    eprintln!(
        "{PAGES} pages faulted, one sample per page: {read} samples read, {lost} counted lost \
         ({:.3} of the pages)",
        (read + lost) as f64 / PAGES as f64
    );
    if lost == 0 {
        profiler.fail(format_args!(
            "no lost_events line for charge_stacks: {read} samples read of {PAGES} pages; \
             the ring never filled, so this test proves nothing"
        ));
    }
    // Each page faulted is one charge and so one sample, plus the page tables and the
    // workload's own start-up: never fewer, a little more.
    let total = read + lost;
    if !(PAGES..=PAGES + PAGES / 20).contains(&total) {
        profiler.fail(format_args!(
            "{read} samples read + {lost} counted lost = {total}, for {PAGES} pages faulted: \
             samples went missing or were counted twice"
        ));
    }
}
