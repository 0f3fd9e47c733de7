//! A HotSpot JVM's own heap figures, read from its perf-data file: the memory region the JVM
//! publishes its counters in and that `jstat` reads, `/tmp/hsperfdata_<user>/<pid>` as the JVM
//! sees it.
//!
//! The launch (`-Xmx`, `MaxRAMPercentage`) says what the heap was asked to be; these counters
//! say what the JVM made of it (ergonomics, rounding to regions) and how much of it is committed
//! and in use now. The file's layout is HotSpot's `PerfDataPrologue` followed by `PerfDataEntry`
//! records (`src/hotspot/share/runtime/perfMemory.hpp`):
//!
//! ```text
//! prologue (32 bytes)                  entry (20 bytes, then name, padding, data)
//!  0 magic ca fe c0 c0                  0 entry_length   4 name_offset   8 vector_length
//!  4 byte_order (0 big, 1 little)      12 data_type ('J' long, 'B' byte vector = string)
//!  5 major  6 minor  7 accessible      13 flags  14 units  15 variability
//!  8 used  12 overflow                 16 data_offset (name and data offsets from the entry)
//! 16 mod_time_stamp (8 bytes)
//! 24 entry_offset  28 num_entries
//! ```
//!
//! The figures are as of the JVM's last update of its counters, not of this instant: Serial and
//! Parallel sample theirs every 50 ms (`PerfDataSamplingInterval`); G1 updates its at each
//! collection and when it takes a new eden region.
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use thiserror::Error;

/// The file's first four bytes whatever the JVM's byte order: it writes `0xcafec0c0` so.
const MAGIC: [u8; 4] = [0xca, 0xfe, 0xc0, 0xc0];
/// The layout read here; HotSpot has written 2.0 since JDK 5 (1.0 had no entry table offset).
const MAJOR_VERSION: u8 = 2;
/// Bytes in the prologue.
const PROLOGUE_LEN: usize = 32;
/// Bytes in an entry's fixed part.
const ENTRY_HEADER_LEN: usize = 20;
/// The most read of one file: HotSpot's region is 32 KiB unless `-XX:PerfDataMemorySize` says
/// otherwise, so anything far larger is not one.
const MAX_FILE_LEN: u64 = 16 << 20;
/// G1's smallest region. Its heap figures are whole regions, so flooring to this drops the
/// padding it adds to them (see [`heap`]).
const G1_MIN_REGION: u64 = 1 << 20;

/// What the JVM says of its Java heap, bytes; `None` where it publishes no such counter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct JvmHeap {
    /// The most the heap may grow to (`MaxHeapSize`).
    pub max_bytes: Option<u64>,
    /// What the heap has committed now.
    pub committed_bytes: Option<u64>,
    /// What live and not yet collected objects take now.
    pub used_bytes: Option<u64>,
}

/// Why a JVM's perf data could not be read.
#[derive(Debug, Error)]
pub(crate) enum HsPerfError {
    /// A file under `/proc` could not be read.
    #[error("cannot read {}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the kernel said.
        #[source]
        source: io::Error,
    },
    /// The process has no perf-data file.
    #[error(
        "process {pid} has no /tmp/hsperfdata_*/ file: not a HotSpot JVM, or one run with \
         -XX:-UsePerfData or -XX:+PerfDisableSharedMem"
    )]
    NotFound {
        /// The process, as the host sees it.
        pid: u32,
    },
    /// `/proc/PID/status` holds an `NSpid` line that is not a list of numbers.
    #[error("the NSpid line of /proc/{pid}/status is not a list of pids")]
    BadStatus {
        /// The process, as the host sees it.
        pid: u32,
    },
    /// The file is larger than any perf-data region.
    #[error("{} is too large for a perf-data file", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
    },
    /// The file does not start with the perf-data magic.
    #[error("not a HotSpot perf-data file: it starts with {found:02x?}, not ca fe c0 c0")]
    BadMagic {
        /// Its first bytes.
        found: Vec<u8>,
    },
    /// A layout other than 2.x.
    #[error("perf-data layout {major}.{minor} is not supported (only 2.x)")]
    Version {
        /// Major version.
        major: u8,
        /// Minor version.
        minor: u8,
    },
    /// The byte-order byte is neither 0 nor 1.
    #[error("perf-data byte order {0} is neither big-endian (0) nor little-endian (1)")]
    ByteOrder(u8),
    /// The JVM has not finished setting up its counters (or is tearing them down).
    #[error("the JVM's perf data is not marked accessible yet; try again once it has started")]
    NotAccessible,
    /// An offset or length points outside the data.
    #[error("{what} at byte {offset} lies outside the {len} bytes in use: truncated or corrupt")]
    OutOfRange {
        /// What was being read.
        what: &'static str,
        /// Where it starts.
        offset: u64,
        /// The bytes there are.
        len: usize,
    },
    /// An entry that contradicts itself.
    #[error("perf-data entry {index}: {reason}")]
    BadEntry {
        /// Its position in the table.
        index: u32,
        /// What is wrong.
        reason: &'static str,
    },
    /// A size counter that is negative, or sizes that add past 64 bits.
    #[error("{what} is not a plausible size")]
    BadFigure {
        /// The counter or sum.
        what: String,
    },
}

