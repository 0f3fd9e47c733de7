//! The forecast benchmark's evaluation: pure functions over one recorded `profiler watch --json`
//! trace and the workload's growth start. No I/O; tested on small hand-made traces.
//!
//! Three detectors are judged the same way:
//! - the profiler, by its `warning` lines (level `warning` or `critical` raise it, `cleared`
//!   lowers it);
//! - Prometheus-style `predict_linear(working_set[30s], 60s) > limit`, computed here at each
//!   `sample`;
//! - `working_set > 90 % of the limit`, computed here at each `sample`.
//!
//! A detector's first warning is the first moment from the growth start on (up to the kill) at
//! which it is raised: the growth start itself if it was already raised then. Its lead is the
//! kill's time minus that moment. False warnings: every warning in a scenario without an OOM
//! kill, the ones before the growth start otherwise. The profiler's are counted in lines (each
//! line is a notification: `warning` then `critical` is two), the baselines' in alerts (each
//! time one starts firing).
mod baselines;
mod goal;
mod trace;

pub(super) use baselines::{above_fraction_fires, predict_linear_fires};
pub(super) use goal::{judge, Goal, Verdict};
pub(super) use trace::{Kill, Sample, Trace};

/// The thresholds the detectors and the goals use.
#[derive(Clone, Copy, Debug)]
pub(super) struct Settings {
    /// The profiler's warning threshold (`--warn`), which caps the ideal lead.
    pub warn: f64,
    /// `predict_linear`'s range, seconds.
    pub window: f64,
    /// `predict_linear`'s horizon, seconds.
    pub horizon: f64,
    /// The threshold rule's fraction of the limit.
    pub fraction: f64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            warn: 60.0,
            window: 30.0,
            horizon: 60.0,
            fraction: 0.9,
        }
    }
}

/// How one detector did on one run.
#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct Detection {
    /// Seconds from the first warning to the kill; `None` when there was no kill or no warning
    /// from the growth start to the kill.
    pub lead: Option<f64>,
    /// `|ETA − time left| / time left` at the first warning (the profiler's only).
    pub eta_error: Option<f64>,
    /// False warnings (see the module's documentation).
    pub false_warnings: usize,
    /// Every warning, false or not.
    pub warnings: usize,
}

/// One moment of a detector: from `ts` on it is raised (or not), with this ETA.
#[derive(Clone, Copy, Debug)]
struct Point {
    ts: f64,
    raised: bool,
    /// Whether this point is a notification (counted as a warning).
    notifies: bool,
    eta: Option<f64>,
}

/// Judges a detector given as points in time order.
fn detect(
    points: &[Point],
    growth_start: Option<f64>,
    kill: Option<f64>,
) -> (Detection, Option<f64>) {
    let from = growth_start.unwrap_or(f64::NEG_INFINITY);
    let warnings = points.iter().filter(|p| p.notifies).count();
    let false_warnings = match kill {
        None => warnings,
        Some(_) => points.iter().filter(|p| p.notifies && p.ts < from).count(),
    };
    let Some(kill) = kill else {
        return (
            Detection {
                false_warnings,
                warnings,
                ..Detection::default()
            },
            None,
        );
    };
    let in_force = points
        .iter()
        .rev()
        .find(|p| p.ts <= from)
        .is_some_and(|p| p.raised);
    let first = if in_force {
        Some(from)
    } else {
        points
            .iter()
            .find(|p| p.raised && p.ts >= from && p.ts < kill)
            .map(|p| p.ts)
    };
    (
        Detection {
            lead: first.map(|ts| kill - ts),
            eta_error: None,
            false_warnings,
            warnings,
        },
        first,
    )
}

