//! Known proxies, as data: how to start each one on tprox's ports with a generated
//! configuration, which package provides it, and how it reports its version.
//!
//! A profile's arguments and configuration template use the placeholders of any proxy command
//! (`{dest_host}`, `{dest_port}`, `{listen_port}`, `{stall_timeout}`) plus `{config}` (the path of
//! the written configuration file) and `{dir}` (the scratch directory it is written to, for pid
//! files and logs).

use std::path::{Path, PathBuf};

use crate::expect::Expectations;
use crate::proxy::{ConfigFile, ProxyCommand, REFERENCE_ARG, REFERENCE_ARGS};

/// One known proxy.
#[derive(Debug)]
pub struct Profile {
    /// What `--profile` and `--profiles` call it.
    pub name: &'static str,
    /// One line on what it is and how it is run.
    pub about: &'static str,
    /// What to install when it is missing.
    pub install: &'static str,
    /// The program: a name looked up in PATH, a path (`~/` is the home directory), or
    /// [`TPROX_ITSELF`] for the reference built into tprox.
    pub program: &'static str,
    /// An environment variable that, when set, names the program instead.
    pub program_env: Option<&'static str>,
    pub args: &'static [&'static str],
    /// The configuration file's template, if the proxy reads one.
    pub config: Option<&'static str>,
    /// Arguments that make the program print its version.
    pub version_args: &'static [&'static str],
    /// The cases the proxy is known not to pass, each with the reason read in its
    /// documentation or source: an expectations file (`tprox/expect/NAME.toml`, the format
    /// of `tprox --expect`), so that a real proxy's known deviations and a user's are one
    /// format. Shown under the failures they explain; the matrix explains its cells with them.
    pub expect: &'static str,
    /// The handshake its clients speak (`socks5`, `connect`), for a front: it is then started
    /// with `{listen_port}` only and tested through the front, the front cases included.
    pub front: Option<&'static str>,
    /// The PROXY protocol it is configured to speak (`send:v1`, `send:v2`, `accept:v1`,
    /// `accept:v2`, or both ways): it is then tested with `--proxy-protocol`, that mode's
    /// cases included.
    pub proxy_protocol: Option<&'static str>,
    /// A UDP forwarder: tested with `--udp`, against the UDP catalogue.
    pub udp: bool,
}

/// A profile's expectations when it has no known deviation.
const NOTHING_KNOWN: &str = "";

/// The program name that stands for the tprox executable itself.
pub const TPROX_ITSELF: &str = "{tprox}";

/// An nginx configuration that runs its stream module in the foreground, with its pid file
/// and error log in the scratch directory, around `$stream` (the `stream { ... }` block).
macro_rules! nginx_stream {
    ($stream:literal) => {
        concat!(
            "load_module /usr/lib/nginx/modules/ngx_stream_module.so;\n\
             daemon off;\nworker_processes auto;\nworker_rlimit_nofile 65536;\n\
             pid {dir}/nginx.pid;\nerror_log {dir}/error.log warn;\n\
             events { worker_connections 32768; }\n",
            $stream
        )
    };
}

