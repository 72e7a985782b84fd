//! Front cases about the requests themselves: split into writes, with data behind them,
//! naming destinations every way, answered with the bound address, or malformed.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{echo_through, echo_works, front, tunnel_as, Asking};
use crate::case::{Case, Level};
use crate::front::{Refused, Style};
use crate::harness::{Ctx, PROMPT};
use crate::net::{read_exact_within, show, spawn_echo, wait_end};
use crate::outcome::{Failure, Stop};
use crate::rules::Rule;

pub static SPLIT: Case = Case {
    id: "front/split-handshake",
    name: "Handshake split into writes",
    requirement: "A front MUST accept a handshake however it is split into writes, then forward data both ways: every byte in a write of its own, and (SOCKS5) every message in one write, the greeting, credentials and request sent before any answer.",
    rules: &[Rule::R13, Rule::R1],
    level: Level::Must,
    alone: false,
    assumes: "Bytes 2 ms apart; the answer and the echo within PROMPT (5 s).",
    body: |cx| Box::pin(split(cx)),
};

pub static EARLY_DATA: Case = Case {
    id: "front/early-data",
    name: "Data right behind the request",
    requirement: "Data the client sends in the same write as its request, before the answer arrives, MUST be forwarded to the destination once it is connected, not lost.",
    rules: &[Rule::R13, Rule::R1],
    level: Level::Must,
    alone: false,
    assumes: "The data reaches the destination within PROMPT (5 s).",
    body: |cx| Box::pin(early_data(cx)),
};

pub static ADDRESS_TYPES: Case = Case {
    id: "front/address-types",
    name: "Destinations named by name and by IPv6",
    requirement: "A front MUST serve a destination named by a host name (SOCKS5 address type 0x03; HTTP `CONNECT localhost:PORT`) and by an IPv6 address (SOCKS5 0x04; HTTP `CONNECT [::1]:PORT`) as it serves an IPv4 literal, connecting to that destination and no other, or refuse the kind it does not serve (SOCKS5 reply 0x08, address type not supported; HTTP a 4xx status); it MUST NOT leave the client without an answer (RFC 1928 §4-§6, RFC 9110 §9.3.6).",
    rules: &[Rule::R13],
    level: Level::Must,
    alone: false,
    assumes: "The destination listens on 127.0.0.1 and, where the machine has IPv6, on ::1 at the same port, so that `localhost` reaches it whichever address the front tries first; without IPv6 on loopback the IPv6 request is left out (said in the trace). Each answer and echo within PROMPT (5 s).",
    body: |cx| Box::pin(address_types(cx)),
};

pub static BOUND_ADDRESS: Case = Case {
    id: "front/bound-address",
    name: "Bound address in network byte order",
    requirement: "A SOCKS5 front that reports in its success reply the address it connected from (BND.ADDR, BND.PORT) SHOULD write the port in network octet order, as RFC 1928 §6 says: a client that connects a second channel, or logs the address, reads it so.",
    rules: &[Rule::R13],
    level: Level::Should,
    alone: false,
    assumes: "SOCKS5 only. Judged only when the reply names the address the destination saw the connection come from, or that address with the port's two bytes swapped; a front that reports another address (all zeroes, the requested one) is not judged here.",
    body: |cx| Box::pin(bound_address(cx)),
};

pub static MALFORMED: Case = Case {
    id: "front/malformed",
    name: "Malformed requests",
    requirement: "A malformed request (a wrong SOCKS version, an unknown address type; an HTTP request line that is not one, a CONNECT target without a port, a version that is not HTTP's, binary garbage) MUST get an error answer or a close, and the front MUST go on serving. Size is not malformation: HTTP sets no limit on a header block (RFC 9112), so a large one that names a live destination is a valid request.",
    rules: &[Rule::R13, Rule::R11],
    level: Level::Must,
    alone: false,
    assumes: "Each bad client is closed within PROMPT (5 s), or, by an HTTP front, answered with a 4xx or 5xx status within PROMPT (RFC 9112 §2.2 says the server SHOULD then close, not MUST); then a normal echo works.",
    body: |cx| Box::pin(malformed(cx)),
};

