//! PostgreSQL over TLS, set up from the connection URL the way libpq reads it: `sslmode` and
//! `sslrootcert`, in a `postgres://` URL's query (`?sslmode=verify-full&sslrootcert=/etc/ca.pem`)
//! or as `key=value` pairs (`host=db.internal sslmode=verify-full sslrootcert=system`).
//!
//! [`DatabaseUrl`] is the one place a URL becomes a tokio-postgres [`Config`] and a
//! [`TlsConnector`]: the pool ([`crate::connect`]) and the dedicated connections
//! ([`connect_dedicated`]: LISTEN, session advisory locks) both go through it. tokio-postgres's
//! own parser knows only `disable`, `prefer` and `require`, so both settings are taken out of the
//! URL here and the rest is handed to it unchanged.
//!
//! # `sslmode`
//! As libpq documents it (PostgreSQL 15, "SSL Mode Descriptions"):
//!
//! | `sslmode` | encrypted | certificate chain checked | host name checked |
//! | --- | --- | --- | --- |
//! | `disable` | no | | |
//! | `allow` | read as `prefer` | | |
//! | `prefer` (default) | if the server offers it | no | no |
//! | `require` | yes | no (but see below) | no |
//! | `verify-ca` | yes | yes | no |
//! | `verify-full` | yes | yes | yes |
//!
//! - `require` with an `sslrootcert` is `verify-ca`, as in libpq.
//! - `sslrootcert` is a PEM file of trusted CA certificates (one or more), or `system`: the
//!   platform's trust store (as libpq 16 does; `SSL_CERT_FILE` / `SSL_CERT_DIR` are honoured).
//!   With `system`, the default `sslmode` becomes `verify-full` and any other mode is refused,
//!   again as libpq 16 does: the public CAs sign for any name, so only the host name check
//!   makes them mean anything.
//! - `verify-ca` and `verify-full` need an `sslrootcert`. libpq would fall back to
//!   `~/.postgresql/root.crt`; we do not read files nobody named.
//! - The host name checked is the URL's `host` (also when `hostaddr` says where to connect),
//!   against the certificate's subject alternative names, DNS names and IP addresses.
//! - Without verification (`prefer`, `require`) any certificate is accepted, but the handshake
//!   signatures are still checked, so the session key belongs to whoever presented it; with
//!   SCRAM authentication tokio-postgres also binds the login to that certificate (channel
//!   binding), which stops a relay that could not present the server's own certificate.
//!
//! # Not supported
//! - Client certificates (`sslcert`, `sslkey`, `sslpassword`), CRLs (`sslcrl`, `sslcrldir`) and
//!   the protocol version bounds: tokio-postgres refuses them as unknown options.
//! - libpq's environment variables (`PGSSLMODE`, `PGSSLROOTCERT`).
//! - `prefer` never checks the certificate, even with an `sslrootcert`; libpq checks the chain
//!   there and, when that fails, retries without TLS. Neither protects against a man in the
//!   middle, who can refuse TLS; use `verify-full`.
//! - A TLS failure under `prefer` is an error; libpq would retry without TLS.
//! - TLS needs a `host`: with `hostaddr` alone tokio-postgres has no name for the handshake.
//! - Over Unix sockets (every `host` a directory) there is no TLS and `sslmode` is ignored, as
//!   in libpq; a mix of socket and TCP hosts gets the TCP hosts' treatment on both.
//!
//! The TLS stack is rustls with the *ring* provider (aws-lc-rs, rustls' default, needs cmake
//! to build), TLS 1.2 and 1.3, and ALPN `postgresql` (as libpq 17 sends; it lets
//! `sslnegotiation=direct` reach PostgreSQL 17 servers).

use std::fmt;
use std::future::Future;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres::config::Host;
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::{Config, Socket};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::DbError;

/// How hard a connection insists on TLS, libpq's `sslmode` (`allow` is read as [`SslMode::Prefer`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Never TLS.
    Disable,
    /// TLS when the server offers it, its certificate unchecked; plain otherwise.
    Prefer,
    /// TLS or nothing, the certificate unchecked.
    Require,
    /// TLS, the certificate signed by a CA of `sslrootcert`; any host name.
    VerifyCa,
    /// TLS, the certificate signed by a CA of `sslrootcert` and issued for the host.
    VerifyFull,
}

