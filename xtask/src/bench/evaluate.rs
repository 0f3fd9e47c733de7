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
use serde_json::Value;

/// The figures of one `sample` line that the evaluation uses (bytes as floats).
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// Unix seconds.
    pub ts: f64,
    pub working_set: f64,
    /// `None` when the cgroup has no limit.
    pub limit: Option<f64>,
    pub file: f64,
    pub shmem: f64,
    /// The profiler's ETA to the limit, when it has one.
    pub eta: Option<f64>,
}

/// A `warning` line's level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Warning,
    Critical,
    Cleared,
}

impl Level {
    /// Whether this level means a warning is raised.
    fn raised(self) -> bool {
        !matches!(self, Level::Cleared)
    }
}

/// A `warning` line: the profiler's warning level changed.
#[derive(Clone, Debug, PartialEq)]
pub struct LevelChange {
    pub ts: f64,
    pub level: Level,
    pub eta: Option<f64>,
}

/// An `oom_kill` line.
#[derive(Clone, Debug, PartialEq)]
pub struct Kill {
    /// The kernel's time of the kill, Unix seconds.
    pub ts: f64,
    pub pid: u64,
    pub comm: String,
}

/// What the evaluation reads from one recording.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Trace {
    pub samples: Vec<Sample>,
    pub changes: Vec<LevelChange>,
    pub kills: Vec<Kill>,
    /// Whether the profiler forecasts at all: its samples carry `risk`/`eta_seconds`, or it
    /// printed a `warning` line. A profiler without a forecaster is not judged.
    pub forecaster: bool,
}

impl Trace {
    /// Parses the lines of `profiler watch --json`; lines of other types are skipped.
    pub fn parse<'a>(lines: impl IntoIterator<Item = &'a str>) -> Result<Self, String> {
        let mut trace = Trace::default();
        for (index, line) in lines.into_iter().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let at = |e: String| format!("line {}: {e}", index + 1);
            let value: Value =
                serde_json::from_str(line).map_err(|e| at(format!("not JSON ({e}): {line}")))?;
            match value["type"].as_str() {
                Some("sample") => {
                    if value.get("risk").is_some() || value.get("eta_seconds").is_some() {
                        trace.forecaster = true;
                    }
                    trace.samples.push(Sample {
                        ts: number(&value, "ts").map_err(at)?,
                        working_set: number(&value, "working_set_bytes").map_err(at)?,
                        limit: value["limit_bytes"].as_f64(),
                        file: value["file_bytes"].as_f64().unwrap_or(0.0),
                        shmem: value["shmem_bytes"].as_f64().unwrap_or(0.0),
                        eta: value["eta_seconds"].as_f64(),
                    });
                }
                Some("warning") => {
                    trace.forecaster = true;
                    let level = match value["level"].as_str() {
                        Some("warning") => Level::Warning,
                        Some("critical") => Level::Critical,
                        Some("cleared") => Level::Cleared,
                        other => return Err(at(format!("a warning line with level {other:?}"))),
                    };
                    trace.changes.push(LevelChange {
                        ts: number(&value, "ts").map_err(at)?,
                        level,
                        eta: value["eta_seconds"].as_f64(),
                    });
                }
                Some("oom_kill") => trace.kills.push(Kill {
                    ts: number(&value, "ts").map_err(at)?,
                    pid: value["pid"].as_u64().unwrap_or(0),
                    comm: value["comm"].as_str().unwrap_or("?").to_owned(),
                }),
                Some(_) => {}
                None => return Err(at(format!("no \"type\": {line}"))),
            }
        }
        Ok(trace)
    }
}

fn number(value: &Value, key: &str) -> Result<f64, String> {
    value[key]
        .as_f64()
        .ok_or_else(|| format!("a {} line without a number {key:?}", value["type"]))
}

/// The thresholds the detectors and the goals use.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
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

