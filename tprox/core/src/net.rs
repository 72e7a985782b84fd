//! Stream helpers the cases share: exact reads with a deadline, waiting for a close, flooding a
//! peer that does not read, echo servers, and comparing a stream with what was sent.

use std::fmt;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio::time::timeout;

/// How a stream ended, as its reader saw it.
#[derive(Debug)]
pub enum End {
    /// An orderly end of stream (FIN).
    Eof,
    /// The connection was reset (RST), or failed in another way.
    Error(io::Error),
}

impl End {
    fn from_error(e: io::Error) -> Self {
        End::Error(e)
    }
}

impl fmt::Display for End {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            End::Eof => f.write_str("EOF"),
            End::Error(e) if e.kind() == io::ErrorKind::ConnectionReset => f.write_str("a reset"),
            End::Error(e) => write!(f, "an error ({e})"),
        }
    }
}

/// What an incomplete read got before it gave up.
#[derive(Debug)]
pub struct Short {
    /// What arrived before the read stopped.
    pub got: Vec<u8>,
    /// How the stream ended, or `None` when the deadline passed first.
    pub end: Option<End>,
}

impl fmt::Display for Short {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} byte(s) ", self.got.len())?;
        match &self.end {
            Some(end) => write!(f, "then {end}"),
            None => f.write_str("then nothing before the deadline"),
        }
    }
}

/// Reads exactly `n` bytes within `limit`.
pub async fn read_exact_within<R: AsyncRead + Unpin>(
    reader: &mut R,
    n: usize,
    limit: Duration,
) -> Result<Vec<u8>, Short> {
    let mut got = Vec::with_capacity(n);
    let deadline = tokio::time::Instant::now() + limit;
    let mut buf = vec![0u8; n.clamp(1, 64 * 1024)];
    while got.len() < n {
        let want = (n - got.len()).min(buf.len());
        match tokio::time::timeout_at(deadline, reader.read(&mut buf[..want])).await {
            Err(_) => return Err(Short { got, end: None }),
            Ok(Ok(0)) => {
                return Err(Short {
                    got,
                    end: Some(End::Eof),
                })
            }
            Ok(Ok(k)) => got.extend_from_slice(&buf[..k]),
            Ok(Err(e)) => {
                return Err(Short {
                    got,
                    end: Some(End::from_error(e)),
                })
            }
        }
    }
    Ok(got)
}

/// The end of a stream and when it was seen.
#[derive(Debug)]
pub struct Ended {
    /// How the stream ended.
    pub end: End,
    /// When tprox saw it end.
    pub at: Instant,
    /// Bytes read (and discarded) before the end.
    pub bytes: u64,
}

/// Reads and discards until the stream ends; `None` if it has not ended within `limit`.
pub async fn wait_end<R: AsyncRead + Unpin>(reader: &mut R, limit: Duration) -> Option<Ended> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut bytes = 0u64;
    let read_all = async {
        loop {
            match reader.read(&mut buf).await {
                Ok(0) => return End::Eof,
                Ok(k) => bytes += k as u64,
                Err(e) => return End::from_error(e),
            }
        }
    };
    let end = timeout(limit, read_all).await.ok()?;
    Some(Ended {
        end,
        at: Instant::now(),
        bytes,
    })
}

/// Write progress shared between a flooding task and whoever watches it.
#[derive(Clone)]
pub struct Progress {
    base: Instant,
    bytes: Arc<AtomicU64>,
    last_nanos: Arc<AtomicU64>,
}

impl Progress {
    /// A counter at zero.
    pub fn new() -> Self {
        Progress {
            base: Instant::now(),
            bytes: Arc::default(),
            last_nanos: Arc::default(),
        }
    }

    pub(crate) fn record(&self, n: usize) {
        self.bytes.fetch_add(n as u64, Ordering::SeqCst);
        let nanos = self.base.elapsed().as_nanos() as u64;
        self.last_nanos.store(nanos, Ordering::SeqCst);
    }

