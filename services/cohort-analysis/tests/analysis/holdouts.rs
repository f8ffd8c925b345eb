//! Holdouts are analyzed as experiments of their own: the held-out units (control) against
//! the general population of their scope, with the same metrics and statistics, looked up by
//! key, never paused, and no longer analyzed once disabled.

use cohort_analysis::analyze::Settings;
use cohort_analysis::store::Store;
use cohort_core::model::{GENERAL_VARIANT, HOLDOUT_VARIANT};
use cohort_dev::testing::authed;
use cohort_proto::analysis::v1 as pb;
use cohort_proto::analysis::v1::analysis_service_client::AnalysisServiceClient;
use cohort_proto::config::v1 as cpb;
use serde_json::json;
use uuid::Uuid;

use crate::{Kind, World, create};

#[tokio::test]
async fn a_holdout_compares_everyone_else_against_the_held_out_units() {
    let mut w = World::new().await;
    w.metric("purchase", "purchase", "conversion", "increase", None).await;
    let holdout = json!({"key": "h2-holdout", "share_bp": 1000, "metrics": ["purchase"]});
    let written = w.write(create(Kind::Holdout, holdout)).await;
    let id = Uuid::parse_str(written["id"].as_str().unwrap()).unwrap();
    // The experiments of the scope lift conversion from 10 % to 14 %.
    w.traffic(
        id,
        5,
        0,
        20_000,
        &[(HOLDOUT_VARIANT, 0.1, 0.10), (GENERAL_VARIANT, 0.9, 0.14)],
        "purchase",
        false,
    )
    .await;
    let report = w.analyzer(Settings::default()).cycle().await.unwrap();
    assert_eq!((report.experiments, report.failed), (1, 0));

    let store = Store::new(w.db().pool.clone());
    let r = store.latest(w.exp(id)).await.unwrap().expect("a result for the holdout");
    assert!(r.holdout, "{r:?}");
    assert_eq!(r.units.values().sum::<u64>(), 20_000);
    assert!(r.units[HOLDOUT_VARIANT] > 1_850 && r.units[HOLDOUT_VARIANT] < 2_150, "{:?}", r.units);
    assert!(!r.srm.detected, "the split follows the share: {:?}", r.srm);
    let purchase = &r.metrics[0];
    assert_eq!(purchase.variants[0].variant, HOLDOUT_VARIANT, "the holdout is the control");
    let general = &purchase.comparisons[0];
    assert_eq!(general.variant, GENERAL_VARIANT);
    assert!(
        general.abs_diff.is_some_and(|d| d > 0.0) && general.p_value.is_some_and(|p| p < 0.001),
        "{general:?}"
    );
    assert_eq!(r.look, 1, "looks as any experiment: {r:?}");

    // Looked up by key like an experiment.
    let server = w.start_analysis().await;
    let mut c = AnalysisServiceClient::connect(format!("http://{}", server.grpc)).await.unwrap();
    let served = c
        .get_results(authed(
            &w.tenant.admin_key,
            pb::GetResultsRequest { environment: "production".into(), experiment: "h2-holdout".into() },
        ))
        .await
        .unwrap()
        .into_inner()
        .result
        .unwrap();
    assert_eq!(served.experiment_id, id.to_string());
    // Its cycles would race the one below.
    w.stop_analysis().await;

    // Disabled: no longer analyzed; its last result stays readable.
    let revision = 1;
    let update = cpb::batch_operation::Operation::Update(cpb::UpdateOperation {
        kind: Kind::Holdout as i32,
        key: "h2-holdout".into(),
        definition: cohort_proto::convert::structured::json_struct(
            &json!({"key": "h2-holdout", "share_bp": 1000, "metrics": ["purchase"], "enabled": false}),
        ),
        expected_revision: revision,
        reason: String::new(),
    });
    w.write(update).await;
    let report = w.analyzer(Settings::default()).cycle().await.unwrap();
    assert_eq!(report.experiments, 0);
    assert!(store.latest(w.exp(id)).await.unwrap().is_some());
}
