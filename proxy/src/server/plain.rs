//! The event loop of plain forwarding, on Linux: every client of a mapping to one address, with
//! no front, server names, PROXY protocol or HTTP proxy on the way (the classic
//! `tcpproxy DEST_HOST DEST_PORT LISTEN_PORT`).
//!
//! It does what the tokio loop does for such a mapping, with fewer system calls per connection,
//! because it owns each socket's registration: the listener is level-triggered and accepted from
//! once per wake-up, so no `accept4` is made only to find the backlog empty; each connected
//! socket is registered once, edge-triggered, for its whole life, and closing it is all it takes
//! to leave epoll (tokio deregisters every socket before closing it: one `epoll_ctl` per socket);
//! and a FIN reported with the last data spares the read that would return 0 ([`pair`]). Timers
//! (a dial's and a stalled write's) are an ordered set of deadlines read at each turn, not
//! system calls.
//!
//! What is shared with the other loops is what the tokio loop shares: the mapping's connection
//! limit (its semaphore, waited on with this loop's [`sys::Bell`] as the waker), the
//! descriptor-shortage flag, the set of open pairs, and the stop's signals, also heard through
//! the bell.

mod pair;
mod sys;

use std::collections::BTreeSet;
use std::future::Future;
use std::io;
use std::mem::MaybeUninit;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use tokio::sync::{AcquireError, OwnedSemaphorePermit};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tokio_util::task::task_tracker::TaskTrackerToken;

use self::pair::{Flow, Pair, Ready, Rules};
use super::{out_of_descriptors, start_connect, Handshake, Site, Stop, BACKOFF};
use crate::host_port;
use crate::mapping::Mapping;
use crate::relay::Ending;
use crate::BUFFER_SIZE;

/// Where a mapping sends every client, if the plain loop can serve it: it forwards to one
/// address, given as one (a name would need resolving, which may block).
fn destination(mapping: &Mapping) -> Option<SocketAddr> {
    let plain = mapping.front.is_none()
        && mapping.sni.is_empty()
        && !mapping.accept_proxy
        && mapping.send_proxy.is_none()
        && mapping.via.is_none();
    let host = mapping
        .dest_host
        .trim_start_matches('[')
        .trim_end_matches(']');
    let ip = host.parse::<IpAddr>().ok().filter(|_| plain)?;
    Some(SocketAddr::new(ip, mapping.dest_port))
}

/// Whether every mapping of a loop can be served by the plain loop.
pub(super) fn suits(sites: &[(std::net::TcpListener, Site)]) -> bool {
    sites
        .iter()
        .all(|(_, site)| destination(&site.mapping).is_some())
}

