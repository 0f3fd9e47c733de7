//! The pods scenario's check (scenarios/pods.sh): `profiler watch --pod` on the tree a kubelet
//! with the systemd cgroup driver and containerd makes (`kubepods.slice/.../
//! kubepods-burstable-pod<uid>.slice/cri-containerd-<id>.scope`, with the kubelet's log
//! directories), found without an API server, to a real OOM kill of the pod's container.
use records::{Body, Exit, Line, OomKill, Sample};

use super::{Check, GuestReport};

/// The check's name.
pub(super) const PODS: &str =
    "watch --pod on a systemd-driver kubelet tree names the OOM-killed container";

/// What the guest made: the pod, its container and their cgroups (all `pods_*` facts).
struct Made<'a> {
    namespace: &'a str,
    pod: &'a str,
    uid: &'a str,
    container: &'a str,
    container_id: &'a str,
    container_cgroup: &'a str,
    pod_cgroup: &'a str,
    sandbox_cgroup: &'a str,
    leak_pid: u32,
}

impl<'a> Made<'a> {
    fn of(report: &'a GuestReport) -> Option<Self> {
        let fact = |key: &str| report.fact(key).filter(|v| !v.is_empty());
        Some(Made {
            namespace: fact("pods_namespace")?,
            pod: fact("pods_pod")?,
            uid: fact("pods_uid")?,
            container: fact("pods_container")?,
            container_id: fact("pods_container_id")?,
            container_cgroup: fact("pods_container_cgroup")?,
            pod_cgroup: fact("pods_pod_cgroup")?,
            sandbox_cgroup: fact("pods_sandbox_cgroup")?,
            leak_pid: fact("pods_leak_pid")?.parse().ok()?,
        })
    }
}

/// The guest's pods scenario, judged.
pub(super) fn pods_check(report: &GuestReport) -> Check {
    Check::judged(PODS, judge(report))
}

/// `KEY N` of a memory.events (v2) or memory.oom_control (v1) section.
fn kernel_count(report: &GuestReport, section: &str, key: &str) -> Option<u64> {
    report.sections.get(section)?.iter().find_map(|l| {
        let (k, n) = l.split_once(' ')?;
        (k == key).then(|| n.trim().parse().ok())?
    })
}

/// Whether a line names the container as the guest made it; what differs otherwise.
fn identity_differs(line: &Line, made: &Made<'_>) -> Option<String> {
    let id = &line.identity;
    let seen = (
        id.namespace.as_deref(),
        id.pod.as_deref(),
        id.container.as_deref(),
        id.container_id.as_deref(),
    );
    let want = (
        Some(made.namespace),
        Some(made.pod),
        Some(made.container),
        Some(made.container_id),
    );
    (seen != want).then(|| {
        format!(
            "namespace {:?}, pod {:?}, container {:?}, container_id {:?}",
            seen.0, seen.1, seen.2, seen.3
        )
    })
}

/// The `pod_uid` and `qos` of the first raw `watch_start` line of `cgroup` (the records crate
/// does not read `pod_uid`, which is what ties the line to the pod's slice).
fn pod_uid_and_qos(report: &GuestReport, cgroup: &str) -> Option<(String, String)> {
    report.sections.get("pods_watch")?.iter().find_map(|l| {
        let v: serde_json::Value = serde_json::from_str(l).ok()?;
        (v["type"] == "watch_start" && v["cgroup"] == cgroup).then(|| {
            let field = |k: &str| v[k].as_str().unwrap_or("null").to_owned();
            (field("pod_uid"), field("qos"))
        })
    })
}

