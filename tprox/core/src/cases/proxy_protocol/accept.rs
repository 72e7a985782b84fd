//! Cases of a proxy that accepts the PROXY protocol (`--proxy-protocol accept:v1|v2`, R15): how
//! it reads the header its clients send first. Every other case runs with a well-formed header
//! sent in one write ([`crate::harness::connect_client`]); these send it the awkward ways real
//! senders and attackers do: a byte at a time, malformed, never finished, LOCAL.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::send::{described, unmapped};
use crate::case::{Case, Level};
use crate::cases::silent::{Silent, Subject};
use crate::harness::{client_header, Asked, Ctx, PROMPT};
use crate::net::{read_exact_within, show, wait_end};
use crate::outcome::{Failure, Stop};
use crate::proxy_protocol::{Command, Found, Version, SIGNATURE};
use crate::rules::Rule;

pub static SPLIT_HEADER: Case = Case {
    id: "proxy-protocol/split-header",
    name: "Header split into one-byte writes",
    requirement: "A proxy configured to accept the PROXY protocol MUST read the header however it is split into TCP segments, one byte per segment included (sections 2.1 and 2.2 give the header's end: the CRLF, or the length in its 16th byte), and then relay the stream after it.",
    rules: &[Rule::R15],
    level: Level::Must,
    alone: false,
    assumes: "The header is written a byte at a time, TCP_NODELAY on, with a 2 ms pause between writes; the client's bytes behind it reach the destination within PROMPT (5 s) of the last.",
    body: |cx| Box::pin(split_header(cx)),
};

pub static REFUSALS: Case = Case {
    id: "proxy-protocol/refusals",
    name: "No header, no relay",
    requirement: "A proxy configured to accept the PROXY protocol MUST NOT guess whether a header is present (section 2): a connection that starts with a wrong signature, a v1 line with no CRLF within its first 107 bytes (2.1), binary garbage, or data without a header MUST be closed, none of its bytes forwarded, and the proxy MUST go on serving.",
    rules: &[Rule::R15, Rule::R11],
    level: Level::Must,
    alone: false,
    assumes: "Each bad client is closed within PROMPT (5 s); a connection to the destination opened for it carries none of its bytes (each is read until it ends, or for PROMPT); then a normal echo works.",
    body: |cx| Box::pin(refusals(cx)),
};

pub static HEADER_TIMEOUT: Case = Case {
    id: "proxy-protocol/header-timeout",
    name: "Clients that never finish the header",
    requirement: "Clients that connect and send no header, or stop part-way through one, MUST NOT delay any other client (R3), and each MUST be closed once it has been silent for about the stall timeout: a proxy that waits for a header without a limit gives any client a way to hold its descriptors.",
    rules: &[Rule::R15, Rule::R3, Rule::R7],
    level: Level::Must,
    alone: false,
    assumes: "8 clients stop (nothing sent; half a v1 line; the v2 signature alone; a v2 header's fixed part without its addresses); a normal echo works within PROMPT (5 s) and before any is dropped; each is closed between 0.5 T and 1.5 T + PROMPT after its last byte (T: the stall timeout, which a proxy's header timeout is configured to in tprox's profiles).",
    body: |cx| Box::pin(header_timeout(cx)),
};

pub static LOCAL: Case = Case {
    id: "proxy-protocol/local",
    name: "v2 LOCAL is a health check",
    requirement: "A v2 header with the LOCAL command (a connection the sender made on its own, such as a health check) MUST be accepted, its address block discarded whatever its family, and the connection relayed with its real endpoints (section 2.2); where the proxy sends a header of its own, that header carries the real client.",
    rules: &[Rule::R15],
    level: Level::Must,
    alone: false,
    assumes: "v2 runs only (v1 has no LOCAL). Two clients: LOCAL with no addresses (AF_UNSPEC, as haproxy's health checks send it), and LOCAL with an IPv4 block naming 127.99.99.99:1; each one's bytes reach the destination and its echo comes back within PROMPT (5 s).",
    body: |cx| Box::pin(local(cx)),
};

pub static NOT_FORWARDED: Case = Case {
    id: "proxy-protocol/not-forwarded",
    name: "Header consumed, not passed on",
    requirement: "The header a proxy accepts is for the proxy: it MUST NOT pass it on to the destination, which receives the client's bytes after it and nothing else (behind a header of the proxy's own, where it is configured to send one).",
    rules: &[Rule::R15],
    level: Level::Must,
    alone: false,
    assumes: "The client's bytes reach the destination within PROMPT (5 s).",
    body: |cx| Box::pin(not_forwarded(cx)),
};

