//! What is cached of one process: its executable mappings (each mapped file opened on the
//! first sample in it), what tells it from a later process with its pid, and its perf map.
use std::{
    collections::HashMap,
    hash::{Hash, Hasher},
    sync::Arc,
    time::{Duration, Instant},
};

use super::{
    maps::{
        basename, find_mapping, parse_exec_maps, parse_identity, parse_ns_pid, Backing, Identity,
        MapsLine,
    },
    modules::{ModuleFile, Modules},
    open::open_mapped,
    perfmap::PerfMapSource,
};

/// Least time between two reads of `/proc/PID/stat` when samples arrive (a pid reused, or an
/// `exec`, is noticed within this), and between two reads of the maps for addresses in no
/// cached mapping (return addresses that frame-pointer walks got wrong would otherwise read
/// the maps of a big process on every sample).
const RECHECK_AFTER: Duration = Duration::from_millis(250);
/// Least time between two checks forced by a sample whose command name differs from the one
/// before: an `exec` keeps the pid and usually changes the name, but the threads of one process
/// may have names of their own, and must not force a read of `/proc/PID/stat` each.
const RENAMED_RECHECK_AFTER: Duration = Duration::from_millis(10);
/// Least time between two tries to open a module while every open one is in use.
const FULL_RETRY_AFTER: Duration = Duration::from_secs(1);

/// The fixed frame strings.
#[derive(Debug)]
pub(crate) struct Labels {
    /// An address in no mapping, or in a process never read.
    pub(crate) unknown: Arc<str>,
    /// Code written at run time that no perf map names.
    pub(crate) jit: Arc<str>,
    /// The kernel's vDSO.
    pub(crate) vdso: Arc<str>,
}

/// A user frame as kept between the sample and its naming.
#[derive(Clone, Debug)]
pub(crate) enum UserFrame {
    /// An address in a mapped file, as an offset in that file.
    Module {
        /// The file, open.
        module: Arc<ModuleFile>,
        /// The offset in it of the address looked up.
        offset: u64,
    },
    /// A frame already named (JIT code, the vDSO, or nothing known).
    Named(Arc<str>),
}

impl PartialEq for UserFrame {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (
                Self::Module {
                    module: a,
                    offset: x,
                },
                Self::Module {
                    module: b,
                    offset: y,
                },
            ) => a.id() == b.id() && x == y,
            (Self::Named(a), Self::Named(b)) => a == b,
            _ => false,
        }
    }
}

impl Eq for UserFrame {}

impl Hash for UserFrame {
    fn hash<H: Hasher>(&self, state: &mut H) {
        match self {
            Self::Module { module, offset } => (0u8, module.id(), offset).hash(state),
            Self::Named(name) => (1u8, name).hash(state),
        }
    }
}

/// How far a mapping's file got.
#[derive(Debug)]
enum Slot {
    /// Not needed yet.
    Unopened,
    /// Open.
    Open(Arc<ModuleFile>),
    /// Every frame in it gets this (the file could not be opened, or it is not a file).
    Label(Arc<str>),
    /// No room among the open modules when last tried: `[unknown] (NAME)` until then + a
    /// while.
    Full(Arc<str>, Instant),
}

/// A mapping and its file.
#[derive(Debug)]
struct Mapping {
    line: MapsLine,
    slot: Slot,
}

impl AsRef<MapsLine> for Mapping {
    fn as_ref(&self) -> &MapsLine {
        &self.line
    }
}

/// Whether the process behind a pid is still the one cached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Check {
    /// Still there, the same.
    Same,
    /// Gone (exited or OOM-killed; a zombie until reaped, with its memory already gone).
    Gone,
    /// Another process now has the pid, or this one ran `exec`.
    Other,
}

/// A cached process.
#[derive(Debug)]
pub(crate) struct Process {
    pid: u32,
    identity: Identity,
    mappings: Vec<Mapping>,
    read_at: Instant,
    checked_at: Instant,
    exited: bool,
    perf_map: Option<PerfMapSource>,
    /// The command name of its last sample.
    comm: String,
    /// When [`super::Symbolizer::prune`] first saw it gone, on the collector's clock.
    pub(crate) gone_since: Option<f64>,
    /// When a sample last came for it.
    pub(crate) used_at: Instant,
    /// The same, in the symbolizer's ticks (orders processes by use for eviction).
    pub(crate) used_tick: u64,
}

