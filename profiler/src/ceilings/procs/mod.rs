//! The runtime processes of one watched container.
//!
//! Each process is read in full once, when it is first seen in the container's `cgroup.procs`:
//! its executable, command line and environment (the environment can be tens of KiB, and it
//! does not change). After that, only its command name is looked at again, and only while it
//! is young or every [`FIGURES_EVERY_S`]: an entry-point script that `exec`s the runtime keeps
//! its pid, and a new name is a new launch. The runtimes among the processes are read again
//! at most every [`FIGURES_EVERY_S`]: their resident memory and, for a HotSpot JVM, its heap in
//! use. A process that cannot be read (it exited, a permission) has no ceiling known.
//!
//! The deciding half ([`ContainerRuntimes`]) reads through [`ProcessTable`]; [`procfs`] is the
//! real table.
mod procfs;
#[cfg(test)]
mod tests;

use std::{
    collections::{HashMap, HashSet, VecDeque},
    io,
    path::Path,
};

pub(crate) use procfs::Procfs;

use super::{
    assess::{self, ConfigRisk, RiskKind, RuntimeProcess},
    dotnet, golang, jvm, node, Env, HeapCeiling, Runtime,
};

/// Seconds between two readings of a runtime's memory figures, and between two looks at an
/// old process's command name.
pub(crate) const FIGURES_EVERY_S: f64 = 5.0;
/// Runtime processes remembered after they left the container: the explanation of a death
/// comes a moment after the process is gone.
const DEPARTED_KEPT: usize = 8;

/// What a process was started with.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Launch {
    /// The executable's file name (`java`), from `/proc/PID/exe`.
    pub exe: String,
    /// Its command line, `argv[0]` included.
    pub args: Vec<String>,
    /// Its command name (`/proc/PID/comm`).
    pub comm: String,
    /// Its environment.
    pub env: Env,
}

/// A runtime's memory as last read.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Figures {
    /// Anonymous and shared memory (`RssAnon + RssShmem`), bytes.
    pub resident_bytes: Option<u64>,
    /// The heap in use, where the runtime publishes it.
    pub heap_used_bytes: Option<u64>,
}

/// Where processes are read from: `/proc` ([`Procfs`]), or a test's table.
pub(crate) trait ProcessTable {
    /// The processes in the cgroup directory `dir`.
    fn pids(&mut self, dir: &Path) -> io::Result<HashSet<u32>>;
    /// A process's command name.
    fn comm(&mut self, pid: u32) -> io::Result<String>;
    /// What a process was started with.
    fn launch(&mut self, pid: u32) -> io::Result<Launch>;
    /// Whether a process's executable was built by Go.
    fn is_go(&mut self, pid: u32) -> bool;
    /// A runtime's memory now.
    fn figures(&mut self, pid: u32, runtime: Runtime) -> Figures;
}

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
    /// Its command name when it was read.
    comm: String,
    /// When it was first seen (Unix seconds).
    seen_at: f64,
    /// `None`: not a runtime with a ceiling to follow.
    runtime: Option<RuntimeProcess>,
    /// Risks already told.
    told: HashSet<RiskKind>,
}

/// The runtime processes of one container.
#[derive(Debug, Default)]
pub(crate) struct ContainerRuntimes {
    known: HashMap<u32, Known>,
    /// When the runtimes' figures were last read (Unix seconds).
    figures_at: Option<f64>,
    /// The limit the ceilings were made for (a default is a share of it).
    limit_seen: Option<u64>,
    /// The node's memory, for a JVM told to ignore its container's limit.
    node_memory: Option<u64>,
    /// The real process table (it keeps which executables are Go's).
    procfs: Procfs,
    /// The last runtime processes that left, newest last.
    departed: VecDeque<RuntimeProcess>,
}

impl ContainerRuntimes {
    /// No process seen yet, on a node of `node_memory` bytes (`MemTotal`) where known.
    pub(crate) fn new(node_memory: Option<u64>) -> Self {
        Self {
            node_memory,
            ..Self::default()
        }
    }

    /// [`Self::refresh_from`] `/proc`.
    pub(crate) fn refresh(&mut self, dir: &Path, now: f64, memory: u64, limited: bool) -> Findings {
        let mut procfs = std::mem::take(&mut self.procfs);
        let findings = self.refresh_from(&mut procfs, dir, now, memory, limited);
        self.procfs = procfs;
        findings
    }

