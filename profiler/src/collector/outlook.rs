//! What lies ahead for one watched cgroup: the forecast of its OOM kill from its samples, and
//! the warning level that follows from it, with what the summary reports of both.
use crate::forecast::{
    risk::{Change, Risk, RiskTracker, Thresholds},
    Forecast, Forecaster, Observation,
};

/// The forecast and warning level of one watched cgroup.
#[derive(Debug)]
pub(super) struct Outlook {
    /// Time to the kill, from the samples.
    forecaster: Forecaster,
    /// Warning level, from the forecasts.
    risk: RiskTracker,
    /// Warnings raised so far.
    warnings_raised: u64,
    /// Highest level reached.
    worst: Risk,
}

impl Outlook {
    /// A cgroup not yet seen: learning, level `ok`.
    pub(super) fn new() -> Self {
        Self {
            forecaster: Forecaster::new(),
            risk: RiskTracker::default(),
            warnings_raised: 0,
            worst: Risk::Ok,
        }
    }

    /// Takes one observation: the forecast it gives, and the change of level, if any.
    pub(super) fn observe(
        &mut self,
        observation: Observation,
        thresholds: &Thresholds,
    ) -> (Forecast, Option<Change>) {
        let forecast = self.forecaster.observe(observation);
        let change = self.risk.update(observation.t, &forecast, thresholds);
        if let Some(c) = change {
            if c.to > c.from {
                self.warnings_raised += 1;
            }
            self.worst = self.worst.max(c.to);
        }
        (forecast, change)
    }

    /// A process was killed: what the forecast followed is gone, it starts over.
    pub(super) fn restart_forecast(&mut self) {
        self.forecaster.reset();
    }

    /// The warning level now.
    pub(super) fn level(&self) -> Risk {
        self.risk.level()
    }

    /// Warnings raised so far (`warning` or `critical`).
    pub(super) fn warnings_raised(&self) -> u64 {
        self.warnings_raised
    }

    /// The highest level reached.
    pub(super) fn worst(&self) -> Risk {
        self.worst
    }
}
