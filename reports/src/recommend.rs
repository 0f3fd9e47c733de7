//! Memory request and limit recommendations, with the reasoning shown.
//!
//! The request covers what the container usually needs (the 95th percentile of its working
//! set); the limit covers what it needs at worst (the largest of its peak working set and its
//! 99th-percentile unreclaimable memory) plus a margin. After an OOM kill the observed peak is
//! a floor, not the need (the kill cut it short), so the limit is bumped from the limit that
//! applied, by a bounded factor: repeated kills cannot run the figure away. With too little
//! history, the answer says so instead of guessing.
//!
//! Managed runtimes change that advice. A heap ceiling above the limit is fixed in the
//! runtime's setting first (no limit figure is right while the heap may outgrow it), and a
//! limit kept instead must hold the ceiling and what the process holds beside its heap. Where
//! the ceilings bound the container, the limit needs no more than that bound and its margin.
//! And a leak is no undersized limit: when every life grew steadily to its kill, the advice
//! leads with that, and says how long a higher limit only postpones the kill ([`growth`]).
//!
//! [`growth`]: crate::growth
use crate::growth::{duration_text, rate_text, Diagnosis};
use crate::recording::{ConfigRisk, RiskKind};

/// Samples needed before recommending anything.
pub const MIN_SAMPLES: usize = 60;
/// Margin on top of the observed need for the limit, percent.
pub const LIMIT_MARGIN_PCT: u64 = 20;
/// Margin on top of the observed need for the request, percent.
pub const REQUEST_MARGIN_PCT: u64 = 10;
/// After a kill: the new limit is at least the old one times this (percent)...
pub const KILL_BUMP_PCT: u64 = 125;
/// ...and never more than the old one times this, however many kills.
pub const KILL_BUMP_MAX_PCT: u64 = 150;
/// The runtimes' bound (+ margin) at most this share of the current limit is "well under"
/// it: saying the limit may be lowered is worth a line, percent.
pub const WELL_UNDER_PCT: u64 = 80;

/// The label of the advice to fix a runtime's setting first.
pub const RUNTIME_FIRST: &str = "fix the runtime setting first";

/// Requests and limits are rounded up to this (a mebibyte).
const ROUND: u64 = 1 << 20;

/// What one container's watch showed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct History {
    /// Working set per sample, bytes.
    pub working_set: Vec<u64>,
    /// Unreclaimable memory per sample, bytes (empty for old recordings).
    pub unreclaimable: Vec<u64>,
    /// OOM kills seen.
    pub kills: u64,
    /// The limit that applied at the last kill, bytes.
    pub limit_at_kill: Option<u64>,
    /// The limit at the last sample, bytes.
    pub limit_now: Option<u64>,
    /// Per sample, the most its unreclaimable memory could reach under the runtimes' heap
    /// ceilings, bytes; `None` where nothing bounded it.
    pub reach: Vec<Option<u64>>,
    /// Leak or undersized, from the lives before the kills; `None` without a kill.
    pub growth: Option<Diagnosis>,
    /// The runtime settings found wrong.
    pub risks: Vec<ConfigRisk>,
}

/// Advice that comes before any figure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct First {
    /// A few words, for the overview table.
    pub label: &'static str,
    /// What to do, with the figures.
    pub text: String,
}

/// A recommendation.
#[derive(Clone, Debug, PartialEq)]
pub enum Recommendation {
    /// Figures, with how they were made.
    Figures {
        /// What to do first, before the figures; most important first.
        first: Vec<First>,
        /// Memory request, bytes.
        request: u64,
        /// Memory limit, bytes.
        limit: u64,
        /// One sentence per step.
        reasoning: Vec<String>,
    },
    /// Not enough history to give figures honestly.
    NotEnoughHistory {
        /// What to do first all the same (a runtime setting that is wrong already).
        first: Vec<First>,
        /// Why.
        reason: String,
    },
}

impl Recommendation {
    /// What to do first, before the figures.
    pub fn first(&self) -> &[First] {
        match self {
            Recommendation::Figures { first, .. }
            | Recommendation::NotEnoughHistory { first, .. } => first,
        }
    }
}

