//! Memory request and limit recommendations, with the reasoning shown.
//!
//! The request covers what the container usually needs (the 95th percentile of its working
//! set); the limit covers what it needs at worst (the largest of its peak working set and its
//! 99th-percentile unreclaimable memory) plus a margin. After an OOM kill the observed peak is
//! a floor, not the need (the kill cut it short), so the limit is bumped from the limit that
//! applied, by a bounded factor: repeated kills cannot run the figure away. With too little
//! history, the answer says so instead of guessing.

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
}

/// A recommendation.
#[derive(Clone, Debug, PartialEq)]
pub enum Recommendation {
    /// Figures, with how they were made.
    Figures {
        /// Memory request, bytes.
        request: u64,
        /// Memory limit, bytes.
        limit: u64,
        /// One sentence per step.
        reasoning: Vec<String>,
    },
    /// Not enough history to say anything honest.
    NotEnoughHistory {
        /// Why.
        reason: String,
    },
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

/// Recommends a request and a limit.
pub fn recommend(history: &History) -> Recommendation {
    let n = history.working_set.len();
    if n < MIN_SAMPLES && history.kills == 0 {
        return Recommendation::NotEnoughHistory {
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
    if history.kills > 0 {
        match history.limit_at_kill {
            Some(old) => {
                // The kill cut the peak short: the need is above the old limit. One bounded
                // step up, whatever the number of kills.
                let bumped = scaled(old, KILL_BUMP_PCT);
                let cap = scaled(old, KILL_BUMP_MAX_PCT);
                let new = limit.max(bumped).min(cap);
                reasoning.push(format!(
                    "{} OOM kill(s) at a limit of {}: the observed peak is a floor, not the need; \
                     limit raised to at least {} × {KILL_BUMP_PCT} % = {}, capped at {KILL_BUMP_MAX_PCT} % = {}: {}",
                    history.kills,
                    mib(old),
                    mib(old),
                    mib(bumped),
                    mib(cap),
                    mib(new)
                ));
                limit = new;
                reasoning.push(
                    "after raising it, watch again: if it is killed again, the growth is likely \
                     a leak, which no limit fixes"
                        .into(),
                );
            }
            None => reasoning.push(format!(
                "{} OOM kill(s), but the limit at the kill is unknown: the limit above may be too low",
                history.kills
            )),
        }
    }
    let request = request.min(limit);
    Recommendation::Figures {
        request,
        limit,
        reasoning,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn steady(n: usize, mib_each: u64) -> History {
        History {
            working_set: vec![mib_each * MIB; n],
            unreclaimable: vec![mib_each * MIB / 2; n],
            ..History::default()
        }
    }

    #[test]
    fn too_little_history_says_so() {
        let r = recommend(&steady(10, 100));
        assert!(
            matches!(r, Recommendation::NotEnoughHistory { ref reason } if reason.contains("10 samples"))
        );
    }

    #[test]
    fn percentile_plus_margin() {
        // 90 samples at 100 MiB, 10 at 200 MiB: p95 = 200, peak = 200.
        let mut h = steady(90, 100);
        h.working_set.extend(vec![200 * MIB; 10]);
        let Recommendation::Figures {
            request,
            limit,
            reasoning,
        } = recommend(&h)
        else {
            panic!("figures expected");
        };
        assert_eq!(request, 220 * MIB);
        assert_eq!(limit, 240 * MIB);
        assert!(reasoning[0].contains("p95 200 MiB"), "{reasoning:?}");
        // Mostly at 100 MiB: the request follows the p95.
        let mut h = steady(99, 100);
        h.working_set.push(300 * MIB);
        let Recommendation::Figures { request, limit, .. } = recommend(&h) else {
            panic!("figures expected");
        };
        assert_eq!(request, 110 * MIB);
        assert_eq!(limit, 360 * MIB);
    }

    #[test]
    fn unreclaimable_counts_for_the_limit() {
        let mut h = steady(100, 100);
        h.unreclaimable = vec![150 * MIB; 100];
        let Recommendation::Figures { limit, .. } = recommend(&h) else {
            panic!("figures expected");
        };
        assert_eq!(limit, 180 * MIB);
    }

    #[test]
    fn a_kill_bumps_the_limit_within_bounds() {
        // Killed at 128 MiB with a peak at the limit: ×1.25 = 160 MiB (the peak + 20 % is
        // only 154).
        let mut h = steady(100, 128);
        h.kills = 1;
        h.limit_at_kill = Some(128 * MIB);
        let Recommendation::Figures {
            limit, reasoning, ..
        } = recommend(&h)
        else {
            panic!("figures expected");
        };
        assert_eq!(limit, 160 * MIB);
        assert!(reasoning.iter().any(|r| r.contains("1 OOM kill")));
        // Many kills do not run it away: at most ×1.5 of the limit that applied.
        h.kills = 50;
        h.working_set = vec![1000 * MIB; 100];
        let Recommendation::Figures { limit, .. } = recommend(&h) else {
            panic!("figures expected");
        };
        assert_eq!(limit, 192 * MIB);
    }

    #[test]
    fn a_kill_with_little_history_still_answers() {
        let mut h = steady(5, 60);
        h.kills = 1;
        h.limit_at_kill = Some(64 * MIB);
        assert!(
            matches!(recommend(&h), Recommendation::Figures { limit, .. } if limit == 80 * MIB)
        );
    }

    #[test]
    fn quantiles() {
        assert_eq!(quantile(&[], 0.5), None);
        assert_eq!(quantile(&[5], 0.99), Some(5));
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(quantile(&v, 0.95), Some(95));
        assert_eq!(quantile(&v, 0.5), Some(50));
        assert_eq!(quantile(&v, 1.0), Some(100));
    }
}
