//! Results over gRPC and HTTP, scoped to the caller's organization.

use cohort_analysis::analyze::Settings;
use cohort_analysis::{Listeners, run};
use cohort_proto::analysis::v1 as pb;
use cohort_proto::analysis::v1::analysis_service_client::AnalysisServiceClient;
use cohort_runtime::Shutdown;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tonic::Code;

use crate::{World, two_arm};

fn authed<T>(key: &str, m: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(m);
    r.metadata_mut().insert("authorization", format!("Bearer {key}").parse().unwrap());
    r
}

#[tokio::test]
async fn results_are_served_to_their_organization_only() {
    let w = World::new().await;
    let other = w.db.seed_tenant("other").await;
    w.metric("purchase", "purchase", "conversion", "increase", None).await;
    let id = w.running_experiment(two_arm("served", &["purchase"], &[])).await;
    w.traffic(id, 9, 0, 4_000, &[("control", 0.5, 0.1), ("treatment", 0.5, 0.1)], "purchase", false).await;
    w.analyzer(Settings::default()).cycle().await.unwrap();

    let settings = <cohort_analysis::settings::Cli as clap::Parser>::try_parse_from([
        "cohort-analysis",
        "--database-url",
        &w.db.url,
        "--interval",
        "1h",
    ])
    .unwrap()
    .settings;
    let (grpc, http) =
        (TcpListener::bind("127.0.0.1:0").await.unwrap(), TcpListener::bind("127.0.0.1:0").await.unwrap());
    let (grpc_addr, http_addr) = (grpc.local_addr().unwrap(), http.local_addr().unwrap());
    let shutdown = Shutdown::new();
    let server = tokio::spawn(run(settings, Listeners { grpc, http, admin: None }, shutdown.clone()));
    let mut c = AnalysisServiceClient::connect(format!("http://{grpc_addr}")).await.unwrap();

    let r = c
        .get_results(authed(
            &w.tenant.admin_key,
            pb::GetResultsRequest { environment: "production".into(), experiment: "served".into() },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((r.experiment_id, r.look), (id.to_string(), 1));
    assert_eq!(r.exposures.iter().map(|e| e.units).sum::<u64>(), 4_000);
    let history = c
        .list_results(authed(
            &w.tenant.admin_key,
            pb::ListResultsRequest {
                environment: "production".into(),
                experiment: id.to_string(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(history.results.len(), 1);

    for (key, code) in [
        (other.admin_key.as_str(), Code::NotFound),
        (w.tenant.sdk_key.as_str(), Code::PermissionDenied),
        ("nope", Code::Unauthenticated),
    ] {
        let err = c
            .get_results(authed(
                key,
                pb::GetResultsRequest {
                    environment: w.tenant.environment_id.to_string(),
                    experiment: id.to_string(),
                },
            ))
            .await
            .unwrap_err();
        assert_eq!(err.code(), code, "{key}");
    }

    let mut s = tokio::net::TcpStream::connect(http_addr).await.unwrap();
    let req = format!(
        "GET /api/v1/experiments/{id}/results HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
        w.tenant.admin_key
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).await.unwrap();
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    assert!(body.contains("\"experiment_key\":\"served\""));
    shutdown.cancel();
    server.await.unwrap().unwrap();
}
