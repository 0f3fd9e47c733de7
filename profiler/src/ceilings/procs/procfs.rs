//! The real [`ProcessTable`]: `cgroup.procs` and `/proc/PID/...`.
use std::{
    collections::{HashMap, HashSet},
    fs,
    io::{self, Read as _},
    os::unix::fs::MetadataExt as _,
    path::Path,
};

use super::{Figures, Launch, ProcessTable};
use crate::ceilings::{elf, hsperf, Env, Runtime};

/// The most of a process's environment read: anything longer is cut (the variables that
/// matter are set by the image or the pod spec, and come first in practice).
const ENVIRON_MAX: u64 = 256 << 10;
/// The most of a command line read.
const CMDLINE_MAX: u64 = 64 << 10;

/// `/proc`, with what was learnt of executables.
#[derive(Debug, Default)]
pub(crate) struct Procfs {
    /// Executables already looked into for Go: (device, inode) → built by Go.
    go_binaries: HashMap<(u64, u64), bool>,
}

impl ProcessTable for Procfs {
    fn pids(&mut self, dir: &Path) -> io::Result<HashSet<u32>> {
        let text = fs::read_to_string(dir.join("cgroup.procs"))?;
        Ok(text.lines().filter_map(|l| l.trim().parse().ok()).collect())
    }

    fn comm(&mut self, pid: u32) -> io::Result<String> {
        fs::read_to_string(format!("/proc/{pid}/comm")).map(|c| c.trim_end().to_owned())
    }

    fn launch(&mut self, pid: u32) -> io::Result<Launch> {
        let dir = format!("/proc/{pid}");
        // A kernel thread has no executable; a process that exited has nothing.
        let exe = fs::read_link(format!("{dir}/exe"))
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_default();
        let exe = exe.trim_end_matches(" (deleted)").to_owned();
        let args = read_nul_separated(&format!("{dir}/cmdline"), CMDLINE_MAX)?;
        let comm = self.comm(pid)?;
        let env = match read_nul_separated(&format!("{dir}/environ"), ENVIRON_MAX) {
            Ok(entries) => Env::from_entries(entries.iter().map(String::as_str)),
            Err(e) => {
                log::debug!("pid {pid}: cannot read its environment: {e}");
                Env::default()
            }
        };
        Ok(Launch {
            exe,
            args,
            comm,
            env,
        })
    }

    fn is_go(&mut self, pid: u32) -> bool {
        let exe = format!("/proc/{pid}/exe");
        let Ok(meta) = fs::metadata(&exe) else {
            return false;
        };
        *self
            .go_binaries
            .entry((meta.dev(), meta.ino()))
            .or_insert_with(|| {
                elf::is_go_binary(Path::new(&exe)).unwrap_or_else(|e| {
                    log::debug!("{exe}: {e}");
                    false
                })
            })
    }

    fn figures(&mut self, pid: u32, runtime: Runtime) -> Figures {
        let resident_bytes = match fs::read_to_string(format!("/proc/{pid}/status")) {
            Ok(status) => Some(parse_resident(&status)),
            Err(e) => {
                log::debug!("pid {pid}: cannot read its status: {e}");
                None
            }
        };
        let heap_used_bytes = match runtime {
            Runtime::Jvm => match hsperf::read(pid) {
                Ok(heap) => heap.used_bytes,
                Err(e) => {
                    log::debug!("pid {pid}: no JVM perf data: {e}");
                    None
                }
            },
            _ => None,
        };
        Figures {
            resident_bytes,
            heap_used_bytes,
        }
    }
}

/// `RssAnon + RssShmem` of a `/proc/PID/status` text (kB in the file), bytes; 0 for a kernel
/// thread or a zombie, which have neither line.
pub(crate) fn parse_resident(status: &str) -> u64 {
    status
        .lines()
        .filter_map(|line| {
            let (key, value) = line.split_once(':')?;
            matches!(key, "RssAnon" | "RssShmem").then_some(())?;
            let kb: u64 = value.trim().trim_end_matches("kB").trim().parse().ok()?;
            Some(kb.saturating_mul(1024))
        })
        .sum()
}

/// A NUL-separated `/proc` file (`cmdline`, `environ`), at most `max` bytes of it, as strings
/// (bytes that are not UTF-8 replaced).
fn read_nul_separated(path: &str, max: u64) -> io::Result<Vec<String>> {
    let mut bytes = Vec::new();
    fs::File::open(path)?.take(max).read_to_end(&mut bytes)?;
    Ok(split_nul(&bytes))
}

/// Splits NUL-separated entries, dropping the empty one after the final NUL.
pub(crate) fn split_nul(bytes: &[u8]) -> Vec<String> {
    bytes
        .split(|&b| b == 0)
        .filter(|part| !part.is_empty())
        .map(|part| String::from_utf8_lossy(part).into_owned())
        .collect()
}
