//! The kernel side, seen from user space: what the running kernel offers, which programs load
//! and attach, the mode chosen, and the maps the collector talks to.
//!
//! - [`hooks`]: the hook table (every program, where it attaches, what it is for);
//! - [`attach`]: loading and attaching one hook through aya, behind the [`Attacher`] trait;
//! - [`choose`]: the mode choice, a pure function over an attacher (unit-tested with a fake);
//! - [`report`]: what probing found, for `doctor` and recordings;
//! - [`maps`] and [`ring`]: the maps and the ring buffer the collector reads.
//!
//! Probing is real: every hook is loaded and attached, and the mode follows from what worked.
//! Programs stay attached through links owned by this process (raw tracepoint, fentry and
//! kprobe fds), so a `kill -9` leaves nothing behind.
mod attach;
mod choose;
mod error;
mod hooks;
mod maps;
pub(crate) mod report;
mod ring;

use std::{fmt, io, path::Path};

use hooks::Hook;

use attach::{Attacher, EbpfAttacher};
use choose::{choose, polling_requested, KernelNeeds};
pub(crate) use error::{AttachError, ProbeError, TargetError, Unavailable};
pub(crate) use hooks::LRUVEC_STATE;
pub(crate) use maps::KernelMaps;
pub(crate) use report::ProbeReport;
pub(crate) use ring::{RingReader, StackReader};

use crate::{btf::KernelBtf, errors::chain as error_chain, mode::ModeRequest};

/// The kernel programs, built by `build.rs` for the BPF target.
static PROGRAMS: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/profiler"));

/// The embedded object (empty when built with `AYA_BUILD_SKIP`).
pub(crate) fn programs() -> &'static [u8] {
    PROGRAMS
}

/// The loaded and attached kernel programs, with their maps and logger.
pub(crate) struct Probes {
    /// Owns the programs and their links; dropping it detaches everything.
    attacher: EbpfAttacher,
    /// The charge path's hooks that attached, with their targets.
    charge: Vec<(&'static Hook, &'static str)>,
    /// Drains `aya-log` records of the programs; dropping it would break the programs' logging.
    pub logger: ProgramLogger,
    /// The maps the collector reads and writes.
    pub maps: KernelMaps,
    /// Ring buffer of bursts and OOM victims.
    pub ring: RingReader,
    /// Ring buffer of charge stack samples.
    pub stacks: StackReader,
}

impl fmt::Debug for Probes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Probes").finish_non_exhaustive()
    }
}

/// Keeps the programs attached while it lives; dropping it detaches them. The charge path's
/// programs can be detached and attached again ([`Attached::set_charge`]): they are the
/// costly ones, on every page a process of the node charges.
pub(crate) struct Attached {
    attacher: EbpfAttacher,
    charge: Vec<(&'static Hook, &'static str)>,
    armed: bool,
}

impl Attached {
    /// Whether there is a charge path to switch.
    pub(crate) fn has_charge_path(&self) -> bool {
        !self.charge.is_empty()
    }

    /// Attaches (`on`) or detaches the charge path's programs. Attaching loads them again
    /// (the verifier runs), which takes milliseconds; when one fails, none stays attached.
    pub(crate) fn set_charge(&mut self, on: bool) -> Result<(), AttachError> {
        if on == self.armed || self.charge.is_empty() {
            return Ok(());
        }
        if on {
            for (i, (hook, target)) in self.charge.iter().enumerate() {
                if let Err(e) = self.attacher.attach(hook, target) {
                    for (attached, _) in &self.charge[..i] {
                        self.attacher.detach(attached);
                    }
                    self.attacher.forget_btf();
                    return Err(e);
                }
            }
            self.attacher.forget_btf();
        } else {
            for (hook, _) in &self.charge {
                self.attacher.detach(hook);
            }
        }
        self.armed = on;
        Ok(())
    }
}

/// The logger draining the programs' `aya-log` records.
pub(crate) type ProgramLogger = aya_log::EbpfLogger<&'static dyn log::Log>;

impl Probes {
    /// Splits the probes into the parts the collector's event loop owns separately.
    pub(crate) fn split(self) -> (Attached, ProgramLogger, KernelMaps, RingReader, StackReader) {
        (
            Attached {
                attacher: self.attacher,
                charge: self.charge,
                armed: true,
            },
            self.logger,
            self.maps,
            self.ring,
            self.stacks,
        )
    }
}

/// The running kernel's release.
pub(crate) fn kernel_release() -> String {
    // SAFETY: `uname` fills the struct it is given; zeroed is a valid initial value.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer to a utsname.
    if unsafe { libc::uname(&mut uts) } != 0 {
        return format!("unknown ({})", io::Error::last_os_error());
    }
    let release: Vec<u8> = uts
        .release
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&release).into_owned()
}

/// Probes the kernel and attaches what works, following `request` (the rules are in
/// [`choose`]). Returns `None` as probes when no program is attached (polling mode), with the
/// report saying why. Errors only when nothing sensible can start, or when the one mode asked
/// for cannot.
pub(crate) fn start(
    request: ModeRequest,
    btf_path: &Path,
    slots: u32,
) -> Result<(Option<Probes>, ProbeReport), ProbeError> {
    let kernel = kernel_release();
    let only = request.only();
    if only == Some(crate::mode::ChargeMode::Polling) {
        let report = ProbeReport {
            kernel,
            btf: Ok(()),
            decision: polling_requested(),
        };
        return Ok((None, report));
    }
    if PROGRAMS.is_empty() {
        return Err(ProbeError::NoPrograms);
    }
    let needs = KernelBtf::load(btf_path).map(|btf| KernelNeeds::resolve(&btf));
    let btf = needs.as_ref().map(|_| ()).map_err(|e| error_chain(e));
    let choice = choose(only, needs, |needs| {
        let (charge, task) = needs.layouts();
        EbpfAttacher::load(&charge, &task, btf_path, slots)
    })?;
    let report = ProbeReport {
        kernel,
        btf,
        decision: choice.decision,
    };
    let Some(mut attacher) = choice.attacher else {
        return Ok((None, report));
    };
    attacher.forget_btf();
    let ebpf = attacher.ebpf_mut();
    let logger = aya_log::EbpfLogger::init(ebpf)?;
    let maps = KernelMaps::take(ebpf, slots)?;
    let ring = RingReader::take(ebpf)?;
    let stacks = RingReader::take_stacks(ebpf)?;
    Ok((
        Some(Probes {
            attacher,
            charge: choice.charge,
            logger,
            maps,
            ring,
            stacks,
        }),
        report,
    ))
}
