//! Deaths told from the kernel's own evidence, on real memory cgroups: a SIGTERM and a SIGKILL
//! from another process (the test) with the sender named, a SIGTERM that is ignored and the
//! SIGKILL after it, an exit code of the last process, and an OOM kill with the limit reached.

use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use profiler_e2e::{
    is_line, start_test, str_at, u64_at, KubeNode, Profiler, Qos, TestCgroup, Workload, MIB,
    PATIENCE,
};
use serde_json::Value;

/// Sends `signal` to `workload` from this test process.
#[track_caller]
fn send(workload: &Workload, signal: i32) {
    let pid = i32::try_from(workload.pid()).unwrap_or_else(|_| panic!("pid out of range"));
    // SAFETY: kill(2) on a child this test started and has not reaped.
    if unsafe { libc::kill(pid, signal) } != 0 {
        panic!("kill({pid}, {signal}): {}", std::io::Error::last_os_error());
    }
}

/// The `exit` line of `pid` in `cgroup`.
#[track_caller]
fn wait_exit(profiler: &mut Profiler, cgroup: &str, pid: u32) -> Value {
    profiler
        .wait_for(&format!("an exit line for pid {pid}"), PATIENCE, |l| {
            is_line(l, "exit", cgroup) && l["pid"] == pid
        })
        .1
}

/// A SIGTERM and a SIGKILL from the test: each a `signal` line naming this process as the
/// sender, and the deaths they cause `exit` lines with code 128 + n and the sender.
#[test]
fn a_signal_from_another_process_names_its_sender() {
    let _test = start_test!();
    let cgroup = TestCgroup::new("signalled", 64 * MIB);
    let path = cgroup.path_str();
    let mut profiler = Profiler::watch(&["--cgroup", path, "--interval", "250ms"]);
    profiler.wait_watching(&[path]);
    let me = std::process::id();

    for (signal, name, code) in [
        (libc::SIGTERM, "SIGTERM", 143),
        (libc::SIGKILL, "SIGKILL", 137),
    ] {
        let mut target = cgroup.spawn(&["hold", "--mib", "1"]);
        target.wait_line("ready", PATIENCE);
        send(&target, signal);
        let (status, _) = target.wait_exit(PATIENCE);
        assert_eq!(status.signal(), Some(signal), "{}", target.report());
        let pid = target.pid();
        let (_, sent) = profiler.wait_for(&format!("a signal line for pid {pid}"), PATIENCE, |l| {
            is_line(l, "signal", path) && l["pid"] == pid
        });
        profiler.expect(&sent, sent["signal"] == name, &format!("signal {name}"));
        profiler.expect(
            &sent,
            u64_at(&sent, "sender_pid") == u64::from(me),
            &format!("sender_pid {me} (this test)"),
        );
        profiler.expect(&sent, sent["delivered"] == true, "delivered true");
        let exit = wait_exit(&mut profiler, path, pid);
        profiler.expect(
            &exit,
            u64_at(&exit, "exit_code") == code,
            &format!("exit_code {code}"),
        );
        profiler.expect(&exit, exit["signal"] == name, &format!("signal {name}"));
        profiler.expect(&exit, exit["cause"] == "signal", "cause signal");
        profiler.expect(
            &exit,
            u64_at(&exit, "sender_pid") == u64::from(me),
            "the test as sender",
        );
        profiler.expect(&exit, exit["comm"] == "workload", "comm workload");
        let explanation = str_at(&exit, "explanation");
        profiler.expect(
            &exit,
            explanation.starts_with(&format!("{name} from "))
                && explanation.contains(&format!("(pid {me})")),
            "an explanation naming the signal and the sender",
        );
        if signal == libc::SIGKILL {
            profiler.expect(
                &exit,
                explanation.contains("not an OOM kill"),
                "not an OOM kill",
            );
        }
    }
}

