//! Reading: recorded `/proc/PID/status` text, a made-up cgroup tree in a temporary directory,
//! and a real child process.
use std::{
    fs,
    path::{Path, PathBuf},
    process::{Child, Command},
    thread,
    time::{Duration, Instant},
};

use crate::processes::{
    procfs::{
        cgroup_pids, parse_start_ticks, parse_status, read_cgroup, read_process, MAX_CGROUPS,
        MAX_PROCESSES,
    },
    ProcessReading,
};

/// `/proc/PID/status` of `cat` on a 6.18 kernel.
const USER_PROCESS: &str = "Name:\tcat
Umask:\t0022
State:\tR (running)
Tgid:\t11420
Ngid:\t0
Pid:\t11420
PPid:\t11418
TracerPid:\t0
Uid:\t0\t0\t0\t0
Gid:\t0\t0\t0\t0
FDSize:\t256
Groups:\t 
NStgid:\t11420
NSpid:\t11420
NSpgid:\t11418
NSsid:\t9081
Kthread:\t0
VmPeak:\t    3060 kB
VmSize:\t    3060 kB
VmLck:\t       0 kB
VmPin:\t       0 kB
VmHWM:\t    1612 kB
VmRSS:\t    1612 kB
RssAnon:\t     112 kB
RssFile:\t    1500 kB
RssShmem:\t       0 kB
VmData:\t     360 kB
VmStk:\t     132 kB
VmExe:\t      20 kB
VmLib:\t    1528 kB
VmPTE:\t      44 kB
VmSwap:\t       0 kB
HugetlbPages:\t       0 kB
CoreDumping:\t0
THP_enabled:\t1
Threads:\t1
SigQ:\t0/96364
";

/// `/proc/2/status` (a kernel thread: no memory of its own) on the same kernel.
const KERNEL_THREAD: &str = "Name:\tkthreadd
Umask:\t0022
State:\tS (sleeping)
Tgid:\t2
Ngid:\t0
Pid:\t2
PPid:\t0
TracerPid:\t0
Uid:\t0\t0\t0\t0
Gid:\t0\t0\t0\t0
FDSize:\t64
Groups:\t 
NStgid:\t2
NSpid:\t2
NSpgid:\t0
NSsid:\t0
Kthread:\t1
Threads:\t1
SigQ:\t0/96364
";

/// A zombie: exited, not yet reaped, its memory gone.
const ZOMBIE: &str = "Name:\tworker
Umask:\t0022
State:\tZ (zombie)
Tgid:\t4242
Pid:\t4242
PPid:\t1
Threads:\t1
";

#[test]
fn a_status_gives_the_three_kinds_of_resident_memory() {
    assert_eq!(
        parse_status(11420, USER_PROCESS),
        Some(ProcessReading {
            pid: 11420,
            comm: "cat".to_owned(),
            rss_anon: 112 * 1024,
            rss_file: 1500 * 1024,
            rss_shmem: 0,
            started_at: None,
        })
    );
}

#[test]
fn a_kernel_thread_or_a_zombie_has_no_reading() {
    assert_eq!(parse_status(2, KERNEL_THREAD), None);
    assert_eq!(parse_status(4242, ZOMBIE), None);
}

#[test]
fn nonsense_in_a_figure_gives_no_reading() {
    let broken = USER_PROCESS.replace("RssFile:\t    1500 kB", "RssFile:\t    lots kB");
    assert_eq!(parse_status(11420, &broken), None);
    let no_unit = USER_PROCESS.replace("RssAnon:\t     112 kB", "RssAnon:\t     112");
    assert_eq!(parse_status(11420, &no_unit), None);
    assert_eq!(parse_status(1, ""), None);
}

#[test]
fn a_name_is_read_as_comm_holds_it() {
    // `prctl(PR_SET_NAME, "a b\\c\nd")`: status escapes the backslash and the newline.
    let odd = USER_PROCESS.replace("Name:\tcat", "Name:\ta b\\\\c\\nd");
    let reading = parse_status(1, &odd).expect("still a process");
    assert_eq!(reading.comm, "a b\\c\nd");
    let spaced = USER_PROCESS.replace("Name:\tcat", "Name:\t  x ");
    let reading = parse_status(1, &spaced).expect("still a process");
    assert_eq!(reading.comm, "  x ");
}

