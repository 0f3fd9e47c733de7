//! `profiler serve` samples the charge stacks of a container only while it is at risk (`--stacks
//! at-risk`, the default, which the test relies on: its warning level is `warning` or
//! `critical`), and writes them to its rolling recording, beside the `processes` lines of every
//! container.
//!
//! A fake kubelet node ([`KubeNode`]: real memory cgroups in the kubelet's layout) runs one pod
//! with two containers: `leaky`, which leaks 4 MiB/s into a 160 MiB limit until the kernel
//! OOM-kills it (about 40 s), and `calm`, which holds 8 MiB under the same limit. With `--warn
//! 60s --critical 10s` the leak's forecast reaches `warning` well before its kill, `calm` never
//! does.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use profiler_e2e::{
    sample_value, start_test, Agent, Container, KubeNode, Qos, TempDir, MIB, PATIENCE,
};
use serde_json::Value;

/// The leak: 1 MiB every 250 ms, 4 MiB/s.
const LEAK: [&str; 5] = ["leak", "--step-mib", "1", "--interval-ms", "250"];
/// The calm container: 8 MiB held.
const HOLD: [&str; 3] = ["hold", "--mib", "8"];
/// Both containers' limit: the leak reaches it about 40 s after it starts.
const LIMIT: u64 = 160 * MIB;
/// How much earlier than the first warning a `charge_stacks` line may be stamped: the round in
/// flight when the level rose (the agent samples every second).
const IN_FLIGHT_S: f64 = 1.5;
/// How soon after the first warning the first `charge_stacks` line must come (it should come
/// one round, 1 s, later).
const FIRST_STACKS_WITHIN_S: f64 = 10.0;
/// Kernel frames of an anonymous page fault, one of which a leak's charge stack has.
const FAULT_FRAMES: [&str; 2] = ["handle_mm_fault", "do_anonymous_page"];

/// The labels of container `name` of pod `shop/app`.
fn labels(container: &Container) -> Vec<(&str, &str)> {
    vec![
        ("namespace", "shop"),
        ("pod", "app"),
        ("container", container.name()),
    ]
}

/// Waits until `/metrics` has a usage gauge for `container`.
#[track_caller]
fn wait_for_usage(agent: &Agent, container: &Container) {
    agent.wait_metrics(
        &format!("the usage of shop/app/{}", container.name()),
        PATIENCE,
        |m| {
            let mut labels = labels(container);
            labels.push(("container_id", container.id()));
            sample_value(m, "profiler_container_memory_usage_bytes", &labels)
        },
    );
}

/// Every line of every recording segment in `dir` (by segment name, then line), parsed; the
/// `recording` header lines included.
#[track_caller]
fn recorded_lines(agent: &Agent, dir: &Path) -> Vec<Value> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.starts_with("segment-") && name.ends_with(".rec"))
        .collect();
    names.sort();
    if names.is_empty() {
        agent
            .profiler
            .fail(format_args!("no recording segment in {}", dir.display()));
    }
    let mut lines = Vec::new();
    for name in &names {
        let text = fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        for (n, line) in text.lines().enumerate() {
            let value: Value = serde_json::from_str(line).unwrap_or_else(|e| {
                agent
                    .profiler
                    .fail(format_args!("{name} line {}: {e}: {line:?}", n + 1))
            });
            lines.push(value);
        }
    }
    eprintln!(
        "the recording: {} lines in {} segments {names:?}",
        lines.len(),
        names.len()
    );
    lines
}

/// A line's `ts`.
#[track_caller]
fn ts(line: &Value) -> f64 {
    line["ts"]
        .as_f64()
        .unwrap_or_else(|| panic!("a line without a numeric ts: {line}"))
}

/// Whether `line` is of `kind` and about `container` (by cgroup path; the `container` field
/// must then name it too).
fn of(line: &Value, kind: &str, container: &Container) -> bool {
    line["type"] == kind
        && (line["cgroup"] == container.cgroup_str() || line["container"] == container.name())
}

