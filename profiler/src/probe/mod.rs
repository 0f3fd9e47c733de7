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

use aya::{
    programs::{FEntry, KProbe, RawTracePoint},
    Ebpf, EbpfLoader,
};
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

/// How a program is attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Attach {
    /// A raw tracepoint of this name.
    RawTracepoint,
    /// fentry on the kernel function of this name (needs its BTF).
    Fentry,
    /// A kprobe on the kernel function of this name.
    Kprobe,
}

/// A hook the profiler can use: program name in the object, and where it attaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Hook {
    program: &'static str,
    /// The tracepoint, or the kernel function's names across kernels, preferred first (6.18
    /// dropped the `__` of `__mod_memcg_state` and its siblings; older kernels also have an
    /// out-of-line copy of the irq-saving wrapper under the plain name, which must not be
    /// hooked beside the real one).
    targets: &'static [&'static str],
    /// What the function's first parameter must be (`struct lruvec *`, ...).
    first_param: &'static str,
    attach: Attach,
    role: HookRole,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum HookRole {
    /// The charge path, in one of the modes; `primary` decides whether the mode works (it sees
    /// anon and file charges).
    Charge {
        mode: ChargeMode,
        primary: bool,
    },
    Reclaim,
    Oom,
}

const fn charge(
    program: &'static str,
    targets: &'static [&'static str],
    first_param: &'static str,
    attach: Attach,
    mode: ChargeMode,
    primary: bool,
) -> Hook {
    Hook {
        program,
        targets,
        first_param,
        attach,
        role: HookRole::Charge { mode, primary },
    }
}

const LRUVEC_STATE: &[&str] = &["__mod_memcg_lruvec_state", "mod_memcg_lruvec_state"];
const MEMCG_STATE: &[&str] = &["__mod_memcg_state", "mod_memcg_state"];
const MEMCG_EVENTS: &[&str] = &["__count_memcg_events", "count_memcg_events"];
const LRUVEC: &str = "struct lruvec *";
const MEMCG: &str = "struct mem_cgroup *";

/// The charge-path modes that load programs, cheapest first: the order they are tried in.
const CHARGE_MODES: [ChargeMode; 3] = [
    ChargeMode::Tracepoint,
    ChargeMode::Fentry,
    ChargeMode::Kprobe,
];

/// Every hook, charge-path families in the order of [`CHARGE_MODES`].
const HOOKS: [Hook; 12] = [
    charge(
        "memcg_lruvec_state",
        &["mod_memcg_lruvec_state"],
        MEMCG,
        Attach::RawTracepoint,
        ChargeMode::Tracepoint,
        true,
    ),
    charge(
        "memcg_state",
        &["mod_memcg_state"],
        MEMCG,
        Attach::RawTracepoint,
        ChargeMode::Tracepoint,
        false,
    ),
    charge(
        "memcg_events",
        &["count_memcg_events"],
        MEMCG,
        Attach::RawTracepoint,
        ChargeMode::Tracepoint,
        false,
    ),
    charge(
        "fentry_memcg_lruvec_state",
        LRUVEC_STATE,
        LRUVEC,
        Attach::Fentry,
        ChargeMode::Fentry,
        true,
    ),
    charge(
        "fentry_memcg_state",
        MEMCG_STATE,
        MEMCG,
        Attach::Fentry,
        ChargeMode::Fentry,
        false,
    ),
    charge(
        "fentry_memcg_events",
        MEMCG_EVENTS,
        MEMCG,
        Attach::Fentry,
        ChargeMode::Fentry,
        false,
    ),
    charge(
        "kprobe_memcg_lruvec_state",
        LRUVEC_STATE,
        LRUVEC,
        Attach::Kprobe,
        ChargeMode::Kprobe,
        true,
    ),
    charge(
        "kprobe_memcg_state",
        MEMCG_STATE,
        MEMCG,
        Attach::Kprobe,
        ChargeMode::Kprobe,
        false,
    ),
    charge(
        "kprobe_memcg_events",
        MEMCG_EVENTS,
        MEMCG,
        Attach::Kprobe,
        ChargeMode::Kprobe,
        false,
    ),
    Hook {
        program: "memcg_reclaim_begin",
        targets: &["mm_vmscan_memcg_reclaim_begin"],
        first_param: "",
        attach: Attach::RawTracepoint,
        role: HookRole::Reclaim,
    },
    Hook {
        program: "memcg_reclaim_end",
        targets: &["mm_vmscan_memcg_reclaim_end"],
        first_param: "",
        attach: Attach::RawTracepoint,
        role: HookRole::Reclaim,
    },
    Hook {
        program: "oom_mark_victim",
        targets: &["mark_victim"],
        first_param: "",
        attach: Attach::RawTracepoint,
        role: HookRole::Oom,
    },
];

