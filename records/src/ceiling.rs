//! The lines about managed runtimes in a watched container: `heap_ceiling` (the most a
//! runtime's heap can grow to, and where that figure came from) and `config_risk` (a setting
//! that is wrong already, with its fix).
//!
//! The runtime is in `language_runtime`: `runtime` on a container's lines is its container
//! runtime (docker, containerd), as on every other line about a cgroup.
use serde::Deserialize;

/// A `heap_ceiling` line: one per runtime process, when it is first seen.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct HeapCeiling {
    /// Process id (the node's).
    pub pid: u32,
    /// Command, verbatim (untrusted: escape before showing).
    #[serde(default)]
    pub comm: String,
    /// `jvm`, `node`, `go` or `dotnet` (kept as written: a newer profiler may know more).
    #[serde(default)]
    pub language_runtime: Option<String>,
    /// The ceiling, bytes; `None` when the runtime has none set (Go without `GOMEMLIMIT`).
    #[serde(default)]
    pub ceiling_bytes: Option<u64>,
    /// Where the figure came from (`-Xmx128m on the command line`; untrusted: it quotes the
    /// process's own arguments).
    #[serde(default)]
    pub source: String,
    /// Whether the ceiling is the runtime's default (nothing set it).
    #[serde(default)]
    pub default: bool,
    /// Go with `GOGC=off` and no `GOMEMLIMIT`: nothing collects garbage.
    #[serde(default)]
    pub gc_off: bool,
}

/// What a `config_risk` line says is wrong.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum RiskKind {
    /// The ceiling plus the memory beside the heap is at or above the limit: the kernel kills
    /// the process before its runtime runs out of heap.
    CeilingAboveLimit,
    /// The runtime can be given a ceiling and has none (Go without `GOMEMLIMIT`).
    NoCeiling,
    /// Nothing collects garbage (Go with `GOGC=off` and no `GOMEMLIMIT`).
    GcOff,
    /// A kind this reader does not know (from a newer profiler): its message and fix still
    /// read.
    #[serde(other)]
    Other,
}

/// A `config_risk` line: once per process and kind, when it first holds.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct ConfigRisk {
    /// Process id (the node's).
    pub pid: u32,
    /// Command, verbatim (untrusted).
    #[serde(default)]
    pub comm: String,
    /// `jvm`, `node`, `go` or `dotnet`.
    #[serde(default)]
    pub language_runtime: Option<String>,
    /// What is wrong.
    pub kind: RiskKind,
    /// The ceiling, bytes; `None` for `no_ceiling` and `gc_off`.
    #[serde(default)]
    pub ceiling_bytes: Option<u64>,
    /// Where the ceiling came from (untrusted).
    #[serde(default)]
    pub ceiling_source: Option<String>,
    /// What the process holds beside its heap, bytes; `None` when not measured.
    #[serde(default)]
    pub non_heap_bytes: Option<u64>,
    /// The limit that applies, bytes.
    #[serde(default)]
    pub limit_bytes: Option<u64>,
    /// What is wrong, in a sentence with the figures (untrusted: it quotes the settings).
    #[serde(default)]
    pub message: String,
    /// What to do, with the figures.
    #[serde(default)]
    pub fix: String,
}

#[cfg(test)]
mod tests {
    use crate::line::{Body, Line};

    use super::*;

    const WHO: &str = r#""cgroup":"/sys/fs/cgroup/jvm","namespace":"shop","pod":"web","pod_uid":null,"container":"app","container_id":null,"qos":null,"runtime":"containerd""#;

    fn parse(body: &str) -> Body {
        let text = format!(r#"{{"ts":5.5,{WHO},{body}}}"#);
        Line::parse(&text)
            .unwrap_or_else(|e| panic!("{text}: {e}"))
            .body
    }

    #[test]
    fn a_heap_ceiling_reads_beside_the_container_runtime() {
        let body = parse(
            r#""type":"heap_ceiling","pid":123,"comm":"java","language_runtime":"jvm","ceiling_bytes":134217728,"source":"-Xmx128m on the command line","default":false,"gc_off":false"#,
        );
        assert_eq!(
            body,
            Body::HeapCeiling(HeapCeiling {
                pid: 123,
                comm: "java".into(),
                language_runtime: Some("jvm".into()),
                ceiling_bytes: Some(128 << 20),
                source: "-Xmx128m on the command line".into(),
                default: false,
                gc_off: false,
            })
        );
        // Go without GOMEMLIMIT: no ceiling; the optional keys may be missing altogether.
        let Body::HeapCeiling(go) =
            parse(r#""type":"heap_ceiling","pid":9,"language_runtime":"go","ceiling_bytes":null"#)
        else {
            panic!("a heap_ceiling");
        };
        assert_eq!(
            (go.ceiling_bytes, go.default, go.gc_off),
            (None, false, false)
        );
    }

    #[test]
    fn a_config_risk_reads_with_its_message_and_fix() {
        let Body::ConfigRisk(risk) = parse(
            r#""type":"config_risk","pid":123,"comm":"java","language_runtime":"jvm","kind":"ceiling_above_limit","ceiling_bytes":1073741824,"ceiling_source":"-Xmx1g on the command line","non_heap_bytes":62914560,"limit_bytes":268435456,"message":"JVM max heap 1.0 GiB + 60 MiB non-heap > limit 256 MiB: the kernel will OOM-kill it before the JVM throws OutOfMemoryError","fix":"use -XX:MaxRAMPercentage=68 or -Xmx ≤ 176m""#,
        ) else {
            panic!("a config_risk");
        };
        assert_eq!(risk.kind, RiskKind::CeilingAboveLimit);
        assert_eq!(
            (risk.ceiling_bytes, risk.non_heap_bytes, risk.limit_bytes),
            (Some(1 << 30), Some(60 << 20), Some(256 << 20))
        );
        assert_eq!(risk.fix, "use -XX:MaxRAMPercentage=68 or -Xmx ≤ 176m");
        let Body::ConfigRisk(go) = parse(
            r#""type":"config_risk","pid":9,"kind":"no_ceiling","ceiling_bytes":null,"non_heap_bytes":null,"limit_bytes":268435456,"message":"m","fix":"set GOMEMLIMIT=230MiB""#,
        ) else {
            panic!("a config_risk");
        };
        assert_eq!((go.kind, go.ceiling_bytes), (RiskKind::NoCeiling, None));
        // A kind from a newer profiler still reads.
        let Body::ConfigRisk(newer) =
            parse(r#""type":"config_risk","pid":9,"kind":"too_many_arenas""#)
        else {
            panic!("a config_risk");
        };
        assert_eq!((newer.kind, newer.message.as_str()), (RiskKind::Other, ""));
        // Without what it is about, it is no config_risk.
        let text = format!(r#"{{"ts":1,{WHO},"type":"config_risk","pid":9}}"#);
        assert!(Line::parse(&text).is_err());
    }
}
