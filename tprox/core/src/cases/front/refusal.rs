//! Front cases about the answers a front gives when it will not, or cannot, connect: a
//! refused destination, a destination that never answers the dial, a command it does not serve.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::time::Duration;

use super::{
    close_limit, echo_through, echo_works, front, is_refusal, normal_client, SOCKS5_CLOSE,
};
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
    assumes: "On loopback only: the destination is a listener of tprox's with a backlog of 0 whose accept queue tprox fills first, so that Linux drops the SYNs that follow. A normal echo works within PROMPT (5 s) while the dial hangs: its echo reaches tprox before the front's answer does, by the kernel's record of what each socket received and when (TCP_INFO), not by tprox's clock, which a loaded machine skews; the answer comes within 1.5 T + PROMPT of the request.",
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
    tcp_info(listener.as_fd()).is_ok_and(|info| info.tcpi_unacked > info.tcpi_sacked)
}

/// The kernel's TCP_INFO of the socket `fd`.
fn tcp_info(fd: BorrowedFd<'_>) -> std::io::Result<libc::tcp_info> {
    // SAFETY: tcp_info is plain data, for which all zeroes is a valid value.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: `info` and `len` describe a buffer of the right size, and `fd` is open for the
    // whole call, as its borrow says.
    let got = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    if got == 0 {
        Ok(info)
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Which came first to tprox's sockets: the normal client's echo, or the front's answer to the
/// request whose dial hung. tprox's own clock cannot tell: the two are read by different tasks,
/// and on a loaded machine a task that is woken late reads its clock late, so a serial front
/// that answers the hung request and serves the waiting client in the same millisecond could
/// be taken either way. The kernel counts the bytes each socket has received
/// (`tcpi_bytes_received`) and notes when the last of them came (`tcpi_last_data_recv`), as
/// they come.
enum Order {
    /// The echo was in before the answer: the client was served while the dial hung.
    EchoFirst,
    /// The answer came first, or too near the echo to tell; by about this long.
    AnswerFirst(Duration),
}

/// What the request's socket and the normal client's had received, read right after the echo.
struct AtEcho {
    /// The request's socket: bytes so far (a SOCKS5 front's method reply among them) and when
    /// the last came.
    dialing: Received,
    /// When the echo came.
    echo: Arrival,
}

impl AtEcho {
    fn read(normal: BorrowedFd<'_>, dialing: BorrowedFd<'_>) -> std::io::Result<Self> {
        let dialing = received(dialing)?;
        let echo = received(normal)?
            .last
            .ok_or_else(|| std::io::Error::other("the echo left no trace in its socket"))?;
        Ok(AtEcho { dialing, echo })
    }

    /// The order, given how many bytes the request's socket held once the answer was read:
    /// more than at the echo means the answer was still to come then. Otherwise the socket's
    /// last data at the echo was the answer's, and the kernel's times of the two decide.
    fn order(&self, answered_bytes: u64) -> Order {
        match &self.dialing.last {
            Some(answer) if self.dialing.bytes >= answered_bytes => {
                if self.echo.end() < answer.start {
                    Order::EchoFirst
                } else {
                    Order::AnswerFirst(self.echo.start.saturating_duration_since(answer.start))
                }
            }
            _ => Order::EchoFirst,
        }
    }
}

/// The kernel's clock counts in ticks of up to 10 ms (HZ = 100, the coarsest Linux has).
const TICK: Duration = Duration::from_millis(10);

/// What a socket has received so far.
struct Received {
    bytes: u64,
    /// When the last data came; `None` when none has.
    last: Option<Arrival>,
}

/// When the last data reached a socket, on tprox's clock: within `start..start + width`.
struct Arrival {
    start: std::time::Instant,
    width: Duration,
}

impl Arrival {
    fn end(&self) -> std::time::Instant {
        self.start + self.width
    }
}

/// What `fd` has received so far. The kernel says how long ago the last data came, so the
/// moment is the clock read around the call less that, give or take a tick; a read that took
/// long (tprox preempted in it) is read again, up to ten times, for a narrow window.
fn received(fd: BorrowedFd<'_>) -> std::io::Result<Received> {
    let mut best = read_received(fd)?;
    for _ in 1..10 {
        if best.1 < Duration::from_millis(1) {
            break;
        }
        let again = read_received(fd)?;
        if again.1 < best.1 {
            best = again;
        }
    }
    Ok(best.0)
}

/// One read of what `fd` has received, and how long the read took.
fn read_received(fd: BorrowedFd<'_>) -> std::io::Result<(Received, Duration)> {
    let before = std::time::Instant::now();
    let info = tcp_info(fd)?;
    let took = before.elapsed();
    let ago = Duration::from_millis(u64::from(info.tcpi_last_data_recv));
    let read = Received {
        bytes: info.tcpi_bytes_received,
        last: (info.tcpi_bytes_received > 0).then(|| Arrival {
            start: before.checked_sub(ago + TICK).unwrap_or(before),
            width: took + 2 * TICK,
        }),
    };
    Ok((read, took))
}

async fn unanswered_dial(mut cx: Ctx) -> Result<(), Stop> {
    let front = front(&cx)?;
    let unanswering = Unanswering::open().await.map_err(Stop::Skip)?;
    cx.trace.event(format_args!(
        "{} accepts no more connections: its accept queue is full",
        unanswering.addr
    ));
    let mut client = cx.connect_only().await?;
    // The same socket under a descriptor of the case's own, for the kernel's account of when
    // the answer came, while the handshake's task holds the stream.
    let dialing = client
        .as_fd()
        .try_clone_to_owned()
        .map_err(|e| Stop::Skip(format!("could not duplicate the client's descriptor: {e}")))?;
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
    const AFTER: &str = "a request whose dial hangs";
    let normal = normal_client(&cx, AFTER).await?;
    let normal_fd = normal
        .as_fd()
        .try_clone_to_owned()
        .map_err(|e| Stop::Skip(format!("could not duplicate the client's descriptor: {e}")))?;
    echo_through(&mut cx, normal, AFTER).await?;
    let at_echo = AtEcho::read(normal_fd.as_fd(), dialing.as_fd())
        .map_err(|e| Stop::Skip(format!("could not read the sockets' TCP_INFO: {e}")))?;
    // Closes the normal client, which the echo left open through this descriptor.
    drop(normal_fd);
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
    let answered_bytes = tcp_info(dialing.as_fd())
        .map_err(|e| Stop::Skip(format!("could not read the socket's TCP_INFO: {e}")))?
        .tcpi_bytes_received;
    if let (false, Order::AnswerFirst(gap)) = (early, at_echo.order(answered_bytes)) {
        return Err(Failure::new(
            "a normal client is served while another's dial hangs",
            format!(
                "its echo came only once the front had given up on that dial ({} ms after the answer, by the kernel's clock; {after:.2} s after the request)",
                gap.as_millis()
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
    fn the_kernel_counts_decide_which_came_first() {
        let t0 = std::time::Instant::now();
        let at = |ms: u64| Arrival {
            start: t0 + Duration::from_millis(ms),
            width: 2 * TICK,
        };
        // The request's socket held `bytes`, the last at `last` ms; the echo came at `echo` ms.
        let at_echo = |bytes: u64, last: Option<u64>, echo: u64| AtEcho {
            dialing: Received {
                bytes,
                last: last.map(at),
            },
            echo: at(echo),
        };
        // A SOCKS5 front's method reply came at 0 ms, the echo at 100 ms, the answer later.
        let served_while_dialing = at_echo(2, Some(0), 100);
        assert!(matches!(served_while_dialing.order(12), Order::EchoFirst));
        // A serial front: the whole answer was in before the echo, within the same tick.
        let serial = at_echo(12, Some(2000), 2000);
        assert!(matches!(serial.order(12), Order::AnswerFirst(_)));
        // The answer was in by the time tprox looked, but the kernel had the echo long before.
        let looked_late = at_echo(12, Some(2000), 100);
        assert!(matches!(looked_late.order(12), Order::EchoFirst));
        // Nothing had come on the request's socket at the echo.
        let nothing_yet = at_echo(0, None, 100);
        assert!(matches!(nothing_yet.order(39), Order::EchoFirst));
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