/// What happened to one hook.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HookReport {
    /// The tracepoint or kernel function.
    pub hook: &'static str,
    /// `raw_tracepoint`, `fentry` or `kprobe`.
    pub kind: &'static str,
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
    /// The user asked for one charge-path mode and it cannot work here.
    #[error(
        "--mode {0} is not available on this kernel: {1}. Use --mode auto or run `profiler doctor`"
    )]
    ModeUnavailable(ChargeMode, String),
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
/// Charge-path families are tried cheapest first (raw tracepoints, fentry, kprobes); the first
/// whose primary hook attaches is the mode, and the others are skipped, never attached beside
/// it (they would count every update twice). Returns `None` as probes when no program is
/// attached (polling mode), with the report saying why. Errors only when nothing sensible can
/// start, or when the one mode asked for cannot.
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
    let only = request.only();
    if only == Some(ChargeMode::Polling) {
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
            if let Some(mode) = only {
                return Err(ProbeError::ModeUnavailable(mode, reason));
            }
            report.hooks = skipped_all("no BTF");
            report.mode_reason = reason.clone();
            report.oom_reason = reason;
            return Ok((None, report));
        }
    };

    let charge = layout::charge_layout(&btf);
    let task = layout::task_layout(&btf);
    let victim =
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
    let task_value = victim
        .as_ref()
        .or(task.as_ref())
        .ok()
        .copied()
        .unwrap_or_default();
    loader.override_global("CHARGE_LAYOUT", &charge_value, true);
    loader.override_global("TASK_LAYOUT", &task_value, true);
    let mut ebpf = loader.load(PROGRAMS)?;
    let logger = aya_log::EbpfLogger::init(&mut ebpf)?;
    // fentry needs the kernel's BTF in aya's form (the same file, parsed by aya).
    let aya_btf =
        aya::Btf::parse_file(btf_path, aya::Endianness::default()).map_err(|e| format!("{e}"));

    // The charge path: one family, the cheapest that works.
    let mut chosen: Option<ChargeMode> = None;
    let mut chosen_name = String::new();
    let mut why_not: Vec<String> = Vec::new();
    for mode in CHARGE_MODES {
        let family: Vec<Hook> = HOOKS
            .iter()
            .copied()
            .filter(|h| matches!(h.role, HookRole::Charge { mode: m, .. } if m == mode))
            .collect();
        let skip = if let Some(done) = chosen {
            Some(format!("{done} mode in use (cheaper)"))
        } else if only.is_some_and(|o| o != mode) {
            Some(format!("--mode {}", only.unwrap_or(mode)))
        } else {
            charge.as_ref().err().map(|e| format!("BTF: {e}"))
        };
        if let Some(why) = skip {
            for hook in &family {
                report.hooks.push(hook_report(
                    hook,
                    resolve_target(hook, &btf).unwrap_or(hook.targets[0]),
                    HookStatus::Skipped,
                    Some(why.clone()),
                ));
            }
            continue;
        }
        let mut primary_ok = Err(String::from("no primary hook"));
        let mut primary_name = String::new();
        let mut results = Vec::new();
        for hook in &family {
            let target = resolve_target(hook, &btf);
            let outcome = match (&target, hook.attach) {
                (Err(why), _) => Err(why.clone()),
                (Ok(name), Attach::Fentry) => aya_btf
                    .as_ref()
                    .map_err(|e| format!("aya cannot read the BTF: {e}"))
                    .and_then(|b| attach(&mut ebpf, *hook, name, Some(b))),
                (Ok(name), _) => attach(&mut ebpf, *hook, name, None),
            };
            let target = target.unwrap_or(hook.targets[0]);
            if matches!(hook.role, HookRole::Charge { primary: true, .. }) {
                primary_ok = outcome.clone();
                primary_name = describe(hook, target);
            }
            results.push((*hook, target, outcome));
        }
        match primary_ok {
            Ok(()) => {
                chosen = Some(mode);
                chosen_name = primary_name;
                for (hook, target, outcome) in results {
                    report.hooks.push(match outcome {
                        Ok(()) => hook_report(&hook, target, HookStatus::Attached, None),
                        Err(why) => hook_report(&hook, target, HookStatus::Failed, Some(why)),
                    });
                }
            }
            Err(why) => {
                // Without its primary hook the family sees no anon or file charge: detach
                // what did attach, so no half family stays beside the next one.
                for (hook, target, outcome) in results {
                    let detail = match outcome {
                        Ok(()) => {
                            detach(&mut ebpf, hook);
                            format!("attached, then detached: {primary_name} failed")
                        }
                        Err(why) => why,
                    };
                    report
                        .hooks
                        .push(hook_report(&hook, target, HookStatus::Failed, Some(detail)));
                }
                why_not.push(format!("{mode}: {primary_name}: {why}"));
            }
        }
    }
    match chosen {
        Some(mode) => {
            report.mode = mode;
            report.mode_reason = if why_not.is_empty() {
                format!("{chosen_name} attached")
            } else {
                format!("{chosen_name} attached; not {}", why_not.join("; "))
            };
        }
        None => {
            let reason = match &charge {
                Err(e) => format!("no charge-path hook can be used (BTF: {e})"),
                Ok(_) => format!("no charge-path hook attached ({})", why_not.join("; ")),
            };
            if let Some(mode) = only {
                return Err(ProbeError::ModeUnavailable(mode, reason));
            }
            report.mode_reason = format!("{reason}; reading cgroup files every interval");
        }
    }

    for hook in HOOKS
        .iter()
        .filter(|h| !matches!(h.role, HookRole::Charge { .. }))
    {
        let blocker = match hook.role {
            // Reclaim needs the memcg offsets and the task's css_set, not the victim tracepoint.
            HookRole::Reclaim => charge
                .as_ref()
                .err()
                .or(task.as_ref().err())
                .map(|e| format!("BTF: {e}")),
            HookRole::Oom => victim.as_ref().err().map(|e| format!("BTF: {e}")),
            HookRole::Charge { .. } => None,
        };
        let target = hook.targets[0];
        report.hooks.push(match blocker {
            Some(why) => hook_report(hook, target, HookStatus::Skipped, Some(why)),
            None => match attach(&mut ebpf, *hook, target, None) {
                Ok(()) => hook_report(hook, target, HookStatus::Attached, None),
                Err(why) => hook_report(hook, target, HookStatus::Failed, Some(why)),
            },
        });
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

/// `raw tracepoint memcg:mod_memcg_lruvec_state`, `fentry __mod_memcg_lruvec_state`, ...
fn describe(hook: &Hook, target: &str) -> String {
    match hook.attach {
        Attach::RawTracepoint => format!("raw tracepoint memcg:{target}"),
        Attach::Fentry => format!("fentry {target}"),
        Attach::Kprobe => format!("kprobe {target}"),
    }
}

/// The name to attach `hook` to on this kernel: a tracepoint's own name, or the first of a
/// function's names that the kernel's BTF has with the expected first parameter.
fn resolve_target(hook: &Hook, btf: &KernelBtf) -> Result<&'static str, String> {
    if hook.attach == Attach::RawTracepoint {
        return Ok(hook.targets[0]);
    }
    let mut seen = Vec::new();
    for &name in hook.targets {
        match btf.function_params(name) {
            Ok(Some(params)) if params.first().map(String::as_str) == Some(hook.first_param) => {
                return Ok(name)
            }
            Ok(Some(params)) => seen.push(format!("{name}({})", params.join(", "))),
            Ok(None) => {}
            Err(e) => seen.push(format!("{name}: {e}")),
        }
    }
    Err(if seen.is_empty() {
        format!(
            "the kernel's BTF has no function {}",
            hook.targets.join(" or ")
        )
    } else {
        format!(
            "the kernel's BTF has {} but not with a first parameter `{}`",
            seen.join(", "),
            hook.first_param
        )
    })
}

