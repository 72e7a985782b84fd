//! The rules of the proxy contract (`docs/contract.md`), so cases can name what they check.

use std::fmt;

/// One numbered rule of the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Rule {
    /// Forwarding.
    R1,
    /// Concurrency.
    R2,
    /// Isolation.
    R3,
    /// Bounded buffering.
    R4,
    /// Half-close.
    R5,
    /// Termination.
    R6,
    /// Stall timeout.
    R7,
    /// Destination failures.
    R8,
    /// No busy-waiting.
    R9,
    /// No leaks.
    R10,
    /// Survival.
    R11,
    /// Low latency.
    R12,
    /// Front handshake: SOCKS5 and HTTP CONNECT proxies only.
    R13,
    /// PROXY protocol: proxies configured to send it only.
    R14,
    /// PROXY protocol: proxies configured to accept it only.
    R15,
    /// UDP datagrams: UDP forwarders only (`--udp`).
    R16,
    /// UDP sessions.
    R17,
    /// UDP session lifetime.
    R18,
    /// UDP bounds and errors.
    R19,
}

impl Rule {
    /// Every rule, in order.
    pub const ALL: [Rule; 19] = [
        Rule::R1,
        Rule::R2,
        Rule::R3,
        Rule::R4,
        Rule::R5,
        Rule::R6,
        Rule::R7,
        Rule::R8,
        Rule::R9,
        Rule::R10,
        Rule::R11,
        Rule::R12,
        Rule::R13,
        Rule::R14,
        Rule::R15,
        Rule::R16,
        Rule::R17,
        Rule::R18,
        Rule::R19,
    ];

    /// The rules of a UDP forwarder (`tprox --udp`); the others are a TCP proxy's.
    pub const UDP: [Rule; 4] = [Rule::R16, Rule::R17, Rule::R18, Rule::R19];

