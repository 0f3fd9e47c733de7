//! The forecaster on series of known shape: what it must say, and what it must never say.
use super::{
    risk::{Risk, RiskTracker, Thresholds},
    Forecast, Forecaster, Observation,
};

const MIB: f64 = 1024.0 * 1024.0;
const LIMIT: u64 = 128 << 20;
const T: Thresholds = Thresholds {
    warn_s: 60.0,
    critical_s: 15.0,
};

/// Feeds `value(t)` (bytes) at 1 s for `seconds`; the forecasts, and the levels raised.
fn run(seconds: u32, value: impl Fn(f64) -> f64) -> (Vec<Forecast>, Vec<(f64, Risk)>) {
    run_with(seconds, value, |_| None, None)
}

/// Deterministic jitter in [-1, 1].
fn jitter(t: f64) -> f64 {
    ((t * 12.9898).sin() * 43758.5453).fract() * 2.0 - 1.0
}

#[test]
fn a_constant_series_never_warns() {
    let (forecasts, raised) = run(300, |t| 60.0 * MIB + 0.5 * MIB * jitter(t));
    assert!(raised.is_empty(), "{raised:?}");
    assert!(forecasts.iter().all(|f| f.eta_s.is_none()));
}

#[test]
fn nothing_is_forecast_while_learning() {
    let (forecasts, raised) = run(30, |t| 10.0 * MIB + 5.0 * MIB * t);
    assert!(forecasts[..20]
        .iter()
        .all(|f| f.learning && f.eta_s.is_none()));
    assert!(forecasts[..20]
        .iter()
        .all(|f| f.reason.starts_with("learning")));
    assert!(forecasts[21].eta_s.is_some());
    assert!(raised.iter().all(|&(t, _)| t >= 20.0), "{raised:?}");
}

#[test]
fn a_line_reaching_the_limit_at_t_gives_eta_t() {
    // 20 MiB, then +1 MiB/s from t = 30: the limit (128 MiB) at t = 138.
    let value = |t: f64| 20.0 * MIB + (t - 30.0).max(0.0) * MIB + 0.2 * MIB * jitter(t);
    let (forecasts, raised) = run(137, value);
    for t in [60usize, 78, 100, 120] {
        let eta = forecasts[t].eta_s.expect("a forecast");
        let truth = 138.0 - t as f64;
        assert!(
            (eta - truth).abs() <= 0.1 * truth + 1.0,
            "t={t}: eta {eta}, truth {truth}"
        );
        let (low, high) = (
            forecasts[t].low_s.expect("low"),
            forecasts[t].high_s.expect("high"),
        );
        assert!(low <= eta && eta <= high, "t={t}: {low} {eta} {high}");
    }
    // Warned 60 s ahead (give or take a sample), critical 15 s ahead.
    assert_eq!(raised.len(), 2, "{raised:?}");
    assert!((raised[0].0 - 78.0).abs() <= 2.0, "{raised:?}");
    assert_eq!(raised[0].1, Risk::Warning);
    assert!((raised[1].0 - 123.0).abs() <= 2.0, "{raised:?}");
}

/// A garbage-collected heap: from `floor(t)` up by `rise` MiB/s to `floor + amplitude`, then
/// back down, with ±2 % jitter on the peaks.
fn sawtooth(t: f64, floor: f64, amplitude: f64, period: f64) -> f64 {
    let phase = t % period;
    let cycle = (t / period).floor();
    let peak_jitter = 0.02 * amplitude * jitter(cycle);
    floor + (amplitude + peak_jitter) * (phase / period)
}

#[test]
fn a_stable_sawtooth_never_warns() {
    // Peaks near 85 % of the limit: floor 50 MiB, amplitude 59 MiB, 7 s cycles.
    let (forecasts, raised) = run(400, |t| sawtooth(t, 50.0 * MIB, 59.0 * MIB, 7.0));
    assert!(raised.is_empty(), "{raised:?}");
    let last = forecasts.last().expect("forecasts");
    assert!(
        last.reason.contains("sawtooth with stable peaks"),
        "{}",
        last.reason
    );
}

#[test]
fn a_sawtooth_with_a_rising_floor_is_forecast_from_its_peaks() {
    // Floor from 30 MiB rising 0.5 MiB/s, amplitude 40 MiB: peaks reach 128 MiB at t = 116.
    let floor = |t: f64| 30.0 * MIB + 0.5 * MIB * t;
    let (forecasts, raised) = run(110, |t| sawtooth(t, floor(t), 40.0 * MIB, 6.0));
    let first = raised.first().expect("a warning");
    assert_eq!(first.1, Risk::Warning);
    assert!(first.0 <= 116.0 - 0.7 * 60.0, "warned at {}", first.0);
    let eta = forecasts[first.0 as usize].eta_s.expect("eta");
    let truth = 116.0 - first.0;
    assert!(
        (eta - truth).abs() <= 0.25 * truth,
        "eta {eta}, truth {truth}"
    );
    assert!(forecasts[first.0 as usize].reason.contains("peaks rising"));
}

