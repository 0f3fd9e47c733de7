use super::*;
use crate::growth::Diagnosis;
use crate::recording::{ConfigRisk, RiskKind};

const MIB: u64 = 1 << 20;

fn steady(n: usize, mib_each: u64) -> History {
    History {
        working_set: vec![mib_each * MIB; n],
        unreclaimable: vec![mib_each * MIB / 2; n],
        ..History::default()
    }
}

#[test]
fn too_little_history_says_so() {
    let r = recommend(&steady(10, 100));
    assert!(
        matches!(r, Recommendation::NotEnoughHistory { ref reason, .. } if reason.contains("10 samples"))
    );
}

#[test]
fn percentile_plus_margin() {
    // 90 samples at 100 MiB, 10 at 200 MiB: p95 = 200, peak = 200.
    let mut h = steady(90, 100);
    h.working_set.extend(vec![200 * MIB; 10]);
    let Recommendation::Figures {
        request,
        limit,
        reasoning,
        ..
    } = recommend(&h)
    else {
        panic!("figures expected");
    };
    assert_eq!(request, 220 * MIB);
    assert_eq!(limit, 240 * MIB);
    assert!(reasoning[0].contains("p95 200 MiB"), "{reasoning:?}");
    // Mostly at 100 MiB: the request follows the p95.
    let mut h = steady(99, 100);
    h.working_set.push(300 * MIB);
    let Recommendation::Figures { request, limit, .. } = recommend(&h) else {
        panic!("figures expected");
    };
    assert_eq!(request, 110 * MIB);
    assert_eq!(limit, 360 * MIB);
}

#[test]
fn unreclaimable_counts_for_the_limit() {
    let mut h = steady(100, 100);
    h.unreclaimable = vec![150 * MIB; 100];
    let Recommendation::Figures { limit, .. } = recommend(&h) else {
        panic!("figures expected");
    };
    assert_eq!(limit, 180 * MIB);
}

#[test]
fn a_kill_bumps_the_limit_within_bounds() {
    // Killed at 128 MiB with a peak at the limit: ×1.25 = 160 MiB (the peak + 20 % is
    // only 154).
    let mut h = steady(100, 128);
    h.kills = 1;
    h.limit_at_kill = Some(128 * MIB);
    let Recommendation::Figures {
        limit, reasoning, ..
    } = recommend(&h)
    else {
        panic!("figures expected");
    };
    assert_eq!(limit, 160 * MIB);
    assert!(reasoning.iter().any(|r| r.contains("1 OOM kill")));
    // Many kills do not run it away: at most ×1.5 of the limit that applied.
    h.kills = 50;
    h.working_set = vec![1000 * MIB; 100];
    let Recommendation::Figures { limit, .. } = recommend(&h) else {
        panic!("figures expected");
    };
    assert_eq!(limit, 192 * MIB);
}

#[test]
fn a_kill_with_little_history_still_answers() {
    let mut h = steady(5, 60);
    h.kills = 1;
    h.limit_at_kill = Some(64 * MIB);
    assert!(matches!(recommend(&h), Recommendation::Figures { limit, .. } if limit == 80 * MIB));
}

#[test]
fn quantiles() {
    assert_eq!(quantile(&[], 0.5), None);
    assert_eq!(quantile(&[5], 0.99), Some(5));
    let v: Vec<u64> = (1..=100).collect();
    assert_eq!(quantile(&v, 0.95), Some(95));
    assert_eq!(quantile(&v, 0.5), Some(50));
    assert_eq!(quantile(&v, 1.0), Some(100));
}

// Runtimes' heap ceilings.

/// A JVM allowed 1 GiB in a 256 MiB container, as `config_risk` says it.
fn jvm_risk(pid: u32) -> ConfigRisk {
    ConfigRisk {
        pid,
        comm: "java".into(),
        language_runtime: Some("jvm".into()),
        kind: RiskKind::CeilingAboveLimit,
        ceiling_bytes: Some(1 << 30),
        ceiling_source: Some("-Xmx1g on the command line".into()),
        non_heap_bytes: Some(60 * MIB),
        limit_bytes: Some(256 * MIB),
        message: "JVM max heap 1.0 GiB + 60 MiB non-heap > limit 256 MiB: the kernel will \
                  OOM-kill it before the JVM throws OutOfMemoryError"
            .into(),
        fix: "use -XX:MaxRAMPercentage=68 or -Xmx ≤ 176m".into(),
    }
}

