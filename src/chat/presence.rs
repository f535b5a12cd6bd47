//! Presence: who has a live event stream in which conversation. A pure state
//! machine (no timers); the caller runs the 3 s grace timer and asks
//! [`Presence::expire`] afterwards.
//!
//! In cluster mode it also holds who is present on the other nodes, as each
//! node announced (a change as it happens, its whole list every few seconds);
//! a node not heard from for a while is forgotten (it died). Counts and
//! participant lists are then cluster-wide; the local part alone decides
//! what this node announces.

use std::collections::HashMap;

#[derive(Debug)]
struct Entry {
    display_name: String,
    streams: u32,
    /// Bumped on every connect, so a stale grace timer can tell it lost a race.
    generation: u64,
}

#[derive(Debug, Default)]
pub struct Presence {
    rooms: HashMap<String, HashMap<String, Entry>>,
    /// Other nodes' presence (cluster mode), by node id.
    remote: HashMap<String, NodeRooms>,
}

/// One node's present users: conversation → user → display name.
pub type Rooms = HashMap<String, HashMap<String, String>>;

#[derive(Debug, Default)]
struct NodeRooms {
    rooms: Rooms,
    /// When this node was last heard from (epoch ms).
    seen_ms: i64,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Connect {
    /// First stream of a user not present: announce `peer-join`.
    Joined,
    /// Another stream, or a reconnection within the grace period: say nothing.
    Resumed,
}

impl Presence {
    pub fn connect(&mut self, conv: &str, user: &str, name: &str) -> Connect {
        let room = self.rooms.entry(conv.to_string()).or_default();
        match room.get_mut(user) {
            Some(e) => {
                e.streams += 1;
                e.generation += 1;
                e.display_name = name.to_string();
                Connect::Resumed
            }
            None => {
                room.insert(
                    user.to_string(),
                    Entry {
                        display_name: name.to_string(),
                        streams: 1,
                        generation: 0,
                    },
                );
                Connect::Joined
            }
        }
    }

    /// A stream closed. Returns the generation to check after the grace period
    /// when it was the user's last stream.
    pub fn disconnect(&mut self, conv: &str, user: &str) -> Option<u64> {
        let e = self.rooms.get_mut(conv)?.get_mut(user)?;
        e.streams = e.streams.saturating_sub(1);
        (e.streams == 0).then_some(e.generation)
    }

    /// After the grace period: removes the user if still gone and unchanged.
    /// Returns true when `peer-leave` must be announced.
    pub fn expire(&mut self, conv: &str, user: &str, generation: u64) -> bool {
        let Some(room) = self.rooms.get_mut(conv) else {
            return false;
        };
        let gone =
            matches!(room.get(user), Some(e) if e.streams == 0 && e.generation == generation);
        if gone {
            room.remove(user);
            if room.is_empty() {
                self.rooms.remove(conv);
            }
        }
        gone
    }

    /// Immediately forgets a user (explicit leave). Returns whether they were present.
    pub fn remove(&mut self, conv: &str, user: &str) -> bool {
        let Some(room) = self.rooms.get_mut(conv) else {
            return false;
        };
        let was = room.remove(user).is_some();
        if room.is_empty() {
            self.rooms.remove(conv);
        }
        was
    }

    /// A user is active (on this node) while a stream is open or within the grace period.
    pub fn is_active(&self, conv: &str, user: &str) -> bool {
        self.rooms.get(conv).is_some_and(|r| r.contains_key(user))
    }

    /// Is `user` present on another node?
    pub fn is_present_elsewhere(&self, conv: &str, user: &str) -> bool {
        self.remote
            .values()
            .any(|n| n.rooms.get(conv).is_some_and(|r| r.contains_key(user)))
    }

    /// The other nodes where `user` is present in `conv`, sorted.
    pub fn nodes_of(&self, conv: &str, user: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .remote
            .iter()
            .filter(|(_, n)| n.rooms.get(conv).is_some_and(|r| r.contains_key(user)))
            .map(|(id, _)| id.clone())
            .collect();
        v.sort();
        v
    }

    /// Users present in `conv`, on every node.
    pub fn count(&self, conv: &str) -> usize {
        let here = self.rooms.get(conv).into_iter().flat_map(|r| r.keys());
        let elsewhere = self
            .remote
            .values()
            .filter_map(|n| n.rooms.get(conv))
            .flat_map(|r| r.keys());
        let users: std::collections::HashSet<&str> =
            here.chain(elsewhere).map(String::as_str).collect();
        users.len()
    }

    /// `(userId, displayName)` of everyone present, on every node, sorted by name.
    pub fn participants(&self, conv: &str) -> Vec<(String, String)> {
        let mut all: HashMap<&str, &str> = HashMap::new();
        for r in self.remote.values().filter_map(|n| n.rooms.get(conv)) {
            all.extend(r.iter().map(|(u, n)| (u.as_str(), n.as_str())));
        }
        if let Some(r) = self.rooms.get(conv) {
            all.extend(r.iter().map(|(u, e)| (u.as_str(), e.display_name.as_str())));
        }
        let mut v: Vec<(String, String)> = all
            .into_iter()
            .map(|(u, n)| (u.to_string(), n.to_string()))
            .collect();
        v.sort_by(|a, b| {
            a.1.to_lowercase()
                .cmp(&b.1.to_lowercase())
                .then(a.0.cmp(&b.0))
        });
        v
    }

    /// Users present on this node, over all conversations.
    pub fn total_users(&self) -> usize {
        self.rooms.values().map(HashMap::len).sum()
    }

    /// This node's present users, as announced to the others.
    pub fn local_rooms(&self) -> Rooms {
        self.rooms
            .iter()
            .map(|(c, r)| {
                let users = r
                    .iter()
                    .map(|(u, e)| (u.clone(), e.display_name.clone()))
                    .collect();
                (c.clone(), users)
            })
            .collect()
    }

