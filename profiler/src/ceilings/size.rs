//! Sizes and numbers as the runtimes write them (HotSpot's `512m` and `75.5`, Go's `512MiB`)
//! and sizes as we write them back for people (`512 MiB`, `1.0 GiB`).

/// One kibibyte.
pub(crate) const KIB: u64 = 1 << 10;
/// One mebibyte.
pub(crate) const MIB: u64 = 1 << 20;
/// One gibibyte.
pub(crate) const GIB: u64 = 1 << 30;
/// One tebibyte.
pub(crate) const TIB: u64 = 1 << 40;

/// A size in HotSpot's syntax (`-Xmx`, `-XX:MaxHeapSize=`, `-XX:MaxRAM=`): digits with an
/// optional `k`/`K`, `m`/`M`, `g`/`G` or `t`/`T` suffix (binary multiples), bytes without one.
/// Like HotSpot's `atojulong`, a `0x` prefix makes the digits hexadecimal (`-Xmx0x10000000`).
/// `None` when malformed or past 64 bits, as HotSpot refuses to start then.
pub(crate) fn jvm_size(text: &str) -> Option<u64> {
    // HotSpot wants a digit first: no sign, no blank.
    if !text.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    let (body, radix) = match text.get(..2) {
        Some("0x" | "0X") => (&text[2..], 16),
        _ => (text, 10),
    };
    let end = body
        .find(|c: char| !c.is_digit(radix))
        .unwrap_or(body.len());
    let (digits, suffix) = body.split_at(end);
    if digits.is_empty() {
        return None;
    }
    let number = u64::from_str_radix(digits, radix).ok()?;
    let unit = match suffix {
        "" => 1,
        "k" | "K" => KIB,
        "m" | "M" => MIB,
        "g" | "G" => GIB,
        "t" | "T" => TIB,
        _ => return None,
    };
    number.checked_mul(unit)
}

/// A double in HotSpot's option syntax: digits, optionally a `.` and more (`75`, `75.5`,
/// `5.5e1`); not `.5`, `5.`, `1e1` or `-1`, which OpenJDK 17 refuses ("Improperly specified
/// VM option").
pub(crate) fn jvm_double(text: &str) -> Option<f64> {
    let int_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    if int_end == 0 {
        return None;
    }
    let rest = &text[int_end..];
    if !rest.is_empty() {
        let fraction = rest.strip_prefix('.')?;
        let allowed = |c: char| c.is_ascii_digit() || matches!(c, 'e' | 'E' | '+' | '-');
        if fraction.is_empty() || !fraction.chars().all(allowed) {
            return None;
        }
    }
    text.parse::<f64>().ok().filter(|v| v.is_finite())
}

/// What `GOMEMLIMIT` asks of the Go runtime.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum GoLimit {
    /// A soft limit on all the memory the Go runtime manages, bytes.
    Bytes(u64),
    /// `off`: no limit.
    Off,
}

/// `GOMEMLIMIT` as the Go runtime reads it (`parseByteCount` in `runtime/string.go`): `off`, or
/// a non-negative integer of bytes with an optional suffix `B`, `KiB`, `MiB`, `GiB` or `TiB`,
/// case-sensitive (`1GB`, `1gib` and `1 GiB` are refused), at most `i64::MAX` bytes. `None` when
/// malformed: the Go runtime then dies on start-up ("malformed GOMEMLIMIT"). Verified against
/// go1.19.8.
pub(crate) fn go_size(text: &str) -> Option<GoLimit> {
    if text == "off" {
        return Some(GoLimit::Off);
    }
    let (number, unit) = if text.ends_with(|c: char| c.is_ascii_digit()) {
        (text, 1)
    } else {
        let without_b = text.strip_suffix('B')?;
        if without_b.ends_with(|c: char| c.is_ascii_digit()) {
            (without_b, 1)
        } else {
            let mut prefix = without_b.strip_suffix('i')?.chars();
            let unit = match prefix.next_back()? {
                'K' => KIB,
                'M' => MIB,
                'G' => GIB,
                'T' => TIB,
                _ => return None,
            };
            // Go wants a character before the unit, even a lone `-`: go_atoi64 checks.
            (prefix.as_str(), unit)
        }
    };
    let n = u64::try_from(go_atoi64(number)?).ok()?;
    let bytes = n.checked_mul(unit)?;
    (i64::try_from(bytes).is_ok()).then_some(GoLimit::Bytes(bytes))
}

