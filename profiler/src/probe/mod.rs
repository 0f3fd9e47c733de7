//! The kernel side, seen from user space: what the running kernel offers, which programs load
//! and attach, the mode chosen, and the maps the collector talks to.
//!
//! Probing is real: every hook is loaded and attached, and the mode follows from what worked.
//! Programs stay attached through links owned by this process (raw tracepoint fds), so a
//! `kill -9` leaves nothing behind.
mod layout;
mod maps;
mod ring;

use std::{fmt, io, path::Path};

use aya::{programs::RawTracePoint, Ebpf, EbpfLoader};
use serde::Serialize;
use thiserror::Error;

pub use maps::KernelMaps;
pub use ring::{KernelEvent, RingReader};

use crate::{
    btf::KernelBtf,
    mode::{ChargeMode, ModeRequest, OomSource},
};

/// The kernel programs, built by `build.rs` for the BPF target.
static PROGRAMS: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/profiler"));

/// The embedded object (empty when built with `AYA_BUILD_SKIP`).
pub fn programs() -> &'static [u8] {
    PROGRAMS
}

/// A hook the profiler can use: program name in the object and tracepoint it attaches to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Hook {
    program: &'static str,
    tracepoint: &'static str,
    role: HookRole,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum HookRole {
    Charge,
    Reclaim,
    Oom,
}

const HOOKS: [Hook; 6] = [
    Hook {
        program: "memcg_lruvec_state",
        tracepoint: "mod_memcg_lruvec_state",
        role: HookRole::Charge,
    },
    Hook {
        program: "memcg_state",
        tracepoint: "mod_memcg_state",
        role: HookRole::Charge,
    },
    Hook {
        program: "memcg_events",
        tracepoint: "count_memcg_events",
        role: HookRole::Charge,
    },
    Hook {
        program: "memcg_reclaim_begin",
        tracepoint: "mm_vmscan_memcg_reclaim_begin",
        role: HookRole::Reclaim,
    },
    Hook {
        program: "memcg_reclaim_end",
        tracepoint: "mm_vmscan_memcg_reclaim_end",
        role: HookRole::Reclaim,
    },
    Hook {
        program: "oom_mark_victim",
        tracepoint: "mark_victim",
        role: HookRole::Oom,
    },
];

/// The hook whose presence decides the charge-path mode: it sees anon and file charges.
const CHARGE_TRACEPOINT: &str = "mod_memcg_lruvec_state";

/// What happened to one hook.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HookReport {
    /// Raw tracepoint name.
    pub tracepoint: &'static str,
    /// `attached`, `skipped` or `failed`.
    pub status: HookStatus,
    /// Why it was skipped or failed.
    pub detail: Option<String>,
}

/// Outcome of trying a hook.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HookStatus {
    /// Loaded and attached.
    Attached,
    /// Not tried, because something it needs is missing.
    Skipped,
    /// Tried, and the kernel refused.
    Failed,
}

/// What the kernel offers and what was chosen; `profiler doctor` prints it.
#[derive(Clone, Debug, Serialize)]
pub struct ProbeReport {
    /// `uname -r`.
    pub kernel: String,
    /// Whether `/sys/kernel/btf/vmlinux` was read, or why not.
    pub btf: Result<(), String>,
    /// Every hook, in order of preference.
    pub hooks: Vec<HookReport>,
    /// The charge-path mode chosen.
    pub mode: ChargeMode,
    /// Why that mode.
    pub mode_reason: String,
    /// Where OOM kills come from.
    pub oom_source: OomSource,
    /// Why that source.
    pub oom_reason: String,
}

