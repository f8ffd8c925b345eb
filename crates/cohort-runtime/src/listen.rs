//! Binding a service's sockets (in `main`, before `run`) and turning signals into shutdown.

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::TcpListenerStream;

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

/// A gRPC listener's connections with `TCP_NODELAY`, for `serve_with_incoming`: tonic's own
/// `tcp_nodelay` applies only to sockets it binds, and without it a small response waits on
/// Nagle for the peer's delayed ACK (40 ms on Linux).
pub fn grpc_incoming(listener: TcpListener) -> impl tokio_stream::Stream<Item = std::io::Result<TcpStream>> {
    TcpListenerStream::new(listener).map(|accepted| {
        accepted.inspect(|tcp| {
            let _ = tcp.set_nodelay(true);
        })
    })
}

/// An HTTP listener for `axum::serve` whose connections have `TCP_NODELAY`, for the same
/// reason as [`grpc_incoming`].
pub fn http_incoming(listener: TcpListener) -> impl axum::serve::Listener<Io = TcpStream, Addr = SocketAddr> {
    use axum::serve::ListenerExt;
    listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    })
}
