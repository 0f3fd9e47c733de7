//! Self-tests of the harness and the workload binary: no profiler involved.

use std::os::unix::process::ExitStatusExt;
use std::panic::{self, AssertUnwindSafe};
use std::path::PathBuf;
use std::time::Duration;

use profiler_e2e::{start_test, KubeNode, Qos, TestCgroup, MIB, PATIENCE};

#[test]
fn a_leak_is_oom_killed_by_the_kernel_and_the_guard_removes_the_cgroup() {
    let _test = start_test!();
    let cgroup = TestCgroup::new("selftest-oom", 32 * MIB);
    let path = cgroup.path().to_owned();
    let mut leak = cgroup.spawn(&["leak", "--step-mib", "4", "--interval-ms", "20"]);
    leak.wait_line("allocated ", PATIENCE);
    let (status, _) = leak.wait_exit(PATIENCE);
    if status.signal() != Some(libc::SIGKILL) {
        leak.fail(format_args!(
            "expected the leak to die of SIGKILL (memcg OOM), it ended with {status}"
        ));
    }
    let kills = cgroup.oom_kill_count();
    assert_eq!(
        kills,
        1,
        "expected memory.oom_control of {} to say `oom_kill 1`",
        path.display()
    );
    cgroup.remove();
    assert!(
        !path.exists(),
        "expected {} to be gone after remove()",
        path.display()
    );
}

#[test]
fn a_workload_is_charged_to_its_cgroup_from_birth() {
    let _test = start_test!();
    let cgroup = TestCgroup::new("selftest-hold", 64 * MIB);
    let mut hold = cgroup.spawn(&["hold", "--mib", "16"]);
    let (_, ready) = hold.wait_line("ready ", PATIENCE);
    assert_eq!(
        ready,
        format!("ready {}", 16 * MIB),
        "the hold's ready line"
    );
    let procs = cgroup.read("cgroup.procs");
    assert!(
        procs
            .split_whitespace()
            .any(|p| p == hold.pid().to_string()),
        "expected pid {} in {}/cgroup.procs, saw {procs:?}",
        hold.pid(),
        cgroup.path().display()
    );
    let usage: u64 = cgroup
        .read("memory.usage_in_bytes")
        .trim()
        .parse()
        .expect("memory.usage_in_bytes is a number");
    assert!(
        usage >= 16 * MIB,
        "expected the cgroup to be charged at least the 16 MiB the workload touched, usage is {usage}"
    );
}

#[test]
fn grow_prints_each_step_then_done() {
    let _test = start_test!();
    let cgroup = TestCgroup::new("selftest-grow", 64 * MIB);
    let mut grow = cgroup.spawn(&[
        "grow",
        "--step-mib",
        "2",
        "--steps",
        "3",
        "--interval-ms",
        "10",
    ]);
    for step in 1..=3 {
        let (_, line) = grow.wait_line("allocated ", PATIENCE);
        assert_eq!(line, format!("allocated {}", step * 2 * MIB), "step {step}");
    }
    let (_, done) = grow.wait_line("done ", PATIENCE);
    assert_eq!(done, format!("done {}", 6 * MIB));
}

#[test]
fn burst_announces_itself_before_allocating() {
    let _test = start_test!();
    let cgroup = TestCgroup::new("selftest-burst", 64 * MIB);
    let mut burst = cgroup.spawn(&["burst", "--mib", "8", "--delay-ms", "100"]);
    let (waiting_at, _) = burst.wait_line("waiting", PATIENCE);
    let (start_at, _) = burst.wait_line("burst_start", PATIENCE);
    let (done_at, _) = burst.wait_line("burst_done", PATIENCE);
    assert!(
        waiting_at <= start_at && start_at <= done_at,
        "lines out of order"
    );
}

#[test]
fn comm_sets_the_process_name_verbatim() {
    let _test = start_test!();
    let cgroup = TestCgroup::new("selftest-comm", 64 * MIB);
    let hostile = "a<>&\"'$;b";
    let mut hold = cgroup.spawn(&["--comm", hostile, "hold", "--mib", "1"]);
    hold.wait_line("ready ", PATIENCE);
    let comm = std::fs::read_to_string(format!("/proc/{}/comm", hold.pid()))
        .expect("reading the workload's /proc/<pid>/comm");
    assert_eq!(comm.trim_end_matches('\n'), hostile);
}

