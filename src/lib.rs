//! chats3 — a self-hosted, embeddable real-time chat service.
//!
//! Module map (dependencies point down; the layering rule is in `ARCHITECTURE.md`
//! and checked by `scripts/layering.sh`):
//! - [`app`]: `App::build` (wiring, listeners, TLS) and `App::run` (background tasks, serve, drain)
//! - [`http`]: router, envelope, `ApiError` mapping, extractors, middleware, routes
//! - [`state`]: `AppState`, what requests share, and the operations spanning its parts
//! - [`auth`]: embed tickets, origin patterns, HMAC helpers (pure)
//! - [`chat`]: sanitizing, validation, join rules, presence (pure)
//! - [`events`]: the per-conversation hub, SSE frames, subscriber streams with resume
//! - [`attachments`]: upload type checks, filenames, signed URLs, blob files
//! - [`sync`]: S3 uploader (outbox → bucket) and `restore --from-s3`
//! - [`store`]: sled trees, key encoding, group commit
//! - [`cluster`]: cluster mode on NATS JetStream (shared log, shared records, live events between
//!   nodes, the S3 sync lease); off unless `NATS_URL` is set
//! - [`metrics`]: Prometheus registry, counters and gauges, `/metrics` rendering
//! - [`serve`], [`conn_io`], [`tls`]: the accept loop (HTTP/1.1 + HTTP/2, connection cap, idle and
//!   write-stall deadlines, optional rustls with SIGHUP reload)
//! - [`webhooks`]: signed event deliveries to integrators from a durable queue
//! - [`ui`]: sailfish page templates
//! - [`calls`]: call membership and topology per conversation (`call-mode`), the app side of `chats3_media`
//! - [`cli`]: `ticket`, `admin …`, `backup`, `restore --from` (operator tools)
//! - [`config`], [`model`], [`clock`], [`lock`]: configuration, domain records, time helpers, the mutex helper

#![forbid(unsafe_code)]

pub mod app;
pub mod attachments;
pub mod auth;
pub mod calls;
pub mod chat;
pub mod cli;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod conn_io;
pub mod events;
#[cfg(test)]
mod fuzzing;
pub mod http;
pub mod lock;
pub mod metrics;
pub mod model;
pub mod per_key;
pub mod serve;
pub mod state;
pub mod store;
pub mod sync;
pub mod tls;
pub mod ui;
pub mod webhooks;

pub use app::App;
pub use config::Config;
pub use state::AppState;
