//! Real containers: runc runs an OCI bundle in a kubelet-like pod cgroup, the kernel OOM-kills
//! it, and the profiler names the pod and container.

use std::panic::{self, AssertUnwindSafe};
use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

use profiler_e2e::{
    start_test, u64_at, KubeNode, Profiler, Qos, RuncContainer, Workload, MIB, PATIENCE,
};
use serde_json::Value;

const LEAK_4_MIB: [&str; 5] = ["leak", "--step-mib", "4", "--interval-ms", "20"];

/// The exit status of a container whose process died of SIGKILL: runc exits with 128 + 9.
const KILLED: i32 = 137;

/// Waits for `runc run` to end and checks it ended as an OOM-killed container does.
#[track_caller]
fn expect_status_137(run: &Workload) {
    let (status, _) = run.wait_exit(PATIENCE);
    if status.code() != Some(KILLED) {
        run.fail(format_args!(
            "expected runc run to exit with status {KILLED} (the container's process got \
             SIGKILL from the OOM killer), it ended with {status}"
        ));
    }
}

/// Waits for `runc events` to report an `oom` event for the container. On this kernel (6.18,
/// cgroup v1) runc 1.1 learns of it through `memory.oom_control` and prints
/// `{"type":"oom","id":"<id>"}` (checked by hand); `runc events` then ends by itself once the
/// container is gone.
#[track_caller]
fn expect_oom_event(events: &mut Workload, id: &str) {
    let (_, line) = events.wait_for_line("an oom event", PATIENCE, |line| {
        serde_json::from_str::<Value>(line).is_ok_and(|event| event["type"] == "oom")
    });
    let event: Value = serde_json::from_str(&line).unwrap_or_default();
    if event["id"] != id {
        events.fail(format_args!(
            "expected the oom event to name container {id}, saw {line}"
        ));
    }
}

/// The container's cgroup directory in every hierarchy runc put it in, while it runs: the
/// memory one is in the node; runc makes the others below the test's own cgroups.
fn cgroup_dirs_of(container: &RuncContainer) -> Vec<PathBuf> {
    let id = container.id();
    let relative = profiler_e2e::relative_to_own_memcg(container.container());
    std::fs::read_dir("/sys/fs/cgroup")
        .expect("listing /sys/fs/cgroup")
        .flatten()
        .filter_map(|hierarchy| {
            let own = own_cgroup_in(&hierarchy.file_name().to_string_lossy())?;
            let dir = hierarchy
                .path()
                .join(own.trim_start_matches('/'))
                .join(&relative);
            dir.ends_with(id).then_some(dir)
        })
        .filter(|dir| dir.is_dir())
        .collect()
}

/// The test's own cgroup in the hierarchy mounted at `/sys/fs/cgroup/<name>` (`unified`: v2).
fn own_cgroup_in(name: &str) -> Option<String> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    text.lines().find_map(|line| {
        let mut fields = line.splitn(3, ':');
        let id = fields.next()?;
        let controllers = fields.next()?;
        let path = fields.next()?;
        let matches = if name == "unified" {
            id == "0"
        } else if name == "systemd" {
            controllers == "name=systemd"
        } else {
            controllers.split(',').any(|c| c == name)
        };
        matches.then(|| path.to_owned())
    })
}

/// Checks that nothing is left of the container's cgroups: for each hierarchy, the node
/// directory that held it (`<node>/kubepods/burstable/pod<uid>/<id>`) is gone.
#[track_caller]
fn expect_no_cgroups_left(dirs: &[PathBuf]) {
    for dir in dirs {
        let node_dir = dir
            .ancestors()
            .nth(4)
            .expect("<node>/kubepods/burstable/pod<uid>/<id>");
        assert!(
            !node_dir.exists(),
            "expected {} to be removed with the container and the node",
            node_dir.display()
        );
    }
}

/// The runc bundle really runs: the container's process is in the kubelet-path memory cgroup
/// with the limit from config.json, gets OOM-killed, runc exits 137 and `runc events` reports
/// the OOM; afterwards no cgroup directory is left in any hierarchy.
#[test]
fn a_runc_container_is_oom_killed_with_status_137_and_cleaned_up() {
    let _test = start_test!();
    let node = KubeNode::new("runc-self");
    let pod = node.add_pod("shop", "cart", Qos::Burstable);
    let container = RuncContainer::new(&node, &pod, "app", 48 * MIB, &LEAK_4_MIB);
    let mut run = container.run();
    let pid = container.wait_running(&run);

    let cgroup = container.container().cgroup().to_owned();
    let read = |file: &str| {
        std::fs::read_to_string(cgroup.join(file))
            .unwrap_or_else(|e| run.fail(format_args!("reading {file} of the container: {e}")))
    };
    if read("memory.limit_in_bytes").trim() != (48 * MIB).to_string() {
        run.fail("expected runc to set memory.limit_in_bytes to 48 MiB in the kubelet path");
    }
    if !read("cgroup.procs")
        .split_whitespace()
        .any(|p| p == pid.to_string())
    {
        run.fail(format_args!(
            "expected the container's pid {pid} in {}/cgroup.procs",
            cgroup.display()
        ));
    }
    let dirs = cgroup_dirs_of(&container);
    assert!(
        dirs.contains(&cgroup) && dirs.len() > 1,
        "expected runc to make the container's cgroup in the memory hierarchy and others, saw {dirs:?}"
    );

    let mut events = container.events();
    container.release();
    run.wait_line("allocated ", PATIENCE);
    expect_status_137(&run);
    expect_oom_event(&mut events, container.id());

    drop(container);
    drop(node);
    expect_no_cgroups_left(&dirs);
}

