//! `profiler serve`, the node agent: the collector of `watch` over every container, feeding
//! Prometheus metrics (served over HTTP with the report and a health check) and a rolling
//! recording.
pub(crate) mod exposition;
pub(crate) mod http;
pub(crate) mod metrics;
pub(crate) mod readback;
pub(crate) mod segments;

pub(crate) use metrics::{AgentMetrics, MetricsSink};
pub(crate) use segments::{Bounds, RollingRecording};
