//! Loading and attaching one hook's program: the only place that asks the kernel, behind the
//! [`Attacher`] trait so the mode choice can be decided (and tested) without one.
use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use aya::{
    programs::{FEntry, KProbe, RawTracePoint},
    Ebpf, EbpfLoader,
};
use profiler_common::{ChargeLayout, TaskLayout};

use super::{
    hooks::{Hook, HookKind},
    AttachError, ProbeError, PROGRAMS,
};

/// Attaches and detaches the programs of hooks.
pub(crate) trait Attacher {
    /// Loads `hook`'s program and attaches it to `target` (a name [`Hook::resolve_target`]
    /// gave).
    fn attach(&mut self, hook: &Hook, target: &'static str) -> Result<(), AttachError>;

    /// Unloads a program that attached, with its links.
    fn detach(&mut self, hook: &Hook);
}

/// The real attacher: the profiler's object loaded into the kernel with this kernel's
/// layouts, attaching through aya.
pub(crate) struct EbpfAttacher {
    ebpf: Ebpf,
    btf_path: PathBuf,
    /// The kernel's BTF in aya's form (the same file, parsed by aya), for fentry; parsed the
    /// first time a fentry hook is tried.
    aya_btf: Option<Result<aya::Btf, Arc<aya::BtfError>>>,
}

/// The maps with one entry per watched cgroup.
pub(crate) const SLOT_MAPS: [&str; 4] = ["COUNTERS", "BUDGETS", "LAST_EXIT", "STACK_SAMPLING"];

impl EbpfAttacher {
    /// Loads the object (no program yet) with the layouts the programs read as load-time
    /// constants.
    pub(crate) fn load(
        charge: &ChargeLayout,
        task: &TaskLayout,
        btf_path: &Path,
        slots: u32,
    ) -> Result<Self, ProbeError> {
        let mut loader = EbpfLoader::new();
        // The per-slot maps, sized for the cgroups to watch (per-CPU ones cost their size on
        // every CPU).
        for map in SLOT_MAPS {
            loader.map_max_entries(map, slots);
        }
        // No target BTF: the programs read the kernel's layouts from the constants below, not
        // through CO-RE relocations, and the fentry programs get aya's BTF when one is tried.
        // aya's default parse of /sys/kernel/btf/vmlinux here was most of the watch's peak
        // memory and start-up time.
        loader.btf(None);
        loader.override_global("CHARGE_LAYOUT", charge, true);
        loader.override_global("TASK_LAYOUT", task, true);
        Ok(Self {
            ebpf: loader.load(PROGRAMS)?,
            btf_path: btf_path.to_path_buf(),
            aya_btf: None,
        })
    }

    /// The loaded object, with whatever stayed attached.
    pub(crate) fn ebpf_mut(&mut self) -> &mut Ebpf {
        &mut self.ebpf
    }

    /// Drops aya's parse of the kernel's BTF (tens of MiB): the next fentry hook parses it
    /// again.
    pub(crate) fn forget_btf(&mut self) {
        self.aya_btf = None;
    }
}

impl Attacher for EbpfAttacher {
    fn attach(&mut self, hook: &Hook, target: &'static str) -> Result<(), AttachError> {
        let program = self
            .ebpf
            .program_mut(hook.program)
            .ok_or(AttachError::MissingProgram(hook.program))?;
        match hook.kind {
            HookKind::RawTracepoint => {
                let program: &mut RawTracePoint =
                    program.try_into().map_err(AttachError::ProgramType)?;
                program.load().map_err(AttachError::load)?;
                if let Err(e) = program.attach(target) {
                    // A program that cannot attach must not stay loaded (and hold its
                    // memory) for the whole run.
                    let _ = program.unload();
                    return Err(AttachError::Attach(e));
                }
            }
            HookKind::Fentry => {
                let btf = aya_btf(&mut self.aya_btf, &self.btf_path)?;
                let program: &mut FEntry = program.try_into().map_err(AttachError::ProgramType)?;
                program.load(target, btf).map_err(AttachError::load)?;
                if let Err(e) = program.attach() {
                    let _ = program.unload();
                    return Err(AttachError::Attach(e));
                }
            }
            HookKind::Kprobe => {
                let program: &mut KProbe = program.try_into().map_err(AttachError::ProgramType)?;
                program.load().map_err(AttachError::load)?;
                if let Err(e) = program.attach(target, 0) {
                    let _ = program.unload();
                    return Err(AttachError::Attach(e));
                }
            }
        }
        Ok(())
    }

    fn detach(&mut self, hook: &Hook) {
        let Some(program) = self.ebpf.program_mut(hook.program) else {
            return;
        };
        // Unloading detaches every link; an error leaves nothing worse than before.
        let _unloaded = match hook.kind {
            HookKind::RawTracepoint => {
                <&mut RawTracePoint>::try_from(program).map(|p| p.unload().is_ok())
            }
            HookKind::Fentry => <&mut FEntry>::try_from(program).map(|p| p.unload().is_ok()),
            HookKind::Kprobe => <&mut KProbe>::try_from(program).map(|p| p.unload().is_ok()),
        };
    }
}

/// The kernel's BTF in aya's form, parsed on first use and kept (also when it failed: every
/// fentry hook then reports the same reason).
fn aya_btf<'a>(
    parsed: &'a mut Option<Result<aya::Btf, Arc<aya::BtfError>>>,
    path: &Path,
) -> Result<&'a aya::Btf, AttachError> {
    parsed
        .get_or_insert_with(|| {
            aya::Btf::parse_file(path, aya::Endianness::default()).map_err(Arc::new)
        })
        .as_ref()
        .map_err(|e| AttachError::AyaBtf(Arc::clone(e)))
}