/// What is wrong, and the figures measured.
fn judge(report: &GuestReport) -> (Vec<String>, Vec<String>) {
    let mut problems = Vec::new();
    let mut figures = Vec::new();
    let Some(made) = Made::of(report) else {
        problems.push(format!(
            "the guest did not run the pod's leak (watch started {}; watch stderr: {})",
            report.fact("pods_watch_started").unwrap_or("?"),
            report.one_line("pods_stderr")
        ));
        return (problems, figures);
    };
    let lines = report.json_lines("pods_watch");
    let ours: Vec<&Line> = lines
        .iter()
        .filter(|l| l.cgroup.as_deref() == Some(made.container_cgroup))
        .collect();

    // Resolved: the container's cgroup joined the watch, and every line of it names the pod.
    let started = ours.iter().any(|l| matches!(l.body, Body::WatchStart(_)));
    if !started {
        let cgroups: Vec<&str> = lines.iter().filter_map(|l| l.cgroup.as_deref()).collect();
        problems.push(format!(
            "no watch_start for the container's cgroup {} (cgroups the watch named: {:?}; \
             stderr: {})",
            made.container_cgroup,
            dedup(cgroups),
            report.one_line("pods_stderr")
        ));
    }
    let misnamed: Vec<String> = ours
        .iter()
        .filter_map(|l| identity_differs(l, &made).map(|d| format!("{}: {d}", type_of(l))))
        .collect();
    if let Some(first) = misnamed.first() {
        problems.push(format!(
            "{} of {} lines of the container do not name it {}/{}/{} ({}), e.g. {first}",
            misnamed.len(),
            ours.len(),
            made.namespace,
            made.pod,
            made.container,
            short(made.container_id)
        ));
    }
    match pod_uid_and_qos(report, made.container_cgroup) {
        Some((uid, qos)) if uid == made.uid && qos == "burstable" => {}
        Some((uid, qos)) => problems.push(format!(
            "its watch_start says pod_uid {uid} qos {qos} (the slice is pod {} burstable)",
            made.uid
        )),
        None if started => problems.push("its watch_start does not read as JSON".into()),
        None => {}
    }
    figures.push(format!(
        "{} lines of {}/{}/{} ({}) in {}",
        ours.len(),
        made.namespace,
        made.pod,
        made.container,
        short(made.container_id),
        made.container_cgroup
    ));

    // The kill: of the leak's pid, told on the container's cgroup, its victim cgroup the
    // container's, the limit reached the pod's or the container's.
    let kill: Option<&OomKill> = ours.iter().find_map(|l| match &l.body {
        Body::OomKill(k) if k.pid == made.leak_pid => Some(k),
        _ => None,
    });
    match kill {
        Some(k) => {
            if k.victim_cgroup.as_deref() != Some(made.container_cgroup) {
                problems.push(format!(
                    "the oom_kill of pid {} says victim_cgroup {:?}",
                    k.pid, k.victim_cgroup
                ));
            }
            let oom_cgroup = k.oom_cgroup.as_deref();
            if oom_cgroup != Some(made.pod_cgroup) && oom_cgroup != Some(made.container_cgroup) {
                problems.push(format!(
                    "the oom_kill of pid {} says oom_cgroup {oom_cgroup:?}, neither the pod's \
                     slice nor the container's scope",
                    k.pid
                ));
            }
            figures.push(format!(
                "oom_kill of pid {} ({}) from {}, constraint {}, limit reached: {} ({})",
                k.pid,
                k.comm,
                k.source.as_deref().unwrap_or("?"),
                k.constraint.as_deref().unwrap_or("?"),
                k.oom_limit_source.as_deref().unwrap_or("?"),
                oom_cgroup.map_or("?", |c| c.rsplit('/').next().unwrap_or(c))
            ));
        }
        None => {
            let pids: Vec<String> = lines
                .iter()
                .filter_map(|l| match &l.body {
                    Body::OomKill(k) => Some(format!("{} on {:?}", k.pid, l.cgroup)),
                    _ => None,
                })
                .collect();
            problems.push(format!(
                "no oom_kill of pid {} on the container's cgroup (leak exit status {}; \
                 oom_kill lines: {pids:?})",
                made.leak_pid,
                report.fact("pods_leak_status").unwrap_or("?")
            ));
        }
    }
    let on_sandbox = lines.iter().any(|l| {
        l.cgroup.as_deref() == Some(made.sandbox_cgroup) && matches!(l.body, Body::OomKill(_))
    });
    if on_sandbox {
        problems.push(format!(
            "an oom_kill is told on the sandbox's cgroup {}",
            made.sandbox_cgroup
        ));
    }
    if let Some(exit) = ours.iter().find_map(|l| match &l.body {
        Body::Exit(e) if e.pid == made.leak_pid => Some(e),
        _ => None,
    }) {
        figures.push(exit_figure(exit));
    }

    // The kernel's side: the leak died of SIGKILL, and the processes memory.events says were
    // killed are those the watch told. A group kill counts its chosen victim twice there (the
    // kernel kills it as the victim, then again as a member of the group: dmesg says "Killed
    // process" twice), so oom_kill less oom_group_kill is the processes (v1 has no groups).
    if report.fact("pods_leak_status") != Some("137") {
        problems.push(format!(
            "the leak's exit status is {} (137: SIGKILL)",
            report.fact("pods_leak_status").unwrap_or("?")
        ));
    }
    let kernel_kills = kernel_count(report, "pods_container_events", "oom_kill");
    let group_kills = kernel_count(report, "pods_container_events", "oom_group_kill").unwrap_or(0);
    let killed = kernel_kills.map(|k| k.saturating_sub(group_kills));
    let mut told: Vec<u32> = ours
        .iter()
        .filter_map(|l| match &l.body {
            Body::OomKill(k) => Some(k.pid),
            _ => None,
        })
        .collect();
    told.sort_unstable();
    told.dedup();
    if killed != Some(told.len() as u64) || told.is_empty() {
        problems.push(format!(
            "memory.events says {} processes killed (oom_kill {kernel_kills:?}, \
             oom_group_kill {group_kills}), the watch told {} ({told:?})",
            killed.map_or("?".into(), |k| k.to_string()),
            told.len()
        ));
    }
    let counted = ours.iter().rev().find_map(|l| match &l.body {
        Body::Sample(Sample { oom_kills, .. }) => Some(*oom_kills),
        _ => None,
    });
    // The samples count processes too (the group kill's double count taken out).
    if counted.is_some_and(|c| Some(c) != killed) {
        problems.push(format!(
            "the last sample says {} OOM kills, memory.events {} processes killed",
            counted.unwrap_or(0),
            killed.map_or("?".into(), |k| k.to_string())
        ));
    }
    figures.push(format!(
        "memory.events oom_kill {} oom_group_kill {group_kills} (the pod's oom_kill {}): {} \
         process killed, {} told; the samples' oom_kills {}; oom.group {}, pause alive {}",
        kernel_kills.map_or("?".into(), |k| k.to_string()),
        kernel_count(report, "pods_pod_events", "oom_kill").map_or("?".into(), |k| k.to_string()),
        killed.map_or("?".into(), |k| k.to_string()),
        told.len(),
        counted.map_or("?".into(), |c| c.to_string()),
        report.fact("pods_oom_group").unwrap_or("none (v1)"),
        report.fact("pods_pause_alive").unwrap_or("?")
    ));
    (problems, figures)
}

