//! `tprox bench --scale N`: as many connections as the descriptors allow, all of them active at
//! once, through one proxy after another. Each connection sends a small message every second
//! for `--scale-secs` and waits for its echo; the report says whether any message failed or any
//! connection was starved (the worst round trip of all), and whether the proxy's memory stayed
//! flat while the load went on. The direct connection goes first, under the same load: its
//! round trips are the load generator's own, on this machine. A bench mode, bounded in time,
//! not a test.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::load::Dial;
use super::{group_usage, Instance, Target};

/// The message each connection sends once a second.
const MESSAGE: usize = 16;
/// How long a message may wait for its echo before it counts as failed.
const ANSWER_LIMIT: Duration = Duration::from_secs(10);
/// How long opening all the connections may take.
const OPEN_LIMIT: Duration = Duration::from_secs(60);
/// Connections opened at once: a burst of thousands would overflow the backlogs and measure
/// SYN retransmission instead.
const BATCH: usize = 500;
/// How often the proxy's memory is read during the load.
const SAMPLE_EVERY: Duration = Duration::from_secs(5);

/// What one proxy did under the load.
#[derive(Debug, Clone, Default)]
pub struct ScaleFigures {
    pub name: String,
    /// Connections open through the proxy during the load.
    pub connections: usize,
    /// Messages that came back.
    pub answered: u64,
    /// Messages that failed: no echo within [`ANSWER_LIMIT`], a wrong echo, or an error.
    pub failed: u64,
    /// Connections that had at least one failure.
    pub starved: u64,
    /// Round trips of the answered messages, seconds.
    pub rtt_median: f64,
    pub rtt_p99: f64,
    /// The worst round trip of any message of any connection.
    pub rtt_worst: f64,
    /// The proxy's resident memory before the connections, when the load began, and the
    /// highest and last reading during it.
    pub rss_before: u64,
    pub rss_start: u64,
    pub rss_max: u64,
    pub rss_end: u64,
    /// Why the run stopped early, if it did.
    pub error: Option<String>,
}

/// Runs the load through `target` with `count` connections for `secs`.
pub(super) fn measure(
    output: &tokio::runtime::Runtime,
    name: &str,
    target: &Target,
    count: usize,
    secs: Duration,
    progress: &dyn Fn(&str),
) -> ScaleFigures {
    let mut f = ScaleFigures {
        name: name.into(),
        ..ScaleFigures::default()
    };
    let load = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            f.error = Some(format!("cannot start the load's runtime: {e}"));
            return f;
        }
    };
    let echo = match load.block_on(echo_server()) {
        Ok(addr) => addr,
        Err(e) => {
            f.error = Some(format!("echo server: {e}"));
            return f;
        }
    };
    let instance = match Instance::start(output, target, echo) {
        Ok(instance) => instance,
        Err(e) => {
            f.error = Some(e);
            return f;
        }
    };
    let rss = || {
        instance
            .proxy
            .as_ref()
            .map_or(0, |p| group_usage(p.pgid()).1)
    };
    f.rss_before = rss();
    progress(&format!("{name}: opening {count} connections"));
    let streams = match load.block_on(open(&instance.dial, count)) {
        Ok(streams) => streams,
        Err(e) => {
            f.error = Some(e);
            instance.stop(output);
            return f;
        }
    };
    f.connections = streams.len();
    f.rss_start = rss();
    f.rss_max = f.rss_start;
    progress(&format!(
        "{name}: {} connections, a message a second each, for {} s",
        f.connections,
        secs.as_secs()
    ));
    let tally = Arc::new(Tally::default());
    let end = Instant::now() + secs;
    let tasks: Vec<_> = streams
        .into_iter()
        .enumerate()
        .map(|(i, stream)| {
            // Spread over the second, so the proxy sees a steady load, not a burst a second.
            let phase = Duration::from_secs(1).mul_f64(i as f64 / count.max(1) as f64);
            load.spawn(talk(stream, phase, end, tally.clone()))
        })
        .collect();
    while Instant::now() < end {
        std::thread::sleep(SAMPLE_EVERY.min(end.saturating_duration_since(Instant::now())));
        f.rss_max = f.rss_max.max(rss());
    }
    for task in tasks {
        let _ = load.block_on(task);
    }
    f.rss_end = rss();
    f.rss_max = f.rss_max.max(f.rss_end);
    instance.stop(output);
    f.answered = tally.answered.load(Relaxed);
    f.failed = tally.failed.load(Relaxed);
    f.starved = tally.starved.load(Relaxed);
    let mut times = std::mem::take(&mut *tally.times.lock().unwrap_or_else(|e| e.into_inner()));
    times.sort_unstable();
    let at = |q: f64| times.get(((times.len().max(1) - 1) as f64 * q).round() as usize);
    f.rtt_median = at(0.5).map_or(f64::NAN, |&us| us as f64 / 1e6);
    f.rtt_p99 = at(0.99).map_or(f64::NAN, |&us| us as f64 / 1e6);
    f.rtt_worst = times.last().map_or(f64::NAN, |&us| us as f64 / 1e6);
    f
}

/// What all connections counted.
#[derive(Default)]
struct Tally {
    answered: AtomicU64,
    failed: AtomicU64,
    starved: AtomicU64,
    /// Every answered message's round trip, in microseconds.
    times: Mutex<Vec<u32>>,
}

