//! Time to the OOM kill: a forecast per watched container, from the memory that reclaim cannot
//! free (anon, shmem/tmpfs, kernel memory) approaching the limit.
//!
//! Usage is the wrong series to extrapolate: it includes page cache, which the kernel frees
//! before it kills anything, so a container that reads a lot looks like one about to die. The
//! unreclaimable part only shrinks when the program frees it (or dies), so its trend is what
//! the kill depends on.
//!
//! Two shapes are told apart:
//! - **Sawtooth** (garbage-collected runtimes): the series drops sharply again and again. What
//!   kills is the peaks reaching the limit, so the peaks are fitted, not the legs: a stable
//!   sawtooth never warns, a rising floor (and with it rising peaks) does.
//! - **Growth** (leaks, steps, caches of objects): lines over a short and a long window and a
//!   parabola over the long one; the earliest significant crossing wins. The short line catches
//!   fast recent growth, the long one keeps the trend through plateaus, the parabola catches
//!   acceleration.
//!
//! A fit counts only when its slope (or acceleration) is at least three standard errors above
//! zero: noise does not warn. For the first [`LEARNING_S`] seconds of a container nothing is
//! forecast: a runtime's heap growing to its working size is, at first, indistinguishable from
//! a leak.
pub(crate) mod fit;
pub(crate) mod risk;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod traces;

use std::collections::VecDeque;

use fit::{fit_line, fit_quadratic, line_eta, quadratic_eta, LineFit};

/// Seconds of history a container needs before it is forecast.
pub(crate) const LEARNING_S: f64 = 20.0;
/// Window of the long line and the parabola.
const LONG_S: f64 = 60.0;
/// Window of the short line.
const SHORT_S: f64 = 15.0;
/// How long drops and peaks are remembered (a few cycles of a slow garbage collector).
const MEMORY_S: f64 = 120.0;
/// Drops within this window make a series a sawtooth.
const SAWTOOTH_WINDOW_S: f64 = 90.0;
/// Peaks the short sawtooth line is fitted to (the newest).
const PEAKS_FITTED: usize = 6;
/// How much of the limit the newest peaks must rise by, over their span, to count.
const MIN_RISE_PEAKS: f64 = 0.05;
/// Standard errors a slope must be above zero to count.
const MIN_T: f64 = 3.0;
/// Slower growth than this is no risk in sight (bytes/s).
const MIN_SLOPE: f64 = 1024.0;
/// A line counts only if it rises by this share of the limit over its window: noise of a
/// steady process must not add up to a forecast.
const MIN_RISE: f64 = 0.02;
/// Acceleration is judged on this many consecutive sub-windows of the last `ACCEL_S`.
const ACCEL_WINDOWS: usize = 4;
/// Window of the acceleration check and the parabola.
const ACCEL_S: f64 = 30.0;

/// One sample of a container, as the forecaster needs it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Observation {
    /// Unix seconds.
    pub t: f64,
    /// Anon + shmem + kernel memory, bytes.
    pub unreclaimable: u64,
    /// The limit that applies, bytes.
    pub limit: Option<u64>,
    /// Time the kernel stalled tasks in memcg reclaim since the previous sample, µs (charge
    /// path modes only).
    pub reclaim_stall_us: Option<u64>,
    /// Times the limit was hit since the previous sample (v1 `failcnt`).
    pub limit_hits: Option<u64>,
    /// PSI `some` avg10 of the cgroup, % (v2 with PSI only).
    pub psi_some_avg10: Option<f64>,
    /// The most `unreclaimable` can reach while the container's runtimes stay under their heap
    /// ceilings (`None`: nothing bounds it).
    pub reach: Option<u64>,
    /// Swap the cgroup uses and may still use in all (its swap allowance, within the node's
    /// free swap), bytes; `None` when it cannot swap. Where it can, anonymous memory is not
    /// unreclaimable: the kill comes when memory and swap are both full.
    pub swap: Option<Swap>,
}

