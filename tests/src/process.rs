//! Child processes the tests start: spawning, time-stamped output, and reaping without pid reuse.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

/// How a child process ended, and when the harness saw it end.
#[derive(Clone, Copy, Debug)]
pub struct Exit {
    /// The status `waitpid` returned.
    pub status: ExitStatus,
    /// When `waitid` returned for the exited child (before it was reaped).
    pub at: Instant,
}

/// Locks a mutex, also after a panic in another thread (the data here stays consistent).
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// An append-only list of time-stamped items (output lines) that readers can wait on.
pub(crate) struct Feed<T> {
    state: Mutex<FeedState<T>>,
    changed: Condvar,
}

struct FeedState<T> {
    items: Vec<(Instant, T)>,
    closed: bool,
}

/// Why [`Feed::wait_match`] returned without a match.
pub(crate) enum NoMatch {
    /// The writer closed the feed (the process closed its output).
    Closed,
    /// The deadline passed.
    TimedOut,
}

impl<T: Clone> Feed<T> {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(FeedState {
                items: Vec::new(),
                closed: false,
            }),
            changed: Condvar::new(),
        })
    }

    fn push(&self, at: Instant, item: T) {
        lock(&self.state).items.push((at, item));
        self.changed.notify_all();
    }

    fn close(&self) {
        lock(&self.state).closed = true;
        self.changed.notify_all();
    }

    pub(crate) fn snapshot(&self) -> Vec<(Instant, T)> {
        lock(&self.state).items.clone()
    }

    /// Waits until the feed is closed or the deadline passes; returns whether it is closed.
    pub(crate) fn wait_closed(&self, deadline: Instant) -> bool {
        let mut state = lock(&self.state);
        while !state.closed {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return false;
            };
            state = self
                .changed
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        true
    }

    /// Returns the index and a copy of the first item at index `from` or later that `matches`.
    pub(crate) fn wait_match(
        &self,
        from: usize,
        deadline: Instant,
        mut matches: impl FnMut(Instant, &T) -> bool,
    ) -> Result<(usize, Instant, T), NoMatch> {
        let mut next = from;
        let mut state = lock(&self.state);
        loop {
            while let Some((at, item)) = state.items.get(next) {
                if matches(*at, item) {
                    return Ok((next, *at, item.clone()));
                }
                next += 1;
            }
            if state.closed {
                return Err(NoMatch::Closed);
            }
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return Err(NoMatch::TimedOut);
            };
            state = self
                .changed
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

/// Reads `stream` line by line on a thread, time-stamps each line on arrival and appends
/// `parse(line)` to `feed`; closes the feed at end of stream.
pub(crate) fn read_lines<T: Clone + Send + 'static>(
    stream: impl Read + Send + 'static,
    feed: Arc<Feed<T>>,
    parse: fn(String) -> T,
) {
    thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        let mut buffer = Vec::new();
        loop {
            buffer.clear();
            match reader.read_until(b'\n', &mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let at = Instant::now();
                    let line = String::from_utf8_lossy(&buffer)
                        .trim_end_matches(['\n', '\r'])
                        .to_owned();
                    feed.push(at, parse(line));
                }
            }
        }
        feed.close();
    });
}

/// Owns the right to signal and reap one child process.
///
/// A thread blocks in `waitid(WNOWAIT)` until the child has exited, notes the time, then reaps
/// it while holding the lock that [`Reaper::signal`] takes: a signal is therefore only ever sent
/// to a pid that is still our child (alive or a zombie), never to a reused pid.
pub(crate) struct Reaper {
    pid: libc::pid_t,
    exit: Mutex<Option<Result<Exit, String>>>,
    exited: Condvar,
}

impl Reaper {
    fn watch(pid: libc::pid_t) -> Arc<Self> {
        let reaper = Arc::new(Self {
            pid,
            exit: Mutex::new(None),
            exited: Condvar::new(),
        });
        let waiter = Arc::clone(&reaper);
        thread::spawn(move || waiter.wait_and_reap());
        reaper
    }

