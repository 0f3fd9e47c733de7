//! OOM kills read from the kernel log (`/dev/kmsg`): the fallback source when no BPF hook for
//! OOM kills loads.
//!
//! A kill leaves two records that matter (Linux 5.0+; older kernels only the second):
//!
//! ```text
//! 6,409,249345568,-;oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,oom_memcg=/a/b,task_memcg=/a/b,task=python3,pid=4500,uid=0
//! 3,410,249345583,-;Memory cgroup out of memory: Killed process 4500 (python3) total-vm:78064kB, anon-rss:65152kB, file-rss:3412kB, shmem-rss:0kB, UID:0 pgtables:192kB oom_score_adj:0
//! ```
//!
//! The first names the memory cgroups, the second the sizes. [`OomKillAssembler`] joins them
//! by pid; [`KmsgOomWatcher`] reads new records from `/dev/kmsg` and yields the kills.
//!
//! The task name (`comm`) is chosen by the process itself and may hold any byte: parsing never
//! splits it on punctuation, and only records the kernel itself logged (facility 0) are
//! trusted — user space writing to `/dev/kmsg` cannot fake a kill.

use std::{collections::VecDeque, io, path::PathBuf};

/// The kernel log device.
pub(crate) const DEV_KMSG: &str = "/dev/kmsg";

/// Largest record `read(2)` on `/dev/kmsg` returns (the kernel's `CONSOLE_EXT_LOG_MAX` is
/// 8 KiB); a smaller buffer makes the read fail with `EINVAL`.
const RECORD_BUFFER: usize = 16 * 1024;

/// How many "oom-kill:" lines wait for their "Killed process" line at most.
const PENDING_CONSTRAINTS: usize = 16;

/// Why reading or parsing the kernel log failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum KmsgError {
    /// `/dev/kmsg` could not be opened.
    #[error(
        "cannot open {} (reading the kernel log needs root, CAP_SYSLOG, or \
         kernel.dmesg_restrict=0; in a container, also the device itself: a hostPath mount of \
         /dev/kmsg is not enough where the runtime's device rules do not allow char 1:11)",
        path.display()
    )]
    Open {
        /// The device path.
        path: PathBuf,
        /// What `open(2)` reported.
        #[source]
        source: io::Error,
    },
    /// Seeking to the end of the log failed.
    #[error(
        "cannot seek to the end of {} (a kernel log device without SEEK_END: a kernel older \
         than 3.5?)",
        path.display()
    )]
    Seek {
        /// The device path.
        path: PathBuf,
        /// What `lseek(2)` reported.
        #[source]
        source: io::Error,
    },
    /// No tokio runtime (with I/O enabled) was running when the watcher was opened.
    #[error(
        "KmsgOomWatcher::open needs a running tokio runtime with I/O enabled; call it from \
         async code"
    )]
    NoRuntime,
    /// Registering the descriptor with the tokio reactor failed.
    #[error("cannot watch {} for new records", path.display())]
    Register {
        /// The device path.
        path: PathBuf,
        /// What the reactor reported.
        #[source]
        source: io::Error,
    },
    /// `read(2)` on the log device failed.
    #[error("reading a record from {} failed", path.display())]
    Read {
        /// The device path.
        path: PathBuf,
        /// What `read(2)` reported.
        #[source]
        source: io::Error,
    },
    /// A record does not have the `prio,seq,usec,flags;message` shape.
    #[error(
        "malformed kernel log record ({reason}): {record:?}; expected \
         `priority,sequence,microseconds,flags;message`"
    )]
    Malformed {
        /// What is wrong with it.
        reason: &'static str,
        /// The start of the record, lossily decoded.
        record: String,
    },
}

/// One record of the kernel log.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub(crate) struct KmsgRecord {
    /// Syslog prefix: `facility * 8 + level`. The kernel's own records have facility 0, so
    /// their value is the log level (0 = emergency … 7 = debug).
    pub priority: u8,
    /// Sequence number of the record (consecutive; a gap means records were lost).
    pub seq: u64,
    /// Time the record was logged, in microseconds since boot (`CLOCK_MONOTONIC`).
    pub usec: u64,
    /// The message, with `\xNN` escapes decoded and continuation lines (` KEY=value`) dropped.
    pub message: String,
}