/// What a cgroup may swap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Swap {
    /// Swapped out now, bytes.
    pub used: u64,
    /// The most it may have swapped out, bytes (over 0).
    pub allowed: u64,
}

/// PSI `some` avg10 (%) at which a cgroup near its limit counts as pressed: tasks waited for
/// memory for a tenth of a second in the last ten.
pub(crate) const PSI_PRESSED_PCT: f64 = 1.0;

/// What the forecaster says after a sample.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Forecast {
    /// Seconds until the kill, `None` when no risk is in sight (or while learning).
    pub eta_s: Option<f64>,
    /// The interval around it: earliest and latest plausible (`None`: unbounded).
    pub low_s: Option<f64>,
    /// See `low_s`.
    pub high_s: Option<f64>,
    /// Why, in words.
    pub reason: String,
    /// Still learning: no warning may be raised yet.
    pub learning: bool,
}

/// The top of a rising leg, before a drop (a garbage collection, a freed buffer).
#[derive(Clone, Copy, Debug, PartialEq)]
struct Peak {
    t: f64,
    value: f64,
    /// How fast the leg rose (bytes/s): samples miss the true top by up to one interval of it.
    rise: f64,
}

/// The forecaster of one container.
#[derive(Debug, Default)]
pub(crate) struct Forecaster {
    points: VecDeque<(f64, f64)>,
    first_t: Option<f64>,
    /// Peaks before each drop, newest last.
    peaks: VecDeque<Peak>,
    /// Highest point of the current rising leg.
    leg_max: Option<Peak>,
    /// Falling since the last drop, down to `trough`.
    falling: bool,
    trough: (f64, f64),
    /// Where the current leg started.
    leg_start: Option<(f64, f64)>,
}

/// Whether a fall from `from` to `to` is a drop: more than 5 % of the limit and 4 MiB.
fn is_drop(from: f64, to: f64, limit: f64) -> bool {
    from - to > (0.05 * limit).max(4.0 * 1024.0 * 1024.0)
}

fn mib(bytes: f64) -> String {
    format!("{:.1}MiB", bytes / (1024.0 * 1024.0))
}

/// An ETA with its interval, and what it came from.
#[derive(Clone, Debug)]
struct Candidate {
    eta: f64,
    low: Option<f64>,
    high: Option<f64>,
    why: String,
}

fn line_candidate(
    fit: &LineFit,
    span: f64,
    from: f64,
    target: f64,
    what: &str,
) -> Option<Candidate> {
    if fit.t_stat() < MIN_T || fit.slope < MIN_SLOPE || fit.slope * span < MIN_RISE * target {
        return None;
    }
    let eta = line_eta(from, fit.slope, target)?;
    let spread = 2.0 * fit.slope_se;
    Some(Candidate {
        eta,
        low: line_eta(from, fit.slope + spread, target),
        high: line_eta(from, fit.slope - spread, target),
        why: format!("growing {}/s ({what})", mib(fit.slope)),
    })
}

impl Forecaster {
    /// A forecaster with no history.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Forgets the history (the process it followed was killed).
    pub(crate) fn reset(&mut self) {
        *self = Self::default();
    }

