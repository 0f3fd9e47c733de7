//! Growth, ranking and change on synthetic readings: no `/proc` involved.
use serde_json::json;

use crate::processes::{
    view::{OtherProcesses, ProcessEntry},
    ProcessGrowth, ProcessReading,
};

const MIB: u64 = 1 << 20;
/// The product's window.
const WINDOW_S: f64 = 60.0;

/// A process holding `anon` bytes of anonymous memory and nothing else.
fn reading(pid: u32, comm: &str, anon: u64) -> ProcessReading {
    ProcessReading {
        pid,
        comm: comm.to_owned(),
        rss_anon: anon,
        rss_file: 0,
        rss_shmem: 0,
        started_at: None,
    }
}

/// The view's entry for `pid`; panics without one.
#[track_caller]
fn entry(growth: &ProcessGrowth, pid: u32) -> ProcessEntry {
    growth
        .view(usize::MAX)
        .processes
        .into_iter()
        .find(|e| e.pid == pid)
        .unwrap_or_else(|| panic!("pid {pid} is not in the view"))
}

#[test]
fn growth_is_over_exactly_the_window_when_readings_are_on_time() {
    let mut growth = ProcessGrowth::new(WINDOW_S);
    for i in 0..=24u32 {
        let t = 1000.0 + 5.0 * f64::from(i);
        growth.observe(t, vec![reading(1, "java", (100 + u64::from(i)) * MIB)]);
    }
    // Now t = 1120 and 124 MiB; at t = 1060 it held 112 MiB.
    let e = entry(&growth, 1);
    assert_eq!(e.growth_bytes, 12 * MIB as i64);
    assert_eq!(e.growth_window_s, 60.0);
    assert_eq!(e.rss_anon_bytes, 124 * MIB);
    // The base and the twelve readings after it: nothing older.
    assert_eq!(growth.points_kept(1), 13);
}

#[test]
fn a_late_reading_stretches_the_window_rather_than_shortening_it() {
    let mut growth = ProcessGrowth::new(WINDOW_S);
    for i in 0..=20u32 {
        let t = 5.5 * f64::from(i);
        growth.observe(t, vec![reading(1, "java", u64::from(i) * MIB)]);
    }
    // Now t = 110, the window starts at 50: the base is the reading at 49.5 (the 9th).
    let e = entry(&growth, 1);
    assert_eq!(e.growth_bytes, 11 * MIB as i64);
    assert!((e.growth_window_s - 60.5).abs() < 1e-9, "{e:?}");
}

#[test]
fn a_young_process_grows_over_its_life() {
    let mut growth = ProcessGrowth::new(WINDOW_S);
    for i in 0..=24u32 {
        let t = 1000.0 + 5.0 * f64::from(i);
        let mut readings = vec![reading(1, "java", 100 * MIB)];
        if t >= 1100.0 {
            // Appears at 1100 with 10 MiB, and takes 1 MiB more each reading.
            readings.push(reading(2, "worker", (10 + u64::from(i) - 20) * MIB));
        }
        growth.observe(t, readings);
    }
    let young = entry(&growth, 2);
    assert_eq!(young.growth_bytes, 4 * MIB as i64);
    assert_eq!(young.growth_window_s, 20.0);
    let old = entry(&growth, 1);
    assert_eq!((old.growth_bytes, old.growth_window_s), (0, 60.0));
}

#[test]
fn a_pid_under_another_name_is_a_new_process() {
    let mut growth = ProcessGrowth::new(WINDOW_S);
    growth.observe(0.0, vec![reading(7, "sh", MIB)]);
    growth.observe(5.0, vec![reading(7, "sh", 2 * MIB)]);
    // The entry-point script exec'd the runtime (or the pid was reused).
    growth.observe(10.0, vec![reading(7, "java", 500 * MIB)]);
    let e = entry(&growth, 7);
    assert_eq!(
        (e.comm.as_str(), e.growth_bytes, e.growth_window_s),
        ("java", 0, 0.0)
    );
    growth.observe(15.0, vec![reading(7, "java", 510 * MIB)]);
    let e = entry(&growth, 7);
    assert_eq!((e.growth_bytes, e.growth_window_s), (10 * MIB as i64, 5.0));
}

#[test]
fn a_process_gone_is_forgotten() {
    let mut growth = ProcessGrowth::new(WINDOW_S);
    growth.observe(0.0, vec![reading(1, "a", MIB), reading(2, "b", MIB)]);
    growth.observe(5.0, vec![reading(1, "a", MIB)]);
    let view = growth.view(10);
    assert_eq!(view.processes.len(), 1);
    assert_eq!(view.others, OtherProcesses::default());
    assert_eq!(view.rss_bytes, MIB);
    // The same pid and name later: read as new, its past gone with it.
    growth.observe(10.0, vec![reading(1, "a", MIB), reading(2, "b", 9 * MIB)]);
    let e = entry(&growth, 2);
    assert_eq!((e.growth_bytes, e.growth_window_s), (0, 0.0));
}

