//! Adaptive charge tracing: the charge path's programs run on every page any process of the
//! node charges (15–18 % of a page-fault-bound workload), while the OOM, reclaim and death
//! hooks cost nothing measurable. So the charge path is attached only while some container
//! needs its detail, and detached when none has for a while.
//!
//! This is the deciding half, on the figures of each round; the collector's event loop acts
//! on what it decides.

use std::collections::HashMap;

use serde::Serialize;

/// Unreclaimable memory at this share of the limit arms the charge path...
const ARM_SHARE: f64 = 0.75;
/// ...and keeps it armed down to this share.
const KEEP_SHARE: f64 = 0.65;
/// A kill forecast within this many `--warn` arms the charge path...
const ARM_WARNS: f64 = 3.0;
/// ...and keeps it armed within this many.
const KEEP_WARNS: f64 = 4.0;
/// Unreclaimable memory growing by this share of the limit in one round (a burst seen by
/// polling) arms the charge path.
const GROWTH_SHARE: f64 = 0.05;
/// Memory pressure (PSI `some` avg10, %) at which the charge path is armed...
const ARM_PSI: f64 = 10.0;
/// ...and kept.
const KEEP_PSI: f64 = 5.0;
/// Seconds the charge path stays attached after the last round that needed it.
pub(crate) const HOLD_S: f64 = 60.0;

/// One watched container's figures of a round.
#[derive(Clone, Debug)]
pub(crate) struct Pressure {
    /// Stable while the container is watched (its slot); the reason names the container
    /// through it, only when there is a reason.
    pub key: u32,
    /// Unreclaimable memory.
    pub unreclaimable: u64,
    /// The limit that applies.
    pub limit: Option<u64>,
    /// Forecast seconds to the OOM kill.
    pub eta_s: Option<f64>,
    /// PSI `some` avg10, %.
    pub psi_some: Option<f64>,
}

/// Why the charge path is attached or not.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Why {
    /// A container's unreclaimable memory is near its limit.
    NearLimit,
    /// A container's OOM kill is forecast within 3 × `--warn`.
    Forecast,
    /// A container grew fast between two rounds.
    Growth,
    /// A container is under memory pressure (PSI).
    Pressure,
    /// The node's eviction is forecast within 3 × `--warn`.
    Node,
    /// Nothing needs it.
    Idle,
    /// Attaching failed.
    AttachFailed,
}

impl Why {
    /// The word in records and metrics.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Why::NearLimit => "near_limit",
            Why::Forecast => "forecast",
            Why::Growth => "growth",
            Why::Pressure => "pressure",
            Why::Node => "node",
            Why::Idle => "idle",
            Why::AttachFailed => "attach_failed",
        }
    }
}

/// What to do with the charge path, and why.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Switch {
    /// Attach (true) or detach.
    pub on: bool,
    /// Why, as a kind.
    pub why: Why,
    /// Why, in words.
    pub reason: String,
}

/// Decides, round by round, whether the charge path should be attached; with hysteresis in
/// level (arm and keep thresholds) and in time ([`HOLD_S`]).
#[derive(Debug)]
pub(crate) struct Arming {
    warn_s: f64,
    armed: bool,
    /// Armed until at least this time (Unix seconds).
    held_until: f64,
    /// Unreclaimable memory at the previous round, by key.
    previous: HashMap<u32, u64>,
}

fn share(bytes: u64, limit: Option<u64>) -> Option<f64> {
    limit.filter(|&l| l > 0).map(|l| bytes as f64 / l as f64)
}

impl Arming {
    /// A policy for a watch warning at `warn_s`, starting `armed` (the programs are attached
    /// at start, to find the mode that works): the first round detaches them unless
    /// something needs them.
    pub(crate) fn new(warn_s: f64, armed: bool) -> Self {
        Self {
            warn_s,
            armed,
            held_until: f64::NEG_INFINITY,
            previous: HashMap::new(),
        }
    }