    /// Takes one sample and forecasts.
    pub(crate) fn observe(&mut self, obs: Observation) -> Forecast {
        // With swap, what fills up is memory and swap together.
        let swapped = obs.swap.map_or(0, |s| s.used);
        let value = obs.unreclaimable.saturating_add(swapped) as f64;
        let first = *self.first_t.get_or_insert(obs.t);
        self.track_drops(obs.t, value, obs.limit);
        self.points.push_back((obs.t, value));
        while self
            .points
            .front()
            .is_some_and(|&(t, _)| t < obs.t - LONG_S)
        {
            self.points.pop_front();
        }
        while self.peaks.front().is_some_and(|p| p.t < obs.t - MEMORY_S) {
            self.peaks.pop_front();
        }

        let Some(limit) = obs.limit.filter(|&l| l > 0) else {
            return Forecast {
                reason: "no limit applies".into(),
                ..Forecast::default()
            };
        };
        let target = limit.saturating_add(obs.swap.map_or(0, |s| s.allowed)) as f64;
        let level = match obs.swap {
            Some(swap) => format!(
                "unreclaimable {} + swap {} of {} + {} swap ({:.0}%)",
                mib(obs.unreclaimable as f64),
                mib(swap.used as f64),
                mib(limit as f64),
                mib(swap.allowed as f64),
                value * 100.0 / target
            ),
            None => format!(
                "unreclaimable {} of {} ({:.0}%)",
                mib(value),
                mib(target),
                value * 100.0 / target
            ),
        };
        let history = obs.t - first;
        if history < LEARNING_S {
            return Forecast {
                reason: format!("learning ({history:.0}s of {LEARNING_S:.0}s of history); {level}"),
                learning: true,
                ..Forecast::default()
            };
        }
        let recent_drops = self
            .peaks
            .iter()
            .filter(|p| p.t >= obs.t - SAWTOOTH_WINDOW_S)
            .count();
        let candidate = if recent_drops >= 2 {
            self.sawtooth(obs.t, target)
        } else {
            self.growth(obs.t, value, target)
        };
        // The kernel already reclaiming with little but unreclaimable memory left: the next
        // charges may find nothing to free, so the kill can come at any moment.
        let psi_pressed = obs.psi_some_avg10.is_some_and(|p| p >= PSI_PRESSED_PCT);
        let pressed = value >= 0.9 * target
            && (obs.reclaim_stall_us.is_some_and(|us| us > 0)
                || obs.limit_hits.is_some_and(|n| n > 0)
                || psi_pressed);
        let pressure = if pressed {
            let psi = obs
                .psi_some_avg10
                .map(|p| format!(", tasks waited for memory {p:.1} % of the last 10 s (PSI)"))
                .unwrap_or_default();
            format!(
                "; at the limit: {} ms stalled in reclaim, limit hit {} times since the last sample{psi}",
                obs.reclaim_stall_us.map_or(0.0, |us| us as f64 / 1000.0),
                obs.limit_hits.unwrap_or(0)
            )
        } else {
            String::new()
        };
        // The runtimes' heap ceilings keep it under the limit: growth toward the ceiling is a
        // heap warming up, not a kill on its way. Past the bound (memory beside the heaps grew)
        // the forecast is as for any container.
        let bound = obs.reach.map(|r| r.saturating_add(swapped) as f64);
        if let Some(reach) = bound.filter(|&r| r < target && value <= r) {
            return Forecast {
                reason: format!(
                    "{level}; the runtimes' heap ceilings bound it at {} ({:.0}% of the limit){pressure}",
                    mib(reach),
                    reach * 100.0 / target
                ),
                ..Forecast::default()
            };
        }
        match candidate {
            Ok(c) => Forecast {
                eta_s: Some(c.eta),
                low_s: if pressed { Some(0.0) } else { c.low },
                high_s: c.high,
                reason: format!("{level}, {}{pressure}", c.why),
                learning: false,
            },
            Err(why) => Forecast {
                reason: format!("{level}, {why}{pressure}"),
                ..Forecast::default()
            },
        }
    }