/// One connection: a message every second from `phase` on until `end`, each waiting for its
/// echo. A failure ends the connection: it counts as starved.
async fn talk(mut stream: TcpStream, phase: Duration, end: Instant, tally: Arc<Tally>) {
    tokio::time::sleep(phase).await;
    let mut ticks = tokio::time::interval(Duration::from_secs(1));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut times = Vec::with_capacity(64);
    let mut n: u64 = 0;
    while Instant::now() < end {
        ticks.tick().await;
        n += 1;
        let mut message = [b'.'; MESSAGE];
        message[..8].copy_from_slice(&n.to_le_bytes());
        let sent = Instant::now();
        let exchange = async {
            stream.write_all(&message).await?;
            let mut back = [0u8; MESSAGE];
            stream.read_exact(&mut back).await?;
            Ok::<bool, std::io::Error>(back == message)
        };
        match tokio::time::timeout(ANSWER_LIMIT, exchange).await {
            Ok(Ok(true)) => {
                times.push(sent.elapsed().as_micros().min(u32::MAX as u128) as u32);
                tally.answered.fetch_add(1, Relaxed);
            }
            _ => {
                tally.failed.fetch_add(1, Relaxed);
                tally.starved.fetch_add(1, Relaxed);
                break;
            }
        }
    }
    tally
        .times
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .extend(times);
}

/// An echo server on 127.0.0.1 for any number of connections.
async fn echo_server() -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = stream.set_nodelay(true);
                let mut buf = [0u8; 256];
                while let Ok(n) = stream.read(&mut buf).await {
                    if n == 0 || stream.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    Ok(addr)
}

/// Opens `count` connections through `dial` (a front's handshake included), in batches, each
/// with one message echoed so that every pair is known to be established end to end before
/// the load begins.
async fn open(dial: &Dial, count: usize) -> Result<Vec<TcpStream>, String> {
    let started = Instant::now();
    let mut streams = Vec::with_capacity(count);
    while streams.len() < count {
        if started.elapsed() > OPEN_LIMIT {
            return Err(format!(
                "only {} of {count} connections open within {} s",
                streams.len(),
                OPEN_LIMIT.as_secs()
            ));
        }
        let batch = BATCH.min(count - streams.len());
        let opened = futures_join_all((0..batch).map(|_| {
            let dial = dial.clone();
            async move {
                let mut stream = TcpStream::connect(dial.addr).await?;
                if let Some((front, dest)) = &dial.front {
                    front
                        .handshake(&mut stream, *dest)
                        .await
                        .map_err(|refused| std::io::Error::other(refused.to_string()))?;
                }
                stream.set_nodelay(true)?;
                stream.write_all(&[b'!'; MESSAGE]).await?;
                let mut back = [0u8; MESSAGE];
                tokio::time::timeout(ANSWER_LIMIT, stream.read_exact(&mut back))
                    .await
                    .map_err(|_| std::io::Error::other("no echo within 10 s"))??;
                Ok::<_, std::io::Error>(stream)
            }
        }))
        .await;
        for stream in opened {
            streams.push(
                stream.map_err(|e| format!("connection {} of {count}: {e}", streams.len() + 1))?,
            );
        }
    }
    Ok(streams)
}

/// Runs the futures at once, each as a task of its own, and gives their outputs in order.
async fn futures_join_all<F>(futures: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let tasks: Vec<_> = futures.map(tokio::spawn).collect();
    let mut outputs = Vec::with_capacity(tasks.len());
    for task in tasks {
        match task.await {
            Ok(output) => outputs.push(output),
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
    outputs
}

/// The human report of one proxy.
pub fn lines(f: &ScaleFigures, secs: Duration) -> String {
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    let mut out = format!(
        "{}: {} connections, each a {MESSAGE}-byte message a second for {} s\n",
        f.name,
        f.connections,
        secs.as_secs()
    );
    if let Some(e) = &f.error {
        out.push_str(&format!("  stopped: {e}\n"));
        return out;
    }
    out.push_str(&format!(
        "  messages: {} answered, {} failed; connections starved (a message without its echo \
         within {} s): {}\n",
        f.answered,
        f.failed,
        ANSWER_LIMIT.as_secs(),
        f.starved
    ));
    out.push_str(&format!(
        "  round trip: median {:.0} µs, p99 {:.0} µs, worst of any connection {:.1} ms\n",
        f.rtt_median * 1e6,
        f.rtt_p99 * 1e6,
        f.rtt_worst * 1e3
    ));
    if f.rss_start == 0 {
        // The direct connection: no proxy, no memory of its own.
        return out;
    }
    let growth = f.rss_end as f64 / f.rss_start.max(1) as f64;
    out.push_str(&format!(
        "  memory: {:.1} MiB before the connections, {:.1} MiB when the load began, {:.1} MiB at \
         most, {:.1} MiB at the end ({})\n",
        mib(f.rss_before),
        mib(f.rss_start),
        mib(f.rss_max),
        mib(f.rss_end),
        if growth <= 1.10 {
            format!("flat: {:+.1}%", (growth - 1.0) * 100.0)
        } else {
            format!("grew {:+.1}%", (growth - 1.0) * 100.0)
        }
    ));
    out
}

/// The same as JSON.
pub fn json(f: &ScaleFigures) -> serde_json::Value {
    serde_json::json!({
        "name": f.name,
        "connections": f.connections,
        "answered": f.answered,
        "failed": f.failed,
        "starved_connections": f.starved,
        "rtt_median_secs": f.rtt_median,
        "rtt_p99_secs": f.rtt_p99,
        "rtt_worst_secs": f.rtt_worst,
        "rss_before_bytes": f.rss_before,
        "rss_start_bytes": f.rss_start,
        "rss_max_bytes": f.rss_max,
        "rss_end_bytes": f.rss_end,
        "error": f.error,
    })
}
