//! Running the built `profiler` binary: a long-lived `watch --json`, or a command run to its end.

use std::fmt::Display;
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitStatus};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::contract::check_line;
use crate::process::{self, Exit, Feed, NoMatch, Reaper};
use crate::{profiler_bin, require_root};

/// How long [`Profiler`]'s drop waits for the killed profiler to be reaped.
const KILL_WAIT: Duration = Duration::from_secs(10);

/// Failure reports show at most this many JSON lines (the first and the most recent ones).
const REPORT_HEAD: usize = 40;
const REPORT_TAIL: usize = 160;

/// A running `profiler watch --json ...`, whose stdout lines are parsed and time-stamped as they
/// arrive. Dropping it SIGKILLs the profiler if it is still running.
pub struct Profiler {
    args: Vec<String>,
    started: Instant,
    reaper: Arc<Reaper>,
    lines: Arc<Feed<Value>>,
    stderr: Arc<Feed<String>>,
    /// Index of the first line [`Profiler::wait_for`] has not consumed yet.
    cursor: usize,
}

impl Profiler {
    /// Starts `profiler watch --json <args>` (e.g. `["--cgroup", path, "--interval", "250ms"]`).
    pub fn watch(args: &[&str]) -> Self {
        let mut all = vec!["watch".to_owned(), "--json".to_owned()];
        all.extend(args.iter().map(|&a| a.to_owned()));
        Self::start(all)
    }

    /// Starts `profiler <all>` (the subcommand first), reading its stdout lines as JSON.
    pub fn start(all: Vec<String>) -> Self {
        require_root();
        let mut command = profiler_command(&all);
        let spawned = process::spawn(&mut command, |line| {
            // A line that is not JSON is kept as a string; the contract check reports it.
            serde_json::from_str(&line).unwrap_or(Value::String(line))
        });
        Self {
            args: all,
            started: Instant::now(),
            reaper: spawned.reaper,
            lines: spawned.stdout,
            stderr: spawned.stderr,
            cursor: 0,
        }
    }

    /// The profiler's pid.
    pub fn pid(&self) -> u32 {
        self.reaper.pid().unsigned_abs()
    }

    /// Waits for the next line (after the last one returned by a `wait_for*` call) for which
    /// `matches` is true; returns when it arrived and the line. `what` describes it for the
    /// failure message. Every line passed over is checked against the JSON contract. Panics on
    /// timeout, on a line that breaks the contract, or if the profiler's stdout ends first.
    #[track_caller]
    pub fn wait_for(
        &mut self,
        what: &str,
        timeout: Duration,
        matches: impl FnMut(&Value) -> bool,
    ) -> (Instant, Value) {
        self.wait_for_line(what, None, timeout, matches)
    }

    /// Like [`wait_for`](Self::wait_for), but passes over lines received before `after`.
    #[track_caller]
    pub fn wait_for_after(
        &mut self,
        after: Instant,
        what: &str,
        timeout: Duration,
        matches: impl FnMut(&Value) -> bool,
    ) -> (Instant, Value) {
        self.wait_for_line(what, Some(after), timeout, matches)
    }

    #[track_caller]
    fn wait_for_line(
        &mut self,
        what: &str,
        after: Option<Instant>,
        timeout: Duration,
        mut matches: impl FnMut(&Value) -> bool,
    ) -> (Instant, Value) {
        let mut broken = None;
        let found = self
            .lines
            .wait_match(self.cursor, Instant::now() + timeout, |at, line| {
                if let Err(e) = check_line(line) {
                    broken = Some(format!("{e}: {line}"));
                    return true;
                }
                after.is_none_or(|after| at >= after) && matches(line)
            });
        if let Some(broken) = broken {
            self.fail(format_args!(
                "a JSON line breaks the output contract: {broken}"
            ));
        }
        match found {
            Ok((index, at, line)) => {
                self.cursor = index + 1;
                (at, line)
            }
            Err(NoMatch::TimedOut) => self.fail(format_args!(
                "expected {what} within {timeout:?}; saw none (lines below)"
            )),
            Err(NoMatch::Closed) => {
                self.reaper.wait(Duration::from_secs(1));
                self.fail(format_args!(
                    "expected {what}, but the profiler closed its stdout first"
                ))
            }
        }
    }

