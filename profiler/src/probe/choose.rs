//! The mode choice: which hooks to attach, in which order, and what to conclude from what the
//! kernel accepted. Decided over an [`Attacher`], so every rule is tested without a kernel
//! (`choose/tests.rs`, with a fake attacher):
//!
//! - charge-path families are tried cheapest first (raw tracepoints, fentry, kprobes); the
//!   first whose primary hook attaches is the mode;
//! - never two families at once: once one is chosen, the others are skipped (they would count
//!   every update twice);
//! - a family whose primary hook fails is detached whole: without it, it sees no anon or file
//!   charge, and a half family beside the next one would count some updates twice;
//! - `--mode` tries one family only, and when it cannot work the error says why, down to the
//!   kernel's reason;
//! - without BTF no program can find its way in kernel structures: polling, with the kernel
//!   log for OOM kills.
use profiler_common::{ChargeLayout, TaskLayout};

use super::{
    hooks::{Hook, HookRole, CHARGE_MODES, HOOKS},
    report::{Decision, HookReport, HookStatus},
    AttachError, Attacher, ProbeError, TargetError, Unavailable,
};
use crate::{
    btf::{self, BtfError, KernelBtf},
    errors::chain as error_chain,
    mode::{ChargeMode, OomSource},
};

/// What the kernel's BTF says the programs can use, resolved once before anything is loaded.
#[derive(Debug)]
pub(crate) struct KernelNeeds {
    /// The charge-path programs' layout, or why it cannot be had.
    pub(crate) charge: Result<ChargeLayout, BtfError>,
    /// The task-based programs' layout (reclaim, OOM victim), or why not.
    pub(crate) task: Result<TaskLayout, BtfError>,
    /// Whether the OOM-victim tracepoint hands over the task.
    pub(crate) victim: Result<(), BtfError>,
    /// Whether the death programs' fields are there (already put into `task`).
    pub(crate) deaths: Result<(), BtfError>,
    /// Each hook's target on this kernel, in the order of [`HOOKS`].
    pub(crate) targets: Vec<Result<&'static str, TargetError>>,
}

impl KernelNeeds {
    /// Resolves everything from the kernel's BTF.
    pub(crate) fn resolve(btf: &KernelBtf) -> Self {
        let mut task = btf::task_layout(btf);
        let deaths = btf::death_fields(btf).map(|fields| {
            if let Ok(task) = task.as_mut() {
                fields.apply(task);
            }
        });
        Self {
            charge: btf::charge_layout(btf),
            task,
            victim: btf::mark_victim_takes_the_task(btf),
            deaths,
            targets: HOOKS.iter().map(|h| h.resolve_target(btf)).collect(),
        }
    }

    /// The layouts to load the programs with: what resolved, and for the rest a layout that
    /// keeps its programs quiet (they are not attached anyway).
    pub(crate) fn layouts(&self) -> (ChargeLayout, TaskLayout) {
        (
            *self.charge.as_ref().unwrap_or(&ChargeLayout::UNRESOLVED),
            *self.task.as_ref().unwrap_or(&TaskLayout::UNRESOLVED),
        )
    }

    fn target(&self, index: usize) -> Result<&'static str, TargetError> {
        self.targets
            .get(index)
            .cloned()
            .unwrap_or_else(|| Err(TargetError::NoFunction(HOOKS[index].targets.join(" or "))))
    }
}

/// A decision, and the attacher holding what it attached (none when nothing was loaded).
pub(crate) struct Choice<A> {
    /// What was chosen, and why.
    pub(crate) decision: Decision,
    /// Holds the attached programs.
    pub(crate) attacher: Option<A>,
    /// The charge-path hooks that attached, with their targets: what switching the charge
    /// path off and on again detaches and attaches.
    pub(crate) charge: Vec<(&'static Hook, &'static str)>,
}

/// The decision when `--mode polling` was asked for: nothing is loaded.
pub(crate) fn polling_requested() -> Decision {
    Decision {
        hooks: skipped_all("--mode polling"),
        mode: ChargeMode::Polling,
        mode_reason: "asked for with --mode polling".into(),
        oom_source: OomSource::Kmsg,
        oom_reason: "polling mode: no kernel programs".into(),
        deaths: false,
        deaths_reason: "polling mode: no kernel programs".into(),
    }
}

