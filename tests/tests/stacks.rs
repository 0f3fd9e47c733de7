//! Who charged the memory (issue 16), with real programs in real memory cgroups: a C server
//! whose cache leaks is watched with `--stacks` to its OOM kill, and its charges are traced to
//! `cache_put ← handle_request ← main`, not to `churn`, which allocates as much but charges
//! nothing new, in the JSON up to the kill and in the report; the same server in Rust has
//! whole stacks with frame pointers and gets the report's short-stacks notice without them;
//! of two processes in one container, the `processes` lines name the one that grows.

use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use profiler_e2e::runtimes::checked_lines;
use profiler_e2e::stacks::{
    charge_stacks_of, container_section, describe_stacks, excerpt, is_unnamed, median_user_frames,
    render_report, svg_images, text_of, top_stack_rows, user_stacks, Build, LeakProgram, UserStack,
    TOP_STACKS_HEADING,
};
use profiler_e2e::{
    is_line, start_test, str_at, u64_at, Profiler, TempDir, TestCgroup, MIB, PATIENCE,
};
use serde_json::Value;

/// The sampling interval of every watch here.
const INTERVAL: &str = "1s";
/// How fast the leak programs leak.
const LEAK_MIB_PER_S: u32 = 8;
/// How long a watch may take to reach a kill the test expects in about 15 s.
const KILL_PATIENCE: Duration = Duration::from_secs(90);
/// How long after a kill (or the end of a workload) the watch runs on, so the round that saw
/// it is written out before the watch is stopped.
const LAST_ROUND: Duration = Duration::from_millis(2_500);
/// How far apart two lines of one round may be stamped, seconds.
const ROUND_S: f64 = 1.5;
/// The charge_stacks lines that must be whole before a kill: those of its last seconds.
const BEFORE_KILL_S: f64 = 3.0;

/// `profiler watch --json --stacks` of `cgroups` every [`INTERVAL`], recorded to `recording`;
/// returns once each cgroup is watched.
fn watch_stacks(cgroups: &[&str], recording: &Path) -> Profiler {
    let recording = recording.display().to_string();
    let mut args: Vec<&str> = Vec::new();
    for cgroup in cgroups {
        args.extend(["--cgroup", cgroup]);
    }
    args.extend(["--stacks", "--interval", INTERVAL, "--record", &recording]);
    let mut profiler = Profiler::watch(&args);
    profiler.wait_watching(cgroups);
    profiler
}

/// Stops the watch with Ctrl-C; returns every line it printed, each checked against the
/// contract.
#[track_caller]
fn stop(profiler: &Profiler) -> Vec<(Instant, Value)> {
    profiler.interrupt();
    let (status, _) = profiler.wait(PATIENCE);
    if !status.success() {
        profiler.fail(format_args!("the watch ended with {status} after Ctrl-C"));
    }
    checked_lines(profiler)
}

/// The `ts` of a line.
#[track_caller]
fn ts(line: &Value) -> f64 {
    line["ts"]
        .as_f64()
        .unwrap_or_else(|| panic!("a line without a numeric ts: {line}"))
}

/// The `charge_stacks` lines (of one container) of the [`BEFORE_KILL_S`] before a kill at
/// `kill_ts`: those written then, and the first one after it if its window began at or before
/// the kill (a line is written at the end of its round, so the samples just before a kill are
/// in the line of the round the kill fell in).
fn lines_before_kill(lines: &[Value], kill_ts: f64) -> Vec<&Value> {
    let mut before: Vec<&Value> = lines
        .iter()
        .filter(|l| (kill_ts - BEFORE_KILL_S..=kill_ts).contains(&ts(l)))
        .collect();
    let next = lines.iter().find(|l| ts(l) > kill_ts);
    if let Some(next) = next {
        let window = next["window_s"].as_f64().unwrap_or_default();
        if ts(next) - window <= kill_ts {
            before.push(next);
        }
    }
    before
}

