//! The .NET GC's heap hard limit, from the `DOTNET_` (or legacy `COMPlus_`) variables of a
//! CoreCLR process, as `gc_heap::compute_hard_limit` and `compute_memory_settings` of
//! dotnet/runtime read them.
//!
//! The limit covers the GC heap and the GC's bookkeeping. Set through an environment variable,
//! a value is hexadecimal, with or without `0x` (Microsoft's runtime-config docs: `0xC800000`
//! and `C800000` are both 200 MiB; so are percentages: `0x1E` is 30 %). Per name, `DOTNET_`
//! wins over `COMPlus_`. `runtimeconfig.json` (`System.GC.HeapHardLimit`, decimal) is a file
//! beside the app and is not read here.
use super::{
    size::{human, MIB},
    Env, HeapCeiling, Runtime,
};

/// The default under a container limit is `max(20 MB, 75 % of the limit)`: its floor (MB
/// meaning MiB in the runtime's code)...
const DEFAULT_FLOOR: u64 = 20 * MIB;
/// ...and its share of the limit.
const DEFAULT_PERCENT: u64 = 75;

/// The GC settings whose presence marks a .NET process (`DOTNET_` or `COMPlus_` before them).
const GC_HEAP_SETTINGS: &[&str] = &[
    "GCHeapHardLimit",
    "GCHeapHardLimitPercent",
    "GCHeapHardLimitSOH",
    "GCHeapHardLimitLOH",
    "GCHeapHardLimitPOH",
    "GCHeapHardLimitSOHPercent",
    "GCHeapHardLimitLOHPercent",
    "GCHeapHardLimitPOHPercent",
    "GCHeapCount",
    "GCHeapAffinitizeMask",
    "GCHeapAffinitizeRanges",
];

/// Whether a process is .NET: its executable (the basename of `/proc/PID/exe`) is `dotnet`,
/// or it has one of the GC heap variables (`DOTNET_GCHeapHardLimit` and the like). An app
/// published self-contained runs as its own executable and, without such a variable, is not
/// recognised.
pub(crate) fn is_dotnet(exe: &str, env: &Env) -> bool {
    exe == "dotnet"
        || GC_HEAP_SETTINGS
            .iter()
            .any(|name| setting(env, name).is_some())
}

/// The GC heap hard limit of a .NET process with environment `env`; `memory` is what the
/// runtime sees as its memory: the container's limit when `limited`, else the node's.
pub(crate) fn ceiling(env: &Env, memory: u64, limited: bool) -> HeapCeiling {
    // GCTotalPhysicalMemory stands for the memory seen, and counts as a limit.
    let (memory, limited, base) = match number(env, "GCTotalPhysicalMemory").filter(|(n, _)| *n > 0)
    {
        Some((bytes, said)) => (bytes, true, format!("{} ({said})", human(bytes))),
        None if limited => (memory, true, format!("the {} limit", human(memory))),
        None => (memory, false, format!("the node's {}", human(memory))),
    };
    let (bytes, source, default) = match hard_limit(env, memory, &base) {
        Some((bytes, source)) => (Some(bytes), source, false),
        None if limited => {
            let share = percent_of(memory, DEFAULT_PERCENT);
            let source = if share < DEFAULT_FLOOR {
                format!(
                    "default: the GC's {} minimum ({base})",
                    human(DEFAULT_FLOOR)
                )
            } else {
                format!("default: {DEFAULT_PERCENT} % of {base}")
            };
            (Some(share.max(DEFAULT_FLOOR)), source, true)
        }
        None => (
            None,
            "no GCHeapHardLimit and no container limit: no hard limit".to_owned(),
            true,
        ),
    };
    HeapCeiling {
        runtime: Runtime::Dotnet,
        bytes,
        source,
        default,
        gc_off: false,
    }
}

/// The hard limit the settings give, in the runtime's order: per-object-heap limits (when
/// given, `GCHeapHardLimit` is ignored), then `GCHeapHardLimit`, then `GCHeapHardLimitPercent`.
fn hard_limit(env: &Env, memory: u64, base: &str) -> Option<(u64, String)> {
    if let Some(found) = object_heap_limits(env, memory, base) {
        return Some(found);
    }
    if let Some((bytes, said)) = number(env, "GCHeapHardLimit").filter(|&(n, _)| n > 0) {
        return Some((bytes, format!("{said} ({})", human(bytes))));
    }
    let (percent, said) = number(env, "GCHeapHardLimitPercent")?;
    if !(1..100).contains(&percent) {
        // The runtime ignores a percentage of 0 or from 100.
        log::debug!("{said}: not a percentage from 1 to 99, ignored");
        return None;
    }
    Some((
        percent_of(memory, percent),
        format!("{said} ({percent} % of {base})"),
    ))
}

