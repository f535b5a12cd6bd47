//! Presence across nodes, on plain NATS subjects: each node announces a
//! change as it happens (`chats3.presence.change`) and its whole list every
//! [`SNAPSHOT_EVERY`] (`chats3.presence.all`); a node not heard from for
//! [`SILENT_AFTER`] is forgotten, and its users, present nowhere else, are
//! announced as gone. The state itself is [`Presence`] (pure, in `chat/`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::{Cluster, Ended};
use crate::chat::presence::{Presence, Rooms};

const CHANGE: &str = "chats3.presence.change";
const ALL: &str = "chats3.presence.all";
/// How often each node announces its whole list.
const SNAPSHOT_EVERY: Duration = Duration::from_secs(3);
/// A node silent this long is taken for dead.
const SILENT_AFTER: Duration = Duration::from_secs(10);

#[derive(Serialize, Deserialize)]
struct Change {
    node: String,
    conv: String,
    user: String,
    /// Display name while present; `None`: gone.
    name: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct All {
    node: String,
    rooms: Rooms,
}

/// Changes queued for NATS before new ones are dropped (and counted; the
/// next snapshot carries them).
const QUEUE: usize = 4096;

/// Tells the other nodes that `user` is present here (`Some(name)`) or gone.
pub fn announce(c: &Cluster, conv: &str, user: &str, name: Option<&str>) {
    let change = Change {
        node: c.node.clone(),
        conv: conv.to_string(),
        user: user.to_string(),
        name: name.map(str::to_string),
    };
    let Ok(body) = serde_json::to_vec(&change) else {
        return;
    };
    if c.presence_out
        .get()
        .is_some_and(|tx| tx.try_send(body).is_err())
    {
        c.metrics.events_dropped.inc();
    }
}

/// Keeps `presence` up to date with the other nodes until `shutdown`.
pub async fn run(
    c: Arc<Cluster>,
    presence: Arc<Mutex<Presence>>,
    gone: Arc<dyn Ended>,
    shutdown: CancellationToken,
) {
    let (changes, all) = match (
        c.client.subscribe(CHANGE).await,
        c.client.subscribe(ALL).await,
    ) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => {
            tracing::error!(error = %e, "cluster: cannot subscribe to presence");
            return;
        }
    };
    let mut incoming = futures_util::stream::select(changes, all);
    let (tx, mut outgoing) = tokio::sync::mpsc::channel::<Vec<u8>>(QUEUE);
    let _ = c.presence_out.set(tx);
    let mut tick = tokio::time::interval(SNAPSHOT_EVERY);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            Some(body) = outgoing.recv() => {
                let _ = c.client.publish(CHANGE, body.into()).await;
            }
            _ = tick.tick() => {
                let now = crate::clock::now_ms();
                let (rooms, lost) = {
                    let mut p = crate::lock::lock(&presence);
                    let lost = p.remote_expire(now - SILENT_AFTER.as_millis() as i64);
                    (p.local_rooms(), lost)
                };
                for (conv, user) in lost {
                    gone.left(&conv, &user);
                }
                let all = All { node: c.node.clone(), rooms };
                if let Ok(body) = serde_json::to_vec(&all) {
                    let _ = c.client.publish(ALL, body.into()).await;
                }
            }
            m = incoming.next() => {
                let Some(m) = m else { return };
                let now = crate::clock::now_ms();
                // Decoded before the lock every join and stream waits on.
                if m.subject.as_str() == CHANGE {
                    if let Ok(ch) = serde_json::from_slice::<Change>(&m.payload) {
                        crate::lock::lock(&presence)
                            .remote_change(&ch.node, &ch.conv, &ch.user, ch.name.as_deref(), now);
                    }
                } else if let Ok(all) = serde_json::from_slice::<All>(&m.payload) {
                    let back = crate::lock::lock(&presence).remote_snapshot(&all.node, all.rooms, now);
                    for (conv, user, name) in back {
                        gone.back(&conv, &user, &name);
                    }
                }
            }
        }
    }
}
