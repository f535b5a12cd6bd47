//! Command-line tools besides `serve`: minting embed tickets for testing, and
//! operator commands that talk to a running server over its admin API, and
//! a development set of cluster trunk certificates.

pub mod admin;
pub mod cluster_cert;
pub mod restore;
pub mod ticket;