/// Five processes read twice, 5 s apart: pid 3 grew 30 MiB, pids 1 and 2 10 MiB each (2 is the
/// bigger), pid 4 shrank 4 MiB, pid 5 stayed.
fn five_processes() -> ProcessGrowth {
    let mut growth = ProcessGrowth::new(WINDOW_S);
    let at = |anon: [u64; 5]| -> Vec<ProcessReading> {
        let mut readings: Vec<ProcessReading> = (1..=5u32)
            .zip(anon)
            .map(|(pid, a)| reading(pid, &format!("p{pid}"), a * MIB))
            .collect();
        // Shared and file-backed memory count in the resident figure too.
        readings[1].rss_file = 150 * MIB;
        readings[4].rss_shmem = MIB;
        readings
    };
    growth.observe(100.0, at([90, 40, 10, 54, 0]));
    growth.observe(105.0, at([100, 50, 40, 50, 0]));
    growth
}

#[test]
fn the_top_growers_come_first_and_the_rest_is_summed() {
    let growth = five_processes();
    let view = growth.view(2);
    let order: Vec<(u32, i64)> = view
        .processes
        .iter()
        .map(|e| (e.pid, e.growth_bytes))
        .collect();
    // Equal growth: the bigger (pid 2, 200 MiB) before pid 1 (100 MiB).
    assert_eq!(order, [(3, 30 * MIB as i64), (2, 10 * MIB as i64)]);
    assert_eq!(
        view.others,
        OtherProcesses {
            processes: 3,
            rss_bytes: (100 + 50 + 1) * MIB,
            growth_bytes: (10 - 4) * MIB as i64,
        }
    );
    assert_eq!(view.rss_bytes, (100 + 200 + 40 + 50 + 1) * MIB);
    assert_eq!(view.window_s, WINDOW_S);

    let all = growth.view(100);
    let pids: Vec<u32> = all.processes.iter().map(|e| e.pid).collect();
    assert_eq!(pids, [3, 2, 1, 5, 4]);
    assert_eq!(all.others, OtherProcesses::default());
    let none = growth.view(0);
    assert!(none.processes.is_empty());
    assert_eq!(none.others.processes, 5);
    assert_eq!(none.others.rss_bytes, none.rss_bytes);
}

#[test]
fn a_line_is_worth_writing_when_the_set_or_a_size_changed() {
    let base = vec![reading(1, "a", 100 * MIB), reading(2, "b", 10 * MIB)];
    let mut growth = ProcessGrowth::new(WINDOW_S);
    growth.observe(0.0, base.clone());
    // Only one listed: a change among the others must count too.
    let since = growth.view(1);
    let changed_after = |readings: Vec<ProcessReading>| {
        let mut g = growth.clone();
        g.observe(5.0, readings);
        g.changed_since(&since)
    };
    assert!(!changed_after(base.clone()), "nothing moved");
    let mut small = base.clone();
    small[0].rss_anon += MIB - 1;
    small[1].rss_file = MIB - 1;
    assert!(!changed_after(small), "under 1 MiB each");
    let mut shrunk = base.clone();
    shrunk[0].rss_anon -= MIB;
    assert!(changed_after(shrunk), "a listed process shrank 1 MiB");
    let mut other = base.clone();
    other[1].rss_shmem = MIB;
    assert!(
        changed_after(other),
        "a process among the others grew 1 MiB"
    );
    let mut came = base.clone();
    came.push(reading(3, "c", 0));
    assert!(changed_after(came), "a process came");
    assert!(changed_after(base[..1].to_vec()), "a process went");
    let mut swapped = base.clone();
    swapped[1].pid = 3;
    assert!(changed_after(swapped), "one went, another came");
    let mut exec = base.clone();
    exec[1].comm = "java".to_owned();
    assert!(changed_after(exec), "an exec");
}

#[test]
fn the_view_serializes_to_the_fields_of_the_line() {
    let mut growth = ProcessGrowth::new(WINDOW_S);
    let java = ProcessReading {
        pid: 4121,
        comm: "java".to_owned(),
        rss_anon: 1000,
        rss_file: 2000,
        rss_shmem: 3000,
        started_at: None,
    };
    growth.observe(0.0, vec![java.clone(), reading(9, "sh", 4096)]);
    growth.observe(
        5.0,
        vec![
            ProcessReading {
                rss_anon: 5096,
                ..java
            },
            reading(9, "sh", 0),
        ],
    );
    let value = serde_json::to_value(growth.view(1)).expect("a view serializes");
    assert_eq!(
        value,
        json!({
            "window_s": 60.0,
            "rss_bytes": 10096,
            "processes": [{
                "pid": 4121,
                "comm": "java",
                "rss_anon_bytes": 5096,
                "rss_file_bytes": 2000,
                "rss_shmem_bytes": 3000,
                "growth_bytes": 4096,
                "growth_window_s": 5.0,
            }],
            "others": {"processes": 1, "rss_bytes": 0, "growth_bytes": -4096},
        })
    );
}

