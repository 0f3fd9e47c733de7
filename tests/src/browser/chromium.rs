//! The Chromium process of one page: finding the binary, its flags, the two pipes it reads and
//! writes as fds 3 and 4 (`--remote-debugging-pipe`), a fresh profile directory, the tail of its
//! stderr for error messages, and its teardown. Kept apart from the protocol spoken on those
//! pipes ([`super::protocol`]) because what can go wrong here is the process, not the messages:
//! fds set up between fork and exec, death with the test process, helpers outliving it.

use std::collections::VecDeque;
use std::fs::{self, File};
use std::io::{self, BufRead as _, BufReader};
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
use std::os::unix::process::{CommandExt as _, ExitStatusExt as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::protocol::read_messages;
use crate::find_in_path;

/// Debian's Chromium binary; `/usr/bin/chromium` is a shell wrapper that adds flags of its own
/// (and prints a shell error on machines with two mounts at /dev/shm) before exec'ing it.
const CHROMIUM_BINARY: &str = "/usr/lib/chromium/chromium";
/// An environment variable naming another Chromium to start (for the harness's own tests).
pub const CHROMIUM_OVERRIDE: &str = "PROFILER_E2E_CHROMIUM";

/// How long Chromium may take to exit when asked before it is killed.
const CLOSE_PATIENCE: Duration = Duration::from_secs(5);

/// How many of the last lines of Chromium's stderr an error message shows.
const STDERR_LINES: usize = 20;

/// A headless Chromium started by the harness, and the DevTools pipe to it. The pipe's fields
/// are for [`super::protocol`], which sends and receives on it.
pub(super) struct Chromium {
    child: Child,
    /// Chromium's fd 3: commands.
    pub(super) commands: File,
    /// Chromium's fd 4, split at NULs and parsed by a thread; an error once it closes.
    pub(super) messages: Receiver<Result<Value, String>>,
    /// Set once the pipe has closed: nothing more will come.
    pub(super) closed: Option<String>,
    stderr: Arc<Mutex<StderrTail>>,
    /// The id of the last command sent.
    pub(super) next_id: u64,
    /// Removed once Chromium has exited (fields drop after `Drop::drop`).
    _profile: ProfileDir,
}

impl Chromium {
    /// Starts Chromium with a `width` × `height` window and a fresh profile, the DevTools pipe
    /// on its fds 3 and 4, a thread reading the pipe and one keeping the tail of its stderr.
    pub(super) fn start(width: u32, height: u32) -> Result<Chromium, String> {
        let binary = chromium_binary()?;
        let profile = ProfileDir::new()?;
        let (commands_read, commands_write) = cloexec_pipe()?;
        let (messages_read, messages_write) = cloexec_pipe()?;
        let mut command = Command::new(&binary);
        command
            .args([
                "--headless",
                // Chromium refuses to run as root inside its sandbox.
                "--no-sandbox",
                "--disable-gpu",
                // No network on the test machines: no QUIC, no update or sync or first-run
                // traffic, no extensions or default apps fetching anything.
                "--disable-quic",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-extensions",
                "--disable-default-apps",
                // Shared memory in the profile's file system, not /dev/shm: containers have a
                // /dev/shm of 64 MiB, and Chromium crashes when it is full.
                "--disable-dev-shm-usage",
                // Screenshots as a page looks, whatever the machine's display.
                "--hide-scrollbars",
                "--force-color-profile=srgb",
                "--mute-audio",
                // No keyring (over D-Bus, which the test machines do not run).
                "--password-store=basic",
                "--remote-debugging-pipe",
            ])
            .arg(format!("--window-size={width},{height}"))
            .arg(format!("--user-data-dir={}", profile.path().display()))
            // Nothing of Chromium's outside its profile: no ~/.pki/nssdb, no ~/.cache.
            .env("HOME", profile.path())
            .env("XDG_CONFIG_HOME", profile.path().join(".config"))
            .env("XDG_CACHE_HOME", profile.path().join(".cache"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let fds = [commands_read.as_raw_fd(), messages_write.as_raw_fd()];
        // SAFETY: getpid has no preconditions.
        let parent = unsafe { libc::getpid() };
        // SAFETY: the closure only makes async-signal-safe calls (fcntl, dup2, prctl,
        // getppid) on fds that stay open in the parent until spawn returns.
        unsafe {
            command.pre_exec(move || child_setup(fds, parent));
        }
        let mut child = command
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
        // Chromium's ends: only Chromium may hold them, or the pipe never reports its exit.
        drop(commands_read);
        drop(messages_write);
        let stderr = Arc::new(Mutex::new(StderrTail::default()));
        if let Some(pipe) = child.stderr.take() {
            let tail = Arc::clone(&stderr);
            thread::spawn(move || keep_tail(pipe, &tail));
        }
        let (sender, messages) = mpsc::channel();
        let reader = File::from(messages_read);
        thread::spawn(move || read_messages(reader, &sender));
        Ok(Chromium {
            child,
            commands: File::from(commands_write),
            messages,
            closed: None,
            stderr,
            next_id: 0,
            _profile: profile,
        })
    }

    /// Whether Chromium's own process died of a signal (a crash of the browser, not of a page:
    /// a page that crashes takes its renderer down, and the browser reports it). Waits up to a
    /// second for a process whose pipe has closed to be reaped.
    pub(super) fn crashed(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(1);
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return status.signal().is_some(),
                Ok(None) if self.closed.is_some() && Instant::now() < deadline => {
                    thread::sleep(Duration::from_millis(50));
                }
                _ => return false,
            }
        }
    }

    /// `what`, with Chromium's exit status if it has ended and the last lines of its stderr.
    pub(super) fn failure(&mut self, what: &str) -> String {
        // A Chromium that has just died may still be writing why.
        let exited = match self.child.try_wait() {
            Ok(Some(status)) => Some(status),
            _ if self.closed.is_some() => {
                thread::sleep(Duration::from_millis(200));
                self.child.try_wait().ok().flatten()
            }
            _ => None,
        };
        let status = exited.map_or(String::new(), |s| format!(" (chromium exited: {s})"));
        let (lines, dbus_errors) = self
            .stderr
            .lock()
            .map(|t| (Vec::from(t.lines.clone()), t.dbus_errors))
            .unwrap_or_default();
        let tail = if lines.is_empty() {
            "(nothing)".to_owned()
        } else {
            lines.join("\n")
        };
        format!(
            "{what}{status}; the last lines of chromium's stderr \
             (less {dbus_errors} D-Bus errors):\n{tail}"
        )
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        // Asked to close, Chromium ends its renderer and GPU processes and reaps them; killed,
        // it leaves them to exit on their own as orphans.
        if self.closed.is_none() && self.send(None, "Browser.close", &json!({})).is_ok() {
            let deadline = Instant::now() + CLOSE_PATIENCE;
            while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
                thread::sleep(Duration::from_millis(10));
            }
        }
        // Only the process the harness started, by its pid; std does not signal a child it
        // has already reaped. No panic here: a test may already be panicking.
        if let Err(e) = self.child.kill() {
            eprintln!("warning: killing chromium ({}): {e}", self.child.id());
        }
        if let Err(e) = self.child.wait() {
            eprintln!("warning: waiting for chromium ({}): {e}", self.child.id());
        }
    }
}