    fn track_drops(&mut self, t: f64, value: f64, limit: Option<u64>) {
        let limit = limit.map_or(f64::INFINITY, |l| l as f64);
        if self.falling {
            if value < self.trough.1 {
                self.trough = (t, value);
                return;
            }
            // Rising again: a new leg starts at the trough.
            self.falling = false;
            self.leg_start = Some(self.trough);
            self.leg_max = Some(Peak {
                t,
                value,
                rise: 0.0,
            });
            return;
        }
        if self.leg_max.is_none() && self.leg_start.is_none() {
            // The series' first leg starts at its first point.
            self.leg_start = Some((t, value));
        }
        let leg = self.leg_max.get_or_insert(Peak {
            t,
            value,
            rise: 0.0,
        });
        if value >= leg.value {
            *leg = Peak {
                t,
                value,
                rise: 0.0,
            };
        } else if is_drop(leg.value, value, limit) {
            let mut peak = *leg;
            if let Some((t0, v0)) = self.leg_start {
                if peak.t > t0 {
                    peak.rise = ((peak.value - v0) / (peak.t - t0)).max(0.0);
                }
            }
            self.peaks.push_back(peak);
            self.leg_max = None;
            self.falling = true;
            self.trough = (t, value);
        }
    }

    /// The median time between samples.
    fn interval(&self) -> f64 {
        let mut gaps: Vec<f64> = self
            .points
            .iter()
            .zip(self.points.iter().skip(1))
            .map(|(a, b)| b.0 - a.0)
            .collect();
        if gaps.is_empty() {
            return 0.0;
        }
        gaps.sort_by(f64::total_cmp);
        gaps[gaps.len() / 2]
    }

    /// A sawtooth: the peaks decide.
    ///
    /// Two lines through them: the newest [`PEAKS_FITTED`] (a floor that started rising
    /// recently is not averaged with the stable cycles before it; it must rise by
    /// [`MIN_RISE_PEAKS`] of the limit over them, so the jitter of a stable sawtooth's peaks
    /// does not count) and every peak remembered (slow drifts, [`MIN_RISE`]).
    fn sawtooth(&self, now: f64, target: f64) -> Result<Candidate, String> {
        // Samples catch a leg up to one interval before its top: the kill comes when the top
        // reaches the limit, so the peaks are taken that much higher. One offset for all (the
        // median leg's), so it moves the line, not its slope.
        let mut rises: Vec<f64> = self.peaks.iter().map(|p| p.rise).collect();
        rises.sort_by(f64::total_cmp);
        let offset = rises.get(rises.len() / 2).copied().unwrap_or(0.0) * self.interval();
        let mut all: Vec<(f64, f64)> = self.peaks.iter().map(|p| (p.t, p.value + offset)).collect();
        // The current leg counts once it is above the last peak: evidence the peaks rise.
        if let (Some(leg), Some(&last)) = (self.leg_max, all.last()) {
            if leg.value + offset > last.1 {
                all.push((leg.t, leg.value + offset));
            }
        }
        let top = all.iter().map(|p| p.1 - offset).fold(0.0, f64::max);
        let stable = || {
            format!(
                "sawtooth with stable peaks (highest {}, {:.0}% of the limit)",
                mib(top),
                top * 100.0 / target
            )
        };
        let newest = &all[all.len().saturating_sub(PEAKS_FITTED)..];
        let mut candidates = Vec::new();
        for (peaks, min_rise) in [(newest, MIN_RISE_PEAKS), (&all[..], MIN_RISE)] {
            let Some(fit) = fit_line(peaks) else {
                continue;
            };
            let span = peaks.last().map_or(0.0, |l| l.0) - peaks.first().map_or(0.0, |f| f.0);
            if fit.t_stat() < MIN_T || fit.slope < MIN_SLOPE || fit.slope * span < min_rise * target
            {
                continue;
            }
            let last_t = peaks.last().map_or(now, |p| p.0);
            let from_last = |slope: f64| {
                line_eta(fit.now, slope, target).map(|eta| (eta - (now - last_t)).max(0.0))
            };
            let Some(eta) = from_last(fit.slope) else {
                continue;
            };
            let spread = 2.0 * fit.slope_se;
            candidates.push(Candidate {
                eta,
                low: from_last(fit.slope + spread),
                high: from_last(fit.slope - spread),
                why: format!(
                    "sawtooth with peaks rising {}/s over {} cycles",
                    mib(fit.slope),
                    fit.n
                ),
            });
        }
        candidates
            .into_iter()
            .min_by(|a, b| a.eta.total_cmp(&b.eta))
            .ok_or_else(stable)
    }

