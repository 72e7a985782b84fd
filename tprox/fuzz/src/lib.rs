//! Generated scenarios against a TCP proxy, judged by the tprox contract and shrunk on
//! failure, on proptest: the work of `tprox fuzz`, as a library of its own so that a test
//! (the fixtures' own) reaches it without the command's crate.
//!
//! The catalogue checks scenarios someone thought of; fuzzing checks the ones nobody did.
//! proptest generates [`Scenario`]s (writes of random sizes from either side, pauses, reads
//! that stop and resume, half-closes and resets in any order, on up to three connections),
//! [`execute`] plays each against the proxy and judges it by the contract, and on the first
//! failure proptest shrinks the scenario to a minimal one that still fails: each smaller
//! candidate must fail again on two fresh proxies to count, so that a failure that depends on
//! timing shrinks to a scenario that shows it reliably. The minimal scenario is saved as JSON,
//! so that `tprox fuzz --replay FILE` plays exactly it again.

pub mod execute;
pub mod scenario;
pub mod udp;

use std::cell::RefCell;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use proptest::test_runner::{
    Config, FileFailurePersistence, RngAlgorithm, TestCaseError, TestError, TestRng, TestRunner,
};

pub use execute::Violation;
pub use scenario::{Scenario, Step};

use tprox_core::harness::Destination;
use tprox_core::proxy::{RunningProxy, StartError};
use tprox_core::runner::{self, RunOptions};

/// Whether each scenario gets a proxy of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Instance {
    /// A fresh proxy for every scenario: nothing one scenario leaves behind can affect the
    /// next, so a failure replays alone.
    Fresh,
    /// One proxy for all scenarios (started again if it dies): faster, and finds bugs that
    /// need state left over from earlier connections.
    Shared,
}

/// Everything a fuzzing run needs.
pub struct FuzzOptions {
    /// How to start the proxy (stall timeout, startup timeout, limits).
    pub run: RunOptions,
    /// Scenarios to generate.
    pub cases: u32,
    /// Seeds proptest's generator: the same seed generates the same scenarios.
    pub seed: u64,
    /// How long shrinking a failure may take.
    pub max_shrink_time: Duration,
    pub instance: Instance,
    /// Where proptest keeps the seeds of failures it found, to try them first next time.
    pub persist: Option<PathBuf>,
}

/// How a fuzzing run ended.
pub enum FuzzOutcome {
    /// Every scenario passed.
    Passed { scenarios: u32 },
    /// A scenario failed; `minimal` is the smallest failing one shrinking found.
    Failed {
        minimal: Scenario,
        violation: Violation,
        /// Steps of the first failing scenario, before shrinking.
        original_steps: usize,
        /// Failing scenarios tried while shrinking.
        shrink_runs: u32,
    },
    /// The proxy could not be started: not a verdict.
    Setup(StartError),
}

/// How many more times, each on a fresh proxy, a smaller scenario must fail while shrinking.
const CONFIRMATIONS: usize = 2;

/// A proxy and its destination, started for a scenario or shared by all.
struct Target {
    proxy: RunningProxy,
    dest: Arc<Destination>,
}

