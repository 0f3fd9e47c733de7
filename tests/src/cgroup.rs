//! Test memory cgroups (cgroup v1) and the workloads started inside them.

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::process::{self, lock, Feed, NoMatch, Reaper};
use crate::{require_root, workload_bin};

/// Where the cgroup v1 memory hierarchy is mounted.
pub(crate) const MEMORY_ROOT: &str = "/sys/fs/cgroup/memory";

/// How long the guard waits for a killed process to be reaped.
const KILL_WAIT: Duration = Duration::from_secs(10);

/// How often, and how far apart, the guard retries an `rmdir` the kernel refuses as busy.
const RMDIR_TRIES: u32 = 50;
const RMDIR_PAUSE: Duration = Duration::from_millis(100);

static NEXT: AtomicU64 = AtomicU64::new(0);

/// The memory cgroup (v1) this test process runs in, from `/proc/self/cgroup`.
pub fn own_memcg() -> Result<PathBuf, String> {
    let text = fs::read_to_string("/proc/self/cgroup")
        .map_err(|e| format!("reading /proc/self/cgroup: {e}"))?;
    text.lines()
        .find_map(|line| {
            let mut fields = line.splitn(3, ':');
            let _id = fields.next()?;
            let controllers = fields.next()?;
            let path = fields.next()?;
            controllers
                .split(',')
                .any(|c| c == "memory")
                .then(|| Path::new(MEMORY_ROOT).join(path.trim_start_matches('/')))
        })
        .ok_or_else(|| {
            format!(
                "/proc/self/cgroup has no memory: line; these tests need the cgroup v1 memory \
                 controller (mounted at {MEMORY_ROOT})\n{text}"
            )
        })
}

/// The `oom_kill` counter of the v1 memory cgroup `dir`'s `memory.oom_control`: how many
/// processes the kernel OOM-killed in it; panics without one.
#[track_caller]
pub fn oom_kill_count(dir: &Path) -> u64 {
    let text = fs::read_to_string(dir.join("memory.oom_control"))
        .unwrap_or_else(|e| panic!("reading {}/memory.oom_control: {e}", dir.display()));
    text.lines()
        .find_map(|line| line.strip_prefix("oom_kill "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "no `oom_kill N` line in {}/memory.oom_control:\n{text}",
                dir.display()
            )
        })
}

/// A uniquely named child memcg of [`own_memcg`], with a memory limit.
///
/// It is a guard: on drop (also while a test panics) it SIGKILLs every process [`spawn`]ed into
/// it, waits for them, then removes the directory (child cgroups first), retrying briefly while
/// the kernel still reports it busy. It never signals a process it did not start.
///
/// [`spawn`]: TestCgroup::spawn
pub struct TestCgroup {
    path: PathBuf,
    processes: Mutex<Vec<Arc<Reaper>>>,
    cleaned: bool,
}

impl TestCgroup {
    /// Creates `<own memcg>/profiler-e2e-<name>-<pid>-<counter>` with `memory.limit_in_bytes`
    /// set to `limit_bytes` (and `memory.swappiness` 0 where the kernel allows it).
    #[track_caller]
    pub fn new(name: &str, limit_bytes: u64) -> Self {
        let cgroup = Self::without_limit(name);
        // A failed write panics here and the guard, already built, removes the directory.
        set_limit(&cgroup.path, limit_bytes);
        cgroup
    }

    /// Like [`new`](Self::new), but without a memory limit of its own (the kernel's default,
    /// "no limit"), e.g. for a fake node whose limits sit on cgroups further down.
    #[track_caller]
    pub fn without_limit(name: &str) -> Self {
        require_root();
        assert!(
            !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "test cgroup name {name:?} must be non-empty [A-Za-z0-9_-]"
        );
        let parent = own_memcg().unwrap_or_else(|e| panic!("{e}"));
        let unique = format!(
            "profiler-e2e-{name}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let path = parent.join(unique);
        fs::create_dir(&path)
            .unwrap_or_else(|e| panic!("could not create memcg {}: {e}", path.display()));
        // Not every kernel lets a child change it; the machine has no swap anyway.
        let _ = fs::write(path.join("memory.swappiness"), "0");
        Self {
            path,
            processes: Mutex::new(Vec::new()),
            cleaned: false,
        }
    }

    /// Creates the descendant cgroup `relative` (e.g. `kubepods/burstable/pod<uid>`) and any
    /// missing cgroups on the way, with `memory.limit_in_bytes` set to `limit_bytes` if given;
    /// returns its path. The guard removes it with the rest of the tree.
    #[track_caller]
    pub fn create_child(&self, relative: &Path, limit_bytes: Option<u64>) -> PathBuf {
        let path = self.descendant(relative);
        fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("could not create memcg {}: {e}", path.display()));
        if let Some(limit_bytes) = limit_bytes {
            set_limit(&path, limit_bytes);
        }
        path
    }