    /// Bytes counted so far.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::SeqCst)
    }

    /// When the last write made progress (the start, if none did).
    pub fn last(&self) -> Instant {
        self.base + Duration::from_nanos(self.last_nanos.load(Ordering::SeqCst))
    }

    /// Waits until no write has made progress for `quiet`; gives up after `limit`.
    pub async fn wait_blocked(&self, quiet: Duration, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if self.last().elapsed() >= quiet && self.bytes() > 0 {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }
}

impl Default for Progress {
    fn default() -> Self {
        Self::new()
    }
}

/// How a flood ended.
#[derive(Debug)]
pub enum FloodEnd<W> {
    /// `cap` bytes were accepted: the proxy never pushed back. The writer comes back open:
    /// the flood stops writing but does not shut its side down, because an EOF here would be
    /// an event of the case's own (a proxy that then closes would be judged for it), where
    /// all that happened is that tprox stopped at its bound.
    Capped(W),
    /// A write failed: the connection was closed or reset under the writer.
    Failed(io::Error, Instant),
}

/// Writes as fast as the peer accepts, recording progress, until `cap` bytes or an error.
/// Spawned, so that the caller can watch the progress and abort it. A capped flood keeps its
/// writer open inside the task's result until the handle is dropped.
pub fn flood<W>(mut writer: W, cap: u64, progress: Progress) -> JoinHandle<FloodEnd<W>>
where
    W: AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let chunk = vec![0x5a_u8; 64 * 1024];
        loop {
            if progress.bytes() >= cap {
                return FloodEnd::Capped(writer);
            }
            match writer.write(&chunk).await {
                Ok(0) => return FloodEnd::Failed(io::ErrorKind::WriteZero.into(), Instant::now()),
                Ok(n) => progress.record(n),
                Err(e) => return FloodEnd::Failed(e, Instant::now()),
            }
        }
    })
}

/// Echoes everything it reads until EOF, then shuts its side down.
pub fn spawn_echo(stream: TcpStream) -> JoinHandle<()> {
    tokio::spawn(async move {
        let (mut rx, mut tx) = stream.into_split();
        let _ = tokio::io::copy(&mut rx, &mut tx).await;
        let _ = tx.shutdown().await;
    })
}

/// Checks a stream against the bytes it must carry as it passes through a peer, and remembers
/// the first difference.
///
/// An echo server checks what it receives with it, so that every connection's data is verified
/// on its way to the destination as well as on its way back: a proxy that alters the same byte
/// on both ways, or on every connection of a chain, undoes its own change by the time the data
/// returns, and only a check at each hop sees it.
#[derive(Clone)]
pub struct StreamCheck {
    expected: Arc<[u8]>,
    state: Arc<std::sync::Mutex<CheckState>>,
}

#[derive(Default)]
struct CheckState {
    received: usize,
    difference: Option<(usize, u8, u8)>,
}

impl StreamCheck {
    /// A checker for a stream that must carry exactly `expected`.
    pub fn new(expected: Arc<[u8]>) -> Self {
        StreamCheck {
            expected,
            state: Arc::default(),
        }
    }

    /// Records the next bytes of the stream.
    pub fn observe(&self, bytes: &[u8]) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let start = state.received;
        let end = start + bytes.len();
        // The common case, equal slices, is one memcmp: cheap even in unoptimised test builds.
        let equal = end <= self.expected.len() && self.expected[start..end] == *bytes;
        if state.difference.is_none() && !equal {
            let found = bytes.iter().enumerate().find_map(|(i, &got)| {
                let offset = start + i;
                match self.expected.get(offset) {
                    Some(&expected) if expected == got => None,
                    // A byte past the end of the stream is shown as differing from 0.
                    other => Some((offset, other.copied().unwrap_or(0), got)),
                }
            });
            state.difference = found;
        }
        state.received += bytes.len();
    }

    /// How many bytes were observed.
    pub fn received(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .received
    }

    /// The first difference so far, or extra bytes beyond the expected stream.
    pub fn mismatch(&self) -> Option<Mismatch> {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match state.difference {
            Some((offset, _, _)) if offset >= self.expected.len() => Some(Mismatch::Extra {
                received: state.received,
            }),
            Some((offset, expected, got)) => Some(Mismatch::Differs {
                offset,
                expected,
                got,
            }),
            None => None,
        }
    }
}

