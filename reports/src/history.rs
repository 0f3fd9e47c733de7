//! A container's timeline reduced to what the recommendation is made from: its samples, its
//! kills and the limit then, its lives before the kills, its runtimes' bound and their risks.
use crate::growth::{diagnose, Diagnosis, KillAt, Reading};
use crate::recommend::History;
use crate::timeline::{Container, Kill};

/// The history the recommendation is made from.
pub fn history(container: &Container) -> History {
    let last_kill = container.kills.last();
    History {
        working_set: container.points.iter().map(|p| p.working_set).collect(),
        unreclaimable: container
            .points
            .iter()
            .filter_map(|p| p.unreclaimable)
            .collect(),
        kills: container.kills.len() as u64,
        limit_at_kill: last_kill.and_then(|kill| {
            kill.event.limit_bytes.or_else(|| {
                // Else the limit of the last sample before it.
                container
                    .points
                    .iter()
                    .rev()
                    .find(|p| p.t <= kill.t)
                    .and_then(|p| p.limit)
            })
        }),
        limit_now: container.points.last().and_then(|p| p.limit),
        reach: container.points.iter().map(|p| p.reach).collect(),
        growth: growth(container),
        risks: container.risks.iter().map(|r| r.risk.clone()).collect(),
    }
}

/// Whether the container's own limit caused `kill`: a node OOM (or a cpuset's, a memory
/// policy's) says nothing about the limit. Kills from before the constraint was read count.
fn by_limit(kill: &Kill) -> bool {
    kill.event
        .constraint
        .as_deref()
        .is_none_or(|constraint| constraint == "memcg")
}

/// The samples and kills the leak-or-undersized diagnosis reads.
pub fn growth_inputs(container: &Container) -> (Vec<Reading>, Vec<KillAt>) {
    let readings = container
        .points
        .iter()
        .filter_map(|p| {
            Some(Reading {
                t: p.t,
                unreclaimable: p.unreclaimable?,
                limit: p.limit,
                restarts: p.restarts,
            })
        })
        .collect();
    let kills = container
        .kills
        .iter()
        .map(|k| KillAt {
            t: k.t,
            by_limit: by_limit(k),
        })
        .collect();
    (readings, kills)
}

/// Leak, undersized or neither; `None` without a kill.
fn growth(container: &Container) -> Option<Diagnosis> {
    if container.kills.is_empty() {
        return None;
    }
    if container.points.iter().all(|p| p.unreclaimable.is_none()) {
        return Some(Diagnosis::Neither {
            reason: "the recording has no unreclaimable memory (it is older than the forecast): \
                     a leak and an undersized limit are not told apart"
                .into(),
            steady_rate: None,
        });
    }
    let (readings, kills) = growth_inputs(container);
    Some(diagnose(&readings, &kills))
}