/// Why `stack` is not the leak's stack (`cache_put` the leaf, called by `handle_request`,
/// named up to `main`, no `churn`), or `None` if it is.
fn not_the_leak(stack: &UserStack) -> Option<String> {
    if !stack
        .leaf()
        .is_some_and(|leaf| profiler_e2e::stacks::names(leaf, "cache_put"))
    {
        return Some("its innermost user frame is not cache_put".to_owned());
    }
    if !stack.has("handle_request") {
        return Some("it has no handle_request frame".to_owned());
    }
    if stack.frames.iter().any(|f| f.contains("churn")) {
        return Some("it has a churn frame".to_owned());
    }
    match stack.between("main", "cache_put") {
        None => Some("it has no main frame above cache_put".to_owned()),
        Some(between) if between.iter().any(|f| is_unnamed(f)) => Some(format!(
            "frames between main and cache_put are not named: {between:?}"
        )),
        Some(_) => None,
    }
}

/// Checks that the stack that charged most of `lines` (all of a container's `charge_stacks`
/// lines) is the leak's; returns the stacks, most bytes first, and the top one's share.
#[track_caller]
fn expect_leak_on_top(profiler: &Profiler, lines: &[Value], what: &str) -> (Vec<UserStack>, f64) {
    if lines.is_empty() {
        profiler.fail(format_args!(
            "expected charge_stacks lines for {what}, saw none"
        ));
    }
    let stacks = user_stacks(lines);
    let all: u64 = stacks.iter().map(|s| s.bytes).sum();
    let Some(top) = stacks.first() else {
        profiler.fail(format_args!(
            "the charge_stacks lines for {what} hold no stack"
        ));
    };
    if let Some(why) = not_the_leak(top) {
        profiler.fail(format_args!(
            "expected the stack that charged most for {what} to be the leak's \
             (cache_put ← handle_request ← … ← main), but {why}; stacks summed over the watch:\n{}",
            describe_stacks(&stacks, 8)
        ));
    }
    let share = top.bytes as f64 / all.max(1) as f64;
    (stacks, share)
}

/// The entry of process `pid` in the `processes` line `line`; fails if it has none.
#[track_caller]
fn process_entry<'a>(profiler: &Profiler, line: &'a Value, pid: u64) -> &'a Value {
    line["processes"]
        .as_array()
        .and_then(|all| all.iter().find(|p| p["pid"] == pid))
        .unwrap_or_else(|| profiler.fail(format_args!("expected pid {pid} in {line}")))
}

/// What the processes of a `processes` line are ordered by: growth, then RSS.
fn growth_then_rss(process: &Value) -> (i64, u64) {
    let rss = ["rss_anon_bytes", "rss_file_bytes", "rss_shmem_bytes"]
        .iter()
        .map(|key| process[*key].as_u64().unwrap_or_default())
        .sum();
    (process["growth_bytes"].as_i64().unwrap_or_default(), rss)
}

/// The Unix time of `at`, from the arrival and `ts` of the last line that came before it (the
/// lines' clock, for comparisons with their `ts`).
fn started_ts(lines: &[(Instant, Value)], at: Instant) -> f64 {
    lines
        .iter()
        .rev()
        .find(|(arrived, _)| *arrived <= at)
        .map_or(f64::NAN, |(arrived, line)| {
            ts(line) + at.saturating_duration_since(*arrived).as_secs_f64()
        })
}

/// The `ts` and new `risk` of each `sample` of `cgroup` whose risk is above the one before.
fn risk_rises(lines: &[(Instant, Value)], cgroup: &str) -> Vec<(f64, String)> {
    let rank = |risk: &str| {
        ["ok", "warning", "critical"]
            .iter()
            .position(|r| *r == risk)
    };
    let mut previous = Some(0);
    let mut rises = Vec::new();
    for (_, line) in lines.iter().filter(|(_, l)| is_line(l, "sample", cgroup)) {
        let risk = str_at(line, "risk");
        if rank(risk) > previous {
            rises.push((ts(line), risk.to_owned()));
        }
        previous = rank(risk);
    }
    rises
}

/// The share of the bytes of `stacks` charged through stacks for which `which` is true.
fn share_of(stacks: &[UserStack], which: impl Fn(&UserStack) -> bool) -> f64 {
    let all: u64 = stacks.iter().map(|s| s.bytes).sum();
    let some: u64 = stacks.iter().filter(|s| which(s)).map(|s| s.bytes).sum();
    some as f64 / all.max(1) as f64
}

/// Panics with `message` and an excerpt of the report around `near` (else its start).
#[track_caller]
fn report_fail(html: &str, near: &str, message: impl std::fmt::Display) -> ! {
    let at = html.find(near).unwrap_or_default();
    panic!(
        "{message}\n  report.html ({} bytes) from byte {at}:\n{}",
        html.len(),
        excerpt(html, at, 6_000)
    );
}

