//! Reading a container's processes: `cgroup.procs` of its cgroup and of those below it, then
//! `/proc/PID/status` of each process.
use std::{
    collections::HashSet,
    fs, io,
    path::{Path, PathBuf},
};

use super::ProcessReading;

/// The most cgroup directories read for one container: its own and those below it.
pub(crate) const MAX_CGROUPS: usize = 64;
/// The most processes read for one container.
pub(crate) const MAX_PROCESSES: usize = 4096;

/// Reads every process of the cgroup directory `dir` and of the cgroups below it (a pod's or
/// a runtime's cgroup holds its processes in child cgroups; cgroup v2 even requires it).
///
/// Bounded, so that a container with a runaway tree of cgroups or of processes costs a known
/// time every reading: at most [`MAX_CGROUPS`] directories are read, depth first (`dir`
/// itself first, then each child's whole subtree in name order), and at most
/// [`MAX_PROCESSES`] processes; what lies past either bound is left out (logged at debug
/// level), and the figures are then those of a part of the container.
///
/// A process that exits between the listing and its reading is skipped, as is one without
/// resident memory figures (a kernel thread, a zombie, or any process on a kernel older than
/// 4.5, which has no `RssAnon` line). Each process is read once, even if it moved between two
/// cgroups while they were listed.
///
/// # Errors
/// Only when `dir`'s own `cgroup.procs` cannot be read (the cgroup is gone, or a permission);
/// a child cgroup that cannot be read is skipped.
pub(crate) fn read_cgroup(dir: &Path) -> io::Result<Vec<ProcessReading>> {
    let pids = cgroup_pids(dir)?;
    Ok(pids
        .into_iter()
        .filter_map(|pid| match read_process(pid) {
            Ok(reading) => reading,
            Err(e) => {
                // Mostly a process that exited since it was listed.
                log::trace!("pid {pid}: cannot read its status: {e}");
                None
            }
        })
        .collect())
}

/// Reads one process's memory from `/proc/PID/status`: `Ok(None)` for a process without
/// resident memory figures (a kernel thread, a zombie, a kernel older than 4.5).
///
/// # Errors
/// When the file cannot be read: the process does not exist (any more), or a permission.
pub(crate) fn read_process(pid: u32) -> io::Result<Option<ProcessReading>> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    Ok(parse_status(pid, &status).map(|mut reading| {
        reading.started_at = started_at(pid);
        reading
    }))
}

/// When process `pid` started, Unix seconds: its start time since boot (`/proc/PID/stat`)
/// put on the wall clock through the boot-time clock.
fn started_at(pid: u32) -> Option<f64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let ticks = parse_start_ticks(&stat)?;
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if per_second <= 0 {
        return None;
    }
    let mut boot = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid pointer to a timespec.
    if unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut boot) } != 0 {
        return None;
    }
    let since_boot = boot.tv_sec as f64 + boot.tv_nsec as f64 / 1e9;
    let started = ticks as f64 / per_second as f64;
    Some(crate::collector::unix_now() - (since_boot - started).max(0.0))
}

/// The start time field (the 22nd, in clock ticks since boot) of a `/proc/PID/stat` text;
/// fields are counted after the command name, which may hold spaces and parentheses.
pub(super) fn parse_start_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    // Field 3 (the state) is the first after the name; field 22 is the 20th.
    after_name.split_whitespace().nth(19)?.parse().ok()
}

/// The pids listed in `cgroup.procs` of `dir` and of the cgroups below it, each once, in the
/// order of the walk, within the bounds told at [`read_cgroup`].
///
/// # Errors
/// When `dir`'s own `cgroup.procs` cannot be read.
pub(super) fn cgroup_pids(dir: &Path) -> io::Result<Vec<u32>> {
    let mut seen = HashSet::new();
    let mut pids = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    let mut read = 0;
    while let Some(cgroup) = stack.pop() {
        if read == MAX_CGROUPS {
            log::debug!(
                "{}: more than {MAX_CGROUPS} cgroups; the processes of the others are left out",
                dir.display()
            );
            break;
        }
        read += 1;
        let text = match fs::read_to_string(cgroup.join("cgroup.procs")) {
            Ok(text) => text,
            Err(e) if cgroup == dir => return Err(e),
            Err(e) => {
                // A child cgroup removed since its parent was listed.
                log::debug!("{}: cannot list its processes: {e}", cgroup.display());
                continue;
            }
        };
        // cgroup v1 does not promise a list free of duplicates.
        for pid in text.lines().filter_map(|line| line.trim().parse().ok()) {
            if seen.contains(&pid) {
                continue;
            }
            if pids.len() == MAX_PROCESSES {
                log::debug!(
                    "{}: more than {MAX_PROCESSES} processes; the others are left out",
                    dir.display()
                );
                return Ok(pids);
            }
            seen.insert(pid);
            pids.push(pid);
        }
        let mut children = subdirectories(&cgroup);
        // Popped last first: the first child's subtree is read first.
        children.sort_unstable_by(|a, b| b.cmp(a));
        stack.extend(children);
    }
    Ok(pids)
}

/// The directories in `dir` (a cgroup's child cgroups); none when it cannot be listed.
fn subdirectories(dir: &Path) -> Vec<PathBuf> {
    match fs::read_dir(dir) {
        // `file_type` does not follow symbolic links: no loop is possible.
        Ok(entries) => entries
            .filter_map(Result::ok)
            .filter(|entry| entry.file_type().is_ok_and(|t| t.is_dir()))
            .map(|entry| entry.path())
            .collect(),
        Err(e) => {
            log::debug!("{}: cannot list its child cgroups: {e}", dir.display());
            Vec::new()
        }
    }
}

/// The memory of process `pid` in the text of its `/proc/PID/status`; `None` when the text
/// lacks its name or any of `RssAnon`, `RssFile`, `RssShmem` (or holds nonsense there).
pub(super) fn parse_status(pid: u32, status: &str) -> Option<ProcessReading> {
    let (mut comm, mut rss_anon, mut rss_file, mut rss_shmem) = (None, None, None, None);
    for line in status.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        match key {
            // One tab after the colon; the name itself may hold spaces.
            "Name" => comm = Some(unescape_name(value.strip_prefix('\t').unwrap_or(value))),
            "RssAnon" => rss_anon = kilobytes(value),
            "RssFile" => rss_file = kilobytes(value),
            "RssShmem" => rss_shmem = kilobytes(value),
            _ => {}
        }
    }
    Some(ProcessReading {
        pid,
        comm: comm?,
        rss_anon: rss_anon?,
        rss_file: rss_file?,
        rss_shmem: rss_shmem?,
        started_at: None,
    })
}

/// A `/proc` size (`   1612 kB`), in bytes.
fn kilobytes(value: &str) -> Option<u64> {
    let kb: u64 = value.trim().strip_suffix("kB")?.trim_end().parse().ok()?;
    Some(kb.saturating_mul(1024))
}

/// The command name as `/proc/PID/comm` holds it: `status` writes a newline in it as `\n`
/// and a backslash as `\\`, so that the file stays one line per field.
fn unescape_name(escaped: &str) -> String {
    let mut name = String::with_capacity(escaped.len());
    let mut chars = escaped.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            name.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => name.push('\n'),
            Some('\\') => name.push('\\'),
            // Not an escape the kernel writes: kept as it is.
            Some(other) => {
                name.push('\\');
                name.push(other);
            }
            None => name.push('\\'),
        }
    }
    name
}
