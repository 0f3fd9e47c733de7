use super::*;
use crate::history::growth_inputs;
use crate::recording::read;
use crate::timeline::Timeline;

const MIB: u64 = 1 << 20;
const LIMIT: u64 = 256 * MIB;

/// A container's samples and kills, built life by life.
#[derive(Default)]
struct Series {
    readings: Vec<Reading>,
    kills: Vec<KillAt>,
    t: f64,
    restarts: u64,
}

impl Series {
    /// One sample every `interval` seconds of each value.
    fn samples(&mut self, interval: f64, values: impl IntoIterator<Item = u64>) -> &mut Self {
        for unreclaimable in values {
            self.t += interval;
            self.readings.push(Reading {
                t: self.t,
                unreclaimable,
                limit: Some(LIMIT),
                restarts: self.restarts,
            });
        }
        self
    }

    /// A kill half an interval after the last sample; the next life is a restart.
    fn kill(&mut self, by_limit: bool) -> &mut Self {
        self.kills.push(KillAt {
            t: self.t + 0.5,
            by_limit,
        });
        self.t += 1.0;
        self.restarts += 1;
        self
    }

    fn diagnose(&self) -> Diagnosis {
        diagnose(&self.readings, &self.kills)
    }
}

/// Up to ±1 MiB of noise that repeats (no random numbers in tests).
fn noise(i: usize) -> i64 {
    [0, 700, -400, 1000, -900, 300, -200, 800][i % 8] * 1024
}

/// From `from` growing `rate` bytes/s, sampled every `interval` s, up to just under the limit.
fn leak(from: u64, rate: f64, interval: f64) -> Vec<u64> {
    (0..)
        .map(|i| {
            let v = from as f64 + rate * interval * i as f64;
            (v as i64 + noise(i)).max(0) as u64
        })
        .take_while(|&v| v < LIMIT - MIB)
        .collect()
}

/// A warm-up to `level` in `rise` samples, then `hold` samples at it with noise.
fn plateau(level: u64, rise: usize, hold: usize) -> Vec<u64> {
    let up = (1..=rise).map(|i| level / rise as u64 * i as u64);
    let flat = (0..hold).map(|i| (level as i64 + 2 * noise(i)) as u64);
    up.chain(flat).collect()
}

#[test]
fn a_leak_grows_steadily_to_every_kill_across_restarts() {
    let rate = 0.2 * MIB as f64;
    let mut s = Series::default();
    for from in [40, 48, 36] {
        s.samples(10.0, leak(from * MIB, rate, 10.0)).kill(true);
    }
    let Diagnosis::Leak {
        lives,
        rate: measured,
        slowest,
        fastest,
    } = s.diagnose()
    else {
        panic!("a leak: {:?}", s.diagnose());
    };
    assert_eq!(lives, 3);
    assert!((measured / rate - 1.0).abs() < 0.05, "{measured}");
    assert!(fastest / slowest < LEAK_RATE_SPREAD);
    assert_eq!(rate_text(measured), "0.2 MiB/s");
    let said = s.diagnose().evidence();
    assert!(said.contains("each of the 3 lives"), "{said}");
    assert!(said.contains("without levelling off"), "{said}");
}

#[test]
fn one_steady_life_is_not_yet_a_leak() {
    let mut s = Series::default();
    s.samples(10.0, leak(40 * MIB, 0.2 * MIB as f64, 10.0))
        .kill(true);
    let Diagnosis::Neither {
        reason,
        steady_rate: Some(rate),
    } = s.diagnose()
    else {
        panic!("neither, with the rate: {:?}", s.diagnose());
    };
    assert!(reason.starts_with("one life grew steadily"), "{reason}");
    assert_eq!(rate_text(rate), "0.2 MiB/s");
}

#[test]
fn steady_lives_at_rates_far_apart_are_not_called_a_leak() {
    let mut s = Series::default();
    s.samples(10.0, leak(40 * MIB, 0.2 * MIB as f64, 10.0))
        .kill(true)
        .samples(10.0, leak(40 * MIB, 0.7 * MIB as f64, 10.0))
        .kill(true);
    let Diagnosis::Neither { reason, .. } = s.diagnose() else {
        panic!("neither: {:?}", s.diagnose());
    };
    assert!(
        reason.contains("at rates from 0.2 MiB/s to 0.7 MiB/s"),
        "{reason}"
    );
}