/// The identity of the process now behind `pid`, if any.
fn identity_of(pid: u32) -> Option<Identity> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_identity(&stat)
}

/// The executable mappings of `pid`, if it can be read.
fn maps_of(pid: u32) -> Option<Vec<MapsLine>> {
    match std::fs::read_to_string(format!("/proc/{pid}/maps")) {
        Ok(text) => Some(parse_exec_maps(&text)),
        Err(err) => {
            log::debug!("cannot read the maps of process {pid}: {err}");
            None
        }
    }
}

/// The frame a mapping's slot gives, if it is settled.
fn ready_frame(slot: &Slot, offset: u64) -> Option<UserFrame> {
    match slot {
        Slot::Open(module) => Some(UserFrame::Module {
            module: Arc::clone(module),
            offset,
        }),
        Slot::Label(label) => Some(UserFrame::Named(Arc::clone(label))),
        Slot::Full(label, at) if at.elapsed() < FULL_RETRY_AFTER => {
            Some(UserFrame::Named(Arc::clone(label)))
        }
        Slot::Full(..) | Slot::Unopened => None,
    }
}

impl Process {
    /// Reads the process behind `pid`; `None` if it is gone (or changed while being read).
    pub(crate) fn read(pid: u32, tick: u64) -> Option<Self> {
        let identity = identity_of(pid)?;
        let lines = maps_of(pid)?;
        // The maps are of this process only if it is still the same after reading them.
        if !identity_of(pid)?.same_as(&identity) {
            return None;
        }
        let now = Instant::now();
        Some(Self {
            pid,
            identity,
            mappings: lines
                .into_iter()
                .map(|line| Mapping {
                    line,
                    slot: Slot::Unopened,
                })
                .collect(),
            read_at: now,
            checked_at: now,
            exited: false,
            perf_map: None,
            comm: String::new(),
            gone_since: None,
            used_at: now,
            used_tick: tick,
        })
    }

    /// Whether the pid still has this process; at most every [`RECHECK_AFTER`] unless
    /// `force` (a process seen gone stays gone until a check finds another in its place).
    pub(crate) fn check(&mut self, force: bool) -> Check {
        if !force && self.checked_at.elapsed() < RECHECK_AFTER {
            return if self.exited {
                Check::Gone
            } else {
                Check::Same
            };
        }
        self.checked_at = Instant::now();
        match identity_of(self.pid) {
            None => {
                self.exited = true;
                Check::Gone
            }
            Some(identity) if identity.same_as(&self.identity) && !self.exited => Check::Same,
            Some(_) => Check::Other,
        }
    }

    /// [`Self::check`] for a sample of command name `comm`: forced when the name differs from
    /// the last sample's (an `exec`: the old image's mappings must not name the new one's
    /// addresses), at most every [`RENAMED_RECHECK_AFTER`].
    pub(crate) fn check_sample(&mut self, comm: &str) -> Check {
        let renamed = !self.comm.is_empty() && self.comm != comm;
        if self.comm != comm {
            comm.clone_into(&mut self.comm);
        }
        self.check(renamed && self.checked_at.elapsed() >= RENAMED_RECHECK_AFTER)
    }

    /// Whether the pid still has this process, checked now (after opening something through
    /// `/proc/PID`, which must have been this process's).
    fn still_here(&mut self) -> bool {
        self.check(true) == Check::Same
    }

    /// The frame of `addr` (already moved back into the call for return addresses).
    pub(crate) fn frame(
        &mut self,
        addr: u64,
        modules: &mut Modules,
        labels: &Labels,
        tick: u64,
    ) -> UserFrame {
        let index = match find_mapping(&self.mappings, addr) {
            Some(index) => index,
            None if self.exited || self.read_at.elapsed() < RECHECK_AFTER => {
                return UserFrame::Named(Arc::clone(&labels.unknown))
            }
            None => {
                self.read_maps_again();
                match find_mapping(&self.mappings, addr) {
                    Some(index) => index,
                    None => return UserFrame::Named(Arc::clone(&labels.unknown)),
                }
            }
        };
        match &self.mappings[index].line.backing {
            Backing::Vdso => UserFrame::Named(Arc::clone(&labels.vdso)),
            Backing::Anon => UserFrame::Named(self.jit_name(addr, labels)),
            Backing::Special(_) | Backing::File { .. } => {
                self.file_frame(index, addr, modules, labels, tick)
            }
        }
    }

