//! What the proxy forwards: one [`Mapping`] per listener, from the command line or a TOML file.
//!
//! A mapping is written `[BIND:]LOCAL:HOST:PORT` (ptunnel style): listen on BIND:LOCAL and forward
//! each client to HOST:PORT. IPv6 addresses go in brackets (`[::]:8080:[::1]:80`). The same
//! mappings, each with limits of its own, can be given as a TOML file:
//!
//! ```toml
//! [[mapping]]
//! listen = "127.0.0.1:8080"      # "[::]:0" listens dual-stack on a free port
//! dest = "db.internal:5432"
//! via = "http://user:secret@127.0.0.1:3128"   # optional HTTP CONNECT proxy
//! direct_fallback = true         # dial directly when that proxy cannot be reached
//! max_connections = 100
//! stall_timeout = 30             # seconds
//! send_proxy = "v2"              # a PROXY protocol header first on each connection ("v1", "v2")
//! accept_proxy = true            # clients send a PROXY protocol header first (either version)
//!
//! [[mapping]]
//! listen = "[::]:443"
//! dest = "127.0.0.1:8443"        # TLS clients whose server name has no route
//! sni = { "a.example" = "10.0.0.5:443", "*.b.example" = "10.0.0.6:443" }
//! sni_only = false               # true: close clients whose name has no route
//!
//! [[mapping]]
//! listen = "127.0.0.1:1080"
//! mode = "socks5"                # or "http-connect": clients name their destination
//! credentials_file = "/etc/tprox-relay/socks.pass"   # optional, one line USER:PASSWORD
//! allow = ["127.0.0.0/8", "10.1.0.0/16:443"]         # default: loopback only
//! ```

use std::fmt;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::front::{Allow, Credentials, Front, Kind};
use crate::host_port;
use crate::proxy_header::SendProxy;
use crate::sni::Routes;
use crate::via::HttpProxy;

/// One listener and where its clients go.
#[derive(Debug, Clone)]
pub struct Mapping {
    /// Address to listen on. Loopback unless asked otherwise: a proxy should not be reachable
    /// from other machines by accident.
    pub bind: String,
    /// Port to listen on; 0 lets the system pick one (printed as `Listening on ADDR:PORT`).
    pub local_port: u16,
    /// Destination host, resolved again for every connection, so a destination that moves is
    /// followed.
    pub dest_host: String,
    /// The destination's port.
    pub dest_port: u16,
    /// HTTP proxy to tunnel through with CONNECT, if any.
    pub via: Option<HttpProxy>,
    /// Dial the destination directly when the HTTP proxy itself cannot be reached.
    pub direct_fallback: bool,
    /// Most pairs served at once by this mapping, across all event loops; further clients wait
    /// (see `--max-connections`).
    pub max_connections: usize,
    /// How long a direction may hold data without writing any of it before the pair is
    /// aborted (R7). Also bounds dialing the destination (R8).
    pub stall_timeout: Duration,
    /// Destinations by TLS server name; empty: every client goes to `dest_host:dest_port`.
    pub sni: Routes,
    /// A SOCKS5 or HTTP CONNECT front: each client names its own destination, and
    /// `dest_host:dest_port` is unused. Shared by the event loops, never changed.
    pub front: Option<std::sync::Arc<Front>>,
    /// The PROXY protocol header written first on each connection to the destination, so
    /// that it learns who the client was; none by default.
    pub send_proxy: Option<SendProxy>,
    /// Every client sends a PROXY protocol header first (the mapping stands behind another
    /// proxy): it is read, within the stall timeout, and the client it names is the one a
    /// header of the mapping's own carries.
    pub accept_proxy: bool,
    /// Datagrams instead of connections (`-p udp:...`, `protocol = "udp"`): a session per
    /// client address, ended when idle for `stall_timeout` (see [`crate::udp`]).
    pub udp: bool,
}