    /// Removes the descendant cgroup `relative` and its children now; its processes must have
    /// exited (the kernel refuses to remove a cgroup with tasks). Panics if it stays.
    #[track_caller]
    pub fn remove_child(&self, relative: &Path) {
        let path = self.descendant(relative);
        if let Err(e) = remove_tree(&path) {
            panic!("{e}");
        }
    }

    /// `relative` below this cgroup; panics unless it is a plain relative path (no `..`).
    #[track_caller]
    fn descendant(&self, relative: &Path) -> PathBuf {
        assert!(
            relative.components().count() > 0
                && relative
                    .components()
                    .all(|c| matches!(c, std::path::Component::Normal(_))),
            "{} is not a path below the test cgroup",
            relative.display()
        );
        self.path.join(relative)
    }

    /// The cgroup's directory, e.g. `/sys/fs/cgroup/memory/<own>/profiler-e2e-oom-123-0`; this is
    /// the canonical path the profiler reports in its `cgroup` fields.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// [`path`](Self::path) as a string, for command lines and comparisons with JSON fields.
    pub fn path_str(&self) -> &str {
        self.path
            .to_str()
            .expect("test cgroup paths are built from UTF-8 names")
    }

    /// The cgroup id: the inode number of the cgroup's directory.
    pub fn id(&self) -> u64 {
        fs::metadata(&self.path)
            .unwrap_or_else(|e| panic!("stat {}: {e}", self.path.display()))
            .ino()
    }

    /// Reads one of the cgroup's control files.
    #[track_caller]
    pub fn read(&self, file: &str) -> String {
        let path = self.path.join(file);
        fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
    }

    /// Writes one of the cgroup's control files.
    #[track_caller]
    pub fn write(&self, file: &str, value: &str) {
        let path = self.path.join(file);
        fs::write(&path, value)
            .unwrap_or_else(|e| panic!("writing {value:?} to {}: {e}", path.display()));
    }

    /// The `oom_kill` counter of `memory.oom_control`: how many processes the kernel OOM-killed
    /// in this cgroup.
    #[track_caller]
    pub fn oom_kill_count(&self) -> u64 {
        oom_kill_count(&self.path)
    }

    /// Starts the workload binary with `args` inside this cgroup from birth: the child moves
    /// itself into the cgroup between fork and exec, so every page it touches is charged here.
    pub fn spawn(&self, args: &[&str]) -> Workload {
        self.spawn_into(&self.path, args)
    }

    /// Like [`spawn`](Self::spawn), into the descendant cgroup `relative` (made with
    /// [`create_child`](Self::create_child)); the guard kills it like the others.
    #[track_caller]
    pub fn spawn_in(&self, relative: &Path, args: &[&str]) -> Workload {
        let path = self.descendant(relative);
        self.spawn_into(&path, args)
    }

    /// Like [`spawn`](Self::spawn), for another program (`stress-ng`): it and its children
    /// are charged here. The guard SIGKILLs the program itself, as the others.
    pub fn spawn_program(&self, program: &Path, args: &[&str]) -> Workload {
        self.spawn_program_into(&self.path, program, args)
    }

    fn spawn_into(&self, cgroup: &Path, args: &[&str]) -> Workload {
        self.spawn_program_into(cgroup, &workload_bin(), args)
    }