impl SslMode {
    /// The values `sslmode` accepts.
    pub const ACCEPTED: &'static str = "disable, allow, prefer, require, verify-ca, verify-full";

    /// The `sslmode` value.
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

impl FromStr for SslMode {
    type Err = DbError;

    fn from_str(s: &str) -> Result<Self, DbError> {
        match s {
            "disable" => Ok(SslMode::Disable),
            "allow" | "prefer" => Ok(SslMode::Prefer),
            "require" => Ok(SslMode::Require),
            "verify-ca" => Ok(SslMode::VerifyCa),
            "verify-full" => Ok(SslMode::VerifyFull),
            other => {
                Err(DbError::UrlSetting(format!("sslmode {other:?} is not one of {}", SslMode::ACCEPTED)))
            }
        }
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The CA certificates a server's certificate is checked against, libpq's `sslrootcert`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootCert {
    /// A PEM file of one or more CA certificates.
    File(PathBuf),
    /// `system`: the platform's trust store.
    System,
}

impl fmt::Display for RootCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RootCert::File(path) => write!(f, "sslrootcert {}", path.display()),
            RootCert::System => f.write_str("sslrootcert=system (the platform's trust store)"),
        }
    }
}

/// A connection URL read as libpq reads it: tokio-postgres's settings, and the TLS policy
/// made of `sslmode` and `sslrootcert` (see the [module docs](self)).
#[derive(Debug, Clone)]
pub struct DatabaseUrl {
    config: Config,
    ssl_mode: SslMode,
    root_cert: Option<RootCert>,
}

impl DatabaseUrl {
    /// Reads a `postgres://` URL or a `key=value` connection string. Checks the settings; reads no
    /// file (see [`DatabaseUrl::tls`]).
    pub fn parse(url: &str) -> Result<DatabaseUrl, DbError> {
        let split = split_tls_settings(url)?;
        let mut config: Config = split.rest.parse().map_err(DbError::Url)?;
        let root_cert = match split.sslrootcert.as_deref() {
            None | Some("") => None,
            Some("system") => Some(RootCert::System),
            Some(path) => Some(RootCert::File(PathBuf::from(path))),
        };
        let requested = match split.sslmode.as_deref() {
            Some(mode) => mode.parse()?,
            None if root_cert == Some(RootCert::System) => SslMode::VerifyFull,
            None => SslMode::Prefer,
        };
        if root_cert == Some(RootCert::System) && requested != SslMode::VerifyFull {
            return Err(DbError::UrlSetting(format!(
                "sslmode {requested} may not be used with sslrootcert=system (use verify-full): \
                 the platform's CAs sign for any name"
            )));
        }
        let ssl_mode = match requested {
            // libpq: "if a root CA file exists, the behavior of sslmode=require will be the
            // same as that of verify-ca".
            SslMode::Require if root_cert.is_some() => SslMode::VerifyCa,
            mode => mode,
        };
        if matches!(ssl_mode, SslMode::VerifyCa | SslMode::VerifyFull) && root_cert.is_none() {
            return Err(DbError::UrlSetting(format!(
                "sslmode {ssl_mode} needs sslrootcert: a PEM file of the CA certificates to trust, \
                 or sslrootcert=system for the platform's trust store"
            )));
        }
        // PostgreSQL has no TLS over Unix sockets and libpq ignores sslmode there; tokio-postgres
        // would ask for it and, under require, fail.
        let unix_only = !config.get_hosts().is_empty()
            && config.get_hostaddrs().is_empty()
            && config.get_hosts().iter().all(|h| !matches!(h, Host::Tcp(_)));
        config.ssl_mode(match ssl_mode {
            _ if unix_only => tokio_postgres::config::SslMode::Disable,
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
                tokio_postgres::config::SslMode::Require
            }
        });
        Ok(DatabaseUrl { config, ssl_mode, root_cert })
    }

    /// The settings tokio-postgres connects with (its `ssl_mode` set from [`DatabaseUrl::ssl_mode`]).
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The mode in force: the URL's, after libpq's rules (`require` with an `sslrootcert` is
    /// `verify-ca`; no `sslmode` is `prefer`, or `verify-full` with `sslrootcert=system`).
    pub fn ssl_mode(&self) -> SslMode {
        self.ssl_mode
    }

    /// The URL's `sslrootcert`.
    pub fn root_cert(&self) -> Option<&RootCert> {
        self.root_cert.as_ref()
    }

    /// The connector for this URL's connections; reads `sslrootcert` now, so a missing or
    /// unreadable file is an error here rather than at the first connection.
    pub fn tls(&self) -> Result<TlsConnector, DbError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| DbError::UrlSetting(format!("TLS setup: {e}")))?;
        let trust = self.root_cert.clone();
        let builder = match (self.ssl_mode, &trust) {
            (SslMode::VerifyFull, Some(roots)) => builder.with_webpki_verifier(verifier(roots, provider)?),
            (SslMode::VerifyCa, Some(roots)) => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(ChainOnly(verifier(roots, provider)?))),
            // `disable` never uses it; `prefer` and `require` check only the handshake.
            _ => builder.dangerous().with_custom_certificate_verifier(Arc::new(EncryptOnly {
                algorithms: provider.signature_verification_algorithms,
            })),
        };
        let mut client = builder.with_no_client_auth();
        client.alpn_protocols = vec![b"postgresql".to_vec()];
        let trust = match self.ssl_mode {
            SslMode::VerifyCa | SslMode::VerifyFull => trust,
            _ => None,
        };
        Ok(TlsConnector {
            inner: MakeRustlsConnect::new(client),
            targets: targets(&self.config).into(),
            trust: trust.map(Arc::new),
        })
    }

    /// Opens one connection with these settings. The connection half must be polled (spawned)
    /// for the client to work.
    pub async fn connect(&self) -> Result<(tokio_postgres::Client, Connection), DbError> {
        let tls = self.tls()?;
        self.config.connect(tls).await.map_err(|e| connect_error(e, &self.config))
    }

    /// The tokio-postgres settings, to add to (a pool sets its application name and
    /// `search_path`) and connect with the connector of [`DatabaseUrl::tls`].
    pub fn into_config(self) -> Config {
        self.config
    }
}