/// Runs `options.cases` generated scenarios; `progress` hears of each one played.
pub fn fuzz(options: &FuzzOptions, progress: impl FnMut(u32, bool)) -> FuzzOutcome {
    let progress = RefCell::new(progress);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            return FuzzOutcome::Setup(StartError::Spawn {
                command: "(tprox)".into(),
                error: format!("cannot start the async runtime: {e}"),
            })
        }
    };
    // Start once up front, so that a proxy that cannot start is a setup error, not a failure.
    let shared = match runtime.block_on(runner::start(&options.run, None)) {
        Ok((proxy, dest, _)) => Some(Target { proxy, dest }),
        Err(e) => return FuzzOutcome::Setup(e),
    };
    let shared = RefCell::new(shared);
    let failures: RefCell<Vec<(Scenario, Violation)>> = RefCell::default();
    let setup_error: RefCell<Option<StartError>> = RefCell::default();
    let played = RefCell::new(0u32);

    let mut runner = seeded_runner(options);
    let strategy = match options.run.udp {
        true => proptest::strategy::Strategy::boxed(scenario::udp_scenario()),
        false => proptest::strategy::Strategy::boxed(scenario::scenario()),
    };
    let result = runner.run(&strategy, |scenario| {
        let mut outcome = runtime.block_on(play_on(options, &shared, &scenario));
        // While shrinking, a smaller scenario counts as failing only if it fails again, every
        // time, on proxies started for it alone: the minimal scenario is then one that the
        // printed replay command (a fresh proxy) shows, not one whose failure was timing luck
        // or the shared proxy's history.
        if matches!(outcome, Ok(Err(_))) && !failures.borrow().is_empty() {
            for _ in 0..CONFIRMATIONS {
                match runtime.block_on(play_fresh(&options.run, &scenario)) {
                    Ok(Err(_)) => continue,
                    other => {
                        outcome = other;
                        break;
                    }
                }
            }
        }
        *played.borrow_mut() += 1;
        match outcome {
            Ok(Ok(())) => {
                (progress.borrow_mut())(*played.borrow(), false);
                Ok(())
            }
            Ok(Err(violation)) => {
                (progress.borrow_mut())(*played.borrow(), true);
                let message = format!("{}: {}", violation.rule, violation.observed);
                failures.borrow_mut().push((scenario, violation));
                Err(TestCaseError::fail(message))
            }
            Err(start) => {
                *setup_error.borrow_mut() = Some(start);
                // Not the scenario's fault: stop without shrinking.
                Err(TestCaseError::fail("the proxy could not be started"))
            }
        }
    });
    if let Some(target) = shared.borrow_mut().take() {
        runtime.block_on(target.proxy.stop());
    }
    if let Some(error) = setup_error.into_inner() {
        return FuzzOutcome::Setup(error);
    }
    conclude(result, played.into_inner(), failures.into_inner())
}

/// proptest's runner for `options`: its case count, the shrinking budget, the file that keeps
/// failures, and an RNG seeded from `options.seed`, so that a seed replays the same scenarios.
fn seeded_runner(options: &FuzzOptions) -> TestRunner {
    let mut config = Config {
        cases: options.cases,
        max_shrink_time: options
            .max_shrink_time
            .as_millis()
            .min(u128::from(u32::MAX)) as u32,
        max_shrink_iters: u32::MAX,
        failure_persistence: None,
        ..Config::default()
    };
    if let Some(path) = &options.persist {
        // proptest wants a 'static path; one per run is a small, bounded leak.
        let path: &'static str = Box::leak(path.to_string_lossy().into_owned().into_boxed_str());
        config.failure_persistence = Some(Box::new(FileFailurePersistence::Direct(path)));
    }
    let mut seed = [0u8; 32];
    for chunk in seed.chunks_mut(8) {
        chunk.copy_from_slice(&options.seed.to_le_bytes());
    }
    TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &seed))
}

/// What proptest's result says: every scenario passed, or the minimal failing one with its
/// violation (the last recorded for it) and how shrinking went.
fn conclude(
    result: Result<(), TestError<Scenario>>,
    played: u32,
    failures: Vec<(Scenario, Violation)>,
) -> FuzzOutcome {
    match result {
        Ok(()) => FuzzOutcome::Passed { scenarios: played },
        Err(TestError::Fail(_, minimal)) => {
            let original_steps = failures.first().map_or(0, |(s, _)| s.steps.len());
            let violation = failures
                .iter()
                .rev()
                .find(|(s, _)| *s == minimal)
                .map(|(_, v)| v.clone())
                .expect("the minimal scenario is one that failed");
            FuzzOutcome::Failed {
                minimal,
                violation,
                original_steps,
                shrink_runs: failures.len().saturating_sub(1) as u32,
            }
        }
        Err(TestError::Abort(reason)) => FuzzOutcome::Setup(StartError::Spawn {
            command: "(proptest)".into(),
            error: reason.to_string(),
        }),
    }
}

