//! Running cases: by default one fresh proxy and destination per case, several cases at once;
//! with `shared`, one proxy for all cases in sequence, as the original tester did.
//!
//! Data flows one way: the runner turns each [`Case`] into a [`CaseReport`] and hands the reports
//! to a [`Reporter`] in catalogue order; it never prints anything itself.
//!
//! Around every case body the runner checks that the proxy survives: a plain echo before and
//! after the body, and the proxy's exit status (R11).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, Semaphore};

use crate::case::Case;
use crate::clock::Lateness;
use crate::event::{Event, Reporter};
use crate::harness::{survival_echo, Ctx, Destination, Dialing, Scale, PROMPT};
use crate::outcome::{Failure, Outcome};
use crate::proxy::{Launch, Limits, ProxyCommand, RunningProxy, StartError};
use crate::report::{CaseReport, SurvivalCheck};

/// The defaults of a run, named once: the command line's, the suite's and the grading file's
/// defaults are these.
pub mod defaults {
    use std::time::Duration;

    /// The stall timeout a proxy is expected to use when nobody says otherwise (R7).
    pub const STALL: Duration = Duration::from_secs(10);
    /// How long a proxy may take to start listening.
    pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);
    /// Cases run at once.
    pub const JOBS: usize = 16;
}

/// Everything a run needs besides the cases.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The proxy under test.
    pub proxy: ProxyCommand,
    /// The stall timeout the proxy is expected to use (R7).
    pub stall: Duration,
    /// How long a proxy may take to start listening.
    pub startup_timeout: Duration,
    /// Cases run at once. Most cases spend their time waiting, so this can exceed the cores.
    pub jobs: usize,
    /// Every random payload derives from this.
    pub seed: u64,
    /// How big the cases' traffic is.
    pub scale: Scale,
    /// Copy each proxy's output to stderr as it is printed.
    pub echo_proxy_output: bool,
    /// Run every case against one proxy instance, in sequence, so that state leaking from one
    /// case into the next shows up.
    pub shared: bool,
    /// How often a failed case is tried again (with a fresh proxy, unless shared). A case that
    /// fails and then passes is flaky.
    pub retries: u32,
    /// Resource limits for every proxy process.
    pub limits: Limits,
    /// When the whole run must end: cases still running then, or not yet started, fail with
    /// "not finished in time". Grading gives each submission a wall-clock limit this way.
    /// (Ignored with `shared`.)
    pub deadline: Option<Instant>,
    /// A proxy that fails to start for one case fails that case, instead of ending the run
    /// with a setup error. Grading wants every case scored.
    pub keep_going: bool,
    /// The handshake every client does first, when the proxy is a SOCKS5 or HTTP CONNECT
    /// front rather than a forwarder to one destination.
    pub front: Option<std::sync::Arc<crate::front::Front>>,
    /// The PROXY protocol as the proxy is configured to speak it: a header it sends first on
    /// every connection to the destination (read off there), one it accepts from its clients
    /// (tprox's clients send it first), or both; that mode's `proxy-protocol/` cases judge it.
    pub proxy_protocol: Option<crate::proxy_protocol::Mode>,
    /// A UDP forwarder (`--udp`): `{listen_port}` is a UDP port, the destination answers
    /// datagrams, and the UDP catalogue runs instead of the TCP one.
    pub udp: bool,
}

impl RunOptions {
    /// The cases that apply to a run with these options (see [`crate::cases::applicable`]).
    pub fn cases(&self) -> Vec<&'static Case> {
        crate::cases::applicable(self.front.as_deref(), self.proxy_protocol, self.udp)
    }

    /// The options `tprox` uses by default, for `proxy` with stall timeout `stall`.
    pub fn new(proxy: ProxyCommand, stall: Duration) -> Self {
        RunOptions {
            proxy,
            stall,
            startup_timeout: defaults::STARTUP_TIMEOUT,
            jobs: defaults::JOBS,
            seed: 0,
            scale: Scale::default(),
            echo_proxy_output: false,
            shared: false,
            retries: 0,
            limits: Limits::default(),
            deadline: None,
            keep_going: false,
            front: None,
            proxy_protocol: None,
            udp: false,
        }
    }
}