/// A process that ignores SIGTERM: the SIGTERM is a `signal` line and no death; the SIGKILL a
/// second later kills it, and its `exit` says it came after the SIGTERM.
#[test]
fn a_sigkill_after_an_ignored_sigterm_says_so() {
    let _test = start_test!();
    let cgroup = TestCgroup::new("stubborn", 64 * MIB);
    let path = cgroup.path_str();
    let mut profiler = Profiler::watch(&["--cgroup", path, "--interval", "250ms"]);
    profiler.wait_watching(&[path]);

    let mut target = cgroup.spawn(&["ignore-term"]);
    target.wait_line("ready", PATIENCE);
    let pid = target.pid();
    send(&target, libc::SIGTERM);
    let (_, term) = profiler.wait_for("the SIGTERM's signal line", PATIENCE, |l| {
        is_line(l, "signal", path) && l["pid"] == pid
    });
    profiler.expect(&term, term["signal"] == "SIGTERM", "SIGTERM first");
    std::thread::sleep(Duration::from_secs(1));
    send(&target, libc::SIGKILL);
    let (status, _) = target.wait_exit(PATIENCE);
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{}", target.report());
    let exit = wait_exit(&mut profiler, path, pid);
    profiler.expect(&exit, u64_at(&exit, "exit_code") == 137, "exit_code 137");
    let explanation = str_at(&exit, "explanation");
    profiler.expect(
        &exit,
        explanation.contains(" s after a SIGTERM"),
        "an explanation saying the SIGKILL came after a SIGTERM",
    );
    // Nothing said it died of the SIGTERM.
    let died_of_term = profiler
        .lines_so_far()
        .iter()
        .any(|(_, l)| is_line(l, "exit", path) && l["signal"] == "SIGTERM");
    assert!(!died_of_term, "{}", profiler.report());
}

/// A SIGTERM flood costs a line a second: 500 SIGTERMs from the test in a burst are one
/// `signal` line, and the next SIGTERM after the second is over is a line carrying the 499
/// repeats; nothing is lost.
#[test]
fn repeated_signals_are_counted_not_each_told() {
    let _test = start_test!();
    let cgroup = TestCgroup::new("flooded", 64 * MIB);
    let path = cgroup.path_str();
    let mut profiler = Profiler::watch(&["--cgroup", path, "--interval", "250ms"]);
    profiler.wait_watching(&[path]);

    let mut target = cgroup.spawn(&["ignore-term"]);
    target.wait_line("ready", PATIENCE);
    let pid = target.pid();
    let started = std::time::Instant::now();
    for _ in 0..500 {
        send(&target, libc::SIGTERM);
    }
    let burst = started.elapsed();
    assert!(
        burst < Duration::from_millis(800),
        "500 kill(2) calls took {burst:?}: too slow to fall in one second"
    );
    let (_, first) = profiler.wait_for("the first SIGTERM's line", PATIENCE, |l| {
        is_line(l, "signal", path) && l["pid"] == pid
    });
    profiler.expect(&first, first["repeats"] == 0, "repeats 0 on the first");
    std::thread::sleep(Duration::from_millis(1200));
    send(&target, libc::SIGTERM);
    let (_, next) = profiler.wait_for("the next SIGTERM's line", PATIENCE, |l| {
        is_line(l, "signal", path) && l["pid"] == pid
    });
    profiler.expect(&next, next["repeats"] == 499, "the 499 repeats counted");
    send(&target, libc::SIGKILL);
    target.wait_exit(PATIENCE);
    wait_exit(&mut profiler, path, pid);
    let lines = profiler.lines_so_far();
    let terms = lines
        .iter()
        .filter(|(_, l)| is_line(l, "signal", path) && l["signal"] == "SIGTERM")
        .count();
    let lost = lines.iter().any(|(_, l)| l["type"] == "lost_events");
    assert!(
        terms == 2 && !lost,
        "{terms} SIGTERM lines, lost events {lost}: {}",
        profiler.report()
    );
}

/// The cgroup's last process exits with a code: one `exit` line with the code and its
/// meaning, once the cgroup is empty; a clean exit 0 likewise.
#[test]
fn the_last_process_exit_code_is_explained() {
    let _test = start_test!();
    let cgroup = TestCgroup::new("exits", 64 * MIB);
    let path = cgroup.path_str();
    let mut profiler = Profiler::watch(&["--cgroup", path, "--interval", "250ms"]);
    profiler.wait_watching(&[path]);

    for (code, meaning) in [(127, "command was not found"), (0, "exited normally")] {
        let code_text = code.to_string();
        let exiting = cgroup.spawn(&["exit", "--code", &code_text, "--after-ms", "100"]);
        let (status, _) = exiting.wait_exit(PATIENCE);
        assert_eq!(status.code(), Some(code), "{}", exiting.report());
        let exit = wait_exit(&mut profiler, path, exiting.pid());
        profiler.expect(
            &exit,
            u64_at(&exit, "exit_code") == u64::from(code.unsigned_abs()),
            &format!("exit_code {code}"),
        );
        profiler.expect(&exit, exit["cause"] == "exited", "cause exited");
        profiler.expect(&exit, exit["signal"].is_null(), "no signal");
        let explanation = str_at(&exit, "explanation");
        profiler.expect(
            &exit,
            explanation.starts_with(&format!("exit {code}: ")) && explanation.contains(meaning),
            &format!("an explanation of exit {code} ({meaning})"),
        );
    }
}

