//! A `kill -9` of a watch, and of the agent (what an OOM kill or a pod deleted without grace
//! does to it), runs none of the profiler's clean-up: every BPF program, map, link and BTF
//! object it loaded must go with its file descriptors, and no probe may stay in tracefs.
//!
//! Other tests (and other profilers) may load programs on this host at the same time, so
//! nothing here counts the kernel's objects: the ids are the ones the profiler's own
//! descriptors hold (`/proc/PID/fdinfo`), and each is asked for by id afterwards
//! (`BPF_*_GET_FD_BY_ID`); ids are allocated cyclically, so a gone id is not soon reused.

use std::collections::BTreeSet;
use std::fmt;
use std::fs;
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

use profiler_e2e::{start_test, Agent, KubeNode, Profiler, Qos, TestCgroup, MIB, PATIENCE};

/// How long the kernel may take to free what a dead process held (programs are freed after
/// an RCU grace period, from a work queue).
const RELEASE: Duration = Duration::from_secs(10);

/// The kinds of BPF object a process can hold, with the `bpf(2)` command that opens one by
/// id and the fdinfo key that names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Prog,
    Map,
    Link,
    Btf,
}

impl Kind {
    const ALL: [Kind; 4] = [Kind::Prog, Kind::Map, Kind::Link, Kind::Btf];

    /// The fdinfo key of this kind's id (a link's fdinfo has its program's `prog_id` too).
    fn key(self) -> &'static str {
        match self {
            Kind::Prog => "prog_id",
            Kind::Map => "map_id",
            Kind::Link => "link_id",
            Kind::Btf => "btf_id",
        }
    }

    /// `BPF_PROG_GET_FD_BY_ID` and its kin (include/uapi/linux/bpf.h's `enum bpf_cmd`).
    fn get_fd_by_id(self) -> libc::c_long {
        match self {
            Kind::Prog => 13,
            Kind::Map => 14,
            Kind::Btf => 19,
            Kind::Link => 30,
        }
    }

    /// Whether the kernel still has object `id` of this kind: opened by id, then closed.
    fn exists(self, id: u32) -> bool {
        // The id is the first field of every GET_FD_BY_ID attribute; the rest must be zero.
        let mut attr = [0u32; 8];
        attr[0] = id;
        // SAFETY: bpf(2) reads `size_of_val(&attr)` bytes of `attr`, which lives until it
        // returns; the fd it may return is ours and closed below.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                self.get_fd_by_id(),
                attr.as_mut_ptr(),
                size_of_val(&attr),
            )
        };
        if fd >= 0 {
            // SAFETY: a descriptor bpf(2) just gave this thread.
            unsafe { libc::close(fd as libc::c_int) };
            return true;
        }
        let error = std::io::Error::last_os_error();
        match error.raw_os_error() {
            Some(libc::ENOENT) => false,
            _ => panic!("bpf(GET_FD_BY_ID) of {self:?} {id}: {error}"),
        }
    }
}

/// The ids of the BPF objects a process holds, by kind.
#[derive(Default)]
struct Held(std::collections::BTreeMap<Kind, BTreeSet<u32>>);

impl Held {
    /// What `pid`'s descriptors hold now.
    fn by(pid: u32) -> Held {
        let mut held = Held::default();
        let dir = format!("/proc/{pid}/fdinfo");
        let entries = fs::read_dir(&dir).unwrap_or_else(|e| panic!("listing {dir}: {e}"));
        for entry in entries.flatten() {
            // A descriptor closed meanwhile is simply not counted.
            let Ok(info) = fs::read_to_string(entry.path()) else {
                continue;
            };
            for line in info.lines() {
                let Some((key, value)) = line.split_once(':') else {
                    continue;
                };
                let Some(kind) = Kind::ALL.into_iter().find(|k| k.key() == key.trim()) else {
                    continue;
                };
                if let Ok(id) = value.trim().parse::<u32>() {
                    held.0.entry(kind).or_default().insert(id);
                }
            }
        }
        held
    }

    fn count(&self, kind: Kind) -> usize {
        self.0.get(&kind).map_or(0, BTreeSet::len)
    }

    /// Those of them the kernel still has.
    fn still_there(&self) -> Held {
        Held(
            self.0
                .iter()
                .map(|(kind, ids)| {
                    let left = ids.iter().copied().filter(|&id| kind.exists(id)).collect();
                    (*kind, left)
                })
                .filter(|(_, ids): &(Kind, BTreeSet<u32>)| !ids.is_empty())
                .collect(),
        )
    }

