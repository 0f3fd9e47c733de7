//! Runtime heap ceilings with real runtimes in real memory cgroups: a JVM whose `-Xmx` keeps it
//! far below its limit never warns however fast its heap warms up; a JVM or Node.js allowed a
//! heap larger than the limit is a `config_risk` from its first sample, and its OOM kill is
//! reported; a JVM without flags gets HotSpot's own default; a Go program needs `GOMEMLIMIT`.

use std::thread;
use std::time::{Duration, Instant};

use profiler_e2e::runtimes::{
    checked_lines, is_process_line, require_clean_environment, GoApp, HeapPlan, JavaHeap, NodeApp,
};
use profiler_e2e::{
    is_line, number_or_null_at, start_test, str_at, u64_at, Profiler, TestCgroup, MIB, PATIENCE,
};
use serde_json::Value;

/// The sampling interval of every watch here.
const INTERVAL: &str = "1s";
/// The most a `config_risk` may come after its process started: the first sample that sees the
/// process tells it (two [`INTERVAL`]s, and some slack for a busy machine).
const FIRST_SAMPLE: Duration = Duration::from_millis(2_500);
/// How long a test watches for a line that must not come, once the process is there.
const QUIET: Duration = Duration::from_secs(12);

/// `profiler watch --json` of `path` every [`INTERVAL`], warning at 60 s and critical at 15 s.
fn watch(path: &str) -> Profiler {
    let mut profiler = Profiler::watch(&[
        "--cgroup",
        path,
        "--interval",
        INTERVAL,
        "--warn",
        "60s",
        "--critical",
        "15s",
    ]);
    profiler.wait_watching(&[path]);
    profiler
}

/// Waits for the `heap_ceiling` line about `pid` and checks its runtime and its ceiling
/// (`None`: null); returns when it came and the line.
#[track_caller]
fn expect_ceiling(
    profiler: &mut Profiler,
    path: &str,
    pid: u32,
    runtime: &str,
    bytes: Option<u64>,
) -> (Instant, Value) {
    let (at, ceiling) = profiler.wait_for(
        &format!("a heap_ceiling line for the {runtime} process (pid {pid})"),
        PATIENCE,
        |l| is_process_line(l, "heap_ceiling", path, pid),
    );
    let want = bytes.map_or(Value::Null, Value::from);
    profiler.expect(
        &ceiling,
        ceiling["language_runtime"] == runtime && ceiling["ceiling_bytes"] == want,
        &format!("language_runtime {runtime:?} and ceiling_bytes {want}"),
    );
    (at, ceiling)
}

/// Checks a `config_risk` line says the heap ceiling of a `runtime` process is over `limit`:
/// its kind, runtime and limit, a ceiling source naming `setting`, and a fix naming one of
/// `fixes`; returns its message and fix.
#[track_caller]
fn expect_ceiling_risk(
    profiler: &Profiler,
    risk: &Value,
    runtime: &str,
    limit: u64,
    setting: &str,
    fixes: &[&str],
) -> (String, String) {
    profiler.expect(
        risk,
        risk["kind"] == "ceiling_above_limit",
        "kind \"ceiling_above_limit\"",
    );
    profiler.expect(
        risk,
        risk["language_runtime"] == runtime,
        &format!("language_runtime {runtime:?}"),
    );
    profiler.expect(
        risk,
        risk["limit_bytes"] == limit,
        &format!("limit_bytes {} MiB", limit / MIB),
    );
    profiler.expect(
        risk,
        str_at(risk, "ceiling_source").contains(setting),
        &format!("a ceiling_source naming {setting}"),
    );
    let fix = str_at(risk, "fix").to_owned();
    profiler.expect(
        risk,
        fixes.iter().any(|f| fix.contains(f)),
        &format!("a fix naming one of {fixes:?}"),
    );
    (str_at(risk, "message").to_owned(), fix)
}

/// Waits for the `config_risk` line about `pid` and checks it came within [`FIRST_SAMPLE`] of
/// `started`; returns the line and how long after the start it came.
#[track_caller]
fn expect_risk_at_once(
    profiler: &mut Profiler,
    path: &str,
    pid: u32,
    started: Instant,
) -> (Value, Duration) {
    let (at, risk) = profiler.wait_for(
        &format!("a config_risk line for pid {pid}"),
        PATIENCE,
        |l| is_process_line(l, "config_risk", path, pid),
    );
    let delay = at.saturating_duration_since(started);
    if delay > FIRST_SAMPLE {
        profiler.fail(format_args!(
            "expected the config_risk within the first sample after the process started \
             (≤ {FIRST_SAMPLE:?}); it came {delay:?} after: {risk}"
        ));
    }
    (risk, delay)
}

