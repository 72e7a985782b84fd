//! Playing a scenario against a running proxy, and the oracle that judges what the peers saw.
//!
//! Each side of each connection has a writer task that carries out its writes, shutdown and
//! reset in order (a write to a peer that does not read may block; the script goes on), and a
//! reader task that reads as told: at full speed, slowly, or not at all. When the steps are
//! done, every reader reads again and the oracle waits for what the contract says each side
//! must end up with:
//!
//! * R1: each side receives exactly what the other wrote, unchanged and in order;
//! * R5: a side that shut down is seen to end (EOF) by the other, after all its data, and the
//!   other direction stays open;
//! * R6: a reset on one side closes the other side's connection promptly;
//! * R7: nothing else is closed: no pause in a scenario comes near the stall timeout.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::time::{timeout, Instant};

use super::scenario::{write_bytes, Scenario, Side, Step};
use tprox_core::front::Front;
use tprox_core::harness::Destination;
use tprox_core::held::{Direction, FillError, SETTLE};
use tprox_core::rules::Rule;

/// How long "promptly" may take in a scenario: a correct proxy needs milliseconds; a broken one
/// never gets there. Shorter than the cases' 5 s, as shrinking replays failures many times and
/// a missing EOF costs the whole wait each time.
pub const FUZZ_PROMPT: Duration = Duration::from_secs(2);

/// A scenario's pauses add up to at most this share of the stall timeout, and so does the wait
/// for its writes to play out before every reader reads again: a correct proxy never has a
/// reason to abort anything (R7).
const PAUSE_SHARE: f64 = 0.2;

/// How long the oracle watches for an end that must not come, once everything has arrived.
const GRACE: Duration = Duration::from_millis(50);

/// What the proxy did that the contract forbids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub rule: Rule,
    /// The connection (as numbered in the scenario) where it showed.
    pub conn: u8,
    pub expected: String,
    pub observed: String,
}

/// How a side's connection ended, as its reader saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum SideEnd {
    Eof,
    Error(String),
}

#[derive(Default)]
struct Received {
    bytes: Vec<u8>,
    end: Option<SideEnd>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReadMode {
    Full,
    Slow,
    Stopped,
    /// Close the read half: the side resets the connection.
    Close,
}

enum Command {
    Write(Vec<u8>),
    /// Write until the proxy holds data of this direction in its own memory.
    Fill {
        direction: Direction,
        fill: u8,
    },
    Shutdown,
    Reset,
}

/// The most a fill step writes.
const FILL_MAX: usize = 8 * 1024 * 1024;

/// One side's socket with its two tasks.
struct Peer {
    commands: mpsc::UnboundedSender<Command>,
    /// Commands queued and not yet carried out.
    pending: Arc<AtomicUsize>,
    /// Fill commands queued and not yet done: a fill pauses between its writes on purpose,
    /// so a quiet writer that is filling is not a blocked one.
    filling: Arc<AtomicUsize>,
    mode: watch::Sender<ReadMode>,
    received: Arc<Mutex<Received>>,
    /// What this side's writer has handed over (or tried to), in order: what the other side
    /// must receive.
    sent: Arc<Mutex<Vec<u8>>>,
    /// (local, peer) addresses of the socket.
    ends: Option<(SocketAddr, SocketAddr)>,
}

impl Peer {
    fn start(stream: TcpStream) -> Peer {
        let _ = stream.set_nodelay(true);
        let ends = stream.local_addr().ok().zip(stream.peer_addr().ok());
        let (rx, tx) = stream.into_split();
        let (commands, queue) = mpsc::unbounded_channel();
        let pending = Arc::new(AtomicUsize::new(0));
        let filling = Arc::new(AtomicUsize::new(0));
        let (mode, modes) = watch::channel(ReadMode::Full);
        let received = Arc::new(Mutex::new(Received::default()));
        let sent = Arc::default();
        tokio::spawn(read(rx, modes, received.clone()));
        tokio::spawn(write(
            tx,
            queue,
            pending.clone(),
            filling.clone(),
            mode.clone(),
            Arc::clone(&sent),
        ));
        Peer {
            commands,
            pending,
            filling,
            mode,
            received,
            sent,
            ends,
        }
    }

