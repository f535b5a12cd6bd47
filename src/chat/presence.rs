//! Presence: who has a live event stream in which conversation. A pure state
//! machine (no timers); the caller runs the 3 s grace timer and asks
//! [`Presence::expire`] afterwards.

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

    /// A user is active while a stream is open or within the grace period.
    pub fn is_active(&self, conv: &str, user: &str) -> bool {
        self.rooms.get(conv).is_some_and(|r| r.contains_key(user))
    }

    pub fn count(&self, conv: &str) -> usize {
        self.rooms.get(conv).map_or(0, HashMap::len)
    }

    /// `(userId, displayName)` of everyone present, sorted by name.
    pub fn participants(&self, conv: &str) -> Vec<(String, String)> {
        let mut v: Vec<_> = self
            .rooms
            .get(conv)
            .map(|r| {
                r.iter()
                    .map(|(u, e)| (u.clone(), e.display_name.clone()))
                    .collect()
            })
            .unwrap_or_default();
        v.sort_by(|a, b| {
            a.1.to_lowercase()
                .cmp(&b.1.to_lowercase())
                .then(a.0.cmp(&b.0))
        });
        v
    }

    pub fn total_users(&self) -> usize {
        self.rooms.values().map(HashMap::len).sum()
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
    fn second_tab_keeps_user_present() {
        let mut p = Presence::default();
        p.connect("c", "u", "Ann");
        p.connect("c", "u", "Ann");
        assert_eq!(p.disconnect("c", "u"), None);
        assert_eq!(p.count("c"), 1);
    }
}