    /// Waits until the profiler has printed `watch_start` for each of `cgroups` and, after it, a
    /// first `sample`; returns the `watch_start` lines in the order of `cgroups`. A workload
    /// started after this returns is watched from its first allocation.
    #[track_caller]
    pub fn wait_watching(&mut self, cgroups: &[&str]) -> Vec<Value> {
        let mut starts: Vec<Option<Value>> = vec![None; cgroups.len()];
        let mut sampled = vec![false; cgroups.len()];
        self.wait_for(
            &format!("watch_start and a first sample for each of {cgroups:?}"),
            crate::PATIENCE,
            |line| {
                let position = cgroups.iter().position(|&c| line["cgroup"] == c);
                if let Some(i) = position {
                    if line["type"] == "watch_start" {
                        starts[i] = Some(line.clone());
                    } else if line["type"] == "sample" && starts[i].is_some() {
                        sampled[i] = true;
                    }
                }
                sampled.iter().all(|&s| s)
            },
        );
        starts.into_iter().flatten().collect()
    }

    /// Waits for a stderr line that contains `needle` (any line since the start); returns when
    /// it arrived and the line. Panics on timeout or if stderr ends first.
    #[track_caller]
    pub fn wait_for_stderr(&self, needle: &str, timeout: Duration) -> (Instant, String) {
        match self
            .stderr
            .wait_match(0, Instant::now() + timeout, |_, line| line.contains(needle))
        {
            Ok((_, at, line)) => (at, line),
            Err(NoMatch::TimedOut) => self.fail(format_args!(
                "expected a stderr line containing {needle:?} within {timeout:?}; saw none"
            )),
            Err(NoMatch::Closed) => {
                self.reaper.wait(Duration::from_secs(1));
                self.fail(format_args!(
                    "expected a stderr line containing {needle:?}, but stderr was closed first"
                ))
            }
        }
    }

    /// Every line received so far, with when it arrived.
    pub fn lines_so_far(&self) -> Vec<(Instant, Value)> {
        self.lines.snapshot()
    }

    /// Everything the profiler wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr
            .snapshot()
            .into_iter()
            .map(|(_, line)| line + "\n")
            .collect()
    }

    /// How the profiler exited, if it has exited and been reaped.
    pub fn exit(&self) -> Option<Exit> {
        self.reaper.exit().and_then(Result::ok)
    }

    /// Sends SIGINT (unless the profiler has already been reaped).
    pub fn interrupt(&self) {
        self.reaper.signal(libc::SIGINT);
    }

    /// Sends SIGTERM (unless the profiler has already been reaped), as the kubelet and
    /// systemd stop an agent.
    pub fn terminate(&self) {
        self.reaper.signal(libc::SIGTERM);
    }

    /// Waits up to `timeout` for the profiler to exit and then (up to 5 s more) for the end of
    /// its stdout, so [`lines_so_far`](Self::lines_so_far) is complete; returns its status and
    /// when `waitid` saw it exit.
    #[track_caller]
    pub fn wait(&self, timeout: Duration) -> (ExitStatus, Instant) {
        let exit = match self.reaper.wait(timeout) {
            Some(Ok(exit)) => exit,
            Some(Err(e)) => self.fail(format_args!("waiting for the profiler to exit: {e}")),
            None => self.fail(format_args!("expected it to exit within {timeout:?}")),
        };
        if !self
            .lines
            .wait_closed(Instant::now() + Duration::from_secs(5))
        {
            self.fail("the profiler exited but its stdout stayed open 5 s later");
        }
        (exit.status, exit.at)
    }

    /// The command line, exit state, stderr and JSON lines (time since start), for failure
    /// messages.
    pub fn report(&self) -> String {
        let lines = self.lines.snapshot();
        let shown = if lines.len() > REPORT_HEAD + REPORT_TAIL {
            let head = process::render(self.started, &lines[..REPORT_HEAD]);
            let tail = process::render(self.started, &lines[lines.len() - REPORT_TAIL..]);
            format!(
                "{head}    ... {} lines left out ...\n{tail}",
                lines.len() - REPORT_HEAD - REPORT_TAIL
            )
        } else {
            process::render(self.started, &lines)
        };
        format!(
            "profiler pid {} {:?}: {}\n  stderr:\n{}  JSON lines:\n{shown}",
            self.pid(),
            self.args,
            process::describe(self.reaper.exit()),
            process::render(self.started, &self.stderr.snapshot()),
        )
    }

    /// Panics with `message` followed by [`report`](Self::report).
    #[track_caller]
    pub fn fail(&self, message: impl Display) -> ! {
        panic!("{message}\n{}", self.report())
    }

    /// Checks a field of `line` (`ok`), failing with the report and `what` was expected.
    #[track_caller]
    pub fn expect(&self, line: &Value, ok: bool, what: &str) {
        if !ok {
            self.fail(format_args!(
                "{} line {line}: expected {what}",
                line["type"]
            ));
        }
    }
}

