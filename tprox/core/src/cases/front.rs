//! Front: what a SOCKS5 or HTTP CONNECT proxy owes its clients in the handshake itself (R13).
//!
//! These cases run only with `--front`: every other case already runs through the handshake
//! unchanged. Here tprox writes the handshake in the awkward ways real clients do (a byte at a
//! time, data right behind the request, a refused or forbidden request, garbage) and judges the
//! answer.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::case::{Case, Level};
use crate::front::{Front, Refused, Style};
use crate::harness::{accept_carrying, Ctx, PROMPT};
use crate::net::{read_exact_within, show, spawn_echo, wait_end};
use crate::outcome::{Failure, Stop};
use crate::rules::Rule;

pub static REFUSED: Case = Case {
    id: "front/refused",
    name: "Refused destination answered",
    requirement: "When the requested destination refuses the connection, a front MUST answer with its protocol's refusal (SOCKS5 reply 0x05; HTTP 502, 503 or 504), then close the client's connection: a SOCKS5 front within 10 s (RFC 1928 §6). An HTTP front MAY instead keep the connection for the client's next request (RFC 9112 §9.3: HTTP/1.1 connections persist, and a failed CONNECT is an ordinary response) when its answer delimits its body (Content-Length or chunked) and does not say Connection: close.",
    rules: &[Rule::R13, Rule::R8],
    level: Level::Must,
    alone: false,
    assumes: "The answer comes within PROMPT (5 s); a SOCKS5 front closes within 10 s of it, an HTTP front that must close within PROMPT. A front that answers success, or does not answer, is asked whether another program took the closed port meanwhile (a connection to it succeeds): the case is then skipped, as the front's dial did not fail.",
    body: |cx| Box::pin(refused(cx)),
};

pub static BAD_CREDENTIALS: Case = Case {
    id: "front/bad-credentials",
    name: "Credentials checked",
    requirement: "A front that requires credentials MUST reject wrong ones (SOCKS5: a username/password status other than 0, then a close; HTTP: 407 with Proxy-Authenticate) and MUST NOT connect such a client anywhere; and the right ones MUST open the tunnel, the SOCKS5 status starting with version 0x01 (RFC 1929), the HTTP header's name matched without regard to case (RFC 9110 §5.1).",
    rules: &[Rule::R13],
    level: Level::Must,
    alone: false,
    assumes: "Runs when --front gives credentials (KIND:USER:PASS); skipped otherwise. Each answer comes within PROMPT (5 s).",
    body: |cx| Box::pin(bad_credentials(cx)),
};

pub static UNSUPPORTED_COMMAND: Case = Case {
    id: "front/unsupported-command",
    name: "BIND and UDP ASSOCIATE refused",
    requirement: "A SOCKS5 front that serves only CONNECT MUST answer BIND and UDP ASSOCIATE with reply 0x07 (command not supported), or serve them; it MUST NOT leave the client waiting, and after the failure reply MUST close the connection within 10 s (RFC 1928 §6).",
    rules: &[Rule::R13],
    level: Level::Must,
    alone: false,
    assumes: "SOCKS5 only (skipped for HTTP CONNECT). The answer comes within PROMPT (5 s), the close within 10 s of it.",
    body: |cx| Box::pin(unsupported_command(cx)),
};

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

pub static MID_HANDSHAKE: Case = Case {
    id: "front/mid-handshake",
    name: "Clients stuck mid-handshake",
    requirement: "Clients that stop in the middle of their handshake MUST NOT delay any other client (R3), and each MUST be closed once it has been silent for about the stall timeout.",
    rules: &[Rule::R13, Rule::R3, Rule::R7],
    level: Level::Must,
    alone: false,
    assumes: "A normal echo works within PROMPT (5 s) while 20 clients are stuck; each stuck client is closed between 0.5 T and 1.5 T + PROMPT after its last byte (T: the stall timeout).",
    body: |cx| Box::pin(mid_handshake(cx)),
};

fn front(cx: &Ctx) -> Result<Front, Stop> {
    cx.front()
        .cloned()
        .ok_or_else(|| Stop::Skip("not a front (run with --front)".into()))
}