#[test]
fn a_ceiling_above_the_limit_is_fixed_first_and_a_kept_setting_needs_room() {
    // Killed at 256 MiB; the restarted JVM (a new pid) says the same risk again.
    let mut h = steady(100, 250);
    h.kills = 2;
    h.limit_at_kill = Some(256 * MIB);
    h.risks = vec![jvm_risk(7), jvm_risk(90)];
    let Recommendation::Figures {
        first,
        limit,
        reasoning,
        ..
    } = recommend(&h)
    else {
        panic!("figures expected");
    };
    assert_eq!(first.len(), 1, "one fix, however many pids: {first:?}");
    assert!(
        first[0]
            .text
            .starts_with("Fix the runtime setting first: use -XX:MaxRAMPercentage=68 or -Xmx ≤ 176m (JVM max heap 1.0 GiB"),
        "{first:?}"
    );
    // Kept as it is, the limit must hold 1 GiB + 60 MiB, + 20 %: 1300.8 → 1301 MiB, past the
    // bounded bump's cap.
    assert_eq!(limit, 1301 * MIB);
    assert!(
        reasoning.iter().any(|r| r.contains(
            "to keep the runtime setting instead, the limit must hold its heap ceiling 1024 MiB + 60 MiB non-heap + 20 % = at least 1301 MiB"
        )),
        "{reasoning:?}"
    );
}

#[test]
fn a_ceiling_risk_is_said_even_without_history() {
    let mut h = steady(3, 100);
    h.risks = vec![jvm_risk(7)];
    let r = recommend(&h);
    assert!(matches!(r, Recommendation::NotEnoughHistory { .. }));
    assert_eq!(r.first().len(), 1);
    assert_eq!(r.first()[0].label, "fix the runtime setting first");
}

#[test]
fn a_restarted_process_with_the_same_setting_is_one_advice_with_the_newest_figures() {
    let mut h = steady(3, 100);
    let mut again = jvm_risk(8);
    again.non_heap_bytes = Some(90 * MIB);
    again.fix = "use -XX:MaxRAMPercentage=50 or -Xmx ≤ 130m".into();
    h.risks = vec![jvm_risk(7), again];
    let r = recommend(&h);
    assert_eq!(r.first().len(), 1, "{:?}", r.first());
    assert!(r.first()[0].text.contains("-Xmx ≤ 130m"), "{:?}", r.first());
}

#[test]
fn ceilings_well_under_the_limit_say_it_may_be_lowered() {
    // A JVM whose heap ceiling and non-heap bound the container at 150 MiB, in 1 GiB.
    let mut h = steady(100, 100);
    h.reach = vec![Some(150 * MIB); 100];
    h.limit_now = Some(1 << 30);
    let Recommendation::Figures {
        limit, reasoning, ..
    } = recommend(&h)
    else {
        panic!("figures expected");
    };
    assert_eq!(limit, 180 * MIB);
    assert!(
        reasoning
            .iter()
            .any(|r| r.contains("bound the unreclaimable memory at 150 MiB")),
        "{reasoning:?}"
    );
    assert!(
        reasoning.iter().any(|r| r.contains(
            "well under its current limit of 1024 MiB: the limit may be lowered to 180 MiB"
        )),
        "{reasoning:?}"
    );
    // Not well under a 200 MiB limit: nothing said about lowering.
    h.limit_now = Some(200 * MIB);
    let Recommendation::Figures { reasoning, .. } = recommend(&h) else {
        panic!("figures expected");
    };
    assert!(!reasoning.iter().any(|r| r.contains("may be lowered")));
}

#[test]
fn a_bound_needs_enough_history_and_every_sample_since_the_runtime_came() {
    let mut h = steady(100, 100);
    h.limit_now = Some(1 << 30);
    // Before the runtime started: no bound; after it, every sample bounded.
    h.reach = [vec![None; 30], vec![Some(150 * MIB); 70]].concat();
    assert!(matches!(recommend(&h), Recommendation::Figures { limit, .. } if limit == 180 * MIB));
    // A sample in the middle unbounded (a process without a ceiling ran): no bound.
    h.reach[60] = None;
    assert!(matches!(recommend(&h), Recommendation::Figures { limit, .. } if limit == 120 * MIB));
    // Bounded, but too few samples of it.
    h.reach = [vec![None; 50], vec![Some(150 * MIB); 50]].concat();
    assert!(matches!(recommend(&h), Recommendation::Figures { limit, .. } if limit == 120 * MIB));
}