/// `later - earlier` in milliseconds, negative when `later` came first.
fn millis_between(earlier: Instant, later: Instant) -> f64 {
    if later >= earlier {
        (later - earlier).as_secs_f64() * 1000.0
    } else {
        -(earlier - later).as_secs_f64() * 1000.0
    }
}

/// Waits for the `oom_kill` line naming `pid`; checks the kernel counted the kill in the cgroup
/// too. Returns how many milliseconds after `killed_at` (when waitpid saw the SIGKILL) the line
/// came, negative when it came first.
#[track_caller]
fn expect_kill_reported(
    profiler: &mut Profiler,
    cgroup: &TestCgroup,
    pid: u32,
    killed_at: Instant,
) -> f64 {
    let path = cgroup.path_str();
    let (at, kill) = profiler.wait_for(&format!("an oom_kill line for pid {pid}"), PATIENCE, |l| {
        is_line(l, "oom_kill", path) && l["pid"] == u64::from(pid)
    });
    profiler.expect(
        &kill,
        kill["victim_cgroup"] == path,
        &format!("victim_cgroup {path:?}"),
    );
    let counted = cgroup.oom_kill_count();
    if counted < 1 {
        profiler.fail(format_args!(
            "the kernel's memory.oom_control counts {counted} kills, expected at least one"
        ));
    }
    millis_between(killed_at, at)
}

/// The first line so far for which `matches` is true, else the next one to come (a process's
/// `heap_ceiling` and `config_risk` come in the same sample, in either order).
#[track_caller]
fn seen_or_next(
    profiler: &mut Profiler,
    what: &str,
    mut matches: impl FnMut(&Value) -> bool,
) -> Value {
    let seen = profiler
        .lines_so_far()
        .into_iter()
        .map(|(_, l)| l)
        .find(|l| matches(l));
    seen.unwrap_or_else(|| profiler.wait_for(what, PATIENCE, matches).1)
}

/// Fails if any line of `lines` about `path` is a `config_risk`.
#[track_caller]
fn expect_no_risk(profiler: &Profiler, lines: &[(Instant, Value)], path: &str) {
    if let Some((_, risk)) = lines.iter().find(|(_, l)| is_line(l, "config_risk", path)) {
        profiler.fail(format_args!("expected no config_risk, saw {risk}"));
    }
}

