//! TLS for a service's listeners: a certificate and key from PEM files (as cert-manager and
//! Kubernetes Secrets write them), optional client-certificate verification (mTLS), and
//! reloading when the files change, so a rotated certificate is served without a restart.
//!
//! The files are read again every `--tls-reload-interval` and compared with what is loaded:
//! a Secret volume is updated by swapping a symlink, which file-change notifications on the
//! path do not reliably report, and reading three small files every few seconds costs nothing.
//! A change that does not load (a key that does not match, a half-written file) is logged and
//! the previous certificate stays in use; the next change is tried again.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use clap::{Args, ValueEnum};
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;

use crate::Shutdown;
use crate::settings::parse_duration;

/// Whether a client must present a certificate when `--tls-client-ca` is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ClientAuth {
    /// Connections without a certificate signed by the client CA are refused.
    Required,
    /// A certificate is verified when presented; clients without one (SDKs) still connect.
    Optional,
}

/// TLS settings shared by every service.
#[derive(Debug, Clone, Args)]
pub struct TlsArgs {
    /// PEM certificate chain served on every listener (gRPC, HTTP, admin), with `--tls-key`.
    /// Without it the listeners are plaintext (local development). Reloaded when it changes.
    #[arg(long, env = "COHORT_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of `--tls-cert`.
    #[arg(long, env = "COHORT_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// PEM CA certificates whose client certificates the gRPC and HTTP listeners accept (mTLS
    /// between services). The admin listener never asks for one (probes, scrapers).
    #[arg(long, env = "COHORT_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,

    /// With `--tls-client-ca`: `required` refuses clients without a certificate; `optional`
    /// verifies a certificate when one is presented.
    #[arg(long, env = "COHORT_TLS_CLIENT_AUTH", value_enum, default_value = "required")]
    pub tls_client_auth: ClientAuth,

    /// PEM CA certificates that the servers this service calls (`https://` endpoints) must be
    /// signed by; the system's roots when unset. With `--tls-cert`, the service presents
    /// that certificate to them (it then needs the client-auth usage too).
    #[arg(long, env = "COHORT_TLS_CA")]
    pub tls_ca: Option<PathBuf>,

    /// The name the certificates of servers this service calls must be issued for, when the
    /// endpoints are addresses (found through Consul); otherwise each endpoint's host.
    #[arg(long, env = "COHORT_TLS_SERVER_NAME")]
    pub tls_server_name: Option<String>,

    /// How often the certificate, key and client CA files are checked for changes.
    #[arg(long, env = "COHORT_TLS_RELOAD_INTERVAL", value_parser = parse_duration, default_value = "10s")]
    pub tls_reload_interval: Duration,
}

impl Default for TlsArgs {
    fn default() -> Self {
        TlsArgs {
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
            tls_client_auth: ClientAuth::Required,
            tls_ca: None,
            tls_server_name: None,
            tls_reload_interval: Duration::from_secs(10),
        }
    }
}

impl TlsArgs {
    /// What the service's own clients use: the CA to verify servers with, and its certificate
    /// as the client identity when it has one.
    pub fn client(&self) -> cohort_transport::ClientTls {
        cohort_transport::ClientTls {
            ca_file: self.tls_ca.clone(),
            identity: self.tls_cert.clone().zip(self.tls_key.clone()),
            server_name: self.tls_server_name.clone(),
        }
    }
}

/// A TLS setting that cannot be used, naming the file and why.
#[derive(Debug, thiserror::Error)]
#[error("{setting} {path}: {reason}")]
pub struct TlsError {
    pub setting: &'static str,
    pub path: String,
    pub reason: String,
}

/// The server configurations in force, swapped whole when the files change.
#[derive(Debug, Clone)]
pub struct ServerTls {
    current: Arc<RwLock<Configs>>,
    args: Arc<TlsArgs>,
}

#[derive(Debug)]
struct Configs {
    /// gRPC and HTTP: client certificates verified as the settings say.
    service: Arc<ServerConfig>,
    /// Admin: no client certificate asked for.
    admin: Arc<ServerConfig>,
    /// The files' bytes these were built from.
    files: Vec<Vec<u8>>,
}

/// Which listener a connection arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Service,
    Admin,
}

impl ServerTls {
    /// Loads the files; `None` when no certificate is set (plaintext).
    pub fn load(args: &TlsArgs) -> Result<Option<ServerTls>, TlsError> {
        if args.tls_cert.is_none() {
            return Ok(None);
        }
        let files = read_files(args)?;
        let configs = build(args, files)?;
        Ok(Some(ServerTls { current: Arc::new(RwLock::new(configs)), args: Arc::new(args.clone()) }))
    }

