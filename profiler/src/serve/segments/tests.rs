use super::*;

use std::{collections::BTreeSet, process::Command};

use crate::{
    deaths::Cause,
    forecast::risk::Risk,
    pods::{classify::Qos, Identity, LimitSource},
    record::{End, EndReason, Exit, GroupVictim, OomGroupKill, OomKill, Sample},
};

/// 2026-01-01T00:00:00Z: records of the tests are stamped from here.
const T0: f64 = 1_767_225_600.0;
const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
const HOUR: f64 = 3600.0;
const DAY: f64 = 86400.0;
const CGROUP: &str = "/sys/fs/cgroup/memory/kubepods/burstable/pod1/ctr";

fn header() -> RecordingHeader {
    RecordingHeader {
        started: 0.0,
        ..crate::output::recording::tests::header()
    }
}

fn identity() -> Identity {
    Identity {
        namespace: Some("shop".into()),
        pod: Some("checkout".into()),
        pod_uid: Some("uid-1".into()),
        container: Some("app".into()),
        container_id: Some("c".repeat(64)),
        qos: Some(Qos::Burstable),
        runtime: None,
    }
}

fn about(ts: f64, body: RecordBody) -> Record {
    Record {
        ts,
        cgroup: Some(CGROUP.into()),
        identity: Some(identity()),
        body,
    }
}

/// A sample, flushed only at the end of a round.
fn sample(ts: f64) -> Record {
    about(
        ts,
        RecordBody::Sample(Sample {
            usage_bytes: 100 << 20,
            working_set_bytes: 90 << 20,
            unreclaimable_bytes: 80 << 20,
            limit_bytes: Some(128 << 20),
            eta_seconds: Some(42.5),
            risk: Risk::Warning,
            ..Sample::default()
        }),
    )
}

/// An event (written at once) whose line is about `pad` bytes longer than the shortest.
fn exit(ts: f64, pad: usize) -> Record {
    about(
        ts,
        RecordBody::Exit(Exit {
            pid: 4242,
            comm: "app".into(),
            exit_code: 137,
            signal: Some("SIGKILL".into()),
            cause: Cause::OomLimit,
            oom_cgroup: Some(CGROUP.into()),
            limit_source: Some(LimitSource::Container),
            sender_pid: None,
            sender_comm: None,
            sender_cgroup: None,
            sender_container: None,
            explanation: "x".repeat(pad),
        }),
    )
}

fn kill(ts: f64) -> Record {
    about(
        ts,
        RecordBody::OomKill(OomKill {
            victim_cgroup: Some(CGROUP.into()),
            anon_rss_bytes: Some(1 << 20),
            oom_score_adj: Some(0),
            limit_bytes: Some(128 << 20),
            ..OomKill::of(4242, "app")
        }),
    )
}

fn end(ts: f64) -> Record {
    Record {
        ts,
        cgroup: None,
        identity: None,
        body: RecordBody::End(End {
            reason: EndReason::Signal,
        }),
    }
}

/// The length of `record`'s line, newline included.
fn line_len(record: &Record) -> u64 {
    serde_json::to_vec(record).expect("serializable").len() as u64 + 1
}

fn bounds(retain_s: f64, max_disk: u64) -> Bounds {
    Bounds { retain_s, max_disk }
}

fn open(dir: &Path, bounds: Bounds, now: f64) -> (RollingRecording, Arc<AgentMetrics>) {
    let metrics = Arc::new(AgentMetrics::new());
    let recording = RollingRecording::open(dir, header(), bounds, Arc::clone(&metrics), now)
        .expect("the recording opens");
    (recording, metrics)
}

/// The segment files in `dir` (by their names), oldest first, with their sizes on disk.
fn segment_files(dir: &Path) -> Vec<(String, u64)> {
    let mut files: Vec<(String, u64)> = fs::read_dir(dir)
        .expect("the recording directory lists")
        .filter_map(|entry| {
            let entry = entry.expect("a directory entry");
            let name = entry.file_name().into_string().ok()?;
            let digits = name.strip_prefix("segment-")?.strip_suffix(".rec")?;
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let meta = entry.metadata().ok()?;
            meta.is_file().then_some((name, meta.len()))
        })
        .collect();
    files.sort();
    files
}

/// Bytes the segment files in `dir` take.
fn disk_bytes(dir: &Path) -> u64 {
    segment_files(dir).iter().map(|(_, size)| size).sum()
}

