//! Per-process memory and growth of one watched container: what its `processes` line says.
//!
//! A container's memory figure says that it grows, not which of its processes does. Every few
//! seconds ([`growth::READ_EVERY_S`]) the collector reads the resident memory of each of its
//! processes ([`read_cgroup`]: `cgroup.procs`, then `/proc/PID/status`); [`ProcessGrowth`]
//! keeps of each process just enough past readings to tell how much it grew over a sliding
//! window, then ranks them ([`ProcessesView`]). The ranking is free of I/O: it is tested on synthetic
//! readings, and only [`procfs`] touches `/proc`.
mod growth;
mod procfs;
#[cfg(test)]
mod tests;
mod view;

pub(crate) use growth::ProcessGrowth;
pub(crate) use procfs::read_cgroup;
pub(crate) use view::ProcessesView;

/// One process's memory, as read.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ProcessReading {
    /// Its pid, in the profiler's pid namespace.
    pub pid: u32,
    /// Its command name (`Name:` of `/proc/PID/status`, which is `/proc/PID/comm`).
    pub comm: String,
    /// Resident anonymous memory (`RssAnon`), bytes.
    pub rss_anon: u64,
    /// Resident file-backed memory (`RssFile`), bytes.
    pub rss_file: u64,
    /// Resident shared memory: shmem, tmpfs, shared anonymous mappings (`RssShmem`), bytes.
    pub rss_shmem: u64,
    /// When it started (Unix seconds, `/proc/PID/stat`), where known: a process born between
    /// two readings grew from nothing at its start, not from its first reading, which can
    /// come up to a reading's period later.
    pub started_at: Option<f64>,
}

impl ProcessReading {
    /// Its resident memory, all kinds: `rss_anon + rss_file + rss_shmem`, bytes.
    pub(crate) fn rss(&self) -> u64 {
        self.rss_anon
            .saturating_add(self.rss_file)
            .saturating_add(self.rss_shmem)
    }
}