/// The pause between the one-byte writes of a split header: long enough that each byte is a
/// segment of its own that a proxy reading at once sees alone.
const SPLIT_PAUSE: Duration = Duration::from_millis(2);

/// The version of the header the proxy accepts, or the skip of a run where it accepts none.
fn accepting(cx: &Ctx) -> Result<Version, Stop> {
    cx.dest
        .client_headers()
        .ok_or_else(|| Stop::Skip("not a PROXY protocol accept run".into()))
}

/// Writes `bytes` one per write, [`SPLIT_PAUSE`] apart.
async fn write_split(client: &mut TcpStream, bytes: &[u8]) -> std::io::Result<()> {
    for byte in bytes {
        client.write_all(std::slice::from_ref(byte)).await?;
        tokio::time::sleep(SPLIT_PAUSE).await;
    }
    Ok(())
}

/// Has `client`'s `token`, written after its header (and a front's handshake, for a front),
/// reach the destination and echo back; returns the header the proxy sent of its own on that
/// connection, where it sends one.
async fn relayed(
    cx: &mut Ctx,
    mut client: TcpStream,
    after: &str,
    hint: &str,
) -> Result<Option<Found>, Stop> {
    if cx.front().is_some() {
        if let Asked::Refused { why, .. } | Asked::Broken(why) = cx.ask(&mut client).await {
            return Err(Failure::new(
                format!("after {after}, the front's handshake opens a tunnel"),
                why,
            )
            .hint(hint)
            .into());
        }
    }
    let token = cx.text(16);
    client.write_all(&token).await.ok();
    let forwarded = async {
        loop {
            let Ok((mut server, own)) = cx.dest.accept_with_header().await else {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            };
            if let Ok(got) = read_exact_within(&mut server, token.len(), PROMPT).await {
                if got == token {
                    return (server, own);
                }
            }
        }
    };
    let Ok((mut server, own)) = tokio::time::timeout(PROMPT, forwarded).await else {
        let closed = match wait_end(&mut client, Duration::ZERO).await {
            Some(_) => "the proxy closed the client",
            None => "the client's connection stayed open",
        };
        return Err(Failure::new(
            format!("after {after}, the client's bytes reach the destination"),
            format!(
                "no connection carrying them came within {} s; {closed}",
                PROMPT.as_secs()
            ),
        )
        .hint(hint)
        .into());
    };
    server.write_all(&token).await.ok();
    match read_exact_within(&mut client, token.len(), PROMPT).await {
        Ok(echo) if echo == token => Ok(own),
        Ok(echo) => Err(Failure::new(
            format!("after {after}, the echo of {} comes back", show(&token)),
            format!("it came back as {}", show(&echo)),
        )
        .into()),
        Err(short) => Err(Failure::new(
            format!("after {after}, the echo comes back"),
            format!("received {short}"),
        )
        .into()),
    }
}

async fn split_header(mut cx: Ctx) -> Result<(), Stop> {
    let version = accepting(&cx)?;
    let mut client = cx.connect_bare().await?;
    let header = client_header(version, &client, cx.proxy_addr())
        .map_err(|e| Stop::Skip(format!("the client's address is unknown: {e}")))?;
    write_split(&mut client, &header).await.map_err(|e| {
        Failure::new(
            "a client can write its header a byte at a time",
            e.to_string(),
        )
    })?;
    cx.trace.event(format_args!(
        "the {version} header, {} bytes, was written a byte per write",
        header.len()
    ));
    relayed(
        &mut cx,
        client,
        &format!("a {version} header split into one-byte writes"),
        "the proxy parses what its first read returns, as if the header always came whole",
    )
    .await?;
    Ok(())
}

/// The bad starts of [`refusals`]: what each is, and its bytes.
fn bad_starts(cx: &mut Ctx) -> Vec<(&'static str, Vec<u8>)> {
    let mut wrong_signature = SIGNATURE.to_vec();
    wrong_signature[11] = b'\r';
    wrong_signature.extend_from_slice(&[0x21, 0x11, 0x00, 0x0c]);
    wrong_signature.extend_from_slice(&[127, 0, 0, 1, 127, 0, 0, 1, 0x9c, 0x40, 0x1f, 0x90]);
    let long_line = format!("PROXY UNKNOWN {}\r\n", "x".repeat(100)).into_bytes();
    let mut garbage = vec![0x16, 0x03, 0x01];
    garbage.extend(cx.payload(61));
    vec![
        ("a v2 signature with its last byte wrong", wrong_signature),
        (
            "a v1 line misspelt (\"PROXI TCP4 ...\")",
            b"PROXI TCP4 127.0.0.1 127.0.0.1 40000 8080\r\n".to_vec(),
        ),
        ("a v1 line of 116 bytes (the limit is 107)", long_line),
        ("64 bytes of binary garbage", garbage),
        (
            "an HTTP request and no header",
            b"GET / HTTP/1.1\r\nHost: tprox\r\n\r\n".to_vec(),
        ),
    ]
}

