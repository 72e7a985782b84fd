//! Connect: the destination speaks first, or cannot be reached (R8).

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::case::{Case, Level};
use crate::harness::{connect_client, Asked, Ctx, Dialing, PROMPT};
use crate::net::{read_exact_within, show, spawn_echo, wait_end};
use crate::outcome::{Failure, Stop};
use crate::rules::Rule;

pub static SERVER_FIRST: Case = Case {
    id: "connect/server-first",
    name: "Server speaks first",
    requirement: "Data the destination sends before the client sends anything (a greeting) MUST be forwarded to the client.",
    rules: &[Rule::R8, Rule::R1],
    level: Level::Must,
    alone: false,
    assumes: "The proxy dials the destination when the client connects, and the greeting arrives within PROMPT (5 s). Never primed: who speaks first is what this case checks.",
    body: |cx| Box::pin(server_first(cx)),
};

pub static REFUSED: Case = Case {
    id: "connect/refused",
    name: "Destination refuses",
    requirement: "When the connection to the destination cannot be made, the proxy MUST close the client's connection promptly and go on serving.",
    rules: &[Rule::R8, Rule::R11],
    level: Level::Must,
    alone: false,
    assumes: "The client's connection is closed within PROMPT (5 s). A proxy that dials only once the client speaks is sent a primer first. Through an HTTP front, a refusal that delimits its body and does not say Connection: close may leave the connection open for another request, as HTTP/1.1 allows (see front/refused).",
    body: |cx| Box::pin(refused(cx)),
};

async fn server_first(cx: Ctx) -> Result<(), Stop> {
    // Never primed: who speaks first is what this case is about.
    let mut client = cx.connect().await?;
    let mut server = own_connection(&cx).await.map_err(|failure| {
        if cx.dialing() == Dialing::OnClientData {
            Failure::new(
                "the proxy connects to the destination when the client connects, so that a destination that speaks first is heard",
                format!("no connection reached the destination within {} s while the client sent nothing", PROMPT.as_secs()),
            )
            .hint("the proxy dials the destination only after the client sends data: a server that speaks first (SMTP, FTP, SSH, MySQL) is never heard")
        } else {
            failure
        }
    })?;
    let greeting = b"220 tprox destination ready\r\n";
    server.write_all(greeting).await.map_err(|e| {
        Failure::new(
            "the destination can send its greeting",
            format!("the write failed: {e}"),
        )
    })?;
    cx.trace
        .event("server sent its greeting; the client sends nothing");
    let got = read_exact_within(&mut client, greeting.len(), PROMPT).await.map_err(|short| {
        Failure::new(
            format!("the client receives the greeting {} without sending anything first", show(greeting)),
            format!("the client received {short}"),
        )
        .hint("the proxy waits for the client to send first (reading the client before the server), or dials the destination only when the client sends data")
    })?;
    if got != greeting {
        return Err(Failure::new(
            format!("the client receives {}", show(greeting)),
            format!("it received {}", show(&got)),
        )
        .into());
    }
    Ok(())
}

/// Accepts the connection the proxy opened for this case's silent client. One that ends at
/// once is a stale one (the readiness probe's, whose client has gone, forwarded late by a slow
/// proxy) and is passed over; the case's own stays open and silent, so nothing is lost.
async fn own_connection(cx: &Ctx) -> Result<TcpStream, Failure> {
    let mut passed_over = 0;
    loop {
        let mut server = match cx.accept().await {
            Ok(server) => server,
            Err(_) if passed_over > 0 => {
                return Err(Failure::new(
                    "the proxy keeps its connection to the destination open while the client is connected",
                    format!("{passed_over} connection(s) reached the destination and ended at once, and no other came"),
                )
                .hint("the proxy closes its destination connection when the client has sent nothing"))
            }
            Err(failure) => return Err(failure),
        };
        match wait_end(&mut server, STALE_CHECK).await {
            Some(ended) if ended.bytes == 0 => {
                passed_over += 1;
                cx.trace
                    .event("passed over a connection that ended at once (a stale one)");
            }
            _ => return Ok(server),
        }
    }
}

/// How long a just-accepted connection is watched for an end that marks it stale.
const STALE_CHECK: std::time::Duration = std::time::Duration::from_millis(100);