/// The lines of `kind` about `container`.
fn lines_of<'a>(lines: &'a [Value], kind: &str, container: &Container) -> Vec<&'a Value> {
    lines.iter().filter(|l| of(l, kind, container)).collect()
}

/// `lines` one per row, for failure messages (at most `most`, the last ones).
fn show(lines: &[&Value], most: usize) -> String {
    let skipped = lines.len().saturating_sub(most);
    let mut text = String::new();
    if skipped > 0 {
        text.push_str(&format!("    ... {skipped} earlier lines left out ...\n"));
    }
    for line in &lines[skipped..] {
        text.push_str(&format!("    {line}\n"));
    }
    text
}

/// The frames of one side (`user` or `kernel`) of a stack entry.
fn frames<'a>(stack: &'a Value, side: &str) -> Vec<&'a str> {
    stack[side]
        .as_array()
        .map(|frames| frames.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// Whether a stack entry has a named user frame (one not starting with `[`: not `[unknown]`,
/// `[unknown] (MODULE)` or `[jit]`) and one of [`FAULT_FRAMES`] among its kernel frames.
fn is_named_fault(stack: &Value) -> bool {
    frames(stack, "user").iter().any(|f| !f.starts_with('['))
        && frames(stack, "kernel")
            .iter()
            .any(|f| FAULT_FRAMES.iter().any(|fault| f.contains(fault)))
}

/// A stack entry in one row: pid, comm, samples, bytes, user frames (root first), kernel leaf.
fn describe_stack(stack: &Value) -> String {
    let kernel = frames(stack, "kernel");
    format!(
        "pid {} {} samples {} bytes {}: user {:?}; kernel {:?}",
        stack["pid"],
        stack["comm"],
        stack["samples"],
        stack["bytes"],
        frames(stack, "user"),
        kernel
    )
}

/// (c) `serve` samples the charge stacks of a leaking container from its first warning (and
/// not before), records them with named user frames and the page fault's kernel frames, never
/// samples a calm container, and records both containers' processes, the leak's growing.
#[test]
fn serve_samples_stacks_of_containers_at_risk_only() {
    let _test = start_test!();
    let started = Instant::now();
    let node = KubeNode::new("agent-stacks");
    let pod = node.add_pod("shop", "app", Qos::Burstable);
    let calm = node.start_container(&pod, "calm", Some(LIMIT), &HOLD);
    // The leak starts once the agent watches its (empty) cgroup, so that it sees it all.
    let mut leaky = node.create_container(&pod, "leaky", Some(LIMIT));
    let dir = TempDir::new("agent-stacks-recording");

    let flags = node.flags();
    let mut args: Vec<&str> = flags.iter().map(String::as_str).collect();
    args.extend(["--interval", "1s", "--warn", "60s", "--critical", "10s"]);
    let agent = Agent::start_in(dir.path(), &args);
    wait_for_usage(&agent, &calm);
    wait_for_usage(&agent, &leaky);
    eprintln!(
        "the agent watches both containers {:?} after the start",
        started.elapsed()
    );

    node.spawn(&mut leaky, &LEAK);
    let leak_pid = leaky.workload().pid();
    let leak_started = Instant::now();
    let (status, killed) = leaky.workload().wait_exit(Duration::from_secs(90));
    if status.signal() != Some(libc::SIGKILL) {
        leaky.workload().fail(format_args!(
            "expected the kernel to OOM-kill the leak (SIGKILL), it ended with {status}"
        ));
    }
    eprintln!(
        "the leak (pid {leak_pid}) was killed {:?} after it started",
        killed.saturating_duration_since(leak_started)
    );
    agent.wait_metrics("the leak's OOM kill", PATIENCE, |m| {
        let kills = sample_value(m, "profiler_container_oom_kills_total", &labels(&leaky))?;
        (kills >= 1.0).then_some(())
    });
    // The round of the kill and the next one on disk.
    thread::sleep(Duration::from_secs(2));
    agent.profiler.terminate();
    let (status, _) = agent.profiler.wait(Duration::from_secs(10));
    if !status.success() {
        agent
            .profiler
            .fail(format_args!("expected exit 0 after SIGTERM, got {status}"));
    }
    let lines = recorded_lines(&agent, dir.path());

    // The first rise of the leak's level, and its kill.
    let warnings = lines_of(&lines, "warning", &leaky);
    let Some(first_warning) = warnings
        .iter()
        .find(|l| l["level"] == "warning" || l["level"] == "critical")
    else {
        agent.profiler.fail(format_args!(
            "no warning (level warning or critical) for the leak in the recording; its warning \
             lines:\n{}",
            show(&warnings, 20)
        ));
    };
    let warned_at = ts(first_warning);
    let kills = lines_of(&lines, "oom_kill", &leaky);
    let Some(kill) = kills.first() else {
        agent.profiler.fail(format_args!(
            "no oom_kill line for the leak in the recording; its warnings:\n{}",
            show(&warnings, 20)
        ));
    };
    let killed_at = ts(kill);
    eprintln!(
        "the leak's warnings: {}",
        warnings
            .iter()
            .map(|w| format!("{} at {:.1}", w["level"], ts(w)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    eprintln!(
        "the first warning came {:.1} s before the kill",
        killed_at - warned_at
    );

    // 1. The leak's stacks: sampled, named, a page fault's.
    let stacks = lines_of(&lines, "charge_stacks", &leaky);
    if stacks.is_empty() {
        agent.profiler.fail(format_args!(
            "no charge_stacks line for the leak (cgroup {}), warned at {warned_at:.1}, killed \
             at {killed_at:.1}; the lines of the recording of types {:?}",
            leaky.cgroup_str(),
            lines.iter().filter_map(|l| l["type"].as_str()).fold(
                BTreeMap::<&str, usize>::new(),
                |mut counts, t| {
                    *counts.entry(t).or_default() += 1;
                    counts
                }
            )
        ));
    }
    for line in &stacks {
        if line["container"] != "leaky" || line["pod"] != "app" || line["namespace"] != "shop" {
            agent.profiler.fail(format_args!(
                "a charge_stacks line of the leak's cgroup without its identity \
                 (shop/app/leaky): {line}"
            ));
        }
    }
    let samples: u64 = stacks.iter().filter_map(|l| l["samples"].as_u64()).sum();
    if samples == 0 {
        agent.profiler.fail(format_args!(
            "the leak's charge_stacks lines have no samples:\n{}",
            show(&stacks, 20)
        ));
    }
    let entries: Vec<&Value> = stacks
        .iter()
        .flat_map(|l| l["stacks"].as_array().into_iter().flatten())
        .collect();
    let named: Vec<&Value> = entries
        .iter()
        .copied()
        .filter(|s| is_named_fault(s))
        .collect();
    let entry_bytes = |s: &&Value| s["bytes"].as_u64().unwrap_or_default();
    let named_bytes: u64 = named.iter().map(entry_bytes).sum();
    let all_bytes: u64 = entries.iter().map(entry_bytes).sum();
    let mut distinct: BTreeMap<String, u64> = BTreeMap::new();
    for entry in &entries {
        let key = format!(
            "user {:?}; kernel {:?}",
            frames(entry, "user"),
            frames(entry, "kernel")
        );
        *distinct.entry(key).or_default() += entry_bytes(entry);
    }
    let mut distinct: Vec<(String, u64)> = distinct.into_iter().collect();
    distinct.sort_by_key(|d| std::cmp::Reverse(d.1));
    eprintln!(
        "the leak's stacks: {} distinct, {named_bytes} of {all_bytes} bytes in stacks with a \
         named user frame and a page fault; the top ones:",
        distinct.len()
    );
    for (stack, bytes) in distinct.iter().take(3) {
        eprintln!("    {bytes} bytes: {stack}");
    }
    if named.is_empty() {
        agent.profiler.fail(format_args!(
            "no stack of the leak has a named user frame and one of {FAULT_FRAMES:?} among its \
             kernel frames; its stacks:\n{}",
            entries
                .iter()
                .take(20)
                .map(|s| format!("    {}\n", describe_stack(s)))
                .collect::<String>()
        ));
    }
    if !named.iter().any(|s| s["pid"] == leak_pid) {
        agent.profiler.fail(format_args!(
            "no named stack of the leak is of its pid {leak_pid}:\n{}",
            named
                .iter()
                .take(20)
                .map(|s| format!("    {}\n", describe_stack(s)))
                .collect::<String>()
        ));
    }

    // 2. Not sampled before the warning.
    let early: Vec<&Value> = stacks
        .iter()
        .copied()
        .filter(|l| ts(l) < warned_at - IN_FLIGHT_S)
        .collect();
    if !early.is_empty() {
        agent.profiler.fail(format_args!(
            "charge_stacks lines of the leak before its first warning at {warned_at:.1} (the \
             at-risk policy samples only from then on):\n{}the leak's warnings:\n{}",
            show(&early, 10),
            show(&warnings, 10)
        ));
    }
    let first_stacks = ts(stacks[0]);
    if first_stacks - warned_at > FIRST_STACKS_WITHIN_S {
        agent.profiler.fail(format_args!(
            "the leak's first charge_stacks line came {:.1} s after its first warning; a leak \
             of 4 MiB/s sampled every 512 KiB should have samples in the next round:\n{}",
            first_stacks - warned_at,
            show(&stacks, 5)
        ));
    }
    let before_kill: Vec<&Value> = stacks
        .iter()
        .copied()
        .filter(|l| ts(l) - l["window_s"].as_f64().unwrap_or_default() <= killed_at)
        .collect();
    let samples_before: u64 = before_kill
        .iter()
        .filter_map(|l| l["samples"].as_u64())
        .sum();
    let bytes_before: u64 = before_kill.iter().filter_map(|l| l["bytes"].as_u64()).sum();
    eprintln!(
        "the first charge_stacks line came {:.1} s after the first warning; before the kill \
         ({:.1} s after the warning): {} lines, {samples_before} samples standing for \
         {bytes_before} bytes ({:.1} MiB); in all {} lines, {samples} samples",
        first_stacks - warned_at,
        killed_at - warned_at,
        before_kill.len(),
        bytes_before as f64 / MIB as f64,
        stacks.len()
    );

    // 3. Never the calm container's.
    let calm_stacks = lines_of(&lines, "charge_stacks", &calm);
    if !calm_stacks.is_empty() {
        agent.profiler.fail(format_args!(
            "charge_stacks lines for the calm container, which was never at risk (its \
             warnings: {:?}):\n{}",
            lines_of(&lines, "warning", &calm),
            show(&calm_stacks, 10)
        ));
    }

    // 4. Both containers' processes; the leak's growing before its kill.
    let calm_processes = lines_of(&lines, "processes", &calm);
    if calm_processes.is_empty() {
        agent
            .profiler
            .fail("no processes line for the calm container in the recording");
    }
    let processes = lines_of(&lines, "processes", &leaky);
    let Some(last) = processes.iter().rev().find(|l| ts(l) <= killed_at) else {
        agent.profiler.fail(format_args!(
            "no processes line for the leak before its kill at {killed_at:.1}; all of them:\n{}",
            show(&processes, 10)
        ));
    };
    let leak_process = last["processes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["pid"] == leak_pid);
    let growth = leak_process.and_then(|p| p["growth_bytes"].as_i64());
    if growth.is_none_or(|g| g <= 0) {
        agent.profiler.fail(format_args!(
            "the leak's last processes line before its kill at {killed_at:.1} should name its \
             pid {leak_pid} with growth_bytes > 0:\n    {last}"
        ));
    }
    eprintln!(
        "processes lines: {} of the leak ({} risk_rose), {} of the calm container; the last \
         before the kill, {:.1} s before it: pid {leak_pid} grew {} bytes in {} s",
        processes.len(),
        processes
            .iter()
            .filter(|l| l["trigger"] == "risk_rose")
            .count(),
        calm_processes.len(),
        killed_at - ts(last),
        growth.unwrap_or_default(),
        leak_process.map_or(Value::Null, |p| p["growth_window_s"].clone())
    );
    eprintln!("the test took {:?}", started.elapsed());
}
