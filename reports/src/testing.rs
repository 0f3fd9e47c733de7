//! Recordings made up in tests, in the profiler's own line format: a pod's container, its
//! samples, kills and runtime lines, and the page the report makes of them.
use std::path::Path;

/// Bytes in a mebibyte.
pub(crate) const MIB: u64 = 1 << 20;

const HEADER: &str = r#"{"type":"recording","format":"profiler-recording","version":1,"profiler_version":"0.1.0","started":1000.0,"node":"n1","cgroup_version":"v2","interval_s":5.0,"warn_s":600.0,"critical_s":60.0}"#;

/// A line about the container `shop/web-0/app` at `ts` seconds into the recording.
pub(crate) fn line(ts: f64, body: &str) -> String {
    format!(
        r#"{{"ts":{},"cgroup":"/sys/fs/cgroup/kubepods/pod1/c1","namespace":"shop","pod":"web-0","pod_uid":null,"container":"app","container_id":null,"qos":"burstable","runtime":"containerd",{body}}}"#,
        1000.0 + ts
    )
}

/// A line about another cgroup: `who` is `(cgroup, namespace, pod, container)`, `None` for a
/// key that is null (a container outside Kubernetes has no namespace and no pod).
pub(crate) fn line_of(
    who: (&str, Option<&str>, Option<&str>, Option<&str>),
    ts: f64,
    body: &str,
) -> String {
    let (cgroup, namespace, pod, container) = who;
    let json = |v: Option<&str>| v.map_or_else(|| "null".to_owned(), |v| format!("\"{v}\""));
    format!(
        r#"{{"ts":{},"cgroup":"{cgroup}","namespace":{},"pod":{},"pod_uid":null,"container":{},"container_id":null,"qos":"burstable","runtime":"containerd",{body}}}"#,
        1000.0 + ts,
        json(namespace),
        json(pod),
        json(container)
    )
}

/// A sample whose working set and unreclaimable memory are `bytes`, with `extra` fields.
pub(crate) fn sample(ts: f64, bytes: u64, limit: u64, restarts: u64, extra: &str) -> String {
    line(
        ts,
        &format!(
            r#""type":"sample","usage_bytes":{bytes},"working_set_bytes":{bytes},"unreclaimable_bytes":{bytes},"limit_bytes":{limit},"oom_kills":0,"restarts":{restarts},"risk":"ok","mode":"polling"{extra}"#
        ),
    )
}

/// An OOM kill by the container's limit.
pub(crate) fn kill(ts: f64, pid: u32, limit: u64) -> String {
    line(
        ts,
        &format!(
            r#""type":"oom_kill","pid":{pid},"comm":"app","limit_bytes":{limit},"constraint":"memcg","source":"bpf""#
        ),
    )
}

/// The HTML page of a recording of `lines`.
pub(crate) fn page(lines: &[String]) -> String {
    let text = format!("{HEADER}\n{}\n", lines.join("\n"));
    crate::page_from(text.as_bytes(), Path::new("made-up.rec"))
        .expect("a page")
        .html
}