#[test]
fn an_accelerating_leak_is_not_underestimated() {
    // From t = 30: 20 MiB + 0.02·τ² MiB (slope 0.04·τ MiB/s): 128 MiB at τ ≈ 73.5.
    let value = |t: f64| {
        let tau = (t - 30.0).max(0.0);
        20.0 * MIB + 0.02 * MIB * tau * tau
    };
    let hit = 30.0 + (108.0f64 / 0.02).sqrt();
    let (forecasts, raised) = run(hit as u32 - 1, value);
    let first = raised.first().expect("a warning");
    let eta = forecasts[first.0 as usize].eta_s.expect("eta");
    let truth = hit - first.0;
    assert!(
        (eta - truth).abs() <= 0.25 * truth,
        "eta {eta} truth {truth} at {}",
        first.0
    );
    assert!(
        hit - first.0 >= 0.7 * 60.0_f64.min(hit - 30.0),
        "warned at {}",
        first.0
    );
}

#[test]
fn steps_with_plateaus_keep_their_forecast() {
    // +12 MiB every 12 s from t = 30, starting at 20 MiB: 128 MiB at t = 30 + 9·12 = 138.
    let value = |t: f64| 20.0 * MIB + 12.0 * MIB * ((t - 30.0).max(0.0) / 12.0).ceil();
    let (forecasts, raised) = run(137, value);
    let first = raised.first().expect("a warning");
    assert!(first.0 <= 138.0 - 0.7 * 60.0, "warned at {}", first.0);
    // Once warned, plateaus do not clear the warning before the kill.
    assert_eq!(
        raised.iter().filter(|r| r.1 == Risk::Warning).count(),
        1,
        "{raised:?}"
    );
    assert!(forecasts[first.0 as usize..]
        .iter()
        .all(|f| f.eta_s.is_some()));
}

#[test]
fn a_drop_to_nothing_then_growth_is_not_a_sawtooth() {
    // One drop (a process killed and restarted) is not a sawtooth: growth is still growth.
    let value = |t: f64| {
        if t < 40.0 {
            100.0 * MIB
        } else {
            10.0 * MIB + (t - 40.0) * MIB
        }
    };
    let (forecasts, _) = run(100, value);
    assert!(forecasts[90].eta_s.is_some(), "{}", forecasts[90].reason);
}

#[test]
fn no_limit_no_forecast() {
    let mut f = Forecaster::new();
    for i in 0..60 {
        let out = f.observe(Observation {
            t: f64::from(i),
            unreclaimable: u64::try_from(i).unwrap_or(0) << 20,
            limit: None,
            reclaim_stall_us: None,
            limit_hits: None,
            psi_some_avg10: None,
            reach: None,
            swap: None,
        });
        assert!(out.eta_s.is_none());
    }
}

/// A 1 MiB/s leak from 60 MiB towards a 128 MiB limit, 60 samples; `pressure` fills in the
/// kernel's signals for a sample given whether it is at ≥ 90 % of the limit.
fn leak_to_the_limit(pressure: impl Fn(bool, &mut Observation)) -> Forecast {
    let mut f = Forecaster::new();
    let mut last = Forecast::default();
    for i in 0..60u32 {
        let t = f64::from(i);
        let value = 60.0 * MIB + t * MIB;
        let mut obs = Observation {
            t,
            unreclaimable: value as u64,
            limit: Some(LIMIT),
            reclaim_stall_us: None,
            limit_hits: None,
            psi_some_avg10: None,
            reach: None,
            swap: None,
        };
        pressure(value >= 0.9 * LIMIT as f64, &mut obs);
        last = f.observe(obs);
    }
    last
}

#[test]
fn reclaim_near_the_limit_widens_the_interval_to_now() {
    let last = leak_to_the_limit(|near, obs| {
        obs.reclaim_stall_us = Some(if near { 1500 } else { 0 });
        obs.limit_hits = Some(0);
    });
    // 119 MiB of 128 MiB, growing 1 MiB/s, the kernel reclaiming: the kill can come now.
    assert_eq!(last.low_s, Some(0.0), "{last:?}");
    assert!(
        last.reason.contains("stalled in reclaim"),
        "{}",
        last.reason
    );
    let eta = last.eta_s.expect("eta");
    assert!((eta - 9.0).abs() < 1.5, "{eta}");
}

