//! A Go program's memory limit, from `GOMEMLIMIT` and `GOGC` in its environment.
//!
//! `GOMEMLIMIT` is a soft limit on all the memory the Go runtime manages (heap, stacks,
//! runtime structures), not the heap alone: the collector works harder near it, but live data
//! past it is kept. Without it a Go program's heap is bounded only by the memory it gets.
//! `debug.SetMemoryLimit` and `debug.SetGCPercent` called by the program itself cannot be seen
//! from outside. (Whether a binary is a Go program is `elf.rs`'s question.)
use super::{
    size::{go_size, human, GoLimit},
    Env, HeapCeiling, Runtime,
};

/// The memory limit of a Go program with environment `env`.
pub(crate) fn ceiling(env: &Env) -> HeapCeiling {
    let limit = match env.get("GOMEMLIMIT") {
        // The runtime takes an empty value for no value.
        None | Some("") => None,
        Some(text) => match go_size(text) {
            Some(limit) => Some((limit, text)),
            None => {
                // The Go runtime dies on start-up with it, so a running program rarely has one.
                log::debug!("GOMEMLIMIT={text}: malformed, ignored");
                None
            }
        },
    };
    let (bytes, source) = match limit {
        // `math.MaxInt64` is the runtime's own "no limit".
        Some((GoLimit::Bytes(bytes), text)) if bytes < i64::MAX.unsigned_abs() => {
            (Some(bytes), format!("GOMEMLIMIT={text} ({})", human(bytes)))
        }
        Some((_, text)) => (None, format!("GOMEMLIMIT={text}: no limit")),
        None => (None, "no GOMEMLIMIT: no limit".to_owned()),
    };
    let gc_off = bytes.is_none() && gc_is_off(env.get("GOGC"));
    let source = if gc_off {
        format!(
            "{source}, and GOGC={}: garbage is never collected",
            env.get("GOGC").unwrap_or_default()
        )
    } else {
        source
    };
    HeapCeiling {
        runtime: Runtime::Go,
        bytes,
        source,
        default: limit.is_none(),
        gc_off,
    }
}

/// Whether `GOGC` turns the collector off, as the runtime's `readGOGC` reads it: `off`, or a
/// negative integer (`GOGC=-1` reads as off too: measured with go1.19.8). Anything else
/// (`OFF`, `abc`, a number past 32 bits) is the default, 100.
fn gc_is_off(gogc: Option<&str>) -> bool {
    match gogc {
        Some("off") => true,
        Some(text) => text.parse::<i32>().is_ok_and(|n| n < 0),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ceilings::size::{GIB, MIB};

    fn go(entries: &[&str]) -> HeapCeiling {
        ceiling(&Env::from_entries(entries.iter().copied()))
    }

    #[test]
    fn gomemlimit_sets_the_ceiling() {
        let found = go(&["GOMEMLIMIT=512MiB", "GOGC=off"]);
        assert_eq!(found.bytes, Some(512 * MIB));
        assert_eq!(found.source, "GOMEMLIMIT=512MiB (512 MiB)");
        assert!(!found.default);
        assert!(
            !found.gc_off,
            "with a limit, GOGC=off collects at the limit"
        );
        assert_eq!(found.runtime, Runtime::Go);
        assert_eq!(go(&["GOMEMLIMIT=1073741824"]).bytes, Some(GIB));
        assert_eq!(go(&["GOMEMLIMIT=2GiB"]).source, "GOMEMLIMIT=2GiB (2.0 GiB)");
        assert_eq!(go(&["GOMEMLIMIT=0"]).bytes, Some(0));
    }

    #[test]
    fn no_limit_off_and_the_runtimes_own_maximum() {
        let none = go(&[]);
        assert_eq!(none.bytes, None);
        assert_eq!(none.source, "no GOMEMLIMIT: no limit");
        assert!(none.default && !none.gc_off);
        assert_eq!(go(&["GOMEMLIMIT="]), none);
        let off = go(&["GOMEMLIMIT=off"]);
        assert_eq!(off.bytes, None);
        assert_eq!(off.source, "GOMEMLIMIT=off: no limit");
        assert!(!off.default);
        let max = go(&["GOMEMLIMIT=9223372036854775807"]);
        assert_eq!(max.bytes, None);
        assert_eq!(max.source, "GOMEMLIMIT=9223372036854775807: no limit");
    }

    #[test]
    fn gogc_off_without_a_limit_never_collects() {
        for gogc in ["off", "-1", "-5"] {
            let found = go(&[&format!("GOGC={gogc}")]);
            assert!(found.gc_off, "GOGC={gogc}");
            assert_eq!(found.bytes, None);
            assert_eq!(
                found.source,
                format!("no GOMEMLIMIT: no limit, and GOGC={gogc}: garbage is never collected")
            );
        }
        assert!(go(&["GOMEMLIMIT=off", "GOGC=off"]).gc_off);
        // As go1.19.8 reads them: the default 100, or 0 (collect all the time), not off.
        for gogc in [
            "OFF",
            "0",
            "50",
            "abc",
            "",
            "2147483648",
            "+5",
            "-2147483649",
        ] {
            assert!(!go(&[&format!("GOGC={gogc}")]).gc_off, "GOGC={gogc}");
        }
    }

    #[test]
    fn a_malformed_limit_is_ignored() {
        // go1.19.8 dies with "malformed GOMEMLIMIT" on each.
        for text in ["1GB", "1gib", "512 MiB", "-5", "OFF", "9223372036854775808"] {
            let found = go(&[&format!("GOMEMLIMIT={text}"), "GOGC=off"]);
            assert_eq!(found.bytes, None, "{text}");
            assert!(found.gc_off && found.default, "{text}");
        }
    }

    #[test]
    fn godebug_changes_nothing() {
        assert_eq!(
            go(&["GODEBUG=madvdontneed=1", "GOMEMLIMIT=1GiB"]).bytes,
            Some(GIB)
        );
    }
}