/// Go runtime's `atoi64`: an optional `-`, then decimal digits (none at all reads as 0, which
/// is how Go takes `-KiB` for 0), within `i64`.
fn go_atoi64(text: &str) -> Option<i64> {
    if text.is_empty() {
        return None;
    }
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let mut n: u64 = 0;
    for c in digits.bytes() {
        if !c.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
    }
    if negative {
        // The most negative i64 has no positive twin; none of these is a valid limit anyway.
        0_i64.checked_sub_unsigned(n)
    } else {
        i64::try_from(n).ok()
    }
}

/// A size for people: `512 B`, `64 KiB`, `128 MiB`, `268.5 MiB`, `1.0 GiB`, `2.0 TiB`. Whole
/// KiB and MiB are written without a fraction; GiB and TiB always with one, so a figure reads
/// the same whatever its low bits.
pub(crate) fn human(bytes: u64) -> String {
    // f64 is exact to 2^53 bytes (8 PiB), far past any memory this sees.
    let ratio = |unit: u64| bytes as f64 / unit as f64;
    if bytes >= TIB {
        format!("{:.1} TiB", ratio(TIB))
    } else if bytes >= GIB {
        format!("{:.1} GiB", ratio(GIB))
    } else if bytes >= MIB {
        whole_or_tenths(bytes, MIB, "MiB")
    } else if bytes >= KIB {
        whole_or_tenths(bytes, KIB, "KiB")
    } else {
        format!("{bytes} B")
    }
}

