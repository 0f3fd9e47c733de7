//! A kill storm loses no death silently: stress-ng's `--bigheap` workers, restarted as fast
//! as the kernel kills them in a 128 MiB memory cgroup, give tens of OOM kills a second (the
//! kernel log drops many of its lines in such a storm; the memcg's counter does not). Every
//! kill the kernel counted is an `oom_kill` line with its victim's `exit`, or is counted in a
//! `lost_events` line.

use std::collections::HashSet;
use std::time::Duration;

use profiler_e2e::{find_in_path, start_test, u64_at, Profiler, TestCgroup, MIB, PATIENCE};

#[test]
fn a_kill_storm_loses_no_death_silently() {
    let _test = start_test!();
    let stress_ng = find_in_path("stress-ng")
        .unwrap_or_else(|| panic!("stress-ng is not on PATH: run `cargo xtask setup`"));
    let cgroup = TestCgroup::new("storm", 128 * MIB);
    let path = cgroup.path_str();
    let mut profiler = Profiler::watch(&["--cgroup", path, "--interval", "1s"]);
    profiler.wait_watching(&[path]);
    let before = cgroup.oom_kill_count();

    let stress = cgroup.spawn_program(
        &stress_ng,
        &[
            "--bigheap",
            "8",
            "--bigheap-growth",
            "4M",
            "--timeout",
            "8s",
            "--quiet",
        ],
    );
    stress.wait_exit(Duration::from_secs(60));
    let kernel = cgroup.oom_kill_count() - before;
    // The last kills' lines wait at most a second for the kernel log.
    std::thread::sleep(Duration::from_secs(3));
    profiler.interrupt();
    profiler.wait(PATIENCE);

    let lines = profiler.lines_so_far();
    let of = |kind: &str| {
        lines
            .iter()
            .map(|(_, l)| l)
            .filter(move |l| l["type"] == kind)
            .collect::<Vec<_>>()
    };
    let kills: Vec<u64> = of("oom_kill")
        .iter()
        .filter(|l| l["cgroup"] == path)
        .map(|l| u64_at(l, "pid"))
        .collect();
    let with_constraint = of("oom_kill")
        .iter()
        .filter(|l| l["cgroup"] == path && l["constraint"] == "memcg")
        .count();
    let lost: u64 = of("lost_events").iter().map(|l| u64_at(l, "count")).sum();
    let exits: HashSet<u64> = of("exit")
        .iter()
        .filter(|l| l["cgroup"] == path && l["cause"] == "oom_limit")
        .map(|l| u64_at(l, "pid"))
        .collect();
    let without_exit = kills.iter().filter(|pid| !exits.contains(pid)).count() as u64;
    eprintln!(
        "storm: the kernel killed {kernel} processes in 8 s; {} oom_kill lines, {} oom_limit \
         exits, {without_exit} kills without an exit line, {lost} records counted lost; \
         {with_constraint} kills with the kernel log's constraint=memcg",
        kills.len(),
        exits.len()
    );
    if kernel < 20 {
        profiler.fail(format_args!(
            "expected a storm (at least 20 kills), the kernel counted {kernel}"
        ));
    }
    let told = kills.len() as u64;
    if told > kernel {
        profiler.fail(format_args!(
            "{told} oom_kill lines for {kernel} kills the kernel counted"
        ));
    }
    if told + lost < kernel {
        profiler.fail(format_args!(
            "{} kills lost silently: the kernel counted {kernel}, {told} oom_kill lines, {lost} \
             records counted lost",
            kernel - told - lost
        ));
    }
    if without_exit > lost {
        let missing: Vec<u64> = kills
            .iter()
            .copied()
            .filter(|pid| !exits.contains(pid))
            .collect();
        let about: Vec<String> = lines
            .iter()
            .map(|(_, l)| l)
            .filter(|l| l["pid"].as_u64().is_some_and(|p| missing.contains(&p)))
            .map(ToString::to_string)
            .collect();
        profiler.fail(format_args!(
            "{without_exit} killed processes have no oom_limit exit line and only {lost} \
             records were counted lost: pids {missing:?}, their lines:\n{}",
            about.join("\n")
        ));
    }
}