    /// The rule's short title, as the contract names it.
    pub fn title(self) -> &'static str {
        match self {
            Rule::R1 => "Forwarding",
            Rule::R2 => "Concurrency",
            Rule::R3 => "Isolation",
            Rule::R4 => "Bounded buffering",
            Rule::R5 => "Half-close",
            Rule::R6 => "Termination",
            Rule::R7 => "Stall timeout",
            Rule::R8 => "Destination failures",
            Rule::R9 => "No busy-waiting",
            Rule::R10 => "No leaks",
            Rule::R11 => "Survival",
            Rule::R12 => "Low latency",
            Rule::R13 => "Front handshake",
            Rule::R14 => "PROXY protocol header",
            Rule::R15 => "PROXY protocol receiving",
            Rule::R16 => "UDP datagrams",
            Rule::R17 => "UDP sessions",
            Rule::R18 => "UDP session lifetime",
            Rule::R19 => "UDP bounds and errors",
        }
    }

    /// The rule's text, as the contract states it.
    pub fn text(self) -> &'static str {
        match self {
            Rule::R1 => "Bytes sent by the client arrive at the server, and bytes sent by the server arrive at the client, unchanged, in order, none lost, none added. Every byte value, any message size. Data may flow in both directions at once.",
            Rule::R2 => "Many client connections are served at the same time, each with its own connection to the destination; no connection waits for another.",
            Rule::R3 => "No client or server can hang the proxy by refusing to read or write: when one peer stops reading, every other connection keeps its full service.",
            Rule::R4 => "When one end keeps sending and the other stops reading, the proxy stops reading from the sender (backpressure) instead of buffering without limit. Its memory stays bounded whatever the peers do.",
            Rule::R5 => "When the proxy reads end-of-file from one socket, it first writes all data it still holds for the other socket, then shuts that socket down for writing, and keeps forwarding the other direction. This holds for EOF from the client and from the server alike.",
            Rule::R6 => "The proxy closes a connection pair (both descriptors) when it has read EOF (or a read error) in both directions and written everything it held, or when a write fails in either direction. A reset (ECONNRESET) from a peer is treated as that peer closing.",
            Rule::R7 => "If the proxy holds data for one direction and cannot write any of it for the stall timeout, it aborts both connections of the pair. Any progress restarts the clock. A connection that holds no data is never aborted, however long it is idle, half-closed or not; a slow but steady reader is never aborted.",
            Rule::R8 => "If the connection to the destination cannot be made, the proxy closes the client connection promptly and goes on serving. Data that the destination sends before the client sends anything (a greeting) is forwarded.",
            Rule::R9 => "The proxy uses no CPU to speak of while its connections are idle or blocked.",
            Rule::R10 => "Descriptors and memory of a closed pair are released, however the pair ended (both EOFs, a reset from either side, a failed write, the stall timeout, a destination that refused); after any number of connections the proxy's descriptor count returns to its baseline.",
            Rule::R11 => "No peer behaviour (resets, early closes, writes to a closed socket/SIGPIPE, refusing to read) crashes the proxy or stops it accepting.",
            Rule::R12 => "The proxy adds no artificial delay to small messages: it forwards a write as soon as it reads it (TCP_NODELAY on both sockets, or equivalent).",
            Rule::R13 => "A front (a SOCKS5 or HTTP CONNECT proxy, whose clients name the destination in a handshake) reads the handshake however it is split into writes; answers success only once the destination is connected, and otherwise its protocol's refusal (SOCKS5: 0x05 for a refused destination, 0x04 for an unreachable or unknown one, 0x07 for an unsupported command; HTTP: 502, 503 or 504; wrong credentials: a failed SOCKS5 status or HTTP 407), then closes; forwards the bytes a client sends behind its request; rejects malformed requests; and closes a client that stops mid-handshake after about the stall timeout, without delaying any other client. Rules R1 to R12 apply to the stream after the handshake.",
            Rule::R14 => "A proxy configured to send the PROXY protocol (haproxy's doc/proxy-protocol.txt) writes exactly one header first on every connection it opens to the destination, before any byte of the client's. Version 1 (section 2.1): one line `PROXY TCP4` or `PROXY TCP6` (or `PROXY UNKNOWN`), two addresses in their usual form and two decimal ports from 0 to 65535, single spaces, at most 107 bytes with the CRLF that ends it. Version 2 (section 2.2): the 12-byte signature, version 2, the PROXY command, TCP over IPv4 or IPv6, a length that counts the addresses and any TLVs exactly, TLVs that fill it, and a CRC32c TLV that matches when there is one. The source is the client's address and port as the client opened the connection, the destination the address and port the client connected to. Rules R1 to R12 apply to the stream after the header.",
            Rule::R15 => "A proxy configured to accept the PROXY protocol reads one header first on every client connection, however it is split into writes, and never guesses whether one is present (section 2): a connection that starts with anything but a valid header (a wrong signature, a v1 line with no CRLF within 107 bytes, garbage, data) is closed and none of it forwarded. A client that does not finish its header is closed after about the stall timeout, without delaying any other client. A v2 LOCAL header is accepted, its addresses discarded, and the connection relayed with its real endpoints (2.2). The header is consumed: the destination receives the client's bytes after it and nothing else, behind a header of the proxy's own where it is configured to send one, which then names the client the received header named. Rules R1 to R12 apply to the stream after the header.",
            Rule::R16 => "A UDP forwarder passes each datagram on whole and alone, both ways: every size from 0 bytes to 65,507 (the largest IPv4 UDP payload), contents unchanged, never merged with another or split.",
            Rule::R17 => "Each client address and port is a session of its own, with its own socket towards the destination, so that the destination tells clients apart by source port and its replies go back to the client that the socket belongs to and to no other. Every datagram the destination sends on a session's socket reaches that client while the session lives: several replies to one request, and replies sent later, unasked.",
            Rule::R18 => "A session that has carried nothing either way for the idle timeout T (the stall timeout the forwarder is told) is dropped and its socket closed, so that its descriptor is released; the client's next datagram opens a new session. A session that carries traffic (either way) more often than T is never dropped.",
            Rule::R19 => "Whatever the peers send, the forwarder's memory stays bounded: a flood towards a destination that does not read may be dropped, not queued without limit. It uses no CPU to speak of while its sessions are idle. An ICMP error on one session's socket (the destination's port unreachable) ends no other session and does not stop the forwarder.",
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self:?}")
    }
}

/// Formats a list of rules as `R1 R2`.
pub fn list(rules: &[Rule]) -> String {
    rules
        .iter()
        .map(Rule::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}