#[test]
fn pagefault_and_json_churn_report_their_rates() {
    let _test = start_test!();
    let cgroup = TestCgroup::new("selftest-bench", 256 * MIB);
    let mut faults = cgroup.spawn(&["pagefault", "--mib", "8", "--iters", "3"]);
    let (_, line) = faults.wait_line("pagefault ", PATIENCE);
    assert!(
        line.starts_with(&format!("pagefault pages={} secs=", 3 * 8 * MIB / 4096))
            && line.contains(" pages_per_sec="),
        "unexpected pagefault line {line:?}"
    );
    let (status, _) = faults.wait_exit(PATIENCE);
    assert!(status.success(), "pagefault exited with {status}");

    let mut churn = cgroup.spawn(&["json-churn", "--seconds", "1"]);
    let (_, line) = churn.wait_line("json-churn ", PATIENCE);
    let docs: u64 = line
        .strip_prefix("json-churn docs=")
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unexpected json-churn line {line:?}"));
    assert!(docs >= 1, "expected at least one document, line {line:?}");
    let (status, _) = churn.wait_exit(PATIENCE);
    assert!(status.success(), "json-churn exited with {status}");
}

#[test]
fn bad_workload_arguments_exit_2() {
    let _test = start_test!();
    let cgroup = TestCgroup::new("selftest-args", 64 * MIB);
    for args in [
        &["leak", "--step-mib", "x", "--interval-ms", "1"][..],
        &["frobnicate"][..],
        &["hold"][..],
    ] {
        let workload = cgroup.spawn(args);
        let (status, _) = workload.wait_exit(PATIENCE);
        if status.code() != Some(2) {
            workload.fail(format_args!(
                "expected exit code 2 for {args:?}, got {status}"
            ));
        }
    }
}

/// Test 7: the guard cleans up when the test panics.
#[test]
fn the_guard_kills_and_removes_on_panic() {
    let _test = start_test!();
    let mut seen: Option<(PathBuf, u32)> = None;
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
        let cgroup = TestCgroup::new("selftest-panic", 64 * MIB);
        let mut hold = cgroup.spawn(&["hold", "--mib", "8"]);
        hold.wait_line("ready ", PATIENCE);
        seen = Some((cgroup.path().to_owned(), hold.pid()));
        panic!("deliberate panic to test the cleanup (expected in this test's output)");
    }));
    assert!(outcome.is_err(), "the closure should have panicked");
    let (path, pid) = seen.expect("the closure got as far as starting the workload");
    assert!(
        !path.exists(),
        "expected the guard to remove {} while unwinding; it still exists",
        path.display()
    );
    // SAFETY: signal 0 only checks whether the pid exists.
    let alive = unsafe { libc::kill(pid as libc::pid_t, 0) } == 0;
    let errno = std::io::Error::last_os_error().raw_os_error();
    assert!(
        !alive && errno == Some(libc::ESRCH),
        "expected pid {pid} to be gone (kill(pid, 0) fails with ESRCH), saw alive={alive} errno={errno:?}"
    );
}

#[test]
fn wait_line_timeout_names_the_missing_line() {
    let _test = start_test!();
    let cgroup = TestCgroup::new("selftest-timeout", 64 * MIB);
    let mut hold = cgroup.spawn(&["hold", "--mib", "1"]);
    hold.wait_line("ready ", PATIENCE);
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
        hold.wait_line("never-printed", Duration::from_millis(300));
    }));
    let message = outcome
        .expect_err("wait_line should panic on timeout")
        .downcast::<String>()
        .map(|m| *m)
        .unwrap_or_default();
    assert!(
        message.contains("\"never-printed\"") && message.contains("ready "),
        "expected the timeout message to name the line and show the output, got:\n{message}"
    );
}

/// Whether pid `pid` is gone (`kill(pid, 0)` fails with ESRCH).
fn pid_is_gone(pid: u32) -> bool {
    // SAFETY: signal 0 only checks whether the pid exists.
    let alive = unsafe { libc::kill(pid as libc::pid_t, 0) } == 0;
    !alive && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
}

