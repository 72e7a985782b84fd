//! `tprox bench --hold NAME --dest PORT`: one proxy started from its profile, forwarding to a
//! server of the caller's, kept running until stdin closes. It lets a script measure the same
//! proxies with tools of its own (`ci/cross-check` runs iperf3, sockperf and wrk through them),
//! with the configuration tprox generates, not a second copy of it.

use std::io::Write;
use std::net::SocketAddr;

use super::{Instance, Target};
use crate::error::{self, Conclusion, Error};
use crate::profiles;

/// Starts the proxy, prints `Listening on ADDR:PORT` on stdout, and stops the proxy (its whole
/// process group) when stdin reaches its end.
pub fn main(name: &str, dest_port: u16) -> error::Result {
    let profile = profiles::find(name).map_err(Error::Setup)?;
    profile.program().map_err(Error::Setup)?;
    if let Some(mode) = profile.proxy_protocol {
        return Err(Error::Usage(format!(
            "--hold {name}: {name} speaks the PROXY protocol ({mode}), which the \
             cross-check's clients and servers do not"
        )));
    }
    if let Some(front) = profile.front {
        return Err(Error::Usage(format!(
            "--hold {name}: {name} is a {front} front, whose clients must do its handshake; \
             the cross-check's tools (iperf3, sockperf, wrk) do not"
        )));
    }
    super::raise_own_descriptor_limit();
    let scratch = super::scratch_dir("tprox-hold-")?;
    let runtime = super::output_runtime()?;
    let target = Target::Proxy(
        Box::new(profile.command(scratch.path()).map_err(Error::Setup)?),
        profile.front(),
    );
    let dest = SocketAddr::from(([127, 0, 0, 1], dest_port));
    let instance = Instance::start(&runtime, &target, dest).map_err(Error::Setup)?;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "Listening on {}", instance.addr);
    let _ = out.flush();
    drop(out);
    eprintln!(
        "tprox bench: {name} forwards {} to {dest}; it stops when stdin closes (or at Ctrl-C)",
        instance.addr
    );
    let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
    instance.stop(&runtime);
    Ok(Conclusion::Passed)
}
