//! Pure parsers for the text of memory cgroup files.
//!
//! Nothing here touches the file system, so every format is tested on recorded text; the
//! callers attach the file name to a [`ParseError`].

use std::collections::HashMap;

use serde::Serialize;

use super::error::ParseError;

/// The memory pressure stall information of one cgroup (`memory.pressure`).
///
/// Averages are percentages of wall time over 10 s and 60 s; totals are microseconds stalled
/// since the cgroup was created.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub(crate) struct MemoryPressure {
    /// Share of time at least one task was stalled on memory, last 10 s.
    pub some_avg10: f64,
    /// Share of time at least one task was stalled on memory, last 60 s.
    pub some_avg60: f64,
    /// Total time at least one task was stalled on memory.
    pub some_total_us: u64,
    /// Share of time all non-idle tasks were stalled on memory, last 10 s.
    pub full_avg10: f64,
    /// Share of time all non-idle tasks were stalled on memory, last 60 s.
    pub full_avg60: f64,
    /// Total time all non-idle tasks were stalled on memory.
    pub full_total_us: u64,
}

/// The smallest cgroup v1 limit read back as "no limit".
///
/// v1 reports an unset limit as `PAGE_COUNTER_MAX * PAGE_SIZE`, which depends on the page size
/// (9223372036854771712 with 4 KiB pages, 9223372036854710272 with 64 KiB pages). Every such
/// value is at least 2^62, and no real limit comes near it, so one threshold covers all page
/// sizes. 32-bit kernels report a smaller sentinel; they are not a target of this profiler.
pub(crate) const V1_UNLIMITED_THRESHOLD: u64 = 1 << 62;

/// Parses a file holding one unsigned integer (`memory.usage_in_bytes`, `memory.current`,
/// `memory.failcnt`, ...).
pub(crate) fn parse_single_u64(text: &str) -> Result<u64, ParseError> {
    let value = single_line(text)?;
    value
        .parse::<u64>()
        .map_err(|_| ParseError::at(1, format!("expected an unsigned integer, found `{value}`")))
}

/// Parses a cgroup v1 limit file (`memory.limit_in_bytes`): `None` when the value is the
/// kernel's "no limit" sentinel (see [`V1_UNLIMITED_THRESHOLD`]).
pub(crate) fn parse_limit_v1(text: &str) -> Result<Option<u64>, ParseError> {
    let limit = parse_single_u64(text)?;
    Ok((limit < V1_UNLIMITED_THRESHOLD).then_some(limit))
}

/// Parses a cgroup v2 limit file (`memory.max`, `memory.high`): `None` for `max`.
pub(crate) fn parse_max_v2(text: &str) -> Result<Option<u64>, ParseError> {
    let value = single_line(text)?;
    if value == "max" {
        return Ok(None);
    }
    value.parse::<u64>().map(Some).map_err(|_| {
        ParseError::at(
            1,
            format!("expected `max` or an unsigned integer, found `{value}`"),
        )
    })
}

/// Parses a "flat keyed" cgroup file: one `<key> <unsigned integer>` pair per line
/// (`memory.events`, v1 `memory.oom_control`, ...).
pub(crate) fn parse_flat_keyed(text: &str) -> Result<HashMap<String, u64>, ParseError> {
    parse_keyed(text, NegativeValues::Reject)
}

/// Parses `memory.stat` (v1 or v2): flat keyed, byte and event counts.
///
/// Unlike [`parse_flat_keyed`], a negative value reads as 0: older kernels sum per-CPU counters
/// without clamping, so a counter that is really near 0 can be printed as slightly negative.
pub(crate) fn parse_memory_stat(text: &str) -> Result<HashMap<String, u64>, ParseError> {
    parse_keyed(text, NegativeValues::AsZero)
}

/// Parses a PSI file (`memory.pressure`):
///
/// ```text
/// some avg10=0.00 avg60=0.00 avg300=0.00 total=0
/// full avg10=0.00 avg60=0.00 avg300=0.00 total=0
/// ```
///
/// Both lines are required: memory pressure has had both since PSI was introduced (4.20).
pub(crate) fn parse_pressure(text: &str) -> Result<MemoryPressure, ParseError> {
    let mut some = None;
    let mut full = None;
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        let mut fields = line.split_ascii_whitespace();
        let Some(kind) = fields.next() else {
            continue;
        };
        let slot = match kind {
            "some" => &mut some,
            "full" => &mut full,
            other => {
                return Err(ParseError::at(
                    number,
                    format!("expected a line starting with `some` or `full`, found `{other}`"),
                ))
            }
        };
        if slot.is_some() {
            return Err(ParseError::at(number, format!("second `{kind}` line")));
        }
        *slot = Some(parse_pressure_line(number, fields)?);
    }
    let (Some(some), Some(full)) = (some, full) else {
        return Err(ParseError::whole(
            "expected a `some` line and a `full` line",
        ));
    };
    Ok(MemoryPressure {
        some_avg10: some.avg10,
        some_avg60: some.avg60,
        some_total_us: some.total_us,
        full_avg10: full.avg10,
        full_avg60: full.avg60,
        full_total_us: full.total_us,
    })
}

