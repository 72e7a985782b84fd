//! How a proxy is started: its program, its arguments with placeholders, and the configuration
//! file some proxies read instead of arguments.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::jail::Jail;

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
    pub(super) program: String,
    args: Vec<String>,
    /// How the command is shown to people.
    pub label: String,
    /// The directory the proxy runs in; tprox's own when unset. Grading runs each submission in
    /// a scratch directory of its own.
    pub dir: Option<PathBuf>,
    /// A configuration file written (placeholders filled in) before each start, for proxies
    /// configured by file rather than by arguments; `{config}` in the arguments is its path.
    pub config: Option<ConfigFile>,
    /// The grading sandbox's inner box, when the proxy is a submission graded in one.
    pub(crate) jail: Option<Arc<Jail>>,
}

/// A configuration file a proxy reads, as a template with the same placeholders as the command
/// line, plus `{dir}` (the directory it is written to: for pid files and logs). Each instance
/// gets a directory of its own under `dir`, named by its listen port, so that instances
/// running at once (cases run in parallel) share no file.
#[derive(Debug, Clone)]
pub struct ConfigFile {
    /// Where each instance's directory is made.
    pub dir: PathBuf,
    /// The file's name inside it.
    pub file_name: String,
    /// The file's text, with the command's placeholders.
    pub template: String,
}

impl ProxyCommand {
    /// A command given on the command line. Without placeholders, the classic arguments
    /// `DEST_HOST DEST_PORT LISTEN_PORT` are appended, as the original tester did.
    pub fn new(argv: &[String]) -> Result<Self, String> {
        Self::with_classic(argv, &["{dest_host}", "{dest_port}", "{listen_port}"])
    }

    /// A SOCKS5 or HTTP CONNECT front given on the command line. Without placeholders,
    /// `LISTEN_PORT` alone is appended: a front's clients name their destination themselves.
    pub fn new_front(argv: &[String]) -> Result<Self, String> {
        Self::with_classic(argv, &["{listen_port}"])
    }

    fn with_classic(argv: &[String], classic: &[&str]) -> Result<Self, String> {
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
            args.extend(classic.iter().map(|a| a.to_string()));
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
            jail: None,
        })
    }

    /// The same command with `arg` appended (and shown).
    pub fn arg(mut self, arg: &str) -> Self {
        self.args.push(arg.to_string());
        self.label = format!("{} {arg}", self.label);
        self
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
        command.label = "reference proxy (tprox-relay, built in)".into();
        Ok(command)
    }

    /// The reference proxy as a front of `front`'s kind (`tprox-relay --socks5` or
    /// `--http-connect`), requiring `front`'s credentials, if any, from a file written in
    /// `scratch` (which must outlive the run).
    pub fn reference_front(
        front: &crate::front::Front,
        scratch: &std::path::Path,
    ) -> Result<Self, String> {
        use crate::front::Front;
        let exe = std::env::current_exe().map_err(|e| {
            format!("cannot find the tprox executable to start the reference proxy: {e}")
        })?;
        let flag = match front {
            Front::Socks5 { .. } => "--socks5",
            Front::Connect { .. } => "--http-connect",
        };
        let mut argv: Vec<String> = [
            exe.to_string_lossy().as_ref(),
            REFERENCE_ARG,
            flag,
            "{listen_port}",
            "--stall-timeout",
            "{stall_timeout}",
        ]
        .map(String::from)
        .to_vec();
        if front.credentials().is_some() {
            argv.extend(["--front-credentials".into(), "{config}".into()]);
        }
        let mut command = Self::new_front(&argv)?;
        if let Some((user, pass)) = front.credentials() {
            command = command.with_config(ConfigFile {
                dir: scratch.to_path_buf(),
                file_name: "credentials".into(),
                template: format!("{user}:{pass}\n"),
            });
        }
        command.label = format!("reference proxy (tprox-relay {flag}, built in)");
        Ok(command)
    }

    /// The same command, run in the sandbox's inner box.
    pub fn in_jail(mut self, jail: Jail) -> Self {
        self.jail = Some(Arc::new(jail));
        self
    }

    /// The same command, reading `config` (written anew before each start).
    pub fn with_config(mut self, config: ConfigFile) -> Self {
        self.config = Some(config);
        self
    }

    /// The arguments with the placeholders filled in, after writing the configuration file.
    pub(super) fn render(
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
    fn a_front_gets_only_its_listen_port() {
        let command = ProxyCommand::new_front(&argv(&["./socks"])).unwrap();
        assert_eq!(
            command.render(4000, 5000, Duration::from_secs(10)).unwrap(),
            ["5000"]
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
}
