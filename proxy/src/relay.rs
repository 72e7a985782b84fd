//! Moving bytes between the two sockets of one connection pair.
//!
//! Each direction is a loop over one fixed buffer: read, then write all of it, then read again.
//! Not reading while a write is pending is what gives backpressure (R4): a peer that stops
//! reading eventually stops the proxy reading from the other peer, and the kernel's flow control
//! does the rest.

use std::io;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::BUFFER_SIZE;

/// Why a pair was torn down before both directions finished cleanly.
#[derive(Debug)]
pub enum Abort {
    /// Reading failed: the peer reset the connection (R6 treats that as the peer closing, and a
    /// peer that is gone cannot receive the other direction either).
    Read(io::Error),
    /// Writing failed: the receiving peer is gone (R6).
    Write(io::Error),
    /// Data was held for a whole stall timeout without a single byte being written (R7).
    Stalled(Duration),
}

impl std::fmt::Display for Abort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Abort::Read(e) => write!(f, "read failed: {e}"),
            Abort::Write(e) => write!(f, "write failed: {e}"),
            Abort::Stalled(t) => write!(f, "no write progress for {} s", t.as_secs_f64()),
        }
    }
}

/// Relays between `client` and `server` until both directions have ended.
///
/// Returns `Ok` when both sides sent EOF and everything read was written; on any abort both
/// sockets are closed with a reset, so each peer learns at once that the pair is gone.
pub async fn relay(
    mut client: TcpStream,
    mut server: TcpStream,
    stall_timeout: Duration,
) -> Result<(), Abort> {
    let result = {
        let (mut client_rx, mut client_tx) = client.split();
        let (mut server_rx, mut server_tx) = server.split();
        tokio::try_join!(
            pump(&mut client_rx, &mut server_tx, stall_timeout),
            pump(&mut server_rx, &mut client_tx, stall_timeout),
        )
    };
    if result.is_err() {
        // A zero linger turns close() into a reset: the peers see the abort immediately instead
        // of a FIN that could be mistaken for a clean end of data.
        for stream in [&client, &server] {
            let _ = socket2::SockRef::from(stream).set_linger(Some(Duration::ZERO));
        }
    }
    result.map(|_| ())
}

/// Copies one direction until EOF, then shuts the writing side down (R5).
///
/// Every write is given `stall_timeout` to make progress; a partial write counts as progress
/// and restarts the clock (R7). Reads have no timeout: an idle connection is never aborted.
async fn pump<R, W>(reader: &mut R, writer: &mut W, stall_timeout: Duration) -> Result<(), Abort>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; BUFFER_SIZE];
    loop {
        let n = reader.read(&mut buf).await.map_err(Abort::Read)?;
        if n == 0 {
            // Everything read so far has been written (writes complete before the next read),
            // so the EOF can be passed on right away.
            return writer.shutdown().await.map_err(Abort::Write);
        }
        let mut written = 0;
        while written < n {
            match timeout(stall_timeout, writer.write(&buf[written..n])).await {
                Err(_) => return Err(Abort::Stalled(stall_timeout)),
                Ok(Ok(0)) => return Err(Abort::Write(io::ErrorKind::WriteZero.into())),
                Ok(Ok(k)) => written += k,
                Ok(Err(e)) => return Err(Abort::Write(e)),
            }
        }
    }
}