#[test]
fn a_reading_is_due_every_five_seconds_and_at_once_first() {
    let mut growth = ProcessGrowth::new(WINDOW_S);
    assert!(growth.due(100.0));
    growth.observe(100.0, Vec::new());
    assert!(!growth.due(100.0));
    assert!(!growth.due(104.9));
    assert!(growth.due(105.0));
    assert!(growth.due(99.0), "the clock stepped back");
}

#[test]
fn a_clock_stepped_back_restarts_the_histories() {
    let mut growth = ProcessGrowth::new(WINDOW_S);
    growth.observe(100.0, vec![reading(1, "a", MIB)]);
    growth.observe(105.0, vec![reading(1, "a", 3 * MIB)]);
    growth.observe(50.0, vec![reading(1, "a", 4 * MIB)]);
    let e = entry(&growth, 1);
    assert_eq!((e.growth_bytes, e.growth_window_s), (0, 0.0));
}

#[test]
fn the_history_kept_is_bounded() {
    // Readings far more often than asked for.
    let mut growth = ProcessGrowth::new(WINDOW_S);
    for i in 0..3000u32 {
        growth.observe(f64::from(i) * 0.1, vec![reading(1, "a", u64::from(i))]);
    }
    assert!(growth.points_kept(1) <= 66, "{}", growth.points_kept(1));
    let e = entry(&growth, 1);
    assert!(
        e.growth_window_s >= WINDOW_S && e.growth_window_s < WINDOW_S + 1.0,
        "{e:?}"
    );

    // A long window read every 5 s for two of them.
    let hour = 3600.0;
    let mut growth = ProcessGrowth::new(hour);
    for i in 0..=1440u32 {
        growth.observe(f64::from(i) * 5.0, vec![reading(1, "a", u64::from(i))]);
    }
    assert!(growth.points_kept(1) <= 66, "{}", growth.points_kept(1));
    let e = entry(&growth, 1);
    assert!(
        e.growth_window_s >= hour && e.growth_window_s <= hour + hour / 64.0 + 5.0,
        "{e:?}"
    );
}

#[test]
fn a_window_that_makes_no_sense_is_none() {
    let mut growth = ProcessGrowth::new(f64::NAN);
    growth.observe(0.0, vec![reading(1, "a", MIB)]);
    growth.observe(5.0, vec![reading(1, "a", 2 * MIB)]);
    assert_eq!(growth.view(1).window_s, 0.0);
    assert_eq!(entry(&growth, 1).growth_bytes, 0);
    assert_eq!(growth.points_kept(1), 1);
}

#[test]
fn a_duplicate_in_a_reading_replaces_the_figures_not_the_history() {
    let mut growth = ProcessGrowth::new(WINDOW_S);
    growth.observe(0.0, vec![reading(1, "a", MIB)]);
    growth.observe(
        5.0,
        vec![reading(1, "a", 2 * MIB), reading(1, "a", 3 * MIB)],
    );
    let e = entry(&growth, 1);
    assert_eq!((e.growth_bytes, e.growth_window_s), (2 * MIB as i64, 5.0));
    assert_eq!(growth.view(10).others.processes, 0);
}

#[test]
fn a_process_born_between_readings_grew_from_nothing_at_its_start() {
    let mut growth = ProcessGrowth::new(WINDOW_S);
    growth.observe(100.0, vec![reading(1, "sh", 4 << 20)]);
    // Born at 101 s, first read at 105 s holding 40 MiB: it grew 40 MiB in 4 s, not 0 in 0 s.
    let born = ProcessReading {
        started_at: Some(101.0),
        ..reading(2, "leak", 40 << 20)
    };
    growth.observe(105.0, vec![reading(1, "sh", 4 << 20), born.clone()]);
    let leak = entry(&growth, 2);
    assert_eq!(leak.growth_bytes, 40 << 20);
    assert!((leak.growth_window_s - 4.0).abs() < 1e-9, "{leak:?}");
    // One that started before the previous reading (moved into the container, say): its first
    // reading is where its growth starts.
    let old = ProcessReading {
        started_at: Some(104.0),
        ..reading(3, "old", 80 << 20)
    };
    growth.observe(110.0, vec![born, old]);
    let old = entry(&growth, 3);
    assert_eq!((old.growth_bytes, old.growth_window_s), (0, 0.0));
}

#[test]
fn processes_there_at_the_first_reading_grow_from_it() {
    let mut growth = ProcessGrowth::new(WINDOW_S);
    let young = ProcessReading {
        started_at: Some(99.0),
        ..reading(1, "holder", 48 << 20)
    };
    growth.observe(100.0, vec![young]);
    let holder = entry(&growth, 1);
    assert_eq!((holder.growth_bytes, holder.growth_window_s), (0, 0.0));
}