/// Chooses the mode and attaches its hooks, following `only` (`--mode`; `None` for auto).
///
/// `needs` is what the kernel's BTF gave, or why there is none; `load` loads the programs
/// (called only when some program may be attached). Errors only when the one mode asked for
/// cannot work, or when loading fails as a whole.
pub(crate) fn choose<A: Attacher>(
    only: Option<ChargeMode>,
    needs: Result<KernelNeeds, BtfError>,
    load: impl FnOnce(&KernelNeeds) -> Result<A, ProbeError>,
) -> Result<Choice<A>, ProbeError> {
    if only == Some(ChargeMode::Polling) {
        return Ok(Choice {
            decision: polling_requested(),
            attacher: None,
            charge: Vec::new(),
        });
    }
    let needs = match needs {
        Ok(needs) => needs,
        Err(e) => {
            let reason = Unavailable::NoBtf(e);
            if let Some(mode) = only {
                return Err(ProbeError::ModeUnavailable { mode, reason });
            }
            let text = error_chain(&reason);
            return Ok(Choice {
                decision: Decision {
                    hooks: skipped_all("no BTF"),
                    mode: ChargeMode::Polling,
                    mode_reason: text.clone(),
                    oom_source: OomSource::Kmsg,
                    oom_reason: text.clone(),
                    deaths: false,
                    deaths_reason: text,
                },
                attacher: None,
                charge: Vec::new(),
            });
        }
    };
    // The mode asked for cannot work without its layout: nothing to load.
    let needs = match (only, needs) {
        (Some(mode), KernelNeeds { charge: Err(e), .. }) => {
            return Err(ProbeError::ModeUnavailable {
                mode,
                reason: Unavailable::ChargeLayout(e),
            })
        }
        (_, needs) => needs,
    };
    let mut attacher = load(&needs)?;
    let mut hooks = Vec::with_capacity(HOOKS.len());
    let mut charge = Vec::new();
    let (mode, mode_reason) = charge_path(only, &needs, &mut attacher, &mut hooks, &mut charge)?;
    let outcomes = task_hooks(&needs, &mut attacher, &mut hooks);
    let (oom_source, oom_reason) = match outcomes.oom {
        Ok(()) => (
            OomSource::MarkVictim,
            "raw tracepoint oom:mark_victim attached".to_string(),
        ),
        Err(why) => (
            OomSource::Kmsg,
            format!("oom:mark_victim unusable ({why}); reading the kernel log"),
        ),
    };
    let (deaths, deaths_reason) = match outcomes.deaths {
        Ok(()) => (
            true,
            "raw tracepoints sched:sched_process_exit and signal:signal_generate attached"
                .to_string(),
        ),
        Err(why) => (
            false,
            format!(
                "process exits and signals unseen ({why}): deaths are told from OOM kills only"
            ),
        ),
    };
    Ok(Choice {
        decision: Decision {
            hooks,
            mode,
            mode_reason,
            oom_source,
            oom_reason,
            deaths,
            deaths_reason,
        },
        attacher: Some(attacher),
        charge,
    })
}

/// The charge path: one family, the cheapest that works. Returns the mode and why; fails only
/// when the mode asked for (`only`) does not attach.
fn charge_path<A: Attacher>(
    only: Option<ChargeMode>,
    needs: &KernelNeeds,
    attacher: &mut A,
    hooks: &mut Vec<HookReport>,
    charge: &mut Vec<(&'static Hook, &'static str)>,
) -> Result<(ChargeMode, String), ProbeError> {
    let layout_error = needs
        .charge
        .as_ref()
        .err()
        .map(|e| format!("BTF: {}", error_chain(e)));
    let mut chosen: Option<(ChargeMode, String)> = None;
    let mut why_not: Vec<String> = Vec::new();
    for mode in CHARGE_MODES {
        let family: Vec<usize> = (0..HOOKS.len())
            .filter(|&i| HOOKS[i].is_in_family(mode))
            .collect();
        let skip = match (&chosen, only) {
            (Some((done, _)), _) => Some(format!("{done} mode in use (cheaper)")),
            (None, Some(asked)) if asked != mode => Some(format!("--mode {asked}")),
            _ => layout_error.clone(),
        };
        if let Some(why) = skip {
            for &i in &family {
                let target = needs.target(i).unwrap_or(HOOKS[i].default_target());
                hooks.push(HookReport::new(
                    &HOOKS[i],
                    target,
                    HookStatus::Skipped,
                    Some(why.clone()),
                ));
            }
            continue;
        }
        match attach_family(&family, needs, attacher, hooks) {
            Ok((primary, attached)) => {
                chosen = Some((mode, primary));
                *charge = attached;
            }
            Err((primary, error)) => {
                why_not.push(format!("{mode}: {primary}: {}", error_chain(&error)));
                if only == Some(mode) {
                    return Err(ProbeError::ModeUnavailable {
                        mode,
                        reason: Unavailable::Hook {
                            hook: primary,
                            source: error,
                        },
                    });
                }
            }
        }
    }
    Ok(match (chosen, &layout_error) {
        (Some((mode, primary)), _) if why_not.is_empty() => (mode, format!("{primary} attached")),
        (Some((mode, primary)), _) => (
            mode,
            format!("{primary} attached; not {}", why_not.join("; ")),
        ),
        (None, Some(e)) => (
            ChargeMode::Polling,
            format!("no charge-path hook can be used ({e}); reading cgroup files every interval"),
        ),
        (None, None) => (
            ChargeMode::Polling,
            format!(
                "no charge-path hook attached ({}); reading cgroup files every interval",
                why_not.join("; ")
            ),
        ),
    })
}

