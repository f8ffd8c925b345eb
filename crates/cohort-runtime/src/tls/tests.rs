//! TLS on the skeleton's listeners, with clients built by cohort-transport: trusted and
//! untrusted CAs, plaintext refused, client certificates, and rotation without a restart.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use cohort_transport::testing::{LeafFiles, Pki};
use cohort_transport::{ClientTls, endpoint};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use super::{ClientAuth, ServerTls, TlsArgs};
use crate::{Limits, Listeners, Running, Skeleton};

struct Served {
    grpc: SocketAddr,
    admin: SocketAddr,
    running: Option<Running>,
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(running) = self.running.take() {
            tokio::spawn(running.drain(Duration::from_secs(1), async {}));
        }
    }
}

async fn serve(args: &TlsArgs) -> Served {
    let bind = || async { TcpListener::bind("127.0.0.1:0").await.unwrap() };
    let listeners = Listeners { grpc: bind().await, http: bind().await, admin: Some(bind().await) };
    let (grpc, admin) =
        (listeners.grpc.local_addr().unwrap(), listeners.admin.as_ref().unwrap().local_addr().unwrap());
    let skeleton = Skeleton::new("cohort-test", &[], Limits::default()).tls(args).expect("TLS settings load");
    let readiness = skeleton.readiness();
    let running = skeleton
        .serve(
            listeners,
            crate::GrpcRoutes::default(),
            axum::Router::new().route("/ping", axum::routing::get(|| async { "pong" })),
            tonic_health::pb::FILE_DESCRIPTOR_SET,
            |s| s,
        )
        .unwrap();
    readiness.set(true).await;
    Served { grpc, admin, running: Some(running) }
}

fn args(leaf: &LeafFiles) -> TlsArgs {
    TlsArgs {
        tls_cert: Some(leaf.cert.clone()),
        tls_key: Some(leaf.key.clone()),
        tls_reload_interval: Duration::from_millis(100),
        ..TlsArgs::default()
    }
}

/// A health check over `uri` with `tls`; the error's whole chain on failure.
async fn check(uri: &str, tls: &ClientTls) -> Result<(), String> {
    let loaded = tls.load().map_err(|e| e.to_string())?;
    let channel = endpoint(uri, &loaded)
        .map_err(|e| e.to_string())?
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(5))
        .connect()
        .await
        .map_err(|e| cohort_core::error::chain(&e))?;
    HealthClient::new(channel)
        .check(HealthCheckRequest { service: String::new() })
        .await
        .map(drop)
        .map_err(|s| format!("{}: {}", s.code(), cohort_core::error::chain(&s)))
}

fn trusting(ca: &Path) -> ClientTls {
    ClientTls { ca_file: Some(ca.to_owned()), ..ClientTls::default() }
}

#[tokio::test]
async fn clients_that_trust_the_ca_are_served_and_others_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (pki, other) = (Pki::new("Cohort test CA"), Pki::new("Another CA"));
    let served = serve(&args(&pki.localhost().write(dir.path(), "server"))).await;
    let (ca, other_ca) = (pki.write_ca(dir.path(), "ca"), other.write_ca(dir.path(), "other"));
    let https = format!("https://localhost:{}", served.grpc.port());

    check(&https, &trusting(&ca)).await.expect("a client trusting the CA is served");
    check(&format!("https://127.0.0.1:{}", served.grpc.port()), &trusting(&ca))
        .await
        .expect("the IP address is a name of the certificate too");

    let refused = check(&https, &trusting(&other_ca)).await.expect_err("another CA is refused");
    assert!(refused.contains("UnknownIssuer") || refused.contains("invalid peer certificate"), "{refused}");
    let refused = check(&format!("https://127.0.0.2:{}", served.grpc.port()), &trusting(&ca)).await;
    assert!(refused.is_err(), "a name the certificate lacks is refused");
    let plaintext = check(&format!("http://127.0.0.1:{}", served.grpc.port()), &ClientTls::default()).await;
    assert!(plaintext.is_err(), "plaintext is refused where TLS is served");
}

