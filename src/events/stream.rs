//! One subscriber's event stream: the opening frames, an exact replay from the
//! store after the client's cursor, then live frames, heartbeats, and lag
//! recovery. Persisted frames are delivered at most once and in order: the
//! stream subscribes *before* reading the store and skips live frames whose
//! sequence number it has already delivered.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use async_broadcast::RecvError;
use bytes::Bytes;
use futures_util::Stream;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use super::session_end::EndWatch;
use super::{Hub, hub::message_frame, kind};
use crate::model::Message;
use crate::store::{Store, StoreError};

/// Messages read from the store per replay step, at most.
const REPLAY_CHUNK: usize = 256;
/// Bytes of stored messages read per replay step, at most (beyond one message):
/// what a client that asks for history and never reads makes its stream hold.
const REPLAY_BYTES: usize = 64 * 1024;

#[derive(Clone)]
pub struct StreamCtx {
    pub store: Arc<Store>,
    pub hub: Arc<Hub>,
    pub shutdown: CancellationToken,
    pub heartbeat: Duration,
    /// A stream further behind its room than this many bytes is closed.
    pub queue_bytes: u64,
    /// Streams closed by the server, by reason.
    pub closed: Arc<crate::metrics::Trips>,
}

/// What a new stream needs to know about its subscriber.
pub struct Subscriber {
    pub conversation_id: String,
    pub user_id: String,
    /// Last event id the client saw (`Last-Event-ID` or `?cursor=`).
    pub cursor: Option<u64>,
    /// Frames sent first (`connected`, `room-state`).
    pub opening: Vec<Bytes>,
    /// Resolves when the subscriber's session ends.
    pub ended: EndWatch,
    /// Dropped when the stream ends (presence bookkeeping).
    pub guard: Box<dyn Send + Sync>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SenderOnly<'a> {
    #[serde(borrow)]
    sender_user_id: std::borrow::Cow<'a, str>,
}

/// Frames of stored messages after `after`, excluding the subscriber's own.
fn replay_chunk(
    store: &Store,
    conv: &str,
    user: &str,
    after: u64,
) -> Result<(Vec<Bytes>, Option<u64>), StoreError> {
    let rows = store.after_within(conv, after, REPLAY_CHUNK, REPLAY_BYTES)?;
    let last = rows.last().map(|(s, _)| *s);
    let mut out = Vec::with_capacity(rows.len());
    for (_, json) in rows {
        let own =
            serde_json::from_slice::<SenderOnly>(&json).is_ok_and(|s| s.sender_user_id == user);
        if own {
            continue;
        }
        let msg: Message =
            serde_json::from_slice(&json).map_err(|_| StoreError::Corrupt("message record"))?;
        out.push(message_frame(&msg, &json).bytes);
    }
    Ok((out, last))
}

pub fn sse_stream(
    ctx: StreamCtx,
    sub: Subscriber,
) -> impl Stream<Item = Result<Bytes, Infallible>> {
    let mut room = ctx.hub.subscribe(&sub.conversation_id);
    async_stream::stream! {
        let Subscriber { conversation_id: conv, user_id: user, cursor, opening, mut ended, guard } = sub;
        let _guard = guard;
        yield Ok(Bytes::from_static(super::frame::RETRY));
        for b in opening {
            yield Ok(b);
        }
        // Highest persisted sequence number this client has (or need not) see.
        let mut last = match cursor {
            Some(c) => c,
            None => ctx.store.last_seq(&conv).unwrap_or(0),
        };
        let mut need_replay = cursor.is_some();
        let mut heartbeat = tokio::time::interval_at(tokio::time::Instant::now() + ctx.heartbeat, ctx.heartbeat);
        // Made once, not per frame: every stream waits on the same shutdown
        // token, and registering with it on each turn contends across streams.
        let shutdown = ctx.shutdown.clone().cancelled_owned();
        tokio::pin!(shutdown);
        let session_ended = ended.ended();
        tokio::pin!(session_ended);
        'outer: loop {
            while need_replay {
                match replay_chunk(&ctx.store, &conv, &user, last) {
                    Ok((frames, Some(upto))) => {
                        for f in frames {
                            yield Ok(f);
                        }
                        last = upto;
                    }
                    Ok((_, None)) => need_replay = false,
                    Err(e) => {
                        tracing::error!(error = %e, conv = %conv, "replay failed; closing stream");
                        break 'outer;
                    }
                }
            }
            tokio::select! {
                biased;
                _ = &mut shutdown => break,
                reason = &mut session_ended => {
                    ctx.closed.inc(reason.as_str());
                    let data = serde_json::json!({ "reason": reason.as_str() });
                    yield Ok(super::frame::Event { kind: kind::SESSION_ENDED, ..Default::default() }.value(&data).bytes);
                    break;
                }
                r = room.rx.recv_direct() => match r {
                    Ok(frame) => {
                        if room.backlog(&frame) > ctx.queue_bytes {
                            ctx.closed.trip("slow-consumer", "event stream closed: its client reads too slowly");
                            let data = serde_json::json!({ "reason": "slow-consumer" });
                            yield Ok(super::frame::Event { kind: kind::STREAM_CLOSED, ..Default::default() }.value(&data).bytes);
                            break;
                        }
                        if let Some(seq) = frame.seq {
                            if seq <= last {
                                continue;
                            }
                            last = seq;
                        }
                        if frame.is_for(&user) {
                            yield Ok(frame.bytes.clone());
                        }
                    }
                    Err(RecvError::Overflowed(n)) => {
                        tracing::debug!(conv = %conv, skipped = n, "subscriber lagged; catching up from the store");
                        ctx.hub.note_lag();
                        need_replay = true;
                    }
                    Err(RecvError::Closed) => break,
                },
                _ = heartbeat.tick() => yield Ok(Bytes::from_static(super::frame::HEARTBEAT)),
            }
        }
        drop(room);
        ctx.hub.release(&conv);
    }
}