    /// Another node's change: `user` is present there (`Some(name)`) or gone.
    pub fn remote_change(
        &mut self,
        node: &str,
        conv: &str,
        user: &str,
        name: Option<&str>,
        now_ms: i64,
    ) {
        let n = self.remote.entry(node.to_string()).or_default();
        n.seen_ms = now_ms;
        match name {
            Some(name) => {
                n.rooms
                    .entry(conv.to_string())
                    .or_default()
                    .insert(user.to_string(), name.to_string());
            }
            None => {
                if let Some(r) = n.rooms.get_mut(conv) {
                    r.remove(user);
                    if r.is_empty() {
                        n.rooms.remove(conv);
                    }
                }
            }
        }
    }

    /// Another node's whole list, replacing what was known of it; returns
    /// the `(conversation, user, name)` it makes present that were present
    /// nowhere before, sorted: users of a node that was taken for dead and is
    /// heard from again (their `peer-leave` was announced, their return is not
    /// otherwise).
    pub fn remote_snapshot(
        &mut self,
        node: &str,
        rooms: Rooms,
        now_ms: i64,
    ) -> Vec<(String, String, String)> {
        let mut back: Vec<(String, String, String)> = rooms
            .iter()
            .flat_map(|(conv, users)| users.iter().map(move |(user, name)| (conv, user, name)))
            .filter(|(conv, user, _)| {
                !self.is_active(conv, user) && !self.is_present_elsewhere(conv, user)
            })
            .map(|(conv, user, name)| (conv.clone(), user.clone(), name.clone()))
            .collect();
        back.sort();
        self.remote.insert(
            node.to_string(),
            NodeRooms {
                rooms,
                seen_ms: now_ms,
            },
        );
        back
    }

    /// Forgets the nodes not heard from since `cutoff_ms` (they died);
    /// returns the `(conversation, user)` now present nowhere, sorted.
    pub fn remote_expire(&mut self, cutoff_ms: i64) -> Vec<(String, String)> {
        let silent: Vec<String> = self
            .remote
            .iter()
            .filter(|(_, n)| n.seen_ms < cutoff_ms)
            .map(|(id, _)| id.clone())
            .collect();
        let mut lost = Vec::new();
        for id in silent {
            if let Some(n) = self.remote.remove(&id) {
                for (conv, users) in n.rooms {
                    lost.extend(users.into_keys().map(|u| (conv.clone(), u)));
                }
            }
        }
        lost.retain(|(c, u)| !self.is_active(c, u) && !self.is_present_elsewhere(c, u));
        lost.sort();
        lost.dedup();
        lost
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnect_within_grace_is_silent() {
        let mut p = Presence::default();
        assert_eq!(p.connect("c", "u", "Ann"), Connect::Joined);
        let g = p.disconnect("c", "u").unwrap();
        assert_eq!(p.connect("c", "u", "Ann"), Connect::Resumed);
        assert!(
            !p.expire("c", "u", g),
            "stale timer must not announce a leave"
        );
        assert!(p.is_active("c", "u"));
    }

    #[test]
    fn leave_after_grace_is_announced_once() {
        let mut p = Presence::default();
        p.connect("c", "u", "Ann");
        let g = p.disconnect("c", "u").unwrap();
        assert!(p.is_active("c", "u"), "still active during grace");
        assert!(p.expire("c", "u", g));
        assert!(!p.expire("c", "u", g));
        assert_eq!(p.count("c"), 0);
    }

    #[test]
    fn other_nodes_count_until_they_leave_or_go_silent() {
        let mut p = Presence::default();
        p.connect("c", "ann", "Ann");
        p.remote_change("n2", "c", "bob", Some("Bob"), 1_000);
        p.remote_change("n3", "c", "ann", Some("Ann"), 1_000);
        assert_eq!(p.count("c"), 2, "a user on two nodes counts once");
        assert!(p.is_present_elsewhere("c", "bob"));
        assert_eq!(p.nodes_of("c", "bob"), vec!["n2".to_string()]);
        assert_eq!(p.nodes_of("c", "cy"), Vec::<String>::new());
        assert_eq!(
            p.participants("c"),
            vec![("ann".into(), "Ann".into()), ("bob".into(), "Bob".into())]
        );
        p.remote_change("n2", "c", "bob", None, 2_000);
        assert!(!p.is_present_elsewhere("c", "bob"));
        // n3 replaces its list, then goes silent.
        let d = HashMap::from([("cy".to_string(), "Cy".to_string())]);
        let back = p.remote_snapshot("n3", Rooms::from([("d".to_string(), d.clone())]), 3_000);
        assert_eq!(back, vec![("d".into(), "cy".into(), "Cy".into())]);
        assert_eq!(
            p.remote_snapshot("n3", Rooms::from([("d".to_string(), d)]), 3_000),
            vec![],
            "already known"
        );
        assert!(!p.is_present_elsewhere("c", "ann"));
        assert_eq!(p.count("d"), 1);
        p.remote_change("n2", "d", "cy", Some("Cy"), 2_000);
        assert_eq!(p.remote_expire(2_500), vec![], "cy is still on n3");
        assert_eq!(
            p.remote_expire(4_000),
            vec![("d".to_string(), "cy".to_string())]
        );
        assert_eq!(p.count("d"), 0);
        assert_eq!(p.total_users(), 1, "only this node's users");
    }

    #[test]
    fn second_tab_keeps_user_present() {
        let mut p = Presence::default();
        p.connect("c", "u", "Ann");
        p.connect("c", "u", "Ann");
        assert_eq!(p.disconnect("c", "u"), None);
        assert_eq!(p.count("c"), 1);
    }
}