/// Reads the heap figures of the JVM that is host process `pid`, through its own view of the
/// file system (`/proc/PID/root`) and its own pid (the last of `NSpid`): a JVM in a container
/// names its file after the pid it has in its pid namespace.
pub(crate) fn read(pid: u32) -> Result<JvmHeap, HsPerfError> {
    read_under(Path::new("/proc"), pid)
}

/// [`read`] with `/proc` at `proc_root` (tests build a fake one).
fn read_under(proc_root: &Path, pid: u32) -> Result<JvmHeap, HsPerfError> {
    let path = find_file(proc_root, pid)?;
    let bytes = match read_capped(&path) {
        Ok(bytes) => bytes,
        // The JVM exited since its directory was listed.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(HsPerfError::NotFound { pid }),
        Err(e) if e.kind() == io::ErrorKind::FileTooLarge => {
            return Err(HsPerfError::TooLarge { path })
        }
        Err(source) => return Err(HsPerfError::Io { path, source }),
    };
    parse(&bytes)
}

/// The whole of a file of at most [`MAX_FILE_LEN`] bytes.
fn read_capped(path: &Path) -> io::Result<Vec<u8>> {
    let file = File::open(path)?;
    if file.metadata()?.len() > MAX_FILE_LEN {
        return Err(io::ErrorKind::FileTooLarge.into());
    }
    let mut bytes = Vec::new();
    // The size may change under us; the cap holds whatever it becomes.
    file.take(MAX_FILE_LEN).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// The perf-data file of host process `pid`: `hsperfdata_*/<nspid>` in its `/tmp` (HotSpot
/// uses `/tmp` on Linux whatever `java.io.tmpdir` says).
fn find_file(proc_root: &Path, pid: u32) -> Result<PathBuf, HsPerfError> {
    let process = proc_root.join(pid.to_string());
    let status_path = process.join("status");
    let status = fs::read_to_string(&status_path).map_err(|source| HsPerfError::Io {
        path: status_path,
        source,
    })?;
    let ids = StatusIds::parse(&status).ok_or(HsPerfError::BadStatus { pid })?;
    // Kernels before 4.1 have no NSpid line; the pid is then the same everywhere.
    let file_name = ids.nspid.unwrap_or(pid).to_string();
    let tmp = process.join("root/tmp");
    let entries = match fs::read_dir(&tmp) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(HsPerfError::NotFound { pid }),
        Err(source) => return Err(HsPerfError::Io { path: tmp, source }),
    };
    // Another user's directory may hold a stale file of a JVM that had the same pid: prefer
    // the file the process's user owns, then the one written last.
    let mut best: Option<((bool, i64), PathBuf)> = None;
    for entry in entries {
        let entry = entry.map_err(|source| HsPerfError::Io {
            path: tmp.clone(),
            source,
        })?;
        if !entry
            .file_name()
            .as_encoded_bytes()
            .starts_with(b"hsperfdata_")
        {
            continue;
        }
        let candidate = entry.path().join(&file_name);
        let meta = match fs::metadata(&candidate) {
            Ok(meta) if meta.is_file() => meta,
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(source) => {
                return Err(HsPerfError::Io {
                    path: candidate,
                    source,
                })
            }
        };
        let rank = (Some(meta.uid()) == ids.euid, meta.mtime());
        if best.as_ref().is_none_or(|(best_rank, _)| rank > *best_rank) {
            best = Some((rank, candidate));
        }
    }
    best.map(|(_, path)| path)
        .ok_or(HsPerfError::NotFound { pid })
}

