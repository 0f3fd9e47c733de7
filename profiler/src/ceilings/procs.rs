//! The runtime processes of one watched container, read from `/proc`.
//!
//! Each process is read in full once, when it is first seen in the container's `cgroup.procs`:
//! its executable, command line and environment (the environment can be tens of KiB, and it
//! does not change). Only the runtimes among them are read again, and at most every
//! [`FIGURES_EVERY_S`]: their resident memory and, for a HotSpot JVM, its heap in use. A
//! process that cannot be read (it exited, a permission) is a process with no ceiling known.
use std::{
    collections::{HashMap, HashSet},
    fs,
    io::{self, Read as _},
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
};

use super::{
    assess::{self, ConfigRisk, RiskKind, RuntimeProcess},
    dotnet, elf, golang, hsperf, jvm, node, Env, HeapCeiling, Runtime,
};

/// Seconds between two readings of a runtime's memory figures.
pub(crate) const FIGURES_EVERY_S: f64 = 5.0;
/// The most of a process's environment read: anything longer is cut (the variables that
/// matter are set by the image or the pod spec, and come first in practice).
const ENVIRON_MAX: u64 = 256 << 10;
/// The most of a command line read.
const CMDLINE_MAX: u64 = 64 << 10;

/// What the ceilings of one container say now.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Findings {
    /// Runtime processes seen for the first time: one `heap_ceiling` line each.
    pub new_ceilings: Vec<(u32, String, HeapCeiling)>,
    /// Risks found for the first time (once per process and kind).
    pub new_risks: Vec<ConfigRisk>,
}

/// What was read of one process.
#[derive(Debug)]
struct Known {
    /// `None`: not a runtime with a ceiling to follow.
    runtime: Option<RuntimeProcess>,
    /// Risks already told.
    told: HashSet<RiskKind>,
}

/// The runtime processes of one container.
#[derive(Debug, Default)]
pub(crate) struct ContainerRuntimes {
    known: HashMap<u32, Known>,
    /// Executables already looked into for Go: (device, inode) → built by Go.
    go_binaries: HashMap<(u64, u64), bool>,
    /// When the runtimes' figures were last read (Unix seconds).
    figures_at: Option<f64>,
    /// The limit the ceilings were made for (a default is a share of it).
    limit_seen: Option<u64>,
    /// The node's memory, for a JVM told to ignore its container's limit.
    node_memory: Option<u64>,
}

impl ContainerRuntimes {
    /// No process seen yet, on a node of `node_memory` bytes (`MemTotal`) where known.
    pub(crate) fn new(node_memory: Option<u64>) -> Self {
        Self {
            node_memory,
            ..Self::default()
        }
    }

    /// Reads `cgroup.procs` of `dir`, reads the processes not seen before, and (at most every
    /// [`FIGURES_EVERY_S`]) the runtimes' memory. `memory` is what a runtime sees as its RAM:
    /// the limit when `limited`, else the node's.
    pub(crate) fn refresh(&mut self, dir: &Path, now: f64, memory: u64, limited: bool) -> Findings {
        let mut findings = Findings::default();
        let pids = match read_pids(dir) {
            Ok(pids) => pids,
            Err(e) => {
                log::debug!("{}: cannot list its processes: {e}", dir.display());
                return findings;
            }
        };
        // A new limit changes the defaults (a JVM's 25 %): read every process again.
        if self.limit_seen != Some(memory) {
            self.limit_seen = Some(memory);
            self.known.clear();
        }
        self.known.retain(|pid, _| pids.contains(pid));
        let mut fresh = false;
        for &pid in &pids {
            if self.known.contains_key(&pid) {
                continue;
            }
            fresh = true;
            let runtime = self.launch(pid, memory, limited).map(|(comm, ceiling)| {
                findings
                    .new_ceilings
                    .push((pid, comm.clone(), ceiling.clone()));
                RuntimeProcess {
                    pid,
                    comm,
                    ceiling,
                    resident_bytes: 0,
                    heap_used_bytes: None,
                }
            });
            self.known.insert(
                pid,
                Known {
                    runtime,
                    told: HashSet::new(),
                },
            );
        }
        let due = self.figures_at.is_none_or(|t| now - t >= FIGURES_EVERY_S);
        if fresh || due {
            self.figures_at = Some(now);
            for known in self.known.values_mut() {
                if let Some(p) = known.runtime.as_mut() {
                    read_figures(p);
                }
            }
        }
        if limited {
            for known in self.known.values_mut() {
                let Some(p) = known.runtime.as_ref() else {
                    continue;
                };
                for risk in assess::risks(p, memory) {
                    if known.told.insert(risk.kind) {
                        findings.new_risks.push(risk);
                    }
                }
            }
        }
        findings
    }

    /// The runtime processes as last read.
    pub(crate) fn processes(&self) -> Vec<RuntimeProcess> {
        let mut list: Vec<RuntimeProcess> = self
            .known
            .values()
            .filter_map(|k| k.runtime.clone())
            .collect();
        list.sort_by_key(|p| p.pid);
        list
    }

