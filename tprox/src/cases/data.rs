//! Data: every byte value and awkward message sizes arrive unchanged (R1).

use tokio::io::AsyncWriteExt;

use crate::case::{Case, Failure, Level, Stop};
use crate::harness::{Ctx, PROMPT};
use crate::net::{expect_stream, spawn_checked_echo, StreamCheck};
use crate::rules::Rule;

pub static BINARY: Case = Case {
    id: "data/binary",
    name: "Binary data in odd sizes",
    requirement: "Every byte value MUST arrive unchanged, in messages of any size: NUL, newlines and high bytes are data like any other.",
    rules: &[Rule::R1],
    level: Level::Must,
    alone: false,
    body: |cx| Box::pin(binary(cx)),
};

/// Message sizes after the 256-byte message of all values: odd, around buffer boundaries, and
/// beyond 64 KiB.
const SIZES: [usize; 9] = [1, 2, 3, 255, 1023, 4097, 16385, 65537, 100_003];

async fn binary(mut cx: Ctx) -> Result<(), Stop> {
    let mut messages = vec![(0..=255u8).collect::<Vec<u8>>()];
    messages.extend(SIZES.iter().map(|&size| cx.payload(size)));
    let (client, server) = cx.open_pair().await?;
    // The server checks what it receives: a change made on the way there and undone on the
    // way back would pass an echo unnoticed.
    let at_server = StreamCheck::new(messages.concat().into());
    spawn_checked_echo(server, at_server.clone());
    let (mut rx, mut tx) = client.into_split();
    for message in messages {
        let sent = message.clone();
        let writer = tokio::spawn(async move {
            let _ = tx.write_all(&sent).await;
            tx
        });
        let result = expect_stream(&mut rx, &message, PROMPT).await;
        tx = match writer.await {
            Ok(tx) => tx,
            Err(_) => return Err(Failure::new("the client can write", "the writer stopped").into()),
        };
        let result = match at_server.mismatch() {
            Some(m) => Err(format!(
                "what the server received differs from what the client sent: {m}"
            )),
            None => result.map_err(|m| m.to_string()),
        };
        result.map_err(|m| {
            let what = if message.len() == 256 {
                "the 256 byte values 0x00..0xff".to_string()
            } else {
                format!("a {}-byte random message", message.len())
            };
            Failure::new(format!("{what} reaches the server and echoes back unchanged"), m).hint(
                "the proxy treats data as text: C string functions stop at a NUL byte, line-based reads \
                 stop at newlines, and character conversions alter high bytes",
            )
        })?;
        cx.trace
            .event(format_args!("{} byte(s) echoed intact", message.len()));
    }
    Ok(())
}
