//! The lab-compatible command line: `tcpproxy DEST_HOST DEST_PORT LISTEN_PORT`.

use std::ffi::OsString;
use std::net::ToSocketAddrs;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use crate::{server, Config};

/// A TCP proxy: forwards every connection accepted on LISTEN_PORT to DEST_HOST:DEST_PORT.
///
/// Data flows both ways unchanged. When one side shuts down its sending direction, the proxy
/// passes the shutdown on after delivering everything it holds, and keeps the other direction
/// open. A direction that cannot deliver any data for the stall timeout aborts its connection.
#[derive(Debug, Parser)]
#[command(name = "tcpproxy", version)]
pub struct Args {
    /// Host name or address of the destination server.
    pub dest_host: String,
    /// Port of the destination server (1-65535).
    #[arg(value_parser = clap::value_parser!(u16).range(1..))]
    pub dest_port: u16,
    /// Port to accept client connections on (1-65535).
    #[arg(value_parser = clap::value_parser!(u16).range(1..))]
    pub listen_port: u16,
    /// Seconds a connection may hold undeliverable data before it is aborted.
    #[arg(long, default_value_t = 10.0, value_name = "SECS", value_parser = parse_seconds, allow_negative_numbers = true)]
    pub stall_timeout: f64,
    /// Address to listen on; use 0.0.0.0 to accept clients from other machines.
    #[arg(long, default_value = "127.0.0.1", value_name = "ADDR")]
    pub listen_host: String,
    /// Most connections served at once; further clients wait until one ends.
    #[arg(long, default_value_t = 4096, value_name = "N")]
    pub max_connections: usize,
    /// Log connection events on stderr.
    #[arg(short, long)]
    pub verbose: bool,
}

fn parse_seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(secs) if secs > 0.0 && secs.is_finite() => Ok(secs),
        _ => Err("expected a positive number of seconds, such as 10 or 0.5".into()),
    }
}

impl Args {
    pub fn into_config(self) -> Config {
        Config {
            dest_host: self.dest_host,
            dest_port: self.dest_port,
            listen_host: self.listen_host,
            listen_port: self.listen_port,
            stall_timeout: Duration::from_secs_f64(self.stall_timeout),
            max_connections: self.max_connections.max(1),
            verbose: self.verbose,
        }
    }
}

/// Runs the proxy with the given command line (program name first) and returns its exit code.
/// Errors are one line on stderr; the proxy never panics on bad input.
pub fn main_with_args<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let args = match Args::try_parse_from(args) {
        Ok(args) => args,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let config = args.into_config();
    if let Err(message) = check_destination(&config) {
        eprintln!("tcpproxy: {message}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("tcpproxy: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let listener = match server::bind(&config).await {
            Ok(listener) => listener,
            Err(e) => {
                eprintln!(
                    "tcpproxy: cannot listen on {}:{}: {e}",
                    config.listen_host, config.listen_port
                );
                return ExitCode::FAILURE;
            }
        };
        match server::serve(listener, config).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("tcpproxy: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

/// Resolves the destination once at startup so that a typo fails loudly and at once, rather
/// than as a closed connection for every client.
fn check_destination(config: &Config) -> Result<(), String> {
    match (config.dest_host.as_str(), config.dest_port).to_socket_addrs() {
        Ok(addrs) if addrs.len() > 0 => Ok(()),
        Ok(_) => Err(format!(
            "destination host '{}' has no address",
            config.dest_host
        )),
        Err(e) => Err(format!(
            "cannot resolve destination host '{}': {e}",
            config.dest_host
        )),
    }
}
