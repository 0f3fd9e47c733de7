use super::*;
use crate::recording::read;

fn line(ts: f64, cgroup: &str, pod: Option<&str>, body: &str) -> Line {
    let identity = match pod {
        Some(pod) => format!(
            r#""namespace":"shop","pod":"{pod}","container":"app","container_id":null,"qos":"Burstable""#
        ),
        None => r#""namespace":null,"pod":null,"container":null"#.into(),
    };
    let text = format!(r#"{{"ts":{ts},"cgroup":"{cgroup}",{identity},{body}}}"#);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn sample(usage: u64, stall: u64, restarts: u64) -> String {
    format!(
        r#""type":"sample","usage_bytes":{usage},"working_set_bytes":{usage},"unreclaimable_bytes":{usage},"limit_bytes":100,"reclaim_stall_us":{stall},"restarts":{restarts},"oom_kills":0"#
    )
}

#[test]
fn a_pods_container_is_followed_across_restarts() {
    let mut timeline = Timeline::new(Some(1000.0));
    timeline.add(line(1001.0, "/a", Some("web"), &sample(10, 5, 0)));
    timeline.add(line(1002.0, "/a", Some("web"), &sample(50, 7, 0)));
    timeline.add(line(
        1003.0,
        "/a",
        Some("web"),
        r#""type":"oom_kill","pid":7,"comm":"x""#,
    ));
    // The new container's stall counter starts again from zero.
    timeline.add(line(1004.0, "/b", Some("web"), &sample(20, 3, 1)));
    timeline.add(line(1005.0, "/other", None, &sample(1, 0, 0)));
    assert_eq!(timeline.containers.len(), 2);
    let web = &timeline.containers[0];
    assert_eq!(web.name(), "shop/web/app");
    assert_eq!(web.cgroups, ["/a", "/b"]);
    assert_eq!(web.points.len(), 3);
    assert_eq!(web.kills.len(), 1);
    assert_eq!(web.kills[0].t, 3.0);
    assert_eq!(web.restarts, 1);
    assert_eq!(web.reclaim_stall_us, 7 + 3);
    assert_eq!(timeline.containers[1].name(), "/other");
    assert_eq!(timeline.span, 5.0);
}

#[test]
fn time_above_and_growth() {
    let mut timeline = Timeline::new(Some(0.0));
    for (t, usage) in [
        (0.0, 10),
        (1.0, 90),
        (2.0, 95),
        (3.0, 50),
        (10.0, 99),
        (11.0, 99),
    ] {
        timeline.add(line(t, "/a", None, &sample(usage, 0, 0)));
    }
    let c = &timeline.containers[0];
    // 1→2 and 2→3 count fully; 10→11 counts; the 3→10 gap is below 90 %.
    assert_eq!(c.time_above(0.9, 2.0), 3.0);
    // A gap longer than max_gap counts max_gap only.
    let mut gap = Timeline::new(Some(0.0));
    gap.add(line(0.0, "/a", None, &sample(95, 0, 0)));
    gap.add(line(60.0, "/a", None, &sample(95, 0, 0)));
    assert_eq!(gap.containers[0].time_above(0.9, 2.0), 2.0);
    assert_eq!(c.growth_before(2.0, 10.0), Some(42.5));
    assert_eq!(c.growth_before(0.0, 10.0), None);
}

#[test]
fn a_real_recording() {
    let path = format!("{}/testdata/leak.rec", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let recording = read(&text).expect("reads");
    let mut timeline = Timeline::new(recording.header.started);
    for line in recording.lines {
        timeline.add(line);
    }
    assert_eq!(timeline.containers.len(), 1);
    let c = &timeline.containers[0];
    assert_eq!(c.points.len(), 35);
    assert_eq!(c.kills.len(), 1);
    assert_eq!(c.kills[0].event.comm, "leaky<app>");
    assert!(!c.warnings.is_empty());
    assert!(c.points.windows(2).all(|p| p[0].t < p[1].t));
    assert!(c.growth_before(c.kills[0].t, 60.0).is_some_and(|g| g > 0.0));
}