/// The fields of one PSI line that the snapshot keeps.
struct PressureLine {
    avg10: f64,
    avg60: f64,
    total_us: u64,
}

fn parse_pressure_line<'a>(
    number: usize,
    fields: impl Iterator<Item = &'a str>,
) -> Result<PressureLine, ParseError> {
    let mut avg10 = None;
    let mut avg60 = None;
    let mut total_us = None;
    for field in fields {
        let Some((key, value)) = field.split_once('=') else {
            return Err(ParseError::at(
                number,
                format!("expected `<key>=<value>`, found `{field}`"),
            ));
        };
        match key {
            "avg10" => avg10 = Some(parse_ratio(number, key, value)?),
            "avg60" => avg60 = Some(parse_ratio(number, key, value)?),
            "total" => {
                total_us = Some(value.parse::<u64>().map_err(|_| {
                    ParseError::at(
                        number,
                        format!("expected an unsigned integer for `total`, found `{value}`"),
                    )
                })?)
            }
            // avg300 and any field a later kernel adds are not part of the snapshot.
            _ => {}
        }
    }
    match (avg10, avg60, total_us) {
        (Some(avg10), Some(avg60), Some(total_us)) => Ok(PressureLine {
            avg10,
            avg60,
            total_us,
        }),
        _ => Err(ParseError::at(
            number,
            "expected `avg10=`, `avg60=` and `total=` fields",
        )),
    }
}

fn parse_ratio(number: usize, key: &str, value: &str) -> Result<f64, ParseError> {
    match value.parse::<f64>() {
        Ok(ratio) if ratio.is_finite() && ratio >= 0.0 => Ok(ratio),
        _ => Err(ParseError::at(
            number,
            format!("expected a non-negative percentage for `{key}`, found `{value}`"),
        )),
    }
}

/// How [`parse_keyed`] treats a value with a minus sign.
#[derive(Clone, Copy, PartialEq)]
enum NegativeValues {
    Reject,
    AsZero,
}

fn parse_keyed(text: &str, negative: NegativeValues) -> Result<HashMap<String, u64>, ParseError> {
    let mut map = HashMap::new();
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        let mut fields = line.split_ascii_whitespace();
        let (key, value) = match (fields.next(), fields.next(), fields.next()) {
            (None, _, _) => continue,
            (Some(key), Some(value), None) => (key, value),
            _ => {
                return Err(ParseError::at(
                    number,
                    format!("expected `<key> <value>`, found `{line}`"),
                ))
            }
        };
        let parsed = match value.parse::<u64>() {
            Ok(parsed) => parsed,
            Err(_) if negative == NegativeValues::AsZero && is_negative_integer(value) => 0,
            Err(_) => {
                return Err(ParseError::at(
                    number,
                    format!("expected an unsigned integer for `{key}`, found `{value}`"),
                ))
            }
        };
        if map.insert(key.to_owned(), parsed).is_some() {
            return Err(ParseError::at(number, format!("key `{key}` appears twice")));
        }
    }
    Ok(map)
}