/// Settings a mapping takes from the command line unless its TOML entry says otherwise.
#[derive(Debug, Clone)]
pub struct Defaults {
    /// Destinations by TLS server name (`--sni`).
    pub sni: Routes,
    /// The HTTP proxy to tunnel through (`--via`).
    pub via: Option<HttpProxy>,
    /// Dial directly when the HTTP proxy cannot be reached (`--direct-fallback`).
    pub direct_fallback: bool,
    /// Most pairs at once per listener (`--max-connections`).
    pub max_connections: usize,
    /// The stall timeout (`--stall-timeout`).
    pub stall_timeout: Duration,
    /// What a front's clients must give (`--front-credentials`).
    pub credentials: Option<Credentials>,
    /// Where a front's clients may go (`--allow`).
    pub allow: Allow,
    /// The PROXY protocol header to send (`--send-proxy`).
    pub send_proxy: Option<SendProxy>,
    /// Read a PROXY protocol header from every client (`--accept-proxy`).
    pub accept_proxy: bool,
}

impl Defaults {
    /// A mapping from BIND:LOCAL to HOST:PORT with these settings.
    pub fn mapping(
        &self,
        bind: String,
        local_port: u16,
        dest_host: String,
        dest_port: u16,
    ) -> Mapping {
        Mapping {
            bind,
            local_port,
            dest_host,
            dest_port,
            via: self.via.clone(),
            direct_fallback: self.direct_fallback,
            max_connections: self.max_connections,
            stall_timeout: self.stall_timeout,
            sni: self.sni.clone(),
            front: None,
            send_proxy: self.send_proxy,
            accept_proxy: self.accept_proxy,
            udp: false,
        }
    }

    /// A front of `kind` listening on BIND:LOCAL, with these settings.
    pub fn front(&self, kind: Kind, bind: String, local_port: u16) -> Mapping {
        let mut mapping = self.mapping(bind, local_port, String::new(), 0);
        mapping.sni = Routes::default();
        mapping.front = Some(std::sync::Arc::new(Front {
            kind,
            credentials: self.credentials.clone(),
            allow: self.allow.clone(),
        }));
        mapping
    }
}

impl fmt::Display for Mapping {
    /// `BIND:LOCAL -> HOST:PORT`, the way log lines name a mapping.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let listen = host_port(&self.bind, self.local_port);
        if self.udp {
            f.write_str("udp ")?;
        }
        match &self.front {
            Some(front) => write!(f, "{listen} ({} front)", front.kind)?,
            None => write!(
                f,
                "{listen} -> {}",
                host_port(&self.dest_host, self.dest_port)
            )?,
        }
        if let Some(via) = &self.via {
            write!(f, " via {via}")?;
        }
        Ok(())
    }
}

/// Default listen address of a `-p` mapping without BIND.
pub const DEFAULT_BIND: &str = "127.0.0.1";

/// Parses `[udp:|tcp:][BIND:]LOCAL:HOST:PORT`.
pub fn parse_spec(spec: &str, defaults: &Defaults) -> Result<Mapping, String> {
    let (udp, spec) = match spec.split_once(':') {
        Some(("udp", rest)) => (true, rest),
        Some(("tcp", rest)) => (false, rest),
        _ => (false, spec),
    };
    let mut mapping = parse_address_spec(spec, defaults)?;
    if udp {
        mapping.udp = true;
        mapping.check_udp()?;
    }
    Ok(mapping)
}

impl Mapping {
    /// A UDP mapping forwards datagrams to one address: none of the TCP mappings' extras.
    pub fn check_udp(&self) -> Result<(), String> {
        let extra = [
            (self.via.is_some(), "--via"),
            (!self.sni.names.is_empty(), "--sni"),
            (self.front.is_some(), "a front"),
            (self.send_proxy.is_some(), "--send-proxy"),
            (self.accept_proxy, "--accept-proxy"),
        ];
        match extra.iter().find(|(set, _)| *set) {
            Some((_, what)) => Err(format!(
                "UDP mapping {self}: {what} is for TCP mappings only; a UDP mapping forwards \
                 datagrams to one HOST:PORT"
            )),
            None => Ok(()),
        }
    }
}

