//! Data: every byte value and awkward message sizes arrive unchanged (R1).

use tokio::io::AsyncWriteExt;

use crate::case::{Case, Failure, Level, Stop};
use crate::harness::{Ctx, PROMPT};
use crate::net::{expect_stream, spawn_echo};
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
    let (client, server) = cx.open_pair().await?;
    spawn_echo(server);
    let (mut rx, mut tx) = client.into_split();
    let mut messages = vec![(0..=255u8).collect::<Vec<u8>>()];
    messages.extend(SIZES.iter().map(|&size| cx.payload(size)));
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
        result.map_err(|m| {
            let what = if message.len() == 256 {
                "the 256 byte values 0x00..0xff".to_string()
            } else {
                format!("a {}-byte random message", message.len())
            };
            Failure::new(format!("{what} echoed back unchanged"), m.to_string()).hint(
                "the proxy treats data as text: C string functions stop at a NUL byte, line-based reads \
                 stop at newlines, and character conversions alter high bytes",
            )
        })?;
        cx.trace
            .event(format_args!("{} byte(s) echoed intact", message.len()));
    }
    Ok(())
}
