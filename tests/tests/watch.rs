//! The watch stream: its start, samples that follow a workload, bursts, removed cgroups, and how
//! a watch ends.

use std::time::{Duration, Instant};

use profiler_e2e::{
    is_line, number_or_null_at, start_test, u64_at, Profiler, TestCgroup, MIB, PATIENCE,
};
use serde_json::Value;

/// `watch_start` describes the watched cgroup as the kernel sees it.
#[test]
fn watch_start_describes_the_cgroup() {
    let _test = start_test!();
    let cgroup = TestCgroup::new("start", 64 * MIB);
    let path = cgroup.path_str();
    let mut profiler = Profiler::watch(&["--cgroup", path, "--interval", "250ms"]);
    let start = profiler.wait_watching(&[path]).remove(0);
    let expected = serde_json::json!({
        "cgroup_id": cgroup.id(),
        "cgroup_version": "v1",
        "limit_bytes": 64 * MIB,
        "mode": "tracepoint",
    });
    for (key, value) in expected.as_object().into_iter().flatten() {
        if &start[key] != value {
            profiler.fail(format_args!(
                "expected watch_start {key} {value} (id = inode of the cgroup directory; auto \
                 mode picks tracepoint on this kernel), saw {start}"
            ));
        }
    }
}

/// Test 1: samples follow a workload that grows by 16 MiB steps to 128 MiB.
#[test]
fn samples_follow_growth() {
    let _test = start_test!();
    let cgroup = TestCgroup::new("growth", 512 * MIB);
    let path = cgroup.path_str();
    let mut profiler = Profiler::watch(&["--cgroup", path, "--interval", "250ms"]);
    profiler.wait_watching(&[path]);

    let mut grow = cgroup.spawn(&[
        "grow",
        "--step-mib",
        "16",
        "--steps",
        "8",
        "--interval-ms",
        "400",
    ]);
    let (first_step_at, _) = grow.wait_line("allocated ", PATIENCE);
    let (done_at, done) = grow.wait_line("done ", PATIENCE);
    let allocated: u64 = done["done ".len()..]
        .parse()
        .unwrap_or_else(|e| grow.fail(format_args!("bad done line {done:?}: {e}")));
    assert_eq!(
        allocated,
        128 * MIB,
        "the workload's own count of what it allocated"
    );

    let is_sample = |l: &Value| is_line(l, "sample", path);
    let (after_done_at, _) =
        profiler.wait_for_after(done_at, "a first sample after `done`", PATIENCE, is_sample);
    let (last_at, last) = profiler.wait_for("a second sample after `done`", PATIENCE, is_sample);
    let samples: Vec<(Instant, Value)> = profiler
        .lines_so_far()
        .into_iter()
        .filter(|(at, l)| *at <= last_at && is_sample(l))
        .collect();
    let anon: Vec<u64> = samples
        .iter()
        .map(|(_, s)| u64_at(s, "anon_bytes"))
        .collect();

    // The workload's own anonymous memory besides the steps (Rust runtime, stack, stdout
    // buffer) is well under 1 MiB, and memcg statistics are exact to a few per-CPU batches:
    // 10 % of 128 MiB is a generous bound.
    let final_anon = u64_at(&last, "anon_bytes");
    if final_anon.abs_diff(allocated) > allocated / 10 {
        profiler.fail(format_args!(
            "expected the last sample's anon_bytes within 10 % of the {allocated} bytes \
             allocated, saw {final_anon}"
        ));
    }

    // Anonymous memory only grows here; allow 2 MiB (well under one 16 MiB step) of noise.
    let noise = 2 * MIB;
    if let Some(pair) = anon.windows(2).find(|pair| pair[1] + noise < pair[0]) {
        profiler.fail(format_args!(
            "expected anon_bytes never to fall by more than {noise} between samples, saw {} -> {} \
             (all: {anon:?})",
            pair[0], pair[1]
        ));
    }

    // A sample taken while it grew saw less than half, and the end more than 90 %.
    let while_growing = samples
        .iter()
        .filter(|(at, _)| *at >= first_step_at && *at <= done_at)
        .map(|(_, s)| u64_at(s, "anon_bytes"));
    if !while_growing.clone().any(|a| a > 0 && a < allocated / 2) {
        profiler.fail(format_args!(
            "expected a sample during growth with anon_bytes between 0 and 50 % of {allocated}, \
             saw {:?}",
            while_growing.collect::<Vec<_>>()
        ));
    }
    if final_anon * 10 <= allocated * 9 {
        profiler.fail(format_args!(
            "expected anon_bytes to end above 90 % of {allocated}, saw {final_anon}"
        ));
    }

    let rates: Vec<Option<f64>> = samples
        .iter()
        .filter(|(at, _)| *at >= first_step_at && *at <= after_done_at)
        .map(|(_, s)| number_or_null_at(s, "charge_rate_bytes_per_s"))
        .collect();
    if !rates.iter().any(|r| r.is_some_and(|r| r > 0.0)) {
        profiler.fail(format_args!(
            "expected charge_rate_bytes_per_s > 0 in a sample during growth, saw {rates:?}"
        ));
    }
}