impl FromStr for DatabaseUrl {
    type Err = DbError;

    fn from_str(s: &str) -> Result<Self, DbError> {
        DatabaseUrl::parse(s)
    }
}

/// The TLS stream of a connection made through a [`TlsConnector`] (tokio-postgres holds it, or
/// the plain socket where `sslmode` let the connection go without TLS).
pub type TlsStream = <MakeRustlsConnect as MakeTlsConnect<Socket>>::Stream;

/// The connection half of a dedicated connection: poll it (spawn it, or read its
/// notifications with `poll_message`) for the client to work.
pub type Connection = tokio_postgres::Connection<Socket, TlsStream>;

/// Opens one connection outside any pool, honouring the URL's `sslmode` and `sslrootcert`: for
/// what needs a session of its own (LISTEN, a session advisory lock). The returned
/// [`Connection`] must be polled; the client fails once it ends.
pub async fn connect_dedicated(url: &str) -> Result<(tokio_postgres::Client, Connection), DbError> {
    DatabaseUrl::parse(url)?.connect().await
}

/// tokio-postgres's TLS connector for one URL (from [`DatabaseUrl::tls`]): rustls as its
/// `sslmode` says, and handshake failures that name the server and the reason ([`TlsRefused`]).
#[derive(Clone)]
pub struct TlsConnector {
    inner: MakeRustlsConnect,
    targets: Arc<[Target]>,
    trust: Option<Arc<RootCert>>,
}

impl fmt::Debug for TlsConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConnector").field("targets", &self.targets).field("trust", &self.trust).finish()
    }
}

impl MakeTlsConnect<Socket> for TlsConnector {
    type Stream = TlsStream;
    type TlsConnect = TlsHandshake;
    type Error = std::convert::Infallible;

    fn make_tls_connect(&mut self, host: &str) -> Result<TlsHandshake, Self::Error> {
        let inner = MakeTlsConnect::<Socket>::make_tls_connect(&mut self.inner, host)?;
        let target = self
            .targets
            .iter()
            .find(|t| matches!(&t.host, Some(Host::Tcp(h)) if h == host))
            .map_or_else(|| host.to_owned(), Target::to_string);
        Ok(TlsHandshake { inner, target, trust: self.trust.clone() })
    }
}