/// Every profile, the reference first.
pub const PROFILES: &[Profile] = &[
    Profile {
        name: "ref",
        about: "the reference proxy built into tprox (splice on Linux)",
        install: "nothing: it is built in",
        program: TPROX_ITSELF,
        program_env: None,
        args: REFERENCE_ARGS,
        config: None,
        version_args: &[REFERENCE_ARG, "--version"],
        expect: NOTHING_KNOWN,
        front: None,
        proxy_protocol: None,
        udp: false,
    },
    Profile {
        name: "ref-buffered",
        about: "the reference proxy with its buffered copy instead of splice",
        install: "nothing: it is built in",
        program: TPROX_ITSELF,
        program_env: None,
        args: &[
            REFERENCE_ARG,
            "{dest_host}",
            "{dest_port}",
            "{listen_port}",
            "--stall-timeout",
            "{stall_timeout}",
            "--copy",
            "buffered",
        ],
        config: None,
        version_args: &[REFERENCE_ARG, "--version"],
        expect: NOTHING_KNOWN,
        front: None,
        proxy_protocol: None,
        udp: false,
    },
    Profile {
        name: "ref-socks5",
        about: "the reference proxy as a SOCKS5 front (--socks5)",
        install: "nothing: it is built in",
        program: TPROX_ITSELF,
        program_env: None,
        args: &[
            REFERENCE_ARG,
            "--socks5",
            "{listen_port}",
            "--stall-timeout",
            "{stall_timeout}",
        ],
        config: None,
        version_args: &[REFERENCE_ARG, "--version"],
        expect: NOTHING_KNOWN,
        front: Some("socks5"),
        proxy_protocol: None,
        udp: false,
    },
    Profile {
        name: "ref-connect",
        about: "the reference proxy as an HTTP CONNECT front (--http-connect)",
        install: "nothing: it is built in",
        program: TPROX_ITSELF,
        program_env: None,
        args: &[
            REFERENCE_ARG,
            "--http-connect",
            "{listen_port}",
            "--stall-timeout",
            "{stall_timeout}",
        ],
        config: None,
        version_args: &[REFERENCE_ARG, "--version"],
        expect: NOTHING_KNOWN,
        front: Some("connect"),
        proxy_protocol: None,
        udp: false,
    },
    Profile {
        name: "ref-send-proxy",
        about: "the reference proxy sending a PROXY protocol v2 header (--send-proxy v2)",
        install: "nothing: it is built in",
        program: TPROX_ITSELF,
        program_env: None,
        args: &[
            REFERENCE_ARG,
            "{dest_host}",
            "{dest_port}",
            "{listen_port}",
            "--stall-timeout",
            "{stall_timeout}",
            "--send-proxy",
            "v2",
        ],
        config: None,
        version_args: &[REFERENCE_ARG, "--version"],
        expect: NOTHING_KNOWN,
        front: None,
        proxy_protocol: Some("send:v2"),
        udp: false,
    },
    Profile {
        name: "ref-chained-proxy",
        about: "the reference proxy behind another proxy: accepting a PROXY protocol header and sending a v1 one naming the same client (--accept-proxy --send-proxy v1)",
        install: "nothing: it is built in",
        program: TPROX_ITSELF,
        program_env: None,
        args: &[
            REFERENCE_ARG,
            "{dest_host}",
            "{dest_port}",
            "{listen_port}",
            "--stall-timeout",
            "{stall_timeout}",
            "--accept-proxy",
            "--send-proxy",
            "v1",
        ],
        config: None,
        version_args: &[REFERENCE_ARG, "--version"],
        expect: NOTHING_KNOWN,
        front: None,
        proxy_protocol: Some("accept:v2,send:v1"),
        udp: false,
    },
    Profile {
        name: "socat",
        about: "socat TCP-LISTEN,fork: one process per connection",
        install: "apt-get install socat",
        program: "socat",
        program_env: None,
        args: &[
            "TCP-LISTEN:{listen_port},bind={dest_host},reuseaddr,fork",
            "TCP:{dest_host}:{dest_port}",
        ],
        config: None,
        version_args: &["-V"],
        expect: include_str!("../expect/socat.toml"),
        front: None,
        proxy_protocol: None,
        udp: false,
    },
    Profile {
        name: "haproxy",
        about: "haproxy in TCP mode, one frontend and one backend",
        install: "apt-get install haproxy",
        program: "haproxy",
        program_env: None,
        args: &["-db", "-f", "{config}"],
        config: Some(
            "global\n  maxconn 9000\n  pidfile {dir}/haproxy.pid\n\
             defaults\n  mode tcp\n  timeout connect 10s\n  timeout client {stall_timeout}s\n  \
             timeout server {stall_timeout}s\n\
             frontend front\n  bind {dest_host}:{listen_port}\n  default_backend back\n\
             backend back\n  server destination {dest_host}:{dest_port}\n",
        ),
        version_args: &["-v"],
        expect: include_str!("../expect/haproxy.toml"),
        front: None,
        proxy_protocol: None,
        udp: false,
    },
    Profile {
        name: "nginx",
        about: "nginx's stream module (proxy_pass), one worker per core",
        install: "apt-get install nginx libnginx-mod-stream",
        program: "nginx",
        program_env: None,
        args: &["-p", "{dir}", "-c", "{config}", "-e", "{dir}/error.log"],
        config: Some(
            nginx_stream!(
                "stream {\n  server {\n    listen {dest_host}:{listen_port};\n    \
             proxy_pass {dest_host}:{dest_port};\n    proxy_timeout {stall_timeout}s;\n  }\n}\n"
            ),
        ),
        version_args: &["-v"],
        expect: include_str!("../expect/nginx.toml"),
        front: None,
        proxy_protocol: None,
        udp: false,
    },
    Profile {
        name: "haproxy-send-proxy",
        about: "haproxy in TCP mode sending a PROXY protocol v1 header (server ... send-proxy)",
        install: "apt-get install haproxy",
        program: "haproxy",
        program_env: None,
        args: &["-db", "-f", "{config}"],
        config: Some(
            "global\n  maxconn 9000\n  pidfile {dir}/haproxy.pid\n\
             defaults\n  mode tcp\n  timeout connect 10s\n  timeout client {stall_timeout}s\n  \
             timeout server {stall_timeout}s\n\
             frontend front\n  bind {dest_host}:{listen_port}\n  default_backend back\n\
             backend back\n  server destination {dest_host}:{dest_port} send-proxy\n",
        ),
        version_args: &["-v"],
        expect: include_str!("../expect/haproxy-send-proxy.toml"),
        front: None,
        proxy_protocol: Some("send:v1"),
        udp: false,
    },
    Profile {
        name: "haproxy-send-proxy-v2",
        about: "haproxy in TCP mode sending a PROXY protocol v2 header (server ... send-proxy-v2)",
        install: "apt-get install haproxy",
        program: "haproxy",
        program_env: None,
        args: &["-db", "-f", "{config}"],
        config: Some(
            "global\n  maxconn 9000\n  pidfile {dir}/haproxy.pid\n\
             defaults\n  mode tcp\n  timeout connect 10s\n  timeout client {stall_timeout}s\n  \
             timeout server {stall_timeout}s\n\
             frontend front\n  bind {dest_host}:{listen_port}\n  default_backend back\n\
             backend back\n  server destination {dest_host}:{dest_port} send-proxy-v2\n",
        ),
        version_args: &["-v"],
        expect: include_str!("../expect/haproxy-send-proxy-v2.toml"),
        front: None,
        proxy_protocol: Some("send:v2"),
        udp: false,
    },
    Profile {
        name: "nginx-proxy-protocol",
        about: "nginx's stream module sending a PROXY protocol v1 header (proxy_protocol on)",
        install: "apt-get install nginx libnginx-mod-stream",
        program: "nginx",
        program_env: None,
        args: &["-p", "{dir}", "-c", "{config}", "-e", "{dir}/error.log"],
        config: Some(
            nginx_stream!(
                "stream {\n  server {\n    listen {dest_host}:{listen_port};\n    \
             proxy_pass {dest_host}:{dest_port};\n    proxy_timeout {stall_timeout}s;\n    \
             proxy_protocol on;\n  }\n}\n"
            ),
        ),
        version_args: &["-v"],
        expect: include_str!("../expect/nginx-proxy-protocol.toml"),
        front: None,
        proxy_protocol: Some("send:v1"),
        udp: false,
    },
    Profile {
        name: "haproxy-accept-proxy",
        about: "haproxy in TCP mode accepting a PROXY protocol header from its clients (bind ... accept-proxy)",
        install: "apt-get install haproxy",
        program: "haproxy",
        program_env: None,
        args: &["-db", "-f", "{config}"],
        // The header is read within timeout client, the handshake's limit.
        config: Some(
            "global\n  maxconn 9000\n  pidfile {dir}/haproxy.pid\n\
             defaults\n  mode tcp\n  timeout connect 10s\n  timeout client {stall_timeout}s\n  \
             timeout server {stall_timeout}s\n\
             frontend front\n  bind {dest_host}:{listen_port} accept-proxy\n  default_backend back\n\
             backend back\n  server destination {dest_host}:{dest_port}\n",
        ),
        version_args: &["-v"],
        expect: include_str!("../expect/haproxy-accept-proxy.toml"),
        front: None,
        proxy_protocol: Some("accept:v2"),
        udp: false,
    },
    Profile {
        name: "nginx-accept-proxy-protocol",
        about: "nginx's stream module accepting a PROXY protocol header from its clients (listen ... proxy_protocol)",
        install: "apt-get install nginx libnginx-mod-stream",
        program: "nginx",
        program_env: None,
        args: &["-p", "{dir}", "-c", "{config}", "-e", "{dir}/error.log"],
        // proxy_protocol_timeout (30 s by default) set to the stall timeout.
        config: Some(
            nginx_stream!(
                "stream {\n  proxy_protocol_timeout {stall_timeout}s;\n  server {\n    \
             listen {dest_host}:{listen_port} proxy_protocol;\n    \
             proxy_pass {dest_host}:{dest_port};\n    proxy_timeout {stall_timeout}s;\n  }\n}\n"
            ),
        ),
        version_args: &["-v"],
        expect: include_str!("../expect/nginx-accept-proxy-protocol.toml"),
        front: None,
        proxy_protocol: Some("accept:v1"),
        udp: false,
    },
    Profile {
        name: "rinetd",
        about: "rinetd, a single-process select() forwarder",
        install: "apt-get install rinetd",
        program: "rinetd",
        program_env: None,
        args: &["-f", "-c", "{config}"],
        config: Some("{dest_host} {listen_port} {dest_host} {dest_port}\n"),
        version_args: &["-v"],
        expect: include_str!("../expect/rinetd.toml"),
        front: None,
        proxy_protocol: None,
        udp: false,
    },
    Profile {
        name: "redir",
        about: "redir, a single-process forwarder",
        install: "apt-get install redir",
        program: "redir",
        program_env: None,
        args: &["-n", "{dest_host}:{listen_port}", "{dest_host}:{dest_port}"],
        config: None,
        version_args: &["-v"],
        expect: include_str!("../expect/redir.toml"),
        front: None,
        proxy_protocol: None,
        udp: false,
    },
    Profile {
        name: "tcpproxy",
        about: "the tcpproxy crate 0.4 (Rust, a thread pair per connection)",
        install:
            "cargo install tcpproxy --version 0.4.1 (or set TPROX_TCPPROXY_CRATE to its binary)",
        program: "~/.cargo/bin/tcpproxy",
        program_env: Some("TPROX_TCPPROXY_CRATE"),
        args: &[
            "{dest_host}:{dest_port}",
            "-l",
            "{listen_port}",
            "-b",
            "{dest_host}",
        ],
        config: None,
        version_args: &["--version"],
        expect: include_str!("../expect/tcpproxy.toml"),
        front: None,
        proxy_protocol: None,
        udp: false,
    },
    Profile {
        name: "squid",
        about: "squid's CONNECT tunnel (an HTTP CONNECT front), no cache",
        install: "apt-get install squid",
        program: "squid",
        program_env: None,
        // A service name of its own per instance: squid names its shared memory after it.
        args: &["-N", "-n", "tprox{listen_port}", "-f", "{config}"],
        config: Some(
            "http_port 127.0.0.1:{listen_port}\n\
             pid_filename none\ncache_log /dev/null\naccess_log none\ncache deny all\n\
             cache_mem 8 MB\nshutdown_lifetime 0 seconds\nnetdb_filename none\n\
             pinger_enable off\n\
             request_start_timeout {stall_timeout} seconds\n\
             connect_timeout {stall_timeout} seconds\n\
             request_timeout {stall_timeout} seconds\n\
             acl any_port port 1-65535\nhttp_access allow localhost\nhttp_access deny all\n",
        ),
        version_args: &["-v"],
        expect: include_str!("../expect/squid.toml"),
        front: Some("connect"),
        proxy_protocol: None,
        udp: false,
    },
    Profile {
        name: "tinyproxy",
        about: "tinyproxy's CONNECT tunnel (an HTTP CONNECT front)",
        install: "apt-get install tinyproxy",
        program: "tinyproxy",
        program_env: None,
        args: &["-d", "-c", "{config}"],
        config: Some(
            "Port {listen_port}\nListen 127.0.0.1\nTimeout {stall_timeout}\n\
             MaxClients 2000\nAllow 127.0.0.1\nLogLevel Critical\n",
        ),
        version_args: &["-v"],
        expect: include_str!("../expect/tinyproxy.toml"),
        front: Some("connect"),
        proxy_protocol: None,
        udp: false,
    },
    Profile {
        name: "microsocks",
        about: "microsocks, a SOCKS5 front with a thread per connection",
        install: "apt-get install microsocks",
        program: "microsocks",
        program_env: None,
        args: &["-i", "127.0.0.1", "-p", "{listen_port}"],
        config: None,
        version_args: &["-h"],
        expect: include_str!("../expect/microsocks.toml"),
        front: Some("socks5"),
        proxy_protocol: None,
        udp: false,
    },
    Profile {
        name: "dante",
        about: "dante-server (danted), a SOCKS5 front",
        install: "apt-get install dante-server",
        program: "danted",
        program_env: None,
        args: &["-f", "{config}", "-p", "{dir}/danted.pid"],
        config: Some(
            "logoutput: stderr\ninternal: 127.0.0.1 port = {listen_port}\n\
             external: 127.0.0.1\nclientmethod: none\nsocksmethod: none\n\
             user.privileged: root\nuser.unprivileged: nobody\n\
             timeout.io: 0\ntimeout.negotiate: {stall_timeout}\n\
             timeout.connect: {stall_timeout}\n\
             client pass { from: 127.0.0.0/8 to: 0.0.0.0/0 }\n\
             socks pass { from: 127.0.0.0/8 to: 127.0.0.0/8 command: bind connect udpassociate bindreply udpreply }\n",
        ),
        version_args: &["-v"],
        expect: include_str!("../expect/dante.toml"),
        front: Some("socks5"),
        proxy_protocol: None,
        udp: false,
    },
    Profile {
        name: "v2ray",
        about: "V2Ray 4's SOCKS5 inbound with a freedom outbound (Go, built against Debian's \
                golang packages)",
        install: "apt-get install v2ray",
        program: "v2ray",
        program_env: None,
        args: &["-config", "{config}"],
        config: Some(
            "{\"log\": {\"loglevel\": \"none\"},\n \
             \"policy\": {\"levels\": {\"0\": {\"handshake\": {stall_timeout}}}},\n \
             \"inbounds\": [{\"listen\": \"127.0.0.1\", \"port\": {listen_port}, \
             \"protocol\": \"socks\", \"settings\": {\"auth\": \"noauth\", \"udp\": false}}],\n \
             \"outbounds\": [{\"protocol\": \"freedom\"}]}\n",
        ),
        version_args: &["-version"],
        expect: include_str!("../expect/v2ray.toml"),
        front: Some("socks5"),
        proxy_protocol: None,
        udp: false,
    },
    Profile {
        name: "pproxy",
        about: "pproxy 2.7.9's SOCKS5 server with a password (Python asyncio, from PyPI)",
        install: "python3 -m venv ~/.cache/tprox/pproxy && ~/.cache/tprox/pproxy/bin/pip install \
                  pproxy==2.7.9 (or set TPROX_PPROXY to its pproxy)",
        program: "~/.cache/tprox/pproxy/bin/pproxy",
        program_env: Some("TPROX_PPROXY"),
        args: &["-l", "socks5://127.0.0.1:{listen_port}#alice:secret"],
        config: None,
        version_args: &["--version"],
        expect: include_str!("../expect/pproxy.toml"),
        front: Some("socks5:alice:secret"),
        proxy_protocol: None,
        udp: false,
    },
    Profile {
        name: "node-proxy",
        about: "the npm package proxy 2.2.0, an HTTP CONNECT front on Node.js's http.Server \
                (Node.js streams, from npm)",
        install: "npm ci --prefix ~/.cache/tprox/node with ci/node-proxy's package.json and \
                  package-lock.json (ci/test does), or set TPROX_NODE_PROXY to the package's \
                  directory; and Node.js (apt-get install nodejs)",
        program: "node",
        program_env: None,
        // The package's own command listens on every interface; its library, as its README
        // shows, listens where it is told: on loopback.
        args: &[
            "-e",
            "const dir = process.env.TPROX_NODE_PROXY || \
             process.env.HOME + '/.cache/tprox/node/node_modules/proxy'; \
             require(dir).createProxy(require('http').createServer())\
             .listen(Number(process.argv[1]), '127.0.0.1')",
            "{listen_port}",
        ],
        config: None,
        version_args: &[
            "-e",
            "const dir = process.env.TPROX_NODE_PROXY || \
             process.env.HOME + '/.cache/tprox/node/node_modules/proxy'; \
             console.log('proxy ' + require(dir + '/package.json').version + \
             ' on Node.js ' + process.version)",
        ],
        expect: include_str!("../expect/node-proxy.toml"),
        front: Some("connect"),
        proxy_protocol: None,
        udp: false,
    },
    // UDP forwarders, tested with --udp against the UDP catalogue. `{stall_timeout}` is
    // their sessions' idle timeout.
    Profile {
        name: "ref-udp",
        about: "the reference proxy forwarding UDP (--udp): a session per client",
        install: "nothing: it is built in",
        program: TPROX_ITSELF,
        program_env: None,
        args: &[
            REFERENCE_ARG,
            "--udp",
            "{dest_host}",
            "{dest_port}",
            "{listen_port}",
            "--stall-timeout",
            "{stall_timeout}",
        ],
        config: None,
        version_args: &[REFERENCE_ARG, "--version"],
        expect: NOTHING_KNOWN,
        front: None,
        proxy_protocol: None,
        udp: true,
    },
    Profile {
        name: "socat-udp",
        about: "socat UDP4-LISTEN,fork: a process per client, -T the idle timeout",
        install: "apt-get install socat",
        program: "socat",
        program_env: None,
        args: &[
            "-T",
            "{stall_timeout}",
            "UDP4-LISTEN:{listen_port},bind={dest_host},reuseaddr,fork",
            "UDP4:{dest_host}:{dest_port}",
        ],
        config: None,
        version_args: &["-V"],
        expect: include_str!("../expect/socat-udp.toml"),
        front: None,
        proxy_protocol: None,
        udp: true,
    },
    Profile {
        name: "nginx-udp",
        about: "nginx's stream module over UDP (listen ... udp reuseport, as its documentation shows), proxy_timeout the idle timeout",
        install: "apt-get install nginx libnginx-mod-stream",
        program: "nginx",
        program_env: None,
        args: &["-p", "{dir}", "-c", "{config}", "-e", "{dir}/error.log"],
        config: Some(
            nginx_stream!(
                "stream {\n  server {\n    listen {dest_host}:{listen_port} udp reuseport;\n    \
             proxy_pass {dest_host}:{dest_port};\n    proxy_timeout {stall_timeout}s;\n  }\n}\n"
            ),
        ),
        version_args: &["-v"],
        expect: include_str!("../expect/nginx-udp.toml"),
        front: None,
        proxy_protocol: None,
        udp: true,
    },
    Profile {
        name: "rinetd-udp",
        about: "rinetd forwarding UDP (PORT/udp, [timeout=] the idle timeout)",
        install: "apt-get install rinetd",
        program: "rinetd",
        program_env: None,
        args: &["-f", "-c", "{config}"],
        config: Some(
            "{dest_host} {listen_port}/udp {dest_host} {dest_port}/udp [timeout={stall_timeout}]\n",
        ),
        version_args: &["-v"],
        expect: include_str!("../expect/rinetd-udp.toml"),
        front: None,
        proxy_protocol: None,
        udp: true,
    },
];