/// Like [`spawn_echo`], and checks everything it receives with `check`.
pub fn spawn_checked_echo(stream: TcpStream, check: StreamCheck) -> JoinHandle<()> {
    tokio::spawn(async move {
        let (mut rx, mut tx) = stream.into_split();
        let _ = checked_copy(&mut rx, &mut tx, &check).await;
        let _ = tx.shutdown().await;
    })
}

/// Copies `reader` to `writer` until EOF or an error, checking what passes with `check`.
pub async fn checked_copy<R, W>(
    reader: &mut R,
    writer: &mut W,
    check: &StreamCheck,
) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = reader.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        check.observe(&buf[..n]);
        writer.write_all(&buf[..n]).await?;
    }
}

/// Where a received stream stopped matching what was sent.
#[derive(Debug)]
pub enum Mismatch {
    /// A byte differs.
    Differs {
        /// Where, counted from the stream's start.
        offset: usize,
        /// The byte that was sent there.
        expected: u8,
        /// The byte that arrived.
        got: u8,
    },
    /// The stream ended early.
    Ended {
        /// Bytes that arrived before the end.
        received: usize,
        /// How it ended.
        end: End,
    },
    /// Nothing arrived for `idle`.
    Stalled {
        /// Bytes that arrived before the stall.
        received: usize,
        /// How long nothing arrived.
        idle: Duration,
    },
    /// More bytes arrived than were sent.
    Extra {
        /// Bytes that arrived, all told.
        received: usize,
    },
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mismatch::Differs {
                offset,
                expected,
                got,
            } => write!(
                f,
                "the bytes differ at offset {offset}: expected 0x{expected:02x}, got 0x{got:02x}"
            ),
            Mismatch::Ended { received, end } => {
                write!(f, "{end} after {received} byte(s)")
            }
            Mismatch::Stalled { received, idle } => write!(
                f,
                "{received} byte(s) arrived, then nothing for {} s",
                idle.as_secs()
            ),
            Mismatch::Extra { received } => {
                write!(f, "{received} byte(s) arrived, more than were sent")
            }
        }
    }
}

/// Reads `expected.len()` bytes and compares them as they arrive, failing at the first
/// divergence, an early end, or a pause of `idle` with nothing arriving.
pub async fn expect_stream<R: AsyncRead + Unpin>(
    reader: &mut R,
    expected: &[u8],
    idle: Duration,
) -> Result<(), Mismatch> {
    expect_stream_moving(reader, expected, idle, || 0).await
}

/// [`expect_stream`] for the far end of a chain, where bytes take many hops to arrive: it
/// stalls only when nothing arrived here and `moved` (bytes counted on the way) did not change
/// for `idle`, so that a chain that is moving, however slowly, is never taken for a stalled one.
pub async fn expect_stream_moving<R: AsyncRead + Unpin>(
    reader: &mut R,
    expected: &[u8],
    idle: Duration,
    moved: impl Fn() -> usize,
) -> Result<(), Mismatch> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut received = 0;
    let mut seen = moved();
    while received < expected.len() {
        let want = (expected.len() - received).min(buf.len());
        // Reading is cancel-safe: a read that times out has taken no bytes.
        let n = match timeout(idle, reader.read(&mut buf[..want])).await {
            Err(_) if moved() != seen => {
                seen = moved();
                continue;
            }
            Err(_) => return Err(Mismatch::Stalled { received, idle }),
            Ok(Ok(0)) => {
                return Err(Mismatch::Ended {
                    received,
                    end: End::Eof,
                })
            }
            Ok(Ok(n)) => n,
            Ok(Err(e)) => {
                return Err(Mismatch::Ended {
                    received,
                    end: End::from_error(e),
                })
            }
        };
        if buf[..n] == expected[received..received + n] {
            received += n;
            continue;
        }
        if let Some(i) = (0..n).find(|&i| buf[i] != expected[received + i]) {
            return Err(Mismatch::Differs {
                offset: received + i,
                expected: expected[received + i],
                got: buf[i],
            });
        }
        received += n;
    }
    Ok(())
}

