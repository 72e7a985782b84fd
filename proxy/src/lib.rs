//! The reference TCP proxy.
//!
//! `tcpproxy DEST_HOST DEST_PORT LISTEN_PORT` accepts connections on LISTEN_PORT and forwards each
//! one to DEST_HOST:DEST_PORT over a connection of its own, meeting every rule of the tprox
//! contract (`shared/CONFORMANCE.md`):
//!
//! * [`relay`] moves bytes for one connection pair: a bounded buffer per direction (backpressure,
//!   R4), half-close after flushing (R5), the stall timeout (R7), and abortive close on a reset or a
//!   failed write (R6).
//! * [`server`] accepts, dials the destination, and keeps serving whatever a single pair does
//!   (R2, R8, R11).
//! * [`cli`] turns the lab-compatible command line into a [`Config`], and bad input into one clear
//!   line on stderr.

pub mod cli;
pub mod relay;
pub mod server;

use std::time::Duration;

/// Everything the proxy needs to know to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Host name or address of the destination; resolved again for every connection, so a
    /// destination that moves is followed.
    pub dest_host: String,
    pub dest_port: u16,
    /// Address to listen on. Loopback by default: a test proxy should not be reachable from
    /// other machines unless asked to be.
    pub listen_host: String,
    pub listen_port: u16,
    /// How long a direction may hold data without writing any of it before the pair is aborted
    /// (R7). Also bounds how long dialing the destination may take (R8).
    pub stall_timeout: Duration,
    /// Upper bound on pairs served at once; further clients wait in the listen backlog rather
    /// than exhausting descriptors.
    pub max_connections: usize,
    /// Print one line per connection event on stderr.
    pub verbose: bool,
}

/// Bytes buffered per direction of a pair. Together with the kernel's socket buffers this is all
/// the proxy ever holds for one connection, whatever the peers do (R4).
pub const BUFFER_SIZE: usize = 64 * 1024;