/// Plays one saved scenario against a fresh proxy.
pub fn replay(run: &RunOptions, scenario: &Scenario) -> Result<Result<(), Violation>, StartError> {
    let runtime = tokio::runtime::Runtime::new().map_err(|e| StartError::Spawn {
        command: "(tprox)".into(),
        error: format!("cannot start the async runtime: {e}"),
    })?;
    runtime.block_on(play_fresh(run, scenario))
}

/// Plays `scenario` on a proxy started for it alone, as a replay does.
async fn play_fresh(
    run: &RunOptions,
    scenario: &Scenario,
) -> Result<Result<(), Violation>, StartError> {
    let (proxy, dest, _) = runner::start(run, None).await?;
    let mut target = Target { proxy, dest };
    let verdict = play(run, &mut target, scenario).await;
    target.proxy.stop().await;
    Ok(verdict)
}

/// Plays `scenario` on the shared proxy, or on a fresh one.
async fn play_on(
    options: &FuzzOptions,
    shared: &RefCell<Option<Target>>,
    scenario: &Scenario,
) -> Result<Result<(), Violation>, StartError> {
    match options.instance {
        Instance::Fresh => play_fresh(&options.run, scenario).await,
        Instance::Shared => {
            let kept = shared.borrow_mut().take();
            let mut target = match kept {
                Some(target) => target,
                None => {
                    let (proxy, dest, _) = runner::start(&options.run, None).await?;
                    Target { proxy, dest }
                }
            };
            let verdict = play(&options.run, &mut target, scenario).await;
            if target.proxy.exit_status().is_none() {
                *shared.borrow_mut() = Some(target);
            } else {
                target.proxy.stop().await;
            }
            Ok(verdict)
        }
    }
}

/// Plays `scenario` and checks, after it, that the proxy is still running (R11; a UDP
/// forwarder's R19).
async fn play(run: &RunOptions, target: &mut Target, scenario: &Scenario) -> Result<(), Violation> {
    let front = run.front.as_deref();
    let verdict = match run.udp {
        true => udp::execute(scenario, target.proxy.listen, &target.dest, run.stall).await,
        false => {
            execute::execute(
                scenario,
                target.proxy.listen,
                &target.dest,
                front,
                run.stall,
            )
            .await
        }
    };
    if let Some(status) = target.proxy.exit_status() {
        return Err(Violation {
            rule: match run.udp {
                true => tprox_core::rules::Rule::R19,
                false => tprox_core::rules::Rule::R11,
            },
            conn: 0,
            expected: "the proxy keeps running, whatever its peers do".into(),
            observed: format!(
                "the proxy exited ({status}){}",
                match &verdict {
                    Err(v) => format!("; before that: {}", v.observed),
                    Ok(()) => String::new(),
                }
            ),
        });
    }
    verdict
}

/// A violation and the scenario that shows it, for people: the rule, what was expected and
/// observed, and the steps.
pub fn describe(minimal: &Scenario, violation: &Violation) -> String {
    let rule = violation.rule;
    let mut text = format!(
        "{rule} ({}) broken on connection {}\n    expected  {}\n    observed  {}\n  in {} step(s):\n{minimal}",
        rule.title(),
        violation.conn,
        violation.expected,
        violation.observed,
        minimal.steps.len()
    );
    if text.ends_with('\n') {
        text.pop();
    }
    text
}

/// Reads a scenario saved by `tprox fuzz`.
pub fn load(path: &std::path::Path) -> Result<Scenario, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the scenario file {}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| {
        format!(
            "{} is not a scenario saved by tprox fuzz: {e}",
            path.display()
        )
    })
}

/// Saves a scenario for `tprox fuzz --replay`.
pub fn save(path: &std::path::Path, scenario: &Scenario) -> Result<(), String> {
    let text = serde_json::to_string_pretty(scenario).expect("a scenario always serialises");
    std::fs::write(path, text + "\n")
        .map_err(|e| format!("cannot write the scenario to {}: {e}", path.display()))
}