/// The Unix seconds a segment's name says.
fn name_start(name: &str) -> f64 {
    let ms: u64 = name
        .trim_start_matches("segment-")
        .trim_end_matches(".rec")
        .parse()
        .expect("a segment name");
    ms as f64 / 1000.0
}

/// The lines of one segment, parsed; every line must be complete JSON.
fn segment_lines(dir: &Path, name: &str) -> Vec<serde_json::Value> {
    let text = fs::read_to_string(dir.join(name)).expect("the segment reads");
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "{name} ends in a cut line"
    );
    text.lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{name}: {e}: {line:?}")))
        .collect()
}

/// The `ts` of every record line on disk (headers left out), oldest first.
fn recorded_ts(dir: &Path) -> Vec<f64> {
    let mut all = Vec::new();
    for (name, _) in segment_files(dir) {
        let lines = segment_lines(dir, &name);
        assert_eq!(lines.first().map(|h| &h["type"]), Some(&"recording".into()));
        all.extend(lines[1..].iter().map(|l| l["ts"].as_f64().expect("a ts")));
    }
    all
}

/// `got` and `expected` are the same times (to a microsecond: serde_json reads a float back
/// to within an ulp); a failure says where they differ, not all of them.
#[track_caller]
fn same_ts(got: &[f64], expected: &[f64], what: &str) {
    let differ = |i: usize| match (got.get(i), expected.get(i)) {
        (Some(a), Some(b)) => (a - b).abs() > 1e-6,
        _ => true,
    };
    if let Some(i) = (0..got.len().max(expected.len())).find(|&i| differ(i)) {
        panic!(
            "{what}: {} records, {} expected; the first difference at {i}: {:?} (ts - T0), \
             expected {:?}",
            got.len(),
            expected.len(),
            got.get(i).map(|t| t - T0),
            expected.get(i).map(|t| t - T0),
        );
    }
}

#[test]
fn segment_names_say_their_start_and_nothing_else_is_a_segment() {
    assert_eq!(segment_name(T0 + 0.25), "segment-1767225600250.rec");
    assert_eq!(segment_start("segment-1767225600250.rec"), Some(T0 + 0.25));
    assert_eq!(segment_name(0.5), "segment-0000000000500.rec");
    for other in [
        "segment-.rec",
        "segment-12a.rec",
        "segment-123.rec.tmp",
        "segment--1.rec",
        "notes.txt",
        ".profiler-write-test-1",
        "Segment-1.rec",
    ] {
        assert_eq!(segment_start(other), None, "{other}");
    }
}

#[test]
fn every_segment_is_a_recording_and_they_rotate_at_a_quarter_of_max_disk() {
    let dir = tempfile::tempdir().expect("temp dir");
    let max_disk = MIB;
    let (mut recording, _metrics) = open(dir.path(), bounds(DAY, max_disk), T0);
    let mut written = Vec::new();
    let mut bytes = 0;
    let mut ts = T0;
    while bytes < 700 * KIB {
        ts += 0.01;
        let record = if written.len() % 50 == 49 {
            kill(ts)
        } else {
            sample(ts)
        };
        bytes += line_len(&record);
        recording.emit(&record).expect("emit");
        written.push(ts);
    }
    recording.flush().expect("flush");

    let files = segment_files(dir.path());
    assert!(
        files.len() >= 3,
        "700 KiB in segments of at most 256 KiB: {files:?}"
    );
    for (i, (name, size)) in files.iter().enumerate() {
        assert!(
            *size <= max_disk / 4,
            "{name} is {size} bytes, over 256 KiB"
        );
        if i + 1 < files.len() {
            // Closed for being full: the next line would not have fitted.
            assert!(
                *size + 2 * line_len(&sample(ts)) > max_disk / 4,
                "{name} was closed at {size} bytes, far below 256 KiB"
            );
        }
        let lines = segment_lines(dir.path(), name);
        let head = &lines[0];
        assert_eq!(head["type"], "recording", "{name} starts with its header");
        assert_eq!(head["format"], "profiler-recording");
        assert_eq!(head["node"], "node-1");
        let started = head["started"].as_f64().expect("started");
        assert!((started - name_start(name)).abs() < 0.002, "{name}: {head}");
        assert!(
            lines[1..]
                .iter()
                .all(|l| l["type"] != "recording" && l["ts"].as_f64() >= Some(started)),
            "{name} holds one header and records from its start on"
        );
    }
    // Nothing lost, nothing twice, in order.
    same_ts(&recorded_ts(dir.path()), &written, "on disk");
}