/// Formats bytes for a failure message: printable ASCII as text, anything else as hex.
pub fn show(bytes: &[u8]) -> String {
    const MAX: usize = 32;
    let shown = &bytes[..bytes.len().min(MAX)];
    let more = if bytes.len() > MAX {
        format!(" … ({} bytes)", bytes.len())
    } else {
        String::new()
    };
    if shown.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
        format!("\"{}\"{more}", String::from_utf8_lossy(shown))
    } else {
        let hex: Vec<String> = shown.iter().map(|b| format!("{b:02x}")).collect();
        format!("[{}]{more}", hex.join(" "))
    }
}

/// Mebibytes, for messages.
pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use tokio::io::AsyncWriteExt;

    /// Sends `data` in the given chunk sizes through an in-memory pipe and compares it with
    /// `expected` on the other end.
    fn compare(data: Vec<u8>, chunks: Vec<usize>, expected: Vec<u8>) -> Result<(), Mismatch> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let (mut tx, mut rx) = tokio::io::duplex(1024);
            let writer = tokio::spawn(async move {
                let mut rest = &data[..];
                for size in chunks.into_iter().cycle() {
                    if rest.is_empty() {
                        break;
                    }
                    let (now, later) = rest.split_at(size.clamp(1, rest.len()));
                    if tx.write_all(now).await.is_err() {
                        break;
                    }
                    rest = later;
                }
            });
            let result = expect_stream(&mut rx, &expected, Duration::from_millis(500)).await;
            writer.abort();
            result
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn identical_streams_match_however_they_are_chunked(
            data in proptest::collection::vec(any::<u8>(), 1..5000),
            chunks in proptest::collection::vec(1usize..700, 1..8),
        ) {
            prop_assert!(compare(data.clone(), chunks, data).is_ok());
        }

        #[test]
        fn a_changed_byte_is_found_at_its_offset(
            data in proptest::collection::vec(any::<u8>(), 1..5000),
            chunks in proptest::collection::vec(1usize..700, 1..8),
            at in any::<prop::sample::Index>(),
        ) {
            let offset = at.index(data.len());
            let mut sent = data.clone();
            sent[offset] ^= 0x40;
            match compare(sent, chunks, data) {
                Err(Mismatch::Differs { offset: found, .. }) => prop_assert_eq!(found, offset),
                other => prop_assert!(false, "expected a difference at {}, got {:?}", offset, other),
            }
        }
    }

    #[test]
    fn a_short_stream_is_reported_as_ended_or_stalled() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let (mut tx, mut rx) = tokio::io::duplex(64);
            tx.write_all(b"abc").await.unwrap();
            drop(tx);
            let result = expect_stream(&mut rx, b"abcdef", Duration::from_millis(200)).await;
            assert!(
                matches!(
                    result,
                    Err(Mismatch::Ended {
                        received: 3,
                        end: End::Eof
                    })
                ),
                "{result:?}"
            );
        });
    }

    #[test]
    fn a_stream_check_finds_the_first_difference_and_extra_bytes() {
        let check = StreamCheck::new(Arc::from(&b"hello world"[..]));
        check.observe(b"hello");
        assert!(check.mismatch().is_none());
        check.observe(b" wOrld");
        assert!(matches!(
            check.mismatch(),
            Some(Mismatch::Differs {
                offset: 7,
                expected: b'o',
                got: b'O'
            })
        ));
        let check = StreamCheck::new(Arc::from(&b"ab"[..]));
        check.observe(b"abc");
        assert!(matches!(
            check.mismatch(),
            Some(Mismatch::Extra { received: 3 })
        ));
    }

    #[test]
    fn show_prints_text_as_text_and_bytes_as_hex() {
        assert_eq!(show(b"ping"), "\"ping\"");
        assert_eq!(show(&[0, 255]), "[00 ff]");
    }
}