/// The sum of the per-object-heap limits (small, large and pinned objects), in bytes or else
/// percentages. The runtime refuses to start without the small and the large ones, or without
/// the pinned one unless it uses large pages; then we read none.
fn object_heap_limits(env: &Env, memory: u64, base: &str) -> Option<(u64, String)> {
    // A 0 is no setting, to the runtime as here.
    let read = |suffix: &str| number(env, &format!("GCHeapHardLimit{suffix}")).filter(|n| n.0 > 0);
    let absolute = [read("SOH"), read("LOH"), read("POH")];
    let percents = [read("SOHPercent"), read("LOHPercent"), read("POHPercent")];
    let (parts, percent) = if absolute.iter().any(Option::is_some) {
        (absolute, false)
    } else if percents.iter().any(Option::is_some) {
        (percents, true)
    } else {
        return None;
    };
    let large_pages = number(env, "GCLargePages").is_some_and(|(n, _)| n != 0);
    let [Some(soh), Some(loh), poh] = parts else {
        log::debug!("per-object-heap GC limits without both SOH and LOH: the runtime refuses them");
        return None;
    };
    if poh.is_none() && !large_pages {
        log::debug!(
            "per-object-heap GC limits without POH nor large pages: the runtime refuses them"
        );
        return None;
    }
    let parts: Vec<(u64, String)> = [Some(soh), Some(loh), poh].into_iter().flatten().collect();
    let said = parts
        .iter()
        .map(|(_, s)| s.as_str())
        .collect::<Vec<_>>()
        .join(" + ");
    if percent {
        let total = parts
            .iter()
            .fold(0_u64, |sum, (n, _)| sum.saturating_add(*n));
        if total >= 100 {
            log::debug!("{said}: 100 % or more, which the runtime refuses");
            return None;
        }
        let bytes = parts.iter().map(|(n, _)| percent_of(memory, *n)).sum();
        return Some((bytes, format!("{said} ({total} % of {base})")));
    }
    let bytes = parts
        .iter()
        .try_fold(0_u64, |sum, (n, _)| sum.checked_add(*n))?;
    Some((bytes, format!("{said} ({})", human(bytes))))
}

/// `percent` % of `memory`, as the runtime's 64-bit `memory * percent / 100`, without its
/// overflow.
fn percent_of(memory: u64, percent: u64) -> u64 {
    let product = u128::from(memory) * u128::from(percent) / 100;
    u64::try_from(product).unwrap_or(u64::MAX)
}

/// A setting's raw value: `DOTNET_<name>`, else `COMPlus_<name>`; with the variable's name.
fn setting<'a>(env: &'a Env, name: &str) -> Option<(&'a str, String)> {
    ["DOTNET_", "COMPlus_"].iter().find_map(|prefix| {
        let key = format!("{prefix}{name}");
        env.get(&key).map(|value| (value, key))
    })
}