/// One TLS handshake of a [`TlsConnector`].
pub struct TlsHandshake {
    inner: <MakeRustlsConnect as MakeTlsConnect<Socket>>::TlsConnect,
    target: String,
    trust: Option<Arc<RootCert>>,
}

impl fmt::Debug for TlsHandshake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsHandshake").field("target", &self.target).finish_non_exhaustive()
    }
}

impl tokio_postgres::tls::TlsConnect<Socket> for TlsHandshake {
    type Stream = TlsStream;
    type Error = TlsRefused;
    type Future = Pin<Box<dyn Future<Output = Result<TlsStream, TlsRefused>> + Send>>;

    fn connect(self, stream: Socket) -> Self::Future {
        let TlsHandshake { inner, target, trust } = self;
        let handshake = inner.connect(stream);
        Box::pin(async move {
            handshake.await.map_err(|e| TlsRefused { reason: reason(&e, trust.as_deref()), target })
        })
    }
}

/// A failed TLS handshake: the server (`host:port`, and the `hostaddr` if the URL gave one) and
/// why. tokio-postgres's error carries it as its source; [`DbError::Tls`] is made from it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("TLS to {target} refused: {reason}")]
pub struct TlsRefused {
    pub target: String,
    pub reason: String,
}

/// Why a handshake failed, in words: rustls' certificate errors made readable.
fn reason(e: &std::io::Error, trust: Option<&RootCert>) -> String {
    let Some(tls) = e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) else {
        return e.to_string();
    };
    match tls {
        rustls::Error::InvalidCertificate(CertificateError::NotValidForNameContext {
            expected,
            presented,
        }) => {
            let names: Vec<&str> = presented.iter().map(|name| presented_name(name)).collect();
            let valid_for = if names.is_empty() {
                "it names no host".to_owned()
            } else {
                format!("it is for {}", names.join(", "))
            };
            format!("certificate is not valid for name {:?} ({valid_for})", expected.to_str())
        }
        rustls::Error::InvalidCertificate(CertificateError::NotValidForName) => {
            "certificate is not valid for the host name".to_owned()
        }
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => match trust {
            Some(roots) => format!("certificate is not signed by a CA of {roots}"),
            None => "certificate is signed by an unknown CA".to_owned(),
        },
        rustls::Error::InvalidCertificate(
            CertificateError::Expired | CertificateError::ExpiredContext { .. },
        ) => format!("certificate has expired ({tls})"),
        rustls::Error::AlertReceived(alert) => format!("the server ended the handshake ({alert:?})"),
        other => other.to_string(),
    }
}

/// `DnsName("db.internal")` and `IpAddress(10.0.0.1)` (rustls-webpki's notation) as plain names.
fn presented_name(name: &str) -> &str {
    name.strip_prefix("DnsName(\"")
        .and_then(|n| n.strip_suffix("\")"))
        .or_else(|| name.strip_prefix("IpAddress(").and_then(|n| n.strip_suffix(')')))
        .unwrap_or(name)
}

/// A failed connection as a [`DbError`]: [`DbError::Tls`] when the handshake was refused,
/// otherwise [`DbError::Connect`] naming the servers tried.
fn connect_error(source: tokio_postgres::Error, config: &Config) -> DbError {
    tls_refusal(&source).unwrap_or_else(|| {
        let target = targets(config).iter().map(Target::to_string).collect::<Vec<_>>().join(", ");
        DbError::Connect { target, error: source }
    })
}

/// [`DbError::Tls`] if `error` is (or wraps) a refused handshake.
pub(crate) fn tls_refusal(error: &tokio_postgres::Error) -> Option<DbError> {
    let mut source = std::error::Error::source(error);
    while let Some(e) = source {
        if let Some(refused) = e.downcast_ref::<TlsRefused>() {
            return Some(DbError::Tls { target: refused.target.clone(), reason: refused.reason.clone() });
        }
        source = e.source();
    }
    None
}

