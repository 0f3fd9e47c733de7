//! Names of JIT-compiled code from the runtime's perf map (`/tmp/perf-NSPID.map`, lines
//! `START SIZE name` in hex; see the kernel's `tools/perf/Documentation/jit-interface.txt`).
use std::{
    fs::{File, OpenOptions},
    io::Read,
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

/// Time between two reads of a perf map when an address is not in it: a JIT appends as it
/// compiles, but a busy one's map is megabytes, read again on every miss it would be a cost.
const REREAD_AFTER: Duration = Duration::from_secs(5);
/// The most of a perf map read: a runtime (or a container that means harm) cannot make the
/// profiler hold more than this.
const MAX_BYTES: u64 = 64 << 20;
/// How many entries before the nearest one a lookup looks at for one that still covers the
/// address: only overlapping entries (code that was recompiled in place) need it.
const OVERLAP_SCAN: usize = 16;

/// One entry of a perf map.
#[derive(Clone, Debug, PartialEq, Eq)]
struct PerfSym {
    /// First address.
    start: u64,
    /// First address past it.
    end: u64,
    /// Line number: a later line is newer code at the same address and wins.
    line: usize,
    /// The name the runtime gave it.
    name: Arc<str>,
}

/// A parsed perf map, sorted by start address.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct PerfMap {
    /// Entries by start address.
    syms: Vec<PerfSym>,
}

impl PerfMap {
    /// Parses the text of a perf map; lines in another form are skipped (a runtime may be
    /// writing the last one as it is read).
    pub(crate) fn parse(text: &str) -> Self {
        let mut syms: Vec<PerfSym> = text
            .lines()
            .enumerate()
            .filter_map(|(line, text)| {
                parse_line(text).map(|(start, size, name)| (line, start, size, name))
            })
            .filter(|(_, _, size, _)| *size > 0)
            .map(|(line, start, size, name)| PerfSym {
                start,
                end: start.saturating_add(size),
                line,
                name: Arc::from(name),
            })
            .collect();
        syms.sort_by_key(|s| (s.start, s.line));
        Self { syms }
    }

    /// The name of the newest entry covering `addr`.
    pub(crate) fn lookup(&self, addr: u64) -> Option<&Arc<str>> {
        let after = self.syms.partition_point(|s| s.start <= addr);
        self.syms[..after]
            .iter()
            .rev()
            .take(OVERLAP_SCAN)
            .filter(|s| addr < s.end)
            .max_by_key(|s| s.line)
            .map(|s| &s.name)
    }
}

/// One line: `START SIZE name`, hex with an optional `0x`; the name may hold spaces.
fn parse_line(line: &str) -> Option<(u64, u64, &str)> {
    let mut parts = line.trim_end().splitn(3, ' ');
    let hex = |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok();
    let start = hex(parts.next()?)?;
    let size = hex(parts.next()?)?;
    let name = parts.next()?.trim();
    (!name.is_empty()).then_some((start, size, name))
}

/// A process's perf map, read when first needed and again (at most every few seconds, see
/// [`PerfMapSource::due`]) when an address is not in it.
#[derive(Debug)]
pub(crate) struct PerfMapSource {
    /// Where it is, seen from the host: `/proc/PID/root/tmp/perf-NSPID.map`.
    path: PathBuf,
    /// What was read last, if anything could be.
    map: PerfMap,
    /// When it was read last.
    read_at: Option<Instant>,
}

impl PerfMapSource {
    /// The perf map of the process `pid`, which calls itself `ns_pid` in its pid namespace.
    pub(crate) fn new(pid: u32, ns_pid: u32) -> Self {
        Self {
            path: PathBuf::from(format!("/proc/{pid}/root/tmp/perf-{ns_pid}.map")),
            map: PerfMap::default(),
            read_at: None,
        }
    }

    /// The name the runtime gave the code at `addr`, in what was read.
    pub(crate) fn cached(&self, addr: u64) -> Option<Arc<str>> {
        self.map.lookup(addr).cloned()
    }

    /// Whether the map may be read (again): never read, or read a while ago.
    pub(crate) fn due(&self) -> bool {
        self.read_at.is_none_or(|at| at.elapsed() >= REREAD_AFTER)
    }

    /// Reads the map (what could not be read names nothing).
    pub(crate) fn reload(&mut self) {
        self.read_at = Some(Instant::now());
        self.map = match read_capped(&self.path) {
            Ok(text) => PerfMap::parse(&text),
            Err(err) => {
                log::debug!("no perf map at {}: {err}", self.path.display());
                PerfMap::default()
            }
        };
    }

    /// Forgets what was read (it was not the process's own).
    pub(crate) fn forget(&mut self) {
        self.map = PerfMap::default();
    }
}

/// Reads a file that a container controls: the last component must not be a symbolic link
/// (which would resolve in the profiler's root, not the container's), `tmp` must be a
/// directory, the file must be a regular file (a FIFO would block), and at most
/// [`MAX_BYTES`] are read.
fn read_capped(path: &Path) -> std::io::Result<String> {
    let not_regular =
        || std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a regular file");
    if let Some(tmp) = path.parent() {
        if !std::fs::symlink_metadata(tmp)?.is_dir() {
            return Err(not_regular());
        }
    }
    let file: File = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(not_regular());
    }
    let mut bytes = Vec::new();
    file.take(MAX_BYTES).read_to_end(&mut bytes)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// In the form runtimes write (node's `--perf-basic-prof`, the JVM's perf-map agents,
    /// .NET's `DOTNET_PerfMapEnabled`); some writers put `0x` before the numbers.
    const MAP: &str = "\
7f3a40001000 40 LazyCompile:~handleRequest /app/server.js:12
0x7f3a40001040 0x20 java.lang.String::hashCode
7f3a40002000 100 Interpreter
garbage line
7f3a40003000 0 empty
7f3a40002000 10 recompiled
7f3a40004000";

    #[test]
    fn parses_and_looks_up() {
        let map = PerfMap::parse(MAP);
        let name = |addr| map.lookup(addr).map(|n| n.to_string());
        assert_eq!(
            name(0x7f3a40001000).as_deref(),
            Some("LazyCompile:~handleRequest /app/server.js:12")
        );
        assert_eq!(
            name(0x7f3a4000103f).as_deref(),
            Some("LazyCompile:~handleRequest /app/server.js:12")
        );
        assert_eq!(
            name(0x7f3a40001040).as_deref(),
            Some("java.lang.String::hashCode")
        );
        // Past every entry's end, before the first, in a gap.
        assert_eq!(name(0x7f3a40001060), None);
        assert_eq!(name(0x1000), None);
        assert_eq!(name(0x7f3a40002100), None);
        // An empty entry covers nothing.
        assert_eq!(name(0x7f3a40003000), None);
    }

    #[test]
    fn a_later_line_wins_where_entries_overlap() {
        let map = PerfMap::parse(MAP);
        let name = |addr| map.lookup(addr).map(|n| n.to_string());
        assert_eq!(name(0x7f3a40002008).as_deref(), Some("recompiled"));
        // Past the newer, shorter entry the older one still covers the address.
        assert_eq!(name(0x7f3a40002010).as_deref(), Some("Interpreter"));
    }

    #[test]
    fn empty_and_unreadable_maps_name_nothing() {
        assert_eq!(PerfMap::parse("").lookup(0), None);
        let mut source = PerfMapSource::new(u32::MAX, 1);
        assert!(source.due());
        source.reload();
        assert_eq!(source.cached(0x1000), None);
        // The failed read is not repeated at once.
        assert!(!source.due());
    }
}
