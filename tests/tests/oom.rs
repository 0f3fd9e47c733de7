//! OOM kills: the event, its latency, who the kernel picked, and the polling (kmsg) fallback.

use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use profiler_e2e::{
    is_line, number_or_null_at, start_test, str_at, u64_at, Profiler, TestCgroup, Workload, MIB,
    PATIENCE,
};
use serde_json::Value;

const LEAK_4_MIB: [&str; 5] = ["leak", "--step-mib", "4", "--interval-ms", "20"];

/// Waits for `workload` to die of SIGKILL, as a memcg OOM kill does.
#[track_caller]
fn expect_oom_killed(workload: &Workload) -> std::time::Instant {
    let (status, exited_at) = workload.wait_exit(PATIENCE);
    if status.signal() != Some(libc::SIGKILL) {
        workload.fail(format_args!(
            "expected the kernel to OOM-kill the workload (SIGKILL), it ended with {status}"
        ));
    }
    exited_at
}

/// Checks a field of an oom_kill line, failing with the profiler's report.
#[track_caller]
fn expect_field(profiler: &Profiler, event: &Value, ok: bool, what: &str) {
    if !ok {
        profiler.fail(format_args!("oom_kill line {event}: expected {what}"));
    }
}

/// Test 2: the event names the victim, arrives within 1 s of the kill, and samples count it.
#[test]
fn oom_kill_is_reported_within_a_second() {
    let _test = start_test!();
    let cgroup = TestCgroup::new("oom", 64 * MIB);
    let path = cgroup.path_str();
    let mut profiler = Profiler::watch(&["--cgroup", path, "--interval", "250ms"]);
    profiler.wait_watching(&[path]);

    let leak = cgroup.spawn(&LEAK_4_MIB);
    let exited_at = expect_oom_killed(&leak);
    let (event_at, event) = profiler.wait_for("an oom_kill line for the cgroup", PATIENCE, |l| {
        is_line(l, "oom_kill", path)
    });

    let pid = u64::from(leak.pid());
    expect_field(
        &profiler,
        &event,
        u64_at(&event, "pid") == pid,
        &format!("pid {pid}"),
    );
    expect_field(
        &profiler,
        &event,
        event["victim_cgroup"] == path,
        &format!("victim_cgroup {path:?}"),
    );
    expect_field(
        &profiler,
        &event,
        event["comm"] == "workload",
        "comm \"workload\"",
    );
    expect_field(
        &profiler,
        &event,
        u64_at(&event, "anon_rss_bytes") > 32 * MIB,
        "anon_rss_bytes above 32 MiB (the leak filled most of a 64 MiB limit)",
    );
    expect_field(
        &profiler,
        &event,
        event["source"] == "bpf",
        "source \"bpf\" (tracepoint mode is available on this kernel)",
    );
    expect_field(
        &profiler,
        &event,
        event["limit_bytes"] == 64 * MIB,
        &format!("limit_bytes {}", 64 * MIB),
    );

    // An event received before waitpid saw the exit counts as no delay at all.
    let latency = event_at.saturating_duration_since(exited_at);
    if latency >= Duration::from_secs(1) {
        profiler.fail(format_args!(
            "expected the oom_kill line less than 1 s after waitpid saw the kill; it came {latency:?} after"
        ));
    }

    let (_, sample) = profiler.wait_for("the sample after the oom_kill", PATIENCE, |l| {
        is_line(l, "sample", path)
    });
    if u64_at(&sample, "oom_kills") < 1 {
        profiler.fail(format_args!(
            "expected oom_kills >= 1 in the sample after the kill, saw {sample}"
        ));
    }
    // The kernel reclaims (and retries) before it gives up and kills: the reclaim hooks saw it.
    if u64_at(&sample, "reclaim_count") < 1 || u64_at(&sample, "reclaim_stall_us") == 0 {
        profiler.fail(format_args!(
            "expected memcg reclaim passes and stall time before the kill, saw {sample}"
        ));
    }
    assert!(
        cgroup.oom_kill_count() >= 1,
        "the kernel's own memory.oom_control should count the kill too"
    );
}

/// Test 3: with a big holder and a small leaker, the kernel kills the big one, and the profiler
/// reports that one first.
#[test]
fn the_largest_process_is_the_reported_victim() {
    let _test = start_test!();
    let cgroup = TestCgroup::new("victim", 160 * MIB);
    let path = cgroup.path_str();
    let mut profiler = Profiler::watch(&["--cgroup", path, "--interval", "250ms"]);
    profiler.wait_watching(&[path]);

    let mut big = cgroup.spawn(&["hold", "--mib", "100"]);
    big.wait_line("ready ", PATIENCE);
    let small = cgroup.spawn(&["leak", "--step-mib", "2", "--interval-ms", "20"]);
    expect_oom_killed(&big);
    let (_, event) = profiler.wait_for("the first oom_kill line for the cgroup", PATIENCE, |l| {
        is_line(l, "oom_kill", path)
    });
    small.kill();

    let victim = u64_at(&event, "pid");
    if victim != u64::from(big.pid()) {
        profiler.fail(format_args!(
            "expected the first oom_kill to name the 100 MiB holder (pid {}), it names pid {victim}{}",
            big.pid(),
            if victim == u64::from(small.pid()) {
                " (the small leaker)"
            } else {
                ""
            }
        ));
    }
    // The holder's 100 MiB plus a small baseline: within 15 %.
    let anon = u64_at(&event, "anon_rss_bytes");
    let expected = 100 * MIB;
    if anon.abs_diff(expected) > expected * 15 / 100 {
        profiler.fail(format_args!(
            "expected the victim's anon_rss_bytes within 15 % of {expected}, saw {anon}"
        ));
    }
}

