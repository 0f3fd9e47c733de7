//! What the ceilings mean for one container: how far its memory can grow (its reach), and the
//! settings that are wrong already (`config_risk`). Pure: figures in, verdicts out.
use serde::Serialize;

use super::{size::human, HeapCeiling, Runtime};

/// Headroom kept under the limit in the fixes we suggest: the heap plus what the process holds
/// beside it takes at most this share of the limit, so page cache and kernel memory still fit.
const FIX_SHARE_PCT: u64 = 90;

/// One runtime process of a container, as last read.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct RuntimeProcess {
    /// Process id (the node's).
    pub pid: u32,
    /// Command name.
    pub comm: String,
    /// Its heap ceiling.
    pub ceiling: HeapCeiling,
    /// Its anonymous and shared memory now (`RssAnon + RssShmem` of `/proc/PID/status`).
    pub resident_bytes: u64,
    /// Its heap in use, where the runtime publishes it (a HotSpot JVM's perf data).
    pub heap_used_bytes: Option<u64>,
}

impl RuntimeProcess {
    /// What the process holds beside its heap: resident memory minus the heap in use, where
    /// the runtime says how much that is. Free but resident heap counts here, so this errs
    /// high, never low.
    pub(crate) fn non_heap_bytes(&self) -> Option<u64> {
        self.heap_used_bytes
            .map(|used| self.resident_bytes.saturating_sub(used))
    }

    /// How much more the process can take before its heap is full: the ceiling minus the heap
    /// in use (the whole ceiling when the use is unknown: that errs high). `None` when it has
    /// no ceiling, or when it is already past a soft one (Go's `GOMEMLIMIT` is a target the
    /// collector tries to keep, not a wall: past it, nothing bounds it).
    fn headroom_bytes(&self) -> Option<u64> {
        let ceiling = self.ceiling.bytes?;
        match self.ceiling.runtime {
            // GOMEMLIMIT covers all the memory the Go runtime manages, not just the heap.
            Runtime::Go if self.resident_bytes > ceiling => None,
            Runtime::Go => Some(ceiling - self.resident_bytes),
            _ => Some(ceiling.saturating_sub(self.heap_used_bytes.unwrap_or(0))),
        }
    }
}

/// The most a container's unreclaimable memory can reach while every runtime in it stays under
/// its ceiling and the rest holds what it holds now: `unreclaimable` plus each runtime's
/// headroom. `None` when there is no runtime to bound it, or one has no bound (a process with
/// no ceiling, or one past a soft ceiling): then growth is followed as any other.
pub(crate) fn reach<'a>(
    unreclaimable: u64,
    processes: impl IntoIterator<Item = &'a RuntimeProcess>,
) -> Option<u64> {
    let mut any = false;
    let total = processes.into_iter().try_fold(unreclaimable, |total, p| {
        any = true;
        Some(total.saturating_add(p.headroom_bytes()?))
    })?;
    any.then_some(total)
}

/// What is wrong with a runtime's setting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum RiskKind {
    /// The ceiling plus the memory held beside the heap is at or above the limit: the kernel
    /// kills the process before the runtime runs out of heap.
    CeilingAboveLimit,
    /// The runtime can be given a ceiling and has none (Go without `GOMEMLIMIT`).
    NoCeiling,
    /// Nothing collects garbage (Go with `GOGC=off` and no `GOMEMLIMIT`).
    GcOff,
}

impl RiskKind {
    /// Its name in JSON and in metric labels.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            RiskKind::CeilingAboveLimit => "ceiling_above_limit",
            RiskKind::NoCeiling => "no_ceiling",
            RiskKind::GcOff => "gc_off",
        }
    }
}

/// A `config_risk` finding: what is wrong, in numbers, and the fix.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct ConfigRisk {
    /// The process.
    pub pid: u32,
    /// Its command name.
    pub comm: String,
    /// Its runtime (`language_runtime` in JSON: see [`super::HeapCeiling`]).
    #[serde(rename = "language_runtime")]
    pub runtime: Runtime,
    /// What is wrong.
    pub kind: RiskKind,
    /// The ceiling, bytes (null when there is none).
    pub ceiling_bytes: Option<u64>,
    /// Where the ceiling came from.
    pub ceiling_source: String,
    /// What the process holds beside its heap, bytes, where known.
    pub non_heap_bytes: Option<u64>,
    /// The limit that applies.
    pub limit_bytes: u64,
    /// What is wrong, in a sentence with the figures.
    pub message: String,
    /// What to do.
    pub fix: String,
}

