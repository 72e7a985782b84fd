//! `tprox bench --udp`: UDP forwarders side by side, in one run, with a direct socket as the
//! machine's limit.
//!
//! A forwarder's work is per datagram, so the figures are per datagram: how many 64-byte
//! datagrams it carries out and back each second with several clients keeping a window in
//! flight, the CPU time it spends per million datagrams it forwards, one client's round trip,
//! and how many datagrams were lost on the way. Each round measures every forwarder, the
//! order rotated; the medians count, and each figure's lowest and highest round say how sure
//! a ratio is.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{group_usage, rotated, BenchOptions, Instance, Target};
use crate::error::Error;
use crate::profiles;

/// Bytes in each datagram: small, so that the cost per datagram, not per byte, is measured.
pub const DATAGRAM: usize = 64;
/// Clients in the rate test, each with a socket (a session) of its own.
pub const SESSIONS: usize = 4;
/// Datagrams each client keeps in flight: enough to keep a forwarder busy while its client
/// waits, few enough that no socket buffer on the way overflows.
pub const WINDOW: usize = 16;
/// A window with no reply for this long is taken as lost, and sent again: a forwarder that
/// drops datagrams costs its rate, not the whole measurement.
const LOSS_WAIT: Duration = Duration::from_millis(100);
/// Load before the counting starts: sessions opened, caches warm.
const WARMUP: Duration = Duration::from_millis(300);

/// The subject of the comparisons: the reference's UDP forwarding.
pub const SUBJECT: &str = "ref-udp";

/// One forwarder's figures (medians over the rounds).
#[derive(Debug, Clone, Default)]
pub struct UdpFigures {
    pub name: String,
    pub version: String,
    /// Round trips per second: datagrams that went out and came back, through the forwarder
    /// twice each.
    pub rate: Option<f64>,
    /// CPU seconds the forwarder used per million datagrams it carried (each round trip is
    /// two).
    pub cpu_per_million: Option<f64>,
    /// One client, one datagram at a time: mean and 99th percentile, seconds.
    pub rtt_mean: Option<f64>,
    pub rtt_p99: Option<f64>,
    /// Share of the datagrams sent in the rate test that never came back.
    pub lost: Option<f64>,
    pub errors: Vec<String>,
    /// The lowest and highest round of each metric, by [`Metric::key`].
    pub spread: BTreeMap<&'static str, (f64, f64)>,
}

/// One figure, how to show it, and which way is better.
struct Metric {
    key: &'static str,
    title: &'static str,
    get: fn(&UdpFigures) -> Option<f64>,
    higher_is_better: bool,
    show: fn(f64) -> String,
}

const METRICS: &[Metric] = &[
    Metric {
        key: "round_trips_per_sec",
        title: "round trips/s",
        get: |f| f.rate,
        higher_is_better: true,
        show: |v| format!("{v:.0}"),
    },
    Metric {
        key: "cpu_secs_per_million",
        title: "CPU per M datagrams",
        get: |f| f.cpu_per_million,
        higher_is_better: false,
        show: |v| format!("{v:.2} s"),
    },
    Metric {
        key: "rtt_mean_secs",
        title: "RTT mean",
        get: |f| f.rtt_mean,
        higher_is_better: false,
        show: |v| format!("{:.1} µs", v * 1e6),
    },
    Metric {
        key: "rtt_p99_secs",
        title: "RTT p99",
        get: |f| f.rtt_p99,
        higher_is_better: false,
        show: |v| format!("{:.1} µs", v * 1e6),
    },
    Metric {
        key: "lost_share",
        title: "lost",
        get: |f| f.lost,
        higher_is_better: false,
        show: |v| format!("{:.2} %", v * 100.0),
    },
];

