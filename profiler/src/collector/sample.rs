//! Pure arithmetic of the collector: what the forecaster observes and the `sample` record, from
//! snapshots and counter deltas; burst budgets.
use std::time::Duration;

use profiler_common::SlotCounters;

use crate::{
    cgroup::MemorySnapshot,
    forecast::{risk::Risk, Forecast, Observation, Swap},
    mode::ChargeMode,
    pods::LimitSource,
    record::Sample,
};

/// The smallest burst budget: below this a budget would fire on ordinary page-cache churn.
pub(super) const MIN_BURST_BUDGET_BYTES: u64 = 4 << 20;

/// Burst budget for the next interval: half the headroom left under the limit, so a burst is a
/// charge that would eat half of what remains before the next look. Without a limit there is
/// no headroom to protect and no budget (`None`).
pub(crate) fn burst_budget_bytes(usage_bytes: u64, limit_bytes: Option<u64>) -> Option<u64> {
    let limit = limit_bytes?;
    Some((limit.saturating_sub(usage_bytes) / 2).max(MIN_BURST_BUDGET_BYTES))
}

/// What a watched cgroup's counters and cgroup files were at the start of the watch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Baseline {
    /// The kernel's OOM-kill counter for the cgroup, if it has one.
    pub oom_kills: Option<u64>,
    /// v1 `memory.failcnt`.
    pub failcnt: Option<u64>,
}

impl Baseline {
    /// Baseline taken from the first snapshot.
    pub(crate) fn from_snapshot(s: &MemorySnapshot) -> Self {
        Self {
            oom_kills: s.oom_kills,
            failcnt: s.failcnt,
        }
    }
}

/// Inputs of one sample.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SampleInputs<'a> {
    /// Cgroup files, read now.
    pub snapshot: &'a MemorySnapshot,
    /// The limit that applies (this cgroup's or an ancestor's).
    pub limit_bytes: Option<u64>,
    /// Whose limit that is.
    pub limit_source: LimitSource,
    /// Counters at the start of the watch, from the files.
    pub baseline: Baseline,
    /// Kernel counters now and at the previous sample (`None` in polling mode).
    pub counters: Option<(SlotCounters, SlotCounters)>,
    /// Time since the previous sample.
    pub elapsed: Duration,
    /// Kills reported by the kernel programs or the kernel log since the watch started.
    pub kills_reported: u64,
    /// Restarts of the pod's container seen since the watch started.
    pub restarts: u64,
    /// Page size in bytes.
    pub page_size: u64,
    /// Mode of observation.
    pub mode: ChargeMode,
    /// Whether the charge path's programs were attached over the interval: when not, the
    /// counters' charge figures are unknown (their reclaim figures still count).
    pub charge_traced: bool,
    /// The most the unreclaimable memory can reach under the runtimes' heap ceilings.
    pub reach: Option<u64>,
    /// The node's free swap, bytes (0 without swap).
    pub node_swap_free: u64,
}

/// What the cgroup may swap: what it uses, and the most it may use, bounded by its own swap
/// limit and by the node's free swap (what it uses is no longer free). `None` when it cannot
/// swap: the kernel does not account its swap, its limit is 0, or the node has no swap left.
pub(crate) fn swap(snapshot: &MemorySnapshot, node_swap_free: u64) -> Option<Swap> {
    let used = snapshot.swap_bytes?;
    let room = node_swap_free.saturating_add(used);
    let allowed = snapshot.swap_max_bytes.map_or(room, |max| max.min(room));
    (allowed > 0).then_some(Swap { used, allowed })
}

/// What the forecast of this sample says, and the warning level after it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Prediction<'a> {
    /// The forecast made from this sample's figures.
    pub forecast: &'a Forecast,
    /// The warning level after it.
    pub risk: Risk,
}

/// Reclaim stall since the watch started, µs (charge-path modes only).
fn reclaim_stall_us(inp: &SampleInputs<'_>) -> Option<u64> {
    inp.counters.map(|(now, _)| now.reclaim_ns / 1_000)
}

/// v1 `memory.failcnt` since the watch started.
fn failcnt(inp: &SampleInputs<'_>) -> Option<u64> {
    match (inp.snapshot.failcnt, inp.baseline.failcnt) {
        (Some(now), Some(start)) => Some(now.saturating_sub(start)),
        _ => None,
    }
}