/// `predict_linear(working_set[window], horizon) > limit` at each sample: the least-squares
/// line through the samples with `ts` in `(t − window, t]` (at least two), taken at
/// `t + horizon`.
pub fn predict_linear_fires(samples: &[Sample], window: f64, horizon: f64) -> Vec<bool> {
    samples
        .iter()
        .map(|now| {
            let Some(limit) = now.limit else {
                return false;
            };
            let points: Vec<(f64, f64)> = samples
                .iter()
                .filter(|s| s.ts > now.ts - window && s.ts <= now.ts)
                .map(|s| (s.ts, s.working_set))
                .collect();
            predict(&points, now.ts + horizon).is_some_and(|value| value > limit)
        })
        .collect()
}

/// The least-squares line through `points`, taken at `x`; `None` with fewer than two distinct
/// x values.
fn predict(points: &[(f64, f64)], x: f64) -> Option<f64> {
    if points.len() < 2 {
        return None;
    }
    let n = points.len() as f64;
    let mean_x = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mean_x).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mean_x) * (p.1 - mean_y)).sum();
    (sxx > 0.0).then(|| mean_y + sxy / sxx * (x - mean_x))
}

/// `working_set > fraction × limit` at each sample.
pub fn above_fraction_fires(samples: &[Sample], fraction: f64) -> Vec<bool> {
    samples
        .iter()
        .map(|s| {
            s.limit
                .is_some_and(|limit| s.working_set > fraction * limit)
        })
        .collect()
}

/// How one detector did on one run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Detection {
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
pub struct Evaluation {
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
pub fn evaluate(trace: &Trace, growth_start: Option<f64>, settings: &Settings) -> Evaluation {
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

/// What a scenario must achieve (from the issue).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Goal {
    /// No OOM and no profiler warning at all.
    NoWarning,
    /// An OOM, warned at least as early as `predict_linear` and at least `MIN_LEAD_SHARE` of
    /// the ideal lead ahead, with an ETA error of at most `MAX_ETA_ERROR` then.
    EarlyAndAccurate,
    /// No warning is possible: the kill must be recorded.
    KillCaptured,
    /// No goal: the figures are reported.
    ReportOnly,
}

/// The least share of the ideal lead the first warning must give.
pub const MIN_LEAD_SHARE: f64 = 0.7;
/// The largest ETA error at the first warning.
pub const MAX_ETA_ERROR: f64 = 0.25;

/// Whether a run met its goal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Met,
    /// Not met, and why.
    Missed(String),
    /// Cannot be judged (the profiler has no forecaster yet).
    Unknown(String),
    /// The scenario has no goal.
    Report,
}