/// What `/proc/PID/status` says of who the process is.
#[derive(Debug, PartialEq, Eq)]
struct StatusIds {
    /// The pid in the process's own pid namespace (the last of `NSpid`).
    nspid: Option<u32>,
    /// The effective uid (the second of `Uid`).
    euid: Option<u32>,
}

impl StatusIds {
    /// From the file's text; `None` when the `NSpid` line is there but not pids.
    fn parse(status: &str) -> Option<Self> {
        let mut ids = StatusIds {
            nspid: None,
            euid: None,
        };
        for line in status.lines() {
            if let Some(pids) = line.strip_prefix("NSpid:") {
                ids.nspid = Some(pids.split_whitespace().last()?.parse().ok()?);
            } else if let Some(uids) = line.strip_prefix("Uid:") {
                ids.euid = uids.split_whitespace().nth(1).and_then(|u| u.parse().ok());
            }
        }
        Some(ids)
    }
}

/// The heap figures in a perf-data file's bytes.
pub(crate) fn parse(bytes: &[u8]) -> Result<JvmHeap, HsPerfError> {
    heap(&counters(bytes)?)
}

/// A counter's value, of the two kinds read here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Value<'a> {
    /// A `long` scalar.
    Long(i64),
    /// A byte vector: a string, up to its first NUL.
    Text(&'a [u8]),
}

/// Bytes of the file, read in its byte order with every read bounds-checked.
struct Data<'a> {
    /// The bytes.
    bytes: &'a [u8],
    /// Whether the JVM wrote them big-endian.
    big_endian: bool,
}

impl<'a> Data<'a> {
    /// `len` bytes at `offset`.
    fn slice(
        &self,
        offset: usize,
        len: usize,
        what: &'static str,
    ) -> Result<&'a [u8], HsPerfError> {
        offset
            .checked_add(len)
            .and_then(|end| self.bytes.get(offset..end))
            .ok_or_else(|| self.out_of_range(offset, what))
    }

    /// The `N` bytes at `offset`.
    fn array<const N: usize>(
        &self,
        offset: usize,
        what: &'static str,
    ) -> Result<[u8; N], HsPerfError> {
        let b = self.slice(offset, N, what)?;
        b.try_into().map_err(|_| self.out_of_range(offset, what))
    }

    /// The error for `what` at `offset`.
    fn out_of_range(&self, offset: usize, what: &'static str) -> HsPerfError {
        HsPerfError::OutOfRange {
            what,
            offset: offset as u64,
            len: self.bytes.len(),
        }
    }

    /// The 4-byte field at `offset`.
    fn u32(&self, offset: usize, what: &'static str) -> Result<u32, HsPerfError> {
        let b = self.array(offset, what)?;
        Ok(if self.big_endian {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        })
    }

    /// The 4-byte offset or length at `offset`. A negative `jint` reads as a huge one and fails
    /// the bounds checks that follow.
    fn offset(&self, offset: usize, what: &'static str) -> Result<usize, HsPerfError> {
        Ok(self.u32(offset, what)? as usize)
    }

    /// The `long` at `offset`.
    fn i64(&self, offset: usize, what: &'static str) -> Result<i64, HsPerfError> {
        let b = self.array(offset, what)?;
        Ok(if self.big_endian {
            i64::from_be_bytes(b)
        } else {
            i64::from_le_bytes(b)
        })
    }
}