/// Test 4: a process name full of shell and markup characters comes through verbatim.
#[test]
fn a_hostile_process_name_is_reported_verbatim() {
    let _test = start_test!();
    let hostile = "a<>&\"'$;b";
    let cgroup = TestCgroup::new("comm", 64 * MIB);
    let path = cgroup.path_str();
    let mut profiler = Profiler::watch(&["--cgroup", path, "--interval", "250ms"]);
    profiler.wait_watching(&[path]);

    let mut args = vec!["--comm", hostile];
    args.extend(LEAK_4_MIB);
    let leak = cgroup.spawn(&args);
    expect_oom_killed(&leak);
    let (_, event) = profiler.wait_for("an oom_kill line for the cgroup", PATIENCE, |l| {
        is_line(l, "oom_kill", path)
    });
    if str_at(&event, "comm") != hostile {
        profiler.fail(format_args!(
            "expected comm {hostile:?} verbatim, saw {:?}",
            event["comm"]
        ));
    }
}

/// Waits until `path` is watched and checks the watch runs in polling mode.
#[track_caller]
fn expect_polling_start(profiler: &mut Profiler, path: &str, why: &str) {
    let start = profiler.wait_watching(&[path]);
    if start[0]["mode"] != "polling" {
        profiler.fail(format_args!(
            "expected watch_start with mode \"polling\" ({why}), saw {}",
            start[0]
        ));
    }
}

/// Leaks to an OOM kill in `cgroup` and checks the profiler reports it from the kernel log;
/// returns when the line was received.
#[track_caller]
fn expect_kill_from_kernel_log(
    cgroup: &TestCgroup,
    profiler: &mut Profiler,
    path: &str,
) -> std::time::Instant {
    let leak = cgroup.spawn(&LEAK_4_MIB);
    expect_oom_killed(&leak);
    let (kill_at, event) = profiler.wait_for("an oom_kill line for the cgroup", PATIENCE, |l| {
        is_line(l, "oom_kill", path)
    });
    let pid = u64::from(leak.pid());
    expect_field(
        profiler,
        &event,
        u64_at(&event, "pid") == pid,
        &format!("pid {pid}"),
    );
    expect_field(
        profiler,
        &event,
        event["source"] == "kmsg",
        "source \"kmsg\"",
    );
    kill_at
}

/// Test 9: the polling fallback still reports the kill (from the kernel log) and has no rates.
#[test]
fn polling_mode_reports_the_kill_from_the_kernel_log() {
    let _test = start_test!();
    let cgroup = TestCgroup::new("polling", 64 * MIB);
    let path = cgroup.path_str();
    let mut profiler =
        Profiler::watch(&["--cgroup", path, "--interval", "250ms", "--mode", "polling"]);
    expect_polling_start(&mut profiler, path, "asked for with --mode polling");
    let kill_at = expect_kill_from_kernel_log(&cgroup, &mut profiler, path);

    profiler.wait_for_after(kill_at, "a sample after the oom_kill", PATIENCE, |l| {
        is_line(l, "sample", path)
    });
    for (_, sample) in profiler.lines_so_far() {
        if !is_line(&sample, "sample", path) {
            continue;
        }
        if number_or_null_at(&sample, "charge_rate_bytes_per_s").is_some()
            || sample["mode"] != "polling"
        {
            profiler.fail(format_args!(
                "expected every polling-mode sample to have mode \"polling\" and a null \
                 charge_rate_bytes_per_s, saw {sample}"
            ));
        }
    }
}

/// A kernel without BTF: the profiler says so, falls back to polling, and still reports kills.
#[test]
fn without_btf_the_watch_falls_back_to_polling_and_says_so() {
    let _test = start_test!();
    let cgroup = TestCgroup::new("nobtf", 64 * MIB);
    let path = cgroup.path_str();
    let missing = format!("/nonexistent-btf-{}/vmlinux", std::process::id());
    let mut profiler =
        Profiler::watch(&["--cgroup", path, "--interval", "250ms", "--btf", &missing]);
    expect_polling_start(&mut profiler, path, "no BTF");
    let stderr = profiler.stderr();
    if !(stderr.contains("BTF") && stderr.contains("polling")) {
        profiler.fail(format_args!(
            "expected a warning naming the missing BTF and the polling fallback, stderr was: {stderr}"
        ));
    }
    expect_kill_from_kernel_log(&cgroup, &mut profiler, path);
}
