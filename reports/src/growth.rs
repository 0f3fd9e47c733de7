//! A leak or an undersized limit: what the unreclaimable memory did before each kill by the
//! container's own limit.
//!
//! A higher limit cures a limit too small for the container's working level, and does not
//! cure a leak: a leak grows to any limit, and a higher one only moves the kill later. The two
//! look alike at the kill and differ before it:
//! - a leak grows steadily to every kill, across restarts: each life rises to the limit at a
//!   similar rate and never levels off;
//! - an undersized limit is met at a working level: the memory settles at a plateau at the
//!   limit and is killed there, or steps up from a stable level to the kill.
//!
//! Each life that ended in a kill by the limit is judged on its own samples, then the lives
//! together. One steady life is not enough to call a leak: a need above the limit grows the
//! same way until the kill, where it would have levelled off later. Lives with too few
//! samples are left out, and with none left, nothing is said.
//!
//! Pure: readings and kills in, a [`Diagnosis`] out.
mod words;

pub use words::{duration_text, rate_text};

/// Samples a life needs before its kill to be judged.
pub const MIN_LIFE_SAMPLES: usize = 20;
/// A steady life's linear fit over its second half explains at least this share of the
/// variance (R²).
pub const STEADY_MIN_R2: f64 = 0.8;
/// ...rises at least this share of the limit over that half, percent...
pub const STEADY_MIN_RISE_PCT: f64 = 10.0;
/// ...reaches at least this share of the limit at the kill when extrapolated, percent...
pub const STEADY_AT_KILL_PCT: f64 = 90.0;
/// ...and over the last quarter of the life still grows at least this share of that rate,
/// percent (else it was levelling off).
pub const STEADY_LATE_RATE_PCT: f64 = 75.0;
/// A settled life's second half, but for its last [`STEP_SAMPLES`], stays within this share
/// of the limit, percent.
pub const SETTLED_RANGE_PCT: f64 = 10.0;
/// The samples just before the kill a step up may show in.
pub const STEP_SAMPLES: usize = 2;
/// A settled level at or above this share of the limit is a plateau at the limit, percent.
pub const PLATEAU_AT_LIMIT_PCT: f64 = 85.0;
/// Steady lives needed to call a leak.
pub const LEAK_MIN_LIVES: usize = 2;
/// The steady lives' rates differ at most by this factor (fastest / slowest).
pub const LEAK_RATE_SPREAD: f64 = 2.0;

/// One sample, as the diagnosis needs it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Reading {
    /// Seconds.
    pub t: f64,
    /// Unreclaimable memory, bytes.
    pub unreclaimable: u64,
    /// The limit that applied, bytes.
    pub limit: Option<u64>,
    /// Restarts so far: a new count starts a new life.
    pub restarts: u64,
}

/// A kill, and whether the container's own limit caused it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct KillAt {
    /// Seconds, as the readings count them.
    pub t: f64,
    /// `false` for a kill the limit did not cause (a node OOM): it ends a life, but says
    /// nothing about the limit.
    pub by_limit: bool,
}

/// How one life went to its kill.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Shape {
    /// Too few samples to tell.
    TooShort {
        /// How many it had.
        samples: usize,
    },
    /// No limit known at the kill.
    NoLimit,
    /// Grew steadily to the kill.
    Steady {
        /// Bytes per second, over the life's second half.
        rate: f64,
    },
    /// Settled at a level at the limit and was killed there.
    Plateau {
        /// Bytes.
        level: u64,
    },
    /// Settled at a level under the limit, then stepped up (or spiked between two samples)
    /// to the kill.
    Step {
        /// The level it stepped from, bytes.
        level: u64,
    },
    /// Neither: it did not grow steadily, nor settle.
    Unclear,
}

/// One life of the container, ended by a kill by its limit.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Life {
    /// Its first sample, seconds.
    pub start: f64,
    /// The kill, seconds.
    pub kill: f64,
    /// The limit at its last sample, bytes.
    pub limit: Option<u64>,
    /// How it went.
    pub shape: Shape,
}

/// What the lives together say.
#[derive(Clone, Debug, PartialEq)]
pub enum Diagnosis {
    /// Every judged life grew steadily to its kill, at similar rates.
    Leak {
        /// Lives judged.
        lives: usize,
        /// The median rate, bytes per second.
        rate: f64,
        /// The slowest life's rate.
        slowest: f64,
        /// The fastest life's rate.
        fastest: f64,
    },
    /// Every judged life was killed at a working level: a plateau at the limit, or a step
    /// up from a stable level.
    Undersized {
        /// Lives judged.
        lives: usize,
        /// The levels of those killed at a plateau, bytes.
        plateaus: Vec<u64>,
        /// The levels those killed in a step stepped from, bytes.
        steps: Vec<u64>,
        /// The limit at the last kill, bytes.
        limit: u64,
    },
    /// Neither can be said.
    Neither {
        /// Why, in words.
        reason: String,
        /// When one life alone grew steadily to its kill: its rate, bytes per second.
        steady_rate: Option<f64>,
    },
}