fn is_negative_integer(value: &str) -> bool {
    value
        .strip_prefix('-')
        .is_some_and(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
}

/// The one value of a single-value file; a trailing newline is normal, anything more is not.
fn single_line(text: &str) -> Result<&str, ParseError> {
    let mut lines = text.lines().map(str::trim).filter(|line| !line.is_empty());
    match (lines.next(), lines.next()) {
        (Some(value), None) => Ok(value),
        (None, _) => Err(ParseError::whole("the file is empty, expected one value")),
        (Some(_), Some(extra)) => Err(ParseError::whole(format!(
            "expected one value, found a further line `{extra}`"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_value() {
        assert_eq!(parse_single_u64("66723840\n"), Ok(66_723_840));
        assert_eq!(parse_single_u64("0"), Ok(0));
        let err = parse_single_u64("12ab\n").expect_err("not a number");
        assert_eq!(err.line, Some(1));
        assert!(err.reason.contains("`12ab`"), "{err}");
        assert!(parse_single_u64("").is_err());
        assert!(parse_single_u64("1\n2\n").is_err());
        assert!(parse_single_u64("-5\n").is_err());
    }

    #[test]
    fn v1_limits() {
        assert_eq!(parse_limit_v1("67108864\n"), Ok(Some(64 << 20)));
        // What an unset limit reads as with 4 KiB pages (recorded on x86_64).
        assert_eq!(parse_limit_v1("9223372036854771712\n"), Ok(None));
        // The same sentinel with 64 KiB pages (arm64, ppc64le).
        assert_eq!(parse_limit_v1("9223372036854710272\n"), Ok(None));
        assert_eq!(
            parse_limit_v1(&format!("{}\n", (1u64 << 62) - 1)),
            Ok(Some((1 << 62) - 1))
        );
        assert!(parse_limit_v1("max\n").is_err());
    }

    #[test]
    fn v2_limits() {
        assert_eq!(parse_max_v2("max\n"), Ok(None));
        assert_eq!(parse_max_v2("268435456\n"), Ok(Some(256 << 20)));
        assert_eq!(parse_max_v2("0\n"), Ok(Some(0)));
        let err = parse_max_v2("unlimited\n").expect_err("not a limit");
        assert!(err.reason.contains("`max`"), "{err}");
        assert!(parse_max_v2("\n").is_err());
    }

    #[test]
    fn flat_keyed() {
        let map = parse_flat_keyed("low 0\nhigh 0\nmax 12\noom 3\noom_kill 2\noom_group_kill 0\n")
            .expect("memory.events");
        assert_eq!(map.len(), 6);
        assert_eq!(map.get("max"), Some(&12));
        assert_eq!(map.get("oom"), Some(&3));
        assert_eq!(map.get("oom_kill"), Some(&2));
        assert_eq!(map.get("oom_group_kill"), Some(&0));
        // Blank lines are not an error.
        assert_eq!(parse_flat_keyed("\n\na 1\n\n").map(|m| m.len()), Ok(1));
        assert_eq!(parse_flat_keyed("").map(|m| m.len()), Ok(0));
    }

    #[test]
    fn flat_keyed_errors_name_the_line() {
        let err = parse_flat_keyed("low 0\nhigh\n").expect_err("missing value");
        assert_eq!(err.line, Some(2));
        assert!(err.reason.contains("`high`"), "{err}");

        let err = parse_flat_keyed("low 0\nhigh 1 2\n").expect_err("extra field");
        assert_eq!(err.line, Some(2));

        let err = parse_flat_keyed("a 1\nb x\n").expect_err("not a number");
        assert_eq!(err.line, Some(2));
        assert!(
            err.reason.contains("`b`") && err.reason.contains("`x`"),
            "{err}"
        );

        let err = parse_flat_keyed("a 1\na 2\n").expect_err("duplicate");
        assert_eq!(err.line, Some(2));

        // Only memory.stat forgives negative counters.
        assert!(parse_flat_keyed("a -4096\n").is_err());
    }

    #[test]
    fn memory_stat() {
        let map = parse_memory_stat("anon 1024\nfile 4096\nslab -8\n").expect("memory.stat");
        assert_eq!(map.get("anon"), Some(&1024));
        assert_eq!(map.get("file"), Some(&4096));
        assert_eq!(map.get("slab"), Some(&0));
        assert!(parse_memory_stat("anon -\n").is_err());
        assert!(parse_memory_stat("anon --1\n").is_err());
    }

    #[test]
    fn pressure() {
        let text = "some avg10=1.50 avg60=0.25 avg300=0.05 total=123456\n\
                    full avg10=0.75 avg60=0.10 avg300=0.01 total=65432\n";
        assert_eq!(
            parse_pressure(text),
            Ok(MemoryPressure {
                some_avg10: 1.5,
                some_avg60: 0.25,
                some_total_us: 123_456,
                full_avg10: 0.75,
                full_avg60: 0.1,
                full_total_us: 65_432,
            })
        );
        let idle = "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n\
                    full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n";
        assert_eq!(parse_pressure(idle), Ok(MemoryPressure::default()));
    }

    #[test]
    fn pressure_errors() {
        let only_some = "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n";
        assert_eq!(parse_pressure(only_some).map_err(|e| e.line), Err(None));

        let bad_total = "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n\
                         full avg10=0.00 avg60=0.00 avg300=0.00 total=x\n";
        assert_eq!(parse_pressure(bad_total).map_err(|e| e.line), Err(Some(2)));

        let missing_avg60 = "some avg10=0.00 total=0\nfull avg10=0.00 avg60=0.00 total=0\n";
        assert_eq!(
            parse_pressure(missing_avg60).map_err(|e| e.line),
            Err(Some(1))
        );

        let bad_kind = "half avg10=0.00 avg60=0.00 avg300=0.00 total=0\n";
        assert_eq!(parse_pressure(bad_kind).map_err(|e| e.line), Err(Some(1)));

        let negative = "some avg10=-1 avg60=0.00 total=0\nfull avg10=0 avg60=0 total=0\n";
        assert!(parse_pressure(negative).is_err());
        assert!(parse_pressure("some avg10 avg60=0 total=0\n").is_err());
    }
}