/// The names of the profiles that are fronts.
pub fn fronts() -> Vec<&'static str> {
    PROFILES
        .iter()
        .filter(|p| p.front.is_some())
        .map(|p| p.name)
        .collect()
}

/// The profile called `name`.
pub fn find(name: &str) -> Result<&'static Profile, String> {
    PROFILES.iter().find(|p| p.name == name).ok_or_else(|| {
        let names: Vec<&str> = PROFILES.iter().map(|p| p.name).collect();
        format!(
            "no profile '{name}'; the profiles are: {}",
            names.join(", ")
        )
    })
}

impl Profile {
    /// The program's path, or what to install to get it.
    pub fn program(&self) -> Result<PathBuf, String> {
        if self.program == TPROX_ITSELF {
            return std::env::current_exe()
                .map_err(|e| format!("cannot find the tprox executable: {e}"));
        }
        let wanted = self
            .program_env
            .and_then(std::env::var_os)
            .map(PathBuf::from)
            .unwrap_or_else(|| expand_home(self.program));
        let found = if wanted.components().count() > 1 {
            wanted.is_file().then_some(wanted)
        } else {
            search_path(&wanted)
        };
        found.ok_or_else(|| {
            format!(
                "profile '{}' needs {}, which is not installed: {}",
                self.name, self.program, self.install
            )
        })
    }