/// The kube fixture lays out cgroups and log files as kubelet does, a restart makes a new id,
/// cgroup and log file and removes the dead container's cgroup, and the guard kills what it
/// started and removes everything, also when the test panics.
#[test]
fn the_kube_node_lays_out_restarts_and_cleans_up_on_panic() {
    let _test = start_test!();
    let mut seen: Option<(PathBuf, PathBuf, u32)> = None;
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
        let node = KubeNode::new("selftest");
        let root = node.cgroup_root().to_owned();
        let guaranteed = node.add_pod("shop", "db", Qos::Guaranteed);
        assert_eq!(
            guaranteed.cgroup(),
            root.join(format!("kubepods/pod{}", guaranteed.uid))
        );
        let pod = node.add_pod("shop", "checkout", Qos::Burstable);
        assert_eq!(
            pod.cgroup(),
            root.join(format!("kubepods/burstable/pod{}", pod.uid))
        );
        assert_eq!(
            pod.log_dir(),
            node.pod_logs().join(format!("shop_checkout_{}", pod.uid))
        );

        let mut first = node.start_container(
            &pod,
            "app",
            Some(32 * MIB),
            &["leak", "--step-mib", "4", "--interval-ms", "20"],
        );
        let first_id = first.id().to_owned();
        let first_cgroup = first.cgroup().to_owned();
        assert!(
            first_id.len() == 64 && first_id.bytes().all(|b| b.is_ascii_hexdigit()),
            "container id {first_id:?} should be 64 hex digits"
        );
        assert_eq!(first_cgroup, pod.cgroup().join(&first_id));
        let limit = std::fs::read_to_string(first_cgroup.join("memory.limit_in_bytes"))
            .expect("reading the container's memory.limit_in_bytes");
        assert_eq!(limit.trim(), (32 * MIB).to_string());
        let log = pod.log_dir().join("app/0.log");
        let link = node
            .container_logs()
            .join(format!("checkout_shop_app-{first_id}.log"));
        assert_eq!(
            std::fs::read_link(&link).expect("the container log symlink"),
            log
        );
        assert!(log.is_file(), "{} should exist", log.display());
        let (status, _) = first.workload().wait_exit(PATIENCE);
        assert_eq!(
            status.signal(),
            Some(libc::SIGKILL),
            "the leak should be OOM-killed"
        );

        let mut second = node.restart_container(first, Duration::ZERO);
        assert!(
            !first_cgroup.exists(),
            "the restart should remove the dead container's cgroup {}",
            first_cgroup.display()
        );
        assert_eq!(second.restart(), 1);
        assert_ne!(second.id(), first_id);
        assert_eq!(second.cgroup(), pod.cgroup().join(second.id()));
        let log = pod.log_dir().join("app/1.log");
        let link = node
            .container_logs()
            .join(format!("checkout_shop_app-{}.log", second.id()));
        assert_eq!(
            std::fs::read_link(&link).expect("the restarted container's log symlink"),
            log
        );
        let limit = std::fs::read_to_string(second.cgroup().join("memory.limit_in_bytes"))
            .expect("reading the restarted container's memory.limit_in_bytes");
        assert_eq!(
            limit.trim(),
            (32 * MIB).to_string(),
            "the limit carries over"
        );

        node.spawn(&mut second, &["hold", "--mib", "1"]);
        second.workload().wait_line("ready ", PATIENCE);
        seen = Some((root, node.log_root().to_owned(), second.workload().pid()));
        panic!("deliberate panic to test the cleanup (expected in this test's output)");
    }));
    assert!(outcome.is_err(), "the closure should have panicked");
    let (root, logs, pid) = seen.expect("the closure got as far as starting the workload");
    assert!(
        !root.exists(),
        "expected the node guard to remove its cgroup root {} while unwinding",
        root.display()
    );
    assert!(
        !logs.exists(),
        "expected the node guard to remove its log trees {}",
        logs.display()
    );
    assert!(
        pid_is_gone(pid),
        "expected the workload pid {pid} to be gone"
    );
}

/// The inotify access watch the pod tests use sees a directory listed and a file read, and
/// not a stat.
#[test]
fn the_access_watch_sees_listings_and_reads() {
    let _test = start_test!();
    let dir = profiler_e2e::TempDir::new("access");
    let file = dir.path().join("f");
    std::fs::write(&file, "x").expect("writing a file");
    let watch = profiler_e2e::AccessWatch::new(&[dir.path()]);
    let _ = std::fs::metadata(&file);
    assert_eq!(watch.take(), vec![], "a stat is not an access");
    let _ = std::fs::read_dir(dir.path()).map(|entries| entries.count());
    let _ = std::fs::read_to_string(&file);
    let seen = watch.take();
    assert!(
        seen.iter().any(|a| a.name.is_empty()) && seen.iter().any(|a| a.name == "f"),
        "expected the listing and the read of f, saw {seen:?}"
    );
}