/// The false alarm: `-Xms128m -Xmx128m` in a 320 MiB memcg, the heap warming up at
/// 4.5 MiB/s until it is full of live data, then garbage only. The heap cannot pass 128 MiB, so
/// the memcg cannot come near its limit: a `heap_ceiling` of 128 MiB from `-Xmx128m`, samples
/// whose `reach_bytes` stays under the limit, and no warning in a watch long enough for the
/// heap to fill (a trend forecast alone warned twice).
#[test]
fn a_jvm_warming_up_under_its_heap_ceiling_never_warns() {
    let _test = start_test!();
    require_clean_environment();
    const LIMIT: u64 = 320 * MIB;
    const FLAGS: [&str; 2] = ["-Xms128m", "-Xmx128m"];
    /// From the JVM's start to the end of the watch: the heap is full after about 25 s.
    const WATCH: Duration = Duration::from_secs(65);
    let java = JavaHeap::compile();
    let cgroup = TestCgroup::new("jvm-steady", LIMIT);
    let path = cgroup.path_str();
    let max_heap = java.max_heap_size(&cgroup, &FLAGS);
    assert_eq!(
        max_heap,
        128 * MIB,
        "HotSpot's MaxHeapSize for {FLAGS:?} in {LIMIT} bytes"
    );
    let mut profiler = watch(path);

    let started = Instant::now();
    let mut jvm = java.spawn(
        &cgroup,
        &FLAGS,
        HeapPlan {
            delay: Duration::ZERO,
            warm_mib_per_s: 4.5,
            live_mib: 96,
            garbage_mib_per_s: 16.0,
        },
    );
    let pid = jvm.pid();
    // HotSpot's MaxHeapSize.
    let (ceiling_at, ceiling) = expect_ceiling(&mut profiler, path, pid, "jvm", Some(max_heap));
    profiler.expect(
        &ceiling,
        str_at(&ceiling, "source").contains("-Xmx128m"),
        "a source naming -Xmx128m",
    );
    profiler.expect(
        &ceiling,
        ceiling["default"] == false && ceiling["gc_off"] == false,
        "default false and gc_off false",
    );
    let (steady_at, _) = jvm.wait_line("steady ", Duration::from_secs(50));
    let rest = WATCH.saturating_sub(started.elapsed());
    thread::sleep(rest);
    if jvm.has_exited() {
        jvm.fail("the JVM should still run at the end of the watch");
    }

    let lines = checked_lines(&profiler);
    let alarms: Vec<&Value> = lines
        .iter()
        .map(|(_, l)| l)
        .filter(|l| is_line(l, "warning", path) && l["level"] != "cleared")
        .collect();
    if !alarms.is_empty() {
        profiler.fail(format_args!(
            "a JVM whose heap cannot pass 128 MiB in a 320 MiB memcg warned: {alarms:?}"
        ));
    }
    expect_no_risk(&profiler, &lines, path);
    // Every sample once the ceiling is known bounds what the memcg can reach below its limit.
    let ceiling_index = lines
        .iter()
        .position(|(_, l)| is_process_line(l, "heap_ceiling", path, pid))
        .unwrap_or_default();
    let samples: Vec<&Value> = lines[ceiling_index..]
        .iter()
        .map(|(_, l)| l)
        .filter(|l| is_line(l, "sample", path))
        .collect();
    let mut reach_max = 0.0_f64;
    for sample in &samples {
        match number_or_null_at(sample, "reach_bytes") {
            Some(reach) if reach < LIMIT as f64 => reach_max = reach_max.max(reach),
            _ => profiler.fail(format_args!(
                "expected reach_bytes below the {LIMIT}-byte limit in every sample once the \
                 JVM's ceiling is known, saw {sample}"
            )),
        }
    }
    if samples.len() < 40 {
        profiler.fail(format_args!(
            "expected a sample every second for about a minute, saw {}",
            samples.len()
        ));
    }
    let peak = lines
        .iter()
        .filter(|(_, l)| is_line(l, "sample", path))
        .map(|(_, l)| u64_at(l, "unreclaimable_bytes"))
        .max()
        .unwrap_or_default();
    eprintln!(
        "steady JVM: heap_ceiling {:?} after the start, heap full of live data {:?} after, \
         {} samples watched, unreclaimable peak {} MiB, reach_bytes at most {:.0} MiB, \
         limit {} MiB, no warning",
        ceiling_at.saturating_duration_since(started),
        steady_at.saturating_duration_since(started),
        samples.len(),
        peak / MIB,
        reach_max / MIB as f64,
        LIMIT / MIB,
    );
}

/// `-Xmx1g` in a 256 MiB memcg: a `config_risk` (`ceiling_above_limit`) from the first sample
/// after the JVM starts, in numbers and with a fix; once the heap grows the kernel OOM-kills the
/// JVM, and the kill is reported.
#[test]
fn a_jvm_allowed_more_heap_than_its_limit_is_a_risk_at_once_and_its_kill_is_reported() {
    let _test = start_test!();
    require_clean_environment();
    const LIMIT: u64 = 256 * MIB;
    let java = JavaHeap::compile();
    java.charge_files_here();
    let cgroup = TestCgroup::new("jvm-xmx1g", LIMIT);
    let path = cgroup.path_str();
    let mut profiler = watch(path);

    let started = Instant::now();
    let jvm = java.spawn(
        &cgroup,
        &["-Xmx1g"],
        HeapPlan {
            // Long enough for the risk to come first (the test checks it does).
            delay: Duration::from_secs(4),
            warm_mib_per_s: 32.0,
            live_mib: 4096,
            garbage_mib_per_s: 0.0,
        },
    );
    let pid = jvm.pid();
    let (risk, delay) = expect_risk_at_once(&mut profiler, path, pid, started);
    if jvm.has_exited() {
        profiler.fail("the config_risk should come before the kill");
    }
    let (message, fix) = expect_ceiling_risk(
        &profiler,
        &risk,
        "jvm",
        LIMIT,
        "-Xmx1g",
        &["-Xmx", "MaxRAMPercentage"],
    );
    profiler.expect(
        &risk,
        risk["ceiling_bytes"] == 1024 * MIB,
        "ceiling_bytes 1 GiB",
    );
    profiler.expect(
        &risk,
        message.contains("1.0 GiB") && message.contains("256 MiB"),
        "a message naming the 1.0 GiB heap and the 256 MiB limit",
    );

    let killed_at = jvm.expect_oom_killed(PATIENCE);
    let reported = expect_kill_reported(&mut profiler, &cgroup, pid, killed_at);
    checked_lines(&profiler);
    eprintln!(
        "JVM -Xmx1g in 256 MiB: config_risk {delay:?} after the start, OOM-killed {:?} after \
         the start, the oom_kill line {reported:+.0} ms from waitpid seeing the kill; \
         message {message:?}, fix {fix:?}",
        killed_at.saturating_duration_since(started),
    );
}