impl KmsgRecord {
    /// Whether the kernel itself logged the record (facility 0). Records written to
    /// `/dev/kmsg` by user space always carry another facility.
    pub(crate) fn is_from_kernel(&self) -> bool {
        self.priority >> 3 == 0
    }
}

/// Parses one record as `read(2)` on `/dev/kmsg` returns it:
/// `priority,sequence,microseconds,flags[,more];message\n[ KEY=value\n]...`.
pub(crate) fn parse_record(raw: &[u8]) -> Result<KmsgRecord, KmsgError> {
    let malformed = |reason| KmsgError::Malformed {
        reason,
        record: String::from_utf8_lossy(&raw[..raw.len().min(120)]).into_owned(),
    };
    // Continuation lines (device properties) follow the first newline; the message itself
    // cannot contain one because the kernel escapes it.
    let first_line = raw.split(|&b| b == b'\n').next().unwrap_or_default();
    let semicolon = first_line
        .iter()
        .position(|&b| b == b';')
        .ok_or_else(|| malformed("no `;` between header and message"))?;
    let (header, text) = first_line.split_at(semicolon);
    let text = text.get(1..).unwrap_or_default();
    let header = std::str::from_utf8(header).map_err(|_| malformed("header is not ASCII"))?;
    // Later kernels may append fields after the flags (e.g. `caller=T42`): ignored.
    let mut fields = header.split(',');
    let priority = fields
        .next()
        .and_then(|f| f.parse::<u8>().ok())
        .ok_or_else(|| malformed("priority is not a number from 0 to 255"))?;
    let seq = fields
        .next()
        .and_then(|f| f.parse::<u64>().ok())
        .ok_or_else(|| malformed("sequence number is not a number"))?;
    let usec = fields
        .next()
        .and_then(|f| f.parse::<u64>().ok())
        .ok_or_else(|| malformed("timestamp is not a number"))?;
    Ok(KmsgRecord {
        priority,
        seq,
        usec,
        message: String::from_utf8_lossy(&unescape(text)).into_owned(),
    })
}

/// Decodes the kernel's `\xNN` escapes (used for non-printable bytes and for `\` itself).
fn unescape(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut rest = text;
    while let Some((&byte, tail)) = rest.split_first() {
        if let [b'\\', b'x', high, low, after @ ..] = rest {
            if let (Some(high), Some(low)) = (hex_digit(*high), hex_digit(*low)) {
                out.push((high << 4) | low);
                rest = after;
                continue;
            }
        }
        out.push(byte);
        rest = tail;
    }
    out
}

fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// One OOM kill as the kernel logged it: the "oom-kill:" line gives the memory cgroups, the
/// "Killed process" line the sizes.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub(crate) struct KmsgOomKill {
    /// Pid of the killed task.
    pub pid: u32,
    /// Its task name (`comm`), escapes decoded.
    pub comm: String,
    /// Memory cgroup of the task, relative to the memory hierarchy's root
    /// (e.g. `/kubepods/pod1/c1`). `None` when the "oom-kill:" line was not seen.
    pub task_memcg: Option<String>,
    /// Memory cgroup whose limit was hit; `None` for a global (system-wide) OOM or when the
    /// "oom-kill:" line was not seen.
    pub oom_memcg: Option<String>,
    /// `CONSTRAINT_MEMCG`, `CONSTRAINT_NONE` (global), `CONSTRAINT_CPUSET`, …
    pub constraint: Option<String>,
    /// Virtual memory size of the task, in bytes.
    pub total_vm_bytes: Option<u64>,
    /// Resident anonymous memory, in bytes.
    pub anon_rss_bytes: Option<u64>,
    /// Resident file-backed memory, in bytes.
    pub file_rss_bytes: Option<u64>,
    /// Resident shared memory, in bytes (Linux 4.5+).
    pub shmem_rss_bytes: Option<u64>,
    /// The task's `oom_score_adj` (Linux 5.1+).
    pub oom_score_adj: Option<i32>,
    /// The task's uid.
    pub uid: Option<u32>,
    /// Whether the "Killed process" line said a memory cgroup ran out (`Memory cgroup out of
    /// memory: …`) or the node (`Out of memory: …`); `None` when it said neither. Unlike the
    /// rate-limited "oom-kill:" line, the kernel prints it for every kill.
    pub memcg_oom: Option<bool>,
    /// Time of the "Killed process" record, in microseconds since boot.
    pub usec: u64,
}

