//! The diagnosis in words: what the lives showed, and growth rates and durations people read
//! at a glance.
use super::Diagnosis;

impl Diagnosis {
    /// What the lives showed, in one sentence.
    pub fn evidence(&self) -> String {
        match self {
            Diagnosis::Leak {
                lives,
                slowest,
                fastest,
                ..
            } => {
                let rates = if rate_text(*slowest) == rate_text(*fastest) {
                    format!("at {}", rate_text(*slowest))
                } else {
                    format!("at {} to {}", rate_text(*slowest), rate_text(*fastest))
                };
                format!(
                    "in each of the {lives} lives that ended in an OOM kill, unreclaimable memory \
                     grew steadily to the limit {rates}, without levelling off"
                )
            }
            Diagnosis::Undersized {
                plateaus,
                steps,
                limit,
                ..
            } => {
                let mut parts = Vec::new();
                if !plateaus.is_empty() {
                    parts.push(format!(
                        "{} settled at a working level of {} at the limit of {} and was killed \
                         there: the limit is too small for that level",
                        lives_text(plateaus.len()),
                        levels_text(plateaus),
                        mib(*limit)
                    ));
                }
                if !steps.is_empty() {
                    parts.push(format!(
                        "{} was killed in a step up from a stable {}: the limit is too small \
                         for its peaks",
                        lives_text(steps.len()),
                        levels_text(steps)
                    ));
                }
                format!("not a leak: {}", parts.join("; "))
            }
            Diagnosis::Neither { reason, .. } => reason.clone(),
        }
    }
}

fn lives_text(n: usize) -> String {
    if n == 1 {
        "the life before the kill".into()
    } else {
        format!("each of {n} lives")
    }
}

fn levels_text(levels: &[u64]) -> String {
    let (low, high) = (
        levels.iter().copied().min().unwrap_or(0),
        levels.iter().copied().max().unwrap_or(0),
    );
    if mib(low) == mib(high) {
        mib(low)
    } else {
        format!("{}–{}", mib(low), mib(high))
    }
}

fn mib(bytes: u64) -> String {
    format!("{} MiB", (bytes as f64 / MIB).round())
}

const MIB: f64 = 1024.0 * 1024.0;

/// A growth rate people read at a glance: MiB/s, or MiB/h for slow leaks.
pub fn rate_text(bytes_per_s: f64) -> String {
    let per_s = bytes_per_s / MIB;
    if per_s >= 0.1 {
        format!("{} MiB/s", two_figures(per_s))
    } else {
        format!("{} MiB/h", two_figures(per_s * 3600.0))
    }
}

/// A duration to two figures at most: `45 s`, `5 min`, `3.2 h`, `2.5 days`.
pub fn duration_text(seconds: f64) -> String {
    let s = seconds.max(0.0);
    if s < 90.0 {
        format!("{s:.0} s")
    } else if s < 90.0 * 60.0 {
        format!("{:.0} min", s / 60.0)
    } else if s < 48.0 * 3600.0 {
        format!("{} h", two_figures(s / 3600.0))
    } else {
        format!("{} days", two_figures(s / 86_400.0))
    }
}

/// `x` with about two significant figures, without trailing zeros: 0.2, 0.25, 2.5, 12, 340.
fn two_figures(x: f64) -> String {
    let text = if x >= 10.0 {
        format!("{x:.0}")
    } else if x >= 1.0 {
        format!("{x:.1}")
    } else {
        // Two significant figures below one: 0.25, 0.025.
        let decimals = (1.0 - x.log10().floor()).clamp(1.0, 6.0) as usize;
        format!("{x:.decimals$}")
    };
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        text
    }
}