/// Node.js with `--max-old-space-size=512` in a 192 MiB memcg: a `config_risk` at once, and
/// the kill of its growing heap (about 10 MiB/s of live arrays) reported.
#[test]
fn node_allowed_more_heap_than_its_limit_is_a_risk_at_once_and_its_kill_is_reported() {
    let _test = start_test!();
    require_clean_environment();
    const LIMIT: u64 = 192 * MIB;
    let app = NodeApp::write();
    app.charge_files_here();
    let cgroup = TestCgroup::new("node-old-space", LIMIT);
    let path = cgroup.path_str();
    let mut profiler = watch(path);

    let started = Instant::now();
    let node = app.spawn(
        &cgroup,
        &["--max-old-space-size=512"],
        Duration::from_secs(4),
        10,
    );
    let pid = node.pid();
    let (risk, delay) = expect_risk_at_once(&mut profiler, path, pid, started);
    if node.has_exited() {
        profiler.fail("the config_risk should come before the kill");
    }
    let (message, fix) = expect_ceiling_risk(
        &profiler,
        &risk,
        "node",
        LIMIT,
        "--max-old-space-size=512",
        &["--max-old-space-size"],
    );
    // The old space alone is 512 MiB; the young generation may be counted on top.
    profiler.expect(
        &risk,
        risk["ceiling_bytes"].as_u64() >= Some(512 * MIB),
        "ceiling_bytes of at least 512 MiB",
    );
    profiler.expect(
        &risk,
        message.contains("192 MiB"),
        "a message naming the 192 MiB limit",
    );

    let killed_at = node.expect_oom_killed(PATIENCE);
    let reported = expect_kill_reported(&mut profiler, &cgroup, pid, killed_at);
    checked_lines(&profiler);
    eprintln!(
        "node --max-old-space-size=512 in 192 MiB: config_risk {delay:?} after the start, \
         OOM-killed {:?} after the start, the oom_kill line {reported:+.0} ms from waitpid \
         seeing the kill; message {message:?}, fix {fix:?}",
        killed_at.saturating_duration_since(started),
    );
}

/// A JVM without heap flags in a 512 MiB memcg: its ceiling is HotSpot's container-aware
/// default, the `MaxHeapSize` `java -XX:+PrintFlagsFinal -version` prints in that same memcg,
/// marked as a default; far below the limit, so no `config_risk`.
#[test]
fn a_jvm_without_flags_gets_its_default_ceiling_and_no_risk() {
    let _test = start_test!();
    require_clean_environment();
    const LIMIT: u64 = 512 * MIB;
    let java = JavaHeap::compile();
    let cgroup = TestCgroup::new("jvm-default", LIMIT);
    let path = cgroup.path_str();
    let max_heap = java.max_heap_size(&cgroup, &[]);
    let mut profiler = watch(path);

    let started = Instant::now();
    let mut jvm = java.spawn(
        &cgroup,
        &[],
        HeapPlan {
            delay: Duration::ZERO,
            warm_mib_per_s: 8.0,
            live_mib: 32,
            garbage_mib_per_s: 8.0,
        },
    );
    let pid = jvm.pid();
    // The MaxHeapSize `java -XX:+PrintFlagsFinal` prints in this memcg.
    let (ceiling_at, ceiling) = expect_ceiling(&mut profiler, path, pid, "jvm", Some(max_heap));
    profiler.expect(
        &ceiling,
        ceiling["default"] == true,
        "default true (no heap flag was given)",
    );
    jvm.wait_line("steady ", PATIENCE);
    let quiet_until = ceiling_at + QUIET;
    thread::sleep(quiet_until.saturating_duration_since(Instant::now()));
    if jvm.has_exited() {
        jvm.fail("the JVM should still run");
    }
    let lines = checked_lines(&profiler);
    expect_no_risk(&profiler, &lines, path);
    eprintln!(
        "JVM without flags in 512 MiB: heap_ceiling {} bytes ({}), {:?} after the start; \
         HotSpot's MaxHeapSize there {max_heap}; no config_risk in {QUIET:?}",
        ceiling["ceiling_bytes"],
        ceiling["source"],
        ceiling_at.saturating_duration_since(started),
    );
}