async fn split(mut cx: Ctx) -> Result<(), Stop> {
    let front = front(&cx)?;
    let style = Style {
        split: true,
        ..Style::default()
    };
    let asking = Asking {
        what: "a handshake split into one-byte writes",
        refused_hint: Some("the front parses what one read returns, as if each message came whole"),
        silent_hint: Some("the front waits for a message to arrive in one read"),
    };
    let mut client = tunnel_as(&cx, &front, &style, PROMPT * 4, asking).await?;
    cx.trace
        .event("the handshake, a byte per write, was answered");
    let server = cx.accept().await?;
    spawn_echo(server);
    let message = cx.text(64);
    client.write_all(&message).await.ok();
    match read_exact_within(&mut client, message.len(), PROMPT).await {
        Ok(echo) if echo == message => {}
        Ok(echo) => {
            return Err(Failure::new(
                "after a split handshake, the echo comes back unchanged",
                format!("it came back as {}", show(&echo)),
            )
            .into())
        }
        Err(short) => {
            return Err(Failure::new(
                "after a split handshake, the echo comes back",
                format!("received {short}"),
            )
            .into())
        }
    }
    if !front.is_socks5() {
        return Ok(()); // an HTTP request is one message, written at once by every other case
    }
    // The other way to split it: every message in one write, before any answer.
    let pipelined = Style {
        pipelined: true,
        ..Style::default()
    };
    let asking = Asking {
        what: "a greeting and request in one write, sent before the method choice,",
        refused_hint: Some("the front drops what a read returns beyond the message it parses: the rest of the handshake came in the same read"),
        silent_hint: Some("the front drops what a read returns beyond the message it parses, then waits for a request it already had"),
    };
    let client = tunnel_as(&cx, &front, &pipelined, PROMPT, asking).await?;
    cx.trace
        .event("the greeting, credentials and request in one write were answered");
    echo_through(&mut cx, client, "a pipelined handshake").await
}

async fn early_data(mut cx: Ctx) -> Result<(), Stop> {
    let front = front(&cx)?;
    let early = cx.text(1024);
    let style = Style {
        trailing: early.clone(),
        ..Style::default()
    };
    let asking = Asking {
        what: "a request with data behind it",
        refused_hint: None,
        silent_hint: None,
    };
    let _client = tunnel_as(&cx, &front, &style, PROMPT, asking).await?;
    cx.trace.event(format_args!(
        "client sent its request and {} bytes in one write",
        early.len()
    ));
    let mut server = cx.accept().await?;
    match read_exact_within(&mut server, early.len(), PROMPT).await {
        Ok(got) if got == early => Ok(()),
        Ok(got) => Err(Failure::new(
            "the bytes behind the request reach the destination unchanged",
            format!("received {}", show(&got)),
        )
        .into()),
        Err(short) => Err(Failure::new(
            "the bytes behind the request reach the destination",
            format!("received {short}"),
        )
        .hint("the front reads the request with a large read and drops what came behind it")
        .into()),
    }
}