    fn send(&self, command: Command) {
        if matches!(command, Command::Fill { .. }) {
            self.filling.fetch_add(1, Ordering::SeqCst);
        }
        self.pending.fetch_add(1, Ordering::SeqCst);
        if self.commands.send(command).is_err() {
            self.pending.fetch_sub(1, Ordering::SeqCst);
        }
    }

    fn read_mode(&self, mode: ReadMode) {
        self.mode.send_if_modified(|current| {
            let change = *current != ReadMode::Close && *current != mode;
            if change {
                *current = mode;
            }
            change
        });
    }
}

async fn read(
    mut rx: OwnedReadHalf,
    mut modes: watch::Receiver<ReadMode>,
    received: Arc<Mutex<Received>>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let mode = *modes.borrow_and_update();
        let limit = match mode {
            ReadMode::Close => return,
            ReadMode::Stopped => {
                if modes.changed().await.is_err() {
                    return;
                }
                continue;
            }
            ReadMode::Full => buf.len(),
            ReadMode::Slow => 4096,
        };
        let outcome = tokio::select! {
            result = rx.read(&mut buf[..limit]) => result,
            changed = modes.changed() => {
                if changed.is_err() {
                    return;
                }
                continue;
            }
        };
        {
            let mut state = received.lock().unwrap_or_else(|e| e.into_inner());
            match outcome {
                Ok(0) => {
                    state.end = Some(SideEnd::Eof);
                    return;
                }
                Ok(n) => state.bytes.extend_from_slice(&buf[..n]),
                Err(e) => {
                    state.end = Some(SideEnd::Error(e.to_string()));
                    return;
                }
            }
        }
        if mode == ReadMode::Slow {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

async fn write(
    mut tx: OwnedWriteHalf,
    mut queue: mpsc::UnboundedReceiver<Command>,
    pending: Arc<AtomicUsize>,
    filling: Arc<AtomicUsize>,
    mode: watch::Sender<ReadMode>,
    sent: Arc<Mutex<Vec<u8>>>,
) {
    let record = |bytes: &[u8]| {
        sent.lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(bytes)
    };
    let mut broken = false;
    while let Some(command) = queue.recv().await {
        match command {
            // Writes into a connection that failed are dropped: the oracle judges the failure.
            Command::Fill { .. } if broken => {
                filling.fetch_sub(1, Ordering::SeqCst);
            }
            Command::Write(_) if broken => {}
            Command::Write(bytes) => {
                record(&bytes);
                broken = tx.write_all(&bytes).await.is_err();
            }
            Command::Fill { direction, fill } => {
                let mut rng = fastrand::Rng::with_seed(u64::from(fill));
                let filled = direction
                    .fill(&mut tx, FILL_MAX, |n| {
                        let mut bytes = vec![0u8; n];
                        rng.fill(&mut bytes);
                        record(&bytes);
                        bytes
                    })
                    .await;
                match filled {
                    Ok(_) => {}
                    // Where the queues cannot be seen, a fill is a large write.
                    Err(FillError::Unobservable(_)) => {
                        let mut bytes = vec![0u8; FILL_MAX];
                        rng.fill(&mut bytes);
                        record(&bytes);
                        broken = tx.write_all(&bytes).await.is_err();
                    }
                    Err(FillError::Closed { .. } | FillError::Write { .. }) => broken = true,
                }
                filling.fetch_sub(1, Ordering::SeqCst);
            }
            Command::Shutdown => broken |= tx.shutdown().await.is_err(),
            Command::Reset => {
                // A zero linger turns the close into a reset; the reader lets go of its half.
                let _ = socket2::SockRef::from(tx.as_ref()).set_linger(Some(Duration::ZERO));
                // Dropping a write half would send a FIN first; forgetting it leaves the
                // close to the read half, which makes it a bare reset.
                tx.forget();
                mode.send_replace(ReadMode::Close);
                pending.fetch_sub(1, Ordering::SeqCst);
                return;
            }
        }
        pending.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What the scenario did to one connection, for the oracle.
struct Connection {
    client: Peer,
    server: Peer,
    shut: [bool; 2],
    reset_by: Option<Side>,
}

fn index(side: Side) -> usize {
    match side {
        Side::Client => 0,
        Side::Server => 1,
    }
}

impl Connection {
    fn peer(&self, side: Side) -> &Peer {
        match side {
            Side::Client => &self.client,
            Side::Server => &self.server,
        }
    }
}

/// Plays `scenario` through the proxy at `proxy`, whose destination is `dest`, and judges the
/// outcome. `stall` is the proxy's stall timeout.
pub async fn execute(
    scenario: &Scenario,
    proxy: SocketAddr,
    dest: &Destination,
    front: Option<&Front>,
    stall: Duration,
) -> Result<(), Violation> {
    let mut conns: BTreeMap<u8, Connection> = BTreeMap::new();
    let mut pause_budget = stall.mul_f64(PAUSE_SHARE);
    for step in &scenario.steps {
        if let Some(n) = step.conn() {
            if let std::collections::btree_map::Entry::Vacant(slot) = conns.entry(n) {
                slot.insert(open(n, proxy, dest, front).await?);
            }
        }
        let conn = step.conn().and_then(|n| conns.get_mut(&n));
        match (step, conn) {
            (Step::Pause { ms }, _) => {
                let pause = Duration::from_millis(u64::from(*ms)).min(pause_budget);
                pause_budget -= pause;
                tokio::time::sleep(pause).await;
            }
            // Nothing happens on a connection after a reset.
            (_, Some(conn)) if conn.reset_by.is_some() => {}
            (
                Step::Write {
                    side, len, fill, ..
                },
                Some(conn),
            ) => {
                if !conn.shut[index(*side)] {
                    conn.peer(*side)
                        .send(Command::Write(write_bytes(*len, *fill)));
                }
            }
            (Step::Fill { side, fill, .. }, Some(conn)) => {
                let ends = (conn.peer(*side).ends, conn.peer(side.other()).ends);
                if let (false, (Some(sender), Some(receiver))) = (conn.shut[index(*side)], ends) {
                    let direction = Direction { sender, receiver };
                    conn.peer(side.other()).read_mode(ReadMode::Stopped);
                    conn.peer(*side).send(Command::Fill {
                        direction,
                        fill: *fill,
                    });
                }
            }
            (Step::StopReading { side, .. }, Some(conn)) => {
                conn.peer(*side).read_mode(ReadMode::Stopped)
            }
            (Step::ResumeReading { side, .. }, Some(conn)) => {
                conn.peer(*side).read_mode(ReadMode::Full)
            }
            (Step::Trickle { side, .. }, Some(conn)) => conn.peer(*side).read_mode(ReadMode::Slow),
            (Step::Shutdown { side, .. }, Some(conn)) => {
                if !conn.shut[index(*side)] {
                    conn.shut[index(*side)] = true;
                    conn.peer(*side).send(Command::Shutdown);
                }
            }
            (Step::Reset { side, .. }, Some(conn)) => {
                conn.reset_by = Some(*side);
                conn.peer(*side).send(Command::Reset);
            }
            // Datagrams are UDP's ([`crate::udp`]): nothing over a connection.
            (Step::Datagram { .. }, _) | (_, None) => {}
        }
    }
    // Let the scenario play out as written before anyone reads again: writes still queued go
    // on until done or blocked, and a proxy that has been sent an EOF gets to act on it.
    settle(&conns, stall.mul_f64(PAUSE_SHARE)).await;
    // Every reader reads again at full speed: what is still on its way must now arrive.
    for conn in conns.values() {
        conn.client.read_mode(ReadMode::Full);
        conn.server.read_mode(ReadMode::Full);
    }
    let deadline = Instant::now() + FUZZ_PROMPT;
    for (&n, conn) in &conns {
        judge(n, conn, deadline).await?;
    }
    tokio::time::sleep(GRACE).await;
    for (&n, conn) in &conns {
        judge(n, conn, Instant::now()).await?;
    }
    Ok(())
}

/// Waits until every writer is done, or none has made progress for a moment, at most `limit`
/// (fills, which bound themselves, are always waited for, up to [`FUZZ_PROMPT`]); then gives the
/// proxy a moment more.
async fn settle(conns: &BTreeMap<u8, Connection>, limit: Duration) {
    let filling = || {
        conns
            .values()
            .flat_map(|c| [&c.client, &c.server])
            .any(|p| p.filling.load(Ordering::SeqCst) > 0)
    };
    let fills_end = Instant::now() + FUZZ_PROMPT;
    while Instant::now() < fills_end && filling() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let deadline = Instant::now() + limit;
    let progress = || -> Vec<(usize, usize)> {
        conns
            .values()
            .flat_map(|c| [&c.client, &c.server])
            .map(|p| {
                let sent = p.sent.lock().unwrap_or_else(|e| e.into_inner()).len();
                (p.pending.load(Ordering::SeqCst), sent)
            })
            .collect()
    };
    let mut last = progress();
    let mut quiet_since = Instant::now();
    while Instant::now() < deadline && last.iter().any(|&(pending, _)| pending > 0) {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let now = progress();
        if now != last {
            last = now;
            quiet_since = Instant::now();
        } else if quiet_since.elapsed() >= SETTLE {
            break;
        }
    }
    tokio::time::sleep(SETTLE.min(deadline.saturating_duration_since(Instant::now()))).await;
}

/// Connects client `n` (through `front`'s handshake, for a front) and accepts the proxy's
/// connection for it.
async fn open(
    n: u8,
    proxy: SocketAddr,
    dest: &Destination,
    front: Option<&Front>,
) -> Result<Connection, Violation> {
    let violation = |rule: Rule, expected: &str, observed: String| Violation {
        rule,
        conn: n,
        expected: expected.to_string(),
        observed,
    };
    // With the PROXY protocol header first, where the proxy accepts one.
    let client = match timeout(
        FUZZ_PROMPT,
        tprox_core::harness::connect_client(proxy, dest),
    )
    .await
    {
        Ok(Ok(client)) => client,
        Ok(Err(e)) => {
            return Err(violation(
                Rule::R11,
                "the proxy accepts the connection",
                format!("connecting failed: {e}"),
            ))
        }
        Err(_) => {
            return Err(violation(
                Rule::R2,
                "the proxy accepts the connection",
                format!("no connection within {} s", FUZZ_PROMPT.as_secs()),
            ))
        }
    };
    let mut client = client;
    if let Some(front) = front {
        let target = SocketAddr::from(([127, 0, 0, 1], dest.port()));
        match timeout(FUZZ_PROMPT, front.handshake(&mut client, target)).await {
            Ok(Ok(())) => {}
            Ok(Err(refused)) => {
                return Err(violation(
                    Rule::R13,
                    "the front opens the tunnel to the destination",
                    format!("the {front} handshake failed: {refused}"),
                ))
            }
            Err(_) => {
                return Err(violation(
                    Rule::R13,
                    "the front opens the tunnel to the destination",
                    format!(
                        "no answer to the {front} handshake within {} s",
                        FUZZ_PROMPT.as_secs()
                    ),
                ))
            }
        }
    }
    let server = match timeout(FUZZ_PROMPT, dest.accept()).await {
        Ok(Ok(server)) => server,
        _ => {
            return Err(violation(
                Rule::R2,
                "the proxy connects to the destination for the new client at once",
                format!(
                    "no connection reached the destination within {} s",
                    FUZZ_PROMPT.as_secs()
                ),
            ))
        }
    };
    Ok(Connection {
        client: Peer::start(client),
        server: Peer::start(server),
        shut: [false, false],
        reset_by: None,
    })
}

/// Waits (until `deadline`) for connection `n` to reach the state the contract requires, and
/// says how it falls short if it does not.
async fn judge(n: u8, conn: &Connection, deadline: Instant) -> Result<(), Violation> {
    loop {
        let verdict = verdict(n, conn);
        match verdict {
            Judgement::Done => return Ok(()),
            Judgement::Broken(violation) => return Err(violation),
            Judgement::Waiting(violation) if Instant::now() >= deadline => return Err(violation),
            Judgement::Waiting(_) => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
}

enum Judgement {
    Done,
    /// Not there yet: this is what is wrong if it stays so.
    Waiting(Violation),
    /// Wrong already, whatever comes later.
    Broken(Violation),
}

fn verdict(n: u8, conn: &Connection) -> Judgement {
    let mut findings = Findings::default();
    for sender in [Side::Client, Side::Server] {
        if let Err(violation) = judge_direction(n, conn, sender, &mut findings) {
            return Judgement::Broken(violation);
        }
    }
    match findings {
        Findings {
            waiting: Some(violation),
            ..
        } => Judgement::Waiting(violation),
        Findings {
            aborted: Some(violation),
            ..
        } => Judgement::Broken(violation),
        _ => Judgement::Done,
    }
}

/// What the directions of a connection showed that is not wrong for good yet.
#[derive(Default)]
struct Findings {
    /// The first thing still missing: wrong if it stays so.
    waiting: Option<Violation>,
    /// An abort seen on one side is often the consequence of what went wrong on the other
    /// (a proxy that lost data on one direction and then reset the pair): judged last.
    aborted: Option<Violation>,
}

/// Judges the direction from `sender` to the other side; `Err` when it is wrong already.
fn judge_direction(
    n: u8,
    conn: &Connection,
    sender: Side,
    findings: &mut Findings,
) -> Result<(), Violation> {
    let receiver = sender.other();
    let (s, r) = (sender.name(), receiver.name());
    let violation = |rule: Rule, expected: String, observed: String| Violation {
        rule,
        conn: n,
        expected,
        observed,
    };
    let sent = conn
        .peer(sender)
        .sent
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let writing = conn.peer(sender).pending.load(Ordering::SeqCst) > 0;
    let received = conn
        .peer(receiver)
        .received
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let got = &received.bytes;
    check_bytes(&sent, got, s, r)
        .map_err(|(expected, observed)| violation(Rule::R1, expected, observed))?;
    match conn.reset_by {
        Some(resetter) if resetter == sender => {
            // R6: the reset closes the other side; its data may be cut short. A side that
            // shut down before resetting is one the proxy no longer reads, so it learns of
            // the reset only when it next writes there: nothing to require then.
            if received.end.is_none() && !conn.shut[index(sender)] {
                findings.waiting.get_or_insert_with(|| {
                    violation(
                        Rule::R6,
                        format!("after the {s} resets, the proxy closes the {r}'s connection within {} s", FUZZ_PROMPT.as_secs()),
                        format!("the {r}'s connection stayed open"),
                    )
                });
            }
            Ok(())
        }
        Some(_) => Ok(()),
        // Judged once the sender's writer is done (or the deadline passes).
        None if writing => {
            findings.waiting.get_or_insert_with(|| {
                violation(
                    Rule::R3,
                    format!("the {s}'s writes complete once the {r} reads"),
                    format!("the {s} could not write all its data within {} s; the {r} received {} byte(s)", FUZZ_PROMPT.as_secs(), got.len()),
                )
            });
            Ok(())
        }
        None => {
            let shut = (conn.shut[index(sender)], conn.shut[index(receiver)]);
            judge_end(
                received.end.as_ref(),
                shut,
                sent.len(),
                got.len(),
                (s, r),
                findings,
                violation,
            )
        }
    }
}

/// R1 whatever else happens: what arrived is what was sent, so far, and nothing more.
/// `Err` holds what was expected and what was observed.
fn check_bytes(sent: &[u8], got: &[u8], s: &str, r: &str) -> Result<(), (String, String)> {
    let common = got.len().min(sent.len());
    // One memcmp first: the streams run to megabytes and this is looked at every few ms.
    if got[..common] != sent[..common] {
        if let Some(offset) = got.iter().zip(sent.iter()).position(|(a, b)| a != b) {
            return Err((
                format!("the {r} receives the {s}'s bytes unchanged"),
                format!(
                    "byte {offset} differs: the {s} sent 0x{:02x}, the {r} received 0x{:02x}",
                    sent[offset], got[offset]
                ),
            ));
        }
    }
    if got.len() > sent.len() {
        return Err((
            format!(
                "the {r} receives the {} byte(s) the {s} sent, and nothing more",
                sent.len()
            ),
            format!("the {r} received {} byte(s)", got.len()),
        ));
    }
    Ok(())
}

/// How a direction that nobody reset ends: `shut` is whether (the sender, the receiver) shut
/// down; `sent` and `got` count its bytes.
fn judge_end(
    end: Option<&SideEnd>,
    shut: (bool, bool),
    sent: usize,
    got: usize,
    (s, r): (&str, &str),
    findings: &mut Findings,
    violation: impl Fn(Rule, String, String) -> Violation,
) -> Result<(), Violation> {
    let complete = got == sent;
    match (end, shut.0) {
        (Some(SideEnd::Eof), true) if complete => {}
        (Some(SideEnd::Eof), true) => {
            return Err(violation(
                Rule::R5,
                format!(
                "the {r} receives all {sent} byte(s) the {s} wrote before shutting down, then EOF"
            ),
                format!("EOF after {got} byte(s)"),
            ))
        }
        (Some(SideEnd::Eof), false) => {
            return Err(violation(
                if shut.1 { Rule::R5 } else { Rule::R6 },
                format!("the {s} → {r} direction stays open: the {s} never shut it down"),
                format!("the {r} read EOF after {got} of {sent} byte(s)"),
            ))
        }
        (Some(SideEnd::Error(e)), shut) => {
            let observed = format!("the {r}'s read failed after {got} of {sent} byte(s): {e}");
            if shut && !complete {
                // Data written before a shutdown was lost to the abort: the more telling
                // account of the two directions.
                findings.aborted = Some(violation(
                    Rule::R5,
                    format!("the {r} receives all {sent} byte(s) the {s} wrote before shutting down, then EOF"),
                    observed,
                ));
            } else {
                findings.aborted.get_or_insert(violation(
                    Rule::R6,
                    format!("the {r}'s connection is not aborted: nobody reset it"),
                    observed,
                ));
            }
        }
        (None, true) => {
            findings.waiting.get_or_insert_with(|| {
                violation(
                    Rule::R5,
                    format!("the {r} receives all {sent} byte(s) the {s} wrote, then EOF (the {s} shut down)"),
                    format!("the {r} received {got} byte(s) and no EOF within {} s", FUZZ_PROMPT.as_secs()),
                )
            });
        }
        (None, false) if !complete => {
            findings.waiting.get_or_insert_with(|| {
                violation(
                    Rule::R1,
                    format!("the {r} receives all {sent} byte(s) the {s} wrote"),
                    format!(
                        "the {r} received {got} byte(s) within {} s",
                        FUZZ_PROMPT.as_secs()
                    ),
                )
            });
        }
        (None, false) => {}
    }
    Ok(())
}
