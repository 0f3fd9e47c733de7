//! Pure arithmetic of the collector: samples from snapshots and counter deltas, burst budgets.
use std::time::Duration;

use profiler_common::SlotCounters;

use crate::{
    cgroup::MemorySnapshot, forecast::risk::Risk, mode::ChargeMode, pods::LimitSource,
    record::Sample,
};

/// The smallest burst budget: below this a budget would fire on ordinary page-cache churn.
pub const MIN_BURST_BUDGET_BYTES: u64 = 4 << 20;

/// Burst budget for the next interval: half the headroom left under the limit, so a burst is a
/// charge that would eat half of what remains before the next look. Without a limit there is
/// no headroom to protect and no budget (`None`).
pub fn burst_budget_bytes(usage_bytes: u64, limit_bytes: Option<u64>) -> Option<u64> {
    let limit = limit_bytes?;
    Some((limit.saturating_sub(usage_bytes) / 2).max(MIN_BURST_BUDGET_BYTES))
}

/// What a watched cgroup's counters and cgroup files were at the start of the watch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Baseline {
    /// The kernel's OOM-kill counter for the cgroup, if it has one.
    pub oom_kills: Option<u64>,
    /// v1 `memory.failcnt`.
    pub failcnt: Option<u64>,
}

impl Baseline {
    /// Baseline taken from the first snapshot.
    pub fn from_snapshot(s: &MemorySnapshot) -> Self {
        Self {
            oom_kills: s.oom_kills,
            failcnt: s.failcnt,
        }
    }
}

/// Inputs of one sample.
#[derive(Clone, Copy, Debug)]
pub struct SampleInputs<'a> {
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
}

/// Builds one `sample` record.
pub fn build_sample(inp: SampleInputs<'_>) -> Sample {
    let s = inp.snapshot;
    let secs = inp.elapsed.as_secs_f64();
    let rate = |pages: u64| {
        if secs > 0.0 {
            Some((pages * inp.page_size) as f64 / secs)
        } else {
            None
        }
    };
    let (charge_rate, uncharge_rate, reclaim_count, reclaim_stall_us) = match inp.counters {
        Some((now, before)) => (
            rate(now.charged_pages.saturating_sub(before.charged_pages)),
            rate(now.uncharged_pages.saturating_sub(before.uncharged_pages)),
            Some(now.reclaim_count),
            Some(now.reclaim_ns / 1_000),
        ),
        None => (None, None, None, None),
    };
    // The kernel's own counter sees every kill, also those whose report was lost; the reports
    // cover cgroups whose kernel keeps no counter. Take whichever saw more.
    let counted = match (s.oom_kills, inp.baseline.oom_kills) {
        (Some(now), Some(start)) => now.saturating_sub(start),
        _ => 0,
    };
    let failcnt = match (s.failcnt, inp.baseline.failcnt) {
        (Some(now), Some(start)) => Some(now.saturating_sub(start)),
        _ => None,
    };
    Sample {
        usage_bytes: s.usage_bytes,
        working_set_bytes: s.working_set_bytes,
        anon_bytes: s.anon_bytes,
        file_bytes: s.file_bytes,
        shmem_bytes: s.shmem_bytes,
        kernel_bytes: s.kernel_bytes,
        unreclaimable_bytes: unreclaimable_bytes(s),
        limit_bytes: inp.limit_bytes,
        limit_source: inp.limit_source,
        limit_pct: inp
            .limit_bytes
            .filter(|&l| l > 0)
            .map(|l| (s.usage_bytes as f64 * 100.0 / l as f64 * 100.0).round() / 100.0),
        charge_rate_bytes_per_s: charge_rate,
        uncharge_rate_bytes_per_s: uncharge_rate,
        reclaim_count,
        reclaim_stall_us,
        oom_kills: counted.max(inp.kills_reported),
        restarts: inp.restarts,
        failcnt,
        psi_some_avg10: s.psi.map(|p| p.some_avg10),
        psi_full_avg10: s.psi.map(|p| p.full_avg10),
        // Filled in by the forecaster.
        eta_seconds: None,
        eta_low_seconds: None,
        eta_high_seconds: None,
        risk: Risk::Ok,
        mode: inp.mode,
    }
}

/// Anon + shmem + kernel memory: what reclaim cannot free, short of swap (none in
/// containers as Kubernetes runs them) or the program freeing it.
pub fn unreclaimable_bytes(s: &MemorySnapshot) -> u64 {
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
        }
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
        let sample = build_sample(inputs(&s));
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
        let sample = build_sample(SampleInputs {
            counters: Some((now, before)),
            mode: ChargeMode::Tracepoint,
            ..inputs(&s)
        });
        // 2560 pages of 4 KiB in half a second: 20 MiB/s.
        assert_eq!(sample.charge_rate_bytes_per_s, Some(20.0 * MIB as f64));
        assert_eq!(sample.uncharge_rate_bytes_per_s, Some(2.0 * MIB as f64));
        assert_eq!(sample.reclaim_count, Some(4));
        assert_eq!(sample.reclaim_stall_us, Some(9_000));
    }

    #[test]
    fn reported_kills_count_when_the_kernel_keeps_no_counter() {
        let mut s = snapshot(MIB * 2);
        s.oom_kills = None;
        let sample = build_sample(SampleInputs {
            kills_reported: 2,
            restarts: 0,
            ..inputs(&s)
        });
        assert_eq!(sample.oom_kills, 2);
    }

    #[test]
    fn unlimited_cgroup_has_no_percentage() {
        let s = snapshot(MIB * 2);
        let sample = build_sample(SampleInputs {
            limit_bytes: None,
            ..inputs(&s)
        });
        assert_eq!(sample.limit_pct, None);
    }
}
