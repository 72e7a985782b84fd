//! Front: what a SOCKS5 or HTTP CONNECT proxy owes its clients in the handshake itself (R13).
//!
//! These cases run only with `--front`: every other case already runs through the handshake
//! unchanged. Here tprox writes the handshake in the awkward ways real clients do (a byte at a
//! time, data right behind the request, a refused or forbidden request, garbage) and judges the
//! answer.

use std::time::Duration;

use tokio::io::AsyncWriteExt;

use crate::front::{Front, Style};
use crate::harness::{accept_carrying, Ctx, PROMPT};
use crate::net::{read_exact_within, show, spawn_echo};
use crate::outcome::{Failure, Stop};

mod credentials;
mod refusal;
mod requests;
mod stuck;

pub use credentials::BAD_CREDENTIALS;
pub use refusal::{REFUSED, UNANSWERED_DIAL, UNSUPPORTED_COMMAND};
pub use requests::{ADDRESS_TYPES, BOUND_ADDRESS, EARLY_DATA, MALFORMED, SPLIT};
pub use stuck::MID_HANDSHAKE;

fn front(cx: &Ctx) -> Result<Front, Stop> {
    cx.front()
        .cloned()
        .ok_or_else(|| Stop::Skip("not a front (run with --front)".into()))
}

/// A normal pair through the front: the echo of a short message, so a case can show the
/// front still serves.
async fn echo_works(cx: &mut Ctx, after: &str) -> Result<(), Stop> {
    let client = normal_client(cx, after).await?;
    echo_through(cx, client, after).await
}

/// A normal client through the front, its handshake done, for the echo `after` something.
async fn normal_client(cx: &Ctx, after: &str) -> Result<tokio::net::TcpStream, Stop> {
    cx.connect().await.map_err(|f| {
        Failure::new(format!("after {after}, {}", f.expected), f.observed)
            .hint("the front stopped serving")
            .into()
    })
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
