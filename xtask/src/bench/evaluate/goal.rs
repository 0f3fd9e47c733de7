//! What each scenario must achieve, and whether a run did.
use super::Evaluation;

/// What a scenario must achieve (from the issue).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Goal {
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

impl Goal {
    /// What it asks, for the line under the table.
    pub(crate) fn describe(self) -> String {
        match self {
            Goal::NoWarning => "no profiler warning at all".to_owned(),
            Goal::EarlyAndAccurate => format!(
                "lead ≥ predict_linear's and ≥ {:.0} % of ideal, ETA error ≤ {:.0} %",
                100.0 * MIN_LEAD_SHARE,
                100.0 * MAX_ETA_ERROR
            ),
            Goal::KillCaptured => "the kill is recorded".to_owned(),
            Goal::ReportOnly => "figures only".to_owned(),
        }
    }
}

/// The least share of the ideal lead the first warning must give.
pub(super) const MIN_LEAD_SHARE: f64 = 0.7;
/// The largest ETA error at the first warning.
pub(super) const MAX_ETA_ERROR: f64 = 0.25;

/// Whether a run met its goal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    Met,
    /// Not met, and why.
    Missed(String),
    /// Cannot be judged (the profiler has no forecaster yet).
    Unknown(String),
    /// The scenario has no goal.
    Report,
}

/// Judges one run against its scenario's goal.
pub(crate) fn judge(goal: Goal, evaluation: &Evaluation) -> Verdict {
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
