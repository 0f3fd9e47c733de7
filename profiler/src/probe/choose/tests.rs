//! The mode choice over a fake attacher (as aya tests its loader with `sys/fake.rs`): kernels
//! with and without the memcg tracepoints, fentry refused, a forced mode that cannot load, no
//! BTF. No root, no kernel.
use std::{collections::BTreeSet, io};

use aya::{programs::ProgramError, sys::SyscallError};

use super::*;

/// What a fake kernel does with a program: attaches it, or refuses with `errno`.
struct FakeAttacher {
    /// Programs the kernel refuses to load, with the errno it gives.
    refuse_load: Vec<(&'static str, i32)>,
    /// Programs whose attach fails, with the errno.
    refuse_attach: Vec<(&'static str, i32)>,
    /// Every call, in order: `attach PROGRAM TARGET` or `detach PROGRAM`.
    calls: Vec<String>,
    /// Programs attached now.
    attached: BTreeSet<&'static str>,
}

impl FakeAttacher {
    fn new() -> Self {
        Self {
            refuse_load: Vec::new(),
            refuse_attach: Vec::new(),
            calls: Vec::new(),
            attached: BTreeSet::new(),
        }
    }

    /// A kernel without the `memcg:*` tracepoints (before 2025): attaching them fails.
    fn without_memcg_tracepoints(mut self) -> Self {
        for program in ["memcg_lruvec_state", "memcg_state", "memcg_events"] {
            self.refuse_attach.push((program, libc::ENOENT));
        }
        self
    }

    /// fentry refused for this one program at load, with EPERM.
    fn refusing_load(mut self, program: &'static str) -> Self {
        self.refuse_load.push((program, libc::EPERM));
        self
    }

    fn attached(&self) -> Vec<&'static str> {
        self.attached.iter().copied().collect()
    }
}

fn syscall(call: &'static str, errno: i32) -> ProgramError {
    ProgramError::SyscallError(SyscallError {
        call,
        io_error: io::Error::from_raw_os_error(errno),
    })
}

impl Attacher for FakeAttacher {
    fn attach(&mut self, hook: &Hook, target: &'static str) -> Result<(), AttachError> {
        self.calls.push(format!("attach {} {target}", hook.program));
        let refused = |list: &[(&str, i32)]| {
            list.iter()
                .find(|(p, _)| *p == hook.program)
                .map(|(_, errno)| *errno)
        };
        if let Some(errno) = refused(&self.refuse_load) {
            return Err(AttachError::Load(syscall("bpf_prog_load", errno)));
        }
        if let Some(errno) = refused(&self.refuse_attach) {
            return Err(AttachError::Attach(syscall(
                "bpf_raw_tracepoint_open",
                errno,
            )));
        }
        self.attached.insert(hook.program);
        Ok(())
    }

    fn detach(&mut self, hook: &Hook) {
        self.calls.push(format!("detach {}", hook.program));
        self.attached.remove(hook.program);
    }
}

/// A kernel whose BTF has everything; function names as on 6.1 (with the `__`).
fn needs() -> KernelNeeds {
    KernelNeeds {
        charge: Ok(ChargeLayout::UNRESOLVED),
        task: Ok(TaskLayout::UNRESOLVED),
        victim: Ok(()),
        deaths: Ok(()),
        targets: HOOKS.iter().map(|h| Ok(h.default_target())).collect(),
    }
}

fn missing(enum_name: &str) -> BtfError {
    BtfError::EnumMissing {
        enum_name: enum_name.into(),
    }
}

/// Runs the choice on `kernel`; the decision, and the attacher it loaded (if any).
fn run(
    only: Option<ChargeMode>,
    needs: Result<KernelNeeds, BtfError>,
    kernel: FakeAttacher,
) -> Result<(Decision, Option<FakeAttacher>), ProbeError> {
    choose(only, needs, |_| Ok(kernel)).map(|c| (c.decision, c.attacher))
}

fn hook<'a>(decision: &'a Decision, kind: &str, target: &str) -> &'a HookReport {
    decision
        .hooks
        .iter()
        .find(|h| h.kind.to_string() == kind && h.hook == target)
        .unwrap_or_else(|| panic!("no {kind} {target} in {:#?}", decision.hooks))
}