fn hook_report(
    hook: &Hook,
    target: &'static str,
    status: HookStatus,
    detail: Option<String>,
) -> HookReport {
    HookReport {
        hook: target,
        kind: match hook.attach {
            Attach::RawTracepoint => "raw_tracepoint",
            Attach::Fentry => "fentry",
            Attach::Kprobe => "kprobe",
        },
        status,
        detail,
    }
}

/// `Ok` when the hook on `target` attached, else why not.
fn hook_outcome(hooks: &[HookReport], target: &str) -> Result<(), String> {
    match hooks.iter().find(|h| h.hook == target) {
        Some(HookReport {
            status: HookStatus::Attached,
            ..
        }) => Ok(()),
        Some(h) => Err(h.detail.clone().unwrap_or_else(|| "unknown".into())),
        None => Err("not tried".into()),
    }
}

fn attach(ebpf: &mut Ebpf, hook: Hook, target: &str, btf: Option<&aya::Btf>) -> Result<(), String> {
    let program = ebpf
        .program_mut(hook.program)
        .ok_or_else(|| format!("program {} missing from the object", hook.program))?;
    match hook.attach {
        Attach::RawTracepoint => {
            let program: &mut RawTracePoint = program.try_into().map_err(|e| format!("{e}"))?;
            program
                .load()
                .map_err(|e| format!("load: {}", error_chain(&e)))?;
            program
                .attach(target)
                .map_err(|e| format!("attach: {}", error_chain(&e)))?;
        }
        Attach::Fentry => {
            let btf = btf.ok_or("no BTF for fentry")?;
            let program: &mut FEntry = program.try_into().map_err(|e| format!("{e}"))?;
            program
                .load(target, btf)
                .map_err(|e| format!("load: {}", error_chain(&e)))?;
            program
                .attach()
                .map_err(|e| format!("attach: {}", error_chain(&e)))?;
        }
        Attach::Kprobe => {
            let program: &mut KProbe = program.try_into().map_err(|e| format!("{e}"))?;
            program
                .load()
                .map_err(|e| format!("load: {}", error_chain(&e)))?;
            program
                .attach(target, 0)
                .map_err(|e| format!("attach: {}", error_chain(&e)))?;
        }
    }
    Ok(())
}

/// Unloads a program that attached, with its links.
fn detach(ebpf: &mut Ebpf, hook: Hook) {
    let Some(program) = ebpf.program_mut(hook.program) else {
        return;
    };
    // Unloading detaches every link; an error leaves nothing worse than before.
    let _ = match hook.attach {
        Attach::RawTracepoint => {
            <&mut RawTracePoint>::try_from(program).map(|p| p.unload().is_ok())
        }
        Attach::Fentry => <&mut FEntry>::try_from(program).map(|p| p.unload().is_ok()),
        Attach::Kprobe => <&mut KProbe>::try_from(program).map(|p| p.unload().is_ok()),
    };
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
        .map(|h| hook_report(h, h.targets[0], HookStatus::Skipped, Some(why.to_string())))
        .collect()
}