/// A test that fails while its container runs leaves nothing behind: the container's process
/// is killed (runc delete --force) and every cgroup directory is removed.
#[test]
fn a_runc_container_is_removed_when_the_test_panics() {
    let _test = start_test!();
    let mut seen: Option<(Vec<PathBuf>, u32)> = None;
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
        let node = KubeNode::new("runc-panic");
        let pod = node.add_pod("shop", "cart", Qos::Burstable);
        let container = RuncContainer::new(&node, &pod, "app", 48 * MIB, &LEAK_4_MIB);
        let run = container.run();
        let pid = container.wait_running(&run);
        seen = Some((cgroup_dirs_of(&container), pid));
        panic!("deliberate panic to test the cleanup (expected in this test's output)");
    }));
    assert!(outcome.is_err(), "the closure should have panicked");
    let (dirs, pid) = seen.expect("the closure got as far as starting the container");
    assert!(!dirs.is_empty(), "runc made no cgroup directories?");
    expect_no_cgroups_left(&dirs);
    // The killed process is not the test's child: init reaps it, so allow a moment and count
    // a zombie as dead.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !is_dead(pid) {
        assert!(
            Instant::now() < deadline,
            "expected the container's process {pid} to be gone"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// Whether `pid` no longer exists or is a zombie.
fn is_dead(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised comm: `pid (comm) S ...`.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => true,
    }
}

/// Checks a field of an oom_kill line, failing with the profiler's report.
#[track_caller]
fn expect_field(profiler: &Profiler, event: &Value, key: &str, expected: &Value) {
    if &event[key] != expected {
        profiler.fail(format_args!(
            "expected {key} {expected} in the oom_kill line, saw {event}"
        ));
    }
}

/// A runc container in a pod: `watch --pod` and `watch --container <id>` both report its OOM
/// kill with the container id (and the pod for --pod), and the workload as the victim.
#[test]
fn a_runc_container_oom_kill_is_reported_by_pod_and_by_container_id() {
    let _test = start_test!();
    let node = KubeNode::new("runc");
    let pod = node.add_pod("shop", "cart", Qos::Burstable);
    let container = RuncContainer::new(&node, &pod, "app", 48 * MIB, &LEAK_4_MIB);
    let id = container.id().to_owned();
    let cgroup = container.container().cgroup_str().to_owned();

    // The container runs (its shell waits at the gate) before the profilers start, so both find
    // its cgroup at once; the workload only allocates once both watch it.
    let run = container.run();
    let pid = container.wait_running(&run);
    let mut events = container.events();
    let mut by_pod = node.watch(&["--pod", "cart"]);
    let mut by_id = node.watch(&["--container", &id]);
    by_pod.wait_watching(&[&cgroup]);
    by_id.wait_watching(&[&cgroup]);
    container.release();
    expect_status_137(&run);
    expect_oom_event(&mut events, &id);

    for (profiler, with_pod) in [(&mut by_pod, true), (&mut by_id, false)] {
        let (_, event) = profiler.wait_for("an oom_kill line for the container", PATIENCE, |l| {
            l["type"] == "oom_kill" && l["container_id"] == id.as_str()
        });
        expect_field(profiler, &event, "cgroup", &Value::from(cgroup.as_str()));
        expect_field(profiler, &event, "comm", &Value::from("workload"));
        if with_pod {
            expect_field(profiler, &event, "container", &Value::from("app"));
            expect_field(profiler, &event, "pod", &Value::from("cart"));
            expect_field(profiler, &event, "namespace", &Value::from("shop"));
            expect_field(profiler, &event, "pod_uid", &Value::from(pod.uid.as_str()));
            expect_field(profiler, &event, "qos", &Value::from("burstable"));
        }
        // The shell execs the workload, so the victim is runc's init pid (a host pid here).
        if u64_at(&event, "pid") != u64::from(pid) {
            profiler.fail(format_args!(
                "expected the victim pid {pid} (the container's init, which execs the \
                 workload), saw {event}"
            ));
        }
    }
}