async fn address_types(mut cx: Ctx) -> Result<(), Stop> {
    let front = front(&cx)?;
    let port = cx.dest.port();
    // The destination on ::1 too, at the same port: `localhost` may resolve there first.
    let v6 = tokio::net::TcpListener::bind(("::1", port)).await;
    if let Err(e) = &v6 {
        cx.trace.event(format_args!(
            "no listener on [::1]:{port} ({e}): the IPv6 request is left out"
        ));
    }
    let v6 = v6.ok();
    let v4_target = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let v6_target = std::net::SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port));
    let mut requests = vec![(
        "localhost".to_string(),
        v4_target,
        Style {
            name: Some("localhost".into()),
            ..Style::default()
        },
    )];
    if v6.is_some() {
        requests.push(("[::1]".to_string(), v6_target, Style::default()));
    }
    let (documented, kind) = if front.is_socks5() {
        ("reply 0x08 (address type not supported)", "a SOCKS5")
    } else {
        ("a 4xx status", "an HTTP")
    };
    for (named, target, style) in requests {
        let what = format!("{kind} request for {named}:{port}");
        let mut client = cx.connect_only().await?;
        let answer =
            tokio::time::timeout(PROMPT, front.handshake_with(&mut client, target, &style)).await;
        let expected =
            format!("{what} opens a tunnel to the destination, or is refused with {documented}");
        match answer {
            Ok(Ok(())) => {}
            Ok(Err(Refused::Answered { code, text, .. }))
                if (front.is_socks5() && code == 0x08)
                    || (!front.is_socks5() && (400..500).contains(&code)) =>
            {
                cx.trace
                    .event(format_args!("{what}: refused with {text}, as documented"));
                continue;
            }
            Ok(Err(refused)) => {
                return Err(Failure::new(expected, refused.to_string())
                    .hint("the front parses only IPv4 literals: names and IPv6 addresses are other address types (SOCKS5) or other host syntax (HTTP, brackets around IPv6)")
                    .into())
            }
            Err(_) => {
                return Err(Failure::new(expected, format!("no answer within {} s", PROMPT.as_secs()))
                    .hint("the front does not parse the address type or host syntax it was sent, and waits for bytes that never come")
                    .into())
            }
        }
        // The tunnel must lead to the destination: the message arrives there, on 127.0.0.1
        // or on ::1, and its echo comes back.
        let message = cx.text(16);
        client.write_all(&message).await.ok();
        let accepted = async {
            match &v6 {
                Some(v6) => tokio::select! {
                    s = cx.dest.accept() => s.ok(),
                    s = v6.accept() => match s {
                        Ok((mut s, _)) => {
                            cx.dest.read_header(&mut s).await;
                            Some(s)
                        }
                        Err(_) => None,
                    },
                },
                None => cx.dest.accept().await.ok(),
            }
        };
        let Ok(Some(mut server)) = tokio::time::timeout(PROMPT, accepted).await else {
            return Err(Failure::new(
                format!("after answering success to {what}, the front connects to the destination"),
                format!("no connection reached the destination within {} s", PROMPT.as_secs()),
            )
            .hint("the front connected somewhere else: it read the address or the port from the wrong bytes")
            .into());
        };
        let got = read_exact_within(&mut server, message.len(), PROMPT).await;
        if got.as_deref().ok() != Some(&message[..]) {
            return Err(Failure::new(
                format!(
                    "through the tunnel {what} opened, {} reaches the destination",
                    show(&message)
                ),
                match got {
                    Ok(got) => format!("it arrived as {}", show(&got)),
                    Err(short) => format!("received {short}"),
                },
            )
            .into());
        }
        server.write_all(&message).await.ok();
        match read_exact_within(&mut client, message.len(), PROMPT).await {
            Ok(echo) if echo == message => cx
                .trace
                .event(format_args!("{what}: a tunnel to the destination")),
            Ok(echo) => {
                return Err(Failure::new(
                    format!("through the tunnel {what} opened, the echo comes back unchanged"),
                    format!("it came back as {}", show(&echo)),
                )
                .into())
            }
            Err(short) => {
                return Err(Failure::new(
                    format!("through the tunnel {what} opened, the echo comes back"),
                    format!("received {short}"),
                )
                .into())
            }
        }
    }
    Ok(())
}

async fn bound_address(cx: Ctx) -> Result<(), Stop> {
    let front = front(&cx)?;
    if !front.is_socks5() {
        return Err(Stop::Skip(
            "SOCKS5 only: an HTTP front reports no address".into(),
        ));
    }
    // A port whose two bytes are equal reads the same in either order: such a connection
    // cannot show swapped bytes, and another is opened (at most three in all).
    let mut attempts = 0;
    let (reported, seen) = loop {
        attempts += 1;
        let mut client = cx.connect_only().await?;
        let target = std::net::SocketAddr::from(([127, 0, 0, 1], cx.dest.port()));
        let reported = match tokio::time::timeout(
            PROMPT,
            front.handshake_reporting(&mut client, target, &Style::default()),
        )
        .await
        {
            Ok(Ok(reported)) => reported,
            Ok(Err(refused)) => {
                return Err(Failure::new("the front opens a tunnel", refused.to_string()).into())
            }
            Err(_) => return Err(Failure::new("the front answers", "no answer").into()),
        };
        let server = cx.accept().await?;
        let seen = server
            .peer_addr()
            .map_err(|e| Stop::Skip(format!("the destination's peer address: {e}")))?;
        if seen.port().swap_bytes() != seen.port() || attempts == 3 {
            break (reported, seen);
        }
        cx.trace.event(format_args!(
            "the front connected from port {}, whose bytes are equal: another connection",
            seen.port()
        ));
    };
    let Some(reported) = reported else {
        cx.trace
            .event("the reply names the bound address by a host name: not judged");
        return Ok(());
    };
    cx.trace.event(format_args!(
        "the reply reports {reported}; the destination saw the connection come from {seen}"
    ));
    let swapped = seen.port().swap_bytes();
    if reported.ip() == seen.ip() && reported.port() != seen.port() && reported.port() == swapped {
        return Err(Failure::new(
            format!("the reply's BND.PORT is {} in network octet order (bytes {:02x?})", seen.port(), seen.port().to_be_bytes()),
            format!("it is {} (bytes {:02x?}): the bytes are swapped", reported.port(), reported.port().to_be_bytes()),
        )
        .hint("the front writes the port in the host's byte order: convert it with htons (or to_be_bytes) as RFC 1928 §6 says")
        .into());
    }
    if reported != seen {
        cx.trace.event(
            "the reply reports another address than the one the front connected from: not judged",
        );
    }
    Ok(())
}