/// The C server leaks 8 MiB/s in a 128 MiB memcg under `watch --stacks --record` until the
/// kernel OOM-kills it. The stack that charged most is `cache_put ← handle_request ← main`
/// (not `churn`, which allocates as many bytes but reuses them); the lines of the last seconds
/// before the kill are symbolized although the process died right after; the report's top
/// stack before the kill is the leak, its flame graph names `cache_put`, and its kill names
/// the process that grew.
#[test]
fn a_c_leak_is_charged_to_its_stack_up_to_the_kill_and_in_the_report() {
    let _test = start_test!();
    const LIMIT: u64 = 128 * MIB;
    let program = LeakProgram::build(Build::C);
    let cgroup = TestCgroup::new("stacks-c", LIMIT);
    let path = cgroup.path_str();
    let scratch = TempDir::new("stacks-c");
    let recording = scratch.path().join("leak.rec");
    let mut profiler = watch_stacks(&[path], &recording);

    let started = Instant::now();
    let mut leak = program.spawn(&cgroup, LEAK_MIB_PER_S);
    let pid = leak.pid();
    leak.wait_line("started", PATIENCE);
    let (_, kill) = profiler.wait_for(
        &format!("the oom_kill line of the leak (pid {pid})"),
        KILL_PATIENCE,
        |l| is_line(l, "oom_kill", path) && l["pid"] == u64::from(pid),
    );
    let killed_at = leak.expect_oom_killed(PATIENCE);
    thread::sleep(LAST_ROUND);
    let lines = stop(&profiler);

    // The whole watch: the leak's stack charged most.
    let stack_lines = charge_stacks_of(&lines, path);
    let (stacks, share) = expect_leak_on_top(&profiler, &stack_lines, "the C leak");
    let median = median_user_frames(&stack_lines).unwrap_or_default();
    let churned = share_of(&stacks, |s| s.frames.iter().any(|f| f.contains("churn")));

    // The last seconds before the kill: symbolized, though the process is gone by the time
    // they are written.
    let kill_ts = ts(&kill);
    let last = lines_before_kill(&stack_lines, kill_ts);
    if last.is_empty() {
        profiler.fail(format_args!(
            "expected charge_stacks lines in the {BEFORE_KILL_S} s before the kill at ts \
             {kill_ts}, saw none"
        ));
    }
    for line in &last {
        let stacks = user_stacks(std::slice::from_ref(*line));
        let leaks: Vec<&UserStack> = stacks.iter().filter(|s| s.has("cache_put")).collect();
        if leaks.is_empty() {
            profiler.fail(format_args!(
                "expected the charge_stacks line at ts {} ({:+.2} s from the kill) to name \
                 cache_put; its stacks:\n{}",
                ts(line),
                ts(line) - kill_ts,
                describe_stacks(&stacks, 8)
            ));
        }
        if let Some((stack, why)) = leaks.iter().find_map(|s| not_the_leak(s).map(|w| (s, w))) {
            profiler.fail(format_args!(
                "in the charge_stacks line at ts {} ({:+.2} s from the kill), a stack with \
                 cache_put is not whole: {why}: {}",
                ts(line),
                ts(line) - kill_ts,
                stack.leaf_first()
            ));
        }
    }
    let last_line = last.last().copied().unwrap_or(&Value::Null);
    let last_before_kill = stack_lines
        .iter()
        .rfind(|l| ts(l) <= kill_ts)
        .map_or(f64::NAN, |l| kill_ts - ts(l));

    // The report.
    let out = scratch.path().join("report");
    let html = render_report(&recording, &out);
    let rows = top_stack_rows(&html, TOP_STACKS_HEADING)
        .unwrap_or_else(|e| report_fail(&html, TOP_STACKS_HEADING, e));
    let Some(first) = rows.first() else {
        report_fail(&html, TOP_STACKS_HEADING, "the top-stacks table has no row");
    };
    let leaf_first = first
        .find("cache_put")
        .zip(first.find("handle_request"))
        .is_some_and(|(put, request)| put < request);
    if !leaf_first || first.contains("churn") {
        report_fail(
            &html,
            TOP_STACKS_HEADING,
            format_args!(
                "expected the first row of the top stacks before the kill to show \
                 cache_put ← handle_request (leaf first) and no churn, it reads {first:?}"
            ),
        );
    }
    let svgs = svg_images(&html).unwrap_or_else(|e| report_fail(&html, "image/svg+xml", e));
    if !svgs
        .iter()
        .any(|svg| svg.contains("<svg") && svg.contains("cache_put"))
    {
        report_fail(
            &html,
            "image/svg+xml",
            format_args!(
                "expected a flame graph (an <img> of a base64 SVG) naming cache_put; saw {} SVG \
                 images",
                svgs.len()
            ),
        );
    }
    let text = text_of(&html);
    let grew = format!("pid {pid} ({}) grew ", program.comm());
    if !text.contains(&grew) {
        report_fail(
            &html,
            "class=\"kill\"",
            format_args!("expected the kill to say {grew:?}… (how much the process grew)"),
        );
    }

    eprintln!(
        "C leak at {LEAK_MIB_PER_S} MiB/s in {} MiB: OOM-killed {:?} after the start; {} \
         charge_stacks lines, {} samples; top stack {:.1} % of the bytes sampled \
         ({}); churn {:.2} % of them; median user frames per sample {median}; {} lines in the {BEFORE_KILL_S} s before the kill, \
         the last at {:+.2} s from the kill's ts (window {} s, {} samples); the last line \
         before the kill {:.2} s before it; report's first top-stack row {first:?}",
        LIMIT / MIB,
        killed_at.saturating_duration_since(started),
        stack_lines.len(),
        stack_lines
            .iter()
            .map(|l| u64_at(l, "samples"))
            .sum::<u64>(),
        share * 100.0,
        stacks[0].leaf_first(),
        churned * 100.0,
        last.len(),
        ts(last_line) - kill_ts,
        last_line["window_s"],
        last_line["samples"],
        last_before_kill,
    );
}