async fn refusals(mut cx: Ctx) -> Result<(), Stop> {
    accepting(&cx)?;
    // Every connection the proxy opens is read until it ends (or for PROMPT): whatever reaches
    // the destination on one that is not the normal client's was forwarded. The destination
    // accepts in the order the proxy connected, so once the normal client's connection has
    // been accepted, every one the proxy opened for a bad client before it has been too.
    let token = cx.text(16);
    let (normal_tx, mut normal_rx) = tokio::sync::mpsc::channel::<TcpStream>(1);
    let (forwarded_tx, mut forwarded_rx) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
    let watcher = {
        let (dest, token) = (cx.dest.clone(), token.clone());
        tokio::spawn(async move {
            loop {
                let Ok(mut server) = dest.accept().await else {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                };
                let (normal, forwarded, token) =
                    (normal_tx.clone(), forwarded_tx.clone(), token.clone());
                tokio::spawn(async move {
                    let mut got = Vec::new();
                    let mut buf = [0u8; 4096];
                    let deadline = tokio::time::Instant::now() + PROMPT;
                    while let Ok(Ok(n @ 1..)) =
                        tokio::time::timeout_at(deadline, server.read(&mut buf)).await
                    {
                        got.extend_from_slice(&buf[..n]);
                        if got == token {
                            let _ = normal.send(server).await;
                            return;
                        }
                    }
                    let _ = forwarded.send(got);
                });
            }
        })
    };
    let watching = AbortOnDrop(watcher);
    for (what, bytes) in bad_starts(&mut cx) {
        let mut client = cx.connect_bare().await?;
        client.write_all(&bytes).await.ok();
        if wait_end(&mut client, PROMPT).await.is_none() {
            return Err(Failure::new(
                format!("a connection that starts with {what} is closed"),
                format!("it was still open after {} s", PROMPT.as_secs()),
            )
            .hint("the proxy guesses whether a header is present, or waits for more of a header that cannot be one")
            .into());
        }
        cx.trace.event(format_args!("{what}: closed"));
    }
    let mut client = cx.connect().await?;
    client.write_all(&token).await.ok();
    let Ok(Some(mut server)) = tokio::time::timeout(PROMPT, normal_rx.recv()).await else {
        return Err(Failure::new(
            "after five connections without a valid header, a normal client's bytes reach the destination",
            format!("no connection carrying them came within {} s", PROMPT.as_secs()),
        )
        .hint("the proxy stopped serving")
        .into());
    };
    server.write_all(&token).await.ok();
    if read_exact_within(&mut client, token.len(), PROMPT)
        .await
        .ok()
        != Some(token.clone())
    {
        return Err(Failure::new(
            "after five connections without a valid header, a normal echo comes back",
            "it did not",
        )
        .into());
    }
    // Each connection opened before the normal one has been accepted: its reader ends by
    // PROMPT at the latest.
    drop(watching);
    while let Some(got) = forwarded_rx.recv().await {
        if !got.is_empty() {
            return Err(Failure::new(
                "nothing of a connection without a valid header reaches the destination",
                format!("the destination received {}", show(&got)),
            )
            .hint("the proxy forwards before it has a whole, valid header")
            .into());
        }
    }
    Ok(())
}

/// Aborts a task when the case ends, however it ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn header_timeout(mut cx: Ctx) -> Result<(), Stop> {
    let version = accepting(&cx)?;
    let mut silent = Silent::default();
    let mut fixed = SIGNATURE.to_vec();
    fixed.extend_from_slice(&[0x21, 0x11, 0x00, 0x0c]);
    let stops: [(&'static str, Vec<u8>); 4] = [
        ("nothing", Vec::new()),
        ("half a v1 line", b"PROXY TCP4 127.88".to_vec()),
        ("the v2 signature", SIGNATURE.to_vec()),
        ("a v2 header's 16 fixed bytes, no addresses", fixed),
    ];
    for (what, bytes) in stops.iter().chain(stops.iter()) {
        let mut client = cx.connect_bare().await?;
        client.write_all(bytes).await.ok();
        silent.hold(what, client);
    }
    cx.trace.event(format_args!(
        "8 clients stopped part-way through a header (the proxy accepts {version}): after {}",
        stops
            .iter()
            .map(|(what, _)| *what)
            .collect::<Vec<_>>()
            .join("; ")
    ));
    let subject = Subject {
        stopped: "mid-header",
        pool_hint: "the proxy reads headers in a fixed number of workers, which silent clients hold",
        no_timeout_hint: "the proxy waits for the header without a time limit: any client can hold its descriptors forever",
    };
    let (stall, trace) = (cx.stall, cx.trace.clone());
    let serve = async {
        let client = cx.connect_only().await?;
        relayed(
            &mut cx,
            client,
            "8 clients stopped part-way through a header",
            "the proxy serves no one while clients hold their headers back",
        )
        .await
        .map(drop)
    };
    silent.judge(stall, &trace, &subject, serve).await
}