/// Test 5: a sudden large charge is reported at once, not at the next sample.
#[test]
fn a_burst_is_reported_before_the_next_sample() {
    let _test = start_test!();
    let cgroup = TestCgroup::new("burst", 256 * MIB);
    let path = cgroup.path_str();
    let mut profiler = Profiler::watch(&["--cgroup", path, "--interval", "5s"]);
    profiler.wait_watching(&[path]);

    // Right after a sample, so the burst lands about halfway through a 5 s interval.
    let mut burst = cgroup.spawn(&["burst", "--mib", "205", "--delay-ms", "2500"]);
    let (burst_start_at, _) = burst.wait_line("burst_start", PATIENCE);
    burst.wait_line("burst_done", PATIENCE);
    let (sample_at, _) = profiler.wait_for_after(
        burst_start_at,
        "the first sample after burst_start",
        PATIENCE,
        |l| is_line(l, "sample", path),
    );
    let burst_reported = profiler
        .lines_so_far()
        .into_iter()
        .any(|(at, l)| at >= burst_start_at && at <= sample_at && is_line(&l, "burst", path));
    if !burst_reported {
        profiler.fail(format_args!(
            "expected a burst line for the cgroup after the workload printed burst_start and \
             before the next sample, which came {:?} after burst_start; saw none",
            sample_at.duration_since(burst_start_at)
        ));
    }
}

/// Test 6: removing one of two watched cgroups ends its stream, not the other's.
#[test]
fn a_removed_cgroup_is_reported_gone_and_the_watch_goes_on() {
    let _test = start_test!();
    let gone = TestCgroup::new("gone", 64 * MIB);
    let kept = TestCgroup::new("kept", 64 * MIB);
    let gone_path = gone.path_str().to_owned();
    let kept_path = kept.path_str();
    for cgroup in [&gone, &kept] {
        cgroup
            .spawn(&["hold", "--mib", "8"])
            .wait_line("ready ", PATIENCE);
    }
    let mut profiler = Profiler::watch(&[
        "--cgroup",
        &gone_path,
        "--cgroup",
        kept_path,
        "--interval",
        "250ms",
    ]);
    profiler.wait_watching(&[&gone_path, kept_path]);

    gone.remove();
    profiler.wait_for("cgroup_gone for the removed cgroup", PATIENCE, |l| {
        is_line(l, "cgroup_gone", &gone_path)
    });
    for n in ["first", "second"] {
        profiler.wait_for(
            &format!("a {n} sample for the other cgroup after cgroup_gone"),
            PATIENCE,
            |l| is_line(l, "sample", kept_path),
        );
    }
    let lines = profiler.lines_so_far();
    let gone_index = lines
        .iter()
        .position(|(_, l)| is_line(l, "cgroup_gone", &gone_path))
        .unwrap_or_default();
    if let Some((_, late)) = lines[gone_index..]
        .iter()
        .find(|(_, l)| is_line(l, "sample", &gone_path))
    {
        profiler.fail(format_args!(
            "expected no sample for the removed cgroup after its cgroup_gone, saw {late}"
        ));
    }
}

/// When the only watched cgroup is removed, the watch ends with reason "all_gone".
#[test]
fn the_watch_ends_when_all_cgroups_are_gone() {
    let _test = start_test!();
    let cgroup = TestCgroup::new("allgone", 64 * MIB);
    let path = cgroup.path_str().to_owned();
    let mut profiler = Profiler::watch(&["--cgroup", &path, "--interval", "250ms"]);
    profiler.wait_watching(&[&path]);
    cgroup.remove();
    profiler.wait_for("cgroup_gone", PATIENCE, |l| {
        is_line(l, "cgroup_gone", &path)
    });
    expect_end(&mut profiler, "all_gone", PATIENCE);
}

/// Test 10: SIGINT ends the watch cleanly and promptly.
#[test]
fn sigint_ends_the_watch_with_an_end_line() {
    let _test = start_test!();
    let cgroup = TestCgroup::new("sigint", 64 * MIB);
    let path = cgroup.path_str();
    let mut profiler = Profiler::watch(&["--cgroup", path, "--interval", "250ms"]);
    profiler.wait_watching(&[path]);
    profiler.interrupt();
    expect_end(&mut profiler, "signal", Duration::from_secs(5));
}

/// `--duration` ends the watch by itself.
#[test]
fn duration_ends_the_watch() {
    let _test = start_test!();
    let cgroup = TestCgroup::new("duration", 64 * MIB);
    let path = cgroup.path_str();
    let mut profiler =
        Profiler::watch(&["--cgroup", path, "--interval", "250ms", "--duration", "2s"]);
    profiler.wait_watching(&[path]);
    expect_end(&mut profiler, "duration", PATIENCE);
}

/// Expects the profiler to exit 0 within `timeout` with `{"type":"end","reason":reason}` (and a
/// null cgroup) as its last line.
#[track_caller]
fn expect_end(profiler: &mut Profiler, reason: &str, timeout: Duration) {
    let (status, _) = profiler.wait(timeout);
    if status.code() != Some(0) {
        profiler.fail(format_args!("expected exit code 0, saw {status}"));
    }
    let lines = profiler.lines_so_far();
    let last = lines.last().map(|(_, l)| l);
    let ok =
        last.is_some_and(|l| l["type"] == "end" && l["reason"] == reason && l["cgroup"].is_null());
    if !ok {
        profiler.fail(format_args!(
            "expected the last line to be {{\"type\":\"end\",\"reason\":\"{reason}\",\"cgroup\":null,...}}, \
             saw {last:?}"
        ));
    }
}