fn exit_figure(exit: &Exit) -> String {
    format!(
        "exit {} cause {} limit {}",
        exit.exit_code,
        exit.cause,
        exit.limit_source.as_deref().unwrap_or("?")
    )
}

/// A line's type, for messages.
fn type_of(line: &Line) -> &'static str {
    match line.body {
        Body::WatchStart(_) => "watch_start",
        Body::Sample(_) => "sample",
        Body::OomKill(_) => "oom_kill",
        Body::OomGroupKill(_) => "oom_group_kill",
        Body::Exit(_) => "exit",
        _ => "a line",
    }
}

fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

fn dedup(mut v: Vec<&str>) -> Vec<&str> {
    v.sort_unstable();
    v.dedup();
    v
}

#[cfg(test)]
mod tests {
    //! On the results of a real guest: Debian's 6.12.117, cgroup v2, fentry; the pod
    //! shop/web-7d4b9c (uid 791f8022-…) with container app (7380f7bfe0d2) and its sandbox;
    //! the leak (pid 238) killed when the pod's 64 MiB slice filled, the container killed
    //! whole (memory.oom.group), memory.events oom_kill 2 (the kernel counts the victim of a
    //! group kill twice) and the samples 1. An earlier run of the same kernel, whose profiler
    //! took memory.events' oom_kill as it is (the samples said 2), is
    //! `pods-6.12-double-count.txt`. And one of Debian's 5.10.0-46 on cgroup v1 (the memory hierarchy,
    //! kprobe mode, no memory.oom.group): pid 204 killed at the pod's 64 MiB limit,
    //! memory.oom_control oom_kill 1. The node, processes and summary lines and doctor's output
    //! are cut.
    use super::*;

    const RECORDED: &str = include_str!("../testdata/pods-6.12.txt");
    const DOUBLE_COUNT: &str = include_str!("../testdata/pods-6.12-double-count.txt");
    const RECORDED_V1: &str = include_str!("../testdata/pods-5.10-v1.txt");
    const CONTAINER: &str = "/sys/fs/cgroup/kubepods.slice/kubepods-burstable.slice/\
        kubepods-burstable-pod791f8022_3a45_4cf7_85f7_e623727af99a.slice/\
        cri-containerd-7380f7bfe0d2a0477af4573bf7225fd7fc6bd10589ea3c494e284d72a9deb475.scope";
    const SANDBOX: &str = "/sys/fs/cgroup/kubepods.slice/kubepods-burstable.slice/\
        kubepods-burstable-pod791f8022_3a45_4cf7_85f7_e623727af99a.slice/\
        cri-containerd-2bc9851fd425d629332391fb51c30d43a87466e0ef637e02d2b71c211501f706.scope";

    fn check(text: &str) -> Check {
        pods_check(&GuestReport::parse(text))
    }

    #[test]
    fn the_recorded_guest_passes_with_its_figures() {
        let check = check(RECORDED);
        assert!(check.passed, "{}", check.detail);
        for figure in [
            "lines of shop/web-7d4b9c/app (7380f7bfe0d2)",
            "oom_kill of pid 238 (app) from bpf, constraint memcg, limit reached: pod",
            "exit 137 cause oom_limit limit pod",
            "memory.events oom_kill 2 oom_group_kill 1 (the pod's oom_kill 2): 1 process killed, \
             1 told; the samples' oom_kills 1; oom.group 1, pause alive yes",
        ] {
            assert!(
                check.detail.contains(figure),
                "{figure:?} in {}",
                check.detail
            );
        }
    }