/// `bytes` × [`FIX_SHARE_PCT`] %.
fn share(bytes: u64) -> u64 {
    bytes / 100 * FIX_SHARE_PCT
}

/// Whole mebibytes, rounded down (for a flag value).
fn mib_floor(bytes: u64) -> u64 {
    bytes >> 20
}

/// The setting's risks for one process under `limit`.
pub(crate) fn risks(process: &RuntimeProcess, limit: u64) -> Vec<ConfigRisk> {
    let ceiling = &process.ceiling;
    let non_heap = process.non_heap_bytes();
    let finding = |kind, message: String, fix: String| ConfigRisk {
        pid: process.pid,
        comm: process.comm.clone(),
        runtime: ceiling.runtime,
        kind,
        ceiling_bytes: ceiling.bytes,
        ceiling_source: ceiling.source.clone(),
        non_heap_bytes: non_heap,
        limit_bytes: limit,
        message,
        fix,
    };
    let Some(bytes) = ceiling.bytes else {
        let go_limit = format!(
            "set GOMEMLIMIT={}MiB ({FIX_SHARE_PCT} % of the limit)",
            mib_floor(share(limit))
        );
        return match ceiling.runtime {
            Runtime::Go if ceiling.gc_off => vec![finding(
                RiskKind::GcOff,
                format!(
                    "Go with GOGC=off and no GOMEMLIMIT under a {} limit: nothing collects \
                     garbage, the heap grows until the kernel OOM-kills it",
                    human(limit)
                ),
                go_limit,
            )],
            Runtime::Go => vec![finding(
                RiskKind::NoCeiling,
                format!(
                    "Go without GOMEMLIMIT under a {} limit: its garbage collector does not \
                     know the limit and lets the heap grow to twice the live data",
                    human(limit)
                ),
                go_limit,
            )],
            _ => Vec::new(),
        };
    };
    let total = bytes.saturating_add(non_heap.unwrap_or(0));
    if total < limit {
        return Vec::new();
    }
    let label = ceiling.runtime.label();
    let beside = non_heap.map_or_else(String::new, |n| format!(" + {} non-heap", human(n)));
    let relation = if total == limit { "=" } else { ">" };
    // What fits: the limit's share, less what the process holds beside its heap.
    let fits = share(limit).saturating_sub(non_heap.unwrap_or(0));
    let pct = (u128::from(fits) * 100 / u128::from(limit.max(1))) as u64;
    let (what, fix) = match ceiling.runtime {
        Runtime::Jvm => (
            "before the JVM throws OutOfMemoryError",
            format!(
                "use -XX:MaxRAMPercentage={pct} or -Xmx ≤ {}m",
                mib_floor(fits)
            ),
        ),
        Runtime::Node => (
            "before V8 reports \"JavaScript heap out of memory\"",
            format!("use --max-old-space-size ≤ {}", mib_floor(fits)),
        ),
        Runtime::Go => (
            "before the Go collector tries to stay under GOMEMLIMIT",
            format!("set GOMEMLIMIT={}MiB", mib_floor(fits)),
        ),
        Runtime::Dotnet => (
            "before the .NET GC throws OutOfMemoryException",
            format!(
                "set DOTNET_GCHeapHardLimitPercent={pct:#x} ({pct} %) or \
                 DOTNET_GCHeapHardLimit={fits:#x}"
            ),
        ),
    };
    let heap = match ceiling.runtime {
        Runtime::Go => "GOMEMLIMIT",
        _ => "max heap",
    };
    vec![finding(
        RiskKind::CeilingAboveLimit,
        format!(
            "{label} {heap} {}{beside} {relation} limit {}: the kernel will OOM-kill it {what}",
            human(bytes),
            human(limit)
        ),
        fix,
    )]
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn process(runtime: Runtime, ceiling: Option<u64>, resident: u64) -> RuntimeProcess {
        RuntimeProcess {
            pid: 42,
            comm: "app".into(),
            ceiling: HeapCeiling {
                runtime,
                bytes: ceiling,
                source: "test".into(),
                default: false,
                gc_off: false,
            },
            resident_bytes: resident,
            heap_used_bytes: None,
        }
    }

    #[test]
    fn a_jvm_allowed_more_than_the_limit_is_a_risk_with_a_fix_that_fits() {
        let mut jvm = process(Runtime::Jvm, Some(1024 * MIB), 80 * MIB);
        jvm.heap_used_bytes = Some(20 * MIB);
        let found = risks(&jvm, 256 * MIB);
        assert_eq!(found.len(), 1, "{found:?}");
        let risk = &found[0];
        assert_eq!(risk.kind, RiskKind::CeilingAboveLimit);
        assert_eq!(risk.non_heap_bytes, Some(60 * MIB));
        assert_eq!(
            risk.message,
            "JVM max heap 1.0 GiB + 60 MiB non-heap > limit 256 MiB: the kernel will OOM-kill \
             it before the JVM throws OutOfMemoryError"
        );
        // 90 % of 256 MiB is 230.4 MiB; less 60 MiB non-heap: 170 MiB, 66 % of the limit.
        assert_eq!(risk.fix, "use -XX:MaxRAMPercentage=66 or -Xmx ≤ 170m");
    }

    #[test]
    fn a_ceiling_that_fits_with_its_non_heap_is_no_risk() {
        let mut jvm = process(Runtime::Jvm, Some(128 * MIB), 100 * MIB);
        jvm.heap_used_bytes = Some(60 * MIB);
        assert!(risks(&jvm, 320 * MIB).is_empty());
        // The same JVM in 160 MiB: 128 + 40 ≥ 160.
        assert_eq!(risks(&jvm, 160 * MIB).len(), 1);
    }

    #[test]
    fn without_the_heap_in_use_only_the_ceiling_itself_counts() {
        let node = process(Runtime::Node, Some(300 * MIB), 50 * MIB);
        assert_eq!(node.non_heap_bytes(), None);
        let found = risks(&node, 256 * MIB);
        assert_eq!(found.len(), 1);
        assert!(found[0]
            .message
            .starts_with("Node.js max heap 300 MiB > limit 256 MiB"));
        assert!(risks(&node, 512 * MIB).is_empty());
    }

    #[test]
    fn go_without_a_memory_limit_or_with_gc_off_is_told() {
        let go = process(Runtime::Go, None, 10 * MIB);
        let found = risks(&go, 256 * MIB);
        assert_eq!(found[0].kind, RiskKind::NoCeiling);
        assert_eq!(found[0].fix, "set GOMEMLIMIT=230MiB (90 % of the limit)");
        let mut off = go.clone();
        off.ceiling.gc_off = true;
        assert_eq!(risks(&off, 256 * MIB)[0].kind, RiskKind::GcOff);
        // Other runtimes without a ceiling (a .NET process with no limit) say nothing.
        assert!(risks(&process(Runtime::Dotnet, None, MIB), 256 * MIB).is_empty());
    }

    #[test]
    fn reach_adds_each_runtimes_headroom_and_needs_every_one_bounded() {
        let mut jvm = process(Runtime::Jvm, Some(128 * MIB), 90 * MIB);
        jvm.heap_used_bytes = Some(50 * MIB);
        // 150 MiB held now, 78 MiB of heap still free.
        assert_eq!(
            reach(150 * MIB, std::slice::from_ref(&jvm)),
            Some(228 * MIB)
        );
        let node = process(Runtime::Node, Some(64 * MIB), 40 * MIB);
        assert_eq!(reach(150 * MIB, &[jvm.clone(), node]), Some(292 * MIB));
        assert_eq!(reach(150 * MIB, &[]), None, "no runtime, no bound");
        let go = process(Runtime::Go, None, MIB);
        assert_eq!(reach(150 * MIB, &[jvm, go]), None, "one unbounded runtime");
    }

    #[test]
    fn a_go_program_past_its_soft_limit_is_unbounded() {
        let within = process(Runtime::Go, Some(100 * MIB), 60 * MIB);
        assert_eq!(reach(70 * MIB, &[within]), Some(110 * MIB));
        let past = process(Runtime::Go, Some(100 * MIB), 120 * MIB);
        assert_eq!(reach(130 * MIB, &[past]), None);
    }
}
