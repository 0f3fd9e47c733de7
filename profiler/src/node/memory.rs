//! The node's memory from `/proc/meminfo`, and the kubelet's eviction threshold.
use std::{fmt, fs, str::FromStr};

/// `MemTotal`, `MemAvailable` and the free swap, bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct NodeMemory {
    /// `MemTotal`.
    pub(crate) total: u64,
    /// `MemAvailable`.
    pub(crate) available: u64,
    /// `SwapFree` (0 without swap, and when the line is missing).
    pub(crate) swap_free: u64,
}

impl NodeMemory {
    /// Reads `/proc/meminfo`.
    pub(crate) fn read() -> Option<Self> {
        parse_meminfo(&fs::read_to_string("/proc/meminfo").ok()?)
    }
}

/// `MemTotal`, `MemAvailable` and `SwapFree` from the text of `/proc/meminfo` (kB).
pub(crate) fn parse_meminfo(text: &str) -> Option<NodeMemory> {
    let field = |name: &str| -> Option<u64> {
        let line = text.lines().find(|l| l.starts_with(name))?;
        let mut words = line[name.len()..].split_whitespace();
        let value: u64 = words.next()?.parse().ok()?;
        match words.next() {
            Some("kB") => value.checked_mul(1024),
            None => Some(value),
            Some(_) => None,
        }
    };
    Some(NodeMemory {
        total: field("MemTotal:")?,
        available: field("MemAvailable:")?,
        swap_free: field("SwapFree:").unwrap_or(0),
    })
}

/// `some avg10` of `/proc/pressure/memory`, %; `None` without PSI.
pub(crate) fn node_psi_some_avg10() -> Option<f64> {
    let text = fs::read_to_string("/proc/pressure/memory").ok()?;
    let some = text.lines().find(|l| l.starts_with("some "))?;
    some.split_whitespace()
        .find_map(|w| w.strip_prefix("avg10="))?
        .parse()
        .ok()
}

/// The kubelet's hard eviction threshold on `memory.available` (`--eviction-hard
/// memory.available<100Mi`, its default): a quantity or a share of the node's memory.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum EvictionThreshold {
    /// Bytes.
    Bytes(u64),
    /// A percentage of `MemTotal`.
    Percent(f64),
}

impl EvictionThreshold {
    /// The kubelet's default, `100Mi`.
    pub const DEFAULT: EvictionThreshold = EvictionThreshold::Bytes(100 << 20);

    /// In bytes, on a node with `total` bytes of memory.
    pub(crate) fn bytes(self, total: u64) -> u64 {
        match self {
            EvictionThreshold::Bytes(b) => b,
            EvictionThreshold::Percent(p) => (total as f64 * p / 100.0) as u64,
        }
    }
}

impl fmt::Display for EvictionThreshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EvictionThreshold::Bytes(b) => write!(f, "{b}"),
            EvictionThreshold::Percent(p) => write!(f, "{p}%"),
        }
    }
}

impl FromStr for EvictionThreshold {
    type Err = String;

    /// `100Mi`, `1Gi`, `500M`, `102400Ki`, `104857600` (bytes) or `5%`, as the kubelet takes
    /// them.
    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let bad = || {
            format!(
                "`{text}` is not a memory quantity: use e.g. 100Mi, 1Gi, 500M or 5% (as in the \
                 kubelet's --eviction-hard memory.available<100Mi)"
            )
        };
        if let Some(percent) = text.strip_suffix('%') {
            let p: f64 = percent.parse().map_err(|_| bad())?;
            return if (0.0..100.0).contains(&p) {
                Ok(EvictionThreshold::Percent(p))
            } else {
                Err(bad())
            };
        }
        quantity_bytes(text)
            .map(EvictionThreshold::Bytes)
            .ok_or_else(bad)
    }
}

/// A memory quantity as Kubernetes writes them (`100Mi`, `1Gi`, `500M`, `102400Ki`, or bytes),
/// also with a `B` after the binary units (`1GiB`); `None` when it is none or overflows.
pub(crate) fn quantity_bytes(text: &str) -> Option<u64> {
    const UNITS: [(&str, u64); 12] = [
        ("KiB", 1 << 10),
        ("MiB", 1 << 20),
        ("GiB", 1 << 30),
        ("TiB", 1 << 40),
        ("Ki", 1 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("Ti", 1 << 40),
        ("k", 1_000),
        ("M", 1_000_000),
        ("G", 1_000_000_000),
        ("T", 1_000_000_000_000),
    ];
    let text = text.trim();
    let (number, scale) = UNITS
        .iter()
        .find_map(|(suffix, scale)| text.strip_suffix(suffix).map(|n| (n, *scale)))
        .unwrap_or((text, 1));
    number.parse::<u64>().ok()?.checked_mul(scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_total_and_available() {
        let text = "MemTotal:       24585652 kB\nMemFree:        20000000 kB\nMemAvailable:   23012345 kB\n";
        assert_eq!(
            parse_meminfo(text),
            Some(NodeMemory {
                total: 24_585_652 * 1024,
                available: 23_012_345 * 1024,
                swap_free: 0,
            })
        );
        let swapping = format!("{text}SwapTotal:       1048576 kB\nSwapFree:         524288 kB\n");
        assert_eq!(
            parse_meminfo(&swapping).map(|m| m.swap_free),
            Some(512 << 20)
        );
        assert_eq!(parse_meminfo("MemTotal: 1 kB\n"), None);
    }

    #[test]
    fn eviction_thresholds_as_the_kubelet_writes_them() {
        assert_eq!("100Mi".parse(), Ok(EvictionThreshold::Bytes(100 << 20)));
        assert_eq!("1Gi".parse(), Ok(EvictionThreshold::Bytes(1 << 30)));
        assert_eq!("500M".parse(), Ok(EvictionThreshold::Bytes(500_000_000)));
        assert_eq!("4096".parse(), Ok(EvictionThreshold::Bytes(4096)));
        assert_eq!("5%".parse(), Ok(EvictionThreshold::Percent(5.0)));
        assert_eq!(EvictionThreshold::Percent(5.0).bytes(1000), 50);
        for bad in ["", "lots", "100Zi", "150%", "-1Mi"] {
            let parsed: Result<EvictionThreshold, _> = bad.parse();
            assert!(parsed.is_err_and(|e| e.contains("100Mi")), "{bad}");
        }
    }
}