    /// The command that starts this proxy, its configuration written into `scratch`.
    pub fn command(&self, scratch: &Path) -> Result<ProxyCommand, String> {
        let program = self.program()?.to_string_lossy().into_owned();
        let argv: Vec<String> = std::iter::once(program)
            .chain(self.args.iter().map(|a| a.to_string()))
            .collect();
        let mut command = match self.front {
            Some(_) => ProxyCommand::new_front(&argv)?,
            None => ProxyCommand::new(&argv)?,
        };
        command.label = format!("{} ({})", self.name, self.about);
        if let Some(template) = self.config {
            command = command.with_config(ConfigFile {
                dir: scratch.to_path_buf(),
                file_name: format!("{}.conf", self.name),
                template: template.to_string(),
            });
        }
        Ok(command.in_dir(scratch.to_path_buf()))
    }

    /// The cases it is known not to pass, from its expectations file. Every id is checked
    /// against the whole catalogue by a test, so this cannot fail for a built tprox.
    pub fn expectations(&self) -> Expectations {
        let ids: Vec<&str> = tprox_core::cases::all()
            .iter()
            .map(|case| case.id)
            .collect();
        Expectations::parse(self.expect, &ids)
            .unwrap_or_else(|e| panic!("tprox/expect/{}.toml: {e}", self.name))
    }