/// One malformed request of [`malformed`]: what it is, a greeting sent first (its answer read
/// before going on), and the bytes.
struct Malformed(&'static str, Option<Vec<u8>>, Vec<u8>);

async fn malformed(mut cx: Ctx) -> Result<(), Stop> {
    let front = front(&cx)?;
    let port = cx.dest.port();
    // A greeting goes first where one is needed, and its answer is read before the request,
    // so that a front that parses one read per message is not judged here: split-handshake is.
    let bad: Vec<Malformed> = if front.is_socks5() {
        let mut unknown_type = vec![5, 1, 0, 9];
        unknown_type.extend_from_slice(&[1, 2, 3, 4]);
        unknown_type.extend_from_slice(&port.to_be_bytes());
        vec![
            Malformed(
                "a SOCKS4 greeting",
                None,
                vec![4, 1, 0, 80, 127, 0, 0, 1, 0],
            ),
            Malformed(
                "an address type 9 (after a no-authentication greeting)",
                Some(vec![5, 1, 0]),
                unknown_type,
            ),
        ]
    } else {
        let mut garbage = vec![
            0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00, 0x00, 0xa1, 0x03, 0x03,
        ];
        garbage.extend((0u8..=255).rev());
        garbage.extend_from_slice(b"\r\n\r\n");
        vec![
            Malformed(
                "a request line that is not one",
                None,
                b"HELLO\x00\xff\r\n\r\n".to_vec(),
            ),
            Malformed(
                "a CONNECT target without a port",
                None,
                b"CONNECT 127.0.0.1 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".to_vec(),
            ),
            Malformed(
                "a version that is not HTTP's",
                None,
                format!("CONNECT 127.0.0.1:{port} HTXP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n")
                    .into_bytes(),
            ),
            Malformed("binary garbage (a TLS ClientHello's start)", None, garbage),
        ]
    };
    let needs_credentials = front.credentials().is_some() && front.is_socks5();
    for Malformed(what, greeting, bytes) in bad {
        if needs_credentials && greeting.is_some() {
            continue; // the greeting offers no authentication
        }
        let mut client = cx.connect_only().await?;
        if let Some(greeting) = greeting {
            client.write_all(&greeting).await.ok();
            if read_exact_within(&mut client, 2, PROMPT).await.is_err() {
                return Err(Failure::new(
                    format!("the front answers the greeting before {what}"),
                    format!("no method selection within {} s", PROMPT.as_secs()),
                )
                .into());
            }
        }
        // The front may answer and close before it has read everything: a failed write is fine.
        let _ = client.write_all(&bytes).await;
        if !front.is_socks5() {
            if let Some(status) = http_error_answer(&mut client).await {
                cx.trace.event(format_args!("{what}: answered {status}"));
                continue;
            }
        }
        if wait_end(&mut client, PROMPT).await.is_none() {
            return Err(Failure::new(
                format!(
                    "{what} gets an answer and a close within {} s",
                    PROMPT.as_secs()
                ),
                "the connection stayed open",
            )
            .hint("the front waits for more instead of rejecting what it cannot parse")
            .into());
        }
        cx.trace.event(format_args!("{what}: closed"));
    }
    echo_works(&mut cx, "malformed requests").await
}

/// The status line of an HTTP error answer (4xx or 5xx) that arrives within PROMPT, if one
/// does; `None` for a close, silence or anything else, which the caller then judges by the
/// close alone.
async fn http_error_answer(client: &mut tokio::net::TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let reading = async {
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n") && head.len() < 1024 {
            match client.read(&mut byte).await {
                Ok(1) => head.push(byte[0]),
                _ => return,
            }
        }
    };
    let _ = tokio::time::timeout(PROMPT, reading).await;
    let line = String::from_utf8_lossy(&head).trim().to_string();
    let code: u16 = line.split_whitespace().nth(1)?.parse().ok()?;
    (line.starts_with("HTTP/1.") && (400..600).contains(&code)).then_some(line)
}
