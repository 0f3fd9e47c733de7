//! The two baselines the profiler is compared with, computed at each `sample`: Prometheus-style
//! `predict_linear(working_set[window], horizon) > limit`, and `working_set > fraction × limit`.
use super::Sample;

/// `predict_linear(working_set[window], horizon) > limit` at each sample: the least-squares
/// line through the samples with `ts` in `(t − window, t]` (at least two), taken at
/// `t + horizon`.
pub(crate) fn predict_linear_fires(samples: &[Sample], window: f64, horizon: f64) -> Vec<bool> {
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
pub(crate) fn above_fraction_fires(samples: &[Sample], fraction: f64) -> Vec<bool> {
    samples
        .iter()
        .map(|s| {
            s.limit
                .is_some_and(|limit| s.working_set > fraction * limit)
        })
        .collect()
}