    /// The PROXY protocol header it sends, if it is configured to.
    pub fn proxy_protocol(&self) -> Option<tprox_core::proxy_protocol::Mode> {
        self.proxy_protocol.map(|mode| {
            mode.parse()
                .expect("a profile's proxy_protocol is a valid --proxy-protocol")
        })
    }

    /// The front its clients must speak, if it is one.
    pub fn front(&self) -> Option<tprox_core::front::Front> {
        self.front
            .map(|kind| kind.parse().expect("a profile's front is a valid --front"))
    }

    /// The version as the program reports it: its first line of output that names a version,
    /// else its first line that says anything.
    pub fn version(&self) -> String {
        let Ok(program) = self.program() else {
            return "not installed".into();
        };
        let output = std::process::Command::new(program)
            .args(self.version_args)
            .stdin(std::process::Stdio::null())
            .output();
        let Ok(output) = output else {
            return "unknown".into();
        };
        let text = format!(
            "{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        // socat names its authors first and its version on the next line.
        let lines = || text.lines().map(str::trim).filter(|line| !line.is_empty());
        lines()
            .find(|line| line.to_lowercase().contains("version"))
            .or_else(|| lines().next())
            .unwrap_or("unknown")
            .to_string()
    }
}

/// A scratch directory for a profile's configuration, readable by proxies that drop
/// privileges (nginx's workers).
pub fn scratch_dir() -> Result<tempfile::TempDir, String> {
    let dir = tempfile::Builder::new()
        .prefix("tprox-profile-")
        .tempdir()
        .map_err(|e| format!("cannot make a scratch directory: {e}"))?;
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755));
    Ok(dir)
}