/// Chromium's profile directory, also its `HOME`: fresh, and removed with everything in it
/// when dropped.
struct ProfileDir(PathBuf);

impl ProfileDir {
    fn new() -> Result<ProfileDir, String> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "profiler-e2e-chromium-profile-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir(&path)
            .map_err(|e| format!("cannot create chromium's profile {}: {e}", path.display()))?;
        Ok(ProfileDir(path))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ProfileDir {
    fn drop(&mut self) {
        // Chromium's crashpad handlers (in sessions of their own, outside its process tree;
        // `--disable-crashpad-for-testing` makes its network service crash) keep its
        // `$HOME/.config/chromium/Crash Reports` here and exit a moment after it, and a helper
        // process may outlive a killed Chromium by a moment: removed until it stays gone.
        // No panic here: a test may be panicking.
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            let removed = fs::remove_dir_all(&self.0);
            thread::sleep(Duration::from_millis(20));
            if !self.0.exists() {
                return;
            }
            if Instant::now() > deadline {
                eprintln!("warning: removing {}: {removed:?}", self.0.display());
                return;
            }
        }
    }
}

/// In the forked child before exec: the pipes on fds 3 and 4, and death with the parent.
fn child_setup(fds: [libc::c_int; 2], parent: libc::pid_t) -> io::Result<()> {
    // First above 4, so that moving one onto 3 or 4 cannot close the other.
    let mut moved = [0; 2];
    for (to, fd) in moved.iter_mut().zip(fds) {
        // SAFETY: fcntl on an fd that is open in the child.
        *to = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 10) };
        if *to < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    for (target, fd) in [3, 4].into_iter().zip(moved) {
        // SAFETY: dup2 onto fds 3 and 4; the copy it makes is not close-on-exec.
        if unsafe { libc::dup2(fd, target) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    // SAFETY: prctl(PR_SET_PDEATHSIG) and getppid have no memory-safety preconditions.
    unsafe {
        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
            return Err(io::Error::last_os_error());
        }
        if libc::getppid() != parent {
            return Err(io::Error::other(
                "the test process exited while chromium started",
            ));
        }
    }
    Ok(())
}

