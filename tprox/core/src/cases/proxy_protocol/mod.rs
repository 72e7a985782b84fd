//! The PROXY protocol cases: a proxy that sends the header to the destination (`send.rs`,
//! R14), and one that accepts it from its clients (`accept.rs`, R15). A proxy may do both;
//! each side's cases run where the run's mode names that side.

mod accept;
mod send;

pub use accept::{HEADER_TIMEOUT, LOCAL, NOT_FORWARDED, REFUSALS, SPLIT_HEADER};
pub use send::{ADDRESSES, HEADER};