async fn refused(mut cx: Ctx) -> Result<(), Stop> {
    cx.dest.close();
    cx.trace.event("destination stopped listening");
    // The destination stays closed until the client has seen the close: the proxy may accept
    // and dial at any moment after the client's connect returns.
    let connected = timeout(PROMPT, connect_client(cx.proxy_addr(), &cx.dest)).await;
    let closed = match connected {
        Ok(Ok(mut client)) => {
            cx.trace.event(format_args!(
                "client connected from {}",
                client
                    .local_addr()
                    .map(|a| a.to_string())
                    .unwrap_or_default()
            ));
            // A proxy that dials only once the client speaks must be given something to say; a
            // front is asked for the destination, and its refusal (said in the trace) is
            // followed by the close like any other's.
            let asked = cx.ask(&mut client).await;
            if let Asked::Refused {
                may_stay_open: true,
                ..
            } = asked
            {
                // An HTTP front may keep its connection for another request after a refusal
                // that delimits its body (RFC 9112 §9.3; front/refused says more): the refusal
                // is the answer, and the front dialed nothing.
                cx.trace.event("the front's refusal lets it keep the connection for another request, as HTTP/1.1 allows");
                let reopened = cx.dest.reopen().await;
                return serve_after(&mut cx, reopened).await;
            }
            wait_end(&mut client, PROMPT).await.map(|ended| {
                if let (Asked::Refused { .. }, 1..) = (&asked, ended.bytes) {
                    // An HTTP front's refusal comes with an error page: not data of the
                    // destination's. Whether the reply itself is right is front/refused's.
                    cx.trace.event(format_args!(
                        "the front's refusal carried {} byte(s) of body",
                        ended.bytes
                    ));
                    (0, ended.end.to_string())
                } else {
                    (ended.bytes, ended.end.to_string())
                }
            })
        }
        // Refusing the client outright is a prompt close too.
        Ok(Err(e)) => Some((0, format!("a failed connect ({e})"))),
        Err(_) => {
            cx.trace.event(format_args!(
                "the client's connect to the proxy did not complete within {} s",
                PROMPT.as_secs()
            ));
            None
        }
    };
    if closed.is_none() {
        taken_by_another(&cx).await?;
    }
    let reopened = cx.dest.reopen().await;
    match closed {
        Some((0, how)) => cx.trace.event(format_args!("client saw {how}")),
        Some((bytes, how)) => {
            return Err(Failure::new(
                "the client's connection is closed, with no data",
                format!("the client read {bytes} byte(s), then {how}"),
            )
            .into())
        }
        None => {
            return Err(Failure::new(
                format!("the client's connection is closed within {} s when the destination refuses", PROMPT.as_secs()),
                "it stayed open",
            )
            .hint("the proxy ignores a failed connect to the destination: it must close the client's connection")
            .into())
        }
    }
    serve_after(&mut cx, reopened).await
}

/// Whether the refusal really happened, for a case whose proxy did not act on it: a
/// connection to the closed destination port that succeeds means another program listens
/// there, and the proxy's dial did not fail at all. The case is then skipped with the reason.
pub(crate) async fn taken_by_another(cx: &Ctx) -> Result<(), Stop> {
    let port = std::net::SocketAddr::from(([127, 0, 0, 1], cx.dest.port()));
    match timeout(std::time::Duration::from_secs(1), TcpStream::connect(port)).await {
        Ok(Ok(_)) => {
            cx.trace.event(format_args!(
                "the closed destination port {port} accepts connections: another program listens on it"
            ));
            return Err(Stop::Skip(format!(
                "the destination port {port} was taken by another program while it was closed, so the proxy's dial did not fail"
            )));
        }
        Ok(Err(e)) => cx.trace.event(format_args!(
            "connecting to the closed destination port: {e}"
        )),
        Err(_) => cx
            .trace
            .event("connecting to the closed destination port did not complete within 1 s"),
    }
    Ok(())
}

/// After the refusal the proxy must go on serving: a normal echo must work.
async fn serve_after(cx: &mut Ctx, reopened: std::io::Result<()>) -> Result<(), Stop> {
    reopened.map_err(|e| {
        Stop::Skip(format!(
            "the destination port could not be listened on again: {e}"
        ))
    })?;
    let (mut client, server) = cx.open_pair().await.map_err(|f| {
        Failure::new(
            format!("after a refused destination, {}", f.expected),
            f.observed,
        )
        .hint("the proxy stopped serving after failing to reach the destination")
    })?;
    spawn_echo(server);
    let message = cx.text(8);
    client.write_all(&message).await.ok();
    match read_exact_within(&mut client, message.len(), PROMPT).await {
        Ok(echo) if echo == message => Ok(()),
        Ok(echo) => Err(Failure::new(
            "a normal echo works after the refusal",
            format!("it came back as {}", show(&echo)),
        )
        .into()),
        Err(short) => Err(Failure::new(
            "a normal echo works after the refusal",
            format!("received {short}"),
        )
        .into()),
    }
}
