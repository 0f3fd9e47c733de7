//! Kubernetes pods and containers, resolved from kubelet's cgroup layout and log trees (no API
//! server): `watch --pod`, `watch --container`, their errors, restarts and the limit source.

use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

use profiler_e2e::{
    is_line, start_test, u64_at, AccessWatch, Container, KubeNode, Profiler, Qos, MIB, PATIENCE,
};
use serde_json::{json, Value};

const LEAK_4_MIB: [&str; 5] = ["leak", "--step-mib", "4", "--interval-ms", "20"];
const HOLD_1_MIB: [&str; 3] = ["hold", "--mib", "1"];

/// Checks that `line` is about `container`: its namespace, pod, pod UID, container name and id,
/// QoS class and cgroup.
#[track_caller]
fn expect_identity(profiler: &Profiler, line: &Value, container: &Container) {
    let pod = container.pod();
    let expected = json!({
        "namespace": pod.namespace,
        "pod": pod.name,
        "pod_uid": pod.uid,
        "container": container.name(),
        "container_id": container.id(),
        "qos": pod.qos.as_str(),
        "cgroup": container.cgroup_str(),
    });
    for (key, value) in expected.as_object().into_iter().flatten() {
        if &line[key] != value {
            profiler.fail(format_args!(
                "expected {key} {value} in the {} line (container {} of pod {}/{}, run {}), \
                 saw {line}",
                line["type"],
                container.name(),
                pod.namespace,
                pod.name,
                container.restart()
            ));
        }
    }
}

/// Checks an unsigned field of a line, failing with the profiler's report.
#[track_caller]
fn expect_count(profiler: &Profiler, line: &Value, key: &str, expected: u64, why: &str) {
    if u64_at(line, key) != expected {
        profiler.fail(format_args!(
            "expected {key} {expected} ({why}), saw {line}"
        ));
    }
}

/// Waits for the container's workload to die of SIGKILL, as a memcg OOM kill does.
#[track_caller]
fn expect_oom_killed(container: &mut Container) {
    let workload = container.workload();
    let (status, _) = workload.wait_exit(PATIENCE);
    if status.signal() != Some(libc::SIGKILL) {
        workload.fail(format_args!(
            "expected the kernel to OOM-kill the workload (SIGKILL), it ended with {status}"
        ));
    }
}

/// The samples of `cgroup` received before `before`.
fn samples_before(profiler: &Profiler, cgroup: &str, before: Instant) -> Vec<Value> {
    profiler
        .lines_so_far()
        .into_iter()
        .filter(|(at, line)| *at < before && is_line(line, "sample", cgroup))
        .map(|(_, line)| line)
        .collect()
}