/// A normal pair through the front: the echo of a short message, so a case can show the
/// front still serves.
async fn echo_works(cx: &mut Ctx, after: &str) -> Result<(), Stop> {
    let client = cx.connect().await.map_err(|f| {
        Failure::new(format!("after {after}, {}", f.expected), f.observed)
            .hint("the front stopped serving")
    })?;
    echo_through(cx, client, after).await
}

/// The echo of a short message through `client`, whose handshake is done.
async fn echo_through(
    cx: &mut Ctx,
    mut client: tokio::net::TcpStream,
    after: &str,
) -> Result<(), Stop> {
    let message = cx.text(8);
    client.write_all(&message).await.ok();
    // A front may have dialed for a request it then dropped: the echo's own connection is the
    // one that carries its message.
    let Some((mut server, got)) = accept_carrying(&cx.dest, &message, false, PROMPT).await else {
        return Err(Failure::new(
            format!(
                "after {after}, the front forwards a normal client's message to the destination"
            ),
            format!(
                "no connection carrying it reached the destination within {} s",
                PROMPT.as_secs()
            ),
        )
        .hint("the front stopped serving")
        .into());
    };
    server.write_all(&got).await.ok();
    spawn_echo(server);
    match read_exact_within(&mut client, message.len(), PROMPT).await {
        Ok(echo) if echo == message => Ok(()),
        Ok(echo) => Err(Failure::new(
            format!("after {after}, a normal echo of {} works", show(&message)),
            format!("it came back as {}", show(&echo)),
        )
        .into()),
        Err(short) => Err(Failure::new(
            format!("after {after}, a normal echo works"),
            format!("its echo did not come back: received {short}"),
        )
        .into()),
    }
}

/// How a front case's handshake, written in a style of its own, is judged when it does not
/// open the tunnel: what the handshake is, for the failure, and the usual cause when it is
/// refused or broken, and when it gets no answer.
struct Asking<'a> {
    what: &'a str,
    refused_hint: Option<&'a str>,
    silent_hint: Option<&'a str>,
}

/// A new client whose handshake, written as `style`, opened the tunnel within `limit`; or the
/// failure, said as `asking` says.
async fn tunnel_as(
    cx: &Ctx,
    front: &Front,
    style: &Style,
    limit: Duration,
    asking: Asking<'_>,
) -> Result<tokio::net::TcpStream, Stop> {
    let mut client = cx.connect_only().await?;
    let target = std::net::SocketAddr::from(([127, 0, 0, 1], cx.dest.port()));
    let (failure, hint) =
        match tokio::time::timeout(limit, front.handshake_with(&mut client, target, style)).await {
            Ok(Ok(())) => return Ok(client),
            Ok(Err(refused)) => (
                Failure::new(
                    format!("{} opens the tunnel", asking.what),
                    refused.to_string(),
                ),
                asking.refused_hint,
            ),
            Err(_) => (
                Failure::new(format!("{} is answered", asking.what), "no answer"),
                asking.silent_hint,
            ),
        };
    Err(match hint {
        Some(hint) => failure.hint(hint),
        None => failure,
    }
    .into())
}

/// Whether `code` is the refusal `front`'s protocol gives a refused destination.
fn is_refusal(front: &Front, code: u16) -> bool {
    if front.is_socks5() {
        code == 0x05
    } else {
        matches!(code, 502..=504)
    }
}

