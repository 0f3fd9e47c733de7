//! Containers come and go all day. Ten a second are made and removed (each with a process that
//! lives 2.5 s; one in ten leaks into its 64 MiB limit and is OOM-killed) while `watch --all`
//! runs at `--interval 1s`, for 90 s (`PROFILER_CHURN_SECONDS` sets another length: `cargo
//! xtask bench churn` runs it for 10 minutes). The watch's resident memory and open
//! descriptors stay flat after the warm-up, every container gets its `watch_start` and its
//! `cgroup_gone`, and every kill the kernel counted is an `oom_kill` line naming its container.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs;
use std::time::{Duration, Instant};

use profiler_e2e::{oom_kill_count, start_test, Container, KubeNode, Profiler, Qos, MIB, PATIENCE};

/// Containers made per second.
const PER_SECOND: u64 = 10;
/// Seconds before memory and descriptors are compared (the watch's start-up, the first
/// containers).
const WARM_UP_S: f64 = 20.0;

/// The watch's resident memory (KiB) and open descriptors now.
fn footprint(pid: u32) -> (u64, usize) {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    let fds = fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count());
    (rss, fds)
}

#[test]
fn churn_keeps_memory_and_descriptors_flat_and_misses_nothing() {
    let _test = start_test!();
    let seconds: u64 = std::env::var("PROFILER_CHURN_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(90);
    let node = KubeNode::new("churn");
    let pods: Vec<_> = (0..10)
        .map(|i| node.add_pod("churn", &format!("job-{i}"), Qos::Burstable))
        .collect();
    let flags = node.flags();
    let mut args = vec!["--all", "--interval", "1s"];
    args.extend(flags.iter().map(String::as_str));
    let mut profiler = Profiler::watch(&args);
    profiler.wait_for("a node line", PATIENCE, |l| l["type"] == "node");
    let pid = profiler.pid();

    let start = Instant::now();
    let mut live: VecDeque<(String, Container)> = VecDeque::new();
    // Container cgroup → (name, OOM kills the kernel counted in it).
    let mut ended: HashMap<String, (String, u64)> = HashMap::new();
    let mut footprints: Vec<(f64, u64, usize)> = Vec::new();
    let mut made = 0u64;
    let mut next_footprint = 0.0;
    while start.elapsed() < Duration::from_secs(seconds) {
        let name = format!("c{made}");
        let pod = &pods[(made % 10) as usize];
        let args: &[&str] = if made.is_multiple_of(10) {
            &[
                "leak",
                "--step-mib",
                "8",
                "--interval-ms",
                "50",
                "--hold-s",
                "2",
            ]
        } else {
            &["exit", "--code", "0", "--after-ms", "2500"]
        };
        let container = node.start_container(pod, &name, Some(64 * MIB), args);
        live.push_back((name, container));
        made += 1;
        // Containers whose process ended are removed, as the kubelet removes a finished
        // job's.
        while live
            .front_mut()
            .is_some_and(|(_, c)| c.workload().has_exited())
        {
            let Some((name, container)) = live.pop_front() else {
                break;
            };
            ended.insert(
                container.cgroup_str().to_owned(),
                (name, oom_kill_count(container.cgroup())),
            );
            node.remove_container(container);
        }
        let t = start.elapsed().as_secs_f64();
        if t >= next_footprint {
            let (rss, fds) = footprint(pid);
            footprints.push((t, rss, fds));
            next_footprint += 5.0;
        }
        let due = start + Duration::from_millis(made * 1000 / PER_SECOND);
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
    }
    for (name, mut container) in live.drain(..) {
        container.workload().wait_exit(Duration::from_secs(30));
        ended.insert(
            container.cgroup_str().to_owned(),
            (name, oom_kill_count(container.cgroup())),
        );
        node.remove_container(container);
    }
    // The last removals are noticed within a round or two.
    std::thread::sleep(Duration::from_secs(3));
    profiler.interrupt();
    profiler.wait(PATIENCE);

    eprintln!("t (s)  VmRSS (KiB)  fds");
    for (t, rss, fds) in &footprints {
        eprintln!("{t:5.0}  {rss:11}  {fds:3}");
    }
    let lines = profiler.lines_so_far();
    let of = |kind: &str| -> HashSet<String> {
        lines
            .iter()
            .filter(|(_, l)| l["type"] == kind)
            .filter_map(|(_, l)| l["cgroup"].as_str().map(str::to_owned))
            .collect()
    };
    let started = of("watch_start");
    let gone = of("cgroup_gone");
    let unseen: Vec<&String> = ended.keys().filter(|c| !started.contains(*c)).collect();
    let not_gone: Vec<&String> = started.iter().filter(|c| !gone.contains(*c)).collect();
    let mut kills_by_cgroup: HashMap<&str, u64> = HashMap::new();
    for (_, l) in lines.iter().filter(|(_, l)| l["type"] == "oom_kill") {
        if let Some(c) = l["cgroup"].as_str() {
            *kills_by_cgroup.entry(c).or_default() += 1;
        }
    }
    let misattributed: Vec<String> = lines
        .iter()
        .filter(|(_, l)| l["type"] == "oom_kill")
        .filter(|(_, l)| {
            let cgroup = l["cgroup"].as_str().unwrap_or("");
            ended.get(cgroup).map(|(name, _)| name.as_str()) != l["container"].as_str()
        })
        .map(|(_, l)| l.to_string())
        .collect();
    let kernel: u64 = ended.values().map(|(_, k)| k).sum();
    let untold: Vec<(&String, u64, u64)> = ended
        .iter()
        .filter(|(_, (_, k))| *k > 0)
        .map(|(c, (_, k))| (c, *k, kills_by_cgroup.get(c.as_str()).copied().unwrap_or(0)))
        .filter(|(_, k, told)| told < k)
        .collect();
    eprintln!(
        "{made} containers in {seconds} s, {} watched, {} gone, {kernel} OOM kills by the kernel, \
         {} told",
        started.len(),
        gone.len(),
        kills_by_cgroup.values().sum::<u64>()
    );
    if !unseen.is_empty() {
        profiler.fail(format!(
            "{} containers never watched: {unseen:?}",
            unseen.len()
        ));
    }
    if !not_gone.is_empty() {
        profiler.fail(format!(
            "{} containers without cgroup_gone: {not_gone:?}",
            not_gone.len()
        ));
    }
    if kernel < made / 10 / 2 {
        profiler.fail(format!(
            "only {kernel} OOM kills for {} leaking containers",
            made / 10
        ));
    }
    if !untold.is_empty() {
        profiler.fail(format!("kills not told (cgroup, kernel, told): {untold:?}"));
    }
    if !misattributed.is_empty() {
        profiler.fail(format!(
            "kills not named for their container: {misattributed:?}"
        ));
    }
    // Flat after the warm-up: the largest figure of the last third no more than that of the
    // first third plus a margin (memory: 10 % and 2 MiB; descriptors: twenty containers' six
    // files, since how many live at a sample varies; a leak would be thousands).
    let after: Vec<&(f64, u64, usize)> = footprints.iter().filter(|f| f.0 >= WARM_UP_S).collect();
    assert!(after.len() >= 6, "too few footprints: {footprints:?}");
    let third = after.len() / 3;
    let max_of = |part: &[&(f64, u64, usize)]| {
        (
            part.iter().map(|f| f.1).max().unwrap_or(0),
            part.iter().map(|f| f.2).max().unwrap_or(0),
        )
    };
    let (rss_first, fds_first) = max_of(&after[..third]);
    let (rss_last, fds_last) = max_of(&after[after.len() - third..]);
    if rss_last > rss_first + rss_first / 10 + 2048 {
        profiler.fail(format!(
            "resident memory grew from {rss_first} KiB to {rss_last} KiB: {footprints:?}"
        ));
    }
    if fds_last > fds_first + 120 {
        profiler.fail(format!(
            "open descriptors grew from {fds_first} to {fds_last}: {footprints:?}"
        ));
    }
}