impl Drop for Profiler {
    fn drop(&mut self) {
        if self.reaper.signal(libc::SIGKILL) && self.reaper.wait(KILL_WAIT).is_none() {
            eprintln!(
                "warning: profiler pid {} was not reaped {KILL_WAIT:?} after SIGKILL",
                self.pid()
            );
        }
    }
}

/// A `Command` for the profiler binary with `args`; it gets SIGKILL if the test thread dies.
pub fn profiler_command<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Command {
    let mut command = process::command(&profiler_bin());
    command.args(args);
    command
}

/// A command for the profiler that drops to uid/gid 65534 (nobody) and no supplementary groups
/// before exec, to see how it fails without privileges.
pub fn unprivileged_profiler_command<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Command {
    let mut command = profiler_command(args);
    // SAFETY: setgroups/setgid/setuid are async-signal-safe and only affect the child.
    unsafe {
        command.pre_exec(|| {
            if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setgid(65534) != 0
                || libc::setuid(65534) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    command
}

/// A command that ran to its end.
#[derive(Debug)]
pub struct Finished {
    /// How it exited.
    pub status: ExitStatus,
    /// All of its stdout.
    pub stdout: String,
    /// All of its stderr.
    pub stderr: String,
}

impl Finished {
    /// Expects a failed run: a non-zero exit code (not a crash) and stderr mentioning each of
    /// `needles`.
    #[track_caller]
    pub fn expect_error(&self, needles: &[&str]) {
        if self.status.code().is_none_or(|code| code == 0) {
            self.fail(format_args!(
                "expected a non-zero exit code with stderr mentioning {needles:?}"
            ));
        }
        if let Some(missing) = needles.iter().find(|n| !self.stderr.contains(*n)) {
            self.fail(format_args!("expected stderr to mention {missing:?}"));
        }
    }

    /// Panics with `message`, the exit status, stdout and stderr.
    pub fn fail(&self, message: impl Display) -> ! {
        panic!(
            "{message}\n  exit: {}\n  stdout:\n{}\n  stderr:\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

/// Runs the profiler with `args` to its end (stdin closed); see [`run`].
#[track_caller]
pub fn run_profiler(args: &[&str], timeout: Duration) -> Finished {
    run(profiler_command(args), timeout)
}

/// Runs `command` to its end, with stdin closed and its output collected; SIGKILLs it and
/// panics if it has not exited within `timeout`.
#[track_caller]
pub fn run(mut command: Command, timeout: Duration) -> Finished {
    let spawned = process::spawn(&mut command, |line| line);
    let joined = |feed: &Feed<String>| -> String {
        feed.snapshot()
            .into_iter()
            .map(|(_, line)| line + "\n")
            .collect()
    };
    let Some(exit) = spawned.reaper.wait(timeout) else {
        spawned.reaper.signal(libc::SIGKILL);
        spawned.reaper.wait(KILL_WAIT);
        panic!(
            "{command:?} did not exit within {timeout:?} (killed it)\n  stdout:\n{}\n  stderr:\n{}",
            joined(&spawned.stdout),
            joined(&spawned.stderr)
        );
    };
    let exit = exit.unwrap_or_else(|e| panic!("waiting for {command:?}: {e}"));
    // The output pipes close when the process exits; give the reader threads a moment.
    let deadline = Instant::now() + Duration::from_secs(5);
    spawned.stdout.wait_closed(deadline);
    spawned.stderr.wait_closed(deadline);
    Finished {
        status: exit.status,
        stdout: joined(&spawned.stdout),
        stderr: joined(&spawned.stderr),
    }
}