#[test]
fn a_heap_that_may_still_fill_keeps_the_limit_above_its_ceiling() {
    // Seen at 50 MiB, but its ceilings let it reach 200 MiB: the limit covers that.
    let mut h = steady(100, 50);
    h.reach = vec![Some(200 * MIB); 100];
    let Recommendation::Figures { limit, .. } = recommend(&h) else {
        panic!("figures expected");
    };
    assert_eq!(limit, 240 * MIB);
}

// Leak or undersized.

fn killed(growth: Diagnosis) -> History {
    History {
        kills: 3,
        limit_at_kill: Some(256 * MIB),
        growth: Some(growth),
        ..steady(300, 250)
    }
}

fn leak() -> Diagnosis {
    let rate = 0.2 * MIB as f64;
    Diagnosis::Leak {
        lives: 3,
        rate,
        slowest: rate,
        fastest: rate,
    }
}

#[test]
fn a_leak_leads_with_how_long_a_higher_limit_delays_the_kill() {
    let Recommendation::Figures {
        first,
        limit,
        reasoning,
        ..
    } = recommend(&killed(leak()))
    else {
        panic!("figures expected");
    };
    assert_eq!(limit, 320 * MIB);
    assert_eq!(first.len(), 1);
    assert!(
        first[0].text.starts_with(
            "This is a leak: raising the limit only delays the kill. Raising the limit from \
             256 MiB to 320 MiB delays each kill by about 5 min at the measured 0.2 MiB/s"
        ),
        "{first:?}"
    );
    assert!(
        reasoning[2].contains("each of the 3 lives"),
        "{reasoning:?}"
    );
    assert!(reasoning[3].starts_with("until the leak is fixed, as a stopgap"));
}

#[test]
fn an_undersized_limit_keeps_the_bounded_bump() {
    let Recommendation::Figures {
        first,
        limit,
        reasoning,
        ..
    } = recommend(&killed(Diagnosis::Undersized {
        lives: 2,
        plateaus: vec![245 * MIB],
        steps: Vec::new(),
        limit: 256 * MIB,
    }))
    else {
        panic!("figures expected");
    };
    assert!(first.is_empty());
    assert_eq!(limit, 320 * MIB);
    assert!(reasoning[2].starts_with("not a leak"), "{reasoning:?}");
    assert!(reasoning[3].contains("3 OOM kill(s) at a limit of 256 MiB"));
}

#[test]
fn one_steady_life_says_how_long_if_it_is_a_leak() {
    let r = recommend(&killed(Diagnosis::Neither {
        reason: "one life grew steadily to the kill".into(),
        steady_rate: Some(0.2 * MIB as f64),
    }));
    let Recommendation::Figures {
        first, reasoning, ..
    } = r
    else {
        panic!("figures expected");
    };
    assert!(first.is_empty(), "neither is said first");
    assert!(reasoning.iter().any(|r| r.ends_with(
        "if it is a leak, raising the limit from 256 MiB to 320 MiB delays each kill by about 5 min at the measured 0.2 MiB/s"
    )), "{reasoning:?}");
}

#[test]
fn growth_to_the_kill_with_a_ceiling_above_the_limit_is_the_settings_first() {
    let mut h = killed(leak());
    h.risks = vec![jvm_risk(7)];
    let Recommendation::Figures {
        first, reasoning, ..
    } = recommend(&h)
    else {
        panic!("figures expected");
    };
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].label, "fix the runtime setting first");
    assert!(
        reasoning
            .iter()
            .any(|r| r.contains("so does a heap filling up to a ceiling above the limit")),
        "{reasoning:?}"
    );
}

#[test]
fn other_runtime_risks_are_a_line_of_the_reasoning() {
    let mut h = steady(100, 100);
    let go = ConfigRisk {
        kind: RiskKind::NoCeiling,
        ceiling_bytes: None,
        message: "Go without GOMEMLIMIT under a 256 MiB limit".into(),
        fix: "set GOMEMLIMIT=230MiB".into(),
        ..jvm_risk(4)
    };
    h.risks = vec![go.clone(), ConfigRisk { pid: 5, ..go }];
    let r = recommend(&h);
    assert!(r.first().is_empty());
    let Recommendation::Figures { reasoning, .. } = r else {
        panic!("figures expected");
    };
    let also: Vec<&String> = reasoning
        .iter()
        .filter(|r| r.starts_with("also fix"))
        .collect();
    assert_eq!(
        also,
        ["also fix: set GOMEMLIMIT=230MiB (Go without GOMEMLIMIT under a 256 MiB limit)"]
    );
}