#[test]
fn a_segment_spans_a_24th_of_the_retention_between_a_minute_and_an_hour() {
    for (retain_s, span) in [(HOUR, 150.0), (600.0, 60.0), (DAY, HOUR), (7.0 * DAY, HOUR)] {
        let dir = tempfile::tempdir().expect("temp dir");
        let (mut recording, _metrics) = open(dir.path(), bounds(retain_s, 64 * MIB), T0);
        let mut ts = T0;
        while ts < T0 + 5.5 * span {
            ts += span / 15.0;
            recording.emit(&sample(ts)).expect("emit");
        }
        recording.flush().expect("flush");
        let files = segment_files(dir.path());
        let starts: Vec<f64> = files.iter().map(|(name, _)| name_start(name)).collect();
        assert_eq!(files.len(), 6, "--retain {retain_s} s: {files:?}");
        for pair in starts.windows(2) {
            let length = pair[1] - pair[0];
            assert!(
                (span - 0.01..span + span / 15.0 + 0.01).contains(&length),
                "--retain {retain_s} s: segments of {span} s expected, one spans {length} s"
            );
        }
        for (name, _) in &files {
            let from = name_start(name);
            let lines = segment_lines(dir.path(), name);
            assert!(
                lines[1..].iter().all(|l| {
                    let ts = l["ts"].as_f64().unwrap_or(f64::NAN);
                    ts >= from - 0.001 && ts < from + span
                }),
                "--retain {retain_s} s: {name} holds records of more than {span} s"
            );
        }
    }
}

#[test]
fn samples_wait_for_the_round_and_events_are_on_disk_at_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut recording, _metrics) = open(dir.path(), bounds(DAY, MIB), T0);
    let (name, header_size) = segment_files(dir.path())
        .pop()
        .expect("the first segment is made at open");
    // The header is on disk at once: a report of an agent killed now still reads.
    assert_eq!(segment_lines(dir.path(), &name).len(), 1);
    recording.emit(&sample(T0 + 1.0)).expect("emit");
    assert_eq!(disk_bytes(dir.path()), header_size, "a sample waits");
    recording.flush().expect("flush");
    assert_eq!(segment_lines(dir.path(), &name).len(), 2, "the round ended");
    recording.emit(&kill(T0 + 1.5)).expect("emit");
    let lines = segment_lines(dir.path(), &name);
    assert_eq!(lines.len(), 3, "a kill is on disk at once");
    assert_eq!(lines[2]["type"], "oom_kill");
    recording.emit(&end(T0 + 2.0)).expect("emit");
    let lines = segment_lines(dir.path(), &name);
    assert_eq!(
        lines.last().map(|l| &l["type"]),
        Some(&"end".into()),
        "the end is on disk at once"
    );
}

/// The bound holds at every moment, whatever the records' sizes, for bounds below, at and
/// above the smallest segment; and it is used, not kept by removing everything.
#[test]
fn the_files_on_disk_never_exceed_max_disk() {
    for max_disk in [40 * KIB, 100 * KIB, 256 * KIB, MIB] {
        let dir = tempfile::tempdir().expect("temp dir");
        let (mut recording, metrics) = open(dir.path(), bounds(DAY, max_disk), T0);
        let mut seen = BTreeSet::new();
        let mut most = 0;
        let mut ts = T0;
        // A small deterministic generator of line sizes.
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        let mut written = 0;
        while written < 4 * max_disk + 200 * KIB {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ts += 0.05;
            let record = match state % 10 {
                0..=5 => sample(ts),
                6 | 7 => exit(ts, (state >> 8) as usize % 3000),
                8 => kill(ts),
                _ => exit(ts, (state >> 8) as usize % 200),
            };
            written += line_len(&record);
            recording.emit(&record).expect("emit");
            if state.is_multiple_of(7) {
                recording.flush().expect("flush");
            }
            let files = segment_files(dir.path());
            let on_disk: u64 = files.iter().map(|(_, s)| s).sum();
            assert!(
                on_disk <= max_disk,
                "--max-disk {max_disk}: {on_disk} bytes on disk after {written} written: {files:?}"
            );
            let gauge = u64::try_from(metrics.recording_bytes.get()).expect("a size");
            assert!(
                gauge <= max_disk && gauge >= on_disk,
                "--max-disk {max_disk}: profiler_recording_disk_bytes {gauge}, {on_disk} on disk"
            );
            most = most.max(on_disk);
            seen.extend(files.into_iter().map(|(name, _)| name));
        }
        assert!(
            seen.len() >= 4,
            "--max-disk {max_disk}: only {} segments were made",
            seen.len()
        );
        assert!(
            most >= max_disk / 2,
            "--max-disk {max_disk}: at most {most} bytes were ever kept"
        );
        assert_eq!(metrics.recording_active.get(), 1);
        assert_eq!(metrics.recording_errors.get(), 0);
    }
}

