//! Names for sampled stacks. A sample is normalised at once (its user addresses become
//! module + file offset, with the module's file kept open), so it can be named later, after
//! the process exited, was OOM-killed or had its binary replaced on disk.
//!
//! Frame strings (spec of issue 16): a function's demangled name (no Rust hash); an address in
//! a file no symbol covers: `[unknown] (BASENAME)`; JIT code: the perf map's name or `[jit]`;
//! the vDSO: `[vdso]`; an address in no mapping, or in a process never read: `[unknown]`;
//! kernel: the kallsyms name or `[unknown] (kernel)`.
//!
//! A wrong name is worse than none: a symbol names an address only if it covers it, a file is
//! used only if it is the inode mapped, and a pid is trusted only while it has the same process.
mod kernel;
mod maps;
mod modules;
mod open;
mod perfmap;
mod process;
#[cfg(test)]
mod tests;

use std::{collections::HashMap, sync::Arc, time::Duration};

use kernel::KernelNames;
use modules::Modules;
use process::{Check, Labels, Process, UserFrame};

/// Processes cached at most; see [`Symbolizer::normalize`] for what happens past it.
const MAX_PROCESSES: usize = 4096;
/// Module files open at most; see [`Symbolizer::normalize`] for what happens past it.
const MAX_MODULES: usize = 512;
/// How long a process that is gone stays cached, on the collector's clock (s): samples taken
/// before it died may still be on their way.
const GONE_GRACE_S: f64 = 30.0;
/// A live process with no sample for this long is forgotten (read again at its next one), so
/// an idle process does not keep its files open.
const IDLE_AFTER: Duration = Duration::from_secs(600);

/// A sample as the kernel took it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RawStack<'a> {
    /// The process (thread group id) the sample was taken in.
    pub(crate) tgid: u32,
    /// User-space addresses, leaf first, as `bpf_get_stack` gives them (trailing zeros
    /// already cut).
    pub(crate) user: &'a [u64],
    /// Kernel addresses, leaf first.
    pub(crate) kernel: &'a [u64],
    /// The command name of the thread that charged: a new one may be an `exec`.
    pub(crate) comm: &'a str,
}

/// A stack whose user frames are normalised (module + file offset): what is kept between the
/// sample and its symbolization. Equal stacks are the same frames, so they can be counted
/// before they are named.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct NormalizedStack {
    /// User frames, leaf first.
    user: Vec<UserFrame>,
    /// Kernel addresses to look up, leaf first (return addresses already moved back into
    /// their call).
    kernel: Vec<u64>,
}

/// Names stack frames; keeps what it needs to name them after the process is gone.
///
/// Not `Send` (blazesym's readers are not): keep it on the thread that collects.
pub(crate) struct Symbolizer {
    processes: HashMap<u32, Process>,
    modules: Modules,
    kernel: KernelNames,
    labels: Labels,
    /// Counts samples; orders processes and modules by their last use.
    tick: u64,
}

/// The address to look up for the `index`th frame (leaf first): every frame but the leaf
/// is a return address, the instruction after a call, which for a call that ends a function
/// is already the next function's; one byte back is inside the call.
fn lookup_address(index: usize, addr: u64) -> u64 {
    if index == 0 {
        addr
    } else {
        addr.saturating_sub(1)
    }
}

impl Symbolizer {
    /// Nothing cached; kallsyms is read at the first kernel frame named.
    pub(crate) fn new() -> Self {
        Self {
            processes: HashMap::new(),
            modules: Modules::new(MAX_MODULES),
            kernel: KernelNames::new(),
            labels: Labels {
                unknown: Arc::from("[unknown]"),
                jit: Arc::from("[jit]"),
                vdso: Arc::from("[vdso]"),
            },
            tick: 0,
        }
    }

    /// Reads what naming kernel frames needs (kallsyms) now, not at the first sample.
    pub(crate) fn warm(&mut self) {
        self.kernel.warm();
    }