/// An OOM kill at the cgroup's own limit: `oom_kill` says `memcg` and names the cgroup (from
/// the kernel log), and the victim's `exit` says which limit was reached.
#[test]
fn an_oom_kill_names_the_limit_reached() {
    let _test = start_test!();
    let cgroup = TestCgroup::new("oom-limit", 64 * MIB);
    let path = cgroup.path_str();
    let mut profiler = Profiler::watch(&["--cgroup", path, "--interval", "250ms"]);
    profiler.wait_watching(&[path]);

    let leak = cgroup.spawn(&["leak", "--step-mib", "4", "--interval-ms", "20"]);
    let (status, _) = leak.wait_exit(PATIENCE);
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{}", leak.report());
    let pid = leak.pid();
    let (_, kill) = profiler.wait_for("the oom_kill line", PATIENCE, |l| {
        is_line(l, "oom_kill", path) && l["pid"] == pid
    });
    profiler.expect(&kill, kill["constraint"] == "memcg", "constraint memcg");
    profiler.expect(
        &kill,
        kill["oom_cgroup"] == path,
        &format!("oom_cgroup {path}"),
    );
    profiler.expect(
        &kill,
        kill["oom_limit_source"] == "cgroup",
        "oom_limit_source cgroup",
    );
    let exit = wait_exit(&mut profiler, path, pid);
    profiler.expect(&exit, exit["cause"] == "oom_limit", "cause oom_limit");
    profiler.expect(&exit, u64_at(&exit, "exit_code") == 137, "exit_code 137");
    profiler.expect(&exit, exit["oom_cgroup"] == path, "oom_cgroup");
    profiler.expect(
        &exit,
        exit["limit_source"] == "cgroup",
        "limit_source cgroup",
    );
    profiler.expect(
        &exit,
        str_at(&exit, "explanation") == "OOM-killed: its cgroup's limit of 64.0MiB was reached",
        "the limit in the explanation",
    );
    // The kernel's own SIGKILL is told by oom_kill, not as a signal from someone.
    let signalled = profiler
        .lines_so_far()
        .iter()
        .any(|(_, l)| is_line(l, "signal", path) && l["pid"] == pid);
    assert!(!signalled, "{}", profiler.report());
}

/// A container without a limit of its own in a pod with one, leaking: the OOM kill is at the
/// pod's limit, and the `exit` line says so, in the kernel's words.
#[test]
fn a_pod_limit_oom_names_the_pod() {
    let _test = start_test!();
    let node = KubeNode::new("deaths-pod-limit");
    let pod = node.add_pod("shop", "batch", Qos::Burstable);
    node.set_pod_limit(&pod, 48 * MIB);
    let mut container = node.create_container(&pod, "app", None);
    let cgroup = container.cgroup_str().to_owned();
    let pod_cgroup = pod.cgroup().display().to_string();
    let mut profiler = node.watch(&["--pod", "batch"]);
    profiler.wait_watching(&[&cgroup]);

    node.spawn(
        &mut container,
        &["leak", "--step-mib", "4", "--interval-ms", "20"],
    );
    let (status, _) = container.workload().wait_exit(PATIENCE);
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "{}",
        container.workload().report()
    );
    let (_, kill) = profiler.wait_for("the oom_kill line", PATIENCE, |l| {
        is_line(l, "oom_kill", &cgroup)
    });
    profiler.expect(&kill, kill["constraint"] == "memcg", "constraint memcg");
    profiler.expect(
        &kill,
        kill["oom_cgroup"] == pod_cgroup,
        &format!("oom_cgroup {pod_cgroup} (the pod's)"),
    );
    profiler.expect(
        &kill,
        kill["oom_limit_source"] == "pod",
        "oom_limit_source pod",
    );
    let victim = u64_at(&kill, "pid");
    let exit = profiler
        .wait_for("the victim's exit line", PATIENCE, |l| {
            is_line(l, "exit", &cgroup) && l["pid"] == victim
        })
        .1;
    profiler.expect(&exit, exit["cause"] == "oom_limit", "cause oom_limit");
    profiler.expect(&exit, exit["limit_source"] == "pod", "limit_source pod");
    profiler.expect(&exit,
        str_at(&exit, "explanation")
            == "OOM-killed: the pod's limit of 48.0MiB was reached; this container has no limit of its own",
        "the pod's limit in the explanation",
    );
}