/// The Rust server, built with frame pointers and without, leaks 8 MiB/s for 15 s in each of
/// two roomy memcgs under one watch. With frame pointers the stack that charged most is
/// `leak::cache_put ← leak::handle_request ← leak::main`; without them, the report's section
/// of that container (and only that one) says its stacks are short and why.
#[test]
fn rust_stacks_are_whole_with_frame_pointers_and_said_to_be_short_without() {
    let _test = start_test!();
    const LIMIT: u64 = 256 * MIB;
    const LEAK_FOR: Duration = Duration::from_secs(15);
    let with = LeakProgram::build(Build::RustFramePointers);
    let without = LeakProgram::build(Build::RustNoFramePointers);
    let cgroup_with = TestCgroup::new("stacks-rs-fp", LIMIT);
    let cgroup_without = TestCgroup::new("stacks-rs-nofp", LIMIT);
    let (path_with, path_without) = (cgroup_with.path_str(), cgroup_without.path_str());
    let scratch = TempDir::new("stacks-rs");
    let recording = scratch.path().join("leak.rec");
    let profiler = watch_stacks(&[path_with, path_without], &recording);

    let mut leak_with = with.spawn(&cgroup_with, LEAK_MIB_PER_S);
    let mut leak_without = without.spawn(&cgroup_without, LEAK_MIB_PER_S);
    leak_with.wait_line("started", PATIENCE);
    leak_without.wait_line("started", PATIENCE);
    thread::sleep(LEAK_FOR);
    for leak in [&leak_with, &leak_without] {
        if leak.has_exited() {
            leak.fail(format_args!(
                "expected it to leak for {LEAK_FOR:?} and still run"
            ));
        }
        leak.kill();
        leak.wait_exit(PATIENCE);
    }
    thread::sleep(LAST_ROUND);
    let lines = stop(&profiler);

    let lines_with = charge_stacks_of(&lines, path_with);
    let lines_without = charge_stacks_of(&lines, path_without);
    let (stacks, share) =
        expect_leak_on_top(&profiler, &lines_with, "the Rust leak with frame pointers");
    if lines_without.is_empty() {
        profiler.fail("expected charge_stacks lines for the Rust leak without frame pointers");
    }
    let median_with = median_user_frames(&lines_with).unwrap_or_default();
    let median_without = median_user_frames(&lines_without).unwrap_or_default();
    let stacks_without = user_stacks(&lines_without);
    eprintln!(
        "Rust leak at {LEAK_MIB_PER_S} MiB/s for {LEAK_FOR:?}: median user frames per sample {median_with} \
         with frame pointers, {median_without} without; with them the top stack is {:.1} % of \
         the bytes sampled ({}); without them the top stacks are:\n{}",
        share * 100.0,
        stacks[0].leaf_first(),
        describe_stacks(&stacks_without, 4),
    );

    let out = scratch.path().join("report");
    let html = render_report(&recording, &out);
    let section = |path: &str| {
        container_section(&html, path).unwrap_or_else(|| {
            report_fail(
                &html,
                "<section class=\"container\">",
                format_args!("expected a container section with cgroup {path}"),
            )
        })
    };
    let text_without = text_of(section(path_without));
    if !(text_without.contains("stacks are short") && text_without.contains("frame pointers")) {
        report_fail(
            &html,
            path_without,
            format_args!(
                "expected the section of the container without frame pointers ({path_without}) \
                 to say its stacks are short (\"stacks are short\", \"frame pointers\"); it reads \
                 {text_without:?}"
            ),
        );
    }
    let text_with = text_of(section(path_with));
    if text_with.contains("stacks are short") {
        report_fail(
            &html,
            path_with,
            format_args!(
                "the section of the container with frame pointers ({path_with}) says its stacks \
                 are short, but its median is {median_with} frames"
            ),
        );
    }
}

