//! Which nodes' relays share a call, found through NATS: every node
//! announces its trunk address and the relay rooms it serves
//! (`chats3.trunk.rooms`) when they change and every [`ANNOUNCE_EVERY`];
//! a node silent for [`SILENT_AFTER`] is forgotten. The relay is told, per
//! room, the other nodes serving it ([`chats3_media::Relay::set_room_peers`])
//! and dials or drops its trunks to them. The peer choice is pure
//! ([`Directory`]).

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chats3_media::Relay;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::Cluster;

const SUBJECT: &str = "chats3.trunk.rooms";
/// How often the local rooms are compared with the last announcement.
const CHECK_EVERY: Duration = Duration::from_millis(500);
/// How often a node announces itself even when nothing changed.
const ANNOUNCE_EVERY: Duration = Duration::from_secs(3);
/// A node silent this long is taken for dead.
const SILENT_AFTER: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Rooms {
    node: String,
    addr: SocketAddr,
    rooms: BTreeSet<String>,
}

/// The other nodes' trunk addresses and rooms, as last heard.
#[derive(Debug, Default)]
struct Directory {
    nodes: HashMap<String, (Rooms, Instant)>,
}

impl Directory {
    fn heard(&mut self, r: Rooms, now: Instant) {
        self.nodes.insert(r.node.clone(), (r, now));
    }

    fn expire(&mut self, now: Instant) {
        self.nodes
            .retain(|_, (_, at)| now.duration_since(*at) < SILENT_AFTER);
    }

    /// The nodes serving `room`, besides `me`.
    fn peers(&self, me: &str, room: &str) -> HashMap<String, SocketAddr> {
        self.nodes
            .values()
            .filter(|(r, _)| r.node != me && r.rooms.contains(room))
            .map(|(r, _)| (r.node.clone(), r.addr))
            .collect()
    }
}

/// Keeps the relay's room peers up to date until `shutdown`.
pub async fn run(c: Arc<Cluster>, relay: Relay, addr: SocketAddr, shutdown: CancellationToken) {
    let mut incoming = match c.client.subscribe(SUBJECT).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cluster: cannot subscribe to trunk rooms");
            return;
        }
    };
    let mut dir = Directory::default();
    // What the relay was last told, per room.
    let mut told: HashMap<String, HashMap<String, SocketAddr>> = HashMap::new();
    let mut announced: Option<(BTreeSet<String>, Instant)> = None;
    let mut tick = tokio::time::interval(CHECK_EVERY);
    loop {
        let ticked = tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => true,
            m = incoming.next() => {
                let Some(m) = m else { return };
                if let Ok(r) = serde_json::from_slice::<Rooms>(&m.payload)
                    && r.node != c.node
                {
                    dir.heard(r, Instant::now());
                }
                false
            }
        };
        let here: BTreeSet<String> = relay.rooms().into_iter().collect();
        if ticked {
            let now = Instant::now();
            let due = announced.as_ref().is_none_or(|(last, at)| {
                *last != here || now.duration_since(*at) >= ANNOUNCE_EVERY
            });
            if due {
                let me = Rooms {
                    node: c.node.clone(),
                    addr,
                    rooms: here.clone(),
                };
                if let Ok(body) = serde_json::to_vec(&me) {
                    let _ = c.client.publish(SUBJECT, body.into()).await;
                }
                announced = Some((here.clone(), now));
            }
            dir.expire(now);
        }
        // Rooms served here, and rooms told before (their peers may be gone).
        let told_rooms: Vec<String> = told.keys().cloned().collect();
        for room in here.into_iter().chain(told_rooms) {
            let peers = dir.peers(&c.node, &room);
            if told.get(&room) != Some(&peers) {
                relay.set_room_peers(&room, peers.clone());
                if peers.is_empty() {
                    told.remove(&room);
                } else {
                    told.insert(room, peers);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rooms(node: &str, port: u16, rooms: &[&str]) -> Rooms {
        Rooms {
            node: node.into(),
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            rooms: rooms.iter().map(|r| r.to_string()).collect(),
        }
    }

    #[test]
    fn peers_are_the_other_live_nodes_of_a_room() {
        let t0 = Instant::now();
        let mut d = Directory::default();
        d.heard(rooms("a", 1, &["r1", "r2"]), t0);
        d.heard(rooms("b", 2, &["r1"]), t0);
        d.heard(rooms("c", 3, &["r3"]), t0 + Duration::from_secs(5));
        let p = d.peers("a", "r1");
        assert_eq!(p.len(), 1);
        assert_eq!(p["b"].port(), 2);
        assert!(d.peers("b", "r2").contains_key("a"));
        assert!(d.peers("a", "r9").is_empty());
        // A node heard again replaces its rooms.
        d.heard(rooms("b", 2, &[]), t0);
        assert!(d.peers("a", "r1").is_empty());
        // Silent nodes are forgotten.
        d.expire(t0 + SILENT_AFTER);
        assert_eq!(d.nodes.len(), 1);
        assert!(d.nodes.contains_key("c"));
    }
}