/// A cgroup v2 `memory.oom.group` kill of a few thousand processes is one line of more than
/// a segment's size; the bound holds for it too.
#[test]
fn a_record_longer_than_a_segment_keeps_the_bound() {
    let dir = tempfile::tempdir().expect("temp dir");
    let max_disk = 256 * KIB;
    let (mut recording, metrics) = open(dir.path(), bounds(DAY, max_disk), T0);
    let group = Record {
        ts: 0.0,
        cgroup: Some(CGROUP.into()),
        identity: Some(identity()),
        body: RecordBody::OomGroupKill(OomGroupKill {
            oom_group: CGROUP.into(),
            victims: (0..3000)
                .map(|pid| GroupVictim {
                    pid: 10_000 + pid,
                    comm: "worker".into(),
                })
                .collect(),
            constraint: None,
            oom_cgroup: Some(CGROUP.into()),
        }),
    };
    let group_len = line_len(&group);
    assert!(group_len > max_disk / 4, "{group_len} bytes");
    let header_len = segment_files(dir.path())[0].1;
    let mut ts = T0;
    let mut newest = String::new();
    let mut in_current = 0;
    let mut big_lines = 0;
    while big_lines < 3 {
        ts += 0.1;
        assert!(ts < T0 + 1000.0, "only {big_lines} long lines were written");
        // The long line when the segment being written is nearly full (and others are
        // closed), so that the bound is at stake.
        let record = if in_current > max_disk / 4 - 4 * KIB && segment_files(dir.path()).len() >= 3
        {
            big_lines += 1;
            let mut big = group.clone();
            big.ts = ts;
            big
        } else {
            sample(ts)
        };
        recording.emit(&record).expect("emit");
        let files = segment_files(dir.path());
        let on_disk: u64 = files.iter().map(|(_, s)| s).sum();
        assert!(
            on_disk <= max_disk,
            "{on_disk} bytes on disk with --max-disk {max_disk} after a line of {group_len} \
             bytes (profiler_recording_disk_bytes {}): {files:?}",
            metrics.recording_bytes.get()
        );
        // The header is on disk as soon as a segment starts.
        let last = files
            .last()
            .map(|(name, _)| name.clone())
            .unwrap_or_default();
        if last != newest {
            newest = last;
            in_current = header_len;
        }
        in_current += line_len(&record);
    }
}

#[test]
fn records_older_than_the_retention_are_removed_with_their_segment() {
    let dir = tempfile::tempdir().expect("temp dir");
    // Segments of 150 s.
    let retain = HOUR;
    let span = 150.0;
    let (mut recording, _metrics) = open(dir.path(), bounds(retain, 64 * MIB), T0);
    let mut ts = T0;
    let mut step = 0;
    while ts < T0 + 3.0 * HOUR {
        ts += 5.0;
        step += 1;
        recording.emit(&sample(ts)).expect("emit");
        if step % 60 == 0 && ts > T0 + retain + span {
            recording.flush().expect("flush");
            let all = recorded_ts(dir.path());
            let oldest = all.first().copied().unwrap_or(f64::NAN);
            assert!(
                oldest >= ts - retain - 2.0 * span,
                "at {} s: a record of {} s ago is still there (--retain 1h)",
                ts - T0,
                ts - oldest
            );
            assert!(
                oldest <= ts - retain + 5.0,
                "at {} s: the oldest record is of {} s ago: the last hour is not all there",
                ts - T0,
                ts - oldest
            );
        }
    }
}

/// Writes what an agent started at `from` would have, one record every `step` seconds until
/// `to`, and stops it as SIGTERM does (an `end` line).
fn earlier_agent(dir: &Path, bounds: Bounds, from: f64, to: f64, step: f64) {
    let (mut recording, _metrics) = open(dir, bounds, from);
    let mut ts = from;
    while ts + step <= to {
        ts += step;
        recording.emit(&sample(ts)).expect("emit");
    }
    recording.emit(&end(to)).expect("emit");
    recording.flush().expect("flush");
}