/// Two processes in one container: one holds 48 MiB it touched before the watch, the other
/// leaks 8 MiB/s until the kernel OOM-kills it (288 MiB limit: about 30 s, past the
/// forecaster's learning, so the risk rises before the kill). A `processes` line names the
/// leaker as the top grower (at least 20 MiB in at most 60 s) and the holder as not growing;
/// when the risk rises, a `risk_rose` line comes in the same round; without `--stacks` there
/// are no `charge_stacks` lines; the report's kill names the leaker as the process that grew.
#[test]
fn the_process_that_grows_is_named_among_the_processes_of_its_container() {
    let _test = start_test!();
    const LIMIT: u64 = 288 * MIB;
    const HELD: u64 = 48 * MIB;
    const GROWN: i64 = 20 * MIB as i64;
    const STILL: i64 = 4 * MIB as i64;
    let cgroup = TestCgroup::new("processes", LIMIT);
    let path = cgroup.path_str();
    // Touched before the watch: the profiler sees it full, not growing.
    let mut holder = cgroup.spawn(&["--comm", "holder", "hold", "--mib", "48"]);
    holder.wait_line("ready", PATIENCE);
    let holder_pid = u64::from(holder.pid());
    let scratch = TempDir::new("processes");
    let recording = scratch.path().join("two.rec");
    let recording_str = recording.display().to_string();
    let mut profiler = Profiler::watch(&[
        "--cgroup",
        path,
        "--interval",
        INTERVAL,
        "--record",
        &recording_str,
    ]);
    profiler.wait_watching(&[path]);

    let started = Instant::now();
    let leaker = cgroup.spawn(&[
        "--comm",
        "leaker",
        "leak",
        "--step-mib",
        "2",
        "--interval-ms",
        "250",
    ]);
    let leaker_pid = u64::from(leaker.pid());
    let (seen_at, line) = profiler.wait_for(
        &format!("a processes line whose top grower is the leaker (pid {leaker_pid}), ≥ 20 MiB"),
        KILL_PATIENCE,
        |l| {
            is_line(l, "processes", path)
                && l["processes"][0]["pid"] == leaker_pid
                && l["processes"][0]["growth_bytes"].as_i64() >= Some(GROWN)
        },
    );
    let grower = process_entry(&profiler, &line, leaker_pid);
    let window = grower["growth_window_s"].as_f64().unwrap_or(f64::NAN);
    profiler.expect(
        &line,
        grower["comm"] == "leaker" && window > 0.0 && window <= 60.5,
        "the leaker named \"leaker\", its growth measured over at most 60 s",
    );
    let held = process_entry(&profiler, &line, holder_pid);
    profiler.expect(
        &line,
        held["comm"] == "holder"
            && held["growth_bytes"].as_i64().is_some_and(|g| g < STILL)
            && held["rss_anon_bytes"].as_u64() >= Some(HELD - 4 * MIB),
        "the holder named \"holder\", its 48 MiB in rss_anon_bytes, grown less than 4 MiB",
    );

    let (_, kill) = profiler.wait_for(
        &format!("the oom_kill line of the leaker (pid {leaker_pid})"),
        KILL_PATIENCE,
        |l| is_line(l, "oom_kill", path) && l["pid"] == leaker_pid,
    );
    let killed_at = leaker.expect_oom_killed(PATIENCE);
    thread::sleep(LAST_ROUND);
    let lines = stop(&profiler);

    let processes: Vec<&Value> = lines
        .iter()
        .map(|(_, l)| l)
        .filter(|l| is_line(l, "processes", path))
        .collect();
    for each in &processes {
        let all = each["processes"].as_array().cloned().unwrap_or_default();
        let keys: Vec<(i64, u64)> = all.iter().map(growth_then_rss).collect();
        profiler.expect(
            each,
            keys.windows(2).all(|pair| pair[0] >= pair[1]),
            "processes in order of growth, then RSS, largest first",
        );
        if let Some(held) = all.iter().find(|p| p["pid"] == holder_pid) {
            profiler.expect(
                each,
                held["growth_bytes"].as_i64().is_some_and(|g| g < STILL),
                "the holder grown less than 4 MiB",
            );
        }
    }
    // At once when the risk rises: a risk_rose line in the round of the rise, naming the
    // leaker first.
    for (at, risk) in risk_rises(&lines, path) {
        let told = processes.iter().find(|l| {
            l["trigger"] == "risk_rose"
                && (ts(l) - at).abs() < ROUND_S
                && l["processes"][0]["pid"] == leaker_pid
        });
        if told.is_none() {
            profiler.fail(format_args!(
                "the risk rose to {risk} at ts {at}: expected a processes line of trigger \
                 risk_rose in that round naming the leaker first, saw none"
            ));
        }
    }
    if let Some((_, stacks)) = lines.iter().find(|(_, l)| l["type"] == "charge_stacks") {
        profiler.fail(format_args!(
            "a charge_stacks line without --stacks: {stacks}"
        ));
    }

    let out = scratch.path().join("report");
    let html = render_report(&recording, &out);
    let text = text_of(&html);
    let grew = format!("pid {leaker_pid} (leaker) grew ");
    if !text.contains(&grew) {
        report_fail(
            &html,
            "class=\"kill\"",
            format_args!("expected the kill to say {grew:?}… (how much the leaker grew)"),
        );
    }
    let sentence_at = text.find(&grew).unwrap_or_default();
    let leaker_started = started_ts(&lines, started);
    let told: Vec<String> = processes
        .iter()
        .map(|l| {
            let leaker = l["processes"]
                .as_array()
                .and_then(|all| all.iter().find(|p| p["pid"] == leaker_pid));
            format!(
                "{} at {:+.1} s: leaker {}",
                str_at(l, "trigger"),
                ts(l) - leaker_started,
                leaker.map_or_else(
                    || "absent".to_owned(),
                    |p| format!(
                        "{} MiB in {:.1} s",
                        p["growth_bytes"].as_i64().unwrap_or_default() / MIB as i64,
                        p["growth_window_s"].as_f64().unwrap_or_default()
                    )
                )
            )
        })
        .collect();
    let rises: Vec<String> = risk_rises(&lines, path)
        .iter()
        .map(|(at, risk)| format!("{risk} at {:+.1} s", at - leaker_started))
        .collect();
    if rises.is_empty() {
        eprintln!(
            "note: the container's risk never rose before the kill, so no processes line \
             of trigger risk_rose was expected"
        );
    }
    eprintln!(
        "two processes in {} MiB: a processes line ({}) {:?} after the leaker started names it \
         the top grower, {} MiB in {window:.1} s, the holder {} bytes; {} processes lines; the \
         leaker OOM-killed {:?} after its start (oom_kill ts {}); the report says {:?}; \
         processes lines (times from the leaker's start): {told:?}; risk rose: {rises:?}",
        LIMIT / MIB,
        line["trigger"],
        seen_at.saturating_duration_since(started),
        grower["growth_bytes"].as_i64().unwrap_or_default() / MIB as i64,
        held["growth_bytes"],
        processes.len(),
        killed_at.saturating_duration_since(started),
        kill["ts"],
        excerpt(&text, sentence_at, 80),
    );
}