/// A pipe `(read, write)`, both ends close-on-exec (no other child inherits them).
fn cloexec_pipe() -> Result<(OwnedFd, OwnedFd), String> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two fds into the array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(format!(
            "cannot create a pipe for chromium: {}",
            io::Error::last_os_error()
        ));
    }
    // SAFETY: both fds were just created and nothing else owns them.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// The Chromium binary, or the error telling how to install it.
fn chromium_binary() -> Result<PathBuf, String> {
    // The harness's own tests put a Chromium that crashes in its place.
    if let Some(binary) = std::env::var_os(CHROMIUM_OVERRIDE) {
        return Ok(PathBuf::from(binary));
    }
    let binary = Path::new(CHROMIUM_BINARY);
    if binary.is_file() {
        return Ok(binary.to_owned());
    }
    find_in_path("chromium").ok_or_else(|| {
        format!(
            "chromium is not installed: run cargo xtask setup \
             (no {CHROMIUM_BINARY}, no chromium on PATH)"
        )
    })
}

/// The last lines of Chromium's stderr.
#[derive(Default)]
struct StderrTail {
    lines: VecDeque<String>,
    /// D-Bus errors left out: Chromium writes a dozen at every start on a machine without a
    /// D-Bus daemon (`Failed to connect to the bus: ...`), and they would hide the rest.
    dbus_errors: usize,
}

/// Keeps the last [`STDERR_LINES`] lines of `pipe` in `tail` until it closes.
fn keep_tail(pipe: impl io::Read, tail: &Mutex<StderrTail>) {
    let mut reader = BufReader::new(pipe);
    let mut line = Vec::new();
    while let Ok(n) = reader.read_until(b'\n', &mut line) {
        if n == 0 {
            return;
        }
        let text = String::from_utf8_lossy(&line).trim_end().to_owned();
        if let Ok(mut tail) = tail.lock() {
            if text.contains(":ERROR:dbus/") {
                tail.dbus_errors += 1;
            } else {
                if tail.lines.len() == STDERR_LINES {
                    tail.lines.pop_front();
                }
                tail.lines.push_back(text);
            }
        }
        line.clear();
    }
}