#[test]
fn memory_pressure_near_the_limit_widens_the_interval_to_now() {
    // The same leak, on cgroup v2 with PSI and no charge-path stall figure: tasks waiting for
    // memory near the limit are the kernel's own sign that the kill can come now.
    let observe = |psi: f64| {
        leak_to_the_limit(|near, obs| obs.psi_some_avg10 = Some(if near { psi } else { 0.0 }))
    };
    let pressed = observe(12.5);
    assert_eq!(pressed.low_s, Some(0.0), "{pressed:?}");
    assert!(
        pressed.reason.contains("12.5 % of the last 10 s (PSI)"),
        "{}",
        pressed.reason
    );
    // Below the threshold, PSI changes nothing.
    let calm = observe(super::PSI_PRESSED_PCT / 2.0);
    assert!(calm.low_s.is_some_and(|low| low > 0.0), "{calm:?}");
    assert!(!calm.reason.contains("PSI"), "{}", calm.reason);
}

/// [`run`], with what the runtimes' ceilings bound it at and what it may swap.
fn run_with(
    seconds: u32,
    value: impl Fn(f64) -> f64,
    reach: impl Fn(f64) -> Option<u64>,
    swap: Option<super::Swap>,
) -> (Vec<Forecast>, Vec<(f64, Risk)>) {
    let mut forecaster = Forecaster::new();
    let mut risk = RiskTracker::default();
    let mut forecasts = Vec::new();
    let mut raised = Vec::new();
    for i in 0..=seconds {
        let t = f64::from(i);
        let f = forecaster.observe(Observation {
            t: 1.7e9 + t,
            unreclaimable: value(t).max(0.0) as u64,
            limit: Some(LIMIT),
            reclaim_stall_us: None,
            limit_hits: None,
            psi_some_avg10: None,
            reach: reach(t),
            swap,
        });
        if let Some(change) = risk.update(t, &f, &T) {
            if change.to > change.from {
                raised.push((t, change.to));
            }
        }
        forecasts.push(f);
    }
    (forecasts, raised)
}

#[test]
fn a_heap_warming_up_under_its_ceiling_never_warns() {
    // 20 MiB, then 1.5 MiB/s up to 90 MiB (a JVM of -Xmx64m filling its heap, with 26 MiB
    // beside it): a trend alone would forecast the 128 MiB limit. The ceiling bounds it at
    // 20 MiB held now + 64 MiB of heap still free, at most 96 MiB.
    let value = |t: f64| (20.0 * MIB + 1.5 * MIB * (t - 25.0).max(0.0)).min(90.0 * MIB);
    let (_, unbounded) = run(120, value);
    assert!(
        !unbounded.is_empty(),
        "the series must warn without a bound"
    );
    let (forecasts, raised) = run_with(120, value, |_| Some(96 << 20), None);
    assert!(raised.is_empty(), "{raised:?}");
    assert!(forecasts
        .last()
        .is_some_and(|f| f.reason.contains("heap ceilings bound it at 96.0MiB")));
}

#[test]
fn growth_past_the_bound_or_with_a_bound_over_the_limit_warns_as_before() {
    let leak = |t: f64| 20.0 * MIB + MIB * (t - 25.0).max(0.0);
    let (_, plain) = run(120, leak);
    // A bound at or over the limit says nothing more than the limit itself.
    let (_, over) = run_with(120, leak, |_| Some(LIMIT + (64 << 20)), None);
    assert_eq!(over, plain);
    // Memory beside the heaps grows: past the bound, the forecast is as for any container.
    let (_, past) = run_with(120, leak, |_| Some(60 << 20), None);
    assert!(!past.is_empty(), "growth past the bound must warn");
}

#[test]
fn with_swap_the_kill_comes_when_memory_and_swap_are_full() {
    // 1 MiB/s from 20 MiB under 128 MiB + 64 MiB of swap: 172 s to fill both, not 108.
    let leak = |t: f64| 20.0 * MIB + MIB * (t - 25.0).max(0.0);
    let swap = super::Swap {
        used: 0,
        allowed: 64 << 20,
    };
    let (forecasts, _) = run_with(60, leak, |_| None, Some(swap));
    let eta = forecasts
        .last()
        .and_then(|f| f.eta_s)
        .expect("a leak is forecast");
    // At t=60: 55 MiB held, 137 MiB to go at 1 MiB/s.
    assert!((eta - 137.0).abs() < 10.0, "eta {eta}");
    let (plain, _) = run(60, leak);
    let without = plain.last().and_then(|f| f.eta_s).expect("forecast");
    assert!((without - 73.0).abs() < 10.0, "eta {without}");
}
