//! The evaluation on small hand-made traces.
use super::trace::{Level, LevelChange};
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