#[tokio::test]
async fn a_rewritten_certificate_is_served_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (Pki::new("Old CA"), Pki::new("New CA"));
    let files = old.localhost().write(dir.path(), "server");
    let served = serve(&args(&files)).await;
    let (old_ca, new_ca) = (old.write_ca(dir.path(), "old"), new.write_ca(dir.path(), "new"));
    let https = format!("https://localhost:{}", served.grpc.port());
    check(&https, &trusting(&old_ca)).await.unwrap();
    assert!(check(&https, &trusting(&new_ca)).await.is_err());

    // Rotation as cert-manager does it: the same paths, new contents.
    new.localhost().write(dir.path(), "server");
    let deadline = Instant::now() + Duration::from_secs(10);
    while check(&https, &trusting(&new_ca)).await.is_err() {
        assert!(Instant::now() < deadline, "the new certificate was never served");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(check(&https, &trusting(&old_ca)).await.is_err(), "the old certificate is gone");
}

#[test]
fn files_that_do_not_load_are_named_and_a_bad_rotation_keeps_the_old_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new("Cohort test CA");
    let files = pki.localhost().write(dir.path(), "server");
    let tls = ServerTls::load(&args(&files)).unwrap().expect("TLS is configured");

    let mismatched = pki.localhost();
    std::fs::write(&files.key, &mismatched.key).unwrap();
    let e = tls.reload().expect_err("a key of another certificate does not load");
    assert_eq!(e.setting, "--tls-key", "{e}");
    assert!(e.to_string().contains("does not match"), "{e}");

    std::fs::write(&files.cert, "not a certificate").unwrap();
    assert_eq!(ServerTls::load(&args(&files)).unwrap_err().setting, "--tls-cert");
    let missing = TlsArgs { tls_cert: Some(dir.path().join("absent.crt")), ..args(&files) };
    let e = ServerTls::load(&missing).unwrap_err();
    assert!(e.to_string().contains("absent.crt"), "{e}");

    assert!(ServerTls::load(&TlsArgs::default()).unwrap().is_none(), "no certificate: plaintext");
}

#[tokio::test]
async fn client_certificates_are_checked_when_a_client_ca_is_set() {
    let dir = tempfile::tempdir().unwrap();
    let (pki, other) = (Pki::new("Cohort test CA"), Pki::new("Another CA"));
    let ca = pki.write_ca(dir.path(), "ca");
    let server = pki.localhost().write(dir.path(), "server");
    let client = pki.leaf(&["cohort-analysis"]).write(dir.path(), "client");
    let stranger = other.leaf(&["intruder"]).write(dir.path(), "stranger");
    let required = TlsArgs { tls_client_ca: Some(ca.clone()), ..args(&server) };
    let served = serve(&required).await;
    let https = format!("https://localhost:{}", served.grpc.port());
    let with = |files: &LeafFiles| ClientTls {
        ca_file: Some(ca.clone()),
        identity: Some((files.cert.clone(), files.key.clone())),
        server_name: None,
    };

    check(&https, &with(&client)).await.expect("a certificate from the client CA is accepted");
    assert!(check(&https, &trusting(&ca)).await.is_err(), "no certificate is refused");
    assert!(check(&https, &with(&stranger)).await.is_err(), "a certificate from another CA is refused");
    // The admin listener never asks: probes and scrapers have no certificate.
    assert_eq!(https_get(served.admin, &ca, "/healthz").await, "ok");

    let optional = TlsArgs { tls_client_auth: ClientAuth::Optional, ..required };
    let served = serve(&optional).await;
    let https = format!("https://localhost:{}", served.grpc.port());
    check(&https, &trusting(&ca)).await.expect("optional: a client without a certificate is served");
    check(&https, &with(&client)).await.expect("optional: a good certificate is accepted");
    assert!(check(&https, &with(&stranger)).await.is_err(), "optional: a bad certificate is still refused");
}

/// `GET path` over HTTPS/1.1 to `addr` (as `localhost`), trusting `ca`; the body.
async fn https_get(addr: SocketAddr, ca: &Path, path: &str) -> String {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls =
        tokio_rustls::TlsConnector::from(std::sync::Arc::new(config)).connect(name, tcp).await.unwrap();
    tls.write_all(format!("GET {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut response = String::new();
    tls.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response.rsplit("\r\n\r\n").next().unwrap().to_owned()
}

#[tokio::test]
async fn plaintext_stays_the_default() {
    let served = serve(&TlsArgs::default()).await;
    check(&format!("http://127.0.0.1:{}", served.grpc.port()), &ClientTls::default()).await.unwrap();
}