/// What the forecaster gets from this sample at `t`, given the reclaim stall and `failcnt`
/// of the previous sample (`None` at the first): their increase since.
pub(crate) fn observation(
    inp: &SampleInputs<'_>,
    t: f64,
    previous_stall_us: Option<u64>,
    previous_failcnt: Option<u64>,
) -> Observation {
    let increase = |now: Option<u64>, before: Option<u64>| match (now, before) {
        (Some(now), Some(before)) => Some(now.saturating_sub(before)),
        _ => None,
    };
    Observation {
        t,
        unreclaimable: unreclaimable_bytes(inp.snapshot),
        limit: inp.limit_bytes,
        reclaim_stall_us: increase(reclaim_stall_us(inp), previous_stall_us),
        limit_hits: increase(failcnt(inp), previous_failcnt),
        psi_some_avg10: inp.snapshot.psi.map(|p| p.some_avg10),
        reach: inp.reach,
        swap: swap(inp.snapshot, inp.node_swap_free),
    }
}

/// Builds one `sample` record, with its forecast.
pub(crate) fn build_sample(inp: SampleInputs<'_>, prediction: Prediction<'_>) -> Sample {
    let s = inp.snapshot;
    let secs = inp.elapsed.as_secs_f64();
    let rate = |pages: u64| {
        if secs > 0.0 {
            Some((pages * inp.page_size) as f64 / secs)
        } else {
            None
        }
    };
    let (charge_rate, uncharge_rate, charged, reclaim_count) = match inp.counters {
        Some((now, _)) if !inp.charge_traced => (None, None, None, Some(now.reclaim_count)),
        Some((now, before)) => (
            rate(now.charged_pages.saturating_sub(before.charged_pages)),
            rate(now.uncharged_pages.saturating_sub(before.uncharged_pages)),
            Some(now.charged_pages.saturating_mul(inp.page_size)),
            Some(now.reclaim_count),
        ),
        None => (None, None, None, None),
    };
    // The kernel's own counter sees every kill, also those whose report was lost; the reports
    // cover cgroups whose kernel keeps no counter. Take whichever saw more.
    let counted = match (s.oom_kills, inp.baseline.oom_kills) {
        (Some(now), Some(start)) => now.saturating_sub(start),
        _ => 0,
    };
    Sample {
        usage_bytes: s.usage_bytes,
        working_set_bytes: s.working_set_bytes,
        anon_bytes: s.anon_bytes,
        file_bytes: s.file_bytes,
        shmem_bytes: s.shmem_bytes,
        kernel_bytes: s.kernel_bytes,
        unreclaimable_bytes: unreclaimable_bytes(s),
        reach_bytes: inp.reach,
        limit_bytes: inp.limit_bytes,
        swap_bytes: s.swap_bytes,
        swap_max_bytes: swap(s, inp.node_swap_free).map(|s| s.allowed),
        limit_source: inp.limit_source,
        limit_pct: inp
            .limit_bytes
            .filter(|&l| l > 0)
            .map(|l| (s.usage_bytes as f64 * 100.0 / l as f64 * 100.0).round() / 100.0),
        charge_rate_bytes_per_s: charge_rate,
        uncharge_rate_bytes_per_s: uncharge_rate,
        charged_bytes: charged,
        reclaim_count,
        reclaim_stall_us: reclaim_stall_us(&inp),
        oom_kills: counted.max(inp.kills_reported),
        restarts: inp.restarts,
        failcnt: failcnt(&inp),
        psi_some_avg10: s.psi.map(|p| p.some_avg10),
        psi_full_avg10: s.psi.map(|p| p.full_avg10),
        eta_seconds: prediction.forecast.eta_s,
        eta_low_seconds: prediction.forecast.low_s,
        eta_high_seconds: prediction.forecast.high_s,
        risk: prediction.risk,
        mode: if inp.charge_traced {
            inp.mode
        } else {
            ChargeMode::Polling
        },
    }
}