async fn refused(mut cx: Ctx) -> Result<(), Stop> {
    let front = front(&cx)?;
    cx.dest.close();
    cx.trace.event("destination stopped listening");
    let mut client = cx.connect_only().await?;
    let target = std::net::SocketAddr::from(([127, 0, 0, 1], cx.dest.port()));
    let answer = tokio::time::timeout(PROMPT, front.handshake(&mut client, target)).await;
    if matches!(answer, Ok(Ok(())) | Err(_)) {
        // A tunnel, or a dial still going on: the port may have been taken by another program
        // while it was closed, and then the front's dial did not fail at all.
        if let Err(skip) = crate::cases::connect::taken_by_another(&cx).await {
            let _ = cx.dest.reopen().await;
            return Err(skip);
        }
    }
    let expected = if front.is_socks5() {
        "SOCKS5 reply 0x05 (connection refused)"
    } else {
        "HTTP 502, 503 or 504"
    };
    let mut may_stay_open = false;
    let verdict = match answer {
        Err(_) => Err(Failure::new(
            format!("the front answers {expected} within {} s", PROMPT.as_secs()),
            "no answer",
        )
        .hint("the front waits for the dial without a timeout, or ignores its failure")),
        Ok(Ok(())) => Err(Failure::new(
            format!("the front answers {expected}"),
            "it answered success for a destination that refused",
        )
        .hint("the front answers before it has connected: success must mean connected")),
        Ok(Err(Refused::Broken(why))) => {
            Err(Failure::new(format!("the front answers {expected}"), why)
                .hint("the front closes without telling the client why"))
        }
        Ok(Err(Refused::Answered { code, text, .. })) if !is_refusal(&front, code) => {
            Err(Failure::new(format!("the front answers {expected}"), text)
                .hint("the front gives every failure the same code"))
        }
        Ok(Err(Refused::Answered { text, head, .. })) => {
            cx.trace.event(format_args!("the front answered {text}"));
            may_stay_open = crate::front::http_may_persist(&head);
            Ok(())
        }
    };
    // Then the client must see the end, unless an HTTP front keeps its connection for more
    // requests: see `http_may_persist`.
    let closed = if may_stay_open {
        cx.trace.event("the answer delimits its body and does not say close: as HTTP/1.1 allows (RFC 9112 §9.3), the front may keep the connection for another request");
        None
    } else {
        wait_end(&mut client, close_limit(&front)).await
    };
    let reopened = cx.dest.reopen().await;
    verdict?;
    if closed.is_none() && !may_stay_open {
        return Err(Failure::new(
            format!(
                "the client's connection is closed within {} s of the refusal",
                close_limit(&front).as_secs()
            ),
            "it stayed open",
        )
        .hint(if front.is_socks5() {
            "RFC 1928 §6: after a failure reply the SOCKS server must close the connection, within 10 s"
        } else {
            "an HTTP front that keeps the connection after an error must delimit the answer's body (Content-Length) and not say Connection: close"
        })
        .into());
    }
    reopened.map_err(|e| Stop::Skip(format!("the destination could not listen again: {e}")))?;
    echo_works(&mut cx, "a refused destination").await
}

/// How long a front may take to close the client after a failure reply: RFC 1928 §6 gives a
/// SOCKS server 10 s; an HTTP front closes at once or not at all (`http_may_persist`).
fn close_limit(front: &Front) -> Duration {
    if front.is_socks5() {
        SOCKS5_CLOSE
    } else {
        PROMPT
    }
}

/// RFC 1928 §6: "the SOCKS server MUST terminate the TCP connection shortly after sending
/// the reply. This must be no more than 10 seconds after detecting the condition that caused
/// a failure."
const SOCKS5_CLOSE: Duration = Duration::from_secs(10);