/// The `q` quantile (0–1) of `values`, by nearest rank.
pub fn quantile(values: &[u64], q: f64) -> Option<u64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    let rank = ((q.clamp(0.0, 1.0) * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

/// `bytes` × `percent` / 100, rounded up to a mebibyte (integer maths: no 220.000…01).
fn scaled(bytes: u64, percent: u64) -> u64 {
    let exact = (u128::from(bytes) * u128::from(percent)).div_ceil(100);
    u64::try_from(exact)
        .unwrap_or(u64::MAX)
        .div_ceil(ROUND)
        .saturating_mul(ROUND)
}

fn mib(bytes: u64) -> String {
    format!("{} MiB", bytes.div_ceil(ROUND))
}

/// The risks of kind `ceiling_above_limit`, one per setting: a restarted process says it
/// again, with a fix sized to the non-heap memory it held then, and the newest one is kept.
fn ceiling_risks(history: &History) -> Vec<&ConfigRisk> {
    let mut out: Vec<&ConfigRisk> = Vec::new();
    let same = |a: &ConfigRisk, b: &ConfigRisk| {
        (
            &a.language_runtime,
            &a.ceiling_source,
            a.ceiling_bytes,
            a.limit_bytes,
        ) == (
            &b.language_runtime,
            &b.ceiling_source,
            b.ceiling_bytes,
            b.limit_bytes,
        )
    };
    for risk in history
        .risks
        .iter()
        .filter(|r| r.kind == RiskKind::CeilingAboveLimit)
    {
        match out.iter_mut().find(|seen| same(seen, risk)) {
            Some(seen) => *seen = risk,
            None => out.push(risk),
        }
    }
    out
}

/// Fix the runtime's setting first: one entry per distinct fix.
fn runtime_first(risks: &[&ConfigRisk]) -> Vec<First> {
    risks
        .iter()
        .map(|risk| First {
            label: RUNTIME_FIRST,
            text: format!(
                "Fix the runtime setting first: {} ({}).",
                risk.fix, risk.message
            ),
        })
        .collect()
}

/// The most the runtimes' ceilings let the unreclaimable memory reach, when every sample
/// since the first runtime process was seen carried a bound, and there are enough of them.
fn runtime_bound(history: &History) -> Option<(u64, usize)> {
    let since = history.reach.iter().position(Option::is_some)?;
    let bounded = &history.reach[since..];
    if bounded.len() < MIN_SAMPLES || bounded.iter().any(Option::is_none) {
        return None;
    }
    Some((bounded.iter().flatten().copied().max()?, bounded.len()))
}

/// Recommends a request and a limit.
pub fn recommend(history: &History) -> Recommendation {
    let risks = ceiling_risks(history);
    let mut first = runtime_first(&risks);
    let n = history.working_set.len();
    if n < MIN_SAMPLES && history.kills == 0 {
        return Recommendation::NotEnoughHistory {
            first,
            reason: format!(
                "{n} samples; at least {MIN_SAMPLES} are needed (a minute at the default \
                 interval), better a whole day of normal load"
            ),
        };
    }
    let (Some(p95), Some(peak)) = (
        quantile(&history.working_set, 0.95),
        history.working_set.iter().copied().max(),
    ) else {
        return Recommendation::NotEnoughHistory {
            first,
            reason: "no samples".into(),
        };
    };
    let p99_unreclaimable = quantile(&history.unreclaimable, 0.99).unwrap_or(0);
    let mut reasoning = Vec::new();
    let request = scaled(p95, 100 + REQUEST_MARGIN_PCT);
    reasoning.push(format!(
        "request: working set p95 {} + {REQUEST_MARGIN_PCT} % = {}",
        mib(p95),
        mib(request)
    ));
    let need = peak.max(p99_unreclaimable);
    let mut limit = scaled(need, 100 + LIMIT_MARGIN_PCT);
    reasoning.push(format!(
        "limit: the larger of peak working set {} and unreclaimable p99 {}, + {LIMIT_MARGIN_PCT} % = {}",
        mib(peak),
        mib(p99_unreclaimable),
        mib(limit)
    ));
    if history.kills == 0 {
        limit = bounded_by_runtimes(history, limit, &mut reasoning);
    } else {
        limit = after_kills(
            history,
            limit,
            !risks.is_empty(),
            &mut first,
            &mut reasoning,
        );
    }
    limit = keeping_the_setting(&risks, limit, &mut reasoning);
    reasoning.extend(other_risks(history));
    let request = request.min(limit);
    Recommendation::Figures {
        first,
        request,
        limit,
        reasoning,
    }
}

/// Without kills: where the runtimes' ceilings bound the container, the limit covers that
/// bound (the heap may still fill up to its ceiling), and no more is needed.
fn bounded_by_runtimes(history: &History, limit: u64, reasoning: &mut Vec<String>) -> u64 {
    let Some((bound, samples)) = runtime_bound(history) else {
        return limit;
    };
    let covered = scaled(bound, 100 + LIMIT_MARGIN_PCT);
    let new = limit.max(covered);
    reasoning.push(format!(
        "the runtimes' heap ceilings bound the unreclaimable memory at {} (each heap full, plus \
         what is held beside it; every one of {samples} samples): + {LIMIT_MARGIN_PCT} % = {}{}",
        mib(bound),
        mib(covered),
        if covered > limit {
            format!(
                ", above the observed need: the limit is raised to {}",
                mib(new)
            )
        } else {
            String::new()
        }
    ));
    if let Some(now) = history.limit_now {
        if new <= scaled(now, WELL_UNDER_PCT) {
            reasoning.push(format!(
                "the ceilings keep the container well under its current limit of {}: the limit \
                 may be lowered to {}",
                mib(now),
                mib(new)
            ));
        }
    }
    new
}

/// After kills: one bounded step up from the limit that applied, led by what the lives before
/// the kills say (a leak, which no limit fixes, or an undersized limit).
fn after_kills(
    history: &History,
    limit: u64,
    runtime_risk: bool,
    first: &mut Vec<First>,
    reasoning: &mut Vec<String>,
) -> u64 {
    let Some(old) = history.limit_at_kill else {
        reasoning.push(format!(
            "{} OOM kill(s), but the limit at the kill is unknown: the limit above may be too low",
            history.kills
        ));
        return limit;
    };
    // The kill cut the peak short: the need is above the old limit. One bounded step up,
    // whatever the number of kills.
    let bumped = scaled(old, KILL_BUMP_PCT);
    let cap = scaled(old, KILL_BUMP_MAX_PCT);
    let new = limit.max(bumped).min(cap);
    let bump = format!(
        "{} OOM kill(s) at a limit of {}: the observed peak is a floor, not the need; \
         limit raised to at least {} × {KILL_BUMP_PCT} % = {}, capped at {KILL_BUMP_MAX_PCT} % = {}: {}",
        history.kills,
        mib(old),
        mib(old),
        mib(bumped),
        mib(cap),
        mib(new)
    );
    let delay = |rate: f64| {
        format!(
            "raising the limit from {} to {} delays each kill by about {} at the measured {}",
            mib(old),
            mib(new),
            duration_text(new.saturating_sub(old) as f64 / rate),
            rate_text(rate)
        )
    };
    match &history.growth {
        // A heap filling up to a ceiling above the limit grows to each kill too: that is
        // fixed in the setting, and only then does the growth tell.
        Some(leak @ Diagnosis::Leak { .. }) if runtime_risk => {
            reasoning.push(format!(
                "{}; so does a heap filling up to a ceiling above the limit: once the runtime \
                 setting is fixed, watch again: growth to each kill after that points to a leak",
                leak.evidence()
            ));
            reasoning.push(bump);
        }
        Some(leak @ Diagnosis::Leak { rate, .. }) => {
            first.push(First {
                label: "a leak: raising the limit only delays the kill",
                text: format!(
                    "This is a leak: raising the limit only delays the kill. {}: find what \
                     grows (a heap profile of the process, or its allocations over time).",
                    capitalised(&delay(*rate))
                ),
            });
            reasoning.push(leak.evidence());
            reasoning.push(format!("until the leak is fixed, as a stopgap: {bump}"));
        }
        Some(undersized @ Diagnosis::Undersized { .. }) => {
            reasoning.push(undersized.evidence());
            reasoning.push(bump);
        }
        Some(Diagnosis::Neither {
            reason,
            steady_rate: Some(rate),
        }) => {
            reasoning.push(bump);
            reasoning.push(format!("{reason}; if it is a leak, {}", delay(*rate)));
        }
        other => {
            if let Some(Diagnosis::Neither { reason, .. }) = other {
                reasoning.push(format!("leak or undersized limit: {reason}"));
            }
            reasoning.push(bump);
            reasoning.push(
                "after raising it, watch again: if it is killed again, the growth is likely \
                 a leak, which no limit fixes"
                    .into(),
            );
        }
    }
    new
}

/// To keep a runtime setting whose ceiling is above the limit instead of fixing it, the limit
/// must hold the ceiling and what the process holds beside its heap, with the margin.
fn keeping_the_setting(risks: &[&ConfigRisk], limit: u64, reasoning: &mut Vec<String>) -> u64 {
    let Some((risk, floor)) = risks
        .iter()
        .filter_map(|r| {
            let ceiling = r.ceiling_bytes?;
            let total = ceiling.saturating_add(r.non_heap_bytes.unwrap_or(0));
            Some((*r, scaled(total, 100 + LIMIT_MARGIN_PCT)))
        })
        .max_by_key(|(_, floor)| *floor)
    else {
        return limit;
    };
    let ceiling = risk.ceiling_bytes.unwrap_or(0);
    let beside = match risk.non_heap_bytes {
        Some(non_heap) => format!(" + {} non-heap", mib(non_heap)),
        None => " (its non-heap memory is not measured: add it)".into(),
    };
    let new = limit.max(floor);
    reasoning.push(format!(
        "to keep the runtime setting instead, the limit must hold its heap ceiling {}{beside} \
         + {LIMIT_MARGIN_PCT} % = at least {}{}",
        mib(ceiling),
        mib(floor),
        if floor > limit {
            format!(": the limit is raised to {}", mib(new))
        } else {
            String::new()
        }
    ));
    new
}

/// The other settings found wrong (a Go program without `GOMEMLIMIT`): no figure depends on
/// them, but the memory behaves better fixed. One line per fix.
fn other_risks(history: &History) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for risk in history
        .risks
        .iter()
        .filter(|r| r.kind != RiskKind::CeilingAboveLimit && !r.fix.is_empty())
    {
        let line = format!("also fix: {} ({})", risk.fix, risk.message);
        if !out.contains(&line) {
            out.push(line);
        }
    }
    out
}

fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests;
