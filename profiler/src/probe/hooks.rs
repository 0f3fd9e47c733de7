//! The hook table: every program the profiler can attach, where it attaches on which kernels,
//! and what it is for. Pure data, and the resolution of each hook's target in the kernel's BTF.
use std::fmt;

use serde::Serialize;

use super::TargetError;
use crate::{btf::KernelBtf, mode::ChargeMode};

/// How a program is attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum HookKind {
    /// A raw tracepoint of the target's name.
    RawTracepoint,
    /// fentry on the kernel function of the target's name (needs its BTF).
    Fentry,
    /// A kprobe on the kernel function of the target's name.
    Kprobe,
}

impl fmt::Display for HookKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HookKind::RawTracepoint => "raw_tracepoint",
            HookKind::Fentry => "fentry",
            HookKind::Kprobe => "kprobe",
        })
    }
}

/// What a hook is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HookRole {
    /// The charge path, in one of the modes; `primary` decides whether the mode works (it sees
    /// anon and file charges).
    Charge {
        /// The mode whose family the hook belongs to.
        mode: ChargeMode,
        /// Whether the family stands or falls with this hook.
        primary: bool,
    },
    /// Memcg reclaim passes and their stall time.
    Reclaim,
    /// The OOM killer's victims.
    Oom,
    /// How watched processes end, and who sent them SIGKILL or SIGTERM.
    Death,
}

/// A hook the profiler can use: program name in the object, and where it attaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Hook {
    /// The program's name in the object.
    pub(crate) program: &'static str,
    /// The tracepoint, or the kernel function's names across kernels, preferred first (6.18
    /// dropped the `__` of `__mod_memcg_state` and its siblings; older kernels also have an
    /// out-of-line copy of the irq-saving wrapper under the plain name, which must not be
    /// hooked beside the real one).
    pub(crate) targets: &'static [&'static str],
    /// What the function's first parameter must be (`struct lruvec *`, ...), any of these;
    /// empty for tracepoints.
    pub(crate) first_param: &'static [&'static str],
    /// How it attaches.
    pub(crate) kind: HookKind,
    /// What it is for.
    pub(crate) role: HookRole,
}

const fn charge(
    program: &'static str,
    targets: &'static [&'static str],
    first_param: &'static [&'static str],
    kind: HookKind,
    mode: ChargeMode,
    primary: bool,
) -> Hook {
    Hook {
        program,
        targets,
        first_param,
        kind,
        role: HookRole::Charge { mode, primary },
    }
}

const fn tracepoint(
    program: &'static str,
    targets: &'static [&'static str],
    role: HookRole,
) -> Hook {
    Hook {
        program,
        targets,
        first_param: &[],
        kind: HookKind::RawTracepoint,
        role,
    }
}

/// The lruvec hook's functions (shared with the layout, which reads their first parameter).
pub(crate) const LRUVEC_STATE: &[&str] = &["__mod_memcg_lruvec_state", "mod_memcg_lruvec_state"];
const MEMCG_STATE: &[&str] = &["__mod_memcg_state", "mod_memcg_state"];
const MEMCG_EVENTS: &[&str] = &["__count_memcg_events", "count_memcg_events"];
/// `__mod_memcg_lruvec_state`'s first parameter: the lruvec until 7.1, the memcg's per-node
/// struct that holds it from 7.2 on (the layout then reads the memcg from the argument itself,
/// [`charge_layout`](crate::btf::layout::charge_layout)).
const LRUVEC: &[&str] = &["struct lruvec *", "struct mem_cgroup_per_node *"];
const MEMCG: &[&str] = &["struct mem_cgroup *"];

/// The charge-path modes that load programs, cheapest first: the order they are tried in.
pub(crate) const CHARGE_MODES: [ChargeMode; 3] = [
    ChargeMode::Tracepoint,
    ChargeMode::Fentry,
    ChargeMode::Kprobe,
];