/// Anon + shmem + kernel memory: what reclaim cannot free, short of swap (see [`swap`]) or
/// the program freeing it.
pub(super) fn unreclaimable_bytes(s: &MemorySnapshot) -> u64 {
    s.anon_bytes
        .saturating_add(s.shmem_bytes)
        .saturating_add(s.kernel_bytes.unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn snapshot(usage: u64) -> MemorySnapshot {
        MemorySnapshot {
            usage_bytes: usage,
            working_set_bytes: usage - MIB,
            anon_bytes: usage / 2,
            oom_kills: Some(3),
            failcnt: Some(10),
            ..MemorySnapshot::default()
        }
    }

    fn inputs(s: &MemorySnapshot) -> SampleInputs<'_> {
        SampleInputs {
            snapshot: s,
            limit_bytes: Some(64 * MIB),
            limit_source: LimitSource::Cgroup,
            baseline: Baseline {
                oom_kills: Some(1),
                failcnt: Some(4),
            },
            counters: None,
            elapsed: Duration::from_millis(500),
            kills_reported: 0,
            restarts: 0,
            page_size: 4096,
            mode: ChargeMode::Polling,
            charge_traced: false,
            reach: None,
            node_swap_free: 0,
        }
    }

    /// No forecast: the container is still being learnt.
    fn quiet() -> Prediction<'static> {
        static LEARNING: Forecast = Forecast {
            eta_s: None,
            low_s: None,
            high_s: None,
            reason: String::new(),
            learning: true,
        };
        Prediction {
            forecast: &LEARNING,
            risk: Risk::Ok,
        }
    }

    #[test]
    fn the_forecast_is_part_of_the_sample() {
        let s = snapshot(32 * MIB);
        let forecast = Forecast {
            eta_s: Some(42.0),
            low_s: Some(30.0),
            high_s: None,
            reason: "growth".into(),
            learning: false,
        };
        let sample = build_sample(
            inputs(&s),
            Prediction {
                forecast: &forecast,
                risk: Risk::Critical,
            },
        );
        assert_eq!(
            (
                sample.eta_seconds,
                sample.eta_low_seconds,
                sample.eta_high_seconds
            ),
            (Some(42.0), Some(30.0), None)
        );
        assert_eq!(sample.risk, Risk::Critical);
    }

    #[test]
    fn the_forecaster_observes_what_changed_since_the_previous_sample() {
        let s = snapshot(32 * MIB);
        let now = SlotCounters {
            reclaim_ns: 9_000_000,
            ..Default::default()
        };
        let inp = SampleInputs {
            counters: Some((now, SlotCounters::default())),
            mode: ChargeMode::Tracepoint,
            charge_traced: true,
            ..inputs(&s)
        };
        // failcnt 10 against a baseline of 4: 6 since the start, 2 since the previous sample.
        let seen = observation(&inp, 7.0, Some(8_500), Some(4));
        assert_eq!(seen.t, 7.0);
        assert_eq!(seen.unreclaimable, 16 * MIB);
        assert_eq!(seen.limit, Some(64 * MIB));
        assert_eq!(seen.reclaim_stall_us, Some(500));
        assert_eq!(seen.limit_hits, Some(2));
        let first = observation(&inp, 7.0, None, None);
        assert_eq!((first.reclaim_stall_us, first.limit_hits), (None, None));
    }

    #[test]
    fn swap_is_bounded_by_the_cgroups_limit_and_the_nodes_free_swap() {
        let mut s = snapshot(32 * MIB);
        // Not accounted: nothing said, whatever the node has.
        assert_eq!(swap(&s, 512 * MIB), None);
        s.swap_bytes = Some(8 * MIB);
        // No limit of its own: the node's free swap and what it holds already.
        assert_eq!(
            swap(&s, 100 * MIB),
            Some(Swap {
                used: 8 * MIB,
                allowed: 108 * MIB
            })
        );
        s.swap_max_bytes = Some(64 * MIB);
        assert_eq!(swap(&s, 100 * MIB).map(|s| s.allowed), Some(64 * MIB));
        // A node without swap, or a cgroup not allowed any: it cannot swap.
        s.swap_bytes = Some(0);
        assert_eq!(swap(&s, 0), None);
        s.swap_max_bytes = Some(0);
        assert_eq!(swap(&s, 100 * MIB), None);
        // The forecaster sees memory and swap together.
        s.swap_max_bytes = None;
        let seen = observation(
            &SampleInputs {
                node_swap_free: 16 * MIB,
                ..inputs(&s)
            },
            1.0,
            None,
            None,
        );
        assert_eq!(seen.swap.map(|s| s.allowed), Some(16 * MIB));
    }

    #[test]
    fn budget_is_half_the_headroom_with_a_floor() {
        assert_eq!(burst_budget_bytes(0, Some(256 * MIB)), Some(128 * MIB));
        assert_eq!(
            burst_budget_bytes(255 * MIB, Some(256 * MIB)),
            Some(MIN_BURST_BUDGET_BYTES)
        );
        assert_eq!(
            burst_budget_bytes(300 * MIB, Some(256 * MIB)),
            Some(MIN_BURST_BUDGET_BYTES)
        );
        assert_eq!(burst_budget_bytes(5, None), None);
    }

    #[test]
    fn polling_sample_has_no_kernel_rates() {
        let s = snapshot(32 * MIB);
        let sample = build_sample(inputs(&s), quiet());
        assert_eq!(sample.charge_rate_bytes_per_s, None);
        assert_eq!(sample.reclaim_count, None);
        assert_eq!(sample.limit_pct, Some(50.0));
        assert_eq!(sample.oom_kills, 2, "kills since the start, not since boot");
        assert_eq!(sample.failcnt, Some(6));
        assert_eq!(sample.working_set_bytes, 31 * MIB);
    }

    #[test]
    fn rates_come_from_counter_deltas() {
        let s = snapshot(32 * MIB);
        let before = SlotCounters {
            charged_pages: 100,
            uncharged_pages: 50,
            ..Default::default()
        };
        let now = SlotCounters {
            charged_pages: 100 + 2560,
            uncharged_pages: 50 + 256,
            reclaim_count: 4,
            reclaim_ns: 9_000_000,
            ..Default::default()
        };
        let sample = build_sample(
            SampleInputs {
                counters: Some((now, before)),
                mode: ChargeMode::Tracepoint,
                charge_traced: true,
                ..inputs(&s)
            },
            quiet(),
        );
        // 2560 pages of 4 KiB in half a second: 20 MiB/s.
        assert_eq!(sample.charge_rate_bytes_per_s, Some(20.0 * MIB as f64));
        assert_eq!(sample.uncharge_rate_bytes_per_s, Some(2.0 * MIB as f64));
        assert_eq!(sample.reclaim_count, Some(4));
        assert_eq!(sample.reclaim_stall_us, Some(9_000));
    }

    #[test]
    fn a_detached_charge_path_gives_no_charge_figures_but_reclaim_still_counts() {
        let s = snapshot(32 * MIB);
        let before = SlotCounters {
            charged_pages: 100,
            ..Default::default()
        };
        let now = SlotCounters {
            charged_pages: 100,
            reclaim_count: 3,
            reclaim_ns: 2_000_000,
            ..Default::default()
        };
        let traced = |charge_traced| {
            build_sample(
                SampleInputs {
                    counters: Some((now, before)),
                    mode: ChargeMode::Fentry,
                    charge_traced,
                    ..inputs(&s)
                },
                quiet(),
            )
        };
        let off = traced(false);
        // Not 0 B/s: nothing was watching the charges.
        assert_eq!(off.charge_rate_bytes_per_s, None);
        assert_eq!(off.uncharge_rate_bytes_per_s, None);
        assert_eq!(off.charged_bytes, None);
        assert_eq!(off.mode, ChargeMode::Polling);
        assert_eq!(off.reclaim_count, Some(3));
        assert_eq!(off.reclaim_stall_us, Some(2_000));
        let on = traced(true);
        assert_eq!(on.charge_rate_bytes_per_s, Some(0.0));
        assert_eq!(on.charged_bytes, Some(100 * 4096));
        assert_eq!(on.mode, ChargeMode::Fentry);
    }

    #[test]
    fn reported_kills_count_when_the_kernel_keeps_no_counter() {
        let mut s = snapshot(MIB * 2);
        s.oom_kills = None;
        let sample = build_sample(
            SampleInputs {
                kills_reported: 2,
                restarts: 0,
                ..inputs(&s)
            },
            quiet(),
        );
        assert_eq!(sample.oom_kills, 2);
    }

    #[test]
    fn unlimited_cgroup_has_no_percentage() {
        let s = snapshot(MIB * 2);
        let sample = build_sample(
            SampleInputs {
                limit_bytes: None,
                ..inputs(&s)
            },
            quiet(),
        );
        assert_eq!(sample.limit_pct, None);
    }
}