/// (a) `watch --pod` names the pod container in its lines, and follows it across an OOM kill
/// and restart (new id, new cgroup) without being restarted itself: restarts and OOM kills
/// count for the pod container, not for one cgroup.
#[test]
fn a_pod_container_is_followed_across_an_oom_restart() {
    let _test = start_test!();
    let node = KubeNode::new("restart");
    let pod = node.add_pod("shop", "checkout", Qos::Burstable);
    let mut first = node.create_container(&pod, "app", Some(48 * MIB));
    let mut profiler = node.watch(&["--pod", "checkout"]);
    let start = profiler.wait_watching(&[first.cgroup_str()]).remove(0);
    expect_identity(&profiler, &start, &first);
    if start["limit_source"] != "container" || start["limit_bytes"] != 48 * MIB {
        profiler.fail(format_args!(
            "expected limit_bytes {} with limit_source \"container\" (the container cgroup's \
             own limit), saw {start}",
            48 * MIB
        ));
    }

    node.spawn(&mut first, &LEAK_4_MIB);
    expect_oom_killed(&mut first);
    let (first_kill_at, kill) =
        profiler.wait_for("an oom_kill line for the first container", PATIENCE, |l| {
            is_line(l, "oom_kill", first.cgroup_str())
        });
    expect_identity(&profiler, &kill, &first);
    for sample in samples_before(&profiler, first.cgroup_str(), first_kill_at) {
        expect_count(
            &profiler,
            &sample,
            "restarts",
            0,
            "the first run of the container",
        );
    }

    let first_cgroup = first.cgroup_str().to_owned();
    let mut second = node.restart_container(first, Duration::from_secs(1));
    let (_, start) = profiler.wait_for(
        "watch_start for the restarted container's new cgroup",
        PATIENCE,
        |l| is_line(l, "watch_start", second.cgroup_str()),
    );
    expect_identity(&profiler, &start, &second);
    let (_, sample) = profiler.wait_for("a sample of the restarted container", PATIENCE, |l| {
        is_line(l, "sample", second.cgroup_str())
    });
    expect_count(
        &profiler,
        &sample,
        "restarts",
        1,
        "one restart since the watch started",
    );
    expect_count(
        &profiler,
        &sample,
        "oom_kills",
        1,
        "the first run's kill carries over to the pod container's next run",
    );

    let second_leak_at = Instant::now();
    node.spawn(&mut second, &LEAK_4_MIB);
    expect_oom_killed(&mut second);
    for sample in samples_before(&profiler, second.cgroup_str(), second_leak_at) {
        expect_count(&profiler, &sample, "restarts", 1, "before the second kill");
        expect_count(&profiler, &sample, "oom_kills", 1, "before the second kill");
    }
    let (_, kill) = profiler.wait_for(
        "an oom_kill line for the restarted container",
        PATIENCE,
        |l| is_line(l, "oom_kill", second.cgroup_str()),
    );
    expect_identity(&profiler, &kill, &second);
    let (_, sample) = profiler.wait_for(
        "a sample of the restarted container after its kill",
        PATIENCE,
        |l| is_line(l, "sample", second.cgroup_str()),
    );
    expect_count(&profiler, &sample, "oom_kills", 2, "one kill in each run");
    expect_count(&profiler, &sample, "restarts", 1, "still one restart");
    if profiler
        .lines_so_far()
        .iter()
        .any(|(_, l)| l["type"] == "end")
    {
        profiler.fail(format_args!(
            "the watch ended, but --pod should keep following the pod after its first \
             container's cgroup {first_cgroup} was removed"
        ));
    }
}

/// (b) An unknown pod name is an error that names the closest pod names there are.
#[test]
fn an_unknown_pod_is_an_error_that_names_the_closest_pods() {
    let _test = start_test!();
    let node = KubeNode::new("unknown");
    node.add_pod("default", "web-frontend", Qos::Burstable);
    node.add_pod("default", "web-backend", Qos::Burstable);
    node.add_pod("data", "postgres", Qos::Guaranteed);
    let finished = node.run_watch(&["--pod", "web-fronted"]);
    finished.expect_error(&["no pod named \"web-fronted\"", "web-frontend"]);
}

/// (c) A pod name found in two namespaces needs `--namespace`; with it, the right pod is
/// watched.
#[test]
fn a_pod_name_in_two_namespaces_needs_a_namespace() {
    let _test = start_test!();
    let node = KubeNode::new("ambiguous");
    let shop = node.add_pod("shop", "api", Qos::Burstable);
    let billing = node.add_pod("billing", "api", Qos::Burstable);
    let in_shop = node.start_container(&shop, "app", Some(32 * MIB), &HOLD_1_MIB);
    let in_billing = node.start_container(&billing, "app", Some(32 * MIB), &HOLD_1_MIB);

    let finished = node.run_watch(&["--pod", "api"]);
    finished.expect_error(&["shop", "billing", "--namespace"]);

    let mut profiler = node.watch(&["--pod", "api", "--namespace", "billing"]);
    let start = profiler.wait_watching(&[in_billing.cgroup_str()]).remove(0);
    expect_identity(&profiler, &start, &in_billing);
    if profiler
        .lines_so_far()
        .iter()
        .any(|(_, l)| l["cgroup"] == in_shop.cgroup_str())
    {
        profiler.fail(format_args!(
            "--namespace billing should not watch the shop pod's container {}",
            in_shop.cgroup_str()
        ));
    }
}

/// (d) A pod without a running container: `--no-wait` fails, otherwise the profiler says it
/// waits and picks the container up when it appears.
#[test]
fn a_pod_without_a_container_is_waited_for() {
    let _test = start_test!();
    let node = KubeNode::new("waiting");
    let pod = node.add_pod("batch", "report", Qos::BestEffort);

    let finished = node.run_watch(&["--pod", "report", "--no-wait"]);
    finished.expect_error(&["no running container"]);

    let mut profiler = node.watch(&["--pod", "report"]);
    profiler.wait_for_stderr("waiting for a container of pod batch/report", PATIENCE);
    let container = node.start_container(&pod, "job", None, &HOLD_1_MIB);
    let start = profiler.wait_watching(&[container.cgroup_str()]).remove(0);
    expect_identity(&profiler, &start, &container);
}

