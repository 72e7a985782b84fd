//! Cases of a proxy that sends the PROXY protocol (`--proxy-protocol send:v1|v2`, R14): the
//! header on each connection to the destination, and the addresses it carries. The other cases
//! run on the stream after the header, which tprox's destination reads off
//! ([`crate::harness::Destination::accept`]). Where the proxy also accepts a header from its
//! clients, the one it sends must carry the client that header named.

use std::net::SocketAddr;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::case::{Case, Level};
use crate::harness::{Ctx, PROMPT};
use crate::net::{read_exact_within, show};
use crate::outcome::{Failure, Stop};
use crate::proxy_protocol::{Command, Found, Header, Version, SIGNATURE};
use crate::rules::Rule;

pub static HEADER: Case = Case {
    id: "proxy-protocol/header",
    name: "One well-formed header first",
    requirement: "A proxy configured to send the PROXY protocol MUST write exactly one header, of the version it is configured for and well-formed by the specification (v1: section 2.1; v2: section 2.2, the PROXY command), first on every connection it opens to the destination, before any byte of the client's, also when the client's data is waiting before the connection is made.",
    rules: &[Rule::R14],
    level: Level::Must,
    alone: false,
    assumes: "The header and the client's first bytes reach the destination within PROMPT (5 s) of the client's connect.",
    body: |cx| Box::pin(header(cx)),
};

pub static ADDRESSES: Case = Case {
    id: "proxy-protocol/addresses",
    name: "Header carries the client",
    requirement: "The header MUST carry the client's address and port as the client opened its connection as the source, and the address and port the client connected to (the proxy's listener) as the destination (section 2.1, 2.2), each connection its own client's. A proxy that also accepts the PROXY protocol MUST carry the client that the header it received named, as that header's source.",
    rules: &[Rule::R14],
    level: Level::Must,
    alone: false,
    assumes: "On loopback, where a client's address and port as tprox opened them are the ones the proxy sees. The headers reach the destination within PROMPT (5 s). In a run that also accepts headers, tprox's clients name 127.88.0.1 with their own port as the source and the proxy's listener as the destination.",
    body: |cx| Box::pin(addresses(cx)),
};

/// Clients at once, each sending at once: a header written late would come after its data.
const CLIENTS: usize = 3;

/// One client's connection as the destination saw it.
struct Seen {
    /// The client's own address, as it opened the connection.
    client: SocketAddr,
    /// What the destination found at the start of the connection.
    found: Found,
}

/// Connects [`CLIENTS`] clients, each writing a token of its own at once, and pairs each with
/// the destination's connection whose bytes after the header are its token.
async fn connect_clients(cx: &mut Ctx) -> Result<Vec<Seen>, Stop> {
    let mut clients: Vec<(TcpStream, Vec<u8>)> = Vec::new();
    for _ in 0..CLIENTS {
        let mut client = cx.connect().await?;
        let token = cx.text(16);
        client
            .write_all(&token)
            .await
            .map_err(|e| Failure::new("a client can write to the proxy", e.to_string()))?;
        clients.push((client, token));
    }
    let mut seen = Vec::new();
    while seen.len() < CLIENTS {
        let accepted = tokio::time::timeout(PROMPT, cx.dest.accept_with_header()).await;
        let Ok(Ok((mut server, found))) = accepted else {
            return Err(Failure::new(
                format!(
                    "the proxy opens a connection to the destination for each of {CLIENTS} clients"
                ),
                format!("{} came within {} s", seen.len(), PROMPT.as_secs()),
            )
            .into());
        };
        let found = found.ok_or_else(|| Stop::Skip("not a PROXY protocol run".into()))?;
        let after = read_exact_within(&mut server, 16, PROMPT).await;
        let after = match after {
            Ok(bytes) => bytes,
            Err(short) => {
                return Err(Failure::new(
                    "after the header, the client's bytes",
                    format!("received {short}"),
                )
                .into())
            }
        };
        let Some(index) = clients.iter().position(|(_, token)| *token == after) else {
            let second = SIGNATURE.starts_with(&after[..after.len().min(12)])
                || after.starts_with(b"PROXY ");
            return Err(Failure::new(
                "after the header, exactly the bytes the client sent, first",
                match second {
                    true => format!("a second header: {}", show(&after)),
                    false => format!("{} (the header was {})", show(&after), described(&found)),
                },
            )
            .hint("the header must be written once, before anything of the client's is forwarded")
            .into());
        };
        let (client, _) = clients.remove(index);
        let client = client
            .local_addr()
            .map_err(|e| Stop::Skip(format!("the client's address is unknown: {e}")))?;
        cx.trace.event(format_args!(
            "client {client}: the destination found {}",
            described(&found)
        ));
        seen.push(Seen { client, found });
    }
    Ok(seen)
}