async fn bad_credentials(mut cx: Ctx) -> Result<(), Stop> {
    let front = front(&cx)?;
    let Some((user, pass)) = front.credentials().cloned() else {
        return Err(Stop::Skip(
            "the front was given no credentials (run with --front KIND:USER:PASS)".into(),
        ));
    };
    let style = Style {
        credentials: Some((user.clone(), format!("{pass}-wrong"))),
        strict: true,
        ..Style::default()
    };
    let mut client = cx.connect_only().await?;
    let target = std::net::SocketAddr::from(([127, 0, 0, 1], cx.dest.port()));
    let answer =
        tokio::time::timeout(PROMPT, front.handshake_with(&mut client, target, &style)).await;
    let expected = if front.is_socks5() {
        "a failed username/password status, then a close"
    } else {
        "407 with a Proxy-Authenticate header"
    };
    match answer {
        Err(_) => {
            return Err(Failure::new(
                format!("a wrong password is answered with {expected}"),
                "no answer",
            )
            .into())
        }
        Ok(Ok(())) => {
            return Err(Failure::new(
                format!("a wrong password is answered with {expected}"),
                "the front opened the tunnel",
            )
            .hint("the front does not check the password")
            .into())
        }
        Ok(Err(Refused::Broken(why))) if front.is_socks5() => {
            // A SOCKS5 front may close without a status; what matters is that it let no one in.
            cx.trace.event(format_args!("the front closed: {why}"));
        }
        Ok(Err(Refused::Broken(why))) => {
            return Err(
                Failure::new(format!("a wrong password is answered with {expected}"), why).into(),
            )
        }
        Ok(Err(Refused::Answered { code, text, head })) => {
            let right = if front.is_socks5() {
                code > 0x100
            } else {
                code == 407
                    && head
                        .lines()
                        .any(|l| l.to_ascii_lowercase().starts_with("proxy-authenticate:"))
            };
            if !right {
                return Err(Failure::new(
                    format!("a wrong password is answered with {expected}"),
                    text,
                )
                .into());
            }
            cx.trace.event(format_args!("the front answered {text}"));
        }
    }
    // No connection to the destination may come of it.
    if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_millis(500), cx.dest.accept()).await {
        return Err(Failure::new(
            "a client with a wrong password is connected nowhere",
            "the front dialed the destination for it",
        )
        .into());
    }
    if front.is_socks5() && wait_end(&mut client, PROMPT).await.is_none() {
        return Err(Failure::new(
            "the client's connection is closed after the failed authentication",
            "it stayed open",
        )
        .into());
    }
    // The right credentials still open the tunnel, checked as strictly as the wrong ones
    // were: RFC 1929's status version, and for HTTP the header's name in lower case, which is
    // the same field (RFC 9110 §5.1).
    let control = Style {
        strict: true,
        lowercase_header: true,
        ..Style::default()
    };
    let login = if front.is_socks5() {
        "the right password"
    } else {
        "the right password, in a header named proxy-authorization"
    };
    let what = format!("{login}, answered as RFC 1929 and RFC 9110 say,");
    let hint = if front.is_socks5() {
        "the username/password status must start with version 0x01 (RFC 1929), not SOCKS's 0x05"
    } else {
        "header names are case-insensitive: proxy-authorization is Proxy-Authorization"
    };
    let asking = Asking {
        what: &what,
        refused_hint: Some(hint),
        silent_hint: None,
    };
    let client = tunnel_as(&cx, &front, &control, PROMPT, asking).await?;
    cx.trace.event(format_args!("{login} opened the tunnel"));
    echo_through(&mut cx, client, &format!("a wrong password and {login}")).await
}

async fn unsupported_command(mut cx: Ctx) -> Result<(), Stop> {
    let front = front(&cx)?;
    if !front.is_socks5() {
        return Err(Stop::Skip("SOCKS5 only: HTTP has no BIND".into()));
    }
    for (command, name) in [(2u8, "BIND"), (3, "UDP ASSOCIATE")] {
        let style = Style {
            command: Some(command),
            ..Style::default()
        };
        let mut client = cx.connect_only().await?;
        let target = std::net::SocketAddr::from(([127, 0, 0, 1], cx.dest.port()));
        let answer =
            tokio::time::timeout(PROMPT, front.handshake_with(&mut client, target, &style)).await;
        match answer {
            Err(_) => {
                return Err(Failure::new(
                    format!("{name} is answered within {} s", PROMPT.as_secs()),
                    "no answer",
                )
                .into())
            }
            // A front that serves the command answers success: that is its right.
            Ok(Ok(())) => cx.trace.event(format_args!("{name} was served")),
            Ok(Err(Refused::Answered { code: 0x07, .. })) => {
                cx.trace.event(format_args!("{name}: reply 0x07"));
                if wait_end(&mut client, SOCKS5_CLOSE).await.is_none() {
                    return Err(Failure::new(
                        format!(
                            "after reply 0x07 to {name}, the front closes the connection within {} s (RFC 1928 §6)",
                            SOCKS5_CLOSE.as_secs()
                        ),
                        "it stayed open",
                    )
                    .hint("every failure reply ends the connection, not only a refused destination's")
                    .into());
                }
            }
            Ok(Err(Refused::Answered { text, .. } | Refused::Broken(text))) => {
                return Err(Failure::new(
                    format!("{name} is answered with reply 0x07 (command not supported)"),
                    text,
                )
                .into())
            }
        }
    }
    echo_works(&mut cx, "BIND and UDP ASSOCIATE").await
}

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