/// An "oom-kill:" line waiting for its "Killed process" line.
#[derive(Debug)]
struct PendingConstraint {
    pid: u32,
    uid: Option<u32>,
    /// The message up to (not including) `,uid=`.
    head: String,
}

/// Joins the records of one kill. Feed it every record in order; it returns the kill when the
/// "Killed process" line arrives, merged with the preceding "oom-kill:" line of the same pid
/// when there is one.
#[derive(Debug, Default)]
pub(crate) struct OomKillAssembler {
    pending: VecDeque<PendingConstraint>,
}

impl OomKillAssembler {
    /// An assembler that has seen no record yet.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Takes the next record; returns a kill when `rec` completes one. Records that user space
    /// wrote (facility other than 0) and lines that do not parse are ignored.
    pub(crate) fn push(&mut self, rec: &KmsgRecord) -> Option<KmsgOomKill> {
        if !rec.is_from_kernel() {
            return None;
        }
        if let Some(constraint) = parse_constraint_line(&rec.message) {
            if self.pending.len() == PENDING_CONSTRAINTS {
                self.pending.pop_front();
            }
            self.pending.push_back(constraint);
            return None;
        }
        let killed = parse_killed_line(&rec.message)?;
        let mut kill = KmsgOomKill {
            pid: killed.pid,
            comm: killed.comm,
            task_memcg: None,
            oom_memcg: None,
            constraint: None,
            total_vm_bytes: killed.sizes.total_vm_bytes,
            anon_rss_bytes: killed.sizes.anon_rss_bytes,
            file_rss_bytes: killed.sizes.file_rss_bytes,
            shmem_rss_bytes: killed.sizes.shmem_rss_bytes,
            oom_score_adj: killed.sizes.oom_score_adj,
            uid: killed.sizes.uid,
            memcg_oom: killed.memcg_oom,
            usec: rec.usec,
        };
        if let Some(i) = self.pending.iter().rposition(|p| p.pid == kill.pid) {
            if let Some(pending) = self.pending.remove(i) {
                let memcgs = split_constraint_head(&pending.head, &kill.comm, kill.pid);
                kill.constraint = memcgs.constraint;
                kill.oom_memcg = memcgs.oom_memcg;
                kill.task_memcg = memcgs.task_memcg;
                kill.uid = kill.uid.or(pending.uid);
            }
        }
        Some(kill)
    }
}

/// `oom-kill:…,task=COMM,pid=N,uid=N`: keeps what is needed to split it once the comm is known.
fn parse_constraint_line(message: &str) -> Option<PendingConstraint> {
    if !message.starts_with("oom-kill:") {
        return None;
    }
    // Parse from the end: the comm comes before `,pid=`, so the last `,uid=` and the last
    // `,pid=` before it are the kernel's.
    let (head, uid) = message.rsplit_once(",uid=")?;
    let (_, pid) = head.rsplit_once(",pid=")?;
    Some(PendingConstraint {
        pid: pid.parse().ok()?,
        uid: uid.parse().ok(),
        head: head.to_string(),
    })
}

/// The memory cgroups and constraint named by an "oom-kill:" line.
#[derive(Debug, Default, PartialEq, Eq)]
struct ConstraintFields {
    constraint: Option<String>,
    oom_memcg: Option<String>,
    task_memcg: Option<String>,
}