pub(super) fn described(found: &Found) -> String {
    match found {
        Found::Header(header) => format!("the header {}", show(&header.raw)),
        Found::Malformed(why) => format!("a malformed header: {why}"),
        Found::Missing(why) => format!("no header: {why}"),
    }
}

/// The header of a connection, or the failure that there is none.
fn well_formed(seen: &Seen, version: Version) -> Result<&Header, Stop> {
    let expected = format!(
        "each connection to the destination starts with one well-formed PROXY protocol {version} header"
    );
    match &seen.found {
        Found::Header(header) if header.version != version => Err(Failure::new(
            expected,
            format!("a {} header: {}", header.version, show(&header.raw)),
        )
        .hint("the proxy sends the other version than the run expects: check both configurations")
        .into()),
        Found::Header(header) if header.command == Command::Proxy => Ok(header),
        Found::Header(_) => Err(Failure::new(
            expected,
            "a v2 header with the LOCAL command on a connection relayed for a client",
        )
        .hint("LOCAL is for connections the proxy makes on its own, such as health checks")
        .into()),
        Found::Malformed(why) => Err(Failure::new(expected, format!("a malformed header: {why}")).into()),
        Found::Missing(why) => Err(Failure::new(expected, format!("no {version} header: {why}"))
            .hint("is the proxy configured to send this version? A header written after the client's first bytes, or not at all, looks like this")
            .into()),
    }
}

async fn header(mut cx: Ctx) -> Result<(), Stop> {
    let Some(version) = cx.dest.headers() else {
        return Err(Stop::Skip("not a PROXY protocol run".into()));
    };
    for seen in connect_clients(&mut cx).await? {
        well_formed(&seen, version)?;
    }
    Ok(())
}

/// An IPv4 address as a dual-stack socket shows it (`::ffff:a.b.c.d`), as the IPv4 it is.
pub(super) fn unmapped(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(v4.into(), v6.port()),
            None => addr,
        },
        SocketAddr::V4(_) => addr,
    }
}

async fn addresses(mut cx: Ctx) -> Result<(), Stop> {
    let Some(version) = cx.dest.headers() else {
        return Err(Stop::Skip("not a PROXY protocol run".into()));
    };
    let listener = cx.proxy_addr();
    // A chained proxy passes on the client its own client named.
    let relayed = cx.dest.client_headers().is_some();
    for seen in connect_clients(&mut cx).await? {
        let header = well_formed(&seen, version)?;
        let carried = (
            header.source.map(unmapped),
            header.destination.map(unmapped),
        );
        let client = match relayed {
            true => crate::proxy_protocol::claimed_source(seen.client),
            false => seen.client,
        };
        if carried != (Some(client), Some(listener)) {
            let shown = |addr: Option<SocketAddr>| addr.map_or("none".into(), |a| a.to_string());
            let named = match relayed {
                true => " (the client its received header named)",
                false => "",
            };
            return Err(Failure::new(
                format!(
                    "the header of client {}'s connection names source {client}{named} and destination {listener}",
                    seen.client
                ),
                format!(
                    "source {}, destination {} ({})",
                    shown(carried.0),
                    shown(carried.1),
                    show(&header.raw)
                ),
            )
            .hint(match relayed {
                true => "a proxy that accepted a header passes on the client it named, not its socket's peer",
                false => "the source is the client's address and port (the accepted socket's peer), the destination the proxy's own listening address and port; in v2, ports are in network byte order",
            })
            .into());
        }
    }
    Ok(())
}
