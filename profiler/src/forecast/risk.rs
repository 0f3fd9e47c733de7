//! Warning levels from the forecast, with hysteresis: a level is raised at once, and lowered
//! only after the forecast has stayed well clear of its threshold for several samples, so a
//! forecast hovering at a threshold does not flap.
use serde::Serialize;

use super::Forecast;

/// Samples the forecast must stay clear before a level is lowered...
pub(crate) const CALM_SAMPLES: u32 = 5;
/// ...and for at least this share of the level's threshold (15 s for a 60 s warning): a
/// forecast that wavers between two models must not clear a warning and raise it again.
pub(crate) const CALM_SHARE: f64 = 0.25;
/// "Clear" means an ETA this many times the level's threshold, or none.
pub(crate) const CALM_FACTOR: f64 = 1.5;

/// How close a container is to its OOM kill.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Risk {
    /// No kill forecast within the warning threshold.
    #[default]
    Ok,
    /// A kill is forecast within `--warn`.
    Warning,
    /// A kill is forecast within `--critical`.
    Critical,
}

/// The ETA thresholds of the two levels, seconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Thresholds {
    /// `--warn`.
    pub warn_s: f64,
    /// `--critical`.
    pub critical_s: f64,
}

impl Thresholds {
    fn of(&self, risk: Risk) -> f64 {
        match risk {
            Risk::Ok => f64::INFINITY,
            Risk::Warning => self.warn_s,
            Risk::Critical => self.critical_s,
        }
    }

    fn wanted(&self, forecast: &Forecast) -> Risk {
        match forecast.eta_s {
            _ if forecast.learning => Risk::Ok,
            Some(eta) if eta <= self.critical_s => Risk::Critical,
            Some(eta) if eta <= self.warn_s => Risk::Warning,
            _ => Risk::Ok,
        }
    }
}

/// A change of level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Change {
    /// The level before.
    pub from: Risk,
    /// The level now.
    pub to: Risk,
}

/// The level of one container.
#[derive(Clone, Debug, Default)]
pub(crate) struct RiskTracker {
    level: Risk,
    calm: u32,
    calm_since: f64,
}

impl RiskTracker {
    /// The current level.
    pub(crate) fn level(&self) -> Risk {
        self.level
    }

    /// Takes the forecast made at `now` (seconds); returns the change of level, if any.
    pub(crate) fn update(
        &mut self,
        now: f64,
        forecast: &Forecast,
        thresholds: &Thresholds,
    ) -> Option<Change> {
        let wanted = thresholds.wanted(forecast);
        let from = self.level;
        if wanted > self.level {
            self.level = wanted;
            self.calm = 0;
            return Some(Change { from, to: wanted });
        }
        if wanted == self.level {
            self.calm = 0;
            return None;
        }
        let clear = forecast.learning
            || forecast
                .eta_s
                .is_none_or(|eta| eta > thresholds.of(self.level) * CALM_FACTOR);
        if !clear {
            self.calm = 0;
            return None;
        }
        if self.calm == 0 {
            self.calm_since = now;
        }
        self.calm += 1;
        let long_enough = now - self.calm_since >= thresholds.of(self.level) * CALM_SHARE;
        if self.calm < CALM_SAMPLES || !long_enough {
            return None;
        }
        self.calm = 0;
        self.level = wanted;
        Some(Change { from, to: wanted })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Thresholds = Thresholds {
        warn_s: 60.0,
        critical_s: 15.0,
    };

    /// A tracker fed one forecast per second.
    #[derive(Default)]
    struct Clocked {
        tracker: RiskTracker,
        now: f64,
    }

    impl Clocked {
        fn update(&mut self, f: &Forecast, t: &Thresholds) -> Option<Change> {
            self.now += 1.0;
            self.tracker.update(self.now, f, t)
        }

        fn level(&self) -> Risk {
            self.tracker.level()
        }
    }

    fn eta(seconds: Option<f64>) -> Forecast {
        Forecast {
            eta_s: seconds,
            ..Forecast::default()
        }
    }

    #[test]
    fn raised_at_once_lowered_after_calm() {
        let mut r = Clocked::default();
        assert_eq!(r.update(&eta(Some(300.0)), &T), None);
        assert_eq!(
            r.update(&eta(Some(50.0)), &T),
            Some(Change {
                from: Risk::Ok,
                to: Risk::Warning
            })
        );
        assert_eq!(
            r.update(&eta(Some(10.0)), &T),
            Some(Change {
                from: Risk::Warning,
                to: Risk::Critical
            })
        );
        // Just above the critical threshold, not clear of it: stays critical.
        for _ in 0..20 {
            assert_eq!(r.update(&eta(Some(20.0)), &T), None);
        }
        assert_eq!(r.level(), Risk::Critical);
        // Clear of it (> 22.5 s) for five samples: down to warning.
        for _ in 0..CALM_SAMPLES - 1 {
            assert_eq!(r.update(&eta(Some(40.0)), &T), None);
        }
        assert_eq!(
            r.update(&eta(Some(40.0)), &T),
            Some(Change {
                from: Risk::Critical,
                to: Risk::Warning
            })
        );
        // No risk in sight: cleared after 15 s (a quarter of the 60 s threshold).
        for _ in 0..15 {
            assert_eq!(r.update(&eta(None), &T), None);
        }
        assert_eq!(
            r.update(&eta(None), &T),
            Some(Change {
                from: Risk::Warning,
                to: Risk::Ok
            })
        );
    }

    #[test]
    fn a_forecast_hovering_at_the_threshold_does_not_flap() {
        let mut r = Clocked::default();
        let mut changes = 0;
        for i in 0..100 {
            let seconds = if i % 2 == 0 { 58.0 } else { 63.0 };
            changes += usize::from(r.update(&eta(Some(seconds)), &T).is_some());
        }
        assert_eq!(changes, 1);
        // A calm streak broken before it is long enough starts over.
        for i in 0..50 {
            let seconds = if i % 4 == 3 { Some(70.0) } else { None };
            changes += usize::from(r.update(&eta(seconds), &T).is_some());
        }
        assert_eq!(changes, 1);
    }

    #[test]
    fn learning_never_raises() {
        let mut r = Clocked::default();
        let learning = Forecast {
            eta_s: Some(1.0),
            learning: true,
            ..Forecast::default()
        };
        assert_eq!(r.update(&learning, &T), None);
        assert_eq!(r.level(), Risk::Ok);
    }
}