async fn local(mut cx: Ctx) -> Result<(), Stop> {
    if accepting(&cx)? != Version::V2 {
        return Err(Stop::Skip(
            "LOCAL is a v2 command: this run accepts v1".into(),
        ));
    }
    let mut block = vec![127, 99, 99, 99, 127, 99, 99, 98];
    block.extend_from_slice(&[0, 1, 0, 2]);
    let headers = [
        (
            "a LOCAL header with no addresses",
            crate::proxy_protocol::v2(Command::Local, 0x00, &[]),
        ),
        (
            "a LOCAL header naming 127.99.99.99:1",
            crate::proxy_protocol::v2(Command::Local, 0x11, &block),
        ),
    ];
    for (what, header) in headers {
        let mut client = cx.connect_bare().await?;
        let real = client
            .local_addr()
            .map_err(|e| Stop::Skip(format!("the client's address is unknown: {e}")))?;
        client.write_all(&header).await.ok();
        let own = relayed(
            &mut cx,
            client,
            what,
            "the proxy takes LOCAL for PROXY, and wants addresses a health check need not give",
        )
        .await?;
        let Some(own) = own else { continue };
        let Found::Header(sent) = &own else {
            return Err(Failure::new(
                format!("after {what}, the proxy's own header is well-formed"),
                described(&own),
            )
            .into());
        };
        if sent.command == Command::Proxy && sent.source.map(unmapped) != Some(real) {
            return Err(Failure::new(
                format!("after {what}, the proxy's own header names the real client, {real}"),
                format!(
                    "it names {}",
                    sent.source
                        .map_or("no address".to_string(), |a| a.to_string())
                ),
            )
            .hint("LOCAL's address block is to be discarded: the connection's real endpoints stand")
            .into());
        }
    }
    cx.trace.event("both LOCAL connections were relayed");
    Ok(())
}

async fn not_forwarded(mut cx: Ctx) -> Result<(), Stop> {
    let version = accepting(&cx)?;
    let mut client = cx.connect().await?;
    let header = client_header(version, &client, cx.proxy_addr())
        .map_err(|e| Stop::Skip(format!("the client's address is unknown: {e}")))?;
    let token = cx.text(16);
    client.write_all(&token).await.ok();
    // The raw connection: the destination must not read a copy of the header off for this
    // case, as it does for the others where the proxy was seen to pass headers on.
    let first = async {
        loop {
            let Ok(mut server) = cx.dest.accept_plain().await else {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            };
            cx.dest.read_header(&mut server).await;
            if let Ok(got) = read_exact_within(&mut server, token.len(), PROMPT).await {
                // A stale connection (the start's) carries neither.
                if got == token || header.starts_with(&got) {
                    return got;
                }
            }
        }
    };
    let Ok(got) = tokio::time::timeout(PROMPT, first).await else {
        return Err(Failure::new(
            "the client's bytes reach the destination",
            format!(
                "no connection carrying them came within {} s",
                PROMPT.as_secs()
            ),
        )
        .into());
    };
    if got != token {
        return Err(Failure::new(
            format!("the destination receives the client's bytes after its header, {}", show(&token)),
            format!("the client's header came first: {}…", show(&got)),
        )
        .hint("the proxy parses the header and then relays from the start of what it read, the header included")
        .into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bad_start_is_no_valid_header() {
        let long = format!("PROXY UNKNOWN {}\r\n", "x".repeat(100));
        assert!(long.len() > crate::proxy_protocol::V1_MAX);
        assert!(crate::proxy_protocol::parse_v1(long.as_bytes()).is_err());
        assert!(
            crate::proxy_protocol::parse_v1(b"PROXI TCP4 127.0.0.1 127.0.0.1 40000 8080\r\n")
                .is_err()
        );
        let mut wrong = SIGNATURE.to_vec();
        wrong[11] = b'\r';
        wrong.extend_from_slice(&[0x21, 0x11, 0x00, 0x00]);
        assert!(crate::proxy_protocol::parse_v2(&wrong).is_err());
    }
}