/// Errors that stop the profiler from starting.
#[derive(Debug, Error)]
pub enum ProbeError {
    /// The binary was built with `AYA_BUILD_SKIP=1`.
    #[error(
        "this profiler binary was built without its kernel programs (AYA_BUILD_SKIP); \
         rebuild it with `cargo xtask build`"
    )]
    NoPrograms,
    /// The user asked for `--mode tracepoint` and it cannot work here.
    #[error("--mode tracepoint is not available on this kernel: {0}. Use --mode auto or run `profiler doctor`")]
    TracepointUnavailable(String),
    /// Loading the object failed as a whole.
    #[error("loading the kernel programs failed: {0}")]
    Load(#[from] aya::EbpfError),
    /// A map the programs define is missing or of the wrong type.
    #[error("the kernel programs lack map {0}: the binary is inconsistent, rebuild it")]
    Map(&'static str, #[source] aya::maps::MapError),
    /// The logger of the kernel programs could not start.
    #[error("starting the kernel programs' logger failed: {0}")]
    Logger(#[from] aya_log::Error),
}

/// The loaded and attached kernel programs, with their maps and logger.
pub struct Probes {
    /// Owns the programs and their links; dropping it detaches everything.
    _ebpf: Ebpf,
    /// Drains `aya-log` records of the programs; dropping it would break the programs' logging.
    pub logger: ProgramLogger,
    /// The maps the collector reads and writes.
    pub maps: KernelMaps,
    /// Ring buffer of bursts and OOM victims.
    pub ring: RingReader,
}

impl fmt::Debug for Probes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Probes").finish_non_exhaustive()
    }
}

/// Keeps the programs attached while it lives; dropping it detaches them.
pub struct Attached {
    _ebpf: Ebpf,
}

/// The logger draining the programs' `aya-log` records.
pub type ProgramLogger = aya_log::EbpfLogger<&'static dyn log::Log>;

impl Probes {
    /// Splits the probes into the parts the collector's event loop owns separately.
    pub fn split(self) -> (Attached, ProgramLogger, KernelMaps, RingReader) {
        (
            Attached { _ebpf: self._ebpf },
            self.logger,
            self.maps,
            self.ring,
        )
    }
}

