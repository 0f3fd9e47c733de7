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

use std::{
    collections::VecDeque,
    fs::File,
    io::{self, Read, Seek, SeekFrom},
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
};

use tokio::io::{unix::AsyncFd, Interest};

/// The kernel log device.
pub const DEV_KMSG: &str = "/dev/kmsg";

/// Largest record `read(2)` on `/dev/kmsg` returns (the kernel's `CONSOLE_EXT_LOG_MAX` is
/// 8 KiB); a smaller buffer makes the read fail with `EINVAL`.
const RECORD_BUFFER: usize = 16 * 1024;

/// How many "oom-kill:" lines wait for their "Killed process" line at most.
const PENDING_CONSTRAINTS: usize = 16;

/// Why reading or parsing the kernel log failed.
#[derive(Debug, thiserror::Error)]
pub enum KmsgError {
    /// `/dev/kmsg` could not be opened.
    #[error(
        "cannot open {}: {source}; reading the kernel log needs root (CAP_SYSLOG) or \
         kernel.dmesg_restrict=0",
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
        "cannot seek to the end of {}: {source}; the kernel log device does not support \
         SEEK_END (kernel older than 3.5?)",
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
    #[error("cannot watch {} for new records: {source}", path.display())]
    Register {
        /// The device path.
        path: PathBuf,
        /// What the reactor reported.
        #[source]
        source: io::Error,
    },
    /// `read(2)` on the log device failed.
    #[error("reading a record from {} failed: {source}", path.display())]
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
pub struct KmsgRecord {
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
    pub fn from_kernel(&self) -> bool {
        self.priority >> 3 == 0
    }
}

/// Parses one record as `read(2)` on `/dev/kmsg` returns it:
/// `priority,sequence,microseconds,flags[,more];message\n[ KEY=value\n]...`.
pub fn parse_record(raw: &[u8]) -> Result<KmsgRecord, KmsgError> {
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
pub struct KmsgOomKill {
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
pub struct OomKillAssembler {
    pending: VecDeque<PendingConstraint>,
}

impl OomKillAssembler {
    /// An assembler that has seen no record yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes the next record; returns a kill when `rec` completes one. Records that user space
    /// wrote (facility other than 0) and lines that do not parse are ignored.
    pub fn push(&mut self, rec: &KmsgRecord) -> Option<KmsgOomKill> {
        if !rec.from_kernel() {
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
    Some(KilledLine {
        pid,
        comm: comm.to_string(),
        sizes,
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

/// Reads `/dev/kmsg` from the moment it is opened and yields the OOM kills logged after that.
pub struct KmsgOomWatcher {
    fd: AsyncFd<File>,
    path: PathBuf,
    buf: Vec<u8>,
    assembler: OomKillAssembler,
    losses: LossCounter,
}

/// Counts records lost to ring-buffer overruns, from `EPIPE` and sequence number gaps.
#[derive(Debug, Default)]
struct LossCounter {
    last_seq: Option<u64>,
    /// `read(2)` reported `EPIPE` and no record has been read since.
    overrun_pending: bool,
    lost: u64,
}

impl LossCounter {
    fn overrun(&mut self) {
        self.overrun_pending = true;
    }

    /// Counts the records lost between the previous record and `seq`; after an overrun whose
    /// size is unknown (no previous record) counts one.
    fn record(&mut self, seq: u64) {
        let gap = match self.last_seq {
            Some(last) if seq > last => seq - last - 1,
            _ => 0,
        };
        self.lost += if self.overrun_pending {
            gap.max(1)
        } else {
            gap
        };
        self.overrun_pending = false;
        self.last_seq = Some(seq);
    }
}

impl std::fmt::Debug for KmsgOomWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KmsgOomWatcher")
            .field("losses", &self.losses)
            .finish_non_exhaustive()
    }
}

impl KmsgOomWatcher {
    /// Opens [`DEV_KMSG`] non-blocking and positions it after the newest record, so only kills
    /// logged from now on are reported. Must be called inside a tokio runtime with I/O enabled.
    pub fn open() -> Result<Self, KmsgError> {
        Self::open_path(Path::new(DEV_KMSG))
    }

    fn open_path(path: &Path) -> Result<Self, KmsgError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(KmsgError::NoRuntime);
        }
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(path)
            .map_err(|source| KmsgError::Open {
                path: path.to_path_buf(),
                source,
            })?;
        file.seek(SeekFrom::End(0))
            .map_err(|source| KmsgError::Seek {
                path: path.to_path_buf(),
                source,
            })?;
        // SAFETY: the `File` owns its descriptor, keeps it open until the `AsyncFd` drops it
        // and always returns the same one; it is never swapped out through `get_mut`.
        let fd =
            unsafe { AsyncFd::register_with_interest(file, Interest::READABLE) }.map_err(|e| {
                KmsgError::Register {
                    path: path.to_path_buf(),
                    source: e.into_parts().1,
                }
            })?;
        Ok(Self {
            fd,
            path: path.to_path_buf(),
            buf: vec![0; RECORD_BUFFER],
            assembler: OomKillAssembler::new(),
            losses: LossCounter::default(),
        })
    }

    /// How many records the kernel overwrote before they could be read (a kill among them is
    /// lost). A count of at least one per overrun when the exact number is unknown.
    pub fn overwritten(&self) -> u64 {
        self.losses.lost
    }

    /// Waits for the next OOM kill. Records that do not parse are skipped (logged at debug
    /// level); only an I/O error on the device ends the wait with an error.
    ///
    /// Cancel-safe (usable in `tokio::select!`): a record is read and handled without an await
    /// in between, so dropping the future loses nothing.
    pub async fn next_kill(&mut self) -> Result<KmsgOomKill, KmsgError> {
        loop {
            let raw = self.next_raw_record().await?;
            match parse_record(&raw) {
                Ok(record) => {
                    self.losses.record(record.seq);
                    if let Some(kill) = self.assembler.push(&record) {
                        return Ok(kill);
                    }
                }
                Err(e) => log::debug!("skipping kernel log record: {e}"),
            }
        }
    }

    /// One `read(2)`, which returns exactly one record; waits while there is none.
    async fn next_raw_record(&mut self) -> Result<Vec<u8>, KmsgError> {
        loop {
            let mut guard = self.fd.readable().await.map_err(|source| KmsgError::Read {
                path: self.path.clone(),
                source,
            })?;
            let buf = &mut self.buf;
            match guard.try_io(|file| file.get_ref().read(buf)) {
                Ok(Ok(0)) => {
                    return Err(KmsgError::Read {
                        path: self.path.clone(),
                        source: io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "the kernel log device returned end of file",
                        ),
                    })
                }
                Ok(Ok(n)) => return Ok(buf[..n].to_vec()),
                // The ring buffer wrapped past our position; the next read resumes at the
                // oldest record still there.
                Ok(Err(e)) if e.raw_os_error() == Some(libc::EPIPE) => {
                    self.losses.overrun();
                }
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Ok(Err(source)) => {
                    return Err(KmsgError::Read {
                        path: self.path.clone(),
                        source,
                    })
                }
                // EAGAIN: readiness was cleared, wait for the next record.
                Err(_would_block) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Splits a `/dev/kmsg` dump into records as `read(2)` returns them: a line starting with a
    /// space continues the previous record.
    fn records(dump: &[u8]) -> Vec<Vec<u8>> {
        let mut out: Vec<Vec<u8>> = Vec::new();
        for line in dump.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            match out.last_mut() {
                Some(last) if line.starts_with(b" ") => {
                    last.extend_from_slice(line);
                    last.push(b'\n');
                }
                _ => {
                    let mut record = line.to_vec();
                    record.push(b'\n');
                    out.push(record);
                }
            }
        }
        out
    }

    fn kills(dump: &[u8]) -> Vec<KmsgOomKill> {
        let mut assembler = OomKillAssembler::new();
        records(dump)
            .iter()
            .filter_map(|raw| parse_record(raw).ok())
            .filter_map(|rec| assembler.push(&rec))
            .collect()
    }

    fn fixture(name: &str) -> Vec<u8> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("testdata/kmsg")
            .join(name);
        match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) => panic!("fixture {}: {e}", path.display()),
        }
    }

    #[test]
    fn parses_a_record_and_drops_continuation_lines() {
        let rec = parse_record(
            b"6,185,213973,-;acpi PNP0A08:00: _OSC: OS supports [ExtendedConfig]\n \
              SUBSYSTEM=acpi\n DEVICE=+acpi:PNP0A08:00\n",
        );
        assert_eq!(
            rec.ok(),
            Some(KmsgRecord {
                priority: 6,
                seq: 185,
                usec: 213973,
                message: "acpi PNP0A08:00: _OSC: OS supports [ExtendedConfig]".to_string(),
            })
        );
        // Extra header fields after the flags are ignored.
        let rec = parse_record(b"4,7,8,c,caller=T12;hello");
        assert_eq!(rec.ok().map(|r| r.message), Some("hello".to_string()));
    }

    #[test]
    fn boot_sample_unescapes_and_keeps_every_record() {
        let dump = fixture("boot_sample.kmsg");
        let parsed: Vec<KmsgRecord> = records(&dump)
            .iter()
            .map(|raw| match parse_record(raw) {
                Ok(rec) => rec,
                Err(e) => panic!("{e}"),
            })
            .collect();
        assert_eq!(parsed.len(), 13);
        assert!(parsed.iter().all(|r| !r.message.contains('\n')));
        assert!(parsed.iter().all(|r| !r.message.contains("SUBSYSTEM=")));
        let tab = parsed
            .iter()
            .find(|r| r.seq == 90)
            .map(|r| r.message.clone());
        assert_eq!(
            tab.as_deref(),
            Some("rcu: \tRCU restricting CPUs from NR_CPUS=256 to nr_cpu_ids=2.")
        );
        let mut assembler = OomKillAssembler::new();
        assert!(parsed.iter().all(|r| assembler.push(r).is_none()));
    }

    #[test]
    fn unescape_decodes_bytes_and_leaves_broken_escapes() {
        assert_eq!(unescape(br"a\x5cb\x09c"), b"a\\b\tc".to_vec());
        assert_eq!(unescape(br"\xc3\xa9t\xC3\xA9"), "été".as_bytes().to_vec());
        assert_eq!(unescape(br"\x"), br"\x".to_vec());
        assert_eq!(unescape(br"\xZZ\x4"), br"\xZZ\x4".to_vec());
        assert_eq!(unescape(br"end\"), br"end\".to_vec());
    }

    #[test]
    fn memcg_kill_joins_both_lines() {
        let kills = kills(&fixture("memcg_kill.kmsg"));
        assert_eq!(
            kills,
            vec![KmsgOomKill {
                pid: 4500,
                comm: "python3".to_string(),
                task_memcg: Some(
                    "/process_api/908f0444ed327842bef1fa441397fd3d/demo-kmsg".to_string()
                ),
                oom_memcg: Some(
                    "/process_api/908f0444ed327842bef1fa441397fd3d/demo-kmsg".to_string()
                ),
                constraint: Some("CONSTRAINT_MEMCG".to_string()),
                total_vm_bytes: Some(78064 * 1024),
                anon_rss_bytes: Some(65152 * 1024),
                file_rss_bytes: Some(3412 * 1024),
                shmem_rss_bytes: Some(0),
                oom_score_adj: Some(0),
                uid: Some(0),
                usec: 249345583,
            }]
        );
    }

    #[test]
    fn global_oom_has_no_oom_memcg() {
        let kills = kills(&fixture("global_oom.kmsg"));
        assert_eq!(kills.len(), 1, "{kills:?}");
        let kill = &kills[0];
        assert_eq!(kill.pid, 777);
        assert_eq!(kill.comm, "stress");
        assert_eq!(kill.constraint.as_deref(), Some("CONSTRAINT_NONE"));
        assert_eq!(kill.oom_memcg, None);
        assert_eq!(
            kill.task_memcg.as_deref(),
            Some("/system.slice/stress.service")
        );
        assert_eq!(kill.oom_score_adj, Some(500));
        assert_eq!(kill.uid, Some(1000));
        assert_eq!(kill.anon_rss_bytes, Some(7836000 * 1024));
    }

    #[test]
    fn hostile_comms_are_kept_whole() {
        let kills = kills(&fixture("hostile_comm.kmsg"));
        assert_eq!(kills.len(), 3, "{kills:?}");

        assert_eq!(kills[0].pid, 3100);
        assert_eq!(kills[0].comm, "(<>&\"'$;)\u{1b}\\");
        assert_eq!(kills[0].task_memcg.as_deref(), Some("/kubepods/pod1/c1"));
        assert_eq!(kills[0].oom_memcg.as_deref(), Some("/kubepods/pod1/c1"));
        assert_eq!(kills[0].shmem_rss_bytes, Some(4 * 1024));
        assert_eq!(kills[0].oom_score_adj, Some(-998));

        // The comm mimics the constraint line's own fields.
        assert_eq!(kills[1].pid, 3200);
        assert_eq!(kills[1].comm, "x,task=y),pid=1");
        assert_eq!(kills[1].task_memcg.as_deref(), Some("/kubepods/pod2/c2"));
        assert_eq!(kills[1].oom_memcg.as_deref(), Some("/kubepods/pod2"));
        assert_eq!(kills[1].uid, Some(65534));
        assert_eq!(kills[1].total_vm_bytes, Some(4096 * 1024));

        // The comm mimics the killed line's own `) total-vm:`; no constraint line.
        assert_eq!(kills[2].pid, 3300);
        assert_eq!(kills[2].comm, "a) total-vm:1");
        assert_eq!(kills[2].total_vm_bytes, Some(8192 * 1024));
        assert_eq!(kills[2].task_memcg, None);
        assert_eq!(kills[2].constraint, None);
    }

    #[test]
    fn old_kernel_lines_leave_missing_parts_empty() {
        let kills = kills(&fixture("old_kernel.kmsg"));
        assert_eq!(
            kills,
            vec![KmsgOomKill {
                pid: 4321,
                comm: "java".to_string(),
                task_memcg: None,
                oom_memcg: None,
                constraint: None,
                total_vm_bytes: Some(3145728 * 1024),
                anon_rss_bytes: Some(1048576 * 1024),
                file_rss_bytes: Some(2048 * 1024),
                shmem_rss_bytes: None,
                oom_score_adj: None,
                uid: None,
                usec: 90000210,
            }]
        );
    }

    #[test]
    fn garbage_yields_nothing() {
        let dump = fixture("garbage.kmsg");
        let raw = records(&dump);
        assert_eq!(raw.len(), 14);
        let mut assembler = OomKillAssembler::new();
        for record in &raw {
            if let Ok(rec) = parse_record(record) {
                assert_eq!(assembler.push(&rec), None, "{rec:?}");
            }
        }
        assert!(parse_record(b"").is_err());
        assert!(parse_record(b"garbage").is_err());
        assert!(matches!(
            parse_record(b"999,1,2,-;x"),
            Err(KmsgError::Malformed { .. })
        ));
        // Every prefix of a real record parses or fails, never panics.
        let real = b"3,410,249345583,-;Memory cgroup out of memory: Killed process 4500 \
                     (python3) total-vm:78064kB, anon-rss:65152kB, file-rss:3412kB, \
                     shmem-rss:0kB, UID:0 pgtables:192kB oom_score_adj:0\xff\\x";
        for end in 0..=real.len() {
            if let Ok(rec) = parse_record(&real[..end]) {
                let _ = OomKillAssembler::new().push(&rec);
            }
        }
    }

    #[test]
    fn unparsable_sizes_become_none() {
        let rec = KmsgRecord {
            priority: 3,
            seq: 1,
            usec: 2,
            message: "Out of memory: Killed process 12 (x) total-vm:99999999999999999999kB, \
                      anon-rss:xkB, file-rss:1kB"
                .to_string(),
        };
        let kill = OomKillAssembler::new().push(&rec);
        assert_eq!(kill.as_ref().map(|k| k.pid), Some(12));
        assert_eq!(kill.as_ref().and_then(|k| k.total_vm_bytes), None);
        assert_eq!(kill.as_ref().and_then(|k| k.anon_rss_bytes), None);
        assert_eq!(kill.as_ref().and_then(|k| k.file_rss_bytes), Some(1024));
    }

    #[test]
    fn constraint_line_without_killed_line_is_forgotten() {
        let mut assembler = OomKillAssembler::new();
        for pid in 0..100u32 {
            let rec = KmsgRecord {
                priority: 6,
                seq: u64::from(pid),
                usec: 0,
                message: format!(
                    "oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,\
                     mems_allowed=0,oom_memcg=/a,task_memcg=/a,task=t,pid={pid},uid=0"
                ),
            };
            assert_eq!(assembler.push(&rec), None);
        }
        assert_eq!(assembler.pending.len(), PENDING_CONSTRAINTS);
    }

    #[test]
    fn lost_records_are_counted_from_sequence_gaps_and_overruns() {
        let mut losses = LossCounter::default();
        // Overrun before the first record: the size is unknown, count one.
        losses.overrun();
        losses.record(10);
        assert_eq!(losses.lost, 1);
        losses.record(11);
        assert_eq!(losses.lost, 1);
        losses.record(15);
        assert_eq!(losses.lost, 4);
        losses.overrun();
        losses.record(20);
        assert_eq!(losses.lost, 8);
    }

    #[test]
    fn open_outside_a_runtime_is_an_error() {
        assert!(matches!(KmsgOomWatcher::open(), Err(KmsgError::NoRuntime)));
    }

    /// A child memory cgroup of the test's own, with one process in it; both removed on drop.
    struct OomCgroup {
        dir: PathBuf,
        child: Option<std::process::Child>,
    }

    impl OomCgroup {
        fn create(name: &str, limit: &str) -> Self {
            let cgroup = match std::fs::read_to_string("/proc/self/cgroup") {
                Ok(text) => text,
                Err(e) => panic!("/proc/self/cgroup: {e}"),
            };
            let own = cgroup.lines().find_map(|line| {
                let mut parts = line.splitn(3, ':');
                let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
                controllers
                    .split(',')
                    .any(|c| c == "memory")
                    .then(|| path.to_string())
            });
            let Some(own) = own else {
                panic!("this test needs the cgroup v1 memory controller (no memory: line in /proc/self/cgroup)");
            };
            let dir = PathBuf::from(format!("/sys/fs/cgroup/memory{own}")).join(name);
            if let Err(e) = std::fs::create_dir(&dir) {
                panic!("mkdir {}: {e}", dir.display());
            }
            let cgroup = Self { dir, child: None };
            let limit_file = cgroup.dir.join("memory.limit_in_bytes");
            if let Err(e) = std::fs::write(&limit_file, limit) {
                panic!("write {}: {e}", limit_file.display());
            }
            cgroup
        }

        /// Starts `tail /dev/zero` (which buffers without bound) inside the cgroup.
        fn start_hog(&mut self) -> u32 {
            let child = std::process::Command::new("sh")
                .arg("-c")
                .arg(r#"echo $$ > "$1/cgroup.procs" && exec tail /dev/zero"#)
                .arg("sh")
                .arg(&self.dir)
                .stdout(std::process::Stdio::null())
                .spawn();
            let child = match child {
                Ok(child) => child,
                Err(e) => panic!("spawn sh: {e}"),
            };
            let pid = child.id();
            self.child = Some(child);
            pid
        }
    }

    impl Drop for OomCgroup {
        fn drop(&mut self) {
            if let Some(mut child) = self.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
            // The cgroup stays busy for a moment after its last task exits.
            for _ in 0..100 {
                if std::fs::remove_dir(&self.dir).is_ok() || !self.dir.exists() {
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            eprintln!("could not remove test cgroup {}", self.dir.display());
        }
    }

    /// Needs root, the v1 memory controller and a real OOM kill (this machine).
    #[tokio::test(flavor = "current_thread")]
    async fn real_memcg_oom_kill_is_reported() {
        let mut watcher = match KmsgOomWatcher::open() {
            Ok(watcher) => watcher,
            Err(e) => panic!("{e}"),
        };
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        let name = format!("kmsg-test-{}-{nanos}", std::process::id());
        let mut cgroup = OomCgroup::create(&name, "32M");
        let pid = cgroup.start_hog();

        let wait = async {
            loop {
                match watcher.next_kill().await {
                    Ok(kill) if kill.pid == pid => return kill,
                    // Another kill on the machine: keep waiting for ours.
                    Ok(_) => {}
                    Err(e) => panic!("{e}"),
                }
            }
        };
        let kill = match tokio::time::timeout(std::time::Duration::from_secs(10), wait).await {
            Ok(kill) => kill,
            Err(_) => panic!("no OOM kill of pid {pid} reported within 10 s"),
        };
        assert_eq!(kill.comm, "tail");
        let suffix = format!("/{name}");
        assert!(
            kill.task_memcg
                .as_deref()
                .is_some_and(|m| m.ends_with(&suffix)),
            "{kill:?}"
        );
        assert_eq!(kill.constraint.as_deref(), Some("CONSTRAINT_MEMCG"));
        assert!(
            kill.anon_rss_bytes.unwrap_or_default() > 16 << 20,
            "{kill:?}"
        );
        drop(cgroup);
    }
}
