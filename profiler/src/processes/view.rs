//! What the `processes` line says of a container's processes: the biggest growers, and the
//! rest summed.
use std::cmp::Ordering;

use serde::Serialize;

/// A container's processes at one reading, ranked. Serialized, it is the body of a
/// `processes` line (the collector adds `type`, `ts`, `cgroup`, the identity and `trigger`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct ProcessesView {
    /// The growth window asked for, seconds.
    pub window_s: f64,
    /// The resident memory of all the processes read (anonymous, file, shared), bytes.
    pub rss_bytes: u64,
    /// The biggest growers: growth descending, then resident memory descending.
    pub processes: Vec<ProcessEntry>,
    /// All the other processes, summed (zeros when there are none).
    pub others: OtherProcesses,
    /// Every process read, by pid ascending: what a later reading is compared with
    /// ([`super::ProcessGrowth::changed_since`]). Not part of the line.
    #[serde(skip)]
    pub(super) members: Vec<Member>,
}

/// One process of a [`ProcessesView`].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct ProcessEntry {
    /// Its pid, in the profiler's pid namespace.
    pub pid: u32,
    /// Its command name.
    pub comm: String,
    /// Resident anonymous memory, bytes.
    pub rss_anon_bytes: u64,
    /// Resident file-backed memory, bytes.
    pub rss_file_bytes: u64,
    /// Resident shared memory, bytes.
    pub rss_shmem_bytes: u64,
    /// Resident memory now minus at the start of its window, bytes (negative: it shrank).
    pub growth_bytes: i64,
    /// How long its window really was, seconds: shorter than the one asked for when the
    /// process is younger than it (or was first read later).
    pub growth_window_s: f64,
}

impl ProcessEntry {
    /// Its resident memory, all kinds, bytes.
    pub(crate) fn rss_bytes(&self) -> u64 {
        self.rss_anon_bytes
            .saturating_add(self.rss_file_bytes)
            .saturating_add(self.rss_shmem_bytes)
    }

    /// The order of the line: growth descending, then resident memory descending (then pid,
    /// so that the order never depends on a hash map's).
    pub(super) fn rank(&self, other: &Self) -> Ordering {
        other
            .growth_bytes
            .cmp(&self.growth_bytes)
            .then_with(|| other.rss_bytes().cmp(&self.rss_bytes()))
            .then_with(|| self.pid.cmp(&other.pid))
    }
}

/// The processes of a [`ProcessesView`] not listed one by one, summed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub(crate) struct OtherProcesses {
    /// How many.
    pub processes: usize,
    /// Their resident memory, bytes.
    pub rss_bytes: u64,
    /// Their growth, each over its own window, bytes.
    pub growth_bytes: i64,
}

impl OtherProcesses {
    /// Counts `entry` in.
    pub(super) fn add(&mut self, entry: &ProcessEntry) {
        self.processes += 1;
        self.rss_bytes = self.rss_bytes.saturating_add(entry.rss_bytes());
        self.growth_bytes = self.growth_bytes.saturating_add(entry.growth_bytes);
    }
}

/// What a [`ProcessesView`] remembers of each process, to tell whether a later one differs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Member {
    /// Its pid.
    pub(super) pid: u32,
    /// Its command name: the same pid under another name is another process.
    pub(super) comm: String,
    /// Its resident memory, bytes.
    pub(super) rss: u64,
}