/// Every hook, charge-path families in the order of [`CHARGE_MODES`], each family's primary
/// hook first.
pub(crate) const HOOKS: [Hook; 14] = [
    charge(
        "memcg_lruvec_state",
        &["mod_memcg_lruvec_state"],
        MEMCG,
        HookKind::RawTracepoint,
        ChargeMode::Tracepoint,
        true,
    ),
    charge(
        "memcg_state",
        &["mod_memcg_state"],
        MEMCG,
        HookKind::RawTracepoint,
        ChargeMode::Tracepoint,
        false,
    ),
    charge(
        "memcg_events",
        &["count_memcg_events"],
        MEMCG,
        HookKind::RawTracepoint,
        ChargeMode::Tracepoint,
        false,
    ),
    charge(
        "fentry_memcg_lruvec_state",
        LRUVEC_STATE,
        LRUVEC,
        HookKind::Fentry,
        ChargeMode::Fentry,
        true,
    ),
    charge(
        "fentry_memcg_state",
        MEMCG_STATE,
        MEMCG,
        HookKind::Fentry,
        ChargeMode::Fentry,
        false,
    ),
    charge(
        "fentry_memcg_events",
        MEMCG_EVENTS,
        MEMCG,
        HookKind::Fentry,
        ChargeMode::Fentry,
        false,
    ),
    charge(
        "kprobe_memcg_lruvec_state",
        LRUVEC_STATE,
        LRUVEC,
        HookKind::Kprobe,
        ChargeMode::Kprobe,
        true,
    ),
    charge(
        "kprobe_memcg_state",
        MEMCG_STATE,
        MEMCG,
        HookKind::Kprobe,
        ChargeMode::Kprobe,
        false,
    ),
    charge(
        "kprobe_memcg_events",
        MEMCG_EVENTS,
        MEMCG,
        HookKind::Kprobe,
        ChargeMode::Kprobe,
        false,
    ),
    tracepoint(
        "memcg_reclaim_begin",
        &["mm_vmscan_memcg_reclaim_begin"],
        HookRole::Reclaim,
    ),
    tracepoint(
        "memcg_reclaim_end",
        &["mm_vmscan_memcg_reclaim_end"],
        HookRole::Reclaim,
    ),
    tracepoint("oom_mark_victim", &["mark_victim"], HookRole::Oom),
    tracepoint("process_exit", &["sched_process_exit"], HookRole::Death),
    tracepoint("signal_generate", &["signal_generate"], HookRole::Death),
];

impl Hook {
    /// Whether the hook belongs to the charge-path family of `mode`.
    pub(crate) fn is_in_family(&self, mode: ChargeMode) -> bool {
        matches!(self.role, HookRole::Charge { mode: m, .. } if m == mode)
    }

    /// Whether the hook decides whether its charge-path family works.
    pub(crate) fn is_primary(&self) -> bool {
        matches!(self.role, HookRole::Charge { primary: true, .. })
    }

    /// The name a report gives the hook before its target is resolved.
    pub(crate) fn default_target(&self) -> &'static str {
        self.targets.first().copied().unwrap_or(self.program)
    }

    /// `raw tracepoint memcg:mod_memcg_lruvec_state`, `fentry __mod_memcg_lruvec_state`, ...
    pub(crate) fn describe(&self, target: &str) -> String {
        match self.kind {
            HookKind::RawTracepoint => format!("raw tracepoint memcg:{target}"),
            HookKind::Fentry => format!("fentry {target}"),
            HookKind::Kprobe => format!("kprobe {target}"),
        }
    }

    /// The name to attach the hook to on this kernel: a tracepoint's own name, or the first of
    /// a function's names that the kernel's BTF has with the expected first parameter.
    pub(crate) fn resolve_target(&self, btf: &KernelBtf) -> Result<&'static str, TargetError> {
        if self.kind == HookKind::RawTracepoint {
            return Ok(self.default_target());
        }
        let mut seen = Vec::new();
        for &name in self.targets {
            match btf.function_params(name) {
                Ok(Some(params))
                    if params
                        .first()
                        .is_some_and(|p| self.first_param.contains(&p.as_str())) =>
                {
                    return Ok(name)
                }
                Ok(Some(params)) => seen.push(format!("{name}({})", params.join(", "))),
                Ok(None) => {}
                Err(e) => seen.push(format!("{name}: {}", crate::errors::chain(&e))),
            }
        }
        Err(if seen.is_empty() {
            TargetError::NoFunction(self.targets.join(" or "))
        } else {
            TargetError::Prototype {
                seen: seen.join(", "),
                expected: self.first_param.join("` or `"),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_are_whole_and_in_cost_order() {
        let mut next = 0;
        for mode in CHARGE_MODES {
            let family: Vec<(usize, &Hook)> = HOOKS
                .iter()
                .enumerate()
                .filter(|(_, h)| h.is_in_family(mode))
                .collect();
            assert_eq!(family.len(), 3, "{mode}: three hooks");
            assert!(family[0].1.is_primary(), "{mode}: primary first");
            assert_eq!(family.iter().filter(|(_, h)| h.is_primary()).count(), 1);
            assert!(
                family.iter().all(|(i, _)| *i >= next),
                "{mode} after cheaper"
            );
            next = family[2].0;
        }
        let programs: std::collections::HashSet<&str> = HOOKS.iter().map(|h| h.program).collect();
        assert_eq!(programs.len(), HOOKS.len(), "one program per hook");
    }
}