    fn spawn_program_into(&self, cgroup: &Path, program: &Path, args: &[&str]) -> Workload {
        let procs = CString::new(cgroup.join("cgroup.procs").as_os_str().as_bytes())
            .expect("cgroup paths have no NUL bytes");
        let mut command = process::command(program);
        command.args(args);
        // SAFETY: only async-signal-safe calls (open, write, close) on memory prepared before fork.
        unsafe {
            command.pre_exec(move || {
                let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                if fd < 0 {
                    return Err(io::Error::last_os_error());
                }
                // "0" means the writing process itself.
                let written = libc::write(fd, b"0".as_ptr().cast(), 1);
                let error = io::Error::last_os_error();
                libc::close(fd);
                if written != 1 {
                    return Err(error);
                }
                Ok(())
            });
        }
        let spawned = process::spawn(&mut command, |line| line);
        lock(&self.processes).push(Arc::clone(&spawned.reaper));
        Workload {
            args: args.iter().map(|&a| a.to_owned()).collect(),
            started: Instant::now(),
            reaper: spawned.reaper,
            stdout: spawned.stdout,
            stderr: spawned.stderr,
            cursor: 0,
            kill_on_drop: false,
        }
    }

    /// Kills this cgroup's processes and removes it now; panics if it could not be removed.
    #[track_caller]
    pub fn remove(mut self) {
        if let Err(e) = self.clean_up() {
            panic!("{e}");
        }
    }

    fn clean_up(&mut self) -> Result<(), String> {
        self.cleaned = true;
        let processes = std::mem::take(&mut *lock(&self.processes));
        for process in &processes {
            process.signal(libc::SIGKILL);
        }
        let mut problems = Vec::new();
        for process in &processes {
            if process.wait(KILL_WAIT).is_none() {
                problems.push(format!(
                    "pid {} was not reaped {KILL_WAIT:?} after SIGKILL",
                    process.pid()
                ));
            }
        }
        if let Err(e) = remove_tree(&self.path) {
            problems.push(e);
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "cleaning up test cgroup {}: {}",
                self.path.display(),
                problems.join("; ")
            ))
        }
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        if self.cleaned {
            return;
        }
        // No panic here: a test may already be panicking, and a second panic would abort.
        if let Err(e) = self.clean_up() {
            eprintln!("warning: {e}");
        }
    }
}

/// Writes `memory.limit_in_bytes` of the cgroup at `path` and checks it reads back the same.
#[track_caller]
fn set_limit(path: &Path, limit_bytes: u64) {
    let file = path.join("memory.limit_in_bytes");
    fs::write(&file, limit_bytes.to_string())
        .unwrap_or_else(|e| panic!("writing {limit_bytes} to {}: {e}", file.display()));
    let written =
        fs::read_to_string(&file).unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
    assert_eq!(
        written.trim(),
        limit_bytes.to_string(),
        "{} reads back differently from what was written (use a multiple of the page size)",
        file.display()
    );
}

/// Removes a cgroup directory and its child cgroups (deepest first), retrying while busy.
pub(crate) fn remove_tree(path: &Path) -> Result<(), String> {
    match fs::read_dir(path) {
        Ok(entries) => {
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    remove_tree(&entry.path())?;
                }
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(format!("listing {}: {e}", path.display())),
    }
    let mut tries = 0;
    loop {
        match fs::remove_dir(path) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(_) if tries + 1 < RMDIR_TRIES => {
                tries += 1;
                thread::sleep(RMDIR_PAUSE);
            }
            Err(e) => {
                let tasks = fs::read_to_string(path.join("cgroup.procs")).unwrap_or_default();
                return Err(format!(
                    "rmdir {} failed after {RMDIR_TRIES} tries: {e} (processes still in it: [{}])",
                    path.display(),
                    tasks.split_whitespace().collect::<Vec<_>>().join(" ")
                ));
            }
        }
    }
}

/// A workload process started by [`TestCgroup::spawn`] (the cgroup guard owns its lifetime), or
/// any other program a test starts and follows the output of with [`Workload::start`], such as
/// `runc run`, whose output is the container's.
pub struct Workload {
    args: Vec<String>,
    started: Instant,
    reaper: Arc<Reaper>,
    stdout: Arc<Feed<String>>,
    stderr: Arc<Feed<String>>,
    cursor: usize,
    /// Set for [`Workload::start`]ed processes, which no cgroup guard kills.
    kill_on_drop: bool,
}