/// A numeric setting, hexadecimal as CLRConfig reads it (`u16_strtoui64(value, 16)`), with
/// `DOTNET_GCHeapHardLimit=0xC800000` to say where it came from. Like the runtime it takes
/// the leading hex digits and stops at the first other character (`200MB` reads as 0x200:
/// 512 bytes; logged); `None` when absent, without a digit, or past 64 bits.
fn number(env: &Env, name: &str) -> Option<(u64, String)> {
    let (value, key) = setting(env, name)?;
    let said = format!("{key}={value}");
    let trimmed = value.trim_start();
    let digits = trimmed
        .strip_prefix("0x")
        .or_else(|| trimmed.strip_prefix("0X"))
        .unwrap_or(trimmed);
    let end = digits
        .find(|c: char| !c.is_ascii_hexdigit())
        .unwrap_or(digits.len());
    if end < digits.len() {
        log::debug!("{said}: read as hexadecimal up to {:?}", &digits[end..]);
    }
    match u64::from_str_radix(&digits[..end], 16) {
        Ok(n) => Some((n, said)),
        Err(e) => {
            log::debug!("{said}: not a hexadecimal number ({e}), ignored");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ceilings::size::GIB;

    fn env(entries: &[&str]) -> Env {
        Env::from_entries(entries.iter().copied())
    }

    #[test]
    fn hard_limit_is_hexadecimal_with_or_without_0x() {
        // The docs' example: 0xC800000 is 200 MiB.
        for value in ["0xC800000", "C800000", "0Xc800000", "c800000"] {
            let var = format!("DOTNET_GCHeapHardLimit={value}");
            let found = ceiling(&env(&[&var]), GIB, true);
            assert_eq!(found.bytes, Some(200 * MIB), "{value}");
            assert_eq!(found.source, format!("{var} (200 MiB)"));
            assert!(!found.default);
        }
        // Set, it holds with no container limit too.
        let found = ceiling(
            &env(&["DOTNET_GCHeapHardLimit=0x10000000"]),
            64 * GIB,
            false,
        );
        assert_eq!(found.bytes, Some(256 * MIB));
    }

    #[test]
    fn hard_limit_percent_is_hexadecimal_too() {
        // 0x1E is 30 %.
        let found = ceiling(&env(&["DOTNET_GCHeapHardLimitPercent=0x1E"]), GIB, true);
        assert_eq!(found.bytes, Some(322_122_547));
        assert_eq!(
            found.source,
            "DOTNET_GCHeapHardLimitPercent=0x1E (30 % of the 1.0 GiB limit)"
        );
        let found = ceiling(&env(&["DOTNET_GCHeapHardLimitPercent=32"]), 4 * GIB, false);
        assert_eq!(
            found.bytes,
            Some(2 * GIB),
            "0x32 is 50 %, of the node's memory"
        );
        // An absolute limit wins over a percentage.
        let both = [
            "DOTNET_GCHeapHardLimitPercent=0x32",
            "DOTNET_GCHeapHardLimit=0x4000000",
        ];
        assert_eq!(ceiling(&env(&both), GIB, true).bytes, Some(64 * MIB));
    }

    #[test]
    fn dotnet_prefix_wins_over_complus() {
        let both = [
            "COMPlus_GCHeapHardLimit=0x8000000",
            "DOTNET_GCHeapHardLimit=0x4000000",
        ];
        let found = ceiling(&env(&both), GIB, true);
        assert_eq!(found.bytes, Some(64 * MIB));
        let legacy = ceiling(&env(&["COMPlus_GCHeapHardLimit=0x8000000"]), GIB, true);
        assert_eq!(legacy.bytes, Some(128 * MIB));
        assert_eq!(legacy.source, "COMPlus_GCHeapHardLimit=0x8000000 (128 MiB)");
    }

    #[test]
    fn default_under_a_limit_and_none_without() {
        let found = ceiling(&Env::default(), 256 * MIB, true);
        assert_eq!(found.bytes, Some(192 * MIB));
        assert_eq!(found.source, "default: 75 % of the 256 MiB limit");
        assert!(found.default);
        let small = ceiling(&Env::default(), 24 * MIB, true);
        assert_eq!(small.bytes, Some(20 * MIB));
        assert_eq!(
            small.source,
            "default: the GC's 20 MiB minimum (the 24 MiB limit)"
        );
        let free = ceiling(&Env::default(), 64 * GIB, false);
        assert_eq!(free.bytes, None);
        assert_eq!(
            free.source,
            "no GCHeapHardLimit and no container limit: no hard limit"
        );
        assert!(free.default);
        // GCTotalPhysicalMemory stands for a limit.
        let total = ["DOTNET_GCTotalPhysicalMemory=0x40000000"];
        let found = ceiling(&env(&total), 64 * GIB, false);
        assert_eq!(found.bytes, Some(768 * MIB));
        assert_eq!(
            found.source,
            "default: 75 % of 1.0 GiB (DOTNET_GCTotalPhysicalMemory=0x40000000)"
        );
    }

    #[test]
    fn per_object_heap_limits_replace_the_hard_limit() {
        let limits = [
            "DOTNET_GCHeapHardLimit=0x40000000",
            "DOTNET_GCHeapHardLimitSOH=0x8000000",
            "DOTNET_GCHeapHardLimitLOH=0x4000000",
            "DOTNET_GCHeapHardLimitPOH=0x100000",
        ];
        let found = ceiling(&env(&limits), GIB, true);
        assert_eq!(found.bytes, Some(193 * MIB));
        assert_eq!(
            found.source,
            "DOTNET_GCHeapHardLimitSOH=0x8000000 + DOTNET_GCHeapHardLimitLOH=0x4000000 + \
             DOTNET_GCHeapHardLimitPOH=0x100000 (193 MiB)"
        );
        let percents = [
            "DOTNET_GCHeapHardLimitSOHPercent=0x19",
            "DOTNET_GCHeapHardLimitLOHPercent=0xA",
            "DOTNET_GCHeapHardLimitPOHPercent=5",
        ];
        let found = ceiling(&env(&percents), 1000 * MIB, true);
        assert_eq!(found.bytes, Some(400 * MIB), "25 + 10 + 5 % of 1000 MiB");
        // Without LOH the runtime refuses them: the hard limit applies.
        let partial = [
            "DOTNET_GCHeapHardLimit=0x4000000",
            "DOTNET_GCHeapHardLimitSOH=0x8000000",
        ];
        assert_eq!(ceiling(&env(&partial), GIB, true).bytes, Some(64 * MIB));
        let no_poh = [
            "DOTNET_GCHeapHardLimitSOH=0x8000000",
            "DOTNET_GCHeapHardLimitLOH=0x8000000",
        ];
        assert_eq!(ceiling(&env(&no_poh), GIB, true).bytes, Some(768 * MIB));
        let large_pages = [no_poh[0], no_poh[1], "DOTNET_GCLargePages=1"];
        assert_eq!(
            ceiling(&env(&large_pages), GIB, true).bytes,
            Some(256 * MIB)
        );
        let too_much = [
            "DOTNET_GCHeapHardLimitSOHPercent=0x40",
            "DOTNET_GCHeapHardLimitLOHPercent=0x40",
            "DOTNET_GCHeapHardLimitPOHPercent=1",
        ];
        assert_eq!(ceiling(&env(&too_much), GIB, true).bytes, Some(768 * MIB));
        let overflowing = [
            "DOTNET_GCHeapHardLimitSOHPercent=FFFFFFFFFFFFFFFF",
            "DOTNET_GCHeapHardLimitLOHPercent=FFFFFFFFFFFFFFFF",
            "DOTNET_GCHeapHardLimitPOHPercent=1",
        ];
        assert_eq!(
            ceiling(&env(&overflowing), GIB, true).bytes,
            Some(768 * MIB)
        );
    }

    #[test]
    fn malformed_values_are_ignored_or_read_as_the_runtime_reads_them() {
        for value in ["", "0x", "zz", "-", "0xFFFFFFFFFFFFFFFFF", "€"] {
            let var = format!("DOTNET_GCHeapHardLimit={value}");
            let found = ceiling(&env(&[&var]), 256 * MIB, true);
            assert_eq!(found.bytes, Some(192 * MIB), "{value:?}: the default");
        }
        // The runtime stops at the first non-hex character: 200MB is 0x200 bytes.
        let found = ceiling(&env(&["DOTNET_GCHeapHardLimit=200MB"]), 256 * MIB, true);
        assert_eq!(found.bytes, Some(0x200));
        // 0 is no limit; percentages of 0 or from 100 are ignored.
        assert_eq!(
            ceiling(&env(&["DOTNET_GCHeapHardLimit=0"]), 256 * MIB, true).bytes,
            Some(192 * MIB)
        );
        for value in ["0", "64", "FF"] {
            let var = format!("DOTNET_GCHeapHardLimitPercent={value}");
            assert_eq!(
                ceiling(&env(&[&var]), 256 * MIB, true).bytes,
                Some(192 * MIB),
                "{value}"
            );
        }
        assert_eq!(
            percent_of(u64::MAX, 99),
            u64::MAX / 100 * 99 + u64::MAX % 100 * 99 / 100
        );
    }

    #[test]
    fn no_value_makes_it_panic() {
        let names = [
            "GCHeapHardLimit",
            "GCHeapHardLimitPercent",
            "GCHeapHardLimitSOH",
            "GCHeapHardLimitSOHPercent",
            "GCTotalPhysicalMemory",
        ];
        let values = ["", "0x", "FFFFFFFFFFFFFFFF", "1€", " 1", "-1", "63", "64"];
        for name in names {
            for value in values {
                let vars = [
                    format!("DOTNET_{name}={value}"),
                    format!("COMPlus_GCHeapHardLimitLOH={value}"),
                    format!("DOTNET_GCHeapHardLimitLOHPercent={value}"),
                    "DOTNET_GCHeapHardLimitPOH=FFFFFFFFFFFFFFFF".to_owned(),
                ];
                let env = Env::from_entries(vars.iter().map(String::as_str));
                for memory in [0, 1, u64::MAX] {
                    ceiling(&env, memory, true);
                    ceiling(&env, memory, false);
                }
            }
        }
    }

    #[test]
    fn is_dotnet_by_executable_or_gc_variables() {
        assert!(is_dotnet("dotnet", &Env::default()));
        assert!(is_dotnet("MyApp", &env(&["DOTNET_GCHeapHardLimit=0x1000"])));
        assert!(is_dotnet("MyApp", &env(&["COMPlus_GCHeapCount=2"])));
        assert!(!is_dotnet(
            "MyApp",
            &env(&["DOTNET_RUNNING_IN_CONTAINER=true"])
        ));
        assert!(!is_dotnet("java", &Env::default()));
    }
}