    fn is_empty(&self) -> bool {
        self.0.values().all(BTreeSet::is_empty)
    }
}

impl fmt::Display for Held {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kinds: Vec<String> = self
            .0
            .iter()
            .map(|(kind, ids)| format!("{kind:?} {ids:?}"))
            .collect();
        write!(f, "{}", kinds.join(", "))
    }
}

/// The lines of tracefs's kprobe_events and uprobe_events that name process `pid` (aya names
/// the probes it makes through that legacy interface `aya_PID_...`; they outlive their
/// maker). Empty where the kernel has no such files.
fn legacy_probes(pid: u32) -> Vec<String> {
    let mine = format!("aya_{pid}_");
    let mut lines = Vec::new();
    for file in ["kprobe_events", "uprobe_events"] {
        let text = fs::read_to_string(format!("/sys/kernel/tracing/{file}")).unwrap_or_default();
        lines.extend(
            text.lines()
                .filter(|l| l.contains(&mine))
                .map(str::to_owned),
        );
    }
    lines
}

/// With `profiler` up and attached: what its descriptors hold, which must be seen
/// (programs, maps and links) and found by id.
#[track_caller]
fn held_while_running(profiler: &Profiler, what: &str) -> Held {
    let held = Held::by(profiler.pid());
    for kind in [Kind::Prog, Kind::Map, Kind::Link] {
        if held.count(kind) == 0 {
            profiler.fail(format_args!(
                "{what}: its descriptors hold no {kind:?} (held: {held}); the test does not \
                 see what it attached"
            ));
        }
    }
    let missing: Vec<String> = held
        .0
        .iter()
        .flat_map(|(kind, ids)| {
            ids.iter()
                .filter(|&&id| !kind.exists(id))
                .map(move |id| format!("{kind:?} {id}"))
        })
        .collect();
    if !missing.is_empty() {
        profiler.fail(format_args!(
            "{what}: ids from its fdinfo that bpf(2) does not find while it runs: {missing:?}"
        ));
    }
    held
}

/// SIGKILLs `profiler` and waits until it is reaped; returns when it was.
#[track_caller]
fn kill_9(profiler: &Profiler, what: &str) -> Instant {
    // SAFETY: kill(2) on the pid of the profiler this test started and has not reaped.
    unsafe { libc::kill(profiler.pid() as libc::pid_t, libc::SIGKILL) };
    let (status, reaped) = profiler.wait(PATIENCE);
    if status.signal() != Some(libc::SIGKILL) {
        profiler.fail(format_args!(
            "{what}: expected death by SIGKILL, got {status}"
        ));
    }
    reaped
}

/// What of `held` the kernel still has once it is all gone or `within` after `since`.
fn left_after(held: &Held, since: Instant, within: Duration) -> Held {
    loop {
        let left = held.still_there();
        if left.is_empty() || since.elapsed() > within {
            return left;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// With `profiler` up and attached: what it holds is seen, then it is SIGKILLed and
/// everything must be gone within [`RELEASE`], tracefs probes too.
#[track_caller]
fn kill_9_releases_everything(profiler: &Profiler, what: &str) {
    let held = held_while_running(profiler, what);
    let probes_before = legacy_probes(profiler.pid());
    let reaped = kill_9(profiler, what);
    let left = left_after(&held, reaped, RELEASE);
    if !left.is_empty() {
        profiler.fail(format_args!(
            "{what}: {RELEASE:?} after the SIGKILL the kernel still has {left} (it held {held})"
        ));
    }
    let took = reaped.elapsed();
    let probes = legacy_probes(profiler.pid());
    if !probes.is_empty() {
        profiler.fail(format_args!(
            "{what}: tracefs probes of the dead profiler: {probes:?} (while it ran: \
             {probes_before:?})"
        ));
    }
    eprintln!(
        "{what}: held {} programs, {} maps, {} links, {} BTF; all gone {took:?} after it was \
         reaped",
        held.count(Kind::Prog),
        held.count(Kind::Map),
        held.count(Kind::Link),
        held.count(Kind::Btf)
    );
}

/// A copy of one of `pid`'s program descriptors (not a link's), taken with pidfd_getfd(2),
/// and the program's id.
#[track_caller]
fn copy_a_program(pid: u32) -> (OwnedFd, u32) {
    let dir = format!("/proc/{pid}/fdinfo");
    let (fd, id) = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("listing {dir}: {e}"))
        .flatten()
        .find_map(|entry| {
            let fd: i32 = entry.file_name().to_str()?.parse().ok()?;
            let info = fs::read_to_string(entry.path()).ok()?;
            let field = |key: &str| {
                info.lines()
                    .find_map(|l| l.strip_prefix(key)?.trim().parse::<u32>().ok())
            };
            match (field("prog_id:"), field("link_id:")) {
                (Some(id), None) => Some((fd, id)),
                _ => None,
            }
        })
        .unwrap_or_else(|| panic!("no program descriptor in {dir}"));
    // SAFETY: plain system calls on a pid and a descriptor number; what they return is
    // checked, and each descriptor is owned once.
    unsafe {
        let pidfd = libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0);
        assert!(
            pidfd >= 0,
            "pidfd_open({pid}): {}",
            std::io::Error::last_os_error()
        );
        let pidfd = OwnedFd::from_raw_fd(pidfd as libc::c_int);
        let copy = libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0);
        assert!(
            copy >= 0,
            "pidfd_getfd({pid}, {fd}): {}",
            std::io::Error::last_os_error()
        );
        (OwnedFd::from_raw_fd(copy as libc::c_int), id)
    }
}