/// One server a [`Config`] may connect to, as tokio-postgres pairs `host`, `hostaddr` and `port`.
#[derive(Debug, Clone)]
struct Target {
    host: Option<Host>,
    hostaddr: Option<IpAddr>,
    port: u16,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let port = self.port;
        match (&self.host, self.hostaddr) {
            (Some(Host::Tcp(host)), _) if host.contains(':') => write!(f, "[{host}]:{port}")?,
            (Some(Host::Tcp(host)), _) => write!(f, "{host}:{port}")?,
            #[cfg(unix)]
            (Some(Host::Unix(dir)), _) => write!(f, "{} (port {port})", dir.display())?,
            (None, Some(IpAddr::V6(addr))) => return write!(f, "[{addr}]:{port}"),
            (None, Some(addr)) => return write!(f, "{addr}:{port}"),
            (None, None) => return write!(f, "(no host):{port}"),
        }
        match self.hostaddr {
            Some(addr) => write!(f, " at {addr}"),
            None => Ok(()),
        }
    }
}

fn targets(config: &Config) -> Vec<Target> {
    let (hosts, addrs, ports) = (config.get_hosts(), config.get_hostaddrs(), config.get_ports());
    (0..hosts.len().max(addrs.len()))
        .map(|i| Target {
            host: hosts.get(i).cloned(),
            hostaddr: addrs.get(i).copied(),
            port: ports.get(i).or(ports.first()).copied().unwrap_or(5432),
        })
        .collect()
}

/// The chain and host name check of `verify-full`, over the CAs of `roots`.
fn verifier(roots: &RootCert, provider: Arc<CryptoProvider>) -> Result<Arc<WebPkiServerVerifier>, DbError> {
    let store = root_store(roots)?;
    WebPkiServerVerifier::builder_with_provider(Arc::new(store), provider)
        .build()
        .map_err(|e| root_error(roots, e.to_string()))
}

fn root_error(roots: &RootCert, reason: String) -> DbError {
    let path = match roots {
        RootCert::File(path) => path.display().to_string(),
        RootCert::System => "system".to_owned(),
    };
    DbError::RootCert { path, reason }
}

fn root_store(roots: &RootCert) -> Result<RootCertStore, DbError> {
    let mut store = RootCertStore::empty();
    match roots {
        RootCert::File(path) => {
            for (i, cert) in read_pem_certificates(path)
                .map_err(|reason| root_error(roots, reason))?
                .into_iter()
                .enumerate()
            {
                store.add(cert).map_err(|e| root_error(roots, format!("certificate {}: {e}", i + 1)))?;
            }
        }
        // rustls-native-certs rather than webpki-roots: `system` means the trust store the
        // operator manages (a company CA or a cloud provider's bundle added with
        // update-ca-certificates, SSL_CERT_FILE / SSL_CERT_DIR), as libpq reads it through
        // OpenSSL, and not a copy of Mozilla's list frozen into the binary at build time.
        RootCert::System => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _unparsable) = store.add_parsable_certificates(found.certs);
            if added == 0 {
                let errors: Vec<String> = found.errors.iter().map(ToString::to_string).collect();
                let reason = if errors.is_empty() {
                    "no CA certificates found in the platform's trust store".to_owned()
                } else {
                    format!(
                        "no CA certificates loaded from the platform's trust store: {}",
                        errors.join("; ")
                    )
                };
                return Err(root_error(roots, reason));
            }
        }
    }
    Ok(store)
}

/// The certificates of a PEM file; the error says why in words (`no such file`).
fn read_pem_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let bytes = std::fs::read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".to_owned(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_owned(),
        std::io::ErrorKind::IsADirectory => "is a directory, not a PEM file".to_owned(),
        _ => e.to_string(),
    })?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not a PEM file of certificates: {e}"))?;
    if certs.is_empty() {
        return Err("no certificates in it (expected PEM \"BEGIN CERTIFICATE\" blocks)".to_owned());
    }
    Ok(certs)
}

/// `prefer` and `require`: any certificate, but the handshake must be signed by its key.
#[derive(Debug)]
struct EncryptOnly {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for EncryptOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// `verify-ca`: the full check, forgiving only a certificate issued for another name. rustls
/// checks the name last, after the chain, the validity period and the key usage, so a name
/// error means everything else held.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.0.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }

    fn root_hint_subjects(&self) -> Option<&[rustls::DistinguishedName]> {
        self.0.root_hint_subjects()
    }
}

/// A connection string with `sslmode` and `sslrootcert` taken out (the last of each wins, as in
/// libpq), in the form it came in.
#[derive(Debug, Default, PartialEq, Eq)]
struct Split {
    rest: String,
    sslmode: Option<String>,
    sslrootcert: Option<String>,
}

