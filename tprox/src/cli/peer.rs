//! `tprox peer`: one side of a connection, by hand (the work is in [`crate::peer`]).

use super::*;

const PEER_EXAMPLES: &str = "\
Examples, to debug a proxy that forwards :8080 to :9000:
  tprox peer echo --listen 9000                  the destination echoes (IPv4 and IPv6 loopback)
  tprox peer source --connect 127.0.0.1:8080x10 --bytes 1000000
                                                 ten clients send 1 MB each, then shut down
  tprox peer greet --listen 9000 --greeting 'HELLO' a destination that speaks first
  tprox peer sink --listen 9000 --stop-reading-after 100000
                                                 stops reading: does the proxy stop too?
  tprox peer refuse --listen 9000                connections to 9000 are refused
  tprox peer reset --listen 9000 --reset-after 10   resets each connection after 10 bytes
  tprox peer echo --udp --listen 9000            a UDP destination that echoes each datagram
  tprox peer hub --listen 9000                   what one connected peer sends goes to all others
  tprox peer channels --listen 8000 --connect 127.0.0.1:9000
                                                 each peer on 8000 gets a partner connection to
                                                 9000, dialled again for --redial until it is up
  tprox peer source --udp --connect 127.0.0.1:8080x5 --bytes 100000
                                                 five UDP clients send 100 kB each in datagrams

Each connection's bytes received and sent are printed when it ends, the totals when the peer
stops. A listening peer runs until Ctrl-C; a connecting one until all its connections end.
With --udp each sender is a connection of its own; a connecting UDP peer speaks first (source
its bytes, greet its greeting, echo and sink an empty datagram) and ends after --idle with
nothing received.";

/// Play one side of a connection by hand.
#[derive(Debug, clap::Args)]
#[command(after_help = PEER_EXAMPLES)]
pub(super) struct PeerArgs {
    /// What to do with each connection.
    #[arg(value_enum)]
    mode: crate::peer::Mode,

    /// Listen on [ADDR:]PORT (a bare port: IPv4 and IPv6 loopback).
    #[arg(long, value_name = "[ADDR:]PORT", required_unless_present = "connect")]
    listen: Option<String>,

    /// Connect to HOST:PORT, N times at once with xN (127.0.0.1:8080x10); channels: where each
    /// inbound peer's partner is dialled (with --listen).
    #[arg(long, value_name = "HOST:PORT[xN]", value_parser = crate::peer::parse_connect)]
    connect: Option<(String, usize)>,

    /// Source: how many bytes each connection sends.
    #[arg(long, value_name = "N", default_value_t = 1 << 20)]
    bytes: u64,

    /// Source: bytes per second per connection [default: as fast as possible].
    #[arg(long, value_name = "BYTES_PER_SEC", value_parser = clap::value_parser!(u64).range(1..))]
    rate: Option<u64>,

    /// Source: send this byte (0-255) over and over instead of random bytes.
    #[arg(long, value_name = "BYTE")]
    fixed: Option<u8>,

    /// Greet: what to send first.
    #[arg(long, value_name = "TEXT", default_value = "hello from tprox peer\r\n")]
    greeting: String,

    /// Stop reading after N bytes received, and stay connected.
    #[arg(long, value_name = "N")]
    stop_reading_after: Option<u64>,

    /// Close the connection after N bytes received.
    #[arg(long, value_name = "N")]
    close_after: Option<u64>,

    /// Reset the connection after N bytes received (reset mode: 0 by default).
    #[arg(long, value_name = "N")]
    reset_after: Option<u64>,

    /// Datagrams instead of connections: listen or connect with UDP sockets (echo, sink,
    /// source, greet; each sender is a connection of its own).
    #[arg(long)]
    udp: bool,

    /// UDP, connecting: end once nothing has arrived for SECS; UDP channels: end a channel
    /// once nothing has gone either way for SECS.
    #[arg(long, value_name = "SECS", default_value_t = 2.0, requires = "udp")]
    idle: f64,

    /// Channels: dial an outbound peer that cannot be reached again, with a growing pause
    /// (50 ms doubling to 1 s), for SECS before resetting its inbound partner.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    redial: f64,
}