/// Every `long` and string counter in the file, by name.
fn counters(bytes: &[u8]) -> Result<BTreeMap<&str, Value<'_>>, HsPerfError> {
    let magic = bytes.get(..4).ok_or_else(|| HsPerfError::BadMagic {
        found: bytes.to_vec(),
    })?;
    if magic != MAGIC {
        return Err(HsPerfError::BadMagic {
            found: magic.to_vec(),
        });
    }
    let prologue = Data {
        bytes,
        big_endian: false,
    };
    let [_, _, _, _, byte_order, major, minor, accessible] = prologue.array(0, "the prologue")?;
    let big_endian = match byte_order {
        0 => true,
        1 => false,
        other => return Err(HsPerfError::ByteOrder(other)),
    };
    if major != MAJOR_VERSION {
        return Err(HsPerfError::Version { major, minor });
    }
    if accessible == 0 {
        return Err(HsPerfError::NotAccessible);
    }
    let prologue = Data { bytes, big_endian };
    prologue.slice(0, PROLOGUE_LEN, "the prologue")?;
    let used = prologue.offset(8, "the used size")?;
    // Entries live below `used`; what lies beyond is unallocated.
    let data = Data {
        bytes: prologue.slice(0, used, "the used region")?,
        big_endian,
    };
    let mut offset = prologue.offset(24, "the entry table offset")?;
    let count = prologue.u32(28, "the entry count")?;
    let mut counters = BTreeMap::new();
    for index in 0..count {
        let length = data.offset(offset, "an entry")?;
        if length == 0 {
            // The JVM counts an entry before it fills it in: one it is adding now.
            break;
        }
        if length < ENTRY_HEADER_LEN {
            return Err(HsPerfError::BadEntry {
                index,
                reason: "it is shorter than its header",
            });
        }
        let entry = Data {
            bytes: data.slice(offset, length, "an entry")?,
            big_endian,
        };
        if let Some((name, value)) = counter(&entry, index)? {
            counters.entry(name).or_insert(value);
        }
        // No overflow: `data.slice` just held `offset + length`.
        offset += length;
    }
    Ok(counters)
}

/// The name and value of one entry, or `None` for a kind not read here (ints, doubles,
/// arrays of longs).
fn counter<'a>(entry: &Data<'a>, index: u32) -> Result<Option<(&'a str, Value<'a>)>, HsPerfError> {
    let bad = |reason| HsPerfError::BadEntry { index, reason };
    let name_offset = entry.offset(4, "an entry's name")?;
    let name_field = entry.slice(
        name_offset,
        entry.bytes.len().saturating_sub(name_offset),
        "a name",
    )?;
    let name = name_field
        .split(|&b| b == 0)
        .next()
        .filter(|name| name.len() < name_field.len())
        .ok_or_else(|| bad("its name has no end"))?;
    let name = std::str::from_utf8(name).map_err(|_| bad("its name is not text"))?;
    let vector_length = entry.offset(8, "an entry's vector length")?;
    let [data_type] = entry.array(12, "an entry's type")?;
    let data_offset = entry.offset(16, "an entry's data")?;
    let value = match (data_type, vector_length) {
        (b'J', 0) => Value::Long(entry.i64(data_offset, "a long's value")?),
        (b'B', n) if n > 0 => {
            let text = entry.slice(data_offset, n, "a string's value")?;
            Value::Text(text.split(|&b| b == 0).next().unwrap_or_default())
        }
        _ => return Ok(None),
    };
    Ok(Some((name, value)))
}

/// One generation's figures, bytes.
#[derive(Debug, Default)]
struct Generation<'a> {
    /// `sun.gc.generation.N.name`.
    name: Option<&'a [u8]>,
    /// `.maxCapacity`.
    max: Option<u64>,
    /// `.capacity`: committed.
    capacity: Option<u64>,
    /// `.space.M.used` of each space.
    used: Vec<u64>,
}

