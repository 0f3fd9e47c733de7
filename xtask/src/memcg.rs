//! A temporary memory cgroup under this process's own, for the demo and the benchmarks.
use std::{
    fs,
    path::{Path, PathBuf},
    process::{Child, Command},
    thread,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::{bail, Context as _, Result};

/// The memory cgroup this process runs in (cgroup v1 memory hierarchy or cgroup v2).
///
/// A simpler twin of `profiler::cgroup::own_memory_cgroup`, on purpose: xtask must build and
/// run before the eBPF toolchain exists (it installs it), and depending on the `profiler` crate
/// would run its build script, which needs that toolchain.
pub(crate) fn own_memcg() -> Result<PathBuf> {
    let text = fs::read_to_string("/proc/self/cgroup").context("reading /proc/self/cgroup")?;
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (
            parts.next(),
            parts.next().unwrap_or(""),
            parts.next().unwrap_or(""),
        );
        if controllers.split(',').any(|c| c == "memory") {
            return Ok(PathBuf::from("/sys/fs/cgroup/memory").join(path.trim_start_matches('/')));
        }
    }
    let v2 = text
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .context("no memory cgroup in /proc/self/cgroup")?;
    Ok(PathBuf::from("/sys/fs/cgroup").join(v2.trim_start_matches('/')))
}

/// A memory cgroup that removes itself when dropped. Processes started in it are
/// [`Process`]es, which kill what they started when dropped; declare them after the cgroup so
/// they go first.
pub(crate) struct TempMemcg {
    path: PathBuf,
    v2: bool,
}

/// A child process that is killed (by its pid, which it still owns) and reaped when dropped.
pub(crate) struct Process(pub Child);

impl Drop for Process {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

/// Sends SIGINT to a child we started and waits for it.
pub(crate) fn interrupt(child: &mut Child) -> Result<std::process::ExitStatus> {
    if matches!(child.try_wait(), Ok(None)) {
        let pid = libc::pid_t::try_from(child.id()).context("pid out of range")?;
        // SAFETY: plain kill(2) on a child we have not reaped, so the pid is still ours.
        unsafe { libc::kill(pid, libc::SIGINT) };
    }
    child.wait().context("waiting for the child")
}

impl TempMemcg {
    /// Creates `<own memcg>/<prefix>-<pid>-<nanos>` with `limit` bytes.
    pub(crate) fn new(prefix: &str, limit: u64) -> Result<Self> {
        let own = own_memcg()?;
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = own.join(format!("{prefix}-{}-{nanos}", std::process::id()));
        fs::create_dir(&path)
            .with_context(|| format!("creating {} (are you root?)", path.display()))?;
        let v2 = !path.join("memory.limit_in_bytes").exists();
        let cg = Self { path, v2 };
        let file = if cg.v2 {
            "memory.max"
        } else {
            "memory.limit_in_bytes"
        };
        fs::write(cg.path.join(file), limit.to_string())
            .with_context(|| format!("setting {file}"))?;
        Ok(cg)
    }

    /// The cgroup directory.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Starts `cmd` inside the cgroup (it joins before exec) and keeps it for cleanup.
    pub(crate) fn spawn(&self, cmd: &mut Command) -> Result<Process> {
        spawn_in(&self.path, cmd)
    }

    /// Whether this is a cgroup v2 (unified) cgroup.
    pub(crate) fn is_v2(&self) -> bool {
        self.v2
    }

    /// Whether the kernel has OOM-killed in this cgroup.
    pub(crate) fn oom_kills(&self) -> u64 {
        oom_kills_in(&self.path)
    }
}

impl Drop for TempMemcg {
    fn drop(&mut self) {
        for _ in 0..50 {
            match fs::remove_dir(&self.path) {
                Ok(()) => return,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
                Err(_) => thread::sleep(Duration::from_millis(100)),
            }
        }
        eprintln!(
            "xtask: could not remove {}; remove it by hand",
            self.path.display()
        );
    }
}

/// Starts `cmd` inside the cgroup directory `cgroup` (it joins before exec) and keeps it for
/// cleanup.
pub(crate) fn spawn_in(cgroup: &Path, cmd: &mut Command) -> Result<Process> {
    use std::os::unix::process::CommandExt as _;
    let procs = std::ffi::CString::new(
        cgroup
            .join("cgroup.procs")
            .into_os_string()
            .into_encoded_bytes(),
    )
    .context("cgroup path with a NUL byte")?;
    // SAFETY: only async-signal-safe calls (open, write, close) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let fd = libc::open(procs.as_ptr(), libc::O_WRONLY);
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let ok = libc::write(fd, b"0".as_ptr().cast(), 1) == 1;
            libc::close(fd);
            if ok {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    Ok(Process(
        cmd.spawn().with_context(|| format!("starting {cmd:?}"))?,
    ))
}

/// The kernel's OOM kill count in the memory cgroup `dir` (`oom_kill` of v1
/// `memory.oom_control` or v2 `memory.events`); 0 when neither says.
pub(crate) fn oom_kills_in(dir: &Path) -> u64 {
    ["memory.oom_control", "memory.events"]
        .iter()
        .filter_map(|f| fs::read_to_string(dir.join(f)).ok())
        .find_map(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("oom_kill "))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Fails unless running as root (cgroups and BPF need it).
pub(crate) fn require_root(what: &str) -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("{what} creates memory cgroups and loads BPF programs: run it as root (sudo -E cargo xtask ...)");
    }
    Ok(())
}