fn parse_address_spec(spec: &str, defaults: &Defaults) -> Result<Mapping, String> {
    let parts = split_colons(spec)
        .ok_or_else(|| format!("'{spec}': an unclosed '[' (write IPv6 addresses as [::1])"))?;
    let (bind, local, host, port) = match parts.as_slice() {
        [local, host, port] => (DEFAULT_BIND, *local, *host, *port),
        [bind, local, host, port] => (*bind, *local, *host, *port),
        _ => {
            return Err(format!(
                "'{spec}' is not [BIND:]LOCAL:HOST:PORT (for example 8080:example.com:80 or \
                 [::]:0:127.0.0.1:9000)"
            ))
        }
    };
    let local_port = parse_port(local, true).map_err(|e| format!("'{spec}': local port {e}"))?;
    let dest_port =
        parse_port(port, false).map_err(|e| format!("'{spec}': destination port {e}"))?;
    let bind = unbracket(bind);
    let host = unbracket(host);
    if bind.is_empty() || host.is_empty() {
        return Err(format!("'{spec}': an empty address"));
    }
    Ok(defaults.mapping(bind.into(), local_port, host.into(), dest_port))
}

/// Parses a front's `[BIND:]PORT`.
pub fn parse_front(spec: &str, kind: Kind, defaults: &Defaults) -> Result<Mapping, String> {
    let parts = split_colons(spec)
        .ok_or_else(|| format!("'{spec}': an unclosed '[' (write IPv6 addresses as [::1])"))?;
    let (bind, local) = match parts.as_slice() {
        [local] => (DEFAULT_BIND, *local),
        [bind, local] => (unbracket(bind), *local),
        _ => {
            return Err(format!(
                "'{spec}' is not [BIND:]PORT (for example 1080 or [::1]:1080)"
            ))
        }
    };
    let local_port = parse_port(local, true).map_err(|e| format!("'{spec}': port {e}"))?;
    if bind.is_empty() {
        return Err(format!("'{spec}': an empty address"));
    }
    Ok(defaults.front(kind, bind.into(), local_port))
}