#[test]
fn an_earlier_agents_segments_are_kept_counted_and_go_first_and_other_files_stay() {
    let dir = tempfile::tempdir().expect("temp dir");
    let max_disk = 256 * KIB;
    let bounds = bounds(DAY, max_disk);
    earlier_agent(dir.path(), bounds, T0 - 600.0, T0 - 510.0, 0.5);
    let earlier = segment_files(dir.path());
    assert!(earlier.len() >= 2, "the earlier agent rotated: {earlier:?}");
    assert!(
        disk_bytes(dir.path()) + max_disk / 4 <= max_disk,
        "the earlier segments and a new one fit: {earlier:?}"
    );
    // Files that are not segments, some named almost like one.
    let others = [
        ("notes.txt", 100 * KIB as usize),
        ("segment-.rec", 10),
        ("segment-12a.rec", 10),
        ("segment-1767225000000.rec.tmp", 50 * KIB as usize),
        ("a.rec", 10),
    ];
    for (name, size) in others {
        fs::write(dir.path().join(name), vec![b'x'; size]).expect("write");
    }
    fs::create_dir(dir.path().join("segment-1767225000001.rec")).expect("mkdir");

    let (mut recording, metrics) = open(dir.path(), bounds, T0);
    let after_open = segment_files(dir.path());
    for file in &earlier {
        assert!(
            after_open.contains(file),
            "the earlier {file:?} is kept at start-up while it fits: {after_open:?}"
        );
    }
    assert_eq!(
        u64::try_from(metrics.recording_bytes.get()).expect("a size"),
        disk_bytes(dir.path()),
        "profiler_recording_disk_bytes counts the earlier agent's segments"
    );

    let earlier_names: Vec<&String> = earlier.iter().map(|(name, _)| name).collect();
    let mut ours = BTreeSet::new();
    let mut ts = T0;
    while ts < T0 + 3000.0 {
        ts += 0.5;
        recording.emit(&sample(ts)).expect("emit");
        let files = segment_files(dir.path());
        let on_disk: u64 = files.iter().map(|(_, s)| s).sum();
        assert!(on_disk <= max_disk, "{on_disk} bytes: {files:?}");
        let names: BTreeSet<&String> = files.iter().map(|(name, _)| name).collect();
        ours.extend(
            files
                .iter()
                .filter(|(name, _)| !earlier_names.contains(&name))
                .map(|(name, _)| name.clone()),
        );
        if ours.iter().any(|name| !names.contains(name)) {
            assert!(
                !files.iter().any(|(name, _)| earlier_names.contains(&name)),
                "one of this agent's segments went before the earlier agent's: {files:?}"
            );
        }
    }
    let files = segment_files(dir.path());
    assert!(
        !files.iter().any(|(name, _)| earlier_names.contains(&name)),
        "the bound made room by removing the earlier segments: {files:?}"
    );
    for (name, size) in others {
        let meta = fs::metadata(dir.path().join(name))
            .unwrap_or_else(|e| panic!("{name}, not a segment, was removed: {e}"));
        assert_eq!(meta.len(), size as u64, "{name} was changed");
    }
    assert!(dir.path().join("segment-1767225000001.rec").is_dir());
}

/// An agent that was down for two days: its last segment is as old as its last record, not
/// as recent as the next agent's start; with `--retain 24h` it goes at the latest when the
/// new agent rotates its first segment.
#[test]
fn an_earlier_agents_last_segment_expires_by_its_own_records() {
    let dir = tempfile::tempdir().expect("temp dir");
    let bounds = bounds(DAY, 64 * MIB);
    // An agent stopped 48 h ago, after 50 minutes.
    earlier_agent(
        dir.path(),
        bounds,
        T0 - 49.0 * HOUR,
        T0 - 48.0 * HOUR - 600.0,
        30.0,
    );
    let earlier = segment_files(dir.path());
    assert_eq!(earlier.len(), 1, "{earlier:?}");

    let (mut recording, _metrics) = open(dir.path(), bounds, T0);
    // An hour and a bit: the first segment of this agent (a 24th of a day) is closed.
    let mut ts = T0;
    while ts < T0 + HOUR + 60.0 {
        ts += 30.0;
        recording.emit(&sample(ts)).expect("emit");
    }
    let files = segment_files(dir.path());
    assert!(
        files.len() >= 2,
        "this agent rotated its first segment: {files:?}"
    );
    let newest_earlier = recorded_ts(dir.path())
        .first()
        .map_or(0.0, |oldest| ts - oldest);
    assert!(
        !files.contains(&earlier[0]),
        "{} (records of 49 h to 48 h ago) is still there with --retain 24h after this agent \
         rotated; the oldest record on disk is {:.1} h old: {files:?}",
        earlier[0].0,
        newest_earlier / HOUR
    );
}

