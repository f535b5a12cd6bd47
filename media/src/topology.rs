//! Mesh ↔ relay switching with hysteresis.
//!
//! A mesh of n browsers costs each of them n−1 uploads, so a call moves to the
//! relay when it would exceed `mesh_max` participants, and only returns to the
//! mesh once it has shrunk to `mesh_return` (below `mesh_max`) *and* has stayed
//! in relay mode for `min_dwell_ms`, so joins and leaves around the threshold
//! cannot make it flap.

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
    /// The default policy for a given `mesh_max`: return one below it, after 10 s.
    pub fn with_mesh_max(mesh_max: usize) -> Self {
        Self {
            mesh_max,
            mesh_return: mesh_max.saturating_sub(1).max(1),
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
    fn returns_to_mesh_only_below_threshold_after_dwell() {
        let mut c = call();
        for u in ["a", "b", "c", "d", "e"] {
            c.join(u, 0);
        }
        assert_eq!(c.topology(), Topology::Relay);
        // Back to 4 (= mesh_max) is not enough: no flapping at the threshold.
        assert_eq!(c.leave("e", 20_000), None);
        // At 3 but too soon after the switch: stay.
        let mut d = call();
        for u in ["a", "b", "c", "d", "e"] {
            d.join(u, 0);
        }
        d.leave("e", 1_000);
        assert_eq!(d.leave("d", 2_000), None);
        assert_eq!(d.reevaluate(10_000), Some(Topology::Mesh));
        // And the first call returns once it shrinks to 3.
        assert_eq!(c.leave("d", 20_001), Some(Topology::Mesh));
    }

    #[test]
    fn join_leave_churn_at_the_threshold_does_not_flap() {
        let mut c = call();
        for u in ["a", "b", "c", "d", "e"] {
            c.join(u, 0);
        }
        let mut changes = 0;
        for t in 1..100u64 {
            changes += c.leave("e", t * 100).is_some() as usize;
            changes += c.join("e", t * 100 + 50).is_some() as usize;
        }
        assert_eq!(changes, 0);
    }
}