/// Splits on the colons that are not inside brackets; `None` if a bracket is left open.
fn split_colons(spec: &str) -> Option<Vec<&str>> {
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, c) in spec.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.checked_sub(1)?,
            ':' if depth == 0 => {
                parts.push(&spec[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    (depth == 0).then(|| {
        parts.push(&spec[start..]);
        parts
    })
}

fn unbracket(host: &str) -> &str {
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

fn parse_port(text: &str, zero_allowed: bool) -> Result<u16, String> {
    match text.parse::<u16>() {
        Ok(0) if !zero_allowed => Err("must be 1-65535, not 0".into()),
        Ok(port) => Ok(port),
        Err(_) => Err(format!("'{text}' is not a number from 0 to 65535")),
    }
}

/// A TOML mapping file: `[[mapping]]` entries.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    mapping: Vec<Entry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    /// `ADDR:PORT` to listen on.
    listen: String,
    /// `HOST:PORT` to forward to (not for a front).
    dest: Option<String>,
    /// `forward` (the default), `socks5` or `http-connect`.
    mode: Option<String>,
    /// A front's `USER:PASSWORD` file.
    credentials_file: Option<std::path::PathBuf>,
    /// A front's allowed destinations.
    allow: Option<Vec<String>>,
    via: Option<String>,
    direct_fallback: Option<bool>,
    max_connections: Option<usize>,
    stall_timeout: Option<f64>,
    /// Server name (or `*.domain`) to `HOST:PORT`.
    sni: Option<std::collections::BTreeMap<String, String>>,
    /// Close clients whose server name has no route.
    sni_only: Option<bool>,
    /// `v1` or `v2`: a PROXY protocol header first on each connection to the destination.
    send_proxy: Option<SendProxy>,
    /// Clients send a PROXY protocol header first.
    accept_proxy: Option<bool>,
    /// `tcp` (the default) or `udp`.
    protocol: Option<String>,
}

/// Reads the mappings of a TOML file; each missing setting comes from `defaults`.
pub fn load_file(path: &Path, defaults: &Defaults) -> Result<Vec<Mapping>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read mapping file {}: {e}", path.display()))?;
    let file: File = toml::from_str(&text).map_err(|e| {
        format!(
            "mapping file {}: {}",
            path.display(),
            e.to_string().trim_end()
        )
    })?;
    if file.mapping.is_empty() {
        return Err(format!(
            "mapping file {} has no [[mapping]] entries",
            path.display()
        ));
    }
    file.mapping
        .into_iter()
        .enumerate()
        .map(|(i, entry)| {
            entry
                .into_mapping(defaults)
                .map_err(|e| format!("mapping file {}, mapping {}: {e}", path.display(), i + 1))
        })
        .collect()
}

impl Entry {
    fn into_mapping(self, defaults: &Defaults) -> Result<Mapping, String> {
        let (bind, local) = split_host_port(&self.listen)
            .ok_or_else(|| format!("listen = '{}' is not ADDR:PORT", self.listen))?;
        let local_port = parse_port(local, true).map_err(|e| format!("listen port {e}"))?;
        let kind = match self.mode.as_deref() {
            None | Some("forward") => None,
            Some("socks5") => Some(Kind::Socks5),
            Some("http-connect") => Some(Kind::HttpConnect),
            Some(other) => {
                return Err(format!(
                    "mode = '{other}': expected forward, socks5 or http-connect"
                ))
            }
        };
        let mut mapping = match (kind, &self.dest) {
            (None, Some(dest)) => {
                let (host, port) = split_host_port(dest)
                    .ok_or_else(|| format!("dest = '{dest}' is not HOST:PORT"))?;
                let dest_port = parse_port(port, false).map_err(|e| format!("dest port {e}"))?;
                defaults.mapping(bind.into(), local_port, host.into(), dest_port)
            }
            (None, None) => return Err("dest = 'HOST:PORT' is missing".into()),
            (Some(_), Some(_)) => {
                return Err(
                    "a front (mode = socks5 or http-connect) has no dest: its clients name theirs"
                        .into(),
                )
            }
            (Some(kind), None) => {
                let mut front_defaults = defaults.clone();
                if let Some(path) = &self.credentials_file {
                    front_defaults.credentials = Some(Credentials::from_file(path)?);
                }
                if let Some(allow) = &self.allow {
                    front_defaults.allow = Allow::parse(allow)?;
                }
                defaults_front(&front_defaults, kind, bind, local_port, self.sni.is_some())?
            }
        };
        if kind.is_none() && (self.credentials_file.is_some() || self.allow.is_some()) {
            return Err(
                "credentials_file and allow are for a front (mode = socks5 or http-connect)".into(),
            );
        }
        if let Some(via) = self.via {
            mapping.via = Some(via.parse().map_err(|e| format!("via: {e}"))?);
        }
        if let Some(fallback) = self.direct_fallback {
            mapping.direct_fallback = fallback;
        }
        if let Some(max) = self.max_connections {
            mapping.max_connections = max.max(1);
        }
        if let Some(secs) = self.stall_timeout {
            mapping.stall_timeout = seconds(secs)?;
        }
        if let Some(send) = self.send_proxy {
            mapping.send_proxy = Some(send);
        }
        if let Some(accept) = self.accept_proxy {
            mapping.accept_proxy = accept;
        }
        if let Some(names) = self.sni {
            mapping.sni.names.clear();
            for (name, dest) in names {
                mapping
                    .sni
                    .add(&format!("{name}={dest}"))
                    .map_err(|e| format!("sni: {e}"))?;
            }
        }
        match self.protocol.as_deref() {
            None | Some("tcp") => {}
            Some("udp") if kind.is_none() => {
                mapping.udp = true;
                mapping.check_udp()?;
            }
            Some("udp") => return Err("protocol = 'udp' is for forwarding, not for a front".into()),
            Some(other) => return Err(format!("protocol = '{other}': expected tcp or udp")),
        }
        if let Some(only) = self.sni_only {
            mapping.sni.unknown_closed = only;
        }
        Ok(mapping)
    }
}

fn defaults_front(
    defaults: &Defaults,
    kind: Kind,
    bind: &str,
    local_port: u16,
    has_sni: bool,
) -> Result<Mapping, String> {
    if has_sni {
        return Err("a front (mode = socks5 or http-connect) has no sni routes".into());
    }
    Ok(defaults.front(kind, bind.into(), local_port))
}

/// Splits `host:port` or `[v6]:port`.
fn split_host_port(text: &str) -> Option<(&str, &str)> {
    let (host, port) = text.rsplit_once(':')?;
    let host = unbracket(host);
    (!host.is_empty() && !host.contains(['[', ']'])).then_some((host, port))
}

/// A positive, finite number of seconds.
pub fn seconds(secs: f64) -> Result<Duration, String> {
    if secs > 0.0 && secs.is_finite() && secs < 1e9 {
        Ok(Duration::from_secs_f64(secs))
    } else {
        Err("expected a positive number of seconds, such as 10 or 0.5".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> Defaults {
        Defaults {
            sni: Routes::default(),
            via: None,
            direct_fallback: false,
            max_connections: 10,
            stall_timeout: Duration::from_secs(10),
            credentials: None,
            allow: Allow::default(),
            send_proxy: None,
            accept_proxy: false,
        }
    }

    #[test]
    fn a_udp_spec_is_a_udp_mapping_without_tcp_extras() {
        let m = parse_spec("udp:[::1]:5353:127.0.0.1:53", &defaults()).unwrap();
        assert!(m.udp);
        assert_eq!(
            (m.bind.as_str(), m.local_port, m.dest_port),
            ("::1", 5353, 53)
        );
        assert!(
            !parse_spec("tcp:8080:example.com:80", &defaults())
                .unwrap()
                .udp
        );
        let with_via = Defaults {
            via: Some("http://127.0.0.1:3128".parse().unwrap()),
            ..defaults()
        };
        let err = parse_spec("udp:5353:127.0.0.1:53", &with_via).unwrap_err();
        assert!(err.contains("--via is for TCP mappings only"), "{err}");
    }

    #[test]
    fn specs_with_and_without_bind() {
        let m = parse_spec("8080:example.com:80", &defaults()).unwrap();
        assert_eq!(
            (
                m.bind.as_str(),
                m.local_port,
                m.dest_host.as_str(),
                m.dest_port
            ),
            ("127.0.0.1", 8080, "example.com", 80)
        );
        let m = parse_spec("[::]:0:[::1]:9000", &defaults()).unwrap();
        assert_eq!(
            (
                m.bind.as_str(),
                m.local_port,
                m.dest_host.as_str(),
                m.dest_port
            ),
            ("::", 0, "::1", 9000)
        );
        assert_eq!(m.to_string(), "[::]:0 -> [::1]:9000");
    }

    #[test]
    fn bad_specs_say_what_is_wrong() {
        let err = |spec| parse_spec(spec, &defaults()).unwrap_err();
        assert!(err("8080:example.com").contains("[BIND:]LOCAL:HOST:PORT"));
        assert!(err("a:1:b:2:c").contains("[BIND:]LOCAL:HOST:PORT"));
        assert!(err("8080:h:0").contains("destination port must be 1-65535"));
        assert!(err("99999:h:80").contains("local port '99999'"));
        assert!(err("[::1:80:h:80").contains("unclosed '['"));
    }

    #[test]
    fn toml_entries_override_the_defaults() {
        let dir = std::env::temp_dir().join(format!("tprox-relay-map-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("map.toml");
        std::fs::write(
            &path,
            "[[mapping]]\nlisten = \"[::]:0\"\ndest = \"h:1\"\nmax_connections = 3\n\
             stall_timeout = 0.5\nvia = \"http://u:p@127.0.0.1:3128\"\n\
             accept_proxy = true\nsend_proxy = \"v1\"\n\
             [[mapping]]\nlisten = \"127.0.0.1:9\"\ndest = \"[::1]:2\"\n",
        )
        .unwrap();
        let maps = load_file(&path, &defaults()).unwrap();
        assert_eq!(maps[0].bind, "::");
        assert_eq!(maps[0].max_connections, 3);
        assert_eq!(maps[0].stall_timeout, Duration::from_millis(500));
        assert_eq!(
            maps[0].via.as_ref().unwrap().to_string(),
            "http://u:***@127.0.0.1:3128"
        );
        assert!(maps[0].accept_proxy);
        assert_eq!(maps[0].send_proxy, Some(SendProxy::V1));
        assert_eq!(maps[1].dest_host, "::1");
        assert_eq!(maps[1].max_connections, 10);
        assert!(!maps[1].accept_proxy);
        std::fs::write(&path, "[[mapping]]\nlisten = \"1:2\"\ndst = \"h:1\"\n").unwrap();
        let err = load_file(&path, &defaults()).unwrap_err();
        assert!(err.contains("unknown field `dst`"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