    /// The configuration for a new connection on `side`.
    pub fn config(&self, side: Side) -> Arc<ServerConfig> {
        let configs = self.current.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        match side {
            Side::Service => configs.service.clone(),
            Side::Admin => configs.admin.clone(),
        }
    }

    /// Checks the files every reload interval until `shutdown`, swapping in what changed.
    pub fn watch(&self, shutdown: Shutdown) {
        let this = self.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(this.args.tls_reload_interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await;
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = ticks.tick() => {}
                }
                let reloaded = {
                    let this = this.clone();
                    tokio::task::spawn_blocking(move || this.reload()).await
                };
                match reloaded {
                    Ok(Ok(true)) => tracing::info!("TLS certificate reloaded"),
                    Ok(Ok(false)) => {}
                    Ok(Err(e)) => {
                        tracing::error!(error = %e, "TLS files changed but do not load; still serving the previous certificate")
                    }
                    Err(e) => tracing::error!(error = %e, "TLS reload task failed"),
                }
            }
        });
    }

    /// Rebuilds the configurations if any file's content changed; `Ok(true)` if they were.
    pub fn reload(&self) -> Result<bool, TlsError> {
        let files = read_files(&self.args)?;
        {
            let current = self.current.read().unwrap_or_else(std::sync::PoisonError::into_inner);
            if current.files == files {
                return Ok(false);
            }
        }
        let configs = build(&self.args, files)?;
        *self.current.write().unwrap_or_else(std::sync::PoisonError::into_inner) = configs;
        Ok(true)
    }
}

fn read_files(args: &TlsArgs) -> Result<Vec<Vec<u8>>, TlsError> {
    let named = [
        ("--tls-cert", args.tls_cert.as_deref()),
        ("--tls-key", args.tls_key.as_deref()),
        ("--tls-client-ca", args.tls_client_ca.as_deref()),
    ];
    let mut files = Vec::new();
    for (setting, path) in named {
        if let Some(path) = path {
            files.push(std::fs::read(path).map_err(|e| error(setting, path, e.to_string()))?);
        }
    }
    Ok(files)
}

fn error(setting: &'static str, path: &Path, reason: impl Into<String>) -> TlsError {
    TlsError { setting, path: path.display().to_string(), reason: reason.into() }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Both configurations from the files' bytes (in [`read_files`]' order).
fn build(args: &TlsArgs, files: Vec<Vec<u8>>) -> Result<Configs, TlsError> {
    let cert_path = args.tls_cert.as_deref().unwrap_or(Path::new(""));
    let key_path = args.tls_key.as_deref().unwrap_or(Path::new(""));
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&files[0])
        .collect::<Result<_, _>>()
        .map_err(|e| error("--tls-cert", cert_path, format!("not PEM certificates: {e}")))?;
    if chain.is_empty() {
        return Err(error("--tls-cert", cert_path, "holds no certificate"));
    }
    let key = PrivateKeyDer::from_pem_slice(&files[1])
        .map_err(|e| error("--tls-key", key_path, format!("no usable private key: {e}")))?;
    let provider = provider();
    let signing_key = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| error("--tls-key", key_path, format!("unsupported key: {e}")))?;
    let certified = Arc::new(rustls::sign::CertifiedKey::new(chain, signing_key));
    certified
        .keys_match()
        .map_err(|e| error("--tls-key", key_path, format!("does not match --tls-cert: {e}")))?;

    let builder = || {
        ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
    };
    let client_verifier = match (&args.tls_client_ca, files.get(2)) {
        (Some(path), Some(pem)) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| error("--tls-client-ca", path, format!("not PEM: {e}")))?;
                roots.add(cert).map_err(|e| error("--tls-client-ca", path, e.to_string()))?;
            }
            if roots.is_empty() {
                return Err(error("--tls-client-ca", path, "holds no certificate"));
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
            let verifier = match args.tls_client_auth {
                ClientAuth::Required => verifier,
                ClientAuth::Optional => verifier.allow_unauthenticated(),
            };
            Some(verifier.build().map_err(|e| error("--tls-client-ca", path, e.to_string()))?)
        }
        _ => None,
    };
    let resolver = Arc::new(Fixed(certified));
    let mut service = match client_verifier {
        Some(verifier) => builder().with_client_cert_verifier(verifier),
        None => builder().with_no_client_auth(),
    }
    .with_cert_resolver(resolver.clone());
    // gRPC needs HTTP/2; the HTTP listeners speak both.
    service.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let mut admin = builder().with_no_client_auth().with_cert_resolver(resolver);
    admin.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Configs { service: Arc::new(service), admin: Arc::new(admin), files })
}

/// One certificate for every server name.
#[derive(Debug)]
struct Fixed(Arc<rustls::sign::CertifiedKey>);

impl rustls::server::ResolvesServerCert for Fixed {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }
}

#[cfg(test)]
mod tests;