/// The running kernel's release.
pub fn kernel_release() -> String {
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

/// Probes the kernel and attaches what works, following `request`.
///
/// Returns `None` as probes when no program is attached (polling mode), with the report saying
/// why. Errors only when nothing sensible can start.
pub fn start(
    request: ModeRequest,
    btf_path: &Path,
) -> Result<(Option<Probes>, ProbeReport), ProbeError> {
    let mut report = ProbeReport {
        kernel: kernel_release(),
        btf: Ok(()),
        hooks: Vec::new(),
        mode: ChargeMode::Polling,
        mode_reason: String::new(),
        oom_source: OomSource::Kmsg,
        oom_reason: String::new(),
    };
    if request == ModeRequest::Polling {
        report.mode_reason = "asked for with --mode polling".into();
        report.oom_reason = "polling mode: no kernel programs".into();
        report.hooks = skipped_all("--mode polling");
        return Ok((None, report));
    }
    if PROGRAMS.is_empty() {
        return Err(ProbeError::NoPrograms);
    }
    let btf = match KernelBtf::load(btf_path) {
        Ok(btf) => btf,
        Err(e) => {
            report.btf = Err(e.to_string());
            let reason =
                format!("no usable BTF, so no program can find its way in kernel structures: {e}");
            if request == ModeRequest::Tracepoint {
                return Err(ProbeError::TracepointUnavailable(reason));
            }
            report.hooks = skipped_all("no BTF");
            report.mode_reason = reason.clone();
            report.oom_reason = reason;
            return Ok((None, report));
        }
    };

    let charge = layout::charge_layout(&btf);
    let task =
        layout::task_layout(&btf).and_then(|t| match btf.tracepoint_params("mark_victim")? {
            Some(params)
                if params
                    .first()
                    .is_some_and(|p| p.starts_with("struct task_struct")) =>
            {
                Ok(t)
            }
            Some(params) => Err(crate::btf::BtfError::Unsupported(format!(
                "mark_victim takes ({}), not the task (kernels before 6.8)",
                params.join(", ")
            ))),
            None => Err(crate::btf::BtfError::Unsupported(
                "the kernel has no mark_victim tracepoint".into(),
            )),
        });

    let mut loader = EbpfLoader::new();
    let charge_value = charge.as_ref().ok().copied().unwrap_or_default();
    let task_value = task.as_ref().ok().copied().unwrap_or_default();
    loader.override_global("CHARGE_LAYOUT", &charge_value, true);
    loader.override_global("TASK_LAYOUT", &task_value, true);
    let mut ebpf = loader.load(PROGRAMS)?;
    let logger = aya_log::EbpfLogger::init(&mut ebpf)?;

    for hook in HOOKS {
        let blocker = match hook.role {
            HookRole::Charge => charge.as_ref().err().map(|e| format!("BTF: {e}")),
            HookRole::Reclaim => charge
                .as_ref()
                .err()
                .or(task.as_ref().err())
                .map(|e| format!("BTF: {e}")),
            HookRole::Oom => task.as_ref().err().map(|e| format!("BTF: {e}")),
        };
        let (status, detail) = match blocker {
            Some(why) => (HookStatus::Skipped, Some(why)),
            None => match attach(&mut ebpf, hook) {
                Ok(()) => (HookStatus::Attached, None),
                Err(why) => (HookStatus::Failed, Some(why)),
            },
        };
        report.hooks.push(HookReport {
            tracepoint: hook.tracepoint,
            status,
            detail,
        });
    }

    match hook_outcome(&report.hooks, CHARGE_TRACEPOINT) {
        Ok(()) => {
            report.mode = ChargeMode::Tracepoint;
            report.mode_reason = format!("raw tracepoint memcg:{CHARGE_TRACEPOINT} attached");
        }
        Err(why) => {
            let reason = format!("raw tracepoint memcg:{CHARGE_TRACEPOINT} unusable: {why}");
            if request == ModeRequest::Tracepoint {
                return Err(ProbeError::TracepointUnavailable(reason));
            }
            report.mode_reason = format!("{reason}; reading cgroup files every interval");
        }
    }
    match hook_outcome(&report.hooks, "mark_victim") {
        Ok(()) => {
            report.oom_source = OomSource::MarkVictim;
            report.oom_reason = "raw tracepoint oom:mark_victim attached".into();
        }
        Err(why) => {
            report.oom_reason = format!("oom:mark_victim unusable ({why}); reading the kernel log");
        }
    }

    let maps = KernelMaps::take(&mut ebpf)?;
    let ring = RingReader::take(&mut ebpf)?;
    Ok((
        Some(Probes {
            _ebpf: ebpf,
            logger,
            maps,
            ring,
        }),
        report,
    ))
}

/// `Ok` when the hook on `tracepoint` attached, else why not.
fn hook_outcome(hooks: &[HookReport], tracepoint: &str) -> Result<(), String> {
    match hooks.iter().find(|h| h.tracepoint == tracepoint) {
        Some(HookReport {
            status: HookStatus::Attached,
            ..
        }) => Ok(()),
        Some(h) => Err(h.detail.clone().unwrap_or_else(|| "unknown".into())),
        None => Err("not tried".into()),
    }
}

fn attach(ebpf: &mut Ebpf, hook: Hook) -> Result<(), String> {
    let program: &mut RawTracePoint = ebpf
        .program_mut(hook.program)
        .ok_or_else(|| format!("program {} missing from the object", hook.program))?
        .try_into()
        .map_err(|e| format!("{e}"))?;
    program
        .load()
        .map_err(|e| format!("load: {}", error_chain(&e)))?;
    program
        .attach(hook.tracepoint)
        .map_err(|e| format!("attach: {}", error_chain(&e)))?;
    Ok(())
}

/// An error and its sources on one line (aya's verifier errors carry the log in the source).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn skipped_all(why: &str) -> Vec<HookReport> {
    HOOKS
        .iter()
        .map(|h| HookReport {
            tracepoint: h.tracepoint,
            status: HookStatus::Skipped,
            detail: Some(why.to_string()),
        })
        .collect()
}