#[test]
fn a_plateau_at_the_limit_is_an_undersized_limit() {
    let mut s = Series::default();
    for _ in 0..2 {
        s.samples(5.0, plateau(245 * MIB, 20, 60)).kill(true);
    }
    let Diagnosis::Undersized {
        lives,
        plateaus,
        steps,
        limit,
    } = s.diagnose()
    else {
        panic!("undersized: {:?}", s.diagnose());
    };
    assert_eq!((lives, steps.len(), limit), (2, 0, LIMIT));
    assert!(
        plateaus.iter().all(|&p| p.abs_diff(245 * MIB) < 2 * MIB),
        "{plateaus:?}"
    );
    let said = s.diagnose().evidence();
    // The median of the noisy plateau: 245.6 MiB.
    assert!(
        said.starts_with("not a leak: each of 2 lives settled at a working level of 246 MiB at the limit of 256 MiB"),
        "{said}"
    );
    // One life at a plateau is enough: a plateau shows in one life.
    let mut one = Series::default();
    one.samples(5.0, plateau(245 * MIB, 20, 60)).kill(true);
    assert!(matches!(
        one.diagnose(),
        Diagnosis::Undersized { lives: 1, .. }
    ));
}

#[test]
fn a_step_up_from_a_stable_level_is_not_a_leak() {
    let mut s = Series::default();
    s.samples(5.0, plateau(100 * MIB, 5, 60))
        .samples(5.0, [250 * MIB])
        .kill(true);
    let Diagnosis::Undersized {
        steps, plateaus, ..
    } = s.diagnose()
    else {
        panic!("undersized: {:?}", s.diagnose());
    };
    assert!(plateaus.is_empty());
    assert!(
        steps.iter().all(|&l| l.abs_diff(100 * MIB) < 2 * MIB),
        "{steps:?}"
    );
    assert!(s
        .diagnose()
        .evidence()
        .contains("step up from a stable 100 MiB"));
}

#[test]
fn a_warm_up_levelling_off_above_the_limit_is_not_called_a_leak() {
    // Each life heads for 110 % of the limit, slowing as it goes, and is killed on the way.
    let warm_up: Vec<u64> = (0..)
        .map(|i| (1.1 * LIMIT as f64 * (1.0 - (-(i as f64) / 40.0).exp())) as u64)
        .take_while(|&v| v < LIMIT - MIB)
        .collect();
    let mut s = Series::default();
    for _ in 0..3 {
        s.samples(1.0, warm_up.clone()).kill(true);
    }
    let Diagnosis::Neither { reason, .. } = s.diagnose() else {
        panic!("neither: {:?}", s.diagnose());
    };
    assert!(
        reason.contains("neither grew steadily nor settled"),
        "{reason}"
    );
}

#[test]
fn too_little_history_says_neither() {
    let mut s = Series::default();
    s.samples(1.0, (1..=10).map(|i| i * 25 * MIB)).kill(true);
    let Diagnosis::Neither {
        reason,
        steady_rate,
    } = s.diagnose()
    else {
        panic!("neither");
    };
    assert_eq!(steady_rate, None);
    assert!(
        reason.contains("10 samples; at least 20 are needed"),
        "{reason}"
    );
    assert!(matches!(
        diagnose(&s.readings, &[]),
        Diagnosis::Neither { reason, .. } if reason == "no OOM kill"
    ));
}

#[test]
fn samples_after_the_death_and_before_a_restart_are_not_the_life() {
    let rate = 0.2 * MIB as f64;
    let mut s = Series::default();
    // A first life cut short by a restart (no kill), then the life that was killed, whose
    // kill was learned of three samples late (memory already gone).
    s.samples(10.0, (0..30).map(|i| 200 * MIB - i * MIB));
    s.restarts += 1;
    s.samples(10.0, leak(40 * MIB, rate, 10.0))
        .samples(10.0, [0, 0, 0])
        .kill(true)
        .samples(10.0, leak(40 * MIB, rate, 10.0))
        .kill(true);
    let lives = lives(&s.readings, &s.kills);
    assert!(
        lives
            .iter()
            .all(|l| matches!(l.shape, Shape::Steady { .. })),
        "{lives:?}"
    );
    assert!(matches!(s.diagnose(), Diagnosis::Leak { lives: 2, .. }));
}

#[test]
fn a_node_oom_says_nothing_about_the_limit() {
    let mut s = Series::default();
    s.samples(5.0, plateau(100 * MIB, 5, 60)).kill(false);
    assert!(matches!(
        s.diagnose(),
        Diagnosis::Neither { reason, .. } if reason == "no kill was caused by the container's own limit"
    ));
}

#[test]
fn rates_and_durations_read_at_a_glance() {
    let m = MIB as f64;
    assert_eq!(rate_text(0.2 * m), "0.2 MiB/s");
    assert_eq!(rate_text(2.0 * m), "2 MiB/s");
    assert_eq!(rate_text(12.34 * m), "12 MiB/s");
    // Slow leaks per hour: 50 MiB a day.
    assert_eq!(rate_text(50.0 * m / 86_400.0), "2.1 MiB/h");
    assert_eq!(duration_text(64.0 * m / (0.2 * m)), "5 min");
    assert_eq!(duration_text(45.0), "45 s");
    assert_eq!(duration_text(3.4 * 3600.0), "3.4 h");
    assert_eq!(duration_text(3.0 * 86_400.0), "3 days");
}