/// Writes a recording in `dir` the way two agents would: one from `T0` to `T0 + 100` (one
/// sample a second, then killed: its last line is cut), the next from `T0 + 200` to
/// `T0 + 600` (segments of 150 s). Returns the `ts` of every complete record line.
fn two_agents(dir: &Path) -> Vec<f64> {
    let bounds = bounds(HOUR, 64 * MIB);
    let mut written = Vec::new();
    {
        let (mut recording, _metrics) = open(dir, bounds, T0);
        for i in 1..=100 {
            let ts = T0 + f64::from(i);
            recording.emit(&sample(ts)).expect("emit");
            written.push(ts);
        }
        recording.flush().expect("flush");
    }
    let (name, _) = segment_files(dir).pop().expect("the first agent's segment");
    // Killed while writing a line.
    let mut cut = serde_json::to_vec(&sample(T0 + 101.0)).expect("serializable");
    cut.truncate(cut.len() / 2);
    let mut file = File::options()
        .append(true)
        .open(dir.join(&name))
        .expect("open");
    file.write_all(&cut).expect("append");
    drop(file);

    let (mut recording, _metrics) = open(dir, bounds, T0 + 200.0);
    for i in 201..=600 {
        let ts = T0 + f64::from(i);
        recording.emit(&sample(ts)).expect("emit");
        written.push(ts);
    }
    recording.flush().expect("flush");
    written
}

/// The recording of the last `since` seconds before `now`, every container, at most `limit`
/// bytes.
fn read_back(
    dir: &Path,
    now: f64,
    since: f64,
    limit: u64,
) -> Result<super::super::readback::SegmentReader, ReadBackError> {
    super::read_back(
        dir,
        now,
        &Ask {
            since_s: since,
            filter: Filter::default(),
            max_bytes: limit,
            max_cgroups: usize::MAX,
        },
    )
}

fn read_all(reader: super::super::readback::SegmentReader) -> String {
    let mut text = String::new();
    let mut reader = reader;
    reader.read_to_string(&mut text).expect("the segments read");
    text
}

#[test]
fn read_back_is_one_recording_across_segments_and_agents() {
    let dir = tempfile::tempdir().expect("temp dir");
    let written = two_agents(dir.path());
    let files = segment_files(dir.path());
    assert!(files.len() >= 3, "{files:?}");
    let now = T0 + 600.5;

    for since in [600.0, 550.0, 450.0, 200.0, 30.0] {
        let from = now - since;
        let text = read_all(read_back(dir.path(), now, since, 64 * MIB).expect("read back"));
        assert!(text.ends_with('\n'), "since {since}: ends in a cut line");
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
            .collect();
        let head = &lines[0];
        assert_eq!(head["type"], "recording", "since {since}: the header first");
        let started = head["started"].as_f64().expect("started");
        assert!(
            started >= from - 0.001,
            "since {since}: the header says the recording started at {}, before {from}",
            started - T0
        );
        assert!(
            lines[1..].iter().all(|l| l["type"] == "sample"),
            "since {since}: one header only, and no cut line"
        );
        let got: Vec<f64> = lines[1..]
            .iter()
            .map(|l| l["ts"].as_f64().expect("ts"))
            .collect();
        let expected: Vec<f64> = written.iter().copied().filter(|&t| t >= from).collect();
        same_ts(&got, &expected, &format!("since {since}"));

        // What the report reads: no damage, every line.
        let recording = reports::recording::read(&text).expect("a recording");
        assert_eq!(recording.damage, None, "since {since}");
        assert_eq!(recording.lines.len(), expected.len(), "since {since}");
    }
}

