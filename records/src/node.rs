//! The node-wide `node` line: the node's memory, its forecast and the processes the kernel
//! would kill first. Apart from the cgroup lines of [`crate::line`] because nothing in it is
//! about one container.
use serde::Deserialize;

use crate::line::Identity;

/// A `node` line: the node's memory, its forecast and its next OOM victims.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct Node {
    /// `MemTotal`, bytes.
    pub mem_total_bytes: u64,
    /// `MemAvailable`, bytes.
    pub mem_available_bytes: u64,
    /// The kubelet's eviction threshold on `memory.available`, bytes.
    pub eviction_threshold_bytes: u64,
    /// Seconds until the threshold is reached, when forecast.
    pub eta_eviction_seconds: Option<f64>,
    /// Seconds until nothing is available, when forecast.
    pub eta_oom_seconds: Option<f64>,
    /// `some avg10` of the node's memory pressure, %.
    pub psi_some_avg10: Option<f64>,
    /// The processes the kernel would kill first, highest `oom_score` first.
    pub next_victims: Vec<NextVictim>,
}

/// One of a `node` line's next victims.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct NextVictim {
    /// Process id.
    pub pid: u32,
    /// Command (untrusted).
    pub comm: String,
    /// `oom_score` (0..2000).
    pub oom_score: u32,
    /// `oom_score_adj`.
    pub oom_score_adj: i32,
    /// Resident memory, bytes.
    pub rss_bytes: u64,
    /// Its memory cgroup.
    pub victim_cgroup: Option<String>,
    /// Its container's owner.
    #[serde(flatten)]
    pub identity: Identity,
}