/// Splits `oom-kill:constraint=C,nodemask=…,cpuset=…,mems_allowed=…,oom_memcg=P|global_oom,
/// task_memcg=P,task=COMM,pid=N` (the `,uid=` part already removed). `comm` from the "Killed
/// process" line cuts the task part off exactly, whatever characters it holds.
fn split_constraint_head(head: &str, comm: &str, pid: u32) -> ConstraintFields {
    let task_suffix = format!(",task={comm},pid={pid}");
    let body = match head.strip_suffix(&task_suffix) {
        Some(body) => body,
        // The comm differs (truncated or escaped differently): fall back to the last `,task=`,
        // which is only wrong if the comm itself contains `,task=`.
        None => match head.rsplit_once(",task=") {
            Some((body, _)) => body,
            None => head,
        },
    };
    let constraint = body
        .strip_prefix("oom-kill:constraint=")
        .and_then(|rest| rest.split(',').next())
        .filter(|c| !c.is_empty())
        .map(str::to_string);
    // Cgroup paths are chosen by the node's administrator or runtime, not by the task: the
    // first `,oom_memcg=` and the last `,task_memcg=` are the kernel's.
    let (before_task, task_memcg) = match body.rsplit_once(",task_memcg=") {
        Some((before, path)) => (before, Some(path.to_string())),
        None => (body, None),
    };
    let oom_memcg = before_task
        .split_once(",oom_memcg=")
        .map(|(_, path)| path.to_string());
    ConstraintFields {
        constraint,
        oom_memcg,
        task_memcg,
    }
}

/// The sizes of a "Killed process" line, each optional (older kernels print fewer).
#[derive(Debug, Default, PartialEq, Eq)]
struct KilledSizes {
    total_vm_bytes: Option<u64>,
    anon_rss_bytes: Option<u64>,
    file_rss_bytes: Option<u64>,
    shmem_rss_bytes: Option<u64>,
    oom_score_adj: Option<i32>,
    uid: Option<u32>,
}

#[derive(Debug)]
struct KilledLine {
    pid: u32,
    comm: String,
    sizes: KilledSizes,
    memcg_oom: Option<bool>,
}

/// `[Memory cgroup out of memory|Out of memory…]: Killed process PID (COMM) total-vm:NkB, …`
fn parse_killed_line(message: &str) -> Option<KilledLine> {
    const MARK: &str = "Killed process ";
    let start = message.find(MARK)?;
    // Either the whole line (4.x kernels) or after the kernel's "…out of memory…: " prefix.
    if start != 0 && !message[..start].ends_with(": ") {
        return None;
    }
    let rest = &message[start + MARK.len()..];
    let (pid, rest) = rest.split_once(" (")?;
    let pid = pid.parse::<u32>().ok()?;
    // The comm may contain `)` and even `) total-vm:`; what follows the kernel's own
    // `) total-vm:` never does, so the last one ends the comm.
    let (comm, sizes) = match rest.rfind(") total-vm:") {
        Some(end) => (&rest[..end], parse_sizes(&rest[end + 2..])),
        None => (&rest[..rest.rfind(')')?], KilledSizes::default()),
    };
    let prefix = &message[..start];
    let memcg_oom = if prefix.starts_with("Memory cgroup out of memory") {
        Some(true)
    } else if prefix.starts_with("Out of memory") {
        Some(false)
    } else {
        None
    };
    Some(KilledLine {
        pid,
        comm: comm.to_string(),
        sizes,
        memcg_oom,
    })
}

/// `total-vm:78064kB, anon-rss:65152kB, file-rss:3412kB, shmem-rss:0kB, UID:0 pgtables:192kB
/// oom_score_adj:0`; unknown keys and unparsable values are skipped.
fn parse_sizes(tail: &str) -> KilledSizes {
    let mut sizes = KilledSizes::default();
    let kib = |value: &str| {
        value
            .strip_suffix("kB")
            .and_then(|n| n.parse::<u64>().ok())
            .and_then(|n| n.checked_mul(1024))
    };
    for token in tail.split([',', ' ']).filter(|t| !t.is_empty()) {
        let Some((key, value)) = token.split_once(':') else {
            continue;
        };
        match key {
            "total-vm" => sizes.total_vm_bytes = kib(value),
            "anon-rss" => sizes.anon_rss_bytes = kib(value),
            "file-rss" => sizes.file_rss_bytes = kib(value),
            "shmem-rss" => sizes.shmem_rss_bytes = kib(value),
            "UID" => sizes.uid = value.parse().ok(),
            "oom_score_adj" => sizes.oom_score_adj = value.parse().ok(),
            _ => {}
        }
    }
    sizes
}

#[cfg(test)]
mod tests;
mod watcher;

pub(crate) use watcher::KmsgOomWatcher;
