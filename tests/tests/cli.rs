//! The command line: errors for bad input and missing privileges, and `doctor`.

use profiler_e2e::{
    run, run_profiler, start_test, unprivileged_profiler_command, TempDir, TestCgroup, MIB,
    PATIENCE,
};

/// Test 8a: a directory that is not a memory cgroup is refused.
#[test]
fn a_plain_directory_is_not_a_memory_cgroup() {
    let _test = start_test!();
    let finished = run_profiler(&["watch", "--cgroup", "/tmp"], PATIENCE);
    finished.expect_error(&["not a memory cgroup"]);
}

/// Test 8b: a path that does not exist is named in the error.
#[test]
fn a_missing_cgroup_is_named() {
    let _test = start_test!();
    let finished = run_profiler(&["watch", "--cgroup", "/nonexistent/x"], PATIENCE);
    finished.expect_error(&["/nonexistent/x"]);
}

/// Test 8c: without privileges the profiler says which capability is missing and what to do.
#[test]
fn without_privileges_the_error_says_what_is_needed() {
    let _test = start_test!();
    let cgroup = TestCgroup::new("unprivileged", 64 * MIB);
    let command = unprivileged_profiler_command(&[
        "watch",
        "--json",
        "--cgroup",
        cgroup.path_str(),
        "--duration",
        "5s",
    ]);
    let finished = run(command, PATIENCE);
    finished.expect_error(&["CAP_BPF", "sudo"]);
}

/// Test 8d: without privileges, `watch --all` on a node with no container says what is
/// missing, and not first that it is waiting for containers.
#[test]
fn without_privileges_watch_all_does_not_wait_first() {
    let _test = start_test!();
    let empty = TempDir::new("no-containers");
    let command = unprivileged_profiler_command(&[
        "watch",
        "--all",
        "--cgroup-root",
        &empty.path().display().to_string(),
        "--duration",
        "5s",
    ]);
    let finished = run(command, PATIENCE);
    finished.expect_error(&["CAP_BPF", "sudo"]);
    if finished.stderr.contains("waiting") {
        finished.fail("expected no \"waiting\" message before the missing privileges");
    }
}

/// `serve` without privileges says what is missing, and not that its default recording
/// directory is not the user's to write; bad options are refused before anything is loaded.
#[test]
fn serve_refuses_bad_input_and_missing_privileges_with_a_message() {
    let _test = start_test!();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    let taken = listener.local_addr().expect("its address").to_string();
    let free = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        l.local_addr().expect("its address").to_string()
    };
    let command = unprivileged_profiler_command(&["serve", "--listen", &free]);
    let finished = run(command, PATIENCE);
    finished.expect_error(&["CAP_BPF", "sudo"]);
    if finished.stderr.contains("--record-dir") {
        finished.fail("expected the missing privileges first, not the recording directory");
    }

    run_profiler(&["serve", "--listen", "nonsense"], PATIENCE)
        .expect_error(&["`nonsense` is not ADDR:PORT"]);
    run_profiler(&["serve", "--listen", &taken], PATIENCE)
        .expect_error(&["--listen", "cannot serve there"]);
    let dir = TempDir::new("serve-record-dir");
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"").expect("write");
    let below = file.join("recording").display().to_string();
    run_profiler(
        &["serve", "--listen", &free, "--record-dir", &below],
        PATIENCE,
    )
    .expect_error(&["--record-dir", "cannot record there"]);
    run_profiler(&["serve", "--max-disk", "0"], PATIENCE).expect_error(&["more than zero"]);
    run_profiler(&["serve", "--retain", "soon"], PATIENCE).expect_error(&["not a duration"]);
    drop(listener);
}

/// Test 11: `doctor` names the chosen mode, which is tracepoint on a kernel with the memcg
/// tracepoints (the project's host, 6.18; older kernels are covered by `cargo xtask vm-test`).
#[test]
fn doctor_names_the_tracepoint_mode() {
    let _test = start_test!();
    let finished = run_profiler(&["doctor"], PATIENCE);
    if !finished.status.success() {
        finished.fail("expected `profiler doctor` to exit 0");
    }
    let mode_line = finished
        .stdout
        .lines()
        .find(|line| line.trim_start().starts_with("mode:"));
    if !mode_line.is_some_and(|line| line.contains("tracepoint")) {
        finished.fail(format_args!(
            "expected a line starting \"mode:\" that names tracepoint, saw {mode_line:?}"
        ));
    }

    let finished = run_profiler(&["doctor", "--json"], PATIENCE);
    if !finished.status.success() {
        finished.fail("expected `profiler doctor --json` to exit 0");
    }
    let report: serde_json::Value = serde_json::from_str(&finished.stdout)
        .unwrap_or_else(|e| finished.fail(format_args!("expected one JSON object on stdout: {e}")));
    if report["mode"] != "tracepoint" {
        finished.fail(format_args!(
            "expected \"mode\": \"tracepoint\" in the JSON report, saw {}",
            report["mode"]
        ));
    }
}