    /// The frame of an address in a mapping with a name: opens its file the first time.
    fn file_frame(
        &mut self,
        index: usize,
        addr: u64,
        modules: &mut Modules,
        labels: &Labels,
        tick: u64,
    ) -> UserFrame {
        let Some(mapping) = self.mappings.get(index) else {
            return UserFrame::Named(Arc::clone(&labels.unknown));
        };
        let offset = mapping.line.file_offset(addr);
        if let Some(frame) = ready_frame(&mapping.slot, offset) {
            return frame;
        }
        let slot = self.open_slot(index, modules, tick);
        let frame = ready_frame(&slot, offset)
            .unwrap_or_else(|| UserFrame::Named(Arc::clone(&labels.unknown)));
        if let Some(mapping) = self.mappings.get_mut(index) {
            mapping.slot = slot;
        }
        frame
    }

    /// Opens the file of a mapping, or says why its frames get a fixed name.
    fn open_slot(&mut self, index: usize, modules: &mut Modules, tick: u64) -> Slot {
        let Some(line) = self.mappings.get(index).map(|m| &m.line) else {
            return Slot::Unopened;
        };
        let name = match &line.backing {
            Backing::File { path, .. } => basename(path).to_owned(),
            Backing::Special(name) => return Slot::Label(Arc::from(name.as_str())),
            Backing::Anon | Backing::Vdso => String::new(),
        };
        let label: Arc<str> = Arc::from(format!("[unknown] ({name})"));
        if self.exited {
            return Slot::Label(label);
        }
        let file = match open_mapped(self.pid, line) {
            Ok(file) => file,
            Err(err) => {
                log::debug!("process {}: {}", self.pid, crate::errors::chain(&err));
                return Slot::Label(label);
            }
        };
        // The file came through /proc/PID: it is this process's only if the pid still is.
        if !self.still_here() {
            return Slot::Label(label);
        }
        match modules.intern(file, &name, tick) {
            Ok(module) => Slot::Open(module),
            Err(_full) => Slot::Full(label, Instant::now()),
        }
    }

    /// The perf map's name for JIT code at `addr`, or `[jit]`.
    fn jit_name(&mut self, addr: u64, labels: &Labels) -> Arc<str> {
        if self.perf_map.is_none() && !self.exited {
            let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid));
            let ns_pid = status
                .ok()
                .and_then(|s| parse_ns_pid(&s))
                .unwrap_or(self.pid);
            self.perf_map = Some(PerfMapSource::new(self.pid, ns_pid));
        }
        let Some(mut map) = self.perf_map.take() else {
            return Arc::clone(&labels.jit);
        };
        let mut name = map.cached(addr);
        // After the process is gone its pid (and so the path of its perf map) may be another
        // process's: only what was read while it was here is used then.
        if name.is_none() && !self.exited && map.due() {
            map.reload();
            if self.still_here() {
                name = map.cached(addr);
            } else {
                map.forget();
            }
        }
        self.perf_map = Some(map);
        name.unwrap_or_else(|| Arc::clone(&labels.jit))
    }

    /// Reads the maps again for an address in none of the cached ones (a library loaded
    /// since), keeping the files of mappings that did not change.
    fn read_maps_again(&mut self) {
        self.read_at = Instant::now();
        let Some(lines) = maps_of(self.pid) else {
            self.exited = true;
            return;
        };
        if !self.still_here() {
            return;
        }
        let mut old: HashMap<(u64, u64, u64, u64), Slot> = self
            .mappings
            .drain(..)
            .map(|m| {
                (
                    (m.line.start, m.line.end, m.line.offset, m.line.inode),
                    m.slot,
                )
            })
            .collect();
        self.mappings = lines
            .into_iter()
            .map(|line| {
                let key = (line.start, line.end, line.offset, line.inode);
                let slot = old.remove(&key).unwrap_or(Slot::Unopened);
                Mapping { line, slot }
            })
            .collect();
    }
}