#[test]
fn read_back_reads_only_the_segments_of_the_time_asked_for() {
    let dir = tempfile::tempdir().expect("temp dir");
    two_agents(dir.path());
    let files = segment_files(dir.path());
    let now = T0 + 600.5;
    for since in [600.0, 450.0, 200.0, 30.0] {
        let from = now - since;
        // Exactly what would be read: the header and the lines of the time asked for.
        let wanted =
            read_all(read_back(dir.path(), now, since, u64::MAX).expect("reads")).len() as u64;
        // Fewer lines than the segments hold (they cover more than the time asked for).
        let whole: u64 = files
            .iter()
            .filter(|(n, _)| {
                let start = name_start(n);
                last_ts(&dir.path().join(n)).unwrap_or(start).max(start) >= from
            })
            .map(|(_, size)| size)
            .sum();
        assert!(wanted <= whole, "since {since}: {wanted} > {whole}");
        match read_back(dir.path(), now, since, 0) {
            Err(ReadBackError::TooBig {
                since_s,
                bytes,
                limit,
                dir: named,
            }) => {
                assert_eq!((since_s, bytes, limit), (since, wanted, 0), "since {since}");
                assert_eq!(named, dir.path());
            }
            Err(e) => panic!("since {since}: {e}"),
            Ok(_) => panic!("since {since}: read with a limit of 0 bytes"),
        }
        assert!(
            read_back(dir.path(), now, since, wanted - 1).is_err(),
            "since {since}: a byte less is refused"
        );
        let wanted_limit = read_back(dir.path(), now, since, wanted);
        assert!(
            wanted_limit.is_ok(),
            "since {since}: exactly the limit reads"
        );
    }
    let message = read_back(dir.path(), now, 600.0, 1000)
        .err()
        .expect("too big")
        .to_string();
    assert!(
        message.contains("600 s") && message.contains("shorter `since`"),
        "{message}"
    );
}

#[test]
fn read_back_says_when_there_is_nothing_to_read() {
    let dir = tempfile::tempdir().expect("temp dir");
    assert!(matches!(
        read_back(dir.path(), T0, HOUR, MIB),
        Err(ReadBackError::Empty { since_s, .. }) if since_s == HOUR
    ));
    fs::write(dir.path().join("notes.txt"), "not a segment").expect("write");
    assert!(matches!(
        read_back(dir.path(), T0, HOUR, MIB),
        Err(ReadBackError::Empty { .. })
    ));
    two_agents(dir.path());
    // Everything recorded starts after `now`.
    assert!(matches!(
        read_back(dir.path(), T0 - 10.0, HOUR, MIB),
        Err(ReadBackError::Empty { .. })
    ));
    let missing = dir.path().join("missing");
    match read_back(&missing, T0, HOUR, MIB) {
        Err(ReadBackError::Dir { dir, .. }) => assert_eq!(dir, missing),
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("a missing directory read"),
    }
}

/// Write errors need a file that cannot grow: the test runs again in a child process whose
/// file size limit (`RLIMIT_FSIZE`, with `SIGXFSZ` ignored) makes the kernel refuse writes
/// past `FILE_SIZE_LIMIT` bytes with `EFBIG`, as a full disk refuses them with `ENOSPC`.
const FILE_SIZE_LIMIT: u64 = 100_000;
const CHILD: &str = "PROFILER_SEGMENTS_TEST_FILE_SIZE_LIMIT";