/// Writes `pids` (one a line) as `dir/cgroup.procs`, creating `dir`.
#[track_caller]
fn cgroup(dir: &Path, pids: &[u32]) {
    fs::create_dir_all(dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    let text: String = pids.iter().map(|p| format!("{p}\n")).collect();
    fs::write(dir.join("cgroup.procs"), text)
        .unwrap_or_else(|e| panic!("writing {}/cgroup.procs: {e}", dir.display()));
}

#[test]
fn a_cgroup_tree_is_read_depth_first_each_pid_once() {
    let root = tempfile::tempdir().expect("a temporary directory");
    let top = root.path();
    cgroup(top, &[1, 2]);
    cgroup(&top.join("b"), &[20]);
    cgroup(&top.join("a"), &[10, 2, 10]);
    cgroup(&top.join("a/deeper"), &[11]);
    // A child cgroup removed between the listing of its parent and its own reading.
    fs::create_dir(top.join("c")).expect("an empty directory");
    // A file that is not a cgroup.
    fs::write(top.join("memory.current"), "0\n").expect("a file");
    assert_eq!(cgroup_pids(top).expect("the tree"), [1, 2, 10, 11, 20]);
}

#[test]
fn only_a_cgroup_that_cannot_be_read_itself_is_an_error() {
    let root = tempfile::tempdir().expect("a temporary directory");
    let gone = root.path().join("gone");
    assert!(cgroup_pids(&gone).is_err());
    assert!(read_cgroup(&gone).is_err());
}

#[test]
fn the_walk_stops_at_its_bounds() {
    let root = tempfile::tempdir().expect("a temporary directory");
    let top = root.path();
    // A chain deeper than the bound, one process per cgroup.
    let mut dir = top.to_path_buf();
    for depth in 0..(MAX_CGROUPS as u32 + 6) {
        cgroup(&dir, &[depth + 1]);
        dir.push("child");
    }
    let pids = cgroup_pids(top).expect("the chain");
    assert_eq!(pids.len(), MAX_CGROUPS);
    assert_eq!(pids.last(), Some(&(MAX_CGROUPS as u32)));

    let many = root.path().join("many");
    let listed: Vec<u32> = (1..=MAX_PROCESSES as u32 + 100).collect();
    cgroup(&many, &listed);
    cgroup(&many.join("child"), &[999_999]);
    let pids = cgroup_pids(&many).expect("the list");
    assert_eq!(pids, listed[..MAX_PROCESSES]);
}

/// A child process, SIGKILLed and reaped when dropped (also when a test panics): only the
/// pid this test started is ever signalled.
struct Started(Child);

impl Drop for Started {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `sleep 30` and waits until it runs `sleep` with its executable mapped: between
/// the fork and the exec it still has the test's name, and the exec sets the new name before
/// the new program touches any page.
fn start_sleep() -> (Started, ProcessReading) {
    let child = Command::new("sleep")
        .arg("30")
        .spawn()
        .expect("`sleep` can be started");
    let child = Started(child);
    let pid = child.0.id();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match read_process(pid) {
            Ok(Some(reading)) if reading.comm == "sleep" && reading.rss_file > 0 => {
                return (child, reading)
            }
            other => assert!(
                Instant::now() < deadline,
                "pid {pid} never read as `sleep` with its executable mapped: {other:?}"
            ),
        }
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_real_process_is_read_from_proc() {
    let (child, reading) = start_sleep();
    assert_eq!(reading.pid, child.0.id());
    assert!(reading.rss() > 0, "{reading:?}");
    assert!(
        reading.rss_file > 0,
        "its executable and libc are mapped: {reading:?}"
    );
}

#[test]
fn a_cgroup_of_real_processes_is_read_skipping_those_gone() {
    let (child, _) = start_sleep();
    let sleep = child.0.id();
    let me = std::process::id();
    // Above the kernel's largest possible pid (PID_MAX_LIMIT, 4194304): never a process.
    let never = 4_194_305;
    let root = tempfile::tempdir().expect("a temporary directory");
    cgroup(root.path(), &[sleep, never]);
    cgroup(&root.path().join("sub"), &[me, sleep]);
    let readings = read_cgroup(root.path()).expect("the made-up cgroup");
    let found: Vec<(u32, bool)> = readings.iter().map(|r| (r.pid, r.rss() > 0)).collect();
    assert_eq!(found, [(sleep, true), (me, true)]);
    assert_eq!(readings[0].comm, "sleep");
}

/// The directory of this process's memory cgroup: the v1 `memory` hierarchy's, else the v2
/// one's; `None` when neither is mounted where it is looked for.
fn own_memory_cgroup() -> Option<PathBuf> {
    let text = fs::read_to_string("/proc/self/cgroup").ok()?;
    let mut v2 = None;
    for line in text.lines() {
        let mut fields = line.splitn(3, ':');
        let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
        let path = path.trim_start_matches('/');
        if controllers.split(',').any(|c| c == "memory") {
            return Some(Path::new("/sys/fs/cgroup/memory").join(path));
        }
        if controllers.is_empty() {
            v2 = Some(Path::new("/sys/fs/cgroup").join(path));
        }
    }
    v2
}

#[test]
fn the_test_is_found_in_its_own_cgroup() {
    // Read only: nothing is created, so neither root nor a cgroup of the test's own is needed.
    let Some(dir) = own_memory_cgroup().filter(|d| d.join("cgroup.procs").exists()) else {
        eprintln!("skipped: this process's memory cgroup is not mounted where it is looked for");
        return;
    };
    let me = std::process::id();
    let readings = read_cgroup(&dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()));
    let mine = readings
        .iter()
        .find(|r| r.pid == me)
        .unwrap_or_else(|| panic!("pid {me} not among {}: {readings:?}", dir.display()));
    assert!(mine.rss_anon > 0, "{mine:?}");
}

#[test]
fn the_start_time_is_read_after_a_name_with_parentheses_and_spaces() {
    // A recorded /proc/PID/stat (`sleep`), and the same with a hostile name.
    let stat = "4242 (sleep) S 4200 4242 4200 34816 4242 4194304 96 0 0 0 0 0 0 0 20 0 1 0 \
                123456 5685248 128 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
    assert_eq!(parse_start_ticks(stat), Some(123456));
    let hostile = stat.replace("(sleep)", "(a) b (c d)");
    assert_eq!(parse_start_ticks(&hostile), Some(123456));
    assert_eq!(parse_start_ticks("4242 (cut short) S 1"), None);
    assert_eq!(parse_start_ticks(""), None);
}

#[test]
fn a_real_process_has_a_start_time_of_now() {
    let me = read_process(std::process::id())
        .expect("our own status")
        .expect("our own memory");
    let started = me.started_at.expect("our start time");
    let now = crate::collector::unix_now();
    assert!(started <= now + 1.0, "started {started}, now {now}");
    assert!(
        now - started < 24.0 * 3600.0,
        "a test process is younger than a day"
    );
}
