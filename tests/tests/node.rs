//! The node's line: its memory as `/proc/meminfo` says, the eviction threshold as the kubelet
//! takes it, and the next victims of its OOM killer ranked by the kernel's own `oom_score` — a
//! process this test makes the likeliest victim (`oom_score_adj` 1000) is named with its cgroup
//! and figures.

use profiler_e2e::{run_profiler, start_test, u64_at, Profiler, TestCgroup, MIB, PATIENCE};
use serde_json::Value;

/// A field of `/proc/meminfo`, bytes.
fn meminfo(field: &str) -> u64 {
    let text = std::fs::read_to_string("/proc/meminfo").expect("read /proc/meminfo");
    let line = text
        .lines()
        .find(|l| l.starts_with(field))
        .unwrap_or_else(|| panic!("no {field} in /proc/meminfo"));
    let kib: u64 = line[field.len()..]
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    kib * 1024
}

/// A `/proc/PID/` file of a process this test started, as a number.
fn proc_number(pid: u32, file: &str) -> i64 {
    let path = format!("/proc/{pid}/{file}");
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn node_lines_name_the_likeliest_victim() {
    let _test = start_test!();
    let cgroup = TestCgroup::new("node-victim", 256 * MIB);
    let path = cgroup.path_str();
    let mut victim = cgroup.spawn(&["hold", "--mib", "48"]);
    victim.wait_line("ready", PATIENCE);
    let pid = victim.pid();
    std::fs::write(format!("/proc/{pid}/oom_score_adj"), "1000").expect("set oom_score_adj");
    let score = proc_number(pid, "oom_score");

    let mut profiler = Profiler::watch(&[
        "--cgroup",
        path,
        "--interval",
        "250ms",
        "--eviction-threshold",
        "5%",
    ]);
    profiler.wait_watching(&[path]);
    // Every round has one; the first ranks the next victims.
    let mut nodes = Vec::new();
    for _ in 0..3 {
        let (_, line) = profiler.wait_for("a node line", PATIENCE, |l| l["type"] == "node");
        nodes.push(line);
    }
    let total = meminfo("MemTotal:");
    for node in &nodes {
        let check = |ok: bool, what: &str| {
            if !ok {
                profiler.fail(format_args!("node line {node}: expected {what}"));
            }
        };
        check(node["cgroup"].is_null(), "no cgroup (a node-wide line)");
        check(
            u64_at(node, "mem_total_bytes") == total,
            "MemTotal of /proc/meminfo",
        );
        let available = u64_at(node, "mem_available_bytes");
        check(
            available > 0 && available <= total,
            "0 < available <= total",
        );
        check(
            u64_at(node, "eviction_threshold_bytes") == total * 5 / 100,
            "5 % of MemTotal as the threshold",
        );
    }
    let ranked = nodes
        .iter()
        .find(|n| {
            n["next_victims"]
                .as_array()
                .is_some_and(|v| v.iter().any(|v| v["pid"] == pid))
        })
        .unwrap_or_else(|| {
            profiler.fail(format_args!(
                "no node line names pid {pid} (oom_score {score}, oom_score_adj 1000) among \
                 the next victims"
            ))
        });
    let victims = ranked["next_victims"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let place = victims
        .iter()
        .position(|v| v["pid"] == pid)
        .unwrap_or_else(|| profiler.fail("the victim vanished"));
    let entry = &victims[place];
    let fail =
        |what: &str| -> ! { profiler.fail(format_args!("next victim {entry}: expected {what}")) };
    if entry["oom_score_adj"] != 1000 || entry["victim_cgroup"] != path {
        fail("oom_score_adj 1000 and the test's cgroup");
    }
    if u64_at(entry, "rss_bytes") < 48 * MIB {
        fail("the 48 MiB it holds in its RSS");
    }
    let seen = entry["oom_score"].as_i64().unwrap_or(-1);
    if (seen - score).abs() > 20 {
        fail(&format!(
            "an oom_score near /proc/{pid}/oom_score ({score})"
        ));
    }
    // Highest score first: everything ahead of it scores at least as high.
    let ahead: Vec<&Value> = victims[..place]
        .iter()
        .filter(|v| v["oom_score"].as_i64().unwrap_or(0) < seen)
        .collect();
    if !ahead.is_empty() {
        fail(&format!("no lower score ranked ahead of it: {ahead:?}"));
    }
    profiler.interrupt();
    profiler.wait(PATIENCE);
}

/// The live view's header line says the node's state.
#[test]
fn the_live_view_has_a_node_line() {
    let _test = start_test!();
    let cgroup = TestCgroup::new("node-live", 64 * MIB);
    let finished = run_profiler(
        &[
            "watch",
            "--cgroup",
            cgroup.path_str(),
            "--interval",
            "250ms",
            "--duration",
            "1s",
        ],
        PATIENCE,
    );
    if !finished.status.success() || !finished.stdout.contains("NODE: ") {
        finished.fail("expected a NODE: line in the live view");
    }
    if !finished
        .stdout
        .contains("available (eviction below 100.0MiB)")
    {
        finished.fail("expected the default threshold, 100Mi, in the NODE: line");
    }
}

/// A threshold the kubelet would not take is refused, with the forms it does.
#[test]
fn a_bad_eviction_threshold_is_refused() {
    let _test = start_test!();
    for bad in ["lots", "150%", "100Zi"] {
        run_profiler(
            &[
                "watch",
                "--cgroup",
                "/sys/fs/cgroup",
                "--eviction-threshold",
                bad,
            ],
            PATIENCE,
        )
        .expect_error(&["--eviction-threshold", "100Mi"]);
    }
}