fn with_file_size_limit(test: &str, body: impl FnOnce()) {
    if std::env::var(CHILD).as_deref() == Ok(test) {
        let limit = libc::rlimit {
            rlim_cur: FILE_SIZE_LIMIT,
            rlim_max: FILE_SIZE_LIMIT,
        };
        // SAFETY: ignoring a signal and lowering a limit of this (child) process only.
        unsafe {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            assert_eq!(
                libc::setrlimit(libc::RLIMIT_FSIZE, &limit),
                0,
                "setrlimit: {}",
                io::Error::last_os_error()
            );
        }
        body();
        return;
    }
    let module = module_path!()
        .split_once("::")
        .map_or(module_path!(), |(_, rest)| rest);
    let exe = std::env::current_exe().expect("the test binary");
    let out = Command::new(exe)
        .args([
            &format!("{module}::{test}"),
            "--exact",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CHILD, test)
        .output()
        .expect("the test binary runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "{test}, with a file size limit of {FILE_SIZE_LIMIT} bytes, in a child process: \
         {}\n{stdout}\n{stderr}",
        out.status
    );
}

#[test]
fn a_failed_write_stops_the_recording_which_starts_again_a_minute_later() {
    with_file_size_limit(
        "a_failed_write_stops_the_recording_which_starts_again_a_minute_later",
        || {
            let dir = tempfile::tempdir().expect("temp dir");
            // Segments of up to 4 MiB: the file size limit is met first.
            let (mut recording, metrics) = open(dir.path(), bounds(DAY, 16 * MIB), T0);
            let mut ts = T0;
            while metrics.recording_errors.get() == 0 {
                ts += 0.1;
                assert!(ts < T0 + 1000.0, "no write failed");
                recording.emit(&sample(ts)).expect("the agent goes on");
            }
            let failed_at = ts;
            assert_eq!(metrics.recording_active.get(), 0);
            let first = segment_files(dir.path());
            assert_eq!(first.len(), 1);
            assert_eq!(first[0].1, FILE_SIZE_LIMIT, "written up to the limit");
            assert_eq!(
                u64::try_from(metrics.recording_bytes.get()).expect("a size"),
                FILE_SIZE_LIMIT,
                "the failed segment is counted as it is on disk"
            );

            // Within the minute: nothing is tried.
            while ts < failed_at + RETRY_S - 0.5 {
                ts += 0.5;
                recording.emit(&sample(ts)).expect("the agent goes on");
                recording.emit(&kill(ts)).expect("the agent goes on");
                recording.flush().expect("the agent goes on");
            }
            assert_eq!(metrics.recording_errors.get(), 1, "tried within the minute");
            assert_eq!(metrics.recording_active.get(), 0);
            assert_eq!(segment_files(dir.path()), first);

            // A minute later: a new segment.
            ts = failed_at + RETRY_S;
            recording.emit(&kill(ts)).expect("the agent goes on");
            assert_eq!(metrics.recording_active.get(), 1, "not started again");
            let files = segment_files(dir.path());
            assert_eq!(files.len(), 2, "{files:?}");
            assert!((name_start(&files[1].0) - ts).abs() < 0.002, "{files:?}");
            assert_eq!(
                u64::try_from(metrics.recording_bytes.get()).expect("a size"),
                disk_bytes(dir.path()),
            );

            // The whole recording reads: the cut line left out, the gap a gap.
            let text = read_all(read_back(dir.path(), ts, HOUR, MIB).expect("read back"));
            let read = reports::recording::read(&text).expect("a recording");
            assert_eq!(read.damage, None);
            let ts_read: Vec<f64> = read.lines.iter().map(|l| l.ts).collect();
            assert!(ts_read.iter().all(|&t| t < failed_at || t >= ts));
            assert!(ts_read.first().is_some_and(|&t| t < T0 + 1.0));
            assert!(ts_read.last().is_some_and(|&t| (t - ts).abs() < 1e-6));

            // The second failure is counted too.
            while metrics.recording_errors.get() == 1 {
                ts += 0.1;
                assert!(ts < failed_at + 2000.0, "no second write failed");
                recording.emit(&sample(ts)).expect("the agent goes on");
            }
            assert_eq!(metrics.recording_active.get(), 0);
        },
    );
}

/// A full disk met when a segment is closed (its last lines flushed as the next starts)
/// loses what could not be written, but the file is still a segment: counted against
/// `--max-disk` and removed in turn.
#[test]
fn a_segment_whose_last_flush_fails_is_still_counted_and_removed() {
    with_file_size_limit(
        "a_segment_whose_last_flush_fails_is_still_counted_and_removed",
        || {
            let dir = tempfile::tempdir().expect("temp dir");
            // Segments of 128 KiB, a span of an hour.
            let max_disk = 512 * KIB;
            let (mut recording, metrics) = open(dir.path(), bounds(DAY, max_disk), T0);
            let mut ts = T0;
            for cycle in 0..8 {
                // About 105 kB in the segment: 64 KiB written, the rest buffered...
                let start_errors = metrics.recording_errors.get();
                let mut in_segment = 0;
                while in_segment < 105_000 {
                    ts += 1.0;
                    let record = sample(ts);
                    in_segment += line_len(&record);
                    recording.emit(&record).expect("the agent goes on");
                }
                // ...then the hour is over: the segment is closed and its flush fails.
                ts += HOUR;
                recording.emit(&sample(ts)).expect("the agent goes on");
                assert_eq!(
                    metrics.recording_errors.get(),
                    start_errors + 1,
                    "cycle {cycle}: the failed flush is counted"
                );
                // A minute later the recording starts again.
                ts += RETRY_S;
                recording.emit(&sample(ts)).expect("the agent goes on");
                assert_eq!(metrics.recording_active.get(), 1, "cycle {cycle}");
                let files = segment_files(dir.path());
                let on_disk: u64 = files.iter().map(|(_, s)| s).sum();
                assert!(
                    on_disk <= max_disk,
                    "cycle {cycle}: {on_disk} bytes of segments on disk with --max-disk \
                     {max_disk} (profiler_recording_disk_bytes says {}): {files:?}",
                    metrics.recording_bytes.get()
                );
            }
            recording.flush().expect("the agent goes on");
            let files = segment_files(dir.path());
            let on_disk: u64 = files.iter().map(|(_, s)| s).sum();
            let gauge = u64::try_from(metrics.recording_bytes.get()).expect("a size");
            assert_eq!(
                gauge, on_disk,
                "profiler_recording_disk_bytes against the segments on disk: {files:?}"
            );
        },
    );
}
