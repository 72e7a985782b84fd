//! Starting, watching and stopping the proxy under test.
//!
//! Each proxy runs in a process group of its own, so that stopping it also stops whatever it
//! started. Its stdout and stderr are drained continuously (a chatty proxy must never block on a
//! full pipe) and their tail is kept for diagnostics. Every live group is registered, so that an
//! interrupted tprox ([`kill_all`]) and a panicking case (`Drop`) leave nothing behind.
//!
//! For untrusted proxies (grading), [`Limits`] caps each proxy process's address space, open
//! files and CPU time, and [`become_subreaper`] with [`sweep_orphans`] catches the processes
//! that leave their group (a daemonizing child) once their parent is gone.
//!
//! The concerns live apart, in modules of their own: `command` (what to start), `ports` (where
//! it listens), `output` (what it prints), `groups` (what is running, and the orphan sweep) and
//! `limits` (what it may use); this module ties them into a [`RunningProxy`].

mod command;
mod groups;
pub mod jail;
mod limits;
mod output;
mod ports;

pub use command::{ConfigFile, ProxyCommand, HOST, PLACEHOLDERS, REFERENCE_ARG, REFERENCE_ARGS};
pub use groups::{become_subreaper, kill_all, stopping, sweep_orphans};
pub use groups::{spawn_group, unregister};
pub use limits::Limits;
pub use output::{capture_output, Tail};
use ports::port_taken;
pub(crate) use ports::{free_port, PortLease};

use std::net::SocketAddr;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

/// Why a proxy could not be brought up. Never a conformance failure: the run stops with status 2.
#[derive(Debug, Clone)]
pub enum StartError {
    /// The program could not be started.
    Spawn {
        /// The command, as shown to the user.
        command: String,
        /// Why it could not start.
        error: String,
    },
    /// The proxy exited before it listened.
    Exited {
        /// The command, as shown to the user.
        command: String,
        /// Its exit status.
        status: String,
        /// Its last lines of output.
        output: String,
    },
    /// The proxy ran, but nothing listened on its port in time.
    NeverListened {
        /// The command, as shown to the user.
        command: String,
        /// The port it was told to listen on.
        port: u16,
        /// How long tprox waited.
        waited: Duration,
        /// Its last lines of output.
        output: String,
    },
    /// In a PROXY protocol run: the proxy opened its connection to the destination for a
    /// client, and wrote no header on it. Said once, before any case, rather than as every
    /// case's failure.
    NoHeader {
        /// The command, as shown to the user.
        command: String,
        /// What came instead.
        found: String,
    },
    /// In a run where the proxy accepts the PROXY protocol: a client that sent a well-formed
    /// header and a line was closed, and nothing reached the destination. Said once, before
    /// any case: the proxy is most likely configured for the other version, or not at all.
    HeaderRefused {
        /// The command, as shown to the user.
        command: String,
        /// What the client saw.
        why: String,
    },
    /// In a UDP run: datagrams sent to the proxy's port never reached the destination, or the
    /// destination's answers never came back. Said once, before any case.
    NoDatagrams {
        /// The command, as shown to the user.
        command: String,
        /// What was seen.
        why: String,
        /// Its last lines of output.
        output: String,
    },
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Spawn { command, error } => {
                write!(f, "cannot start the proxy `{command}`: {error}")
            }
            StartError::Exited {
                command,
                status,
                output,
            } => {
                write!(
                    f,
                    "the proxy exited during startup ({status})\n  command: {command}"
                )?;
                write_output(f, output)
            }
            StartError::NeverListened {
                command,
                port,
                waited,
                output,
            } => {
                write!(
                    f,
                    "the proxy never listened on {HOST}:{port} (waited {:.1} s)\n  command: {command}",
                    waited.as_secs_f64()
                )?;
                write_output(f, output)
            }
            StartError::NoHeader { command, found } => write!(
                f,
                "the proxy opened its connection to the destination and sent no PROXY protocol \
                 header on it ({found}): is it configured to send one, as --proxy-protocol \
                 says?\n  command: {command}"
            ),
            StartError::HeaderRefused { command, why } => write!(
                f,
                "a client that sent a well-formed PROXY protocol header and a line of data got no \
                 connection to the destination ({why}): is the proxy configured to accept the \
                 version --proxy-protocol names?\n  command: {command}"
            ),
            StartError::NoDatagrams {
                command,
                why,
                output,
            } => {
                write!(
                    f,
                    "the proxy does not forward UDP: {why}; is it a UDP forwarder, listening for \
                     datagrams on {{listen_port}} and sending them to {{dest_host}}:{{dest_port}}?\n  \
                     command: {command}"
                )?;
                write_output(f, output)
            }
        }
    }
}

fn write_output(f: &mut std::fmt::Formatter<'_>, output: &str) -> std::fmt::Result {
    if output.trim().is_empty() {
        write!(f, "\n  it printed nothing")
    } else {
        write!(f, "\n  its output ended with:")?;
        for line in output.lines() {
            write!(f, "\n    | {line}")?;
        }
        Ok(())
    }
}

/// Settings for starting one proxy instance.
#[derive(Debug, Clone)]
pub struct Launch {
    /// The destination's port, for `{dest_port}`.
    pub dest_port: u16,
    /// The stall timeout, for `{stall_timeout}`.
    pub stall: Duration,
    /// How long the proxy may take to listen.
    pub startup_timeout: Duration,
    /// Copy the proxy's output to stderr, prefixed with this tag.
    pub echo_output: Option<String>,
    /// Resource limits the proxy runs under.
    pub limits: Limits,
    /// A UDP forwarder: it is ready once its port is bound for UDP (there is no connection
    /// to accept).
    pub udp: bool,
}