/// `--list-profiles`: each profile, whether it is installed (and its version), how it is run,
/// and the cases it is known not to pass.
pub fn describe_all() -> String {
    let mut out = String::new();
    for profile in PROFILES {
        let state = match profile.program() {
            Ok(_) => profile.version(),
            Err(_) => format!("not installed: {}", profile.install),
        };
        out.push_str(&format!("{:<13} {}\n", profile.name, profile.about));
        out.push_str(&format!("{:<13} {state}\n", ""));
        out.push_str(&format!(
            "{:<13} runs: {} {}\n",
            "",
            profile.program,
            profile.args.join(" ")
        ));
        for (id, entry) in &profile.expectations().entries {
            out.push_str(&format!("{:<13} known ({id}): {}\n", "", entry.reason));
        }
    }
    out.trim_end().to_string()
}

fn expand_home(path: &str) -> PathBuf {
    match (path.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => Path::new(&home).join(rest),
        _ => PathBuf::from(path),
    }
}

fn search_path(name: &Path) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_profile_has_a_unique_name_and_uses_known_placeholders() {
        let mut names: Vec<&str> = PROFILES.iter().map(|p| p.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), PROFILES.len());
        for profile in PROFILES {
            let texts = profile.args.iter().copied().chain(profile.config);
            for text in texts {
                let mut rest = text;
                while let Some(start) = rest.find('{') {
                    let end = rest[start..].find('}').map(|e| start + e + 1);
                    let Some(end) = end else { break };
                    let token = &rest[start..end];
                    // nginx's blocks are braces too; placeholders have no spaces or newlines.
                    if !token.contains([' ', '\n', ';']) {
                        assert!(
                            crate::proxy::PLACEHOLDERS.contains(&token)
                                || ["{config}", "{dir}"].contains(&token),
                            "{}: unknown placeholder {token}",
                            profile.name
                        );
                    }
                    rest = &rest[start + 1..];
                }
            }
        }
    }

    /// Each profile's file parses, names only cases of the catalogue, and expects only
    /// failures (a real proxy's cases are never skipped: the matrix shows them all).
    #[test]
    fn every_profiles_expectations_file_is_valid() {
        for profile in PROFILES {
            let expected = profile.expectations();
            assert!(
                expected
                    .entries
                    .values()
                    .all(|e| e.expect == tprox_core::expect::Expected::Fail),
                "{}",
                profile.name
            );
        }
        let nginx = find("nginx").unwrap().expectations();
        assert!(nginx.get("shutdown/one-way").is_some());
        assert!(nginx.get("echo/single").is_none());
        assert!(find("ref").unwrap().expectations().entries.is_empty());
    }

    #[test]
    fn a_missing_program_says_what_to_install() {
        let profile = Profile {
            name: "nothing",
            about: "",
            install: "apt-get install nothing-at-all",
            program: "no-such-program-anywhere",
            program_env: None,
            args: &[],
            config: None,
            version_args: &[],
            expect: NOTHING_KNOWN,
            front: None,
            proxy_protocol: None,
            udp: false,
        };
        let err = profile.program().unwrap_err();
        assert!(err.contains("apt-get install nothing-at-all"), "{err}");
        assert!(find("nope").unwrap_err().contains("socat"));
    }
}
