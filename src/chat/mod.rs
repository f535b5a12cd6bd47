//! Chat rules with no I/O: sanitizing, validation of incoming messages and
//! names, join codes, the join decision, the reaction rule, and the presence
//! state machine.
//! The HTTP layer combines these with the store and the event hub.

pub mod join;
pub mod presence;
pub mod reactions;
pub mod sanitize;
pub mod validate;
