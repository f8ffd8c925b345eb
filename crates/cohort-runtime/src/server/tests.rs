//! The skeleton's supervision: a server whose socket fails ends the service, not ready.

use std::time::Duration;

use tokio::net::TcpListener;

use super::{Limits, Skeleton};
use crate::{Listeners, Shutdown};

/// Listeners on loopback, and a second handle on the chosen one's socket to break it with.
async fn listeners(break_grpc: bool) -> (Listeners, socket2::Socket) {
    let std = |()| {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        l
    };
    let (grpc, http) = (std(()), std(()));
    let handle = socket2::Socket::from(if break_grpc { grpc.try_clone() } else { http.try_clone() }.unwrap());
    let listeners = Listeners {
        grpc: TcpListener::from_std(grpc).unwrap(),
        http: TcpListener::from_std(http).unwrap(),
        admin: None,
    };
    (listeners, handle)
}

async fn a_broken_listener_ends_the_service(break_grpc: bool, server: &str) {
    let skeleton = Skeleton::new("cohort-test", &["cohort.test.v1.Test"], Limits::default());
    let readiness = skeleton.readiness();
    let (listeners, handle) = listeners(break_grpc).await;
    let http = axum::Router::new().route("/ping", axum::routing::get(|| async { "pong" }));
    let mut running = skeleton
        .serve(listeners, crate::GrpcRoutes::default(), http, tonic_health::pb::FILE_DESCRIPTOR_SET, |s| s)
        .unwrap();
    readiness.set(true).await;
    let shutdown = Shutdown::new();
    // Nothing ends by itself while the sockets are fine.
    assert!(tokio::time::timeout(Duration::from_millis(200), running.until(&shutdown)).await.is_err());

    // The listening socket stops accepting (as when its interface goes away): accept fails.
    handle.shutdown(std::net::Shutdown::Both).unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(10), running.until(&shutdown))
        .await
        .expect("the service notices its dead listener");
    let stopped = ended.expect_err("a dead server is an error");
    assert_eq!(stopped.server, server);
    assert!(!readiness.is_ready(), "readiness turns off first");
    running.drain(Duration::from_secs(1), async {}).await;
}

#[tokio::test]
async fn a_dead_grpc_listener_ends_the_service() {
    a_broken_listener_ends_the_service(true, "gRPC").await;
}

#[tokio::test]
async fn a_dead_http_listener_ends_the_service() {
    a_broken_listener_ends_the_service(false, "HTTP").await;
}

#[tokio::test]
async fn shutdown_is_not_an_error_and_requests_are_counted_by_route() {
    let skeleton = Skeleton::new("cohort-test", &[], Limits::default());
    let (mut listeners, _handle) = listeners(true).await;
    let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin_addr = admin.local_addr().unwrap();
    listeners.admin = Some(admin);
    let http_addr = listeners.http.local_addr().unwrap();
    let http = axum::Router::new().route("/items/{id}", axum::routing::get(|| async { "item" }));
    let mut running = skeleton
        .serve(listeners, crate::GrpcRoutes::default(), http, tonic_health::pb::FILE_DESCRIPTOR_SET, |s| s)
        .unwrap();
    let text = get(http_addr, "/items/7").await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.to_ascii_lowercase().contains("x-request-id: abc"), "the request id comes back: {text}");
    let metrics = get(admin_addr, "/metrics").await;
    assert!(
        metrics.contains("cohort_http_requests_total{route=\"/items/{id}\",status=\"200\"} 1"),
        "{metrics}"
    );
    let shutdown = Shutdown::new();
    shutdown.cancel();
    assert!(running.until(&shutdown).await.is_ok());
    running.drain(Duration::from_secs(1), async {}).await;
}

async fn get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nx-request-id: abc\r\nConnection: close\r\n\r\n");
    s.write_all(request.as_bytes()).await.unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).await.unwrap();
    text
}

/// The services reflection on `addr` lists, sorted.
async fn reflected(addr: std::net::SocketAddr) -> Vec<String> {
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}")).unwrap();
    super::reflected_services(endpoint.connect().await.unwrap()).await.unwrap()
}

/// Serves `routes` with `descriptors`; the gRPC address.
async fn serve_grpc(
    routes: super::GrpcRoutes,
    descriptors: &'static [u8],
) -> (std::net::SocketAddr, super::Running) {
    let (listeners, _handle) = listeners(true).await;
    let grpc = listeners.grpc.local_addr().unwrap();
    let skeleton = Skeleton::new("cohort-test", &[], Limits::default());
    let running = skeleton.serve(listeners, routes, ping(), descriptors, |s| s).unwrap();
    (grpc, running)
}

#[tokio::test]
async fn reflection_lists_the_services_routed_health_and_itself_only() {
    // The v1alpha reflection service stands in for a service of ours; its file is in the
    // descriptors either way.
    let descriptors = tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET;
    let alpha = tonic_reflection::server::Builder::configure().build_v1alpha().unwrap();
    let routes = super::GrpcRoutes::new(alpha);
    assert_eq!(routes.names(), ["grpc.reflection.v1alpha.ServerReflection"]);
    let (with, running) = serve_grpc(routes, descriptors).await;
    assert_eq!(
        reflected(with).await,
        [
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection"
        ]
    );
    running.drain(Duration::from_secs(1), async {}).await;

    let (without, running) = serve_grpc(super::GrpcRoutes::default(), descriptors).await;
    assert_eq!(reflected(without).await, ["grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection"]);
    running.drain(Duration::from_secs(1), async {}).await;
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn the_admin_port_serves_build_info_and_process_metrics() {
    let (mut listeners, _handle) = listeners(true).await;
    let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin_addr = admin.local_addr().unwrap();
    listeners.admin = Some(admin);
    let skeleton = Skeleton::new("cohort-test", &[], Limits::default());
    let running = skeleton
        .serve(listeners, super::GrpcRoutes::default(), ping(), tonic_health::pb::FILE_DESCRIPTOR_SET, |s| s)
        .unwrap();
    let metrics = get(admin_addr, "/metrics").await;
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
    assert!(metrics.contains("cohort_build_info{service=\"cohort-test\",version=\""), "{metrics}");
    for name in [
        "process_cpu_seconds_total ",
        "process_resident_memory_bytes ",
        "process_open_fds ",
        "process_start_time_seconds ",
    ] {
        assert!(metrics.contains(&format!("\n{name}")), "{name} in {metrics}");
    }
    running.drain(Duration::from_secs(1), async {}).await;
}

/// An HTTP router with one route (axum refuses layers on a router without any).
fn ping() -> axum::Router {
    axum::Router::new().route("/ping", axum::routing::get(|| async { "pong" }))
}