impl Split {
    /// Keeps `value` if `key` is one of ours; says whether it was.
    fn take(&mut self, key: &str, value: String) -> bool {
        match key {
            "sslmode" => self.sslmode = Some(value),
            "sslrootcert" => self.sslrootcert = Some(value),
            _ => return false,
        }
        true
    }
}

/// Takes our settings out of a URL or `key=value` string. Only what tokio-postgres would read as
/// a parameter is taken; anything it cannot parse is left for it to report.
fn split_tls_settings(url: &str) -> Result<Split, DbError> {
    match ["postgres://", "postgresql://"].iter().find_map(|p| url.strip_prefix(p).map(|_| p.len())) {
        Some(prefix) => split_url(url, prefix),
        None => Ok(split_keywords(url)),
    }
}

/// The URL form. Like tokio-postgres: the credentials run to the first `@`, the query starts
/// at the first `?` after them, parameters are split on `&` and then on the first `=`, and keys
/// and values are percent-decoded.
fn split_url(url: &str, prefix: usize) -> Result<Split, DbError> {
    let after_credentials = url[prefix..].find('@').map_or(prefix, |at| prefix + at + 1);
    let Some(question) = url[after_credentials..].find('?').map(|q| after_credentials + q) else {
        return Ok(Split { rest: url.to_owned(), ..Split::default() });
    };
    let mut split = Split::default();
    let mut kept = Vec::new();
    for param in url[question + 1..].split('&') {
        let ours = match param.split_once('=') {
            Some((key, value)) => match percent_decode(key)?.as_str() {
                key @ ("sslmode" | "sslrootcert") => split.take(key, percent_decode(value)?),
                _ => false,
            },
            None => false,
        };
        if !ours {
            kept.push(param);
        }
    }
    split.rest = url[..question].to_owned();
    if !kept.is_empty() {
        split.rest.push('?');
        split.rest.push_str(&kept.join("&"));
    }
    Ok(split)
}

fn percent_decode(s: &str) -> Result<String, DbError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(hi), Some(lo)) => {
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| DbError::UrlSetting(format!("{s:?} is not UTF-8 once decoded")))
}

/// The `key=value` form, tokenized as tokio-postgres does: whitespace between pairs and around
/// `=`, values bare or in single quotes, `\` escaping the next character in both.
fn split_keywords(s: &str) -> Split {
    let mut split = Split::default();
    let mut cursor = Cursor { s, pos: 0 };
    let mut copied = 0;
    loop {
        cursor.skip_whitespace();
        let start = cursor.pos;
        let key = cursor.take_while(|c| !c.is_whitespace() && c != '=');
        if key.is_empty() {
            break;
        }
        cursor.skip_whitespace();
        if !cursor.eat('=') {
            break;
        }
        cursor.skip_whitespace();
        let Some(value) = cursor.value() else { break };
        if split.take(key, value) {
            split.rest.push_str(&s[copied..start]);
            copied = cursor.pos;
        }
    }
    split.rest.push_str(&s[copied..]);
    split
}

struct Cursor<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<char> {
        self.s[self.pos..].chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn eat(&mut self, target: char) -> bool {
        let found = self.peek() == Some(target);
        if found {
            self.pos += target.len_utf8();
        }
        found
    }

    fn take_while(&mut self, f: impl Fn(char) -> bool) -> &'a str {
        let start = self.pos;
        while self.peek().is_some_and(&f) {
            self.bump();
        }
        &self.s[start..self.pos]
    }

    fn skip_whitespace(&mut self) {
        self.take_while(char::is_whitespace);
    }

    /// A bare or quoted value; `None` where tokio-postgres would report an error.
    fn value(&mut self) -> Option<String> {
        let quoted = self.eat('\'');
        let mut value = String::new();
        loop {
            match self.peek() {
                None if quoted => return None,
                None => break,
                Some('\'') if quoted => {
                    self.bump();
                    return Some(value);
                }
                Some(c) if c.is_whitespace() && !quoted => break,
                Some('\\') => {
                    self.bump();
                    if let Some(escaped) = self.bump() {
                        value.push(escaped);
                    }
                }
                Some(c) => {
                    self.bump();
                    value.push(c);
                }
            }
        }
        (!value.is_empty()).then_some(value)
    }
}

#[cfg(test)]
mod tests;
