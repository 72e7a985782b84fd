//! Front cases about the answers a front gives when it will not, or cannot, connect: a
//! refused destination, a destination that never answers the dial, a command it does not serve.

use std::time::Duration;

use super::{close_limit, echo_works, front, is_refusal, SOCKS5_CLOSE};
use crate::case::{Case, Level};
use crate::front::{Refused, Style};
use crate::harness::{Ctx, PROMPT};
use crate::net::wait_end;
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

pub static UNANSWERED_DIAL: Case = Case {
    id: "front/unanswered-dial",
    name: "Destination that never answers",
    requirement: "When the requested destination never answers the dial (its SYNs go unanswered), a front MUST NOT make other clients wait for it (R3), and MUST give up within about the stall timeout with a failure answer (SOCKS5 0x04 host unreachable, 0x06 TTL expired or 0x01 general failure; HTTP 502, 503 or 504), never success and never a refusal (0x05: nothing refused), then close the client's connection (SOCKS5 within 10 s, RFC 1928 §6; HTTP as front/refused allows).",
    rules: &[Rule::R13, Rule::R3, Rule::R7],
    level: Level::Must,
    alone: false,
    assumes: "On loopback only: the destination is a listener of tprox's with a backlog of 0 whose accept queue tprox fills first, so that Linux drops the SYNs that follow. A normal echo works within PROMPT (5 s) while the dial hangs; the answer comes within 1.5 T + PROMPT of the request.",
    body: |cx| Box::pin(unanswered_dial(cx)),
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

/// A loopback listener that answers no SYN: a backlog of 0, its accept queue filled by
/// connections of tprox's own, which it holds. Linux drops a SYN for a listener whose accept
/// queue is full (with net.ipv4.tcp_abort_on_overflow at its default, 0), so a dial to it
/// neither succeeds nor fails until the dialer gives up.
struct Unanswering {
    addr: std::net::SocketAddr,
    _listener: socket2::Socket,
    _queued: Vec<tokio::net::TcpStream>,
}

impl Unanswering {
    async fn open() -> Result<Self, String> {
        use socket2::{Domain, Protocol, Socket, Type};
        let listener = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))
            .and_then(|socket| {
                socket.bind(&std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into())?;
                socket.listen(0)?;
                Ok(socket)
            })
            .map_err(|e| format!("cannot open a listener with a backlog of 0: {e}"))?;
        let addr = listener
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .ok_or("the listener has no address")?;
        let mut queued = Vec::new();
        // Filled one connection at a time until the kernel says it is full, rather than until
        // a dial is slow: on a loaded machine a dial that would have completed can be slow too.
        for _ in 0..8 {
            match tokio::time::timeout(PROMPT, tokio::net::TcpStream::connect(addr)).await {
                Ok(Ok(stream)) => queued.push(stream),
                Ok(Err(e)) => return Err(format!("a dial to fill the accept queue failed: {e}")),
                Err(_) => break,
            }
            // The connection joins the queue when the listener's side has the handshake's
            // last ACK, a moment after the dialer returns.
            for _ in 0..100 {
                if accept_queue_full(&listener) {
                    return Ok(Unanswering {
                        addr,
                        _listener: listener,
                        _queued: queued,
                    });
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        Err("the accept queue of a listener with a backlog of 0 did not fill up (is net.ipv4.tcp_abort_on_overflow set?)".into())
    }
}

/// Whether Linux takes `listener`'s accept queue for full, so that it drops the next SYN. For
/// a listening socket, TCP_INFO's `tcpi_unacked` is the queue's length and `tcpi_sacked` its
/// limit (the backlog); the queue is full once the length exceeds the limit.
fn accept_queue_full(listener: &socket2::Socket) -> bool {
    use std::os::fd::AsRawFd;
    // SAFETY: tcp_info is plain data, for which all zeroes is a valid value.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: `info` and `len` describe a buffer of the right size, and the descriptor is
    // `listener`'s own, open for the whole call.
    let got = unsafe {
        libc::getsockopt(
            listener.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    got == 0 && info.tcpi_unacked > info.tcpi_sacked
}

async fn unanswered_dial(mut cx: Ctx) -> Result<(), Stop> {
    let front = front(&cx)?;
    let unanswering = Unanswering::open().await.map_err(Stop::Skip)?;
    cx.trace.event(format_args!(
        "{} accepts no more connections: its accept queue is full",
        unanswering.addr
    ));
    let mut client = cx.connect_only().await?;
    let asked = tokio::time::Instant::now();
    let front_for_dial = front.clone();
    let target = unanswering.addr;
    let answer = tokio::spawn(async move {
        let answer = front_for_dial.handshake(&mut client, target).await;
        (client, answer, tokio::time::Instant::now())
    });
    // The answer that is pending must not hold anyone else up: a normal client is served
    // before it comes.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let early = answer.is_finished();
    echo_works(&mut cx, "a request whose dial hangs").await?;
    let served = tokio::time::Instant::now();
    let latest = cx.stall.mul_f64(crate::cases::timeout::LATEST) + PROMPT;
    let left = (asked + latest).saturating_duration_since(tokio::time::Instant::now());
    let expected = if front.is_socks5() {
        "SOCKS5 reply 0x04, 0x06 or 0x01"
    } else {
        "HTTP 502, 503 or 504"
    };
    let (mut client, answer, answered) = match tokio::time::timeout(left, answer).await {
        Ok(Ok(done)) => done,
        Ok(Err(_)) => return Err(Stop::Skip("the handshake's task failed".into())),
        Err(_) => {
            return Err(Failure::new(
                format!(
                    "a request whose dial never completes is answered with {expected} within {:.1} s (1.5 T + PROMPT)",
                    latest.as_secs_f64()
                ),
                "no answer",
            )
            .hint("the front dials without a timeout of its own: the system's gives up only after about two minutes of SYN retries")
            .into())
        }
    };
    let after = (answered - asked).as_secs_f64();
    if !early && answered < served {
        return Err(Failure::new(
            "a normal client is served while another's dial hangs",
            format!(
                "it was served only {:.2} s after the front gave up on that dial, {after:.2} s after the request",
                (served - answered).as_secs_f64()
            ),
        )
        .hint("the front dials in its accept loop, or in a pool that a hanging dial holds: one dial that never completes holds up every client")
        .into());
    }
    cx.trace
        .event("a normal client was served while the dial hung");
    let may_stay_open = match answer {
        Ok(()) => {
            return Err(Failure::new(
                format!("a request whose dial never completes is answered with {expected}"),
                format!("it was answered success after {after:.2} s"),
            )
            .hint("the front answers before it has connected: success must mean connected")
            .into())
        }
        Err(Refused::Answered { code, text, head })
            if (front.is_socks5() && matches!(code, 0x01 | 0x04 | 0x06))
                || (!front.is_socks5() && matches!(code, 502..=504)) =>
        {
            cx.trace
                .event(format_args!("the front answered {text} after {after:.2} s"));
            crate::front::http_may_persist(&head)
        }
        Err(Refused::Answered { text, .. }) => return Err(Failure::new(
            format!("a request whose dial never completes is answered with {expected}"),
            format!("it was answered {text} after {after:.2} s"),
        )
        .hint("the front gives a timed-out dial the answer of another failure: nothing refused it")
        .into()),
        Err(Refused::Broken(why)) => {
            return Err(Failure::new(
                format!("a request whose dial never completes is answered with {expected}"),
                format!("{why}, after {after:.2} s"),
            )
            .hint("the front closes without telling the client why")
            .into())
        }
    };
    if !may_stay_open && wait_end(&mut client, close_limit(&front)).await.is_none() {
        return Err(Failure::new(
            format!(
                "the client's connection is closed within {} s of the failure answer",
                close_limit(&front).as_secs()
            ),
            "it stayed open",
        )
        .hint("RFC 1928 §6: after a failure reply the SOCKS server must close the connection, within 10 s")
        .into());
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::front::{socks5_meaning, Front};

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
