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

use std::collections::{BTreeSet, HashSet, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

/// The address every proxy is asked to forward to and to listen on: loopback only.
pub const HOST: &str = "127.0.0.1";

/// The placeholders a proxy command may contain.
pub const PLACEHOLDERS: [&str; 4] = [
    "{dest_host}",
    "{dest_port}",
    "{listen_port}",
    "{stall_timeout}",
];

/// How to start the proxy under test.
#[derive(Debug, Clone)]
pub struct ProxyCommand {
    program: String,
    args: Vec<String>,
    /// How the command is shown to people.
    pub label: String,
    /// The directory the proxy runs in; tprox's own when unset. Grading runs each submission in
    /// a scratch directory of its own.
    pub dir: Option<PathBuf>,
    /// A configuration file written (placeholders filled in) before each start, for proxies
    /// configured by file rather than by arguments; `{config}` in the arguments is its path.
    pub config: Option<ConfigFile>,
}

/// A configuration file a proxy reads, as a template with the same placeholders as the command
/// line, plus `{dir}` (the directory it is written to: for pid files and logs). Each instance
/// gets a directory of its own under `dir`, named by its listen port, so that instances
/// running at once (cases run in parallel) share no file.
#[derive(Debug, Clone)]
pub struct ConfigFile {
    pub dir: PathBuf,
    pub file_name: String,
    pub template: String,
}

impl ProxyCommand {
    /// A command given on the command line. Without placeholders, the classic arguments
    /// `DEST_HOST DEST_PORT LISTEN_PORT` are appended, as the original tester did.
    pub fn new(argv: &[String]) -> Result<Self, String> {
        let (program, args) = argv.split_first().ok_or(
            "no proxy command given: pass the proxy program (and its arguments), or --reference",
        )?;
        let mut args = args.to_vec();
        // A command reading a configuration file (a profile's) has its ports in that file.
        let templated = argv.iter().any(|a| {
            PLACEHOLDERS
                .iter()
                .chain(&["{config}", "{dir}"])
                .any(|p| a.contains(p))
        });
        if !templated {
            args.extend(["{dest_host}", "{dest_port}", "{listen_port}"].map(String::from));
        }
        let label = std::iter::once(program.as_str())
            .chain(args.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(" ");
        Ok(ProxyCommand {
            program: program.clone(),
            args,
            label,
            dir: None,
            config: None,
        })
    }

    /// The same command, run in `dir`. A relative program path (`./tcpproxy`) is taken
    /// relative to `dir`, as a shell started there would.
    pub fn in_dir(mut self, dir: PathBuf) -> Self {
        if self.program.contains('/') && !self.program.starts_with('/') {
            self.program = dir.join(&self.program).to_string_lossy().into_owned();
        }
        self.dir = Some(dir);
        self
    }

    /// The reference proxy, built into tprox itself and started as a subprocess like any other.
    pub fn reference() -> Result<Self, String> {
        let exe = std::env::current_exe().map_err(|e| {
            format!("cannot find the tprox executable to start the reference proxy: {e}")
        })?;
        let argv: Vec<String> = std::iter::once(exe.to_string_lossy().into_owned())
            .chain(REFERENCE_ARGS.iter().map(|a| a.to_string()))
            .collect();
        let mut command = Self::new(&argv)?;
        command.label = "reference proxy (tcpproxy, built in)".into();
        Ok(command)
    }

    /// The same command, reading `config` (written anew before each start).
    pub fn with_config(mut self, config: ConfigFile) -> Self {
        self.config = Some(config);
        self
    }

    /// The arguments with the placeholders filled in, after writing the configuration file.
    fn render(
        &self,
        dest_port: u16,
        listen_port: u16,
        stall: Duration,
    ) -> std::io::Result<Vec<String>> {
        let stall = format_seconds(stall);
        let instance = self
            .config
            .as_ref()
            .map(|config| config.dir.join(listen_port.to_string()));
        let fill = |text: &str| {
            let mut text = text
                .replace("{dest_host}", HOST)
                .replace("{dest_port}", &dest_port.to_string())
                .replace("{listen_port}", &listen_port.to_string())
                .replace("{stall_timeout}", &stall);
            if let (Some(config), Some(dir)) = (&self.config, &instance) {
                text = text
                    .replace("{config}", &dir.join(&config.file_name).to_string_lossy())
                    .replace("{dir}", &dir.to_string_lossy());
            }
            text
        };
        if let (Some(config), Some(dir)) = (&self.config, &instance) {
            let path = dir.join(&config.file_name);
            std::fs::create_dir_all(dir)
                .and_then(|()| std::fs::write(&path, fill(&config.template)))
                .map_err(|e| {
                    std::io::Error::new(e.kind(), format!("cannot write {}: {e}", path.display()))
                })?;
        }
        Ok(self.args.iter().map(|arg| fill(arg)).collect())
    }
}

/// The first argument that makes the tprox binary run the reference proxy instead.
pub const REFERENCE_ARG: &str = "__reference-proxy";

/// The arguments that start the reference proxy from the tprox binary.
pub const REFERENCE_ARGS: &[&str] = &[
    REFERENCE_ARG,
    "{dest_host}",
    "{dest_port}",
    "{listen_port}",
    "--stall-timeout",
    "{stall_timeout}",
];

fn format_seconds(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs.fract() == 0.0 {
        format!("{}", secs as u64)
    } else {
        format!("{secs}")
    }
}

/// Why a proxy could not be brought up. Never a conformance failure: the run stops with status 2.
#[derive(Debug, Clone)]
pub enum StartError {
    Spawn {
        command: String,
        error: String,
    },
    Exited {
        command: String,
        status: String,
        output: String,
    },
    NeverListened {
        command: String,
        port: u16,
        waited: Duration,
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
    pub dest_port: u16,
    pub stall: Duration,
    pub startup_timeout: Duration,
    /// Copy the proxy's output to stderr, prefixed with this tag.
    pub echo_output: Option<String>,
    pub limits: Limits,
}

/// Resource limits for each proxy process (setrlimit in the child, before exec). A proxy that
/// reaches one fails the case it was in (allocation fails, accept fails, SIGXCPU), and nothing
/// outside it suffers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// RLIMIT_AS, in bytes. Generous: a thread-per-connection proxy reserves a stack per thread.
    pub address_space: Option<u64>,
    /// RLIMIT_NOFILE.
    pub open_files: Option<u64>,
    /// RLIMIT_CPU, in seconds of CPU time.
    pub cpu_seconds: Option<u64>,
}

impl Limits {
    /// Applies the limits to the calling process. Runs in the forked child, so it only calls
    /// setrlimit (async-signal-safe).
    fn apply(&self) -> std::io::Result<()> {
        use nix::sys::resource::{setrlimit, Resource};
        let pairs = [
            (Resource::RLIMIT_AS, self.address_space),
            (Resource::RLIMIT_NOFILE, self.open_files),
            (Resource::RLIMIT_CPU, self.cpu_seconds),
        ];
        for (resource, limit) in pairs {
            if let Some(limit) = limit {
                setrlimit(resource, limit, limit).map_err(std::io::Error::from)?;
            }
        }
        Ok(())
    }

    /// Arranges for `cmd`'s child to run under these limits.
    pub(crate) fn install(&self, cmd: &mut Command) {
        if *self == Limits::default() {
            return;
        }
        let limits = *self;
        // SAFETY: the closure runs between fork and exec and only calls setrlimit, which is
        // async-signal-safe; it allocates nothing.
        unsafe {
            cmd.pre_exec(move || limits.apply());
        }
    }
}

/// A running proxy instance. Dropping it kills its whole process group.
pub struct RunningProxy {
    child: Child,
    pgid: Pid,
    pub listen: SocketAddr,
    pub command: String,
    output: Arc<Mutex<Tail>>,
    stopped: bool,
}

/// Attempts at finding a listen port that nobody else takes first.
const PORT_ATTEMPTS: usize = 5;

impl RunningProxy {
    /// Starts the proxy and waits until its listen port accepts a connection.
    pub async fn start(command: &ProxyCommand, launch: &Launch) -> Result<Self, StartError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let port = free_port();
            match Self::start_on(command, launch, port).await {
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
        port: u16,
    ) -> Result<Self, StartError> {
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
        let mut cmd = Command::new(&command.program);
        cmd.args(&args)
            .stdin(Stdio::null())
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
            if let Ok(Ok(probe)) =
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

/// Process groups of proxies that are running now.
static LIVE: Mutex<BTreeSet<i32>> = Mutex::new(BTreeSet::new());

/// Spawns `cmd` (already set to lead a process group of its own) and registers its group, so
/// that [`kill_all`] and [`sweep_orphans`] know it. The caller kills the group when done with
/// it and calls [`unregister`].
pub(crate) fn spawn_group(cmd: &mut Command) -> std::io::Result<Child> {
    // Register under the same lock as the spawn, so that an interrupt (or a sweep) arriving in
    // between cannot miss the new group.
    let mut live = LIVE.lock().unwrap_or_else(|e| e.into_inner());
    let child = cmd.spawn()?;
    live.insert(child.id().expect("a just-spawned child has a pid") as i32);
    Ok(child)
}

pub(crate) fn unregister(pgid: Pid) {
    LIVE.lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&pgid.as_raw());
}

/// Kills every running proxy's process group. For interrupts: tprox must leave nothing behind.
pub fn kill_all() {
    let live = LIVE.lock().unwrap_or_else(|e| e.into_inner());
    for &pgid in live.iter() {
        let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
    }
}

/// Makes this process the "subreaper" of everything it starts: a process whose parent dies is
/// re-parented to tprox instead of to init, so that [`sweep_orphans`] can find it. This catches
/// what a process group cannot: a child that moved to a session of its own (a daemon).
pub fn become_subreaper() {
    // Best effort: without it (not Linux), process groups still contain the usual cases.
    let _ = nix::sys::prctl::set_child_subreaper(true);
}

/// Kills and reaps every child of tprox that is not the leader of a registered group: the
/// orphans re-parented to tprox (see [`become_subreaper`]). Repeats while killing one exposes
/// its own children. Returns how many processes it killed.
pub fn sweep_orphans() -> usize {
    use nix::sys::wait::waitpid;
    let me = std::process::id() as i32;
    let mut killed = 0;
    for _ in 0..100 {
        let orphans: Vec<i32> = {
            let live = LIVE.lock().unwrap_or_else(|e| e.into_inner());
            let orphans: Vec<i32> = children_of(me)
                .into_iter()
                .filter(|pid| !live.contains(pid))
                .collect();
            for &pid in &orphans {
                let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
            orphans
        };
        if orphans.is_empty() {
            break;
        }
        for pid in orphans {
            // Only orphans are waited for here, never a child that tokio tracks.
            let _ = waitpid(Pid::from_raw(pid), None);
            killed += 1;
        }
    }
    killed
}

/// The pids whose parent is `parent`, from /proc.
fn children_of(parent: i32) -> Vec<i32> {
    let Ok(all) = procfs::process::all_processes() else {
        return Vec::new();
    };
    all.filter_map(|p| p.ok()?.stat().ok())
        .filter(|stat| stat.ppid == parent)
        .map(|stat| stat.pid)
        .collect()
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

/// Picks a free loopback port for a proxy to listen on, one this run has not handed out before.
///
/// Ports come from outside the kernel's ephemeral range: every outgoing connection and every
/// bind to port 0 (tprox's own clients and destinations, and the proxies' connections) takes its
/// port from that range, so a port chosen there could be taken between choosing it and the
/// proxy binding it.
pub(crate) fn free_port() -> u16 {
    static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    let (low, high) = ephemeral_range();
    loop {
        let port = fastrand::u16(1024..=u16::MAX);
        if (low..=high).contains(&port) || port_taken(port) {
            continue;
        }
        let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
        if given.get_or_insert_with(HashSet::new).insert(port) {
            return port;
        }
    }
}

/// The kernel's ephemeral port range (Linux); the usual default where it cannot be read.
fn ephemeral_range() -> (u16, u16) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| {
            let mut parts = text.split_whitespace().map(|p| p.parse::<u16>().ok());
            Some((parts.next()??, parts.next()??))
        })
        .unwrap_or((32768, 60999))
}

/// Whether something on this machine holds `port` on loopback. Uses a plain bind, without
/// SO_REUSEADDR, so that connections using the port count too.
fn port_taken(port: u16) -> bool {
    use socket2::{Domain, Socket, Type};
    let Ok(socket) = Socket::new(Domain::IPV4, Type::STREAM, None) else {
        return true;
    };
    socket
        .bind(&SocketAddr::from(([127, 0, 0, 1], port)).into())
        .is_err()
}

/// The last lines of a program's output, bounded in lines and bytes.
pub(crate) struct Tail {
    lines: VecDeque<String>,
    bytes: usize,
    max_lines: usize,
    max_bytes: usize,
}

impl Default for Tail {
    /// What is kept of a proxy's output: enough for a diagnostic.
    fn default() -> Self {
        Tail::new(40, 8 * 1024)
    }
}

impl Tail {
    const MAX_LINE: usize = 500;

    pub(crate) fn new(max_lines: usize, max_bytes: usize) -> Self {
        Tail {
            lines: VecDeque::new(),
            bytes: 0,
            max_lines,
            max_bytes,
        }
    }

    fn push(&mut self, mut line: String) {
        if line.len() > Self::MAX_LINE {
            let mut cut = Self::MAX_LINE;
            while !line.is_char_boundary(cut) {
                cut -= 1;
            }
            line.truncate(cut);
            line.push_str(" …");
        }
        self.bytes += line.len();
        self.lines.push_back(line);
        while self.lines.len() > self.max_lines || self.bytes > self.max_bytes {
            if let Some(old) = self.lines.pop_front() {
                self.bytes -= old.len();
            }
        }
    }

    pub(crate) fn text(&self) -> String {
        self.lines.iter().map(|l| format!("{l}\n")).collect()
    }
}

/// Drains the child's stdout and stderr into `tail` for as long as they are open.
pub(crate) fn capture_output(
    child: &mut Child,
    tail: Tail,
    echo: Option<String>,
) -> Arc<Mutex<Tail>> {
    let tail = Arc::new(Mutex::new(tail));
    let streams = [
        (
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn AsyncRead + Send + Unpin>),
            "stdout",
        ),
        (
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn AsyncRead + Send + Unpin>),
            "stderr",
        ),
    ];
    for (stream, name) in streams {
        if let Some(stream) = stream {
            tokio::spawn(drain(stream, tail.clone(), echo.clone(), name));
        }
    }
    tail
}

async fn drain(
    mut stream: Box<dyn AsyncRead + Send + Unpin>,
    tail: Arc<Mutex<Tail>>,
    echo: Option<String>,
    name: &'static str,
) {
    // Read in chunks, not lines: a proxy that prints without newlines must neither block on a
    // full pipe nor make tprox hold its whole output.
    let mut buf = vec![0u8; 8192];
    let mut line = Vec::new();
    let emit = |line: &mut Vec<u8>| {
        let text = String::from_utf8_lossy(line).trim_end().to_string();
        line.clear();
        if let Some(tag) = &echo {
            eprintln!("[{tag}] proxy {name}: {text}");
        }
        tail.lock().unwrap_or_else(|e| e.into_inner()).push(text);
    };
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        for piece in buf[..n].split_inclusive(|&b| b == b'\n') {
            if line.len() < Tail::MAX_LINE + 4 {
                line.extend_from_slice(piece);
            }
            if piece.ends_with(b"\n") {
                emit(&mut line);
            }
        }
    }
    if !line.is_empty() {
        emit(&mut line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn classic_arguments_are_appended_without_placeholders() {
        let command = ProxyCommand::new(&argv(&["./tcpproxy"])).unwrap();
        assert_eq!(
            command.render(4000, 5000, Duration::from_secs(10)).unwrap(),
            ["127.0.0.1", "4000", "5000"]
        );
    }

    #[test]
    fn placeholders_are_substituted_wherever_they_appear() {
        let command = ProxyCommand::new(&argv(&[
            "socat",
            "TCP-LISTEN:{listen_port},fork",
            "TCP:{dest_host}:{dest_port}",
            "--timeout={stall_timeout}",
        ]))
        .unwrap();
        assert_eq!(
            command
                .render(4000, 5000, Duration::from_millis(2500))
                .unwrap(),
            [
                "TCP-LISTEN:5000,fork",
                "TCP:127.0.0.1:4000",
                "--timeout=2.5"
            ]
        );
    }

    #[test]
    fn an_empty_command_is_an_error() {
        assert!(ProxyCommand::new(&[]).unwrap_err().contains("--reference"));
    }

    #[test]
    fn listen_ports_avoid_the_ephemeral_range_and_never_repeat() {
        let (low, high) = ephemeral_range();
        let ports: HashSet<u16> = (0..200).map(|_| free_port()).collect();
        assert_eq!(ports.len(), 200);
        assert!(ports
            .iter()
            .all(|p| !(low..=high).contains(p) && *p >= 1024));
    }

    #[test]
    fn the_output_tail_stays_bounded() {
        let mut tail = Tail::default();
        for i in 0..1000 {
            tail.push(format!("line {i} {}", "x".repeat(i % 700)));
        }
        assert!(tail.lines.len() <= tail.max_lines);
        assert!(tail.bytes <= tail.max_bytes);
        assert!(tail.text().lines().last().unwrap().starts_with("line 999 "));
    }
}
