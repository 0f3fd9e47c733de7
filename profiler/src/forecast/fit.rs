//! Least-squares fits of a memory series against time, with the uncertainty of their slope:
//! the forecaster warns only on growth that is significant, not on noise.
//!
//! Times are taken relative to the newest point, so every fit's value "now" is its constant
//! term, and the normal equations stay well conditioned however large Unix times are.

/// A straight line fitted to `(t, value)` points.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct LineFit {
    /// Bytes per second.
    pub slope: f64,
    /// Standard error of the slope (0 when the points lie exactly on the line).
    pub slope_se: f64,
    /// The line's value at the newest point's time.
    pub now: f64,
    /// Number of points.
    pub n: usize,
}

impl LineFit {
    /// How many standard errors the slope is above zero (infinite for an exact line).
    pub(crate) fn t_stat(&self) -> f64 {
        if self.slope_se > 0.0 {
            self.slope / self.slope_se
        } else if self.slope > 0.0 {
            f64::INFINITY
        } else {
            0.0
        }
    }
}

/// A parabola `now + b·τ + c·τ²` (τ: seconds after the newest point).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct QuadFit {
    /// Value at the newest point's time.
    pub now: f64,
    /// Slope at the newest point's time, bytes per second.
    pub b: f64,
    /// Half the acceleration, bytes per second².
    pub c: f64,
    /// Standard error of `c`.
    pub c_se: f64,
}

/// Fits a line; `None` with fewer than 3 points or no spread in time.
pub(crate) fn fit_line(points: &[(f64, f64)]) -> Option<LineFit> {
    let n = points.len();
    let &(t_now, _) = points.last()?;
    if n < 3 {
        return None;
    }
    let nf = n as f64;
    let (sx, sy) = points
        .iter()
        .fold((0.0, 0.0), |(sx, sy), &(t, v)| (sx + (t - t_now), sy + v));
    let (mx, my) = (sx / nf, sy / nf);
    let (sxx, sxy) = points.iter().fold((0.0, 0.0), |(sxx, sxy), &(t, v)| {
        let dx = t - t_now - mx;
        (sxx + dx * dx, sxy + dx * (v - my))
    });
    if sxx <= f64::EPSILON {
        return None;
    }
    let slope = sxy / sxx;
    let intercept = my - slope * mx;
    let sse: f64 = points
        .iter()
        .map(|&(t, v)| {
            let r = v - (intercept + slope * (t - t_now));
            r * r
        })
        .sum();
    let slope_se = (sse / (nf - 2.0) / sxx).sqrt();
    Some(LineFit {
        slope,
        slope_se,
        now: intercept,
        n,
    })
}

/// Fits a parabola; `None` with fewer than 5 points or a degenerate spread in time.
pub(crate) fn fit_quadratic(points: &[(f64, f64)]) -> Option<QuadFit> {
    let n = points.len();
    let &(t_now, _) = points.last()?;
    if n < 5 {
        return None;
    }
    // Scale τ to about [-1, 0] so the 3×3 system is well conditioned.
    let span = (t_now - points[0].0).max(f64::EPSILON);
    let mut m = [[0.0f64; 3]; 3];
    let mut r = [0.0f64; 3];
    for &(t, v) in points {
        let x = (t - t_now) / span;
        let row = [1.0, x, x * x];
        for i in 0..3 {
            for j in 0..3 {
                m[i][j] += row[i] * row[j];
            }
            r[i] += row[i] * v;
        }
    }
    let inverse = invert3(&m)?;
    let coef: Vec<f64> = (0..3)
        .map(|i| (0..3).map(|j| inverse[i][j] * r[j]).sum())
        .collect();
    let sse: f64 = points
        .iter()
        .map(|&(t, v)| {
            let x = (t - t_now) / span;
            let e = v - (coef[0] + coef[1] * x + coef[2] * x * x);
            e * e
        })
        .sum();
    let sigma2 = sse / (n as f64 - 3.0);
    let c_se = (sigma2 * inverse[2][2]).max(0.0).sqrt();
    Some(QuadFit {
        now: coef[0],
        b: coef[1] / span,
        c: coef[2] / (span * span),
        c_se: c_se / (span * span),
    })
}