// Recorded series.

/// A series cut from a real recording (`testdata/lives/`): `sample T BYTES LIMIT RESTARTS`
/// and `kill T CONSTRAINT` lines.
fn recorded(name: &str) -> (Vec<Reading>, Vec<KillAt>) {
    let path = format!("{}/testdata/lives/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let (mut readings, mut kills) = (Vec::new(), Vec::new());
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let number = |i: usize| -> f64 {
            fields
                .get(i)
                .and_then(|f| f.parse().ok())
                .unwrap_or_else(|| panic!("{path}: {line}"))
        };
        match fields.first().copied() {
            Some("sample") => readings.push(Reading {
                t: number(1),
                unreclaimable: number(2) as u64,
                limit: Some(number(3) as u64),
                restarts: number(4) as u64,
            }),
            Some("kill") => kills.push(KillAt {
                t: number(1),
                by_limit: fields.get(2).is_some_and(|c| *c == "memcg" || *c == "-"),
            }),
            _ => panic!("{path}: {line}"),
        }
    }
    (readings, kills)
}

/// `series` again, after itself: the container restarted and did the same.
fn twice(readings: &[Reading], kills: &[KillAt]) -> (Vec<Reading>, Vec<KillAt>) {
    let shift = readings.last().map_or(0.0, |r| r.t) + 1.0;
    let again = readings.iter().map(|r| Reading {
        t: r.t + shift,
        restarts: r.restarts + 1,
        ..*r
    });
    let kills_again = kills.iter().map(|k| KillAt {
        t: k.t + shift,
        ..*k
    });
    (
        readings.iter().copied().chain(again).collect(),
        kills.iter().copied().chain(kills_again).collect(),
    )
}

#[test]
fn recorded_leaks_grow_steadily_to_the_kill() {
    // The reports' fixture: a leak of about 2 MiB/s in 64 MiB, through the report's own path.
    let path = format!("{}/testdata/leak.rec", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let recording = read(&text).expect("reads");
    let mut timeline = Timeline::new(recording.header.started);
    for line in recording.lines {
        timeline.add(line);
    }
    let (readings, kills) = growth_inputs(&timeline.containers[0]);
    let (demo, demo_kills) = recorded("demo-leak.txt");
    for (name, readings, kills) in [("leak.rec", readings, kills), ("demo", demo, demo_kills)] {
        // Once: steady, but one life is no proof.
        let Diagnosis::Neither {
            steady_rate: Some(rate),
            ..
        } = diagnose(&readings, &kills)
        else {
            panic!("{name}: {:?}", diagnose(&readings, &kills));
        };
        assert_eq!(rate_text(rate), "2 MiB/s", "{name}");
        // The same life twice, as a restarted container would live it: a leak.
        let (readings, kills) = twice(&readings, &kills);
        assert!(
            matches!(
                diagnose(&readings, &kills),
                Diagnosis::Leak { lives: 2, .. }
            ),
            "{name}: {:?}",
            diagnose(&readings, &kills)
        );
    }
}

#[test]
fn a_recorded_node_oom_is_no_verdict_on_the_limit() {
    // 16 MiB held, killed when another cgroup exhausted the node.
    let (readings, kills) = recorded("node-best.txt");
    assert!(matches!(
        diagnose(&readings, &kills),
        Diagnosis::Neither { ref reason, .. } if reason == "no kill was caused by the container's own limit"
    ));
    // Read as a kill by the limit it would look like a step from 16 MiB: why the cause counts.
    let as_limit: Vec<KillAt> = kills
        .iter()
        .map(|k| KillAt {
            by_limit: true,
            ..*k
        })
        .collect();
    let lives = lives(&readings, &as_limit);
    assert!(
        matches!(lives[..], [Life { shape: Shape::Step { level }, .. }] if level.abs_diff(16 * MIB) < MIB),
        "{lives:?}"
    );
}

#[test]
fn lives_that_tell_different_stories_say_neither() {
    let mut s = Series::default();
    s.samples(10.0, leak(40 * MIB, 0.2 * MIB as f64, 10.0))
        .kill(true)
        .samples(5.0, plateau(245 * MIB, 20, 60))
        .kill(true);
    let Diagnosis::Neither { reason, .. } = s.diagnose() else {
        panic!("neither: {:?}", s.diagnose());
    };
    assert!(
        reason.contains("the 2 lives before the kills differ (1 grew steadily, 1 settled"),
        "{reason}"
    );
}
