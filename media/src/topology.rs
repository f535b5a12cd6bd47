//! Mesh ↔ relay switching with hysteresis.
//!
//! A mesh of n browsers costs each of them n−1 uploads, so a call moves to the
//! relay as soon as it would exceed `mesh_max` participants, and only returns to
//! the mesh once it has shrunk to `mesh_return` (by default `mesh_max`) *and*
//! has stayed in relay mode for `min_dwell_ms`, so joins and leaves around the
//! threshold switch at most once per dwell period. Call
//! [`CallTopology::reevaluate`] periodically so a dwell period can end without
//! a further join or leave.

use std::collections::BTreeSet;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topology {
    Mesh,
    Relay,
}

#[derive(Debug, Clone, Copy)]
pub struct TopologyPolicy {
    /// Largest call that runs as a mesh.
    pub mesh_max: usize,
    /// Size at or below which a relay call may return to mesh.
    pub mesh_return: usize,
    /// Minimum time in relay mode before returning to mesh.
    pub min_dwell_ms: u64,
}

impl TopologyPolicy {
    /// The default policy for a given `mesh_max`: back to mesh at `mesh_max`
    /// participants or fewer, after 10 s in relay mode.
    pub fn with_mesh_max(mesh_max: usize) -> Self {
        Self {
            mesh_max,
            mesh_return: mesh_max.max(1),
            min_dwell_ms: 10_000,
        }
    }
}

/// One call's participants and topology.
#[derive(Debug, Clone)]
pub struct CallTopology {
    policy: TopologyPolicy,
    participants: BTreeSet<String>,
    topology: Topology,
    since_ms: u64,
}

impl CallTopology {
    pub fn new(policy: TopologyPolicy, now_ms: u64) -> Self {
        Self {
            policy,
            participants: BTreeSet::new(),
            topology: Topology::Mesh,
            since_ms: now_ms,
        }
    }

    pub fn topology(&self) -> Topology {
        self.topology
    }

    pub fn participants(&self) -> impl Iterator<Item = &str> {
        self.participants.iter().map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.participants.len()
    }

    pub fn is_empty(&self) -> bool {
        self.participants.is_empty()
    }

    /// Adds a participant; returns the new topology when it changed.
    pub fn join(&mut self, user: &str, now_ms: u64) -> Option<Topology> {
        self.participants.insert(user.to_string());
        self.reevaluate(now_ms)
    }

    /// Removes a participant; returns the new topology when it changed.
    pub fn leave(&mut self, user: &str, now_ms: u64) -> Option<Topology> {
        self.participants.remove(user);
        self.reevaluate(now_ms)
    }

    /// Re-checks the rules (call periodically so a dwell period can end).
    pub fn reevaluate(&mut self, now_ms: u64) -> Option<Topology> {
        let n = self.participants.len();
        let next = match self.topology {
            Topology::Mesh if n > self.policy.mesh_max => Topology::Relay,
            Topology::Relay
                if n <= self.policy.mesh_return
                    && now_ms.saturating_sub(self.since_ms) >= self.policy.min_dwell_ms =>
            {
                Topology::Mesh
            }
            t => t,
        };
        (next != self.topology).then(|| {
            self.topology = next;
            self.since_ms = now_ms;
            next
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call() -> CallTopology {
        CallTopology::new(TopologyPolicy::with_mesh_max(4), 0)
    }

    #[test]
    fn fifth_participant_switches_to_relay() {
        let mut c = call();
        for u in ["a", "b", "c", "d"] {
            assert_eq!(c.join(u, 1), None);
        }
        assert_eq!(c.join("e", 2), Some(Topology::Relay));
        assert_eq!(c.join("f", 3), None);
    }

    #[test]
    fn returns_to_mesh_only_at_threshold_after_dwell() {
        let mut c = call();
        for u in ["a", "b", "c", "d", "e", "f"] {
            c.join(u, 0);
        }
        assert_eq!(c.topology(), Topology::Relay);
        // Still above mesh_max: stay, however long it has been.
        assert_eq!(c.leave("f", 20_000), None);
        // Back to mesh_max but too soon after the switch: stay until the dwell ends.
        let mut d = call();
        for u in ["a", "b", "c", "d", "e", "f"] {
            d.join(u, 0);
        }
        d.leave("f", 1_000);
        assert_eq!(d.leave("e", 2_000), None);
        assert_eq!(d.reevaluate(9_999), None);
        assert_eq!(d.reevaluate(10_000), Some(Topology::Mesh));
        assert_eq!(d.reevaluate(10_001), None);
        // And the first call returns once it shrinks to mesh_max.
        assert_eq!(c.leave("e", 20_001), Some(Topology::Mesh));
    }

    #[test]
    fn join_leave_churn_at_the_threshold_does_not_flap() {
        let mut c = call();
        for u in ["a", "b", "c", "d", "e"] {
            c.join(u, 0);
        }
        // 10 s of churn across the threshold: no switch inside the dwell period.
        let mut changes = 0;
        for t in 1..100u64 {
            changes += c.leave("e", t * 100).is_some() as usize;
            changes += c.join("e", t * 100 + 50).is_some() as usize;
        }
        assert_eq!(changes, 0);
        // After it, at most one return to mesh and one switch back per dwell period.
        let mut changes = 0;
        for t in 100..200u64 {
            changes += c.leave("e", t * 100).is_some() as usize;
            changes += c.join("e", t * 100 + 50).is_some() as usize;
        }
        assert_eq!(changes, 2);
    }
}
