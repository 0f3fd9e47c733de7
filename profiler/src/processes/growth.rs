//! The growth of each process of a container over a sliding window.
use std::collections::{HashMap, VecDeque};

use super::{
    view::{Member, OtherProcesses, ProcessEntry, ProcessesView},
    ProcessReading,
};

/// Seconds between two readings of a container's processes.
pub(crate) const READ_EVERY_S: f64 = 5.0;
/// At most this many past readings of a process are kept per window: a reading closer than
/// `window_s / POINTS_PER_WINDOW` to the last one kept is not kept (it still is the process's
/// memory now). With the product's 60 s window and 5 s readings every reading is kept; a long
/// window, or readings more often than [`READ_EVERY_S`], cannot grow the history past it.
const POINTS_PER_WINDOW: f64 = 64.0;
/// How long before a reading a process not in it may have started and still count as born
/// after it, seconds.
const BORN_SLACK_S: f64 = 1.0;
/// How far a process's resident memory must move for a new line to be worth writing, bytes.
const CHANGE_BYTES: u64 = 1 << 20;

/// Growth of each process over a sliding window.
#[derive(Clone, Debug)]
pub(crate) struct ProcessGrowth {
    /// The growth window, seconds.
    window_s: f64,
    /// When the last reading was added (Unix seconds); `None` before the first.
    read_at: Option<f64>,
    /// The processes of the last reading.
    histories: HashMap<u32, History>,
}

/// What is kept of one process.
#[derive(Clone, Debug)]
struct History {
    /// Its latest reading.
    latest: ProcessReading,
    /// (Unix seconds, resident bytes) of past readings, oldest first: the newest one at or
    /// before the window's start (so that a 60 s window measured by readings 5 s apart really
    /// is 60 s), and those after it. Never empty.
    points: VecDeque<(f64, u64)>,
}

impl ProcessGrowth {
    /// No process read yet. `window_s`: the growth window (60 s by default in the product);
    /// a negative or NaN window is taken as 0 s.
    pub(crate) fn new(window_s: f64) -> Self {
        Self {
            window_s: window_s.max(0.0),
            read_at: None,
            histories: HashMap::new(),
        }
    }

    /// Whether a reading is due at `now` (Unix seconds): every [`READ_EVERY_S`], the first at
    /// once, and at once after the clock stepped back.
    pub(crate) fn due(&self, now: f64) -> bool {
        self.read_at
            .is_none_or(|at| now - at >= READ_EVERY_S || now < at)
    }

    /// Adds a reading of all processes at `now` (Unix seconds), one reading per pid (a later
    /// duplicate replaces an earlier one). Processes not in it are gone and forgotten. A pid
    /// whose command name changed is a new process (an `exec`, or the pid reused): its
    /// history restarts. So does every history when the clock stepped back, as the times
    /// kept no longer say how long ago they were.
    pub(crate) fn observe(&mut self, now: f64, readings: Vec<ProcessReading>) {
        if self.read_at.is_some_and(|at| now < at) {
            self.histories.clear();
        }
        let previous_read = self.read_at;
        self.read_at = Some(now);
        let mut histories = HashMap::with_capacity(readings.len());
        for reading in readings {
            let pid = reading.pid;
            // A duplicate (none from `read_cgroup`) continues the history just made.
            let previous = histories
                .remove(&pid)
                .or_else(|| self.histories.remove(&pid));
            let history = match previous {
                Some(mut history) if history.latest.comm == reading.comm => {
                    history.add(now, reading, self.window_s);
                    history
                }
                _ => History::new(now, reading, previous_read),
            };
            histories.insert(pid, history);
        }
        self.histories = histories;
    }

    /// The view now: the `top` biggest growers (growth descending, then resident memory
    /// descending), and the rest summed.
    pub(crate) fn view(&self, top: usize) -> ProcessesView {
        let now = self.now();
        let mut entries: Vec<ProcessEntry> = self
            .histories
            .iter()
            .map(|(&pid, history)| history.entry(pid, now))
            .collect();
        entries.sort_by(ProcessEntry::rank);
        let rss_bytes = entries
            .iter()
            .fold(0u64, |sum, e| sum.saturating_add(e.rss_bytes()));
        let mut members: Vec<Member> = entries
            .iter()
            .map(|e| Member {
                pid: e.pid,
                comm: e.comm.clone(),
                rss: e.rss_bytes(),
            })
            .collect();
        members.sort_unstable_by_key(|m| m.pid);
        let rest = entries.split_off(top.min(entries.len()));
        let mut others = OtherProcesses::default();
        for entry in &rest {
            others.add(entry);
        }
        ProcessesView {
            window_s: self.window_s,
            rss_bytes,
            processes: entries,
            others,
            members,
        }
    }

