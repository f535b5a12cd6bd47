//! Live events between nodes, on plain NATS subjects (not stored): presence,
//! typing, receipts, reactions, signaling, call state. A live event published
//! on one node is sent, encoded once, to `chats3.ev.<conversation>`; every
//! other node hands it to its hub, which delivers it to the conversation's
//! streams there. A targeted event (signaling) goes only to the nodes where
//! its target or its sender is present (`chats3.to.<node>.<conversation>`),
//! or to every node while presence does not know either yet. Messages never travel
//! here: every node announces them as it applies the shared log ([`super::log`]).
//!
//! Call events (`call-join`, `call-leave`, `call-query`) also travel here
//! (`chats3.call.<conversation>`), so every node keeps the same call
//! membership and takes the same mesh/relay decision.
//!
//! The outgoing queue is bounded: when NATS cannot keep up, events are
//! dropped and counted (`chats3_cluster_events_dropped`), as a slow stream's
//! are; nothing persisted is lost.

use std::sync::Arc;

use async_nats::HeaderMap;
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Cluster, keys};
use crate::calls::{CallEvent, Calls};
use crate::chat::presence::Presence;
use crate::events::Hub;
use crate::events::frame::Frame;

/// Live events queued for NATS before new ones are dropped.
const QUEUE: usize = 8192;

struct Outgoing {
    subject: String,
    from: Option<String>,
    to: Option<String>,
    bytes: bytes::Bytes,
}

/// Where a live event goes: the nodes where its target or sender is present
/// (per `presence`; none when both are here only), or every node for a
/// broadcast or an unknown target.
fn subjects(presence: &std::sync::Mutex<Presence>, conv: &str, f: &Frame) -> Vec<String> {
    let Some(to) = &f.to else {
        return vec![keys::event_subject(conv)];
    };
    let p = crate::lock::lock(presence);
    let mut nodes = p.nodes_of(conv, to);
    if nodes.is_empty() && !p.is_active(conv, to) {
        return vec![keys::event_subject(conv)];
    }
    if let Some(from) = &f.from {
        nodes.extend(p.nodes_of(conv, from));
    }
    nodes.sort();
    nodes.dedup();
    nodes
        .iter()
        .map(|n| keys::node_event_subject(n, conv))
        .collect()
}

/// Connects `hub` and `calls` to the other nodes until `shutdown`; targeted
/// events are routed by `presence`.
pub fn start(
    c: Arc<Cluster>,
    hub: Arc<Hub>,
    calls: Arc<Calls>,
    presence: Arc<std::sync::Mutex<Presence>>,
    shutdown: CancellationToken,
) {
    let (tx, rx) = mpsc::channel::<Outgoing>(QUEUE);
    let queue = |tx: mpsc::Sender<Outgoing>,
                 dropped: prometheus_client::metrics::counter::Counter| {
        move |out: Outgoing| {
            if tx.try_send(out).is_err() {
                dropped.inc();
            }
        }
    };
    let events = queue(tx.clone(), c.metrics.events_dropped.clone());
    hub.set_outbound(Box::new(move |conv, f: &Frame| {
        for subject in subjects(&presence, conv, f) {
            events(Outgoing {
                subject,
                from: f.from.clone(),
                to: f.to.clone(),
                bytes: f.bytes.clone(),
            });
        }
    }));
    let call_events = queue(tx, c.metrics.events_dropped.clone());
    calls.set_shared(Box::new(move |conv, user, e: CallEvent| {
        call_events(Outgoing {
            subject: keys::call_subject(conv),
            from: Some(user.to_string()),
            to: None,
            bytes: bytes::Bytes::from_static(e.kind().as_bytes()),
        });
    }));
    tokio::spawn(send(Arc::clone(&c), rx, shutdown.clone()));
    let targeted = keys::node_event_subjects(&c.node);
    tokio::spawn(receive(
        Arc::clone(&c),
        Arc::clone(&hub),
        keys::EVENTS_SUBJECTS.into(),
        shutdown.clone(),
    ));
    tokio::spawn(receive(Arc::clone(&c), hub, targeted, shutdown.clone()));
    tokio::spawn(receive_calls(c, calls, shutdown));
}

async fn send(c: Arc<Cluster>, mut rx: mpsc::Receiver<Outgoing>, shutdown: CancellationToken) {
    loop {
        let out = tokio::select! {
            _ = shutdown.cancelled() => return,
            out = rx.recv() => match out { Some(o) => o, None => return },
        };
        let mut h = HeaderMap::new();
        h.insert("ts", crate::clock::now_ms().to_string().as_str());
        if let Some(from) = &out.from {
            h.insert("from", from.as_str());
        }
        if let Some(to) = &out.to {
            h.insert("to", to.as_str());
        }
        if let Err(e) = c
            .client
            .publish_with_headers(out.subject, h, out.bytes)
            .await
        {
            c.metrics.events_dropped.inc();
            tracing::debug!(error = %e, "cluster: live event not sent");
        }
    }
}

/// Hands every message on `subject` to `handle` until `shutdown`.
async fn each_message(
    c: &Cluster,
    subject: String,
    shutdown: &CancellationToken,
    mut handle: impl FnMut(async_nats::Message),
) {
    let mut sub = match c.client.subscribe(subject.clone()).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, subject, "cluster: cannot subscribe");
            return;
        }
    };
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            m = sub.next() => match m {
                Some(m) => handle(m),
                None => return,
            },
        }
    }
}

fn header(m: &async_nats::Message, name: &str) -> Option<String> {
    m.headers
        .as_ref()
        .and_then(|h| h.get(name))
        .map(|v| v.as_str().to_string())
}

async fn receive(c: Arc<Cluster>, hub: Arc<Hub>, subject: String, shutdown: CancellationToken) {
    each_message(&c, subject, &shutdown, |m| {
        c.metrics.events_received.inc();
        let Some(conv) = keys::conv_of_live_subject(&c.node, m.subject.as_str()) else {
            return;
        };
        if let Some(ts) = header(&m, "ts").and_then(|t| t.parse::<i64>().ok()) {
            let ms = (crate::clock::now_ms() - ts).max(0);
            c.metrics.event_latency.0.observe(ms as f64 / 1000.0);
        }
        let frame = Frame {
            seq: None,
            from: header(&m, "from"),
            to: header(&m, "to"),
            bytes: m.payload.clone(),
            end: 0,
        };
        hub.publish_local(conv, frame);
    })
    .await;
}

async fn receive_calls(c: Arc<Cluster>, calls: Arc<Calls>, shutdown: CancellationToken) {
    each_message(&c, keys::CALL_SUBJECTS.into(), &shutdown, |m| {
        let conv = keys::conv_of_call_subject(m.subject.as_str());
        let user = header(&m, "from");
        let event = std::str::from_utf8(&m.payload)
            .ok()
            .and_then(CallEvent::from_kind);
        if let (Some(conv), Some(user), Some(event)) = (conv, user, event) {
            calls.remote_call_event(conv, &user, event);
        }
    })
    .await;
}