    /// Growth without drops: lines over two windows, and a parabola when the growth
    /// accelerates.
    fn growth(&self, now: f64, value: f64, target: f64) -> Result<Candidate, String> {
        let window = |seconds: f64| -> Vec<(f64, f64)> {
            self.points
                .iter()
                .copied()
                .filter(|&(t, _)| t >= now - seconds)
                .collect()
        };
        let span = |points: &[(f64, f64)]| match (points.first(), points.last()) {
            (Some(a), Some(b)) => b.0 - a.0,
            _ => 0.0,
        };
        let mut candidates = Vec::new();
        for seconds in [SHORT_S, LONG_S] {
            let points = window(seconds);
            if let Some(fit) = fit_line(&points) {
                let s = span(&points);
                let what = format!("last {s:.0}s");
                // From the fitted level or the last sample, whichever is higher: a step just
                // taken is not averaged away.
                candidates.extend(line_candidate(&fit, s, fit.now.max(value), target, &what));
            }
        }
        let recent = window(ACCEL_S);
        if self.accelerating(&recent) {
            if let Some(q) = fit_quadratic(&recent) {
                let with_c = |c: f64| fit::QuadFit { c, ..q };
                if q.c > 0.0 && q.b >= MIN_SLOPE {
                    if let Some(eta) = quadratic_eta(&q, target) {
                        candidates.push(Candidate {
                            eta,
                            low: quadratic_eta(&with_c(q.c + 2.0 * q.c_se), target),
                            high: quadratic_eta(&with_c((q.c - 2.0 * q.c_se).max(0.0)), target),
                            why: format!(
                                "accelerating: {}/s now, +{}/s every 10s",
                                mib(q.b),
                                mib(20.0 * q.c)
                            ),
                        });
                    }
                }
            }
        }
        candidates
            .into_iter()
            .min_by(|a, b| a.eta.total_cmp(&b.eta))
            .ok_or_else(|| "no significant growth".to_owned())
    }

    /// Whether the slope rose significantly from each of [`ACCEL_WINDOWS`] consecutive
    /// sub-windows to the next. A parabola through a kink (flat, then a steady leak) would
    /// forecast the kill far too early; a kink raises the slope once, acceleration keeps
    /// raising it.
    fn accelerating(&self, recent: &[(f64, f64)]) -> bool {
        let (Some(first), Some(last)) = (recent.first(), recent.last()) else {
            return false;
        };
        let width = (last.0 - first.0) / ACCEL_WINDOWS as f64;
        if last.0 - first.0 < ACCEL_S * 0.9 || width <= 0.0 {
            return false;
        }
        let fits: Vec<LineFit> = (0..ACCEL_WINDOWS)
            .filter_map(|k| {
                let from = first.0 + k as f64 * width;
                let to = from + width;
                let part: Vec<(f64, f64)> = recent
                    .iter()
                    .copied()
                    .filter(|&(t, _)| t >= from && t <= to)
                    .collect();
                fit_line(&part)
            })
            .collect();
        if fits.len() != ACCEL_WINDOWS {
            return false;
        }
        let rises: Vec<f64> = fits
            .windows(2)
            .map(|pair| pair[1].slope - pair[0].slope)
            .collect();
        let significant = fits.windows(2).zip(&rises).all(|(pair, &rise)| {
            let se = (pair[0].slope_se.powi(2) + pair[1].slope_se.powi(2)).sqrt();
            rise > 0.0 && rise > MIN_T * se
        });
        // Smooth: no rise a small fraction of another (a kink gives one big rise).
        let largest = rises.iter().copied().fold(0.0, f64::max);
        significant && rises.iter().all(|&r| r >= largest / 3.0)
    }
}