/// `tprox bench --udp`: checks the selection (UDP forwarders only) and measures it.
pub fn main(
    mut options: BenchOptions,
    scratch: &std::path::Path,
    progress: &dyn super::Progress,
) -> Result<super::Measured, Error> {
    if options.profiles.is_empty() {
        options.profiles = profiles::PROFILES
            .iter()
            .filter(|p| p.udp && p.program().is_ok())
            .map(|p| p.name.to_string())
            .collect();
    }
    for name in &options.profiles {
        let profile = profiles::find(name).map_err(Error::Setup)?;
        if !profile.udp {
            let udp: Vec<&str> = profiles::PROFILES
                .iter()
                .filter(|p| p.udp)
                .map(|p| p.name)
                .collect();
            return Err(Error::Usage(format!(
                "--profiles {name}: {name} forwards TCP, and tprox bench --udp measures UDP \
                 forwarders ({}); leave out --udp to measure it",
                udp.join(", ")
            )));
        }
        profile.program().map_err(Error::Setup)?;
    }
    let targets = super::targets(&options, scratch).map_err(Error::Setup)?;
    progress.start((targets.len() * options.rounds) as u64);
    let runtime = super::output_runtime()?;
    let mut rounds = Vec::new();
    for round in 0..options.rounds {
        let mut figures: Vec<UdpFigures> = targets
            .iter()
            .map(|(name, version, _)| UdpFigures {
                name: name.clone(),
                version: version.clone(),
                ..UdpFigures::default()
            })
            .collect();
        for i in rotated(targets.len(), round) {
            let (name, _, target) = &targets[i];
            progress.step(&format!("round {}/{}: {name}", round + 1, options.rounds));
            if let Err(e) = measure(&runtime, target, options.duration, &mut figures[i]) {
                figures[i].errors.push(e);
            }
            progress.advance();
        }
        rounds.push(figures);
    }
    let figures = medians(rounds);
    let settings = Settings {
        duration: options.duration.as_secs_f64(),
        rounds: options.rounds,
        cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
    };
    Ok(super::Measured::Table {
        text: table(&figures, &settings),
        json: to_json(&figures, &settings),
    })
}

/// How the figures were taken, for the report's first line.
struct Settings {
    duration: f64,
    rounds: usize,
    cores: usize,
}

impl Settings {
    fn line(&self) -> String {
        format!(
            "tprox bench --udp: {} s per measurement, {} round(s), {DATAGRAM}-byte datagrams, \
             {SESSIONS} clients with {WINDOW} in flight each, {} cores",
            self.duration, self.rounds, self.cores
        )
    }
}

/// One round of one target: the rate test (with the forwarder's CPU), then the round trip.
fn measure(
    runtime: &tokio::runtime::Runtime,
    target: &Target,
    duration: Duration,
    f: &mut UdpFigures,
) -> Result<(), String> {
    let echo = Echo::start().map_err(|e| format!("echo: {e}"))?;
    let instance = Instance::start_as(runtime, target, echo.addr, true)?;
    let cpu = |instance: &Instance| instance.proxy.as_ref().map(|p| group_usage(p.pgid()).0);
    let before = cpu(&instance);
    match exchange(instance.addr, SESSIONS, WINDOW, duration) {
        Ok(load) if load.returned == 0 => {
            f.errors.push("rate: no datagram came back".into());
        }
        Ok(load) => {
            f.rate = Some(load.returned as f64 / duration.as_secs_f64());
            f.lost = Some(load.lost as f64 / load.sent.max(1) as f64);
            if let (Some(before), Some(after)) = (before, cpu(&instance)) {
                // Forwarding takes CPU: none at all is work not seen, not a win.
                if after > before {
                    f.cpu_per_million = Some((after - before) / (2.0 * load.returned as f64) * 1e6);
                }
            }
        }
        Err(e) => f.errors.push(format!("rate: {e}")),
    }
    match exchange(instance.addr, 1, 1, duration) {
        Ok(load) if load.times.is_empty() => {
            f.errors.push("round trips: no datagram came back".into())
        }
        Ok(load) => {
            let (mean, p99) = super::report::mean_and_p99(&load.times);
            f.rtt_mean = Some(mean);
            f.rtt_p99 = Some(p99);
        }
        Err(e) => f.errors.push(format!("round trips: {e}")),
    }
    instance.stop(runtime);
    Ok(())
}