/// Least-squares line through `points` (seconds, bytes).
struct Fit {
    slope: f64,
    intercept: f64,
    r2: f64,
}

impl Fit {
    fn of(points: &[(f64, f64)]) -> Option<Fit> {
        let n = points.len() as f64;
        if points.len() < 2 {
            return None;
        }
        let mean_t = points.iter().map(|p| p.0).sum::<f64>() / n;
        let mean_v = points.iter().map(|p| p.1).sum::<f64>() / n;
        let stt: f64 = points.iter().map(|p| (p.0 - mean_t).powi(2)).sum();
        if stt <= 0.0 {
            return None;
        }
        let stv: f64 = points.iter().map(|p| (p.0 - mean_t) * (p.1 - mean_v)).sum();
        let slope = stv / stt;
        let intercept = mean_v - slope * mean_t;
        let total: f64 = points.iter().map(|p| (p.1 - mean_v).powi(2)).sum();
        let residual: f64 = points
            .iter()
            .map(|p| (p.1 - (intercept + slope * p.0)).powi(2))
            .sum();
        // A flat line explains nothing: no trend to speak of.
        let r2 = if total > 0.0 {
            1.0 - residual / total
        } else {
            0.0
        };
        Some(Fit {
            slope,
            intercept,
            r2,
        })
    }

    fn at(&self, t: f64) -> f64 {
        self.intercept + self.slope * t
    }
}

fn median(values: &mut [u64]) -> u64 {
    values.sort_unstable();
    values.get(values.len() / 2).copied().unwrap_or(0)
}

/// The lives that ended in a kill by the limit, each with its shape. Readings count for the
/// life they are in: after the previous kill (and the last restart), before this one.
pub fn lives(readings: &[Reading], kills: &[KillAt]) -> Vec<Life> {
    let mut kills: Vec<&KillAt> = kills.iter().filter(|k| k.t.is_finite()).collect();
    kills.sort_by(|a, b| a.t.total_cmp(&b.t));
    let mut out = Vec::new();
    let mut since = f64::NEG_INFINITY;
    for kill in kills {
        let mut life: Vec<&Reading> = readings
            .iter()
            .filter(|r| r.t > since && r.t < kill.t)
            .collect();
        since = kill.t;
        if !kill.by_limit {
            continue;
        }
        // A restart inside the span starts the life that was killed.
        if let Some(i) = (1..life.len())
            .rev()
            .find(|&i| life[i].restarts > life[i - 1].restarts)
        {
            life.drain(..i);
        }
        // Samples taken after the process was gone but before the kill was learned of (a
        // kill read late from the kernel log) are not the life: memory dropped with it.
        let peak = life.iter().map(|r| r.unreclaimable).max().unwrap_or(0);
        while life.last().is_some_and(|r| r.unreclaimable < peak / 2) {
            life.pop();
        }
        out.push(Life {
            start: life.first().map_or(kill.t, |r| r.t),
            kill: kill.t,
            limit: life.last().and_then(|r| r.limit),
            shape: shape(&life, kill.t),
        });
    }
    out
}

/// How one life went to the kill at `kill`.
fn shape(life: &[&Reading], kill: f64) -> Shape {
    if life.len() < MIN_LIFE_SAMPLES {
        return Shape::TooShort {
            samples: life.len(),
        };
    }
    let Some(limit) = life.last().and_then(|r| r.limit).filter(|&l| l > 0) else {
        return Shape::NoLimit;
    };
    let limit = limit as f64;
    let start = life[0].t;
    let point = |r: &&Reading| (r.t - start, r.unreclaimable as f64);
    let half = (kill - start) / 2.0;
    let tail: Vec<(f64, f64)> = life.iter().map(point).filter(|p| p.0 >= half).collect();
    if tail.len() < MIN_LIFE_SAMPLES / 4 {
        // Samples bunched at the start: the second half is not seen well enough.
        return Shape::TooShort {
            samples: life.len(),
        };
    }
    if let Some(fit) = Fit::of(&tail) {
        let to_kill = kill - start;
        let rise = fit.slope * (to_kill - tail[0].0);
        let late_from = to_kill * 0.75;
        let mut late: Vec<(f64, f64)> = tail.iter().copied().filter(|p| p.0 >= late_from).collect();
        if late.len() < 3 {
            late = tail[tail.len().saturating_sub(3)..].to_vec();
        }
        let late_rate = Fit::of(&late).map_or(0.0, |f| f.slope);
        if fit.slope > 0.0
            && fit.r2 >= STEADY_MIN_R2
            && rise >= limit * STEADY_MIN_RISE_PCT / 100.0
            && fit.at(to_kill) >= limit * STEADY_AT_KILL_PCT / 100.0
            && late_rate >= fit.slope * STEADY_LATE_RATE_PCT / 100.0
        {
            return Shape::Steady { rate: fit.slope };
        }
    }
    let settled = &tail[..tail.len().saturating_sub(STEP_SAMPLES)];
    let (low, high) = settled
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| {
            (lo.min(p.1), hi.max(p.1))
        });
    if settled.len() >= MIN_LIFE_SAMPLES / 4 && high - low <= limit * SETTLED_RANGE_PCT / 100.0 {
        let mut levels: Vec<u64> = settled.iter().map(|p| p.1 as u64).collect();
        let level = median(&mut levels);
        return if level as f64 >= limit * PLATEAU_AT_LIMIT_PCT / 100.0 {
            Shape::Plateau { level }
        } else {
            Shape::Step { level }
        };
    }
    Shape::Unclear
}