impl Workload {
    /// Starts `program` with `args` in the test's own cgroups, stdin closed and output
    /// collected. Dropping the returned value SIGKILLs the process if it still runs.
    pub fn start(program: &Path, args: &[&str]) -> Self {
        let mut command = process::command(program);
        command.args(args);
        let spawned = process::spawn(&mut command, |line| line);
        let mut all = vec![program.display().to_string()];
        all.extend(args.iter().map(|&a| a.to_owned()));
        Self {
            args: all,
            started: Instant::now(),
            reaper: spawned.reaper,
            stdout: spawned.stdout,
            stderr: spawned.stderr,
            cursor: 0,
            kill_on_drop: true,
        }
    }

    /// The workload's pid (the kernel's tgid; the tests run in the initial pid namespace).
    pub fn pid(&self) -> u32 {
        self.reaper.pid().unsigned_abs()
    }

    /// Waits for the next stdout line (after the last one returned) that starts with `prefix`;
    /// returns when it arrived and the line. Panics on timeout or if the workload's stdout ends.
    #[track_caller]
    pub fn wait_line(&mut self, prefix: &str, timeout: Duration) -> (Instant, String) {
        self.wait_for_line(
            &format!("a line starting with {prefix:?}"),
            timeout,
            |line| line.starts_with(prefix),
        )
    }

    /// Waits for the next stdout line (after the last one returned) for which `matches` is
    /// true; `what` describes it for the failure message. Panics on timeout or if the
    /// workload's stdout ends first.
    #[track_caller]
    pub fn wait_for_line(
        &mut self,
        what: &str,
        timeout: Duration,
        mut matches: impl FnMut(&str) -> bool,
    ) -> (Instant, String) {
        match self
            .stdout
            .wait_match(self.cursor, Instant::now() + timeout, |_, line| {
                matches(line)
            }) {
            Ok((index, at, line)) => {
                self.cursor = index + 1;
                (at, line)
            }
            Err(NoMatch::TimedOut) => {
                self.fail(format_args!("expected {what} within {timeout:?}, saw none"))
            }
            Err(NoMatch::Closed) => {
                // Let the reaper catch up so the message can say how it ended.
                self.reaper.wait(Duration::from_secs(1));
                self.fail(format_args!("expected {what}, but stdout was closed first"))
            }
        }
    }

    /// Waits for the workload to exit; returns its status and when `waitid` saw it exit.
    #[track_caller]
    pub fn wait_exit(&self, timeout: Duration) -> (ExitStatus, Instant) {
        match self.reaper.wait(timeout) {
            Some(Ok(exit)) => (exit.status, exit.at),
            Some(Err(e)) => self.fail(format_args!("waiting for the workload's exit: {e}")),
            None => self.fail(format_args!("expected it to exit within {timeout:?}")),
        }
    }

    /// Waits for it to die of SIGKILL, as a memcg OOM kill does; returns when `waitid` saw it
    /// die.
    #[track_caller]
    pub fn expect_oom_killed(&self, timeout: Duration) -> Instant {
        use std::os::unix::process::ExitStatusExt as _;
        let (status, exited_at) = self.wait_exit(timeout);
        if status.signal() != Some(libc::SIGKILL) {
            self.fail(format_args!(
                "expected the kernel to OOM-kill it (SIGKILL), it ended with {status}"
            ));
        }
        exited_at
    }

    /// Whether it has exited (and been reaped).
    pub fn has_exited(&self) -> bool {
        self.reaper.exit().is_some()
    }

    /// Sends SIGKILL (unless it has already been reaped).
    pub fn kill(&self) {
        self.reaper.signal(libc::SIGKILL);
    }

    /// The workload's command line, exit state, stdout and stderr, for failure messages.
    pub fn report(&self) -> String {
        format!(
            "workload pid {} {:?}: {}\n  stdout:\n{}  stderr:\n{}",
            self.pid(),
            self.args,
            process::describe(self.reaper.exit()),
            process::render(self.started, &self.stdout.snapshot()),
            process::render(self.started, &self.stderr.snapshot()),
        )
    }

    /// Panics with `message` followed by [`report`](Self::report).
    #[track_caller]
    pub fn fail(&self, message: impl std::fmt::Display) -> ! {
        panic!("{message}\n{}", self.report())
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        if self.kill_on_drop
            && self.reaper.signal(libc::SIGKILL)
            && self.reaper.wait(KILL_WAIT).is_none()
        {
            eprintln!(
                "warning: pid {} {:?} was not reaped {KILL_WAIT:?} after SIGKILL",
                self.pid(),
                self.args
            );
        }
    }
}
