//! Opening the load generators' connections: N HTTP/2 connections to one endpoint.

use tonic::transport::{Channel, Endpoint};

/// Why the connections could not be opened.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectError {
    #[error("invalid endpoint {endpoint}: {source}")]
    Endpoint {
        endpoint: String,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("connect to {endpoint}: {source}")]
    Connect {
        endpoint: String,
        #[source]
        source: tonic::transport::Error,
    },
}

/// `n` separate connections, so load spreads over several HTTP/2 connections as it would
/// from several clients.
pub(crate) async fn connections(endpoint: &str, n: usize) -> Result<Vec<Channel>, ConnectError> {
    let target = Endpoint::from_shared(endpoint.to_owned())
        .map_err(|source| ConnectError::Endpoint { endpoint: endpoint.to_owned(), source })?
        .tcp_nodelay(true);
    let mut channels = Vec::with_capacity(n);
    for _ in 0..n {
        let channel = target
            .connect()
            .await
            .map_err(|source| ConnectError::Connect { endpoint: endpoint.to_owned(), source })?;
        channels.push(channel);
    }
    Ok(channels)
}