/// The figures of one run of one scenario.
#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct Evaluation {
    /// The first OOM kill, if there was one.
    pub kill: Option<Kill>,
    /// Every OOM kill seen.
    pub kills: usize,
    pub growth_start: Option<f64>,
    /// Seconds from the growth start to the kill.
    pub growth_to_kill: Option<f64>,
    /// The shorter of the growth start to the kill and the warning threshold.
    pub ideal_lead: Option<f64>,
    /// `None` when the profiler has no forecaster.
    pub profiler: Option<Detection>,
    pub predict_linear: Detection,
    pub above_fraction: Detection,
    /// The largest working set over the limit before the kill (or in the whole run).
    pub peak_working_set: Option<f64>,
    /// The largest page cache and shmem, bytes.
    pub peak_file: f64,
    pub peak_shmem: f64,
    pub samples: usize,
}

/// Evaluates one recording.
pub(super) fn evaluate(
    trace: &Trace,
    growth_start: Option<f64>,
    settings: &Settings,
) -> Evaluation {
    let kill = trace
        .kills
        .iter()
        .min_by(|a, b| a.ts.total_cmp(&b.ts))
        .cloned();
    let t_kill = kill.as_ref().map(|k| k.ts);
    let growth_to_kill = t_kill.zip(growth_start).map(|(k, g)| k - g);
    let ideal_lead = t_kill.map(|k| {
        growth_start
            .map_or(settings.warn, |g| (k - g).min(settings.warn))
            .max(0.0)
    });

    let profiler = trace.forecaster.then(|| {
        let points: Vec<Point> = trace
            .changes
            .iter()
            .map(|c| Point {
                ts: c.ts,
                raised: c.level.raised(),
                notifies: c.level.raised(),
                eta: c.eta,
            })
            .collect();
        let (mut detection, first) = detect(&points, growth_start, t_kill);
        if let (Some(first), Some(kill)) = (first, t_kill) {
            // The ETA the warning line carried; for a warning already raised at the growth
            // start, the first sample's from then on.
            let eta = points
                .iter()
                .find(|p| p.ts == first && p.raised)
                .map(|p| (p.ts, p.eta))
                .or_else(|| {
                    trace
                        .samples
                        .iter()
                        .find(|s| s.ts >= first && s.eta.is_some())
                        .map(|s| (s.ts, s.eta))
                });
            detection.eta_error = eta.and_then(|(ts, eta)| eta_error(eta?, kill - ts));
        }
        detection
    });

    let sampled = |fires: Vec<bool>| {
        let mut before = false;
        let points: Vec<Point> = trace
            .samples
            .iter()
            .zip(fires)
            .map(|(s, raised)| {
                let point = Point {
                    ts: s.ts,
                    raised,
                    notifies: raised && !before,
                    eta: None,
                };
                before = raised;
                point
            })
            .collect();
        detect(&points, growth_start, t_kill).0
    };
    let predict_linear = sampled(predict_linear_fires(
        &trace.samples,
        settings.window,
        settings.horizon,
    ));
    let above_fraction = sampled(above_fraction_fires(&trace.samples, settings.fraction));

    let before_kill = || {
        trace
            .samples
            .iter()
            .filter(move |s| t_kill.is_none_or(|k| s.ts <= k))
    };
    let peak_working_set = before_kill()
        .filter_map(|s| s.limit.map(|l| s.working_set / l))
        .max_by(f64::total_cmp);
    Evaluation {
        kills: trace.kills.len(),
        kill,
        growth_start,
        growth_to_kill,
        ideal_lead,
        profiler,
        predict_linear,
        above_fraction,
        peak_working_set,
        peak_file: before_kill().map(|s| s.file).fold(0.0, f64::max),
        peak_shmem: before_kill().map(|s| s.shmem).fold(0.0, f64::max),
        samples: trace.samples.len(),
    }
}

/// `|eta − actual| / actual`; `None` unless the actual time left is positive.
fn eta_error(eta: f64, actual: f64) -> Option<f64> {
    (actual > 0.0).then(|| (eta - actual).abs() / actual)
}

#[cfg(test)]
mod tests;