const TRACEPOINT_FAMILY: [&str; 3] = ["memcg_events", "memcg_lruvec_state", "memcg_state"];
const TASK_HOOKS: [&str; 5] = [
    "memcg_reclaim_begin",
    "memcg_reclaim_end",
    "oom_mark_victim",
    "process_exit",
    "signal_generate",
];

fn attached_set(extra: &[&'static str]) -> Vec<&'static str> {
    let set: BTreeSet<&'static str> = extra.iter().chain(TASK_HOOKS.iter()).copied().collect();
    set.into_iter().collect()
}

#[test]
fn the_cheapest_family_wins_and_the_others_are_never_tried() {
    let (decision, kernel) = run(None, Ok(needs()), FakeAttacher::new()).expect("a choice");
    let kernel = kernel.expect("programs loaded");
    assert_eq!(decision.mode, ChargeMode::Tracepoint);
    assert_eq!(
        decision.mode_reason,
        "raw tracepoint memcg:mod_memcg_lruvec_state attached"
    );
    assert_eq!(kernel.attached(), attached_set(&TRACEPOINT_FAMILY));
    assert!(
        kernel
            .calls
            .iter()
            .all(|c| !c.contains("fentry") && !c.contains("kprobe")),
        "{:?}",
        kernel.calls
    );
    let skipped = hook(&decision, "fentry", "__mod_memcg_state");
    assert_eq!(skipped.status, HookStatus::Skipped);
    assert_eq!(
        skipped.detail.as_deref(),
        Some("tracepoint mode in use (cheaper)")
    );
    assert_eq!(decision.oom_source, OomSource::MarkVictim);
    assert_eq!(decision.hooks.len(), HOOKS.len(), "every hook is reported");
}

#[test]
fn fentry_main_hook_fails_its_siblings_are_detached_and_kprobe_is_chosen() {
    let kernel = FakeAttacher::new()
        .without_memcg_tracepoints()
        .refusing_load("fentry_memcg_lruvec_state");
    let (decision, kernel) = run(None, Ok(needs()), kernel).expect("a choice");
    let kernel = kernel.expect("programs loaded");
    assert_eq!(decision.mode, ChargeMode::Kprobe);
    // The siblings attached, then left with their family.
    for sibling in ["fentry_memcg_state", "fentry_memcg_events"] {
        let attach = kernel
            .calls
            .iter()
            .position(|c| c.starts_with(&format!("attach {sibling} ")));
        let detach = kernel
            .calls
            .iter()
            .position(|c| c == &format!("detach {sibling}"));
        assert!(
            matches!((attach, detach), (Some(a), Some(d)) if a < d),
            "{sibling}: {:?}",
            kernel.calls
        );
    }
    // Never two families at once: only kprobes (and the task hooks) stay.
    assert_eq!(
        kernel.attached(),
        attached_set(&[
            "kprobe_memcg_events",
            "kprobe_memcg_lruvec_state",
            "kprobe_memcg_state"
        ])
    );
    let sibling = hook(&decision, "fentry", "__mod_memcg_state");
    assert_eq!(sibling.status, HookStatus::Failed);
    assert_eq!(
        sibling.detail.as_deref(),
        Some("attached, then detached: fentry __mod_memcg_lruvec_state failed")
    );
    let primary = hook(&decision, "fentry", "__mod_memcg_lruvec_state");
    assert_eq!(primary.status, HookStatus::Failed);
    let why = primary.detail.as_deref().unwrap_or_default();
    assert!(why.starts_with("load: "), "{why}");
    assert!(
        why.contains("Operation not permitted"),
        "the kernel's reason: {why}"
    );
    // Why the cheaper modes were not taken, each with the kernel's reason.
    assert!(
        decision
            .mode_reason
            .starts_with("kprobe __mod_memcg_lruvec_state attached; not tracepoint: raw tracepoint memcg:mod_memcg_lruvec_state: attach"),
        "{}",
        decision.mode_reason
    );
    assert!(
        decision.mode_reason.contains(
            "; fentry: fentry __mod_memcg_lruvec_state: load: `bpf_prog_load` failed: Operation not permitted"
        ),
        "{}",
        decision.mode_reason
    );
}

#[test]
fn a_forced_mode_that_cannot_load_names_the_kernels_reason() {
    let kernel = FakeAttacher::new().refusing_load("fentry_memcg_lruvec_state");
    let error = match run(Some(ChargeMode::Fentry), Ok(needs()), kernel) {
        Err(e) => e,
        Ok((decision, _)) => panic!("--mode fentry chose {}", decision.mode),
    };
    assert!(matches!(
        error,
        ProbeError::ModeUnavailable {
            mode: ChargeMode::Fentry,
            reason: Unavailable::Hook {
                source: AttachError::Load(_),
                ..
            }
        }
    ));
    let message = error_chain(&error);
    assert!(
        message.starts_with("--mode fentry is not available on this kernel"),
        "{message}"
    );
    assert!(
        message.ends_with(
            ": fentry __mod_memcg_lruvec_state did not attach: load: `bpf_prog_load` failed: \
             Operation not permitted (os error 1)"
        ),
        "{message}"
    );
}

#[test]
fn a_forced_mode_tries_its_family_only() {
    let (decision, kernel) =
        run(Some(ChargeMode::Kprobe), Ok(needs()), FakeAttacher::new()).expect("a choice");
    let kernel = kernel.expect("programs loaded");
    assert_eq!(decision.mode, ChargeMode::Kprobe);
    assert!(
        kernel
            .calls
            .iter()
            .all(|c| !c.contains("attach memcg_lruvec") && !c.contains("fentry")),
        "{:?}",
        kernel.calls
    );
    assert_eq!(
        hook(&decision, "raw_tracepoint", "mod_memcg_state")
            .detail
            .as_deref(),
        Some("--mode kprobe")
    );
}

#[test]
fn a_function_with_another_prototype_fails_its_family_without_a_load() {
    let mut needs = needs();
    for (i, hook) in HOOKS.iter().enumerate() {
        if hook.program == "fentry_memcg_lruvec_state"
            || hook.program == "kprobe_memcg_lruvec_state"
        {
            needs.targets[i] = Err(TargetError::Prototype {
                seen: "__mod_memcg_lruvec_state(struct mem_cgroup *, int, int)".into(),
                expected: "struct lruvec *".into(),
            });
        }
    }
    let kernel = FakeAttacher::new().without_memcg_tracepoints();
    let (decision, kernel) = run(None, Ok(needs), kernel).expect("a choice");
    let kernel = kernel.expect("programs loaded");
    assert_eq!(decision.mode, ChargeMode::Polling);
    assert!(
        kernel.calls.iter().all(|c| !c.contains("lruvec_state __")),
        "a function of the wrong shape is never attached: {:?}",
        kernel.calls
    );
    assert_eq!(kernel.attached(), attached_set(&[]), "no half family stays");
    assert!(
        decision
            .mode_reason
            .starts_with("no charge-path hook attached (tracepoint: "),
        "{}",
        decision.mode_reason
    );
    assert!(decision
        .mode_reason
        .contains("but not with a first parameter `struct lruvec *`"));
}

#[test]
fn no_btf_means_polling_and_nothing_is_loaded() {
    let choice = choose(
        None,
        Err(missing("everything")),
        |_| -> Result<FakeAttacher, _> { panic!("nothing may be loaded without BTF") },
    );
    let choice = match choice {
        Ok(choice) => choice,
        Err(e) => panic!("no BTF is no error: {e}"),
    };
    assert!(choice.attacher.is_none());
    let decision = choice.decision;
    assert_eq!(decision.mode, ChargeMode::Polling);
    assert_eq!(decision.oom_source, OomSource::Kmsg);
    assert!(decision
        .mode_reason
        .starts_with("no usable BTF, so no program can find its way in kernel structures: "));
    assert!(decision
        .hooks
        .iter()
        .all(|h| h.status == HookStatus::Skipped && h.detail.as_deref() == Some("no BTF")));

    let error = match choose(
        Some(ChargeMode::Tracepoint),
        Err(missing("everything")),
        |_| Ok(FakeAttacher::new()),
    ) {
        Err(e) => e,
        Ok(_) => panic!("--mode tracepoint without BTF"),
    };
    assert!(matches!(
        error,
        ProbeError::ModeUnavailable {
            reason: Unavailable::NoBtf(_),
            ..
        }
    ));
    assert!(error_chain(&error).contains("no enum named `everything`"));
}

#[test]
fn polling_asked_for_loads_nothing() {
    let choice = choose(
        Some(ChargeMode::Polling),
        Ok(needs()),
        |_| -> Result<FakeAttacher, _> { panic!("--mode polling loads nothing") },
    );
    let decision = match choice {
        Ok(choice) => choice.decision,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(decision, polling_requested());
    assert_eq!(decision.mode_reason, "asked for with --mode polling");
}

#[test]
fn a_charge_layout_missing_from_btf_leaves_the_oom_hook() {
    let mut broken = needs();
    broken.charge = Err(missing("node_stat_item"));
    let (decision, kernel) = run(None, Ok(broken), FakeAttacher::new()).expect("a choice");
    let kernel = kernel.expect("programs loaded");
    assert_eq!(decision.mode, ChargeMode::Polling);
    assert!(decision
        .mode_reason
        .starts_with("no charge-path hook can be used (BTF: "));
    // Reclaim reads the memcg too; the victim program does not.
    assert_eq!(kernel.attached(), vec!["oom_mark_victim"]);
    assert_eq!(decision.oom_source, OomSource::MarkVictim);

    let mut broken = needs();
    broken.charge = Err(missing("node_stat_item"));
    let error = match choose(
        Some(ChargeMode::Fentry),
        Ok(broken),
        |_| -> Result<FakeAttacher, _> { panic!("a mode that cannot work loads nothing") },
    ) {
        Err(e) => e,
        Ok(_) => panic!("--mode fentry without its layout"),
    };
    assert!(error_chain(&error).ends_with(
        "no charge-path hook can be used: kernel BTF has no enum named `node_stat_item`: this \
         kernel version does not define it, so the feature that needs it is unavailable"
    ));
}

#[test]
fn without_the_victim_tracepoint_kills_come_from_the_kernel_log() {
    let mut old = needs();
    old.victim = Err(BtfError::Unsupported(
        "mark_victim takes (int), not the task (kernels before 6.8)".into(),
    ));
    let (decision, kernel) = run(None, Ok(old), FakeAttacher::new()).expect("a choice");
    assert_eq!(decision.oom_source, OomSource::Kmsg);
    assert_eq!(
        decision.oom_reason,
        "oom:mark_victim unusable (BTF: mark_victim takes (int), not the task (kernels before \
         6.8)); reading the kernel log"
    );
    assert!(!kernel
        .expect("loaded")
        .attached()
        .contains(&"oom_mark_victim"));
}

#[test]
fn a_kernel_without_the_death_fields_keeps_the_other_hooks() {
    let mut old = needs();
    old.deaths = Err(BtfError::MemberMissing {
        struct_name: "signal_struct".into(),
        member: "live".into(),
        container: "signal_struct".into(),
    });
    let (decision, kernel) = run(None, Ok(old), FakeAttacher::new()).expect("a choice");
    let kernel = kernel.expect("loaded");
    assert!(!decision.deaths);
    assert!(
        decision.deaths_reason.contains("live"),
        "{}",
        decision.deaths_reason
    );
    assert_eq!(
        hook(&decision, "raw_tracepoint", "sched_process_exit").status,
        HookStatus::Skipped
    );
    assert!(kernel.attached().contains(&"oom_mark_victim"));
    assert!(!kernel.attached().contains(&"process_exit"));
    assert_eq!(decision.mode, ChargeMode::Tracepoint);

    let (decision, _) = run(None, Ok(needs()), FakeAttacher::new()).expect("a choice");
    assert!(decision.deaths, "{}", decision.deaths_reason);
}