    /// Lists the processes of `dir`, reads those not seen before (and those whose command
    /// name changed: an `exec`), and at most every [`FIGURES_EVERY_S`] the runtimes' memory.
    /// `memory` is what a runtime sees as its RAM: the limit when `limited`, else the node's.
    pub(crate) fn refresh_from(
        &mut self,
        table: &mut impl ProcessTable,
        dir: &Path,
        now: f64,
        memory: u64,
        limited: bool,
    ) -> Findings {
        let mut findings = Findings::default();
        let pids = match table.pids(dir) {
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
        let departed = &mut self.departed;
        self.known.retain(|pid, known| {
            if pids.contains(pid) {
                return true;
            }
            if let Some(p) = known.runtime.take() {
                if departed.len() == DEPARTED_KEPT {
                    departed.pop_front();
                }
                departed.push_back(p);
            }
            false
        });
        let due = self.figures_at.is_none_or(|t| now - t >= FIGURES_EVERY_S);
        // An exec keeps the pid: a process not (yet) a runtime whose name changed is read
        // again. Young ones are looked at every time (entry-point scripts exec at once).
        self.known.retain(|&pid, known| {
            let young = now - known.seen_at < FIGURES_EVERY_S;
            if known.runtime.is_some() || !(young || due) {
                return true;
            }
            table.comm(pid).is_ok_and(|comm| comm == known.comm)
        });
        let mut fresh = false;
        for &pid in &pids {
            if self.known.contains_key(&pid) {
                continue;
            }
            fresh = true;
            let (comm, runtime) = match table.launch(pid) {
                Ok(launch) => {
                    let ceiling = self.ceiling(table, pid, &launch, memory, limited);
                    (launch.comm, ceiling)
                }
                Err(e) => {
                    // Not read again unless its name changes (an exec), or it goes.
                    log::debug!("pid {pid}: cannot read what it runs: {e}");
                    (table.comm(pid).unwrap_or_default(), None)
                }
            };
            let runtime = runtime.map(|ceiling| {
                findings
                    .new_ceilings
                    .push((pid, comm.clone(), ceiling.clone()));
                RuntimeProcess {
                    pid,
                    comm: comm.clone(),
                    ceiling,
                    resident_bytes: 0,
                    heap_used_bytes: None,
                }
            });
            self.known.insert(
                pid,
                Known {
                    comm,
                    seen_at: now,
                    runtime,
                    told: HashSet::new(),
                },
            );
        }
        if fresh || due {
            self.figures_at = Some(now);
            for (&pid, known) in &mut self.known {
                let Some(p) = known.runtime.as_mut() else {
                    continue;
                };
                // Figures that cannot be read (the process is going) stay as they were.
                let figures = table.figures(pid, p.ceiling.runtime);
                p.resident_bytes = figures.resident_bytes.unwrap_or(p.resident_bytes);
                p.heap_used_bytes = figures.heap_used_bytes.or(p.heap_used_bytes);
                // The risks depend on these figures and the limit alone: judged when they are
                // read (a new limit reads every process again).
                if limited {
                    for risk in assess::risks(p, memory) {
                        if known.told.insert(risk.kind) {
                            findings.new_risks.push(risk);
                        }
                    }
                }
            }
        }
        findings
    }

    /// The runtime processes as last read.
    pub(crate) fn processes(&self) -> impl Iterator<Item = &RuntimeProcess> {
        self.known.values().filter_map(|k| k.runtime.as_ref())
    }

    /// The runtime process `pid`, in the container now or among the last to leave it.
    pub(crate) fn process(&self, pid: u32) -> Option<&RuntimeProcess> {
        self.known
            .get(&pid)
            .and_then(|k| k.runtime.as_ref())
            .or_else(|| self.departed.iter().rev().find(|p| p.pid == pid))
    }

    /// The ceiling of a process that runs a runtime; `None` for any other.
    fn ceiling(
        &self,
        table: &mut impl ProcessTable,
        pid: u32,
        launch: &Launch,
        memory: u64,
        limited: bool,
    ) -> Option<HeapCeiling> {
        let Launch { exe, args, env, .. } = launch;
        Some(if jvm::is_jvm(exe, args) {
            jvm::ceiling(args, env, memory, limited, self.node_memory)
        } else if node::is_node(exe, args) {
            node::ceiling(args, env, memory, limited)
        } else if dotnet::is_dotnet(exe, env) {
            dotnet::ceiling(env, memory, limited)
        } else if table.is_go(pid) {
            golang::ceiling(env)
        } else {
            return None;
        })
    }
}
