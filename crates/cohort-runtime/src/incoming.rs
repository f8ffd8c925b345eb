//! A listener's connections, plaintext or TLS, for the gRPC server (a stream) and the HTTP and
//! admin servers (an `axum::serve` listener).
//!
//! One task accepts (with `TCP_NODELAY`: tonic's own setting applies only to sockets it binds,
//! and without it a small response waits on Nagle for the peer's delayed ACK, 40 ms on
//! Linux); each TLS handshake runs in a task of its own with a deadline, so a client that
//! stalls its handshake delays nobody else. The connections come out of one channel; a
//! failure of the listening socket itself comes out as an error and ends the server.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;

use crate::tls::{ServerTls, Side};

/// Longest a client may take to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// An accepted connection.
#[derive(Debug)]
pub enum Conn {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Conn {
    fn tcp(&self) -> &TcpStream {
        match self {
            Conn::Plain(tcp) => tcp,
            Conn::Tls(tls) => tls.get_ref().0,
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Conn::Plain(s) => s.is_write_vectored(),
            Conn::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

impl tonic::transport::server::Connected for Conn {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.tcp().connect_info()
    }
}

/// The connections of one listener, as they become usable.
#[derive(Debug)]
pub struct Incoming {
    rx: mpsc::Receiver<io::Result<(Conn, SocketAddr)>>,
    local: SocketAddr,
    /// Set once the listening socket failed (for the axum side, which cannot end by itself).
    failed: Option<tokio::sync::oneshot::Sender<String>>,
}

impl Incoming {
    /// Starts accepting on `listener`, with TLS when `tls` is set (the configuration for
    /// `side` as it is when each connection arrives, so a reloaded certificate applies to
    /// new connections at once). Stops when the returned value is dropped.
    pub fn start(listener: TcpListener, tls: Option<(ServerTls, Side)>) -> io::Result<Incoming> {
        let local = listener.local_addr()?;
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    a = crate::listen::accept(&listener) => a,
                    () = tx.closed() => return,
                };
                let (tcp, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                };
                match &tls {
                    None => {
                        if tx.send(Ok((Conn::Plain(tcp), peer))).await.is_err() {
                            return;
                        }
                    }
                    Some((tls, side)) => {
                        let acceptor = tokio_rustls::TlsAcceptor::from(tls.config(*side));
                        let tx = tx.clone();
                        tokio::spawn(async move {
                            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                                Ok(Ok(stream)) => {
                                    let _ = tx.send(Ok((Conn::Tls(Box::new(stream)), peer))).await;
                                }
                                // A client's failure (a plaintext request, an unknown CA, no
                                // client certificate): its connection closes, nobody else's.
                                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                            }
                        });
                    }
                }
            }
        });
        Ok(Incoming { rx, local, failed: None })
    }

    /// For the gRPC server: the connections, ending with the listening socket's failure.
    pub fn into_stream(self) -> impl tokio_stream::Stream<Item = io::Result<Conn>> {
        futures::stream::unfold(self.rx, |mut rx| async move {
            let next = rx.recv().await?;
            Some((next.map(|(conn, _)| conn), rx))
        })
    }

    /// For `axum::serve`, which retries a failed accept forever: the listening socket's
    /// failure is reported through the returned future instead, and the listener then
    /// waits for shutdown.
    pub fn fail_fast(mut self) -> (Incoming, impl Future<Output = String>) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.failed = Some(tx);
        (self, async move { rx.await.unwrap_or_else(|_| "the listener was dropped".to_owned()) })
    }
}

impl axum::serve::Listener for Incoming {
    type Io = Conn;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Conn, SocketAddr) {
        match self.rx.recv().await {
            Some(Ok(accepted)) => accepted,
            Some(Err(e)) => {
                if let Some(tx) = self.failed.take() {
                    let _ = tx.send(format!("accepting connections: {e}"));
                }
                std::future::pending().await
            }
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }
}

/// The peer of an HTTP connection, for `into_make_service_with_connect_info` (axum knows only
/// its own listeners' addresses).
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, Incoming>> for Peer {
    fn connect_info(stream: axum::serve::IncomingStream<'_, Incoming>) -> Self {
        Peer(*stream.remote_addr())
    }
}
