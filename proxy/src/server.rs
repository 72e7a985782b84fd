//! Accepting clients and pairing each with a connection to the destination.

use std::io;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::{sleep, timeout, Duration};

use crate::{relay, Config};

/// Binds the listening socket, so that a port in use is reported before anything else happens.
pub async fn bind(config: &Config) -> io::Result<TcpListener> {
    TcpListener::bind((config.listen_host.as_str(), config.listen_port)).await
}

/// Serves clients forever. Nothing a single pair does can end this loop (R11).
pub async fn serve(listener: TcpListener, config: Config) -> io::Result<()> {
    let config = Arc::new(config);
    // Limits pairs in flight; a client beyond the limit waits in the backlog (connection limits
    // done plainly, as in mini-redis).
    let slots = Arc::new(Semaphore::new(config.max_connections));
    loop {
        let permit = slots
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let client = match listener.accept().await {
            Ok((client, _)) => client,
            Err(e) => {
                // Typically EMFILE or ECONNABORTED: transient. Back off briefly rather than spin,
                // and keep serving the pairs that exist.
                log(&config, format_args!("accept failed: {e}"));
                sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let config = config.clone();
        tokio::spawn(async move {
            handle(client, &config).await;
            drop(permit);
        });
    }
}

async fn handle(client: TcpStream, config: &Config) {
    let peer = client.peer_addr().ok();
    // The destination is dialled as soon as the client is accepted, so data the destination sends
    // first (a greeting) reaches the client (R8).
    let dial = TcpStream::connect((config.dest_host.as_str(), config.dest_port));
    let server = match timeout(config.stall_timeout, dial).await {
        Ok(Ok(server)) => server,
        Ok(Err(e)) => {
            // Dropping the client closes it promptly (R8).
            log(
                config,
                format_args!("{peer:?}: cannot reach destination: {e}"),
            );
            return;
        }
        Err(_) => {
            log(
                config,
                format_args!("{peer:?}: destination did not answer in time"),
            );
            return;
        }
    };
    // Small request/response messages must not wait for Nagle or delayed ACKs (R12).
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    match relay::relay(client, server, config.stall_timeout).await {
        Ok(()) => log(config, format_args!("{peer:?}: closed")),
        Err(abort) => log(config, format_args!("{peer:?}: aborted: {abort}")),
    }
}

fn log(config: &Config, message: std::fmt::Arguments<'_>) {
    if config.verbose {
        eprintln!("tcpproxy: {message}");
    }
}