/// Leak, undersized, or neither, from the lives that ended in a kill by the limit.
pub fn diagnose(readings: &[Reading], kills: &[KillAt]) -> Diagnosis {
    let neither = |reason: String| Diagnosis::Neither {
        reason,
        steady_rate: None,
    };
    if !kills.iter().any(|k| k.by_limit) {
        return neither(if kills.is_empty() {
            "no OOM kill".into()
        } else {
            "no kill was caused by the container's own limit".into()
        });
    }
    let lives = lives(readings, kills);
    let judged: Vec<&Life> = lives
        .iter()
        .filter(|l| !matches!(l.shape, Shape::TooShort { .. } | Shape::NoLimit))
        .collect();
    if judged.is_empty() {
        let most = lives
            .iter()
            .filter_map(|l| match l.shape {
                Shape::TooShort { samples } => Some(samples),
                _ => None,
            })
            .max();
        return neither(match most {
            Some(samples) => format!(
                "too little history before the kill to tell a leak from an undersized limit: \
                 {samples} samples; at least {MIN_LIFE_SAMPLES} are needed"
            ),
            None => "the limit at the kill is unknown".into(),
        });
    }
    let mut rates: Vec<f64> = judged
        .iter()
        .filter_map(|l| match l.shape {
            Shape::Steady { rate } => Some(rate),
            _ => None,
        })
        .collect();
    rates.sort_by(f64::total_cmp);
    let (plateaus, steps): (Vec<u64>, Vec<u64>) = (
        judged
            .iter()
            .filter_map(|l| match l.shape {
                Shape::Plateau { level } => Some(level),
                _ => None,
            })
            .collect(),
        judged
            .iter()
            .filter_map(|l| match l.shape {
                Shape::Step { level } => Some(level),
                _ => None,
            })
            .collect(),
    );
    let n = judged.len();
    if rates.len() == n {
        let (slowest, fastest) = (rates[0], rates[n - 1]);
        if n < LEAK_MIN_LIVES {
            return Diagnosis::Neither {
                reason: format!(
                    "one life grew steadily to the kill at {} without levelling off: a leak, or \
                     a need above the limit that would level off later; another kill after the \
                     same growth would make it a leak",
                    rate_text(slowest)
                ),
                steady_rate: Some(slowest),
            };
        }
        if fastest > slowest * LEAK_RATE_SPREAD {
            return neither(format!(
                "each of the {n} lives grew steadily to its kill, but at rates from {} to {}: \
                 growth that follows the load, or a leak that does; not told apart",
                rate_text(slowest),
                rate_text(fastest)
            ));
        }
        return Diagnosis::Leak {
            lives: n,
            rate: rates[n / 2],
            slowest,
            fastest,
        };
    }
    if plateaus.len() + steps.len() == n {
        let limit = judged.last().and_then(|l| l.limit).unwrap_or(0);
        return Diagnosis::Undersized {
            lives: n,
            plateaus,
            steps,
            limit,
        };
    }
    let settled = plateaus.len() + steps.len();
    if rates.is_empty() && settled == 0 {
        return neither(
            "before the kill, the unreclaimable memory neither grew steadily nor settled at a \
             level: a leak and an undersized limit are not told apart"
                .into(),
        );
    }
    neither(format!(
        "the {n} lives before the kills differ ({} grew steadily, {settled} settled at a level, \
         {} did neither): a leak and an undersized limit are not told apart",
        rates.len(),
        n - rates.len() - settled
    ))
}

#[cfg(test)]
mod tests;
