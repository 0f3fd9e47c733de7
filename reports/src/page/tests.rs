use super::*;
use crate::testing::{kill, page, sample, MIB};

#[test]
fn utc_dates() {
    assert_eq!(utc(0.0), "1970-01-01 00:00:00 UTC");
    assert_eq!(utc(951_782_400.0), "2000-02-29 00:00:00 UTC");
    assert_eq!(utc(1_795_627_057.4), "2026-11-25 17:17:37 UTC");
}

const LIMIT: u64 = 256 * MIB;

/// `lives` lives of the pod's container, each made of `values` sampled every 5 s and ended by
/// a kill by its limit.
fn lives(lives: u64, values: &[u64]) -> Vec<String> {
    let mut lines = Vec::new();
    let mut t = 0.0;
    for life in 0..lives {
        for &v in values {
            t += 5.0;
            lines.push(sample(t, v, LIMIT, life, ""));
        }
        lines.push(kill(t + 2.5, 100 + life as u32, LIMIT));
        t += 5.0;
    }
    lines
}

#[test]
fn a_leak_across_restarts_leads_the_recommendation() {
    // From 40 MiB at 0.2 MiB/s (1 MiB a sample) to the 256 MiB limit, three times.
    let leak: Vec<u64> = (40..255).map(|m| m * MIB).collect();
    let html = page(&lives(3, &leak));
    assert!(html.contains(
        "<strong>First:</strong> This is a leak: raising the limit only delays the kill. Raising \
         the limit from 256 MiB to 320 MiB delays each kill by about 5 min at the measured \
         0.2 MiB/s"
    ));
    assert!(html.contains("320 MiB (a leak: raising the limit only delays the kill)"));
    assert!(html.contains(
        "in each of the 3 lives that ended in an OOM kill, unreclaimable memory grew steadily to \
         the limit at 0.2 MiB/s, without levelling off"
    ));
    assert!(html.contains("until the leak is fixed, as a stopgap: 3 OOM kill(s)"));
}

#[test]
fn an_undersized_limit_keeps_its_bounded_bump() {
    // Up to a working level of 245 MiB, held there until a kill, twice.
    let level: Vec<u64> = (1..=20)
        .map(|i| i * 12 * MIB)
        .chain((0..60).map(|i| (244 + i % 3) * MIB))
        .collect();
    let html = page(&lives(2, &level));
    assert!(!html.contains("This is a leak"));
    assert!(!html.contains("<strong>First:</strong>"));
    assert!(html.contains(
        "not a leak: each of 2 lives settled at a working level of 245 MiB at the limit of 256 \
         MiB and was killed there"
    ));
    assert!(html.contains("memory limit 320 MiB"));
}

#[test]
fn a_recorded_leak_to_one_kill_is_said_to_be_maybe_a_leak() {
    // The real recording: one life, 2 MiB/s into 64 MiB. Neither said first, but how long a
    // higher limit would last if it is one.
    let path = format!("{}/testdata/leak.rec", env!("CARGO_MANIFEST_DIR"));
    let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let html = crate::page_from(std::io::BufReader::new(file), std::path::Path::new(&path))
        .expect("a page")
        .html;
    assert!(!html.contains("<strong>First:</strong>"));
    assert!(html.contains(
        "one life grew steadily to the kill at 2 MiB/s without levelling off: a leak, or a need \
         above the limit that would level off later; another kill after the same growth would \
         make it a leak; if it is a leak, raising the limit from 64 MiB to 80 MiB delays each \
         kill by about 8 s at the measured 2 MiB/s"
    ));
    // A recording from before the runtimes and swap shows neither.
    assert!(!html.contains("Runtimes and their heap ceilings"));
    assert!(!html.contains("Swap:"));
    assert!(!html.contains("Configuration risk"));
}