    /// Called at once when the sample arrives (milliseconds after it was taken): resolves each
    /// user address to its mapping using the process's `/proc/PID/maps` (read once per process
    /// and cached, read again when an address is in no cached mapping and the process still
    /// exists, at most every 250 ms), and keeps the mapped file open
    /// (`/proc/PID/map_files/START-END`, the exact inode mapped even if the path was replaced
    /// or deleted; else `/proc/PID/root/PATH` only when its device and inode match the maps
    /// line) so it can be named after the process exits or is OOM-killed. JIT code is named
    /// here, from the perf map, while the process is there to read it.
    ///
    /// When [`MAX_PROCESSES`] are cached, the least recently sampled one is forgotten (its
    /// stacks already normalised keep their files). When [`MAX_MODULES`] files are open and
    /// all are in use, a new file is not opened: its frames are `[unknown] (BASENAME)` until
    /// [`Self::prune`] closes some.
    pub(crate) fn normalize(&mut self, raw: RawStack<'_>) -> NormalizedStack {
        self.tick += 1;
        let tick = self.tick;
        let kernel = raw
            .kernel
            .iter()
            .enumerate()
            .map(|(i, &addr)| lookup_address(i, addr))
            .collect();
        if raw.user.is_empty() {
            return NormalizedStack {
                user: Vec::new(),
                kernel,
            };
        }
        let Some(process) = cached_process(&mut self.processes, raw.tgid, raw.comm, tick) else {
            let unknown = UserFrame::Named(Arc::clone(&self.labels.unknown));
            return NormalizedStack {
                user: vec![unknown; raw.user.len()],
                kernel,
            };
        };
        process.used_tick = tick;
        process.used_at = std::time::Instant::now();
        let user = raw
            .user
            .iter()
            .enumerate()
            .map(|(i, &addr)| {
                process.frame(
                    lookup_address(i, addr),
                    &mut self.modules,
                    &self.labels,
                    tick,
                )
            })
            .collect();
        NormalizedStack { user, kernel }
    }

    /// Names the frames, root first: (user, kernel). See the module's documentation for the
    /// strings.
    pub(crate) fn symbolize(&mut self, stack: &NormalizedStack) -> (Vec<String>, Vec<String>) {
        self.tick += 1;
        let tick = self.tick;
        let user = stack
            .user
            .iter()
            .rev()
            .map(|frame| match frame {
                UserFrame::Named(name) => name.to_string(),
                UserFrame::Module { module, offset } => {
                    match self.modules.name(module, *offset, tick) {
                        Some(name) => name.to_string(),
                        None => module.unknown().to_string(),
                    }
                }
            })
            .collect();
        let kernel = stack
            .kernel
            .iter()
            .rev()
            .map(|&addr| self.kernel.name(addr).to_string())
            .collect();
        (user, kernel)
    }

    /// Called once a round (`now`: the collector's clock, in seconds): forgets processes gone
    /// for [`GONE_GRACE_S`] (so samples on their way still resolve), at once those whose pid
    /// another process now has, and those with no sample for [`IDLE_AFTER`]; then closes the
    /// module files nothing refers to any more, and drops kallsyms if kernel modules changed.
    pub(crate) fn prune(&mut self, now: f64) {
        self.processes
            .retain(|_, process| match process.check(true) {
                Check::Other => false,
                Check::Gone => now - *process.gone_since.get_or_insert(now) < GONE_GRACE_S,
                Check::Same => process.used_at.elapsed() < IDLE_AFTER,
            });
        self.modules.prune();
        self.kernel.prune();
    }
}

/// The cached process behind `pid`, read if it is not cached or no longer the same.
fn cached_process<'p>(
    processes: &'p mut HashMap<u32, Process>,
    pid: u32,
    comm: &str,
    tick: u64,
) -> Option<&'p mut Process> {
    let stale = match processes.get_mut(&pid) {
        Some(process) => process.check_sample(comm) == Check::Other,
        None => true,
    };
    if stale {
        processes.remove(&pid);
        let mut process = Process::read(pid, tick)?;
        // Its name from now on (just read: no check is forced).
        process.check_sample(comm);
        if processes.len() >= MAX_PROCESSES {
            let oldest = processes
                .iter()
                .min_by_key(|(_, p)| p.used_tick)
                .map(|(pid, _)| *pid);
            if let Some(oldest) = oldest {
                processes.remove(&oldest);
            }
        }
        processes.insert(pid, process);
    }
    processes.get_mut(&pid)
}
