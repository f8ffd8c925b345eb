//! Consul registration and discovery against the in-process fake agent.

use std::time::{Duration, Instant};

use cohort_discovery::testing::FakeConsul;
use cohort_discovery::{ConsulClient, Upstream, balanced_channel};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, health_check_response};

/// A gRPC server whose health reports `status` for service "svc".
async fn health_server(status: tonic_health::ServingStatus) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (reporter, service) = tonic_health::server::health_reporter();
    reporter.set_service_status("svc", status).await;
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    addr
}

fn args(consul: &FakeConsul, address: &str) -> cohort_discovery::ConsulArgs {
    cohort_discovery::ConsulArgs {
        consul_http_addr: Some(consul.url()),
        consul_token: None,
        consul_service_name: Some("svc".into()),
        consul_service_address: Some(address.into()),
        consul_check_interval: Duration::from_secs(5),
    }
}

#[tokio::test]
async fn registration_has_a_grpc_check_and_deregisters() {
    let consul = FakeConsul::start().await;
    let grpc: std::net::SocketAddr = "127.0.0.1:50051".parse().unwrap();
    let registered = args(&consul, "10.1.2.3")
        .register("cohort-config", grpc, "cohort.config.v1.ConfigService", true)
        .await
        .unwrap()
        .unwrap();
    let services = consul.services();
    assert_eq!(services.len(), 1);
    let r = &services[0];
    assert_eq!(
        (r.id.as_str(), r.name.as_str(), r.address.as_str(), r.port),
        ("svc-10.1.2.3-50051", "svc", "10.1.2.3", 50051)
    );
    let check = r.check.as_ref().unwrap();
    assert_eq!(check.grpc, "10.1.2.3:50051/cohort.config.v1.ConfigService");
    assert_eq!((check.interval.as_str(), check.deregister_critical_service_after.as_str()), ("5s", "1m"));
    // Serving TLS: the check uses it, and clients learn to connect with https.
    assert!(check.grpc_use_tls);
    assert_eq!(r.meta.get("scheme").map(String::as_str), Some("https"));
    let (found, _) = ConsulClient::new(&consul.url(), None)
        .unwrap()
        .healthy("svc", 0, Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(found[0].uri(), "https://10.1.2.3:50051");
    registered.deregister().await;
    assert!(consul.services().is_empty());
    // Consul answers 404 for an unknown service ID.
    let err = ConsulClient::new(&consul.url(), None).unwrap().deregister("nope").await.unwrap_err();
    assert!(err.to_string().contains("404"), "{err}");
}

#[tokio::test]
async fn blocking_queries_wait_for_a_change_or_the_wait_time() {
    let consul = FakeConsul::start().await;
    let client = ConsulClient::new(&consul.url(), None).unwrap();
    let (empty, index) = client.healthy("svc", 0, Duration::from_secs(1)).await.unwrap();
    assert!(empty.is_empty() && index > 0);

    let started = Instant::now();
    let (_, same) = client.healthy("svc", index, Duration::from_millis(300)).await.unwrap();
    assert_eq!(same, index);
    assert!(started.elapsed() >= Duration::from_millis(250), "no change: it waits");

    let blocked = tokio::spawn({
        let client = client.clone();
        async move { client.healthy("svc", index, Duration::from_secs(30)).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let grpc = "127.0.0.1:4000".parse().unwrap();
    args(&consul, "127.0.0.1").register("svc", grpc, "svc", false).await.unwrap();
    let (instances, newer) =
        tokio::time::timeout(Duration::from_secs(5), blocked).await.unwrap().unwrap().unwrap();
    assert!(newer > index);
    assert_eq!(instances.len(), 1);
    assert_eq!(instances[0].uri(), "http://127.0.0.1:4000");
    consul.set_passing(&instances[0].id, false);
    let (passing, _) = client.healthy("svc", 0, Duration::from_secs(1)).await.unwrap();
    assert!(passing.is_empty(), "?passing filters out critical instances");
}

async fn status_via(channel: tonic::transport::Channel) -> Option<ServingStatus> {
    let mut client = HealthClient::new(channel);
    let request = tonic::Request::new(HealthCheckRequest { service: "svc".into() });
    let response = tokio::time::timeout(Duration::from_secs(2), client.check(request)).await.ok()?.ok()?;
    health_check_response::ServingStatus::try_from(response.into_inner().status).ok()
}

#[tokio::test]
async fn a_balanced_channel_follows_membership() {
    let consul = FakeConsul::start().await;
    let serving = health_server(tonic_health::ServingStatus::Serving).await;
    let draining = health_server(tonic_health::ServingStatus::NotServing).await;
    let first = args(&consul, "127.0.0.1").register("svc", serving, "svc", false).await.unwrap().unwrap();

    let stop = CancellationToken::new();
    let upstream = Upstream::Consul {
        client: Box::new(ConsulClient::new(&consul.url(), None).unwrap()),
        service: "svc".into(),
    };
    let channel =
        balanced_channel(upstream, &Default::default(), Duration::from_secs(1), stop.clone()).unwrap();
    assert_eq!(status_via(channel.clone()).await, Some(ServingStatus::Serving));

    // The first instance fails its check and a second one registers: traffic moves.
    args(&consul, "127.0.0.1").register("svc", draining, "svc", false).await.unwrap();
    consul.set_passing(first.id(), false);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if status_via(channel.clone()).await == Some(ServingStatus::NotServing) {
            break;
        }
        assert!(Instant::now() < deadline, "the channel never moved to the new instance");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for _ in 0..20 {
        assert_eq!(
            status_via(channel.clone()).await,
            Some(ServingStatus::NotServing),
            "the failed instance is out"
        );
    }
    stop.cancel();
}

#[tokio::test]
async fn static_upstreams_need_no_consul() {
    let serving = health_server(tonic_health::ServingStatus::Serving).await;
    let upstream = Upstream::Static(vec![format!("http://{serving}")]);
    let channel =
        balanced_channel(upstream, &Default::default(), Duration::from_secs(1), CancellationToken::new())
            .unwrap();
    assert_eq!(status_via(channel).await, Some(ServingStatus::Serving));
}