/// `bytes` in `unit`: a whole number when it is one, else to a tenth.
fn whole_or_tenths(bytes: u64, unit: u64, name: &str) -> String {
    if bytes.is_multiple_of(unit) {
        format!("{} {name}", bytes / unit)
    } else {
        format!("{:.1} {name}", bytes as f64 / unit as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hotspot_sizes_take_binary_suffixes_in_either_case() {
        assert_eq!(jvm_size("128m"), Some(128 * MIB));
        assert_eq!(jvm_size("128M"), Some(128 * MIB));
        assert_eq!(jvm_size("1g"), Some(GIB));
        assert_eq!(jvm_size("1G"), Some(GIB));
        assert_eq!(jvm_size("1000k"), Some(1000 * KIB));
        assert_eq!(jvm_size("2T"), Some(2 * TIB));
        assert_eq!(jvm_size("100000000"), Some(100_000_000));
        assert_eq!(jvm_size("01g"), Some(GIB));
    }

    #[test]
    fn hotspot_sizes_read_hex_after_0x_as_atojulong_does() {
        // `java -Xmx0x10000000` runs with a 256 MiB heap (OpenJDK 17.0.15).
        assert_eq!(jvm_size("0x10000000"), Some(256 * MIB));
        assert_eq!(jvm_size("0x40000000"), Some(GIB));
        assert_eq!(jvm_size("0x1k"), Some(KIB));
        assert_eq!(jvm_size("0x"), None);
        assert_eq!(jvm_size("0xk"), None);
    }

    #[test]
    fn malformed_hotspot_sizes_are_refused() {
        for text in [
            "", "m", "-1g", "+1g", " 1g", "1gb", "1Gb", "1.5g", "1 g", "1q", "1g ", "1€",
        ] {
            assert_eq!(jvm_size(text), None, "{text:?}");
        }
    }

    #[test]
    fn hotspot_sizes_past_64_bits_are_refused() {
        assert_eq!(jvm_size("18446744073709551615"), Some(u64::MAX));
        assert_eq!(jvm_size("18446744073709551616"), None);
        assert_eq!(jvm_size("17179869183g"), Some(17_179_869_183 * GIB));
        assert_eq!(jvm_size("17179869184G"), None);
        assert_eq!(jvm_size("16777216T"), None);
    }

    #[test]
    fn hotspot_doubles_as_openjdk_17_takes_them() {
        assert_eq!(jvm_double("75"), Some(75.0));
        assert_eq!(jvm_double("75.5"), Some(75.5));
        assert_eq!(jvm_double("07"), Some(7.0));
        assert_eq!(jvm_double("5.5e1"), Some(55.0));
        assert_eq!(jvm_double("150"), Some(150.0), "the range is the caller's");
        // Each made OpenJDK 17.0.15 say "Improperly specified VM option".
        for text in [
            "", "1e1", ".5", "5.", "+5", "-1", "1.2.3", "75 ", "NaN", "inf", "7€",
        ] {
            assert_eq!(jvm_double(text), None, "{text:?}");
        }
    }

    #[test]
    fn no_text_makes_a_parser_panic() {
        let alphabet = [
            "", "0", "1", "9", "x", "X", "k", "g", "T", "B", "i", "K", "M", ".", "e", "-", "+",
            " ", "€", "é", "\0",
        ];
        for a in alphabet {
            for b in alphabet {
                for c in alphabet {
                    for d in ["", "0x", "18446744073709551615", "9223372036854775807"] {
                        let text = format!("{d}{a}{b}{c}");
                        let _ = (jvm_size(&text), jvm_double(&text), go_size(&text));
                    }
                }
            }
        }
        for bytes in [0, 1, KIB - 1, MIB - 1, GIB - 1, TIB - 1, u64::MAX] {
            assert!(!human(bytes).is_empty());
        }
    }

    #[test]
    fn gomemlimit_takes_iec_suffixes_and_off() {
        // Each as go1.19.8's debug.SetMemoryLimit(-1) reported it.
        assert_eq!(go_size("1GiB"), Some(GoLimit::Bytes(GIB)));
        assert_eq!(go_size("512MiB"), Some(GoLimit::Bytes(512 * MIB)));
        assert_eq!(go_size("64KiB"), Some(GoLimit::Bytes(64 * KIB)));
        assert_eq!(go_size("1TiB"), Some(GoLimit::Bytes(TIB)));
        assert_eq!(go_size("1B"), Some(GoLimit::Bytes(1)));
        assert_eq!(go_size("05"), Some(GoLimit::Bytes(5)));
        assert_eq!(go_size("0"), Some(GoLimit::Bytes(0)));
        assert_eq!(go_size("-0"), Some(GoLimit::Bytes(0)));
        assert_eq!(
            go_size("-KiB"),
            Some(GoLimit::Bytes(0)),
            "Go reads a lone - as 0"
        );
        assert_eq!(go_size("off"), Some(GoLimit::Off));
        assert_eq!(
            go_size("9223372036854775807"),
            Some(GoLimit::Bytes(i64::MAX.unsigned_abs()))
        );
        assert_eq!(
            go_size("8589934591GiB"),
            Some(GoLimit::Bytes(8_589_934_591 * GIB))
        );
    }

    #[test]
    fn gomemlimit_refuses_what_go_refuses() {
        // Each made go1.19.8 die with "malformed GOMEMLIMIT".
        for text in [
            "",
            "1gib",
            "1GB",
            "1KB",
            "1 GiB",
            "1iB",
            "1PiB",
            "-5",
            "+5",
            " 5",
            "OFF",
            "B",
            "KiB",
            "9223372036854775808",
            "8589934592GiB",
            "99999999999999999999999",
            "1€B",
            "1€iB",
            "€",
        ] {
            assert_eq!(go_size(text), None, "{text:?}");
        }
    }

    #[test]
    fn sizes_for_people() {
        assert_eq!(human(0), "0 B");
        assert_eq!(human(512), "512 B");
        assert_eq!(human(64 * KIB), "64 KiB");
        assert_eq!(human(1536), "1.5 KiB");
        assert_eq!(human(60 * MIB), "60 MiB");
        assert_eq!(human(128 * MIB), "128 MiB");
        assert_eq!(human(268 * MIB + MIB / 2), "268.5 MiB");
        assert_eq!(human(130_862_280), "124.8 MiB");
        assert_eq!(human(GIB), "1.0 GiB");
        assert_eq!(human(25_276_059_648), "23.5 GiB");
        assert_eq!(human(2 * TIB), "2.0 TiB");
        assert_eq!(human(u64::MAX), "16777216.0 TiB");
    }
}
