//! Running cases: one fresh proxy and destination per case, several cases at once.
//!
//! Data flows one way: the runner turns each [`Case`] into a [`CaseReport`] and hands the reports
//! to a [`Reporter`] in catalogue order; it never prints anything itself.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::{mpsc, Semaphore};

use crate::case::{Case, Failure, Outcome};
use crate::harness::{Ctx, Scale};
use crate::proxy::{Launch, ProxyCommand, RunningProxy, StartError, HOST};
use crate::report::Reporter;

/// Everything a run needs besides the cases.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub proxy: ProxyCommand,
    /// The stall timeout the proxy is expected to use (R7).
    pub stall: Duration,
    /// How long a proxy may take to start listening.
    pub startup_timeout: Duration,
    /// Cases run at once. Most cases spend their time waiting, so this can exceed the cores.
    pub jobs: usize,
    /// Every random payload derives from this.
    pub seed: u64,
    pub scale: Scale,
    /// Copy each proxy's output to stderr as it is printed.
    pub echo_proxy_output: bool,
}

/// The result of one case.
#[derive(Debug, Clone)]
pub struct CaseReport {
    pub case: &'static Case,
    pub outcome: Outcome,
    pub duration: Duration,
    /// The case's own events, time-stamped.
    pub trace: Vec<String>,
    /// The last lines the case's proxy printed.
    pub proxy_output: String,
}

/// How long tprox waits for the connection the proxy forwards for its readiness probe. A proxy
/// that dials the destination on accept forwards it within milliseconds.
const PROBE_FORWARD_WAIT: Duration = Duration::from_secs(2);

/// Starts the proxy once and stops it, so that a proxy that cannot start at all is reported
/// before any case runs.
pub async fn preflight(options: &RunOptions) -> Result<(), StartError> {
    let dest = bind_destination().await?;
    let proxy = start(options, &dest, None).await?;
    proxy.stop().await;
    Ok(())
}

/// Runs `cases` and reports each to `reporter`, in the order given. Stops early with the
/// first setup error (a proxy that did not start): that is never a case outcome.
pub async fn run(
    cases: &[&'static Case],
    options: &RunOptions,
    reporter: &mut dyn Reporter,
) -> Result<Vec<CaseReport>, StartError> {
    let slots = Arc::new(Semaphore::new(options.jobs.max(1)));
    let (done_tx, mut done_rx) = mpsc::unbounded_channel();
    let mut tasks = Vec::new();
    for (index, &case) in cases.iter().enumerate() {
        let slots = slots.clone();
        let done = done_tx.clone();
        let options = options.clone();
        tasks.push(tokio::spawn(async move {
            let _slot = slots
                .acquire_owned()
                .await
                .expect("the semaphore is never closed");
            let _ = done.send((index, Event::Started));
            let result = run_case(case, &options).await;
            let _ = done.send((index, Event::Finished(Box::new(result))));
        }));
    }
    drop(done_tx);
    // Abort whatever is still running if we return early; each task's proxy dies with it.
    let _guard = AbortOnDrop(tasks);

    let mut finished: Vec<Option<CaseReport>> = vec![None; cases.len()];
    let mut next = 0;
    let mut reports = Vec::with_capacity(cases.len());
    while let Some((index, event)) = done_rx.recv().await {
        match event {
            Event::Started => reporter.case_started(cases[index]),
            Event::Finished(result) => finished[index] = Some((*result)?),
        }
        while next < cases.len() {
            let Some(report) = finished[next].take() else {
                break;
            };
            reporter.case_finished(&report);
            reports.push(report);
            next += 1;
        }
    }
    Ok(reports)
}

enum Event {
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

async fn bind_destination() -> Result<TcpListener, StartError> {
    TcpListener::bind((HOST, 0))
        .await
        .map_err(|e| StartError::Spawn {
            command: "(destination server)".into(),
            error: format!("cannot listen on {HOST}: {e}"),
        })
}

async fn start(
    options: &RunOptions,
    dest: &TcpListener,
    echo_tag: Option<String>,
) -> Result<RunningProxy, StartError> {
    let launch = Launch {
        dest_port: dest.local_addr().map(|a| a.port()).unwrap_or(0),
        stall: options.stall,
        startup_timeout: options.startup_timeout,
        echo_output: echo_tag,
    };
    let proxy = RunningProxy::start(&options.proxy, &launch).await?;
    // The readiness probe was a real connection: take the destination side the proxy opened for
    // it, so that the case's first accept is the case's own connection.
    if let Ok(Ok((forwarded, _))) = tokio::time::timeout(PROBE_FORWARD_WAIT, dest.accept()).await {
        drop(forwarded);
    }
    Ok(proxy)
}

/// Extra time a case may take beyond its own limits before tprox stops it regardless.
fn backstop(stall: Duration) -> Duration {
    Duration::from_secs(60) + stall * 3
}

async fn run_case(case: &'static Case, options: &RunOptions) -> Result<CaseReport, StartError> {
    let dest = Arc::new(bind_destination().await?);
    let echo_tag = options.echo_proxy_output.then(|| case.id.to_string());
    let mut proxy = start(options, &dest, echo_tag).await?;
    let started = Instant::now();
    let cx = Ctx::new(
        proxy.listen,
        dest,
        options.stall,
        options.scale.clone(),
        case_seed(options.seed, case.id),
    );
    let trace = cx.trace.clone();
    let body = tokio::spawn((case.body)(cx));
    let abort = body.abort_handle();
    let mut outcome = match tokio::time::timeout(backstop(options.stall), body).await {
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
                    backstop(options.stall).as_secs()
                ),
            ))
        }
    };
    if let Some(status) = proxy.exit_status() {
        let died = format!("the proxy exited during the case ({status})");
        outcome = match outcome {
            Outcome::Fail(mut failure) => {
                failure.observed = format!("{}; {died}", failure.observed);
                Outcome::Fail(failure)
            }
            _ => Outcome::Fail(
                Failure::new("the proxy keeps running whatever its peers do", died)
                    .hint("the proxy crashed: a common cause is SIGPIPE on writing to a closed socket, or a panic on a reset"),
            ),
        };
    }
    let duration = started.elapsed();
    let proxy_output = proxy.output_tail();
    proxy.stop().await;
    Ok(CaseReport {
        case,
        outcome,
        duration,
        trace: trace.lines(),
        proxy_output,
    })
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
    fn case_seeds_are_stable_and_differ_between_cases_and_runs() {
        assert_eq!(case_seed(1, "echo/single"), case_seed(1, "echo/single"));
        assert_ne!(case_seed(1, "echo/single"), case_seed(1, "echo/chain-2"));
        assert_ne!(case_seed(1, "echo/single"), case_seed(2, "echo/single"));
    }
}