/// A running proxy instance. Dropping it kills its whole process group.
pub struct RunningProxy {
    child: Child,
    pgid: Pid,
    /// Where the proxy listens.
    pub listen: SocketAddr,
    /// The command, as shown to the user.
    pub command: String,
    output: Arc<Mutex<Tail>>,
    stopped: bool,
    /// Keeps the listen port reserved against other tprox runs while the proxy runs.
    _port: PortLease,
}

/// Attempts at finding a listen port that nobody else takes first.
const PORT_ATTEMPTS: usize = 5;

impl RunningProxy {
    /// Starts the proxy and waits until its listen port accepts a connection.
    pub async fn start(command: &ProxyCommand, launch: &Launch) -> Result<Self, StartError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let lease = free_port();
            let port = lease.port();
            match Self::start_on(command, launch, lease).await {
                Err(StartError::Exited { output, .. })
                    if attempt < PORT_ATTEMPTS
                        && (port_taken(port) || output.to_lowercase().contains("in use")) =>
                {
                    continue; // someone else took the port first: try another
                }
                result => return result,
            }
        }
    }

    async fn start_on(
        command: &ProxyCommand,
        launch: &Launch,
        lease: PortLease,
    ) -> Result<Self, StartError> {
        let port = lease.port();
        let args = command
            .render(launch.dest_port, port, launch.stall)
            .map_err(|e| StartError::Spawn {
                command: command.label.clone(),
                error: e.to_string(),
            })?;
        let shown = std::iter::once(command.program.clone())
            .chain(args.iter().cloned())
            .collect::<Vec<_>>()
            .join(" ");
        let mut cmd = match &command.jail {
            Some(jail) => {
                let dir = command.dir.clone().unwrap_or_else(|| jail.box_dir.clone());
                jail.command(&command.program, &args, &dir, false)
                    .map_err(|e| StartError::Spawn {
                        command: shown.clone(),
                        error: format!("cannot prepare the sandbox for it: {e}"),
                    })?
            }
            None => {
                let mut cmd = Command::new(&command.program);
                cmd.args(&args);
                cmd
            }
        };
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        if let Some(dir) = &command.dir {
            cmd.current_dir(dir);
        }
        launch.limits.install(&mut cmd);
        let mut child = spawn_group(&mut cmd).map_err(|e| StartError::Spawn {
            command: shown.clone(),
            error: explain_spawn_error(&command.program, &e),
        })?;
        let pgid = Pid::from_raw(child.id().expect("a just-spawned child has a pid") as i32);
        let output = capture_output(&mut child, Tail::default(), launch.echo_output.clone());
        let mut proxy = RunningProxy {
            child,
            pgid,
            listen: SocketAddr::from(([127, 0, 0, 1], port)),
            command: shown.clone(),
            output,
            stopped: false,
            _port: lease,
        };
        let started = Instant::now();
        loop {
            if let Some(status) = proxy.exit_status() {
                // Give the drainers a moment to collect the last words.
                tokio::time::sleep(Duration::from_millis(50)).await;
                return Err(StartError::Exited {
                    command: shown,
                    status: describe_status(status),
                    output: proxy.output_tail(),
                });
            }
            if launch.udp {
                if udp_bound(port) {
                    return Ok(proxy);
                }
            } else if let Ok(Ok(probe)) =
                tokio::time::timeout(Duration::from_millis(500), TcpStream::connect(proxy.listen))
                    .await
            {
                drop(probe);
                return Ok(proxy);
            }
            if started.elapsed() >= launch.startup_timeout {
                return Err(StartError::NeverListened {
                    command: shown,
                    port,
                    waited: started.elapsed(),
                    output: proxy.output_tail(),
                });
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// The proxy's process group id (its pid: it leads its own group).
    pub fn pgid(&self) -> i32 {
        self.pgid.as_raw()
    }

    /// The exit status, if the proxy has exited.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// The last lines the proxy printed, stdout and stderr interleaved.
    pub fn output_tail(&self) -> String {
        self.output.lock().unwrap_or_else(|e| e.into_inner()).text()
    }

    /// Stops the proxy: SIGTERM to its group, SIGKILL after a short grace, and reaps it.
    pub async fn stop(mut self) {
        let _ = killpg(self.pgid, Signal::SIGTERM);
        let exited = tokio::time::timeout(Duration::from_millis(500), self.child.wait()).await;
        // Also after the leader exited: a child it left behind may still hold the group.
        let _ = killpg(self.pgid, Signal::SIGKILL);
        if exited.is_err() {
            let _ = self.child.wait().await;
        }
        self.stopped = true;
        unregister(self.pgid);
    }
}

impl Drop for RunningProxy {
    fn drop(&mut self) {
        if !self.stopped {
            // A panic or a cancelled case: no time for grace. kill_on_drop lets tokio reap it.
            let _ = killpg(self.pgid, Signal::SIGKILL);
            let _ = self.child.try_wait();
            unregister(self.pgid);
        }
    }
}

/// Whether someone has bound UDP port `port`: the port is leased to this run, so that someone
/// is the proxy (on loopback, on every address, or dual-stack).
fn udp_bound(port: u16) -> bool {
    crate::udp::port_bound(port).unwrap_or(false)
}

fn explain_spawn_error(program: &str, e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => {
            format!("{e}: no such program; give a path (./{program}) or a program on PATH")
        }
        std::io::ErrorKind::PermissionDenied => {
            format!("{e}: is it executable? (chmod +x {program})")
        }
        _ => e.to_string(),
    }
}

fn describe_status(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(signal)) => format!(
            "killed by signal {signal}{}",
            Signal::try_from(signal)
                .map(|s| format!(" ({s})"))
                .unwrap_or_default()
        ),
        _ => status.to_string(),
    }
}