/// (e) Pod, namespace and container names with `/` or `..` are refused before anything is
/// read: nothing beside the given log directories is opened.
#[test]
fn names_with_slashes_or_dot_dot_are_refused() {
    let _test = start_test!();
    let node = KubeNode::new("names");
    let pod = node.add_pod("default", "web", Qos::Burstable);
    let _app = node.start_container(&pod, "app", Some(32 * MIB), &HOLD_1_MIB);

    // A decoy beside pods/ and containers/, shaped like what a name with `..` would reach.
    let outside = node.log_root().join("outside");
    let decoy_pod = outside.join(format!("default_x_{}", pod.uid));
    std::fs::create_dir_all(decoy_pod.join("app")).expect("creating the decoy");
    std::fs::write(decoy_pod.join("app/0.log"), "decoy\n").expect("writing the decoy");
    let watch = AccessWatch::new(&[node.log_root(), &outside, &decoy_pod]);
    // The watch sees reads: list the decoy once and expect to see it.
    let _ = std::fs::read_dir(&outside).map(|entries| entries.count());
    let seen = watch.take();
    assert!(
        seen.iter().any(|a| a.dir == outside),
        "the inotify watch should see the decoy being listed, saw {seen:?}"
    );

    // (arguments, the name that is not valid)
    let cases: [(&[&str], &str); 7] = [
        (&["--pod", "../x"], "../x"),
        (&["--pod", ".."], ".."),
        (&["--pod", "../outside"], "../outside"),
        (&["--namespace", "a/b", "--pod", "web"], "a/b"),
        (&["--namespace", "..", "--pod", "web"], ".."),
        (
            &["--pod", "web", "--container", "../../outside"],
            "../../outside",
        ),
        (&["--container", "../outside/x"], "../outside/x"),
    ];
    for (case, bad) in cases {
        let mut args = case.to_vec();
        // With --no-wait a profiler that does not check the name fails fast (differently).
        args.push("--no-wait");
        let finished = node.run_watch(&args);
        finished.expect_error(&[bad]);
        let stderr = finished.stderr.to_lowercase();
        if !stderr.contains("valid") || stderr.contains("no pod named") {
            finished.fail(format_args!(
                "expected {case:?} to be refused as a name that is not valid, before any lookup"
            ));
        }
        let outside_reads: Vec<_> = watch
            .take()
            .into_iter()
            .filter(|a| !(a.dir == node.log_root() && (a.name == "pods" || a.name == "containers")))
            .collect();
        if !outside_reads.is_empty() {
            finished.fail(format_args!(
                "with {case:?} the profiler opened or read things beside --pod-logs and \
                 --container-logs: {outside_reads:?}"
            ));
        }
    }
}

/// (f) `watch --container` finds one container by its full id, a unique id prefix, or its
/// name, and watches only that one.
#[test]
fn a_container_is_found_by_id_prefix_or_name() {
    let _test = start_test!();
    let node = KubeNode::new("by-id");
    let checkout = node.add_pod("shop", "checkout", Qos::Burstable);
    let cart = node.add_pod("shop", "cart", Qos::Burstable);
    let app = node.start_container(&checkout, "app", Some(32 * MIB), &HOLD_1_MIB);
    let sidecar = node.start_container(&cart, "sidecar", Some(32 * MIB), &HOLD_1_MIB);
    assert_ne!(app.id()[..12], sidecar.id()[..12], "random ids collided");

    for target in [app.id(), &app.id()[..12], app.name()] {
        let mut profiler = node.watch(&["--container", target]);
        let start = profiler.wait_watching(&[app.cgroup_str()]).remove(0);
        expect_identity(&profiler, &start, &app);
        if profiler
            .lines_so_far()
            .iter()
            .any(|(_, l)| l["cgroup"] == sidecar.cgroup_str())
        {
            profiler.fail(format_args!(
                "--container {target} should watch only {}, not {}",
                app.cgroup_str(),
                sidecar.cgroup_str()
            ));
        }
    }
}

