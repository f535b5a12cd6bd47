//! Authentication primitives with no I/O: embed tickets, origin allow-lists,
//! HMAC signing helpers and the admin password check. Persistence of nonces
//! lives in `store`; HTTP mapping lives in `http`.

pub mod origin;
pub mod sign;
pub mod ticket;
pub mod tokens;
