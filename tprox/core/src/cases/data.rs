//! Data: every byte value and awkward message sizes arrive unchanged (R1).

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;

use crate::case::{Case, Level};
use crate::harness::{Ctx, PROMPT};
use crate::net::{expect_stream, Mismatch};
use crate::outcome::{Failure, Stop};
use crate::rules::Rule;

pub static BINARY: Case = Case {
    id: "data/binary",
    name: "Binary data in odd sizes",
    requirement: "Every byte value MUST arrive unchanged, in messages of any size: NUL, newlines and high bytes are data like any other.",
    rules: &[Rule::R1],
    level: Level::Must,
    alone: false,
    assumes: "Each response comes back within PROMPT (5 s).",
    body: |cx| Box::pin(binary(cx)),
};

/// Message sizes after the 256-byte message of all values: odd, around buffer boundaries, and
/// beyond 64 KiB.
const SIZES: [usize; 9] = [1, 2, 3, 255, 1023, 4097, 16385, 65537, 100_003];

async fn binary(mut cx: Ctx) -> Result<(), Stop> {
    let mut messages = vec![(0..=255u8).collect::<Vec<u8>>()];
    messages.extend(SIZES.iter().map(|&size| cx.payload(size)));
    let (client, server) = cx.open_pair().await?;
    // Request and response, as protocols go: the server checks each whole message before it
    // answers with the same bytes, so a change made on the way there and undone on the way
    // back is seen, and the outcome never depends on how the proxy's reads happen to split a
    // message (a proxy that forwards only one direction at a time fails every time, at the
    // first message larger than one of its reads).
    let (mut server_rx, mut server_tx) = server.into_split();
    let answers = messages.clone();
    let server = tokio::spawn(async move {
        for (i, message) in answers.iter().enumerate() {
            expect_stream(&mut server_rx, message, PROMPT)
                .await
                .map_err(|m| (i, m))?;
            if server_tx.write_all(message).await.is_err() {
                return Ok(());
            }
        }
        // Nothing after the last message.
        nothing_more(&mut server_rx)
            .await
            .map_err(|m| (answers.len(), m))?;
        Ok::<(), (usize, Mismatch)>(())
    });
    let (mut rx, mut tx) = client.into_split();
    for (i, message) in messages.iter().enumerate() {
        let what = describe(message);
        let written = timeout(PROMPT, tx.write_all(message)).await;
        let answer = match written {
            Ok(Ok(())) => expect_stream(&mut rx, message, PROMPT).await,
            _ => Err(Mismatch::Stalled {
                received: 0,
                idle: PROMPT,
            }),
        };
        if let Err(at_client) = answer {
            // Where the message was lost or changed: on the way to the server, or back.
            let at_server = timeout(PROMPT, server).await;
            let (observed, mismatch) = match &at_server {
                Ok(Ok(Err((j, m)))) if *j == i => (format!("at the server, {m}"), m),
                Ok(Ok(_)) => (
                    format!("the server got it intact; at the client, {at_client}"),
                    &at_client,
                ),
                _ => (format!("at the client, {at_client}"), &at_client),
            };
            return Err(Failure::new(
                format!("{what} reaches the server and comes back unchanged"),
                observed,
            )
            .hint(hint(mismatch))
            .into());
        }
        cx.trace.event(format_args!(
            "{} byte(s) there and back intact",
            message.len()
        ));
    }
    // Nothing may follow the last message, either way.
    let trailing = match nothing_more(&mut rx).await {
        Err(m) => Some(format!(
            "after the last answer, the client received {}",
            more(&m)
        )),
        Ok(()) => match timeout(PROMPT, server).await {
            Ok(Ok(Err((_, m)))) => Some(format!(
                "after the last message, the server received {}",
                more(&m)
            )),
            _ => None,
        },
    };
    if let Some(observed) = trailing {
        return Err(Failure::new("nothing but the messages arrives, either way", observed)
            .hint("the proxy writes more than it read: a whole buffer instead of the bytes the read returned")
            .into());
    }
    Ok(())
}

fn describe(message: &[u8]) -> String {
    if message.len() == 256 {
        "the 256 byte values 0x00..0xff".to_string()
    } else {
        format!("a {}-byte random message", message.len())
    }
}

fn hint(mismatch: &Mismatch) -> &'static str {
    match mismatch {
        Mismatch::Stalled { .. } => {
            "the proxy stops forwarding one direction while it waits on the other (one thread \
             alternating between the sides), or loses what it could not write at once"
        }
        _ => {
            "the proxy treats data as text: C string functions stop at a NUL byte, line-based \
             reads stop at newlines, and character conversions alter high bytes"
        }
    }
}

/// How long a reader waits for bytes that should not come.
const SETTLE: std::time::Duration = std::time::Duration::from_millis(200);

/// Ok when nothing more arrives within [`SETTLE`] (the stream may also end); the bytes that came
/// otherwise. Whether the proxy passes EOF on is other cases' business.
async fn nothing_more<R: AsyncRead + Unpin>(reader: &mut R) -> Result<(), Mismatch> {
    let mut buf = [0u8; 4096];
    match timeout(SETTLE, reader.read(&mut buf)).await {
        Ok(Ok(n)) if n > 0 => Err(Mismatch::Extra { received: n }),
        _ => Ok(()),
    }
}

/// The bytes that [`nothing_more`] found, in words.
fn more(mismatch: &Mismatch) -> String {
    match mismatch {
        Mismatch::Extra { received } => format!("{received} more byte(s)"),
        other => other.to_string(),
    }
}