/// Runs one plain loop on this thread until the proxy is done; says on `ready` whether it
/// started.
pub(super) fn event_loop(
    sites: Vec<(std::net::TcpListener, Site)>,
    stop: Stop,
    ready: tokio::sync::oneshot::Sender<io::Result<()>>,
) {
    let mut this = match Loop::new(sites, &stop) {
        Ok(this) => this,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let _ = ready.send(Ok(()));
    if let Err(e) = this.run() {
        eprintln!("tprox-relay: an event loop failed: {e}");
    }
}

/// What an epoll event's data says: the bell, a listener, or one socket of a pair. A pair's
/// slot is reused once the pair ends, so its generation is part of the token, and an event
/// that was already on its way for the old pair is recognized and ignored.
const BELL: u64 = 0;
const LISTENER: u64 = 1;
const CLIENT: u64 = 2;
const SERVER: u64 = 3;

fn token(kind: u64, index: usize, generation: u32) -> u64 {
    (u64::from(generation) << 32) | ((index as u64) << 2) | kind
}

/// One of the stop's signals, heard through the bell.
struct Signal {
    wait: Pin<Box<WaitForCancellationFutureOwned>>,
    fired: bool,
}

impl Signal {
    fn new(token: &CancellationToken) -> Signal {
        Signal {
            wait: Box::pin(token.clone().cancelled_owned()),
            fired: false,
        }
    }

    /// Whether the signal has been given; if not, the bell rings when it is.
    fn fired(&mut self, cx: &mut Context<'_>) -> bool {
        if !self.fired {
            self.fired = self.wait.as_mut().poll(cx).is_ready();
        }
        self.fired
    }
}

/// A client accepted while the mapping's connection limit was reached, and its wait for a slot.
struct Waiting {
    client: OwnedFd,
    peer: Option<SocketAddr>,
    slot: Pin<Box<dyn Future<Output = Result<OwnedSemaphorePermit, AcquireError>> + Send>>,
}

/// One of the loop's listeners.
struct Listening {
    /// `None` once the proxy stops accepting.
    fd: Option<OwnedFd>,
    site: Site,
    dest: SocketAddr,
    rules: Rules,
    /// Taken out of epoll for now: while a client waits for a slot, or during a backoff.
    paused: bool,
    /// When a backoff ends.
    resume_at: Option<Instant>,
    /// The next backoff while descriptors are short.
    backoff: Duration,
    /// A backoff has just ended: one accept may be tried although the shortage lasts.
    granted: bool,
    waiting: Option<Waiting>,
}

/// A slot of the pair table.
#[derive(Default)]
struct Slot {
    generation: u32,
    entry: Option<Entry>,
}

impl Slot {
    /// The pair in this slot, if it is the one of `generation` (an event or a timer may
    /// outlive its pair, whose slot may hold another by then).
    fn live(&mut self, generation: u32) -> Option<&mut Entry> {
        self.entry
            .as_mut()
            .filter(|_| self.generation == generation)
    }
}

/// An open pair and what belongs with it until it ends.
struct Entry {
    pair: Pair,
    /// The listener it came from.
    listener: usize,
    /// The pair's key in the timer set, if it has one. A deadline that moves later (the stall
    /// clock restarting with every byte written) keeps the earlier key, and is found when that
    /// comes due: a write changes nothing here.
    timer: Option<Instant>,
    /// Only when pairs are logged: who the client is, and when it came.
    log: Option<Box<(Option<SocketAddr>, Instant)>>,
    _slot: OwnedSemaphorePermit,
    _open: TaskTrackerToken,
}

struct Loop {
    epoll: sys::Epoll,
    bell: Arc<sys::Bell>,
    waker: Waker,
    listeners: Vec<Listening>,
    slots: Vec<Slot>,
    free: Vec<usize>,
    /// Deadlines of pairs: (when, slot). Exact but for deadlines that moved later: a pair
    /// with nothing due has no key, so the loop never wakes for a pair that has ended or a
    /// dial that has finished.
    timers: BTreeSet<(Instant, usize)>,
    /// Pairs that used their share of a turn and have more to move.
    again: Vec<(usize, u32)>,
    /// Where every direction of this loop reads into, then writes on from at once.
    scratch: Box<[MaybeUninit<u8>]>,
    go: Signal,
    accepting: Signal,
    close_now: Signal,
    done: Signal,
    /// Held while this loop accepts, so the stop can wait until no loop does.
    acceptor: Option<TaskTrackerToken>,
    closing: bool,
}

impl Loop {
    fn new(sites: Vec<(std::net::TcpListener, Site)>, stop: &Stop) -> io::Result<Loop> {
        let epoll = sys::Epoll::new()?;
        let bell = Arc::new(sys::Bell::new()?);
        epoll.add(bell.fd(), sys::LEVEL_IN, BELL)?;
        let listeners = sites
            .into_iter()
            .map(|(listener, site)| {
                let dest = destination(&site.mapping).expect("checked by suits()");
                let rules = Rules {
                    stall_timeout: site.mapping.stall_timeout,
                    copy: site.options.copy,
                };
                Listening {
                    fd: Some(listener.into()),
                    site,
                    dest,
                    rules,
                    paused: false,
                    resume_at: None,
                    backoff: BACKOFF.0,
                    granted: false,
                    waiting: None,
                }
            })
            .collect();
        Ok(Loop {
            epoll,
            waker: Waker::from(bell.clone()),
            bell,
            listeners,
            slots: Vec::new(),
            free: Vec::new(),
            timers: BTreeSet::new(),
            again: Vec::new(),
            scratch: Box::new_uninit_slice(BUFFER_SIZE),
            go: Signal::new(&stop.go),
            accepting: Signal::new(&stop.accepting),
            close_now: Signal::new(&stop.close_now),
            done: Signal::new(&stop.done),
            acceptor: Some(stop.acceptors.token()),
            closing: false,
        })
    }

    fn run(&mut self) -> io::Result<()> {
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
        // Nothing is accepted before every loop runs.
        loop {
            let mut cx = Context::from_waker(&self.waker);
            if self.done.fired(&mut cx) {
                return Ok(());
            }
            if self.go.fired(&mut cx) {
                break;
            }
            self.epoll.wait(&mut events, -1)?;
            self.bell.clear();
        }
        for (n, listener) in self.listeners.iter().enumerate() {
            let fd = listener.fd.as_ref().expect("listening").as_raw_fd();
            self.epoll.add(fd, sys::LEVEL_IN, token(LISTENER, n, 0))?;
        }
        self.hear_signals();
        while !self.done.fired {
            let timeout = self.timeout();
            let n = self.epoll.wait(&mut events, timeout)?;
            for event in &events[..n] {
                // Copied out: the struct is packed on some targets.
                let (data, flags) = (event.u64, event.events);
                self.dispatch(data, flags);
            }
            for (slot, generation) in std::mem::take(&mut self.again) {
                self.drive(slot, generation);
            }
            self.expire();
        }
        Ok(())
    }

    fn dispatch(&mut self, data: u64, flags: u32) {
        let index = ((data & 0xffff_ffff) >> 2) as usize;
        let generation = (data >> 32) as u32;
        match data & 3 {
            BELL => {
                self.bell.clear();
                self.hear_signals();
                for n in 0..self.listeners.len() {
                    self.poll_waiting(n);
                }
            }
            LISTENER => self.accept(index),
            kind => {
                let Some(entry) = self.slots.get_mut(index).and_then(|s| s.live(generation)) else {
                    return;
                };
                let ready: &mut Ready = if kind == CLIENT {
                    &mut entry.pair.client_ready
                } else {
                    &mut entry.pair.server_ready
                };
                ready.note(flags);
                self.drive(index, generation);
            }
        }
    }

    /// How long epoll may wait: until the next deadline, not at all while pairs have more to
    /// move, a minute at most when nothing is due.
    fn timeout(&self) -> libc::c_int {
        /// How long the loop waits when nothing is due: long, but never forever. Measured: a
        /// loop that waits with no timeout (-1) is woken on an idle CPU far more often than one
        /// whose wait has any, however long (2.1 to 2.2 halts of a CPU per 64-byte round trip
        /// through it, against 0.8 with a 600 s timeout, as nginx's wait always has one), and
        /// on a machine whose idle CPUs halt, each of those wake-ups costs the round trip about
        /// 10 µs. The loop wakes once a minute for nothing, which costs nothing measurable.
        const IDLE_WAIT_MS: libc::c_int = 60_000;
        if !self.again.is_empty() {
            return 0;
        }
        let next = self
            .listeners
            .iter()
            .filter_map(|l| l.resume_at)
            .chain(self.timers.first().map(|(when, _)| *when))
            .min();
        let Some(next) = next else {
            return IDLE_WAIT_MS;
        };
        let left = next.saturating_duration_since(Instant::now());
        // Rounded up: waking before the deadline would only mean waiting again.
        left.as_micros().div_ceil(1000).min(i32::MAX as u128) as libc::c_int
    }

    /// Acts on what the stop has said so far.
    fn hear_signals(&mut self) {
        let waker = self.waker.clone();
        let mut cx = Context::from_waker(&waker);
        if self.acceptor.is_some() && self.accepting.fired(&mut cx) {
            // Closing a listener takes it out of epoll; clients in its backlog are refused.
            for listener in &mut self.listeners {
                listener.fd = None;
                listener.waiting = None;
                listener.resume_at = None;
            }
            self.acceptor = None;
        }
        if !self.closing && self.close_now.fired(&mut cx) {
            self.closing = true;
            for index in 0..self.slots.len() {
                if self.slots[index].entry.is_some() {
                    self.end(index, Ending::Shutdown);
                }
            }
        }
        self.done.fired(&mut cx);
    }

    /// Accepts one client on listener `n`, if its mapping may take one now.
    fn accept(&mut self, n: usize) {
        let listener = &mut self.listeners[n];
        let Some(fd) = listener.fd.as_ref().map(AsRawFd::as_raw_fd) else {
            return;
        };
        if listener.paused {
            return;
        }
        let shortage = &listener.site.limit.shortage;
        // While descriptors are short, each accept waits for a backoff first, as the tokio
        // loop's do: otherwise clients would be taken only to be dropped.
        if shortage.active() && !listener.granted {
            let until = Instant::now() + listener.backoff;
            listener.backoff = (listener.backoff * 2).min(BACKOFF.1);
            self.pause(n, Some(until));
            return;
        }
        if !shortage.active() {
            listener.backoff = BACKOFF.0;
        }
        listener.granted = false;
        let (client, peer) = match sys::accept(fd) {
            Ok(accepted) => accepted,
            Err(e) => {
                if out_of_descriptors(&e) {
                    shortage.begin(&listener.site.name, "accept", &e);
                }
                return;
            }
        };
        match listener.site.limit.slots.clone().try_acquire_owned() {
            Ok(slot) => self.open(n, client, peer, slot),
            Err(_) => {
                // Accepted first, as the tokio loop does: a freed slot goes to a loop that
                // holds a client. Until one is free, this listener is out of epoll.
                let slots = listener.site.limit.slots.clone();
                listener.waiting = Some(Waiting {
                    client,
                    peer,
                    slot: Box::pin(slots.acquire_owned()),
                });
                self.pause(n, None);
                self.poll_waiting(n);
            }
        }
    }

    /// Takes listener `n` out of epoll, until `until` if that is given.
    fn pause(&mut self, n: usize, until: Option<Instant>) {
        let listener = &mut self.listeners[n];
        if let Some(fd) = &listener.fd {
            let _ = self.epoll.modify(fd.as_raw_fd(), 0, token(LISTENER, n, 0));
            listener.paused = true;
            listener.resume_at = until;
        }
    }

    fn resume(&mut self, n: usize) {
        let listener = &mut self.listeners[n];
        listener.resume_at = None;
        if let (Some(fd), true) = (&listener.fd, listener.paused) {
            let _ = self
                .epoll
                .modify(fd.as_raw_fd(), sys::LEVEL_IN, token(LISTENER, n, 0));
            listener.paused = false;
        }
    }

    /// Opens the pair of a client that waited for a slot, once one is free.
    fn poll_waiting(&mut self, n: usize) {
        let Some(waiting) = &mut self.listeners[n].waiting else {
            return;
        };
        let mut cx = Context::from_waker(&self.waker);
        let Poll::Ready(slot) = waiting.slot.as_mut().poll(&mut cx) else {
            return;
        };
        let waiting = self.listeners[n].waiting.take().expect("polled above");
        self.resume(n);
        if let Ok(slot) = slot {
            self.open(n, waiting.client, waiting.peer, slot);
        }
    }

    /// Dials the destination for a client just accepted, and registers both sockets.
    fn open(
        &mut self,
        n: usize,
        client: OwnedFd,
        peer: Option<SocketAddr>,
        slot: OwnedSemaphorePermit,
    ) {
        let listener = &self.listeners[n];
        let site = &listener.site;
        let limit = &site.limit;
        limit.slot_taken(&site.name, site.mapping.max_connections);
        let logged = site.options.log_connections || site.options.verbose;
        let peer_name = || peer.map_or_else(|| "client".to_string(), |p| p.to_string());
        if site.options.verbose {
            eprintln!("tprox-relay: {}: accepted on {}", peer_name(), site.mapping);
        }
        let now = Instant::now();
        let server = match start_connect(listener.dest, Handshake::AckWithFirstBytes) {
            Ok(server) => OwnedFd::from(server),
            Err(e) => {
                if out_of_descriptors(&e) {
                    limit.shortage.begin(&site.name, "dialing", &e);
                }
                if logged {
                    eprintln!(
                        "tprox-relay: {} -> {}: up 0 B, down 0 B, 0.000 s, dial failed: {e}",
                        peer_name(),
                        self.label(n)
                    );
                }
                return;
            }
        };
        let index = self.free.pop().unwrap_or_else(|| {
            self.slots.push(Slot::default());
            self.slots.len() - 1
        });
        let generation = self.slots[index].generation;
        let pair = Pair::new(client, server, now + listener.rules.stall_timeout);
        let registered = self
            .epoll
            .add(
                pair.client_fd(),
                sys::EDGE,
                token(CLIENT, index, generation),
            )
            .and_then(|()| {
                self.epoll.add(
                    pair.server_fd(),
                    sys::EDGE,
                    token(SERVER, index, generation),
                )
            });
        self.slots[index].entry = Some(Entry {
            pair,
            listener: n,
            timer: None,
            log: logged.then(|| Box::new((peer, now))),
            _slot: slot,
            _open: site.pairs.token(),
        });
        if let Err(e) = registered {
            self.end(index, Ending::DialFailed(format!("dial failed: {e}")));
            return;
        }
        self.set_timer(index);
    }

    /// Moves what pair `index` can move now, and ends it if it is over.
    fn drive(&mut self, index: usize, generation: u32) {
        let Some(entry) = self.slots[index].live(generation) else {
            return;
        };
        let listener = &self.listeners[entry.listener];
        let flow = match entry.pair.connected() {
            None => return,
            Some(Err(ending)) => Err(ending),
            Some(Ok(first)) => {
                if first {
                    listener.site.limit.shortage.end(&listener.site.name);
                }
                let flow = entry.pair.relay(listener.rules, &mut self.scratch);
                if first {
                    entry.pair.release_handshake_ack();
                }
                flow
            }
        };
        match flow {
            Ok(Flow::Waiting) => self.set_timer(index),
            Ok(Flow::Busy) => {
                self.again.push((index, generation));
                self.set_timer(index);
            }
            Ok(Flow::Finished) => self.end(index, Ending::BothEof),
            Err(ending) => self.end(index, ending),
        }
    }

    /// Keeps pair `index`'s key in the timer set in step with its next deadline.
    fn set_timer(&mut self, index: usize) {
        let Some(entry) = self.slots[index].entry.as_mut() else {
            return;
        };
        let due = entry.pair.deadline();
        match (entry.timer, due) {
            (None, None) => {}
            (Some(key), Some(due)) if key <= due => {}
            (key, due) => {
                if let Some(key) = key {
                    self.timers.remove(&(key, index));
                }
                if let Some(due) = due {
                    self.timers.insert((due, index));
                }
                entry.timer = due;
            }
        }
    }

    /// Ends the pairs whose deadline has passed, and the backoffs that are over.
    fn expire(&mut self) {
        let backing_off = self.listeners.iter().any(|l| l.resume_at.is_some());
        if self.timers.is_empty() && !backing_off {
            return;
        }
        let now = Instant::now();
        while let Some(&(when, index)) = self.timers.first() {
            if when > now {
                break;
            }
            self.timers.pop_first();
            let Some(entry) = self.slots[index].entry.as_mut() else {
                continue;
            };
            entry.timer = None;
            match entry.pair.expired(now) {
                Some(ending) => self.end(index, ending),
                None => self.set_timer(index),
            }
        }
        for n in 0..self.listeners.len() {
            if self.listeners[n].resume_at.is_some_and(|t| t <= now) {
                self.listeners[n].granted = true;
                self.resume(n);
            }
        }
    }

    /// Closes pair `index` as `ending` says, logs it, and frees its slot.
    fn end(&mut self, index: usize, ending: Ending) {
        let slot = &mut self.slots[index];
        let Some(entry) = slot.entry.take() else {
            return;
        };
        if let Some(key) = entry.timer {
            self.timers.remove(&(key, index));
        }
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(index);
        let (up, down) = entry.pair.traffic();
        entry.pair.close(&ending);
        if let Some(log) = &entry.log {
            let (peer, started) = **log;
            eprintln!(
                "tprox-relay: {} -> {}: up {up} B, down {down} B, {:.3} s, {ending}",
                peer.map_or_else(|| "client".to_string(), |p| p.to_string()),
                self.label(entry.listener),
                started.elapsed().as_secs_f64(),
            );
        }
    }

    /// The destination as log lines name it.
    fn label(&self, n: usize) -> String {
        let mapping = &self.listeners[n].site.mapping;
        host_port(&mapping.dest_host, mapping.dest_port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sni::Routes;

    fn mapping(dest_host: &str) -> Mapping {
        Mapping {
            bind: "127.0.0.1".into(),
            local_port: 0,
            dest_host: dest_host.into(),
            dest_port: 7,
            via: None,
            direct_fallback: false,
            max_connections: 10,
            stall_timeout: Duration::from_secs(10),
            sni: Routes::default(),
            front: None,
            send_proxy: None,
            accept_proxy: false,
            udp: false,
        }
    }

    #[test]
    fn only_plain_forwarding_to_an_address_is_served_by_the_plain_loop() {
        let v4: SocketAddr = "127.0.0.1:7".parse().unwrap();
        let v6: SocketAddr = "[::1]:7".parse().unwrap();
        assert_eq!(destination(&mapping("127.0.0.1")), Some(v4));
        assert_eq!(destination(&mapping("::1")), Some(v6));
        assert_eq!(destination(&mapping("[::1]")), Some(v6));
        // A name is resolved for every connection, which could block the loop.
        assert_eq!(destination(&mapping("localhost")), None);
        let mut sni = mapping("127.0.0.1");
        sni.sni.add("a.example=127.0.0.1:1").unwrap();
        assert_eq!(destination(&sni), None);
        let mut accepting = mapping("127.0.0.1");
        accepting.accept_proxy = true;
        assert_eq!(destination(&accepting), None);
        let mut sending = mapping("127.0.0.1");
        sending.send_proxy = Some(crate::proxy_header::SendProxy::V2);
        assert_eq!(destination(&sending), None);
    }

    /// What an idle pair costs the loop: its slot in the table, with nothing held and no pipe.
    /// Growing it grows every open connection's memory (docs/reference-proxy.md).
    const SLOT_LIMIT: usize = 288;

    #[test]
    fn a_pairs_slot_stays_small() {
        let size = std::mem::size_of::<Slot>();
        assert!(
            size <= SLOT_LIMIT,
            "a pair's slot takes {size} bytes, more than {SLOT_LIMIT}"
        );
    }

    #[test]
    fn a_token_gives_back_its_kind_slot_and_generation() {
        for (kind, index, generation) in [(CLIENT, 0, 0), (SERVER, (1 << 30) - 1, u32::MAX)] {
            let data = token(kind, index, generation);
            assert_eq!(data & 3, kind);
            assert_eq!(((data & 0xffff_ffff) >> 2) as usize, index);
            assert_eq!((data >> 32) as u32, generation);
        }
    }
}