/// The heap's figures from the generation counters.
///
/// What collectors publish (JDK 17, measured with `-Xms64m -Xmx128m`):
/// - Serial (`Copy:MSC`) and Parallel (`ParScav:MSC`): generation 0 (`new`: eden, s0, s1) and
///   1 (`old`) split the heap; their `maxCapacity` add up to `MaxHeapSize` exactly.
/// - G1 (`GarbageFirst`): any region may be young or old, so both generations' `maxCapacity` are
///   the whole heap; their `capacity` split what is committed. G1 also pads every capacity by
///   `MinObjAlignmentInBytes` per space (so that `jstat` never shows an unused space as 0):
///   `MaxHeapSize + 24` for young, `+ 8` for old.
/// - ZGC (JDK 17: generation 1 only; JDK 21's generational ZGC, from its source: two, each with
///   the whole heap as its maximum, like G1), Shenandoah (an empty generation 0, the heap as generation 1), Epsilon
///   (generation 1): `maxCapacity` is `MaxHeapSize`. Shenandoah's space `capacity` is its
///   maximum, so committed comes from the generation's `capacity`, for every collector.
///
/// Used is the sum of every space's `used`: G1 counts eden in whole regions.
fn heap(counters: &BTreeMap<&str, Value<'_>>) -> Result<JvmHeap, HsPerfError> {
    let mut generations: BTreeMap<u32, Generation<'_>> = BTreeMap::new();
    for (&name, &value) in counters {
        let Some(rest) = name.strip_prefix("sun.gc.generation.") else {
            continue;
        };
        let Some((number, field)) = rest.split_once('.') else {
            continue;
        };
        let Ok(number) = number.parse::<u32>() else {
            continue;
        };
        let generation = generations.entry(number).or_default();
        match (field, value) {
            ("name", Value::Text(text)) => generation.name = Some(text),
            ("maxCapacity", Value::Long(v)) => generation.max = Some(size(name, v)?),
            ("capacity", Value::Long(v)) => generation.capacity = Some(size(name, v)?),
            (space, Value::Long(v)) if is_space_used(space) => generation.used.push(size(name, v)?),
            _ => {}
        }
    }
    // JDK 7 and older published the permanent generation (class metadata) as generation 2.
    generations.retain(|_, g| g.name != Some(b"perm".as_slice()));
    let g1 = is_g1(counters);
    let shared = g1 || has_collector(counters, "ZGC ");
    let unpad = |v: u64| {
        if g1 {
            v / G1_MIN_REGION * G1_MIN_REGION
        } else {
            v
        }
    };
    let maxima = generations.values().map(|g| g.max.map(unpad));
    let max_bytes = if shared {
        all(maxima).and_then(|v| v.into_iter().max())
    } else {
        sum(maxima, "the generations' maxCapacity")?
    };
    let capacities = generations.values().map(|g| g.capacity.map(unpad));
    let committed_bytes = sum(capacities, "the generations' capacity")?;
    let used: Vec<u64> = generations
        .values()
        .flat_map(|g| g.used.iter().copied())
        .collect();
    let used_bytes = sum(used.into_iter().map(Some), "the spaces' used")?;
    Ok(JvmHeap {
        max_bytes,
        committed_bytes,
        used_bytes,
    })
}

/// Whether `field` (after `sun.gc.generation.N.`) is `space.M.used`.
fn is_space_used(field: &str) -> bool {
    field
        .strip_prefix("space.")
        .and_then(|s| s.strip_suffix(".used"))
        .is_some_and(|m| m.parse::<u32>().is_ok())
}

/// Whether the collector is G1, by its policy's name (every JDK since 7) or its collectors'.
fn is_g1(counters: &BTreeMap<&str, Value<'_>>) -> bool {
    counters.get("sun.gc.policy.name") == Some(&Value::Text(b"GarbageFirst"))
        || has_collector(counters, "G1 ")
}

/// Whether a `sun.gc.collector.N.name` starts with `prefix`.
fn has_collector(counters: &BTreeMap<&str, Value<'_>>, prefix: &str) -> bool {
    counters.iter().any(|(name, value)| {
        name.starts_with("sun.gc.collector.")
            && name.ends_with(".name")
            && matches!(value, Value::Text(t) if t.starts_with(prefix.as_bytes()))
    })
}

/// A size counter's value; negative is nonsense.
fn size(name: &str, v: i64) -> Result<u64, HsPerfError> {
    u64::try_from(v).map_err(|_| HsPerfError::BadFigure {
        what: format!("{name} ({v})"),
    })
}

/// Every figure, or `None` when there are none or one is missing (a part is no whole).
fn all(figures: impl Iterator<Item = Option<u64>>) -> Option<Vec<u64>> {
    let figures: Option<Vec<u64>> = figures.collect();
    figures.filter(|f| !f.is_empty())
}

/// The sum of the figures, as [`all`] takes them.
fn sum(figures: impl Iterator<Item = Option<u64>>, what: &str) -> Result<Option<u64>, HsPerfError> {
    let Some(figures) = all(figures) else {
        return Ok(None);
    };
    figures
        .into_iter()
        .try_fold(0u64, u64::checked_add)
        .map(Some)
        .ok_or_else(|| HsPerfError::BadFigure {
            what: what.to_owned(),
        })
}

#[cfg(test)]
#[path = "hsperf_tests.rs"]
mod tests;