fn invert3(m: &[[f64; 3]; 3]) -> Option<[[f64; 3]; 3]> {
    let det = m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
        - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
        + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]);
    if det.abs() < 1e-12 {
        return None;
    }
    let mut inv = [[0.0; 3]; 3];
    for (i, row) in inv.iter_mut().enumerate() {
        for (j, cell) in row.iter_mut().enumerate() {
            // Cofactor of (j, i), for the adjugate.
            let (r0, r1) = ((j + 1) % 3, (j + 2) % 3);
            let (c0, c1) = ((i + 1) % 3, (i + 2) % 3);
            *cell = (m[r0][c0] * m[r1][c1] - m[r0][c1] * m[r1][c0]) / det;
        }
    }
    Some(inv)
}

/// Seconds until a line at `now` rising by `slope` per second reaches `target`.
pub(crate) fn line_eta(now: f64, slope: f64, target: f64) -> Option<f64> {
    if now >= target {
        return Some(0.0);
    }
    (slope > 0.0).then(|| (target - now) / slope)
}

/// Seconds until `now + b·τ + c·τ²` reaches `target` (the first τ ≥ 0).
pub(crate) fn quadratic_eta(fit: &QuadFit, target: f64) -> Option<f64> {
    if fit.now >= target {
        return Some(0.0);
    }
    let gap = target - fit.now;
    if fit.c.abs() < f64::EPSILON {
        return line_eta(fit.now, fit.b, target);
    }
    let disc = fit.b * fit.b + 4.0 * fit.c * gap;
    if disc < 0.0 {
        return None;
    }
    let root = (-fit.b + disc.sqrt()) / (2.0 * fit.c);
    (root >= 0.0).then_some(root)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(f: impl Fn(f64) -> f64, n: usize) -> Vec<(f64, f64)> {
        (0..n).map(|i| (1e9 + i as f64, f(i as f64))).collect()
    }

    #[test]
    fn exact_line() {
        let fit = fit_line(&series(|t| 100.0 + 5.0 * t, 20)).expect("fit");
        assert!((fit.slope - 5.0).abs() < 1e-9, "{fit:?}");
        assert!((fit.now - 195.0).abs() < 1e-6, "{fit:?}");
        assert!(fit.slope_se < 1e-6);
        assert_eq!(fit.t_stat(), f64::INFINITY);
    }

    #[test]
    fn noise_is_not_significant() {
        // Alternating ±10 around a constant: no trend.
        let fit = fit_line(&series(
            |t| 1000.0 + if t as i64 % 2 == 0 { 10.0 } else { -10.0 },
            30,
        ))
        .expect("fit");
        assert!(fit.t_stat() < 2.0, "{fit:?}");
    }

    #[test]
    fn parabola() {
        let fit = fit_quadratic(&series(|t| 50.0 + 2.0 * t + 0.5 * t * t, 30)).expect("fit");
        // At t = 29: value 50 + 58 + 420.5 = 528.5, slope 2 + 29 = 31, c = 0.5.
        assert!((fit.now - 528.5).abs() < 1e-6, "{fit:?}");
        assert!((fit.b - 31.0).abs() < 1e-6, "{fit:?}");
        assert!((fit.c - 0.5).abs() < 1e-9, "{fit:?}");
        // Reaches 528.5 + 31·10 + 0.5·100 = 888.5 ten seconds on.
        let eta = quadratic_eta(&fit, 888.5).expect("eta");
        assert!((eta - 10.0).abs() < 1e-6, "{eta}");
    }

    #[test]
    fn etas() {
        assert_eq!(line_eta(10.0, 2.0, 30.0), Some(10.0));
        assert_eq!(line_eta(10.0, 0.0, 30.0), None);
        assert_eq!(line_eta(10.0, -1.0, 30.0), None);
        assert_eq!(line_eta(40.0, -1.0, 30.0), Some(0.0));
        let falling = QuadFit {
            now: 10.0,
            b: -1.0,
            c: -0.1,
            c_se: 0.0,
        };
        assert_eq!(quadratic_eta(&falling, 30.0), None);
    }

    #[test]
    fn too_few_points() {
        assert!(fit_line(&series(|t| t, 2)).is_none());
        assert!(fit_quadratic(&series(|t| t, 4)).is_none());
        assert!(fit_line(&[(5.0, 1.0), (5.0, 2.0), (5.0, 3.0)]).is_none());
    }
}