pub(super) fn run(args: PeerArgs) -> error::Result {
    use crate::peer::{Mode, PeerOptions, Place, Totals};
    use std::sync::Arc;
    let mut to = None;
    let place =
        match (args.listen, args.connect) {
            (Some(text), connect) => match crate::peer::parse_listen(&text) {
                Ok(addrs) if args.mode == Mode::Channels => match connect {
                    Some((target, 1)) => {
                        to = Some(target);
                        Place::Listen(addrs)
                    }
                    Some((target, _)) => {
                        return Err(Error::Usage(format!(
                            "channels pairs each inbound peer with one outbound peer: give \
                         --connect {target} without xN"
                        )))
                    }
                    None => return Err(Error::Usage(
                        "channels needs both sides: tprox peer channels --listen PORT --connect \
                         HOST:PORT pairs each peer that comes in on PORT with one it connects to \
                         HOST:PORT"
                            .into(),
                    )),
                },
                Ok(_) if connect.is_some() => {
                    return Err(Error::Usage(
                        "give --listen or --connect, not both (only channels takes both)".into(),
                    ))
                }
                Ok(addrs) => Place::Listen(addrs),
                Err(message) => return Err(Error::Usage(message)),
            },
            (None, Some((target, count))) => Place::Connect(target, count),
            (None, None) => {
                return Err(Error::Usage(
                    "give --listen [ADDR:]PORT or --connect HOST:PORT[xN]".into(),
                ))
            }
        };
    if args.udp && matches!(args.mode, Mode::Refuse | Mode::Reset) {
        return Err(Error::Usage(
            "refuse and reset are for TCP: UDP has no connection to refuse or reset (a UDP port \
             nobody binds answers ICMP port unreachable by itself)"
                .into(),
        ));
    }
    if args.udp && args.reset_after.is_some() {
        return Err(Error::Usage(
            "--reset-after is for TCP: UDP has no connection to reset".into(),
        ));
    }
    if !(args.idle > 0.0 && args.idle <= 3600.0) {
        return Err(Error::Usage(format!(
            "--idle {}: give seconds between 0 and 3600",
            args.idle
        )));
    }
    if args.mode == Mode::Refuse && matches!(place, Place::Connect(..)) {
        return Err(Error::Usage(
            "refuse is for a listening peer: tprox peer refuse --listen PORT".into(),
        ));
    }
    if args.mode == Mode::Channels && matches!(place, Place::Connect(..)) {
        return Err(Error::Usage(
            "channels needs both sides: tprox peer channels --listen PORT --connect HOST:PORT"
                .into(),
        ));
    }
    if !(args.redial >= 0.0 && args.redial <= 3600.0) {
        return Err(Error::Usage(format!(
            "--redial {}: give seconds between 0 and 3600",
            args.redial
        )));
    }
    if args.mode == Mode::Hub && matches!(place, Place::Connect(..)) {
        return Err(Error::Usage(
            "hub is for a listening peer: tprox peer hub --listen PORT relays between the peers \
             that connect to it"
                .into(),
        ));
    }
    let options = PeerOptions {
        mode: args.mode,
        place,
        bytes: args.bytes,
        rate: args.rate,
        fixed: args.fixed,
        greeting: args.greeting,
        stop_reading_after: args.stop_reading_after,
        close_after: args.close_after,
        reset_after: args.reset_after,
        udp: args.udp,
        idle: std::time::Duration::from_secs_f64(args.idle),
        to,
        redial: std::time::Duration::from_secs_f64(args.redial),
    };
    let totals = Arc::new(Totals::new(|line| eprintln!("tprox peer: {line}")));
    let result = run_interruptible("tprox peer", "", crate::peer::run(options, totals.clone()));
    // Connections cut short by an interrupt are counted with what they had moved.
    eprintln!("tprox peer: {}", totals.summary());
    match result? {
        Ok(()) => Ok(Conclusion::failed_if(totals.any_failed())),
        Err(message) => Err(Error::Setup(message)),
    }
}
