//! The early warning: a leak in a real memcg is warned about before the kernel kills it, and
//! the `--on-warning` command runs once per level change.

use std::os::unix::process::ExitStatusExt;

use profiler_e2e::{is_line, start_test, Profiler, TempDir, TestCgroup, MIB, PATIENCE};

/// A linear leak (2 MiB/s in a 96 MiB memcg, ~46 s to the kill) gets a `warning` line, then a
/// `critical` one, before its `oom_kill`; the ETA at the first warning is within 25 % of the
/// time the kill really came; samples carry the forecast; the hook ran for each level.
#[test]
fn a_linear_leak_is_warned_about_before_the_kill() {
    let _test = start_test!();
    let cgroup = TestCgroup::new("forecast", 96 * MIB);
    let path = cgroup.path_str();
    let scratch = TempDir::new("forecast-hook");
    let hook_log = scratch.path().join("hook.log");
    let hook = format!(
        "echo \"$PROFILER_LEVEL $PROFILER_PREVIOUS_LEVEL $PROFILER_ETA_SECONDS $PROFILER_CGROUP\" >> {}",
        hook_log.display()
    );
    let mut profiler = Profiler::watch(&[
        "--cgroup",
        path,
        "--interval",
        "1s",
        "--warn",
        "60s",
        "--critical",
        "15s",
        "--on-warning",
        &hook,
    ]);
    profiler.wait_watching(&[path]);
    let leak = cgroup.spawn(&["leak", "--step-mib", "1", "--interval-ms", "500"]);
    let (status, _) = leak.wait_exit(PATIENCE * 2);
    if status.signal() != Some(libc::SIGKILL) {
        leak.fail(format_args!("expected an OOM kill (SIGKILL), got {status}"));
    }
    let (_, kill) = profiler.wait_for("the oom_kill line", PATIENCE, |l| {
        is_line(l, "oom_kill", path)
    });
    let kill_ts = kill["ts"].as_f64().unwrap_or_default();
    let lines: Vec<_> = profiler
        .lines_so_far()
        .into_iter()
        .map(|(_, line)| line)
        .collect();
    let warnings: Vec<_> = lines
        .iter()
        .filter(|l| is_line(l, "warning", path))
        .filter(|l| l["ts"].as_f64().is_some_and(|ts| ts < kill_ts))
        .collect();
    let levels: Vec<&str> = warnings
        .iter()
        .filter_map(|w| w["level"].as_str())
        .collect();
    if levels != ["warning", "critical"] {
        profiler.fail(format_args!(
            "expected a warning, then a critical line before the kill at {kill_ts}, saw {levels:?}"
        ));
    }
    let first = warnings[0];
    let (ts, eta) = (
        first["ts"].as_f64().unwrap_or_default(),
        first["eta_seconds"].as_f64().unwrap_or(-1.0),
    );
    let truth = kill_ts - ts;
    if !(truth > 0.0 && (eta - truth).abs() <= 0.25 * truth) {
        profiler.fail(format_args!(
            "first warning {first}: eta {eta:.1}s, the kill came {truth:.1}s later (> 25 % off)"
        ));
    }
    if !first["reason"]
        .as_str()
        .is_some_and(|r| r.contains("growing"))
    {
        profiler.fail(format_args!(
            "the warning should say the memory is growing: {first}"
        ));
    }
    // Samples carry the forecast: the last one before the kill has an ETA and a level.
    let last_sample = lines
        .iter()
        .filter(|l| is_line(l, "sample", path))
        .rfind(|l| l["ts"].as_f64().is_some_and(|t| t < kill_ts))
        .unwrap_or_else(|| profiler.fail("no sample before the kill"));
    if last_sample["risk"] != "critical" || !last_sample["eta_seconds"].is_number() {
        profiler.fail(format_args!(
            "the last sample should be critical with an ETA: {last_sample}"
        ));
    }
    // The hook ran once for each change, with the details in its environment.
    let hook_lines = std::fs::read_to_string(&hook_log).unwrap_or_default();
    let seen: Vec<(String, String)> = hook_lines
        .lines()
        .filter_map(|l| {
            let mut words = l.split(' ');
            let level = words.next()?.to_owned();
            let previous = words.next()?.to_owned();
            let eta: f64 = words.next()?.parse().ok()?;
            (eta >= 0.0 && words.next() == Some(path)).then_some((level, previous))
        })
        .collect();
    let expected = [
        ("warning".to_owned(), "ok".to_owned()),
        ("critical".to_owned(), "warning".to_owned()),
    ];
    if seen.len() < 2 || seen[..2] != expected {
        profiler.fail(format_args!(
            "expected the --on-warning command to run for warning then critical, its log:\n{hook_lines}"
        ));
    }
}

/// A memcg that only holds steady memory never warns, and the watch ends with a `summary` of
/// its distributions.
#[test]
fn steady_memory_never_warns_and_the_watch_ends_with_a_summary() {
    let _test = start_test!();
    let cgroup = TestCgroup::new("steady", 64 * MIB);
    let path = cgroup.path_str();
    let _hold = cgroup.spawn(&["hold", "--mib", "40"]);
    let finished = profiler_e2e::run_profiler(
        &[
            "watch",
            "--json",
            "--cgroup",
            path,
            "--interval",
            "500ms",
            "--duration",
            "30s",
            "--warn",
            "60s",
            "--critical",
            "15s",
        ],
        PATIENCE,
    );
    let lines: Vec<serde_json::Value> = finished
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    if let Some(w) = lines.iter().find(|l| l["type"] == "warning") {
        finished.fail(format_args!("steady memory raised a warning: {w}"));
    }
    let Some(summary) = lines.iter().find(|l| is_line(l, "summary", path)) else {
        finished.fail("no summary line at the end of the watch");
    };
    let p99 = summary["unreclaimable_bytes"]["p99"]
        .as_f64()
        .unwrap_or_default();
    if !(p99 >= 40.0 * MIB as f64 && p99 <= 48.0 * MIB as f64) {
        finished.fail(format_args!(
            "unreclaimable p99 should be about the 40 MiB held, summary {summary}"
        ));
    }
    if summary["warnings"] != 0
        || summary["worst_risk"] != "ok"
        || summary["samples"].as_u64() < Some(50)
    {
        finished.fail(format_args!("unexpected summary {summary}"));
    }
}
