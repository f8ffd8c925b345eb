//! Binding a service's sockets (in `main`, before `run`) and turning signals into shutdown.

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};

use crate::{Shutdown, wait_for_signal};

/// The sockets a service serves on, bound by the caller (tests bind port 0).
#[derive(Debug)]
pub struct Listeners {
    pub grpc: TcpListener,
    pub http: TcpListener,
    /// `/metrics`, `/healthz`, `/readyz`; none when no admin address is set.
    pub admin: Option<TcpListener>,
}

impl Listeners {
    /// Binds all three; the error names the address that could not be bound.
    pub async fn bind(
        grpc: SocketAddr,
        http: SocketAddr,
        admin: Option<SocketAddr>,
    ) -> std::io::Result<Listeners> {
        async fn one(addr: SocketAddr) -> std::io::Result<TcpListener> {
            TcpListener::bind(addr)
                .await
                .map_err(|e| std::io::Error::new(e.kind(), format!("binding {addr}: {e}")))
        }
        Ok(Listeners {
            grpc: one(grpc).await?,
            http: one(http).await?,
            admin: match admin {
                Some(a) => Some(one(a).await?),
                None => None,
            },
        })
    }
}

/// A shutdown token that SIGTERM or SIGINT cancels.
pub fn shutdown_on_signal() -> Shutdown {
    let shutdown = Shutdown::new();
    let trigger = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        trigger.cancel();
    });
    shutdown
}

/// Accepts the next connection with `TCP_NODELAY`. Errors of one connection (reset, aborted)
/// and running out of file descriptors (it passes as connections close) are waited out; any
/// other error means the listening socket is unusable and is returned.
pub(crate) async fn accept(listener: &TcpListener) -> std::io::Result<(TcpStream, SocketAddr)> {
    use std::io::ErrorKind;
    loop {
        match listener.accept().await {
            Ok((tcp, addr)) => {
                let _ = tcp.set_nodelay(true);
                return Ok((tcp, addr));
            }
            Err(e) => match e.kind() {
                ErrorKind::ConnectionAborted
                | ErrorKind::ConnectionReset
                | ErrorKind::Interrupted
                | ErrorKind::WouldBlock
                | ErrorKind::TimedOut => {}
                // EMFILE, ENFILE, ENOBUFS, ENOMEM: resources, not the socket.
                _ if matches!(e.raw_os_error(), Some(23 | 24 | 105 | 12)) => {
                    tracing::warn!(error = %e, "cannot accept connections now; retrying");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                _ => return Err(e),
            },
        }
    }
}