    /// Whether the charge path is (to be) attached.
    #[cfg(test)]
    pub(crate) fn armed(&self) -> bool {
        self.armed
    }

    /// The attach failed: the charge path stays off, and is tried again when needed.
    pub(crate) fn failed(&mut self) {
        self.armed = false;
    }

    /// Why a container needs the charge path now, at the arm (`keep` false) or keep level.
    fn need(
        &self,
        c: &Pressure,
        growth: Option<u64>,
        keep: bool,
        name: &dyn Fn(u32) -> String,
    ) -> Option<(Why, String)> {
        let (level, warns, psi) = if keep {
            (KEEP_SHARE, KEEP_WARNS, KEEP_PSI)
        } else {
            (ARM_SHARE, ARM_WARNS, ARM_PSI)
        };
        if let Some(s) = share(c.unreclaimable, c.limit).filter(|&s| s >= level) {
            return Some((
                Why::NearLimit,
                format!(
                    "{}: unreclaimable memory at {:.0} % of its limit",
                    name(c.key),
                    s * 100.0
                ),
            ));
        }
        if let Some(eta) = c.eta_s.filter(|&e| e <= warns * self.warn_s) {
            return Some((
                Why::Forecast,
                format!("{}: OOM kill forecast in {eta:.0} s", name(c.key)),
            ));
        }
        if let Some(g) = growth.and_then(|g| share(g, c.limit)) {
            if !keep && g >= GROWTH_SHARE {
                return Some((
                    Why::Growth,
                    format!(
                        "{}: grew by {:.0} % of its limit in one interval",
                        name(c.key),
                        g * 100.0
                    ),
                ));
            }
        }
        if let Some(p) = c.psi_some.filter(|&p| p >= psi) {
            return Some((
                Why::Pressure,
                format!("{}: memory pressure {p:.0} %", name(c.key)),
            ));
        }
        None
    }

