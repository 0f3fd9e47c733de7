//! `--record FILE`: the watch written as it goes; a `kill -9` loses at most the last interval.

use std::time::Duration;

use profiler_e2e::{
    is_line, run_profiler, start_test, Profiler, TempDir, TestCgroup, MIB, PATIENCE,
};
use serde_json::Value;

/// The lines of a recording, and whether its last line was cut short.
fn read_recording(path: &std::path::Path) -> (Vec<Value>, bool) {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("reading the recording {}: {e}", path.display()));
    let complete = text.ends_with('\n');
    let mut lines: Vec<&str> = text.lines().collect();
    if !complete {
        lines.pop();
    }
    let values = lines
        .iter()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| {
                panic!("a complete line of the recording is not JSON ({e}): {l}")
            })
        })
        .collect();
    (values, !complete)
}

/// A 64 MiB test cgroup and `profiler watch --record` on it (250 ms rounds), watching.
fn watch_recording(name: &str) -> (TestCgroup, TempDir, std::path::PathBuf, Profiler) {
    let cgroup = TestCgroup::new(name, 64 * MIB);
    let scratch = TempDir::new(name);
    let file = scratch.path().join("watch.rec");
    let file_str = file.display().to_string();
    let path = cgroup.path_str();
    let mut profiler = Profiler::watch(&[
        "--cgroup",
        path,
        "--interval",
        "250ms",
        "--record",
        &file_str,
    ]);
    profiler.wait_watching(&[path]);
    (cgroup, scratch, file, profiler)
}

/// SIGKILL in the middle of a watch: the file starts with its header, every complete line
/// reads, and it holds every sample the profiler had printed up to one round before the kill.
#[test]
fn kill_9_loses_at_most_the_last_interval() {
    let _test = start_test!();
    let (cgroup, _scratch, file, profiler) = watch_recording("record");
    let path = cgroup.path_str();
    let _hold = cgroup.spawn(&["hold", "--mib", "8"]);
    // Let a few rounds go by.
    std::thread::sleep(Duration::from_secs(3));
    let printed: Vec<Value> = profiler
        .lines_so_far()
        .into_iter()
        .map(|(_, l)| l)
        .filter(|l| is_line(l, "sample", path))
        .collect();
    // SAFETY: kill(2) on the pid of the profiler this test started.
    unsafe { libc::kill(profiler.pid() as i32, libc::SIGKILL) };
    profiler.wait(PATIENCE);

    let (lines, _cut) = read_recording(&file);
    let header = lines
        .first()
        .unwrap_or_else(|| profiler.fail("the recording is empty"));
    if header["type"] != "recording" || header["version"] != 1 || !header["node"].is_string() {
        profiler.fail(format_args!(
            "the first line is not the recording header: {header}"
        ));
    }
    if header["probe"]["mode"] != "tracepoint" || !header["probe"]["hooks"].is_array() {
        profiler.fail(format_args!(
            "the header should name the hooks and mode in use: {header}"
        ));
    }
    let recorded = lines.iter().filter(|l| is_line(l, "sample", path)).count();
    // Samples printed before the kill are on disk, but for the last round at most (the
    // printed ones were read a moment before the kill, so more may be recorded).
    if recorded + 1 < printed.len() {
        profiler.fail(format_args!(
            "{} samples were printed before the kill, only {recorded} are in the recording",
            printed.len()
        ));
    }
    if !lines.iter().any(|l| is_line(l, "watch_start", path)) {
        profiler.fail("the recording has no watch_start line");
    }
}

/// Ctrl-C: the recording ends with the summary and the end line, and matches what was printed.
#[test]
fn ctrl_c_keeps_everything() {
    let _test = start_test!();
    let (_cgroup, _scratch, file, profiler) = watch_recording("record-int");
    std::thread::sleep(Duration::from_secs(1));
    profiler.interrupt();
    profiler.wait(PATIENCE);
    let (lines, cut) = read_recording(&file);
    if cut {
        profiler.fail("after Ctrl-C the recording's last line is cut short");
    }
    let printed: Vec<Value> = profiler
        .lines_so_far()
        .into_iter()
        .map(|(_, l)| l)
        .collect();
    if lines.len() != printed.len() + 1 || lines[1..] != printed[..] {
        profiler.fail(format_args!(
            "the recording ({} lines after its header) should hold exactly what was printed ({} lines)",
            lines.len().saturating_sub(1),
            printed.len()
        ));
    }
    let types: Vec<&str> = lines
        .iter()
        .rev()
        .take(2)
        .filter_map(|l| l["type"].as_str())
        .collect();
    if types != ["end", "summary"] {
        profiler.fail(format_args!(
            "the recording should end with summary, end: {types:?}"
        ));
    }
}

/// An unwritable recording is an error before anything is watched.
#[test]
fn an_unwritable_recording_is_refused_at_once() {
    let _test = start_test!();
    let cgroup = TestCgroup::new("record-bad", 64 * MIB);
    let finished = run_profiler(
        &[
            "watch",
            "--cgroup",
            cgroup.path_str(),
            "--record",
            "/nonexistent/dir/watch.rec",
        ],
        PATIENCE,
    );
    finished.expect_error(&["--record /nonexistent/dir/watch.rec", "writable"]);
    if finished.stdout.contains("watch_start") {
        finished.fail("nothing should be watched when the recording cannot be written");
    }
}