/// Attaches one family (the hooks of [`HOOKS`] at `family`). Returns the primary hook's
/// description; when the primary fails, detaches what did attach and returns the primary's
/// description with its error.
#[allow(
    clippy::type_complexity,
    reason = "the attached hooks with their targets, or the primary's name and error"
)]
fn attach_family<A: Attacher>(
    family: &[usize],
    needs: &KernelNeeds,
    attacher: &mut A,
    hooks: &mut Vec<HookReport>,
) -> Result<(String, Vec<(&'static Hook, &'static str)>), (String, AttachError)> {
    let mut tried: Vec<(&'static Hook, &'static str, Result<(), AttachError>)> = Vec::new();
    for &i in family {
        let hook = &HOOKS[i];
        tried.push(match needs.target(i) {
            Ok(target) => (hook, target, attacher.attach(hook, target)),
            Err(e) => (hook, hook.default_target(), Err(e.into())),
        });
    }
    let Some(at) = tried.iter().position(|(hook, _, _)| hook.is_primary()) else {
        return Err((
            "the family".into(),
            TargetError::NoFunction("primary hook (none in the hook table)".into()).into(),
        ));
    };
    let (primary, primary_target, primary_outcome) = tried.remove(at);
    let primary_name = primary.describe(primary_target);
    let primary_error = primary_outcome.err();
    let primary_failed = primary_error.is_some();
    let mut attached = Vec::new();
    if !primary_failed {
        attached.push((primary, primary_target));
    }
    hooks.push(HookReport::new(
        primary,
        primary_target,
        if primary_failed {
            HookStatus::Failed
        } else {
            HookStatus::Attached
        },
        primary_error.as_ref().map(|e| error_chain(e)),
    ));
    for (hook, target, outcome) in tried {
        let (status, detail) = match outcome {
            Ok(()) if primary_failed => {
                attacher.detach(hook);
                (
                    HookStatus::Failed,
                    Some(format!("attached, then detached: {primary_name} failed")),
                )
            }
            Ok(()) => {
                attached.push((hook, target));
                (HookStatus::Attached, None)
            }
            Err(e) => (HookStatus::Failed, Some(error_chain(&e))),
        };
        hooks.push(HookReport::new(hook, target, status, detail));
    }
    match primary_error {
        None => Ok((primary_name, attached)),
        Some(e) => Err((primary_name, e)),
    }
}

/// What became of the hooks that read tasks.
struct TaskHookOutcomes {
    /// Whether `mark_victim` attached, or why not.
    oom: Result<(), String>,
    /// Whether both death hooks attached, or why not.
    deaths: Result<(), String>,
}

/// The reclaim, OOM-victim and death hooks.
fn task_hooks<A: Attacher>(
    needs: &KernelNeeds,
    attacher: &mut A,
    hooks: &mut Vec<HookReport>,
) -> TaskHookOutcomes {
    let mut outcomes = TaskHookOutcomes {
        oom: Err("not tried".to_string()),
        deaths: Ok(()),
    };
    for hook in HOOKS
        .iter()
        .filter(|h| !matches!(h.role, HookRole::Charge { .. }))
    {
        let blocker = match hook.role {
            // Reclaim needs the memcg offsets and the task's css_set, not the victim tracepoint.
            HookRole::Reclaim => needs.charge.as_ref().err().or(needs.task.as_ref().err()),
            HookRole::Oom => needs.task.as_ref().err().or(needs.victim.as_ref().err()),
            // The death programs find the watched slot as reclaim does.
            HookRole::Death => needs
                .charge
                .as_ref()
                .err()
                .or(needs.task.as_ref().err())
                .or(needs.deaths.as_ref().err()),
            HookRole::Charge { .. } => None,
        };
        let target = hook.default_target();
        let outcome = match blocker {
            Some(e) => Err((HookStatus::Skipped, format!("BTF: {}", error_chain(e)))),
            None => attacher
                .attach(hook, target)
                .map_err(|e| (HookStatus::Failed, error_chain(&e))),
        };
        let why = outcome.as_ref().map_err(|(_, why)| why.clone()).copied();
        match hook.role {
            HookRole::Oom => outcomes.oom = why,
            HookRole::Death => {
                if let (Ok(()), Err(why)) = (&outcomes.deaths, why) {
                    outcomes.deaths = Err(format!("{target}: {why}"));
                }
            }
            _ => {}
        }
        hooks.push(match outcome {
            Ok(()) => HookReport::new(hook, target, HookStatus::Attached, None),
            Err((status, why)) => HookReport::new(hook, target, status, Some(why)),
        });
    }
    outcomes
}

/// Every hook skipped, for the same reason.
fn skipped_all(why: &str) -> Vec<HookReport> {
    HOOKS
        .iter()
        .map(|h| HookReport::new(h, h.default_target(), HookStatus::Skipped, Some(why.into())))
        .collect()
}

#[cfg(test)]
mod tests;