/// Clients left mid-handshake by [`mid_handshake`].
const STUCK: usize = 20;

async fn mid_handshake(mut cx: Ctx) -> Result<(), Stop> {
    let front = front(&cx)?;
    // Half a greeting, or half a request line: each client stops mid-message.
    let partial: &[u8] = if front.is_socks5() {
        &[5, 1]
    } else {
        b"CONNECT 127.0.0.1:"
    };
    let mut stuck = Vec::new();
    for _ in 0..STUCK {
        let mut client = cx.connect_only().await?;
        client.write_all(partial).await.ok();
        stuck.push(client);
    }
    let stopped = tokio::time::Instant::now();
    cx.trace
        .event(format_args!("{STUCK} clients stopped mid-handshake"));
    echo_works(&mut cx, &format!("{STUCK} clients stopped mid-handshake")).await?;
    // Each must be dropped once silent for about the stall timeout.
    let earliest = cx.stall.mul_f64(crate::cases::timeout::EARLIEST);
    let latest = cx.stall.mul_f64(crate::cases::timeout::LATEST) + PROMPT;
    let mut ends = Vec::new();
    for mut client in stuck {
        ends.push(tokio::spawn(async move {
            let mut buf = [0u8; 256];
            loop {
                match client.read(&mut buf).await {
                    Ok(0) | Err(_) => return Some(tokio::time::Instant::now()),
                    // An error answer before the close is fine.
                    Ok(_) => {}
                }
            }
        }));
    }
    let mut worst = Duration::ZERO;
    for end in ends {
        let left = (stopped + latest).saturating_duration_since(tokio::time::Instant::now());
        let ended = tokio::time::timeout(left, end)
            .await
            .ok()
            .and_then(|r| r.ok())
            .flatten();
        let Some(at) = ended else {
            return Err(Failure::new(
                format!(
                    "a client silent mid-handshake is closed within {:.1} s (1.5 T + PROMPT)",
                    latest.as_secs_f64()
                ),
                "it stayed open",
            )
            .hint(
                "the front has no timeout for the handshake: idle clients hold descriptors forever",
            )
            .into());
        };
        let after = at - stopped;
        if after < earliest {
            return Err(Failure::new(
                format!(
                    "a client mid-handshake is given at least {:.1} s (0.5 T)",
                    earliest.as_secs_f64()
                ),
                format!("it was closed after {:.2} s", after.as_secs_f64()),
            )
            .into());
        }
        worst = worst.max(after);
    }
    cx.trace.event(format_args!(
        "every stuck client was closed, the last {:.2} s after it stopped",
        worst.as_secs_f64()
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::front::socks5_meaning;

    #[test]
    fn an_http_front_may_keep_a_connection_only_after_a_delimited_answer() {
        let persist = |head: &str| crate::front::http_may_persist(&head.replace('\n', "\r\n"));
        assert!(persist("HTTP/1.1 502 Bad Gateway\nContent-Length: 12\n\n"));
        assert!(persist(
            "HTTP/1.1 502 Bad Gateway\nTransfer-Encoding: chunked\n\n"
        ));
        assert!(
            !persist("HTTP/1.1 502 Bad Gateway\n\n"),
            "the body runs to the close"
        );
        assert!(!persist(
            "HTTP/1.1 502 Bad Gateway\nContent-Length: 0\nConnection: close\n\n"
        ));
        assert!(!persist("HTTP/1.0 502 Bad Gateway\nContent-Length: 0\n\n"));
        assert!(persist(
            "HTTP/1.0 502 Bad Gateway\nContent-Length: 0\nConnection: Keep-Alive\n\n"
        ));
    }

    #[test]
    fn refusal_codes_follow_each_protocol() {
        let socks = Front::Socks5 { credentials: None };
        let http = Front::Connect { credentials: None };
        assert!(is_refusal(&socks, 0x05));
        assert!(!is_refusal(&socks, 0x01), "{}", socks5_meaning(1));
        assert!(is_refusal(&http, 502) && is_refusal(&http, 504));
        assert!(!is_refusal(&http, 500) && !is_refusal(&http, 200));
    }
}
