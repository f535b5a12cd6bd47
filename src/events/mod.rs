//! Live events: the per-conversation hub that fans out pre-serialized SSE
//! frames, the frame encoding, and the subscriber stream with resume from the
//! store. Knows nothing of HTTP requests or sessions beyond a user id.

pub mod client;
pub mod cursor;
pub mod frame;
pub mod hub;
pub mod kind;
pub mod session_end;
pub mod stream;

pub use frame::Frame;
pub use hub::Hub;
pub use session_end::{EndReason, SessionEnds};