/// `watch --mode MODE --stacks` on a test cgroup, SIGKILLed once it watches.
#[track_caller]
fn watch_killed(mode: &str) {
    let cgroup = TestCgroup::new(&format!("detach-{mode}"), 64 * MIB);
    let path = cgroup.path_str();
    let mut profiler = Profiler::watch(&[
        "--mode",
        mode,
        "--stacks",
        "--cgroup",
        path,
        "--interval",
        "250ms",
    ]);
    profiler.wait_watching(&[path]);
    kill_9_releases_everything(&profiler, &format!("watch --mode {mode}"));
}

/// The tracepoint mode, this host's (its kernel has no kprobes: `cargo xtask vm-test --only
/// detach` kills kprobe and fentry watches on the Debian kernels).
#[test]
fn kill_9_of_a_watch_leaves_nothing_attached() {
    let _test = start_test!();
    watch_killed("tracepoint");
}

/// The agent over a node with one container, the charge path attached all the time (by
/// default it is only while a container needs it) and its stacks sampled.
#[test]
fn kill_9_of_the_agent_leaves_nothing_attached() {
    let _test = start_test!();
    let node = KubeNode::new("detach");
    let pod = node.add_pod("shop", "cart", Qos::Burstable);
    let _container = node.create_container(&pod, "app", Some(64 * MIB));
    let flags = node.flags();
    let mut args: Vec<&str> = flags.iter().map(String::as_str).collect();
    args.extend([
        "--mode",
        "tracepoint",
        "--charge-tracing",
        "always",
        "--stacks",
        "always",
        "--interval",
        "250ms",
    ]);
    let agent = Agent::start(&args);
    // /healthz answers before the first round has attached the container's slot: wait for
    // the container's series.
    let deadline = Instant::now() + PATIENCE;
    while !agent.metrics().contains("container=\"app\"") {
        if Instant::now() > deadline {
            agent
                .profiler
                .fail("no series of the container in /metrics");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    kill_9_releases_everything(&agent.profiler, "serve");
}

/// The test's own eyes: a program whose descriptor this test copied before the kill outlives
/// the profiler, and is seen to; once the copy is closed it goes too. A profiler that left
/// a program behind would fail [`kill_9_releases_everything`] the same way.
#[test]
fn a_program_held_after_the_kill_is_seen() {
    let _test = start_test!();
    let cgroup = TestCgroup::new("detach-held", 64 * MIB);
    let path = cgroup.path_str();
    let mut profiler = Profiler::watch(&["--mode", "tracepoint", "--cgroup", path]);
    profiler.wait_watching(&[path]);
    let held = held_while_running(&profiler, "watch");
    let (copy, id) = copy_a_program(profiler.pid());
    let reaped = kill_9(&profiler, "watch");
    // Everything else goes; the copied program stays.
    std::thread::sleep(Duration::from_secs(1));
    let left = left_after(&held, reaped, Duration::ZERO);
    let expected: BTreeSet<u32> = [id].into();
    if left.0.get(&Kind::Prog) != Some(&expected) {
        profiler.fail(format_args!(
            "with program {id} held by the test, the kernel still has {left} (expected that \
             program, and maybe the maps it uses and the BTF)"
        ));
    }
    drop(copy);
    let left = left_after(&held, Instant::now(), RELEASE);
    if !left.is_empty() {
        profiler.fail(format_args!(
            "the test's copy of program {id} closed, the kernel still has {left}"
        ));
    }
}
