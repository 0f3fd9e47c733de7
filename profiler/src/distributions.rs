//! Per-container distributions over a watch (HDR histograms): what a container usually needs,
//! and what it needs at worst, for the `summary` line and the live view.
use hdrhistogram::Histogram;
use serde::Serialize;

/// Two significant digits: 1 % precision at any magnitude, a few KiB per histogram.
const SIGFIG: u8 = 2;

/// p50/p90/p99/max of one figure.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub(crate) struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest value seen.
    pub max: f64,
}

/// One figure's histogram, recorded in `unit`s (bytes are kept in KiB so the histogram stays
/// small; percentiles are given back in the figure's own unit).
#[derive(Debug)]
struct Figure {
    histogram: Histogram<u32>,
    unit: f64,
}

impl Figure {
    fn new(unit: f64) -> Self {
        let histogram = Histogram::new(SIGFIG).unwrap_or_else(|_| unreachable_sigfig());
        Self { histogram, unit }
    }

    fn record(&mut self, value: f64) {
        if !value.is_finite() || value < 0.0 {
            return;
        }
        let scaled = (value / self.unit).round() as u64;
        // The histogram grows to hold the value (counts saturate at u32::MAX: 136 years at
        // 1 s); only a value beyond what it can ever hold fails.
        if let Err(e) = self.histogram.record(scaled) {
            log::debug!("value {value} not recorded: {e}");
        }
    }

    fn percentiles(&self) -> Option<Percentiles> {
        if self.histogram.is_empty() {
            return None;
        }
        let at = |q: f64| self.histogram.value_at_quantile(q) as f64 * self.unit;
        Some(Percentiles {
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
            max: self.histogram.max() as f64 * self.unit,
        })
    }
}

/// `Histogram::new` fails only for a precision outside 0..=5.
#[cold]
fn unreachable_sigfig() -> Histogram<u32> {
    panic!("hdrhistogram rejected {SIGFIG} significant digits")
}

/// The histograms of one container.
#[derive(Debug)]
pub(crate) struct Distributions {
    usage: Figure,
    working_set: Figure,
    unreclaimable: Figure,
    charge_rate: Figure,
    reclaim_stall: Figure,
    samples: u64,
}

impl Default for Distributions {
    fn default() -> Self {
        Self {
            usage: Figure::new(1024.0),
            working_set: Figure::new(1024.0),
            unreclaimable: Figure::new(1024.0),
            charge_rate: Figure::new(1.0),
            reclaim_stall: Figure::new(1.0),
            samples: 0,
        }
    }
}

/// What one sample adds.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct SampleFigures {
    /// Bytes.
    pub usage: u64,
    /// Bytes.
    pub working_set: u64,
    /// Bytes.
    pub unreclaimable: u64,
    /// Bytes per second (charge path modes only).
    pub charge_rate: Option<f64>,
    /// Microseconds stalled in reclaim per second of the interval (charge path modes only).
    pub reclaim_stall_us_per_s: Option<f64>,
}

/// The `summary` of one container.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub(crate) struct Summary {
    /// Samples taken.
    pub samples: u64,
    /// Usage, bytes.
    pub usage_bytes: Option<Percentiles>,
    /// Working set, bytes.
    pub working_set_bytes: Option<Percentiles>,
    /// Unreclaimable memory, bytes.
    pub unreclaimable_bytes: Option<Percentiles>,
    /// Charge rate, bytes per second.
    pub charge_rate_bytes_per_s: Option<Percentiles>,
    /// Time stalled in memcg reclaim, microseconds per second.
    pub reclaim_stall_us_per_s: Option<Percentiles>,
}

impl Distributions {
    /// Records one sample.
    pub(crate) fn record(&mut self, s: SampleFigures) {
        self.samples += 1;
        self.usage.record(s.usage as f64);
        self.working_set.record(s.working_set as f64);
        self.unreclaimable.record(s.unreclaimable as f64);
        if let Some(rate) = s.charge_rate {
            self.charge_rate.record(rate);
        }
        if let Some(stall) = s.reclaim_stall_us_per_s {
            self.reclaim_stall.record(stall);
        }
    }

    /// The percentiles so far.
    pub(crate) fn summary(&self) -> Summary {
        Summary {
            samples: self.samples,
            usage_bytes: self.usage.percentiles(),
            working_set_bytes: self.working_set.percentiles(),
            unreclaimable_bytes: self.unreclaimable.percentiles(),
            charge_rate_bytes_per_s: self.charge_rate.percentiles(),
            reclaim_stall_us_per_s: self.reclaim_stall.percentiles(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_within_one_percent() {
        let mut d = Distributions::default();
        for i in 1..=1000u64 {
            d.record(SampleFigures {
                usage: i << 20,
                working_set: i << 20,
                unreclaimable: (i << 20) / 2,
                charge_rate: Some(1000.0),
                reclaim_stall_us_per_s: None,
            });
        }
        let s = d.summary();
        assert_eq!(s.samples, 1000);
        let usage = s.usage_bytes.expect("recorded");
        let close = |got: f64, want: f64| (got - want).abs() <= want * 0.01;
        assert!(close(usage.p50, 500.0 * 1048576.0), "{usage:?}");
        assert!(close(usage.p90, 900.0 * 1048576.0), "{usage:?}");
        assert!(close(usage.p99, 990.0 * 1048576.0), "{usage:?}");
        assert!(close(usage.max, 1000.0 * 1048576.0), "{usage:?}");
        assert!(s.reclaim_stall_us_per_s.is_none());
        let rate = s.charge_rate_bytes_per_s.expect("recorded");
        assert!(close(rate.max, 1000.0), "{rate:?}");
    }

    #[test]
    fn empty_and_odd_values() {
        let mut d = Distributions::default();
        assert_eq!(d.summary().usage_bytes, None);
        d.record(SampleFigures {
            charge_rate: Some(f64::NAN),
            reclaim_stall_us_per_s: Some(-1.0),
            ..SampleFigures::default()
        });
        let s = d.summary();
        assert_eq!(s.usage_bytes.map(|p| p.max), Some(0.0));
        assert!(s.charge_rate_bytes_per_s.is_none());
    }
}
