//! Command-line tools besides `serve`: minting embed tickets for testing, and
//! operator commands that talk to a running server over its admin API.

pub mod admin;
pub mod restore;
pub mod ticket;