    /// Whether the view changed enough since `since` was taken to be worth a line: a process
    /// came or went (a new command name under a pid counts as both), or any process's
    /// resident memory moved by 1 MiB or more.
    pub(crate) fn changed_since(&self, since: &ProcessesView) -> bool {
        if self.histories.len() != since.members.len() {
            return true;
        }
        // As many on each side, each pid once: all found means the same set.
        self.histories.iter().any(|(pid, history)| {
            let then = since
                .members
                .binary_search_by_key(pid, |m| m.pid)
                .ok()
                .and_then(|i| since.members.get(i));
            then.is_none_or(|m| {
                m.comm != history.latest.comm
                    || m.rss.abs_diff(history.latest.rss()) >= CHANGE_BYTES
            })
        })
    }

    /// How many past readings of `pid` are kept (for the tests of the bound).
    #[cfg(test)]
    pub(super) fn points_kept(&self, pid: u32) -> usize {
        self.histories.get(&pid).map_or(0, |h| h.points.len())
    }

    /// When the last reading was added; 0 before the first (there is no process then).
    fn now(&self) -> f64 {
        self.read_at.unwrap_or(0.0)
    }
}

impl History {
    /// A process first read at `now`. One that started after the container's previous
    /// reading (at `previous_read`) grew from nothing at its start: its first reading can
    /// come up to a reading's period after it, and a leak is fast then. One that was there
    /// before the container was first read, or moved into it, grows from its first reading:
    /// what it did before the watch is not known. "After" allows [`BORN_SLACK_S`]: a runtime
    /// forks, then moves the child into the container, so a child forked just before a
    /// reading can join just after it.
    fn new(now: f64, reading: ProcessReading, previous_read: Option<f64>) -> Self {
        let mut points = VecDeque::from([(now, reading.rss())]);
        if let (Some(start), Some(before)) = (reading.started_at, previous_read) {
            if start > before - BORN_SLACK_S && start < now {
                points.push_front((start, 0));
            }
        }
        Self {
            latest: reading,
            points,
        }
    }

    /// Adds a reading at `now`, and forgets the readings a window of `window_s` no longer
    /// needs.
    fn add(&mut self, now: f64, reading: ProcessReading, window_s: f64) {
        let spacing = window_s / POINTS_PER_WINDOW;
        if self
            .points
            .back()
            .is_none_or(|&(at, _)| now - at >= spacing)
        {
            self.points.push_back((now, reading.rss()));
        }
        self.latest = reading;
        let start = now - window_s;
        // Keep the newest reading at or before the start: the base of the growth.
        while self.points.get(1).is_some_and(|&(at, _)| at <= start) {
            self.points.pop_front();
        }
    }

    /// Resident memory now minus at the base reading, bytes, and how long ago the base was.
    fn growth(&self, now: f64) -> (i64, f64) {
        let rss = self.latest.rss();
        let (at, base) = self.points.front().copied().unwrap_or((now, rss));
        (difference(rss, base), now - at)
    }

    /// Its line in a view at `now`.
    fn entry(&self, pid: u32, now: f64) -> ProcessEntry {
        let (growth_bytes, growth_window_s) = self.growth(now);
        ProcessEntry {
            pid,
            comm: self.latest.comm.clone(),
            rss_anon_bytes: self.latest.rss_anon,
            rss_file_bytes: self.latest.rss_file,
            rss_shmem_bytes: self.latest.rss_shmem,
            growth_bytes,
            growth_window_s,
        }
    }
}

/// `now - then`, signed, clamped to what an `i64` holds.
fn difference(now: u64, then: u64) -> i64 {
    let d = i128::from(now) - i128::from(then);
    i64::try_from(d).unwrap_or(if d > 0 { i64::MAX } else { i64::MIN })
}