    /// Takes one round's figures (every watched container's, and the node's forecast to
    /// eviction) at time `t`; returns the switch to make, if any.
    pub(crate) fn observe(
        &mut self,
        t: f64,
        containers: &[Pressure],
        node_eta_s: Option<f64>,
        name: &dyn Fn(u32) -> String,
    ) -> Option<Switch> {
        let mut arm = None;
        let mut keep = None;
        for c in containers {
            let growth = self
                .previous
                .get(&c.key)
                .map(|&before| c.unreclaimable.saturating_sub(before));
            if arm.is_none() {
                arm = self.need(c, growth, false, name);
            }
            if keep.is_none() {
                keep = self.need(c, growth, true, name);
            }
        }
        self.previous.clear();
        self.previous
            .extend(containers.iter().map(|c| (c.key, c.unreclaimable)));
        if let Some(eta) = node_eta_s {
            if eta <= ARM_WARNS * self.warn_s {
                arm = arm.or_else(|| {
                    Some((Why::Node, format!("node: eviction forecast in {eta:.0} s")))
                });
            }
            if eta <= KEEP_WARNS * self.warn_s {
                keep = keep.or_else(|| {
                    Some((Why::Node, format!("node: eviction forecast in {eta:.0} s")))
                });
            }
        }
        let needed = if self.armed { keep.or(arm) } else { arm };
        match (self.armed, needed) {
            (_, Some((why, reason))) => {
                self.held_until = t + HOLD_S;
                if self.armed {
                    None
                } else {
                    self.armed = true;
                    Some(Switch {
                        on: true,
                        why,
                        reason,
                    })
                }
            }
            (true, None) if t >= self.held_until => {
                self.armed = false;
                Some(Switch {
                    on: false,
                    why: Why::Idle,
                    reason: if self.held_until.is_finite() {
                        format!("no container has needed it for {HOLD_S:.0} s")
                    } else {
                        "no container needs it".to_owned()
                    },
                })
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn name(_: u32) -> String {
        "shop/web/app".into()
    }

    fn container(unreclaimable: u64, eta_s: Option<f64>) -> Pressure {
        Pressure {
            key: 1,
            unreclaimable,
            limit: Some(100 * MIB),
            eta_s,
            psi_some: None,
        }
    }

    #[test]
    fn idle_node_detaches_at_the_first_round_and_stays_off() {
        let mut arming = Arming::new(600.0, true);
        let off = arming.observe(0.0, &[container(10 * MIB, None)], None, &name);
        assert_eq!(
            off.map(|s| s.on),
            Some(false),
            "attached at start, not needed"
        );
        for t in 1..100 {
            assert_eq!(
                arming.observe(f64::from(t), &[container(10 * MIB, None)], None, &name),
                None
            );
        }
        assert!(!arming.armed());
    }

    #[test]
    fn near_the_limit_arms_and_hysteresis_keeps_it() {
        let mut arming = Arming::new(600.0, false);
        assert_eq!(
            arming.observe(0.0, &[container(70 * MIB, None)], None, &name),
            None
        );
        let on = arming
            .observe(1.0, &[container(76 * MIB, None)], None, &name)
            .expect("arms");
        assert!(on.on);
        assert!(on.reason.contains("76 % of its limit"), "{}", on.reason);
        // Between the keep and the arm level: stays armed, however long.
        for t in 2..500 {
            assert_eq!(
                arming.observe(f64::from(t), &[container(66 * MIB, None)], None, &name),
                None
            );
        }
        // Below the keep level: held for HOLD_S more, then off.
        assert_eq!(
            arming.observe(500.0, &[container(50 * MIB, None)], None, &name),
            None
        );
        assert_eq!(
            arming.observe(
                499.0 + HOLD_S - 1.0,
                &[container(50 * MIB, None)],
                None,
                &name
            ),
            None
        );
        let off = arming
            .observe(499.0 + HOLD_S, &[container(50 * MIB, None)], None, &name)
            .expect("disarms after the hold");
        assert!(!off.on);
    }

    #[test]
    fn a_forecast_within_three_warns_arms() {
        let mut arming = Arming::new(60.0, false);
        assert_eq!(
            arming.observe(0.0, &[container(10 * MIB, Some(200.0))], None, &name),
            None,
            "200 s is past 3 × 60 s"
        );
        let on = arming
            .observe(1.0, &[container(10 * MIB, Some(150.0))], None, &name)
            .expect("arms");
        assert!(on.reason.contains("forecast"), "{}", on.reason);
    }

    #[test]
    fn a_burst_between_rounds_arms() {
        let mut arming = Arming::new(600.0, false);
        assert_eq!(
            arming.observe(0.0, &[container(10 * MIB, None)], None, &name),
            None
        );
        assert_eq!(
            arming.observe(1.0, &[container(14 * MIB, None)], None, &name),
            None,
            "4 % of the limit is no burst"
        );
        let on = arming
            .observe(2.0, &[container(20 * MIB, None)], None, &name)
            .expect("6 % of the limit in one interval");
        assert!(on.reason.contains("grew"), "{}", on.reason);
    }

    #[test]
    fn unlimited_containers_arm_only_by_pressure_or_the_node() {
        let mut arming = Arming::new(600.0, false);
        let free = Pressure {
            limit: None,
            ..container(900 * MIB, None)
        };
        assert_eq!(
            arming.observe(0.0, std::slice::from_ref(&free), None, &name),
            None
        );
        assert_eq!(
            arming.observe(1.0, std::slice::from_ref(&free), Some(5000.0), &name),
            None
        );
        let on = arming
            .observe(2.0, std::slice::from_ref(&free), Some(1000.0), &name)
            .expect("node eviction within 3 warns");
        assert!(on.reason.starts_with("node"), "{}", on.reason);
        let mut arming = Arming::new(600.0, false);
        let pressed = Pressure {
            psi_some: Some(12.0),
            ..free
        };
        assert!(arming
            .observe(0.0, &[pressed], None, &name)
            .is_some_and(|s| s.on));
    }
}
