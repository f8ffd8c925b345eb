//! The one way a Cohort client opens a gRPC channel: the SDK, cohortctl, and the services'
//! channels to each other (direct or found through Consul).
//!
//! An `http://` endpoint is plaintext (local development); an `https://` endpoint is TLS,
//! through rustls (the *ring* provider, as everywhere in Cohort), with the server's
//! certificate checked against the system's roots, or only against the CA bundle given
//! ([`ClientTls::ca_file`]), and issued for the endpoint's host name. A client certificate
//! ([`ClientTls::identity`]) is presented when a server asks for one (mTLS between services).
//! The files are read once, when the channel settings are built ([`ClientTls::load`]).

#[cfg(feature = "testing")]
pub mod testing;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

/// Where a client's TLS material is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientTls {
    /// PEM CA certificates a server's certificate must chain to; the system's roots when
    /// `None`.
    pub ca_file: Option<PathBuf>,
    /// PEM certificate chain and private key presented to servers that ask for one.
    pub identity: Option<(PathBuf, PathBuf)>,
    /// The name servers' certificates must be issued for, when it is not the endpoint's host
    /// (endpoints found as addresses, e.g. through Consul: the service's name).
    pub server_name: Option<String>,
}

/// A TLS file that cannot be used, or an endpoint that is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    #[error("{what} {path}: {reason}")]
    File { what: &'static str, path: String, reason: String },
    #[error("endpoint {endpoint:?}: {reason}")]
    Endpoint { endpoint: String, reason: String },
}

/// [`ClientTls`] with its files read and checked.
#[derive(Debug, Clone, Default)]
pub struct LoadedTls {
    ca: Option<Certificate>,
    identity: Option<Identity>,
    server_name: Option<String>,
}

impl ClientTls {
    /// Reads and checks the files: each must hold at least one certificate, the key a private
    /// key.
    pub fn load(&self) -> Result<LoadedTls, TransportError> {
        let ca = match &self.ca_file {
            Some(path) => Some(Certificate::from_pem(certificates("CA file", path)?)),
            None => None,
        };
        let identity = match &self.identity {
            Some((cert, key)) => {
                let chain = certificates("client certificate", cert)?;
                let key_pem = read("client key", key)?;
                PrivateKeyDer::from_pem_slice(&key_pem)
                    .map_err(|e| file_error("client key", key, format!("no usable private key: {e}")))?;
                Some(Identity::from_pem(chain, key_pem))
            }
            None => None,
        };
        Ok(LoadedTls { ca, identity, server_name: self.server_name.clone() })
    }
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TransportError> {
    std::fs::read(path).map_err(|e| file_error(what, path, e.to_string()))
}

fn file_error(what: &'static str, path: &Path, reason: impl Into<String>) -> TransportError {
    TransportError::File { what, path: path.display().to_string(), reason: reason.into() }
}

/// The file's bytes, once it is known to hold PEM certificates.
fn certificates(what: &'static str, path: &Path) -> Result<Vec<u8>, TransportError> {
    let pem = read(what, path)?;
    let mut count = 0;
    for cert in CertificateDer::pem_slice_iter(&pem) {
        cert.map_err(|e| file_error(what, path, format!("not PEM certificates: {e}")))?;
        count += 1;
    }
    if count == 0 {
        return Err(file_error(what, path, "holds no certificate"));
    }
    Ok(pem)
}

/// Makes ring rustls' process-wide provider, which tonic's TLS (client and server) takes. With
/// more than one provider compiled in (a dependency can enable aws-lc-rs: reqwest, in some
/// tests) rustls would not choose and the first connection would panic. Idempotent; an
/// application that installed its own keeps it.
pub fn use_ring_by_default() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// An endpoint for `uri` (`http://` or `https://` with a host), with `TCP_NODELAY` and HTTP/2
/// keepalive pings (a dead connection is found even when no request is waiting); callers set
/// their own timeouts.
pub fn endpoint(uri: &str, tls: &LoadedTls) -> Result<Endpoint, TransportError> {
    let invalid = |reason: String| TransportError::Endpoint { endpoint: uri.to_owned(), reason };
    let endpoint = Endpoint::from_shared(uri.to_owned()).map_err(|e| invalid(e.to_string()))?;
    let endpoint = match endpoint.uri().scheme_str() {
        Some("http") => endpoint,
        Some("https") => {
            use_ring_by_default();
            let mut config = ClientTlsConfig::new();
            config = match &tls.ca {
                Some(ca) => config.ca_certificate(ca.clone()),
                None => config.with_native_roots(),
            };
            if let Some(identity) = &tls.identity {
                config = config.identity(identity.clone());
            }
            if let Some(name) = &tls.server_name {
                config = config.domain_name(name.clone());
            }
            endpoint.tls_config(config).map_err(|e| invalid(e.to_string()))?
        }
        _ => return Err(invalid("the scheme must be http or https".into())),
    };
    if endpoint.uri().host().is_none_or(str::is_empty) {
        return Err(invalid("no host".into()));
    }
    Ok(endpoint
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(10))
        .keep_alive_while_idle(true))
}