    /// What a process runs and its ceiling, if it is a runtime; `None` otherwise or when it
    /// cannot be read.
    fn launch(&mut self, pid: u32, memory: u64, limited: bool) -> Option<(String, HeapCeiling)> {
        let proc_dir = PathBuf::from(format!("/proc/{pid}"));
        let exe_path = proc_dir.join("exe");
        let exe = fs::read_link(&exe_path)
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_default();
        let exe = exe.trim_end_matches(" (deleted)").to_owned();
        let args = match read_nul_separated(&proc_dir.join("cmdline"), CMDLINE_MAX) {
            Ok(args) => args,
            Err(e) => {
                log::debug!("pid {pid}: cannot read its command line: {e}");
                return None;
            }
        };
        let comm = fs::read_to_string(proc_dir.join("comm"))
            .map(|c| c.trim_end().to_owned())
            .unwrap_or_else(|_| exe.clone());
        let environ = || match read_nul_separated(&proc_dir.join("environ"), ENVIRON_MAX) {
            Ok(entries) => Env::from_entries(entries.iter().map(String::as_str)),
            Err(e) => {
                log::debug!("pid {pid}: cannot read its environment: {e}");
                Env::default()
            }
        };
        let ceiling = if jvm::is_jvm(&exe, &args) {
            jvm::ceiling(&args, &environ(), memory, limited, self.node_memory)
        } else if node::is_node(&exe, &args) {
            node::ceiling(&args, &environ(), memory, limited)
        } else {
            let env = environ();
            if dotnet::is_dotnet(&exe, &env) {
                dotnet::ceiling(&env, memory, limited)
            } else if self.is_go(&exe_path) {
                golang::ceiling(&env)
            } else {
                return None;
            }
        };
        Some((comm, ceiling))
    }

    /// Whether the executable behind `/proc/PID/exe` was built by Go, looked into once per
    /// file.
    fn is_go(&mut self, exe: &Path) -> bool {
        let Ok(meta) = fs::metadata(exe) else {
            return false;
        };
        *self
            .go_binaries
            .entry((meta.dev(), meta.ino()))
            .or_insert_with(|| {
                elf::is_go_binary(exe).unwrap_or_else(|e| {
                    log::debug!("{}: {e}", exe.display());
                    false
                })
            })
    }
}

/// Reads the process's resident memory and, for a JVM, its heap in use; leaves the previous
/// figures where a file cannot be read (the process is going).
fn read_figures(process: &mut RuntimeProcess) {
    match resident_bytes(process.pid) {
        Ok(bytes) => process.resident_bytes = bytes,
        Err(e) => log::debug!("pid {}: cannot read its status: {e}", process.pid),
    }
    if process.ceiling.runtime == Runtime::Jvm {
        match hsperf::read(process.pid) {
            Ok(heap) => process.heap_used_bytes = heap.used_bytes,
            Err(e) => log::debug!("pid {}: no JVM perf data: {e}", process.pid),
        }
    }
}

/// `RssAnon + RssShmem` of `/proc/PID/status`, bytes.
fn resident_bytes(pid: u32) -> io::Result<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/status"))?;
    Ok(parse_resident(&text))
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

/// The pids in `dir/cgroup.procs`.
fn read_pids(dir: &Path) -> io::Result<HashSet<u32>> {
    let text = fs::read_to_string(dir.join("cgroup.procs"))?;
    Ok(text.lines().filter_map(|l| l.trim().parse().ok()).collect())
}

/// A NUL-separated `/proc` file (`cmdline`, `environ`), at most `max` bytes of it, as strings
/// (bytes that are not UTF-8 replaced).
fn read_nul_separated(path: &Path, max: u64) -> io::Result<Vec<String>> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resident_memory_is_anon_plus_shmem() {
        let status = "Name:\tjava\nVmRSS:\t   82160 kB\nRssAnon:\t   61376 kB\n\
                      RssFile:\t   20000 kB\nRssShmem:\t     784 kB\n";
        assert_eq!(parse_resident(status), (61376 + 784) * 1024);
        assert_eq!(parse_resident("Name:\tkthreadd\nState:\tS\n"), 0);
        assert_eq!(parse_resident("RssAnon:\tnonsense kB\n"), 0);
    }

    #[test]
    fn nul_separated_entries_keep_spaces_and_drop_the_final_empty_one() {
        assert_eq!(
            split_nul(b"java\0-Xmx1g\0-cp\0a b\0"),
            vec!["java", "-Xmx1g", "-cp", "a b"]
        );
        assert_eq!(split_nul(b""), Vec::<String>::new());
        assert_eq!(split_nul(b"\xff\0x"), vec!["\u{fffd}", "x"]);
    }

    #[test]
    fn a_container_of_this_test_process_has_no_runtime() {
        // The test binary is Rust: read for real, it is no runtime.
        let mut runtimes = ContainerRuntimes::default();
        assert!(runtimes.launch(std::process::id(), 1 << 30, true).is_none());
        // A process that does not exist is no runtime either, and no error.
        assert!(runtimes.launch(u32::MAX, 1 << 30, true).is_none());
    }
}
