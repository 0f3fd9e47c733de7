//! The forecaster replayed on traces recorded by `cargo xtask bench forecast` (real workloads
//! in real memory cgroups on the kernel), kept in `profiler/testdata/forecast/`.
//!
//! Each file: `#` lines with `key=value` facts (`kill_at` seconds, or `no_oom`;
//! `growth_start` seconds), then `t,unreclaimable_bytes,limit_bytes` per sample.
use std::{fs, path::PathBuf};

use super::{
    risk::{Risk, RiskTracker, Thresholds},
    Forecaster, Observation,
};

const T: Thresholds = Thresholds {
    warn_s: 60.0,
    critical_s: 15.0,
};

struct Trace {
    name: String,
    kill_at: Option<f64>,
    growth_start: f64,
    samples: Vec<(f64, u64, u64)>,
}

fn traces() -> Vec<Trace> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata/forecast");
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "csv"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|path| {
            let text =
                fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let mut trace = Trace {
                name: path
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                kill_at: None,
                growth_start: 0.0,
                samples: Vec::new(),
            };
            for line in text.lines() {
                if let Some(fact) = line.strip_prefix('#') {
                    for word in fact.split_whitespace() {
                        match word.split_once('=') {
                            Some(("kill_at", v)) => trace.kill_at = v.parse().ok(),
                            Some(("growth_start", v)) => {
                                trace.growth_start = v.parse().unwrap_or(0.0)
                            }
                            _ => {}
                        }
                    }
                    continue;
                }
                let fields: Vec<&str> = line.split(',').collect();
                if let [t, u, l] = fields[..] {
                    if let (Ok(t), Ok(u), Ok(l)) = (t.parse(), u.parse(), l.parse()) {
                        trace.samples.push((t, u, l));
                    }
                }
            }
            assert!(trace.samples.len() > 10, "{}: too few samples", trace.name);
            trace
        })
        .collect()
}

/// The first raised level and the forecast then: `(t, eta)`.
fn first_warning(trace: &Trace) -> Option<(f64, f64)> {
    let mut forecaster = Forecaster::new();
    let mut risk = RiskTracker::default();
    for &(t, unreclaimable, limit) in &trace.samples {
        if trace.kill_at.is_some_and(|k| t >= k) {
            break;
        }
        let forecast = forecaster.observe(Observation {
            t,
            unreclaimable,
            limit: Some(limit),
            reclaim_stall_us: None,
            limit_hits: None,
            psi_some_avg10: None,
            reach: None,
            swap: None,
        });
        if let Some(change) = risk.update(t, &forecast, &T) {
            if change.to > Risk::Ok && change.from == Risk::Ok {
                return Some((t, forecast.eta_s.unwrap_or(f64::NAN)));
            }
        }
    }
    None
}

#[test]
fn recorded_scenarios() {
    let traces = traces();
    assert!(!traces.is_empty());
    for trace in &traces {
        let warned = first_warning(trace);
        match trace.kill_at {
            None => assert_eq!(warned, None, "{}: no OOM, yet warned", trace.name),
            Some(kill) if trace.name.contains("spike") => {
                // Twice the limit at once: no warning is possible, and none is made early.
                if let Some((t, _)) = warned {
                    assert!(
                        t >= trace.growth_start,
                        "{}: warned before growth",
                        trace.name
                    );
                }
                let _ = kill;
            }
            Some(kill) => {
                let (t, eta) =
                    warned.unwrap_or_else(|| panic!("{}: no warning before the kill", trace.name));
                let ideal = (kill - trace.growth_start).min(T.warn_s);
                let lead = kill - t;
                assert!(
                    t >= trace.growth_start,
                    "{}: warned before growth started",
                    trace.name
                );
                assert!(
                    lead >= 0.7 * ideal,
                    "{}: lead {lead:.1}s of ideal {ideal:.1}s",
                    trace.name
                );
                let error = (eta - lead).abs() / lead;
                eprintln!(
                    "{}: warned {lead:.1}s before the kill ({:.0}% of the ideal {ideal:.1}s), eta {eta:.1}s ({:.0}% off)",
                    trace.name,
                    100.0 * lead / ideal,
                    100.0 * error
                );
                assert!(
                    error <= 0.25,
                    "{}: eta {eta:.1}s, kill {lead:.1}s later",
                    trace.name
                );
            }
        }
    }
}