/// A Go program without `GOMEMLIMIT` in a 128 MiB memcg has no heap ceiling: a `heap_ceiling`
/// with none, and a `config_risk` of kind `no_ceiling` at once.
#[test]
fn go_without_gomemlimit_under_a_limit_is_a_risk() {
    let _test = start_test!();
    require_clean_environment();
    const LIMIT: u64 = 128 * MIB;
    let app = GoApp::build();
    let cgroup = TestCgroup::new("go-nolimit", LIMIT);
    let path = cgroup.path_str();
    let mut profiler = watch(path);

    let started = Instant::now();
    let mut go = app.spawn(&cgroup, &[], 16);
    let pid = go.pid();
    let (risk, delay) = expect_risk_at_once(&mut profiler, path, pid, started);
    let ceiling = seen_or_next(
        &mut profiler,
        &format!("a heap_ceiling line for the Go program (pid {pid})"),
        |l| is_process_line(l, "heap_ceiling", path, pid),
    );
    profiler.expect(
        &ceiling,
        ceiling["language_runtime"] == "go" && ceiling["ceiling_bytes"].is_null(),
        "language_runtime \"go\" and ceiling_bytes null",
    );
    profiler.expect(&risk, risk["kind"] == "no_ceiling", "kind \"no_ceiling\"");
    profiler.expect(
        &risk,
        risk["language_runtime"] == "go",
        "language_runtime \"go\"",
    );
    profiler.expect(&risk, risk["limit_bytes"] == LIMIT, "limit_bytes 128 MiB");
    profiler.expect(
        &risk,
        str_at(&risk, "fix").contains("GOMEMLIMIT"),
        "a fix naming GOMEMLIMIT",
    );
    go.wait_line("ready ", PATIENCE);
    checked_lines(&profiler);
    eprintln!(
        "Go without GOMEMLIMIT in 128 MiB: config_risk {delay:?} after the start; \
         message {:?}, fix {:?}",
        str_at(&risk, "message"),
        str_at(&risk, "fix"),
    );
}

/// A Go program with `GOMEMLIMIT=100MiB` in a 128 MiB memcg: a `heap_ceiling` of 100 MiB from
/// `GOMEMLIMIT`, and no `config_risk`.
#[test]
fn go_with_gomemlimit_has_its_ceiling_and_no_risk() {
    let _test = start_test!();
    require_clean_environment();
    const LIMIT: u64 = 128 * MIB;
    let app = GoApp::build();
    let cgroup = TestCgroup::new("go-memlimit", LIMIT);
    let path = cgroup.path_str();
    let mut profiler = watch(path);

    let started = Instant::now();
    let mut go = app.spawn(&cgroup, &[("GOMEMLIMIT", "100MiB")], 16);
    let pid = go.pid();
    let (ceiling_at, ceiling) = expect_ceiling(&mut profiler, path, pid, "go", Some(100 * MIB));
    profiler.expect(
        &ceiling,
        str_at(&ceiling, "source").contains("GOMEMLIMIT"),
        "a source naming GOMEMLIMIT",
    );
    profiler.expect(
        &ceiling,
        ceiling["default"] == false && ceiling["gc_off"] == false,
        "default false and gc_off false",
    );
    go.wait_line("ready ", PATIENCE);
    let quiet_until = ceiling_at + QUIET;
    thread::sleep(quiet_until.saturating_duration_since(Instant::now()));
    if go.has_exited() {
        go.fail("the Go program should still run");
    }
    let lines = checked_lines(&profiler);
    expect_no_risk(&profiler, &lines, path);
    eprintln!(
        "Go with GOMEMLIMIT=100MiB in 128 MiB: heap_ceiling {:?} after the start ({}); no \
         config_risk in {QUIET:?}",
        ceiling_at.saturating_duration_since(started),
        ceiling["source"],
    );
}