/// How long tprox waits for the connection the proxy forwards for its readiness probe. A proxy
/// that dials the destination on accept forwards it within milliseconds.
const PROBE_FORWARD_WAIT: Duration = Duration::from_secs(2);

/// Starts the proxy once and stops it, so that a proxy that cannot start at all is reported
/// before any case runs. Says how the proxy dials, so that the caller can say it once; every
/// case sees it again for its own proxy (and says so in its trace).
pub async fn preflight(options: &RunOptions) -> Result<Dialing, StartError> {
    let (proxy, _dest, dialing) = start(options, None).await?;
    proxy.stop().await;
    Ok(dialing)
}

/// Runs `cases` and reports each to `reporter`, in the order given. Stops early with the
/// first setup error (a proxy that did not start): that is never a case outcome.
pub async fn run<R: Reporter + ?Sized>(
    cases: &[&'static Case],
    options: &RunOptions,
    reporter: &mut R,
) -> Result<Vec<CaseReport>, StartError> {
    if options.shared {
        return run_shared(cases, options, reporter).await;
    }
    let (done_tx, mut done_rx) = mpsc::unbounded_channel();
    let (normal, alone): (Vec<usize>, Vec<usize>) =
        (0..cases.len()).partition(|&i| !cases[i].alone);
    // Phase one: every other case, in parallel.
    let mut tasks = spawn_parallel(cases, &normal, options, &done_tx);
    // Phase two, once phase one is over: the cases that run alone, one after another.
    let mut alone_runner = {
        let (done, options) = (done_tx.clone(), options.clone());
        let cases: Vec<(usize, &'static Case)> = alone.iter().map(|&i| (i, cases[i])).collect();
        Some(async move {
            for (index, case) in cases {
                let _ = done.send((index, Progress::Started));
                let result = run_isolated(case, &options).await;
                let _ = done.send((index, Progress::Finished(Box::new(result))));
            }
        })
    };
    drop(done_tx);
    let mut normal_left = normal.len();
    if normal_left == 0 {
        tasks.extend(alone_runner.take().map(tokio::spawn));
    }
    // Abort whatever is still running if we return early; each task's proxy dies with it.
    let mut guard = AbortOnDrop(tasks);

    let mut finished: Vec<Option<CaseReport>> = vec![None; cases.len()];
    let mut next = 0;
    let mut reports = Vec::with_capacity(cases.len());
    loop {
        // None: every case ended, or the deadline passed (the rest is reported unfinished).
        let Some((index, event)) = next_progress(&mut done_rx, options.deadline).await else {
            break;
        };
        match event {
            Progress::Started => reporter.report(Event::CaseStarted(cases[index])),
            Progress::Finished(result) => {
                finished[index] = Some(match *result {
                    Ok(report) => report,
                    Err(e) if options.keep_going => start_failure(cases[index], e),
                    Err(e) => return Err(e),
                });
                if !cases[index].alone {
                    normal_left -= 1;
                    if normal_left == 0 {
                        guard.0.extend(alone_runner.take().map(tokio::spawn));
                    }
                }
            }
        }
        while next < cases.len() {
            let Some(report) = finished[next].take() else {
                break;
            };
            reporter.report(Event::CaseFinished(&report));
            reports.push(report);
            next += 1;
        }
    }
    // Only a deadline ends the loop early; stop what still runs before reporting it.
    drop(guard);
    for (index, slot) in finished.iter_mut().enumerate().skip(next) {
        let report = slot
            .take()
            .unwrap_or_else(|| unfinished(cases[index], options));
        reporter.report(Event::CaseFinished(&report));
        reports.push(report);
    }
    Ok(reports)
}

/// Starts the cases at `indices` at once, at most `options.jobs` running; each says when it
/// starts and how it ended on `done`.
fn spawn_parallel(
    cases: &[&'static Case],
    indices: &[usize],
    options: &RunOptions,
    done: &mpsc::UnboundedSender<(usize, Progress)>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let slots = Arc::new(Semaphore::new(options.jobs.max(1)));
    indices
        .iter()
        .map(|&index| {
            let (case, slots, done, options) =
                (cases[index], slots.clone(), done.clone(), options.clone());
            tokio::spawn(async move {
                let _slot = slots
                    .acquire_owned()
                    .await
                    .expect("the semaphore is never closed");
                let _ = done.send((index, Progress::Started));
                let result = run_isolated(case, &options).await;
                let _ = done.send((index, Progress::Finished(Box::new(result))));
            })
        })
        .collect()
}

/// The next thing a case says, or `None` once every case has ended or `deadline` has passed.
async fn next_progress(
    done: &mut mpsc::UnboundedReceiver<(usize, Progress)>,
    deadline: Option<Instant>,
) -> Option<(usize, Progress)> {
    match deadline {
        Some(deadline) => tokio::time::timeout_at(deadline.into(), done.recv())
            .await
            .ok()
            .flatten(),
        None => done.recv().await,
    }
}

/// The report of a case the deadline cut short.
fn unfinished(case: &'static Case, options: &RunOptions) -> CaseReport {
    let failure = Failure::new(
        "the case finishes within the run's time limit",
        "the time limit was reached before the case finished (or started); it was stopped",
    )
    .hint(if options.jobs > 1 {
        "a proxy that makes cases wait for their timeouts uses up the time limit"
    } else {
        "a proxy that makes cases wait for their timeouts uses up the time limit; more jobs may help"
    });
    CaseReport::of(case, Outcome::Fail(failure))
}

/// The report of a case whose proxy did not start (with `keep_going`).
fn start_failure(case: &'static Case, error: StartError) -> CaseReport {
    let failure = Failure::new(
        "a fresh proxy starts and listens for the case",
        error.to_string(),
    );
    CaseReport::of(case, Outcome::Fail(failure))
}

async fn run_shared<R: Reporter + ?Sized>(
    cases: &[&'static Case],
    options: &RunOptions,
    reporter: &mut R,
) -> Result<Vec<CaseReport>, StartError> {
    let echo_tag = options.echo_proxy_output.then(|| "shared".to_string());
    let (mut proxy, dest, dialing) = start(options, echo_tag).await?;
    let mut reports = Vec::with_capacity(cases.len());
    for &case in cases {
        reporter.report(Event::CaseStarted(case));
        let mut report = run_case(case, options, &mut proxy, &dest, dialing).await;
        let mut first_failure = None;
        while let Outcome::Fail(failure) = &report.outcome {
            if report.attempts > options.retries {
                break;
            }
            first_failure.get_or_insert_with(|| failure.clone());
            let attempts = report.attempts + 1;
            report = run_case(case, options, &mut proxy, &dest, dialing).await;
            report.attempts = attempts;
        }
        report.flaky = matches!(report.outcome, Outcome::Pass)
            .then_some(first_failure)
            .flatten();
        reporter.report(Event::CaseFinished(&report));
        reports.push(report);
    }
    proxy.stop().await;
    Ok(reports)
}

enum Progress {
    Started,
    Finished(Box<Result<CaseReport, StartError>>),
}

struct AbortOnDrop(Vec<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// Starts a proxy forwarding to a fresh destination, and sees how it dials.
pub async fn start(
    options: &RunOptions,
    echo_tag: Option<String>,
) -> Result<(RunningProxy, Arc<Destination>, Dialing), StartError> {
    let bound = if options.udp {
        Destination::bind_udp().await
    } else {
        Destination::bind().await
    };
    let mut dest = bound
        .map_err(|e| StartError::Spawn {
            command: "(destination server)".into(),
            error: format!("cannot listen on loopback: {e}"),
        })?
        .in_mode(options.proxy_protocol);
    let launch = Launch {
        dest_port: dest.port(),
        stall: options.stall,
        startup_timeout: options.startup_timeout,
        echo_output: echo_tag,
        limits: options.limits,
        udp: options.udp,
    };
    let proxy = RunningProxy::start(&options.proxy, &launch).await?;
    if let Some(udp) = dest.udp() {
        // A datagram through and its answer back: a proxy that forwards none is said once,
        // not as every case's failure. There is no dialing to learn for UDP.
        let token = format!("tprox udp probe {}", fastrand::u32(..));
        if let Err(why) = crate::udp::echo(proxy.listen, udp, token.as_bytes()).await {
            let command = options.proxy.label.clone();
            let output = proxy.output_tail();
            proxy.stop().await;
            return Err(StartError::NoDatagrams {
                command,
                why,
                output,
            });
        }
        return Ok((proxy, Arc::new(dest), Dialing::OnAccept));
    }
    let fail = |proxy: RunningProxy, error: fn(String, String) -> StartError, found: String| async move {
        let command = options.proxy.label.clone();
        proxy.stop().await;
        Err(error(command, found))
    };
    // The readiness probe was a real connection that sent nothing: take the destination side
    // the proxy opened for it, so that the case's first accept is the case's own connection.
    // A proxy that never opened one dials only once the client speaks. A front dials when the
    // handshake names the destination, which the probe never did. A proxy that accepts the
    // PROXY protocol dials once it has read the header, which the probe never sent: a probe
    // of its own tells.
    let dialing = if options.front.is_some() {
        Dialing::OnAccept
    } else if dest.client_headers().is_some() {
        match header_probe(&proxy, &dest).await {
            HeaderProbe::Relayed { forwarded } => {
                if forwarded {
                    dest = dest.reading_forwarded();
                }
                Dialing::OnAccept
            }
            HeaderProbe::NoHeader(found) => {
                return fail(
                    proxy,
                    |command, found| StartError::NoHeader { command, found },
                    found,
                )
                .await
            }
            HeaderProbe::Refused(why) => {
                return fail(
                    proxy,
                    |command, why| StartError::HeaderRefused { command, why },
                    why,
                )
                .await
            }
            HeaderProbe::NotDialed => Dialing::OnClientData,
        }
    } else {
        match tokio::time::timeout(PROBE_FORWARD_WAIT, dest.accept_plain()).await {
            Ok(Ok(forwarded)) => {
                drop(forwarded);
                Dialing::OnAccept
            }
            _ => Dialing::OnClientData,
        }
    };
    let checked = dest.client_headers().is_some();
    if dialing == Dialing::OnAccept
        && options.front.is_none()
        && dest.headers().is_some()
        && !checked
    {
        if let Err(found) = header_sent(&proxy, &dest).await {
            return fail(
                proxy,
                |command, found| StartError::NoHeader { command, found },
                found,
            )
            .await;
        }
    }
    Ok((proxy, Arc::new(dest), dialing))
}

/// Whether a PROXY protocol sender writes a header for a client that holds its connection open
/// and sends nothing: a sender writes it as soon as it has connected, and one that writes none
/// would make every case's accept wait for it, so the run ends before the cases, saying why.
/// What came instead, if no header did.
async fn header_sent(proxy: &RunningProxy, dest: &Destination) -> Result<(), String> {
    use crate::proxy_protocol::{read, Found};
    let Ok(client) = tokio::net::TcpStream::connect(proxy.listen).await else {
        // Not this check's business: the cases say what is wrong with connecting.
        return Ok(());
    };
    let accepted = tokio::time::timeout(PROBE_FORWARD_WAIT, dest.accept_plain()).await;
    let Ok(Ok(mut forwarded)) = accepted else {
        return Ok(());
    };
    let found = read(&mut forwarded, PROMPT).await;
    drop(client);
    match found {
        Found::Missing(why) => Err(why),
        Found::Header(_) | Found::Malformed(_) => Ok(()),
    }
}

/// What a client that sent a PROXY protocol header and a line of data found, in a run where the
/// proxy accepts the protocol.
enum HeaderProbe {
    /// The line reached the destination; `forwarded`: behind a copy of the client's header.
    Relayed { forwarded: bool },
    /// The proxy closed the client and opened nothing: why, as the client saw it.
    Refused(String),
    /// The line reached the destination on a connection the proxy opened without the header
    /// of its own that the run says it sends: what came instead.
    NoHeader(String),
    /// Nothing reached the destination, and the client was not closed.
    NotDialed,
}

/// Sends a well-formed header and a line from a new client, and sees what reaches the
/// destination: the line alone (as it must), the line behind the client's header (the proxy
/// passes headers on), nothing (it refused the header: most likely configured for the other
/// version, or not for the protocol at all). A connection left from the readiness probe, which
/// a proxy that does not read headers opened, carries nothing and is passed over.
async fn header_probe(proxy: &RunningProxy, dest: &Destination) -> HeaderProbe {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const LINE: &[u8] = b"tprox header probe\n";
    let Ok(mut client) = crate::harness::connect_client(proxy.listen, dest).await else {
        // Not this check's business: the cases say what is wrong with connecting.
        return HeaderProbe::Relayed { forwarded: false };
    };
    let sent = crate::harness::client_header(
        dest.client_headers()
            .unwrap_or(crate::proxy_protocol::Version::V1),
        &client,
        proxy.listen,
    )
    .unwrap_or_default();
    if client.write_all(LINE).await.is_err() {
        return HeaderProbe::Refused("writing to the proxy after the header failed".into());
    }
    let deadline = tokio::time::Instant::now() + PROBE_FORWARD_WAIT;
    let mut closed = Box::pin(async {
        let mut byte = [0u8; 1];
        match client.read(&mut byte).await {
            Ok(0) => "the proxy closed the connection".to_string(),
            Ok(_) => "the proxy answered the client, and forwarded nothing".to_string(),
            Err(e) => format!("the connection failed: {e}"),
        }
    });
    loop {
        let accepted = tokio::select! {
            accepted = tokio::time::timeout_at(deadline, dest.accept_plain()) => accepted,
            why = &mut closed => return HeaderProbe::Refused(why),
        };
        let Ok(Ok(mut server)) = accepted else {
            return HeaderProbe::NotDialed;
        };
        if let Some(crate::proxy_protocol::Found::Missing(why)) =
            dest.read_header(&mut server).await
        {
            if crate::net::read_exact_within(&mut server, 1, PROMPT)
                .await
                .is_ok()
            {
                return HeaderProbe::NoHeader(why);
            }
            continue;
        }
        let Ok(got) = crate::net::read_exact_within(&mut server, LINE.len(), PROMPT).await else {
            continue;
        };
        if got == LINE {
            return HeaderProbe::Relayed { forwarded: false };
        }
        if sent.starts_with(&got) || got.starts_with(&sent) {
            return HeaderProbe::Relayed { forwarded: true };
        }
    }
}

/// Extra time a case may take beyond its own limits before tprox stops it regardless.
fn backstop(stall: Duration) -> Duration {
    Duration::from_secs(60) + stall * 3
}

async fn run_isolated(case: &'static Case, options: &RunOptions) -> Result<CaseReport, StartError> {
    let echo_tag = options.echo_proxy_output.then(|| case.id.to_string());
    let mut first_failure: Option<Failure> = None;
    for attempt in 1.. {
        let (mut proxy, dest, dialing) = start(options, echo_tag.clone()).await?;
        let mut report = run_case(case, options, &mut proxy, &dest, dialing).await;
        proxy.stop().await;
        report.attempts = attempt;
        match &report.outcome {
            Outcome::Fail(failure) if attempt <= options.retries => {
                first_failure.get_or_insert_with(|| failure.clone());
            }
            Outcome::Pass => {
                report.flaky = first_failure;
                return Ok(report);
            }
            _ => return Ok(report),
        }
    }
    unreachable!("the loop returns")
}

/// Runs one case body against a running proxy, with the survival checks around it.
async fn run_case(
    case: &'static Case,
    options: &RunOptions,
    proxy: &mut RunningProxy,
    dest: &Arc<Destination>,
    dialing: Dialing,
) -> CaseReport {
    let started = Instant::now();
    let seed = case_seed(options.seed, case.id);
    let mut rng = fastrand::Rng::with_seed(seed ^ 0x5eed);
    let cx = Ctx::new(
        proxy.listen,
        proxy.pgid(),
        dest.clone(),
        options.stall,
        options.scale.clone(),
        seed,
        dialing,
    )
    .with_front(options.front.clone());
    let trace = cx.trace.clone();
    if dialing == Dialing::OnClientData {
        trace.event(format_args!(
            "the proxy opened no connection to the destination within {} s for a client that sent nothing: this case lets the client speak first",
            PROBE_FORWARD_WAIT.as_secs()
        ));
    }

    let (outcome, survival) = match survival_echo(proxy.listen, dest, options.front.as_deref(), &mut rng).await {
        Err(problem) => (
            Outcome::Fail(
                Failure::new("before the case, the proxy forwards a plain echo", problem).hint(
                    if options.shared {
                        "an earlier case left the proxy broken (this run shares one proxy between cases)"
                    } else {
                        "the proxy does not forward data at all"
                    },
                ),
            ),
            Some(SurvivalCheck::Before),
        ),
        Ok(()) => {
            trace.event("survival echo before the case: ok");
            let lateness = Lateness::watch();
            let outcome = run_body(case, cx, options.stall).await;
            let body_failed = matches!(outcome, Outcome::Fail(_));
            let problem =
                check_survival(proxy, dest, options.front.as_deref(), &mut rng, &trace).await;
            let survival = problem
                .is_some()
                .then_some(SurvivalCheck::After { body_failed });
            let outcome = with_survival(outcome, problem, options.udp);
            (note_lateness(outcome, lateness.worst(), &trace), survival)
        }
    };
    CaseReport {
        case,
        outcome,
        duration: started.elapsed(),
        trace: trace.lines(),
        proxy_output: proxy.output_tail(),
        flaky: None,
        attempts: 1,
        survival,
        figures: trace.figures(),
    }
}

async fn run_body(case: &'static Case, cx: Ctx, stall: Duration) -> Outcome {
    let body = tokio::spawn((case.body)(cx));
    let abort = body.abort_handle();
    match tokio::time::timeout(backstop(stall), body).await {
        Ok(Ok(result)) => Outcome::from(result),
        Ok(Err(e)) if e.is_panic() => Outcome::Fail(Failure::new(
            "the case runs to its end",
            format!("tprox itself failed in this case (a bug in tprox; please report it): {e}"),
        )),
        Ok(Err(e)) => Outcome::Fail(Failure::new("the case runs to its end", e.to_string())),
        Err(_) => {
            abort.abort();
            Outcome::Fail(Failure::new(
                "the case finishes",
                format!(
                    "it was still running after {} s and was stopped",
                    backstop(stall).as_secs()
                ),
            ))
        }
    }
}

/// tprox's own timers running this late during a case mean the machine, not the proxy, may
/// have decided a failure: the failure says so.
const OVERLOADED: Duration = Duration::from_millis(500);

/// Records how late tprox's own timers ran during the case, and marks a failure that came
/// with an overloaded machine, so that a grader can tell the two apart.
fn note_lateness(outcome: Outcome, worst: Duration, trace: &crate::harness::Trace) -> Outcome {
    trace.event(format_args!(
        "tprox's worst scheduling delay during the case: {:.1} ms",
        worst.as_secs_f64() * 1000.0
    ));
    match outcome {
        Outcome::Fail(mut failure) if worst >= OVERLOADED => {
            failure.observed = format!(
                "{} (note: tprox's own timers ran up to {:.1} s late during this case: the machine was overloaded, and this failure may be the machine's rather than the proxy's)",
                failure.observed,
                worst.as_secs_f64()
            );
            Outcome::Fail(failure)
        }
        outcome => outcome,
    }
}

/// How long after a case body ends the survival check waits: closing the case's connections
/// is itself a peer behaviour (writes into closed sockets), and a proxy that dies of it must be
/// seen dying.
const AFTERMATH: Duration = Duration::from_millis(250);

/// After the body: the proxy must still be running and still serve a plain echo (R11).
/// Returns what went wrong, if anything.
async fn check_survival(
    proxy: &mut RunningProxy,
    dest: &Destination,
    front: Option<&crate::front::Front>,
    rng: &mut fastrand::Rng,
    trace: &crate::harness::Trace,
) -> Option<String> {
    tokio::time::sleep(AFTERMATH).await;
    // A case that stopped with its destination closed (a skip because the port could not be
    // listened on again) leaves nothing for the echo to reach: that would be tprox's failure,
    // not the proxy's, so only the exit status is checked then.
    let listening = dest.is_listening() || dest.reopen().await.is_ok();
    if !listening {
        trace.event("the destination could not listen again: the survival echo after the case is left out, the exit status checked alone");
    }
    let problem = match proxy.exit_status() {
        Some(status) => format!("the proxy exited during the case ({status})"),
        None if !listening => return None,
        None => match survival_echo(proxy.listen, dest, front, rng).await {
            Ok(()) => {
                trace.event("survival echo after the case: ok");
                return None;
            }
            Err(problem) => match proxy.exit_status() {
                Some(status) => format!("the proxy exited during the case ({status})"),
                None => {
                    format!("after the case, the proxy no longer served a plain echo: {problem}")
                }
            },
        },
    };
    trace.event(&problem);
    Some(problem)
}

/// The case's outcome once the survival check after it is known: a failure of that check
/// fails the case, joined to the body's own failure where there is one.
fn with_survival(outcome: Outcome, problem: Option<String>, udp: bool) -> Outcome {
    let Some(problem) = problem else {
        return outcome;
    };
    match outcome {
        Outcome::Fail(mut failure) => {
            failure.observed = format!("{}; {problem}", failure.observed);
            Outcome::Fail(failure)
        }
        _ if udp => Outcome::Fail(
            Failure::new("the forwarder keeps serving new clients whatever its peers do (R19)", problem).hint(
                "the forwarder crashed or stopped serving: common causes are a receive loop that ends on an error \
                 (ECONNREFUSED from an ICMP port unreachable, a datagram larger than its buffer), or memory or \
                 descriptors exhausted by sessions never closed",
            ),
        ),
        _ => Outcome::Fail(
            Failure::new("the proxy keeps running and accepting whatever its peers do (R11)", problem).hint(
                "the proxy crashed or stopped accepting: common causes are SIGPIPE on writing to a closed socket \
                 (ignore SIGPIPE or use MSG_NOSIGNAL), exiting on ECONNRESET, or an accept loop that ends on an error",
            ),
        ),
    }
}

/// Each case gets its own seed, derived from the run's seed and its id, so that a case run
/// alone with the same seed sees the same payloads.
pub fn case_seed(seed: u64, id: &str) -> u64 {
    // FNV-1a over the id, mixed with the seed.
    let mut hash = 0xcbf2_9ce4_8422_2325_u64 ^ seed;
    for byte in id.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_on_an_overloaded_machine_says_so_and_nothing_else_changes() {
        let trace = crate::harness::Trace::default();
        let failure = || Outcome::Fail(Failure::new("it echoes", "nothing came back"));
        let observed = |outcome: Outcome| match outcome {
            Outcome::Fail(failure) => failure.observed,
            other => panic!("the verdict changed: {other:?}"),
        };
        let marked = observed(note_lateness(
            failure(),
            Duration::from_millis(1500),
            &trace,
        ));
        assert!(
            marked.starts_with("nothing came back (note: tprox's own timers ran up to 1.5 s late"),
            "{marked}"
        );
        let unmarked = observed(note_lateness(failure(), Duration::from_millis(20), &trace));
        assert_eq!(unmarked, "nothing came back");
        assert!(matches!(
            note_lateness(Outcome::Pass, Duration::from_secs(3), &trace),
            Outcome::Pass
        ));
        assert_eq!(trace.lines().len(), 3, "each case's delay is in its trace");
    }

    #[test]
    fn case_seeds_are_stable_and_differ_between_cases_and_runs() {
        assert_eq!(case_seed(1, "echo/single"), case_seed(1, "echo/single"));
        assert_ne!(case_seed(1, "echo/single"), case_seed(1, "echo/chain-2"));
        assert_ne!(case_seed(1, "echo/single"), case_seed(2, "echo/single"));
    }
}
