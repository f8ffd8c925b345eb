//! Results over gRPC and HTTP, scoped to the caller's organization.

use cohort_analysis::analyze::Settings;
use cohort_dev::testing::authed;
use cohort_proto::analysis::v1 as pb;
use cohort_proto::analysis::v1::analysis_service_client::AnalysisServiceClient;
use tonic::Code;

use crate::{World, http_get, two_arm};

#[tokio::test]
async fn results_are_served_to_their_organization_only() {
    let mut w = World::new().await;
    let other = w.db().seed_tenant("other").await;
    w.metric("purchase", "purchase", "conversion", "increase", None).await;
    let id = w.running_experiment(two_arm("served", &["purchase"], &[])).await;
    w.traffic(id, 9, 0, 4_000, &[("control", 0.5, 0.1), ("treatment", 0.5, 0.1)], "purchase", false).await;
    w.analyzer(Settings::default()).cycle().await.unwrap();

    let server = w.start_analysis().await;
    let (grpc_addr, http_addr) = (server.grpc, server.http);
    let mut c = AnalysisServiceClient::connect(format!("http://{grpc_addr}")).await.unwrap();

    let r = c
        .get_results(authed(
            &w.tenant.admin_key,
            pb::GetResultsRequest { environment: "production".into(), experiment: "served".into() },
        ))
        .await
        .unwrap()
        .into_inner()
        .result
        .unwrap();
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

    let (status, body) = http_get(
        http_addr,
        &format!("/api/v1/experiments/{id}/results"),
        &format!("Bearer {}", w.tenant.admin_key),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"experiment_key\":\"served\""));
    w.stop_analysis().await;
}