/// A UDP echo server on loopback, in a thread of its own; stopped when dropped.
struct Echo {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Echo {
    fn start() -> io::Result<Echo> {
        let socket = UdpSocket::bind("127.0.0.1:0")?;
        // Wakes now and then to see whether it is to stop.
        socket.set_read_timeout(Some(Duration::from_millis(100)))?;
        let addr = socket.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 65_536];
            while !stopping.load(Relaxed) {
                match socket.recv_from(&mut buf) {
                    // The bench never sends an empty datagram: one is a forwarder's own
                    // (rinetd opens each session with one) and is not answered, since rinetd
                    // takes an empty datagram from the destination for the session's end.
                    Ok((0, _)) | Err(_) => {}
                    Ok((len, from)) => {
                        let _ = socket.send_to(&buf[..len], from);
                    }
                }
            }
        });
        Ok(Echo {
            addr,
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// What an exchange counted after its warm-up.
#[derive(Debug, Default)]
struct Exchanged {
    sent: u64,
    returned: u64,
    lost: u64,
    /// Each returned datagram's round trip, when one was in flight at a time.
    times: Vec<Duration>,
}

/// `sessions` clients, each keeping `window` datagrams in flight to `addr` for the warm-up and
/// then `duration`; a datagram's reply lets the next one go.
fn exchange(
    addr: SocketAddr,
    sessions: usize,
    window: usize,
    duration: Duration,
) -> io::Result<Exchanged> {
    let start = Instant::now();
    let counting = start + WARMUP;
    let end = counting + duration;
    let clients: Vec<_> = (0..sessions)
        .map(|_| {
            let socket = UdpSocket::bind("127.0.0.1:0")?;
            socket.connect(addr)?;
            socket.set_read_timeout(Some(LOSS_WAIT))?;
            Ok(std::thread::spawn(move || {
                client(&socket, window, counting, end)
            }))
        })
        .collect::<io::Result<_>>()?;
    let mut all = Exchanged::default();
    for client in clients {
        let one = client
            .join()
            .map_err(|_| io::Error::other("a client thread panicked"))??;
        all.sent += one.sent;
        all.returned += one.returned;
        all.lost += one.lost;
        all.times.extend(one.times);
    }
    Ok(all)
}

/// One client of [`exchange`]. Each datagram carries the window's generation and its send
/// time: a reply that comes after its window was given up is not counted, so a late reply
/// never lets more than `window` datagrams be in flight.
fn client(
    socket: &UdpSocket,
    window: usize,
    counting: Instant,
    end: Instant,
) -> io::Result<Exchanged> {
    let epoch = Instant::now();
    let mut counts = Exchanged::default();
    let mut generation = 0u32;
    let mut datagram = [0u8; DATAGRAM];
    let mut reply = [0u8; 2 * DATAGRAM];
    let send = |datagram: &mut [u8; DATAGRAM], generation: u32, counts: &mut Exchanged| {
        let now = Instant::now();
        datagram[..4].copy_from_slice(&generation.to_be_bytes());
        datagram[4..12].copy_from_slice(&(now - epoch).as_nanos().to_be_bytes()[8..]);
        // A full buffer or an ICMP error drops it, as UDP may: counted lost below.
        let _ = socket.send(&datagram[..]);
        if now >= counting {
            counts.sent += 1;
        }
    };
    for _ in 0..window {
        send(&mut datagram, generation, &mut counts);
    }
    while Instant::now() < end {
        match socket.recv(&mut reply) {
            Ok(len) if len == DATAGRAM => {
                if reply[..4] != generation.to_be_bytes() {
                    continue;
                }
                let now = Instant::now();
                if now >= counting {
                    counts.returned += 1;
                    if window == 1 {
                        let mut nanos = [0u8; 16];
                        nanos[8..].copy_from_slice(&reply[4..12]);
                        let sent = Duration::from_nanos(u128::from_be_bytes(nanos) as u64);
                        counts.times.push((now - epoch).saturating_sub(sent));
                    }
                }
                send(&mut datagram, generation, &mut counts);
            }
            // Not a datagram of ours: passed over.
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::ConnectionRefused
                ) =>
            {
                // Each reply sends the next datagram, so a whole window was out: it is given
                // up and sent again.
                if Instant::now() >= counting {
                    counts.lost += window as u64;
                }
                generation = generation.wrapping_add(1);
                for _ in 0..window {
                    send(&mut datagram, generation, &mut counts);
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(counts)
}

/// Per forwarder, the median of each figure over the rounds, and each figure's spread.
fn medians(rounds: Vec<Vec<UdpFigures>>) -> Vec<UdpFigures> {
    let Some(first) = rounds.first() else {
        return Vec::new();
    };
    (0..first.len())
        .map(|i| {
            let all: Vec<&UdpFigures> = rounds.iter().map(|r| &r[i]).collect();
            let values = |get: fn(&UdpFigures) -> Option<f64>| -> Vec<f64> {
                let mut values: Vec<f64> = all.iter().filter_map(|f| get(f)).collect();
                values.sort_by(f64::total_cmp);
                values
            };
            let median = |get| {
                let values = values(get);
                values.get(values.len() / 2).copied()
            };
            let mut errors: Vec<String> = all.iter().flat_map(|f| f.errors.clone()).collect();
            errors.dedup();
            UdpFigures {
                name: all[0].name.clone(),
                version: all[0].version.clone(),
                rate: median(|f| f.rate),
                cpu_per_million: median(|f| f.cpu_per_million),
                rtt_mean: median(|f| f.rtt_mean),
                rtt_p99: median(|f| f.rtt_p99),
                lost: median(|f| f.lost),
                errors,
                spread: METRICS
                    .iter()
                    .filter_map(|m| {
                        let v = values(m.get);
                        Some((m.key, (*v.first()?, *v.last()?)))
                    })
                    .collect(),
            }
        })
        .collect()
}

/// The figures as a Markdown table (readable as text too), the subject's ratios to each other
/// forwarder with both spreads, and what could not be measured.
fn table(figures: &[UdpFigures], settings: &Settings) -> String {
    render(figures, &settings.line(), settings.rounds)
}

/// Rounds below which no lead is claimed: one or two rounds say nothing of the spread.
const ROUNDS_FOR_A_LEAD: usize = 3;

fn render(figures: &[UdpFigures], first_line: &str, rounds: usize) -> String {
    let mut out = format!("{first_line}\n\n| forwarder |");
    for m in METRICS {
        let _ = write!(out, " {} |", m.title);
    }
    out.push_str("\n|---|");
    out.push_str(&"---:|".repeat(METRICS.len()));
    out.push('\n');
    for f in figures {
        let name = match f.name == SUBJECT {
            true => format!("**{}**", f.name),
            false => f.name.clone(),
        };
        let _ = write!(out, "| {name} |");
        for m in METRICS {
            let _ = write!(out, " {} |", (m.get)(f).map_or("–".into(), m.show));
        }
        out.push('\n');
    }
    let claims = rounds >= ROUNDS_FOR_A_LEAD;
    let ratios = ratio_lines(figures, claims);
    if !ratios.is_empty() {
        let apart = match claims {
            true => "\"apart\" when the rounds do not overlap",
            false => "no lead claimed from fewer than 3 rounds",
        };
        let _ = write!(
            out,
            "\n{SUBJECT} against each other forwarder, from the same run (ratio of medians, \
             {SUBJECT}'s / theirs; the lowest and highest round of each in brackets; {apart}):\
             \n\n{}",
            ratios.join("\n")
        );
        out.push('\n');
    }
    for f in figures.iter().filter(|f| !f.errors.is_empty()) {
        let _ = writeln!(
            out,
            "\n{} could not be measured fully: {}",
            f.name,
            f.errors.join("; ")
        );
    }
    out
}

/// The subject's ratio to each other forwarder, per figure (lost datagrams left out: a ratio
/// of two small shares says little).
fn ratio_lines(figures: &[UdpFigures], claims: bool) -> Vec<String> {
    let Some(subject) = figures.iter().find(|f| f.name == SUBJECT) else {
        return Vec::new();
    };
    let mut lines = Vec::new();
    for m in METRICS.iter().filter(|m| m.key != "lost_share") {
        let Some(ours) = (m.get)(subject) else {
            continue;
        };
        let peers: Vec<String> = figures
            .iter()
            .filter(|f| f.name != SUBJECT && f.name != "direct")
            .filter_map(|f| {
                let theirs = (m.get)(f)?;
                let (a, b) = (subject.spread.get(m.key)?, f.spread.get(m.key)?);
                let apart = claims && !super::report::overlaps(*a, *b);
                Some(format!(
                    "{:.2}x {} ({}–{} vs {}–{}{})",
                    ours / theirs,
                    f.name,
                    (m.show)(a.0),
                    (m.show)(a.1),
                    (m.show)(b.0),
                    (m.show)(b.1),
                    if apart { ", apart" } else { "" }
                ))
            })
            .collect();
        if !peers.is_empty() {
            let better = if m.higher_is_better {
                "higher"
            } else {
                "lower"
            };
            lines.push(format!(
                "- {} ({better} is better): {}",
                m.title,
                peers.join(", ")
            ));
        }
    }
    lines
}

/// The figures as JSON: settings, the subject, each forwarder with its figures and spreads.
fn to_json(figures: &[UdpFigures], settings: &Settings) -> Value {
    json!({
        "kind": "udp",
        "subject": SUBJECT,
        "settings": {
            "duration_secs": settings.duration,
            "rounds": settings.rounds,
            "cores": settings.cores,
            "datagram_bytes": DATAGRAM,
            "sessions": SESSIONS,
            "window": WINDOW,
        },
        "forwarders": figures.iter().map(|f| {
            let mut one = json!({
                "name": f.name,
                "version": f.version,
                "errors": f.errors,
            });
            for m in METRICS {
                one[m.key] = json!((m.get)(f));
                one["spread"][m.key] = json!(f.spread.get(m.key).map(|(a, b)| [a, b]));
            }
            one
        }).collect::<Vec<_>>(),
    })
}

/// Whether a saved report is one of `tprox bench --udp`.
pub fn is_udp_report(report: &Value) -> bool {
    report["kind"] == "udp"
}

/// The Markdown of a saved `tprox bench --udp --json` report: the same table and ratios.
pub fn markdown_from(report: &Value, file: &str) -> Result<String, String> {
    let forwarders = report["forwarders"]
        .as_array()
        .ok_or("it has no \"forwarders\" list")?;
    let figures = forwarders
        .iter()
        .map(|one| {
            let mut f = UdpFigures {
                name: one["name"]
                    .as_str()
                    .ok_or("a forwarder without a name")?
                    .into(),
                version: one["version"].as_str().unwrap_or("").into(),
                errors: one["errors"]
                    .as_array()
                    .map(|e| {
                        e.iter()
                            .filter_map(|e| e.as_str().map(String::from))
                            .collect()
                    })
                    .unwrap_or_default(),
                ..UdpFigures::default()
            };
            let get = |key: &str| one[key].as_f64();
            f.rate = get("round_trips_per_sec");
            f.cpu_per_million = get("cpu_secs_per_million");
            f.rtt_mean = get("rtt_mean_secs");
            f.rtt_p99 = get("rtt_p99_secs");
            f.lost = get("lost_share");
            for m in METRICS {
                if let (Some(a), Some(b)) = (
                    one["spread"][m.key][0].as_f64(),
                    one["spread"][m.key][1].as_f64(),
                ) {
                    f.spread.insert(m.key, (a, b));
                }
            }
            Ok(f)
        })
        .collect::<Result<Vec<_>, String>>()?;
    let s = &report["settings"];
    let number = |key: &str| s[key].as_f64().unwrap_or(f64::NAN);
    let line = format!(
        "`tprox bench --udp` on {} cores: {} s per measurement, {} round(s), {}-byte datagrams, \
         {} clients with {} in flight each ({file}).",
        number("cores"),
        number("duration_secs"),
        number("rounds"),
        number("datagram_bytes"),
        number("sessions"),
        number("window"),
    );
    Ok(render(&figures, &line, number("rounds") as usize))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loopback_echo_returns_every_datagram_and_times_each() {
        let echo = Echo::start().unwrap();
        let load = exchange(echo.addr, 2, 4, Duration::from_millis(200)).unwrap();
        assert!(load.returned > 0, "{load:?}");
        assert!(load.returned <= load.sent, "{load:?}");
        assert!(load.times.is_empty(), "times only with one in flight");
        let one = exchange(echo.addr, 1, 1, Duration::from_millis(200)).unwrap();
        assert_eq!(one.times.len() as u64, one.returned);
        assert!(one.times.iter().all(|t| *t < Duration::from_secs(1)));
    }

    #[test]
    fn a_forwarder_that_returns_nothing_loses_every_window() {
        // A bound socket that never answers.
        let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
        let load = exchange(
            silent.local_addr().unwrap(),
            1,
            4,
            Duration::from_millis(350),
        )
        .unwrap();
        assert_eq!(load.returned, 0);
        assert!(load.lost >= 8, "{load:?}");
    }

    #[test]
    fn a_saved_report_gives_back_its_table() {
        let f = |name: &str, rate: f64, cpu: f64| UdpFigures {
            name: name.into(),
            rate: Some(rate),
            cpu_per_million: Some(cpu),
            ..UdpFigures::default()
        };
        let all = medians(vec![
            vec![f("ref-udp", 100_000.0, 1.0), f("socat-udp", 20_000.0, 5.0)],
            vec![f("ref-udp", 120_000.0, 1.2), f("socat-udp", 22_000.0, 4.0)],
        ]);
        assert_eq!(all[0].rate, Some(120_000.0));
        assert_eq!(all[0].spread["round_trips_per_sec"], (100_000.0, 120_000.0));
        let settings = Settings {
            duration: 1.0,
            rounds: 3,
            cores: 2,
        };
        let saved = to_json(&all, &settings);
        assert!(is_udp_report(&saved));
        let page = markdown_from(&saved, "x.json").unwrap();
        let text = table(&all, &settings);
        // The same rows and ratios; only the first line differs.
        assert_eq!(
            page.split_once('\n').unwrap().1,
            text.split_once('\n').unwrap().1
        );
        assert!(page.contains("| **ref-udp** | 120000 |"), "{page}");
        assert!(
            page.contains("5.45x socat-udp (100000–120000 vs 20000–22000, apart)"),
            "{page}"
        );
        assert!(markdown_from(&json!({"kind": "udp"}), "x").is_err());
    }
}