/// (g) A container without a memory limit of its own in a pod whose cgroup has one: the
/// limit is the pod's, and says so.
#[test]
fn a_container_without_a_limit_gets_its_pods_limit() {
    let _test = start_test!();
    let node = KubeNode::new("pod-limit");
    let pod = node.add_pod("shop", "batch", Qos::Burstable);
    node.set_pod_limit(&pod, 48 * MIB);
    let container = node.start_container(&pod, "app", None, &HOLD_1_MIB);
    let unlimited = std::fs::read_to_string(container.cgroup().join("memory.limit_in_bytes"))
        .expect("reading the container's memory.limit_in_bytes");
    assert!(
        unlimited.trim().parse::<u64>().is_ok_and(|l| l > 1 << 50),
        "the container cgroup should have no limit of its own, has {unlimited}"
    );

    let mut profiler = node.watch(&["--pod", "batch"]);
    let start = profiler.wait_watching(&[container.cgroup_str()]).remove(0);
    let (_, sample) = profiler.wait_for("a sample of the container", PATIENCE, |l| {
        is_line(l, "sample", container.cgroup_str())
    });
    for line in [&start, &sample] {
        if line["limit_source"] != "pod" || line["limit_bytes"] != 48 * MIB {
            profiler.fail(format_args!(
                "expected limit_bytes {} with limit_source \"pod\" (the pod cgroup's limit; \
                 the container has none), saw {line}",
                48 * MIB
            ));
        }
    }
}

/// `watch --all` (and `watch` with no target): every container of every pod and QoS class,
/// and containers that start while watching.
#[test]
fn all_watches_every_container_and_new_ones() {
    let _test = start_test!();
    let node = KubeNode::new("all");
    let checkout = node.add_pod("shop", "checkout", Qos::Burstable);
    let batch = node.add_pod("jobs", "batch", Qos::BestEffort);
    let app = node.start_container(&checkout, "app", Some(32 * MIB), &HOLD_1_MIB);
    let worker = node.start_container(&batch, "worker", None, &HOLD_1_MIB);

    for target in [&["--all"][..], &[][..]] {
        let mut profiler = node.watch(target);
        let starts = profiler.wait_watching(&[app.cgroup_str(), worker.cgroup_str()]);
        expect_identity(&profiler, &starts[0], &app);
        expect_identity(&profiler, &starts[1], &worker);
        // BestEffort without a limit anywhere below the test's own memcg: the tightest
        // ancestor limit (or the node's memory) applies, and is named.
        if starts[1]["limit_source"] == "container" || starts[1]["limit_source"] == "pod" {
            profiler.fail(format_args!(
                "the worker has no limit of its own nor a pod limit, saw {}",
                starts[1]
            ));
        }
        let late = node.start_container(&checkout, "sidecar", Some(32 * MIB), &HOLD_1_MIB);
        let (_, start) =
            profiler.wait_for("watch_start for a container started later", PATIENCE, |l| {
                is_line(l, "watch_start", late.cgroup_str())
            });
        expect_identity(&profiler, &start, &late);
        drop(late);
    }
}

/// A pod made again under the same name (a StatefulSet's pod after deletion: new uid, new
/// cgroups) is picked up by the running `--pod` watch, with its new uid.
#[test]
fn a_pod_made_again_under_its_name_is_picked_up() {
    let _test = start_test!();
    let node = KubeNode::new("again");
    let first = node.add_pod("db", "postgres-0", Qos::Guaranteed);
    let old = node.start_container(&first, "postgres", Some(32 * MIB), &HOLD_1_MIB);
    let mut profiler = node.watch(&["--pod", "postgres-0"]);
    profiler.wait_watching(&[old.cgroup_str()]);

    let second = node.add_pod("db", "postgres-0", Qos::Guaranteed);
    assert_ne!(first.uid, second.uid);
    let new = node.start_container(&second, "postgres", Some(32 * MIB), &HOLD_1_MIB);
    let (_, start) = profiler.wait_for("watch_start for the new pod's container", PATIENCE, |l| {
        is_line(l, "watch_start", new.cgroup_str())
    });
    expect_identity(&profiler, &start, &new);
}