    fn wait_and_reap(&self) {
        let outcome = loop {
            // SAFETY: siginfo_t is plain data; waitid fills it.
            let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
            // SAFETY: waits for our own child without reaping it (WNOWAIT).
            let rc = unsafe {
                libc::waitid(
                    libc::P_PID,
                    self.pid as libc::id_t,
                    &mut info,
                    libc::WEXITED | libc::WNOWAIT,
                )
            };
            if rc == 0 {
                break Ok(Instant::now());
            }
            let error = std::io::Error::last_os_error();
            if error.kind() != std::io::ErrorKind::Interrupted {
                break Err(format!("waitid({}): {error}", self.pid));
            }
        };
        let mut exit = lock(&self.exit);
        *exit = Some(outcome.and_then(|at| {
            let mut status = 0;
            // SAFETY: reaps the zombie waitid just reported.
            let rc = unsafe { libc::waitpid(self.pid, &mut status, 0) };
            if rc == self.pid {
                Ok(Exit {
                    status: ExitStatus::from_raw(status),
                    at,
                })
            } else {
                Err(format!(
                    "waitpid({}): {}",
                    self.pid,
                    std::io::Error::last_os_error()
                ))
            }
        }));
        self.exited.notify_all();
    }

    pub(crate) fn pid(&self) -> libc::pid_t {
        self.pid
    }

    /// Sends `signal` unless the child has already been reaped; returns whether it was sent.
    pub(crate) fn signal(&self, signal: libc::c_int) -> bool {
        let exit = lock(&self.exit);
        // SAFETY: kill on our own child, which cannot have been reaped while we hold the lock.
        exit.is_none() && unsafe { libc::kill(self.pid, signal) } == 0
    }

    /// The exit, if the child has been reaped (an error if waiting for it failed).
    pub(crate) fn exit(&self) -> Option<Result<Exit, String>> {
        lock(&self.exit).clone()
    }

    /// Waits up to `timeout` for the child to exit.
    pub(crate) fn wait(&self, timeout: Duration) -> Option<Result<Exit, String>> {
        let deadline = Instant::now() + timeout;
        let mut exit = lock(&self.exit);
        while exit.is_none() {
            let left = deadline.checked_duration_since(Instant::now())?;
            exit = self
                .exited
                .wait_timeout(exit, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        exit.clone()
    }
}

/// A started child: its reaper and its time-stamped stdout and stderr lines.
pub(crate) struct Spawned<T> {
    pub(crate) reaper: Arc<Reaper>,
    pub(crate) stdout: Arc<Feed<T>>,
    pub(crate) stderr: Arc<Feed<String>>,
}

/// A command that gets SIGKILL if the thread that started it dies, so a test process killed
/// from outside leaves no workload or profiler behind (its cgroups may remain).
pub(crate) fn command(program: &std::path::Path) -> Command {
    let mut command = Command::new(program);
    // SAFETY: prctl is async-signal-safe and touches only the child.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    command
}

/// Starts `command` with stdin closed and stdout/stderr read by threads; panics if it cannot start.
pub(crate) fn spawn<T: Clone + Send + 'static>(
    command: &mut Command,
    parse_stdout: fn(String) -> T,
) -> Spawned<T> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("could not start {command:?}: {e}"));
    let pid = libc::pid_t::try_from(child.id()).expect("pids fit in pid_t");
    let reaper = Reaper::watch(pid);
    let stdout = Feed::new();
    let stderr = Feed::new();
    if let Some(out) = child.stdout.take() {
        read_lines(out, Arc::clone(&stdout), parse_stdout);
    }
    if let Some(err) = child.stderr.take() {
        read_lines(err, Arc::clone(&stderr), |line| line);
    }
    // Dropping `Child` neither kills nor reaps: the reaper owns the process from here on.
    drop(child);
    Spawned {
        reaper,
        stdout,
        stderr,
    }
}

/// Renders time-stamped lines as `+1.234s line`, relative to `start`, one per line.
pub(crate) fn render<T: std::fmt::Display>(start: Instant, lines: &[(Instant, T)]) -> String {
    if lines.is_empty() {
        return "    (none)\n".to_owned();
    }
    lines
        .iter()
        .map(|(at, line)| {
            format!(
                "    +{:.3}s {line}\n",
                at.saturating_duration_since(start).as_secs_f64()
            )
        })
        .collect()
}

/// Describes an exit for failure messages.
pub(crate) fn describe(exit: Option<Result<Exit, String>>) -> String {
    match exit {
        None => "still running".to_owned(),
        Some(Ok(exit)) => exit.status.to_string(),
        Some(Err(error)) => error,
    }
}