    #[test]
    fn samples_that_count_a_group_kill_twice_fail() {
        let check = check(DOUBLE_COUNT);
        assert!(!check.passed, "{}", check.detail);
        assert!(
            check
                .detail
                .contains("the last sample says 2 OOM kills, memory.events 1 processes killed"),
            "{}",
            check.detail
        );
    }

    #[test]
    fn the_recorded_v1_guest_passes() {
        let check = check(RECORDED_V1);
        assert!(check.passed, "{}", check.detail);
        for figure in [
            "/sys/fs/cgroup/memory/kubepods.slice/kubepods-burstable.slice/",
            "oom_kill of pid 204 (app) from bpf, constraint memcg, limit reached: pod",
            "memory.events oom_kill 1 oom_group_kill 0 (the pod's oom_kill 0): 1 process killed",
            "oom.group none (v1)",
        ] {
            assert!(
                check.detail.contains(figure),
                "{figure:?} in {}",
                check.detail
            );
        }
    }

    #[test]
    fn a_container_not_named_fails() {
        let unnamed = RECORDED.replace(r#""container":"app""#, r#""container":null"#);
        let check = check(&unnamed);
        assert!(!check.passed);
        assert!(
            check.detail.contains("do not name it shop/web-7d4b9c/app"),
            "{}",
            check.detail
        );
        let other_pod = RECORDED.replace(r#""pod":"web-7d4b9c""#, r#""pod":"web-1""#);
        assert!(!pods_check(&GuestReport::parse(&other_pod)).passed);
        let other_uid = RECORDED.replace(
            r#""pod_uid":"791f8022-3a45-4cf7-85f7-e623727af99a","container":"app""#,
            r#""pod_uid":"0000","container":"app""#,
        );
        let check = pods_check(&GuestReport::parse(&other_uid));
        assert!(check.detail.contains("pod_uid 0000"), "{}", check.detail);
    }

    #[test]
    fn a_pod_not_resolved_fails() {
        // The watch never found the container (e.g. a layout it does not understand).
        let text: String = RECORDED
            .lines()
            .filter(|l| !l.contains(CONTAINER) || l.starts_with("=== kv"))
            .map(|l| format!("{l}\n"))
            .collect();
        let check = check(&text);
        assert!(!check.passed);
        assert!(
            check.detail.contains("no watch_start for the container"),
            "{}",
            check.detail
        );
        assert!(
            check.detail.contains("no oom_kill of pid 238"),
            "{}",
            check.detail
        );
    }

    #[test]
    fn a_kill_of_another_pid_or_on_the_sandbox_fails() {
        let other = RECORDED.replace("=== kv pods_leak_pid 238", "=== kv pods_leak_pid 239");
        let check = check(&other);
        assert!(!check.passed);
        assert!(
            check.detail.contains("no oom_kill of pid 239"),
            "{}",
            check.detail
        );

        // The kill told on the sandbox's cgroup instead.
        let text: String = RECORDED
            .lines()
            .map(|l| {
                if l.contains(r#""type":"oom_kill""#) {
                    l.replacen(CONTAINER, SANDBOX, 1)
                } else {
                    l.to_owned()
                }
            })
            .map(|l| format!("{l}\n"))
            .collect();
        let check = pods_check(&GuestReport::parse(&text));
        assert!(!check.passed);
        assert!(
            check.detail.contains("on the sandbox's cgroup"),
            "{}",
            check.detail
        );
    }

    #[test]
    fn memory_events_that_disagree_fail() {
        let events = |oom_kill: u32| {
            RECORDED.replacen(
                "oom_kill 2\noom_group_kill 1\n=== end pods_container_events",
                &format!("oom_kill {oom_kill}\noom_group_kill 1\n=== end pods_container_events"),
                1,
            )
        };
        // Counted once: the kernel would have killed no process but the group's victim.
        let once = events(1);
        assert_ne!(once, RECORDED);
        let check = check(&once);
        assert!(!check.passed);
        assert!(
            check
                .detail
                .contains("memory.events says 0 processes killed"),
            "{}",
            check.detail
        );
        // Two processes killed, one told.
        assert!(!pods_check(&GuestReport::parse(&events(3))).passed);
        let lived = RECORDED.replace("=== kv pods_leak_status 137", "=== kv pods_leak_status 0");
        assert!(!pods_check(&GuestReport::parse(&lived)).passed);
    }

    #[test]
    fn a_guest_that_made_no_pod_fails() {
        let check = check("=== kv kernel 6.12\n=== kv pods_watch_started no\n=== done\n");
        assert!(!check.passed);
        assert!(
            check.detail.contains("watch started no"),
            "{}",
            check.detail
        );
    }
}