/// Judges one run against its scenario's goal.
pub fn judge(goal: Goal, evaluation: &Evaluation) -> Verdict {
    let oom = evaluation.kill.is_some();
    match goal {
        Goal::ReportOnly => Verdict::Report,
        Goal::KillCaptured if oom => Verdict::Met,
        Goal::KillCaptured => Verdict::Missed("no oom_kill line".to_owned()),
        Goal::NoWarning if oom => Verdict::Missed("OOM-killed (not expected)".to_owned()),
        Goal::EarlyAndAccurate if !oom => Verdict::Missed("no OOM kill".to_owned()),
        Goal::NoWarning | Goal::EarlyAndAccurate => {
            let Some(profiler) = &evaluation.profiler else {
                return Verdict::Unknown("no forecaster".to_owned());
            };
            if goal == Goal::NoWarning {
                return match profiler.warnings {
                    0 => Verdict::Met,
                    n => Verdict::Missed(format!("{n} warning line(s)")),
                };
            }
            let Some(lead) = profiler.lead else {
                return Verdict::Missed("no warning before the kill".to_owned());
            };
            let mut missed = Vec::new();
            if let Some(baseline) = evaluation.predict_linear.lead {
                if lead < baseline {
                    missed.push("later than predict_linear".to_owned());
                }
            }
            let ideal = evaluation.ideal_lead.unwrap_or(0.0);
            if lead < MIN_LEAD_SHARE * ideal {
                missed.push(format!(
                    "lead {:.0} % < {:.0} %",
                    100.0 * lead / ideal,
                    100.0 * MIN_LEAD_SHARE
                ));
            }
            match profiler.eta_error {
                None => missed.push("no ETA".to_owned()),
                Some(e) if e > MAX_ETA_ERROR => missed.push(format!(
                    "ETA error {:.0} % > {:.0} %",
                    100.0 * e,
                    100.0 * MAX_ETA_ERROR
                )),
                Some(_) => {}
            }
            if missed.is_empty() {
                Verdict::Met
            } else {
                Verdict::Missed(missed.join("; "))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: f64 = 1048576.0;
    const LIMIT: f64 = 100.0 * MIB;

    fn sample_line(ts: f64, working_set_mib: f64) -> String {
        format!(
            r#"{{"type":"sample","ts":{ts},"cgroup":"/c","usage_bytes":1,"working_set_bytes":{},"limit_bytes":{},"file_bytes":0,"shmem_bytes":0}}"#,
            working_set_mib * MIB,
            LIMIT
        )
    }

    fn sample(ts: f64, working_set_mib: f64) -> Sample {
        Sample {
            ts,
            working_set: working_set_mib * MIB,
            limit: Some(LIMIT),
            file: 0.0,
            shmem: 0.0,
            eta: None,
        }
    }

    fn warning_line(ts: f64, level: &str, eta: Option<f64>) -> String {
        let eta = eta.map_or("null".to_owned(), |e| e.to_string());
        format!(
            r#"{{"type":"warning","ts":{ts},"cgroup":"/c","level":"{level}","eta_seconds":{eta},"eta_low_seconds":null,"eta_high_seconds":null,"reason":"r"}}"#
        )
    }

    fn kill_line(ts: f64) -> String {
        format!(r#"{{"type":"oom_kill","ts":{ts},"cgroup":"/c","pid":42,"comm":"leak"}}"#)
    }

    fn parse(lines: &[String]) -> Trace {
        Trace::parse(lines.iter().map(String::as_str)).expect("a well-formed trace")
    }

    #[test]
    fn parses_samples_warnings_and_kills_and_skips_other_lines() {
        let lines = [
            r#"{"type":"watch_start","ts":0.5,"cgroup":"/c"}"#.to_owned(),
            sample_line(1.0, 10.0),
            warning_line(2.0, "warning", Some(30.0)),
            kill_line(3.5),
            r#"{"type":"end","ts":4,"cgroup":null,"reason":"signal"}"#.to_owned(),
        ];
        let trace = parse(&lines);
        assert_eq!(trace.samples, vec![sample(1.0, 10.0)]);
        assert_eq!(
            trace.changes,
            vec![LevelChange {
                ts: 2.0,
                level: Level::Warning,
                eta: Some(30.0)
            }]
        );
        assert_eq!(trace.kills.len(), 1);
        assert_eq!(trace.kills[0].comm, "leak");
        assert!(trace.forecaster);
    }

    #[test]
    fn a_profiler_without_forecast_fields_is_not_judged() {
        let trace = parse(&[sample_line(1.0, 10.0), kill_line(2.0)]);
        assert!(!trace.forecaster);
        let evaluation = evaluate(&trace, Some(0.0), &Settings::default());
        assert_eq!(evaluation.profiler, None);
        assert_eq!(
            judge(Goal::EarlyAndAccurate, &evaluation),
            Verdict::Unknown("no forecaster".to_owned())
        );
        assert_eq!(judge(Goal::KillCaptured, &evaluation), Verdict::Met);
    }

    #[test]
    fn bad_lines_are_errors_naming_the_line() {
        let error = Trace::parse(["{\"type\":\"sample\",\"ts\":1}", "oops"])
            .expect_err("a sample without working_set_bytes");
        assert!(error.starts_with("line 1:"), "{error}");
        let error = Trace::parse(["", "oops"]).expect_err("not JSON");
        assert!(error.starts_with("line 2:"), "{error}");
    }

    #[test]
    fn predict_linear_fires_when_the_extrapolation_crosses_the_limit() {
        // 1 MiB/s from 10 MiB: 60 s ahead is above 100 MiB once the working set is above 40.
        let samples: Vec<Sample> = (0..50)
            .map(|t| sample(f64::from(t), 10.0 + f64::from(t)))
            .collect();
        let fires = predict_linear_fires(&samples, 30.0, 60.0);
        assert!(!fires[0], "one sample is not a line");
        let first = fires.iter().position(|&f| f).expect("fires at some point");
        assert_eq!(
            first, 31,
            "10 + 31 + 60 = 101 > 100; 10 + 30 + 60 = 100 is not above"
        );
        assert!(fires[first..].iter().all(|&f| f));
    }

    #[test]
    fn a_flat_series_never_fires() {
        let samples: Vec<Sample> = (0..100).map(|t| sample(f64::from(t), 85.0)).collect();
        assert!(predict_linear_fires(&samples, 30.0, 60.0)
            .iter()
            .all(|&f| !f));
        assert!(above_fraction_fires(&samples, 0.9).iter().all(|&f| !f));
    }

    #[test]
    fn predict_linear_only_uses_the_window() {
        // A fast rise long ago, flat for the last 30 s: the window sees a flat line.
        let mut samples: Vec<Sample> = (0..10)
            .map(|t| sample(f64::from(t), 8.0 * f64::from(t)))
            .collect();
        samples.extend((10..60).map(|t| sample(f64::from(t), 80.0)));
        let fires = predict_linear_fires(&samples, 30.0, 60.0);
        assert!(fires[5], "rising 8 MiB/s at 40 MiB");
        assert!(!fires[59], "the last 30 s are flat");
    }

    #[test]
    fn above_fraction_fires_above_90_percent_only() {
        let samples = [sample(0.0, 90.0), sample(1.0, 90.5)];
        assert_eq!(above_fraction_fires(&samples, 0.9), vec![false, true]);
    }

    /// A linear leak: 10 MiB flat until 20 s, then 1 MiB/s; killed at 110 s (100 MiB).
    fn linear_leak(extra: &[String]) -> Trace {
        let mut lines: Vec<String> = (0..=110)
            .map(|t| {
                let t = f64::from(t);
                sample_line(t, 10.0 + (t - 20.0).max(0.0))
            })
            .collect();
        lines.extend_from_slice(extra);
        lines.push(kill_line(110.0));
        parse(&lines)
    }

    #[test]
    fn leads_eta_error_and_goal_on_a_linear_leak() {
        // Warned 55 s before the kill with an ETA of 50 s: 9 % off.
        let trace = linear_leak(&[
            warning_line(55.0, "warning", Some(50.0)),
            warning_line(95.0, "critical", Some(15.0)),
        ]);
        let evaluation = evaluate(&trace, Some(20.0), &Settings::default());
        assert_eq!(evaluation.growth_to_kill, Some(90.0));
        assert_eq!(evaluation.ideal_lead, Some(60.0));
        let profiler = evaluation.profiler.clone().expect("a forecaster");
        assert_eq!(profiler.lead, Some(55.0));
        let error = profiler.eta_error.expect("an ETA");
        assert!((error - 5.0 / 55.0).abs() < 1e-9, "{error}");
        assert_eq!((profiler.warnings, profiler.false_warnings), (2, 0));
        // predict_linear: 10 + (t − 20) + 60 > 100 from t = 51 on.
        assert_eq!(evaluation.predict_linear.lead, Some(59.0));
        assert_eq!(evaluation.predict_linear.warnings, 1);
        // 90 %: above 90 MiB from t = 101.
        assert_eq!(evaluation.above_fraction.lead, Some(9.0));
        assert_eq!(
            judge(Goal::EarlyAndAccurate, &evaluation),
            Verdict::Missed("later than predict_linear".to_owned())
        );
    }

    #[test]
    fn an_early_accurate_warning_meets_the_goal() {
        let trace = linear_leak(&[warning_line(50.0, "warning", Some(62.0))]);
        let evaluation = evaluate(&trace, Some(20.0), &Settings::default());
        assert_eq!(
            evaluation.profiler.as_ref().and_then(|p| p.lead),
            Some(60.0)
        );
        assert_eq!(judge(Goal::EarlyAndAccurate, &evaluation), Verdict::Met);
    }

    #[test]
    fn a_late_or_wrong_warning_misses_the_goal() {
        let trace = linear_leak(&[warning_line(80.0, "warning", Some(90.0))]);
        let evaluation = evaluate(&trace, Some(20.0), &Settings::default());
        assert_eq!(
            judge(Goal::EarlyAndAccurate, &evaluation),
            Verdict::Missed(
                "later than predict_linear; lead 50 % < 70 %; ETA error 200 % > 25 %".to_owned()
            )
        );
        let trace = linear_leak(&[]);
        let evaluation = evaluate(&trace, Some(20.0), &Settings::default());
        assert_eq!(evaluation.profiler, None, "no warning line, no eta field");
    }

    #[test]
    fn warnings_before_the_growth_start_are_false() {
        let trace = linear_leak(&[
            warning_line(5.0, "warning", Some(40.0)),
            warning_line(8.0, "cleared", None),
            warning_line(60.0, "warning", Some(50.0)),
        ]);
        let evaluation = evaluate(&trace, Some(20.0), &Settings::default());
        let profiler = evaluation.profiler.expect("a forecaster");
        assert_eq!(profiler.false_warnings, 1);
        assert_eq!(profiler.warnings, 2);
        assert_eq!(
            profiler.lead,
            Some(50.0),
            "the first warning after the growth start"
        );
    }

    #[test]
    fn a_warning_raised_before_the_growth_start_counts_from_the_growth_start() {
        let mut trace = linear_leak(&[warning_line(15.0, "warning", Some(100.0))]);
        for s in &mut trace.samples {
            s.eta = Some(110.0 - s.ts);
        }
        let evaluation = evaluate(&trace, Some(20.0), &Settings::default());
        let profiler = evaluation.profiler.expect("a forecaster");
        assert_eq!(profiler.lead, Some(90.0));
        assert_eq!(profiler.false_warnings, 1);
        assert_eq!(
            profiler.eta_error,
            Some(0.0),
            "the sample's ETA at the growth start"
        );
    }

    #[test]
    fn without_a_kill_every_warning_is_false_and_there_is_no_lead() {
        let mut lines: Vec<String> = (0..90)
            .map(|t| sample_line(f64::from(t), if t % 6 < 5 { 88.0 } else { 40.0 }))
            .collect();
        lines.push(warning_line(30.0, "warning", Some(50.0)));
        lines.push(warning_line(31.0, "critical", Some(10.0)));
        lines.push(warning_line(40.0, "cleared", None));
        let evaluation = evaluate(&parse(&lines), Some(0.0), &Settings::default());
        assert_eq!(evaluation.kill, None);
        assert_eq!(evaluation.ideal_lead, None);
        let profiler = evaluation.profiler.clone().expect("a forecaster");
        assert_eq!((profiler.lead, profiler.false_warnings), (None, 2));
        assert_eq!(evaluation.above_fraction.warnings, 0);
        assert_eq!(
            judge(Goal::NoWarning, &evaluation),
            Verdict::Missed("2 warning line(s)".to_owned())
        );
        assert!((evaluation.peak_working_set.expect("samples") - 0.88).abs() < 1e-9);
    }

    #[test]
    fn baseline_alerts_are_counted_once_per_firing() {
        // Above 90 % three times in a no-OOM run: three false alerts, however long each is.
        let lines: Vec<String> = (0..30)
            .map(|t| sample_line(f64::from(t), if t % 10 < 4 { 95.0 } else { 50.0 }))
            .collect();
        let evaluation = evaluate(&parse(&lines), None, &Settings::default());
        assert_eq!(evaluation.above_fraction.false_warnings, 3);
    }

    #[test]
    fn a_spike_is_only_judged_on_the_kill() {
        let lines = [
            sample_line(0.0, 10.0),
            sample_line(1.0, 10.0),
            kill_line(1.2),
        ];
        let evaluation = evaluate(&parse(&lines), Some(1.1), &Settings::default());
        let ideal = evaluation.ideal_lead.expect("a kill");
        assert!((ideal - 0.1).abs() < 1e-9);
        assert_eq!(judge(Goal::KillCaptured, &evaluation), Verdict::Met);
        assert_eq!(judge(Goal::ReportOnly, &evaluation), Verdict::Report);
    }
}
