//! Tenant scoping and isolation: an experiment id is unique only within its environment, so
//! nothing one organization sends or names reaches another's results, and nothing in one
//! tenant's data stops the analysis of the others.

use cohort_analysis::analyze::Settings;
use cohort_proto::analysis::v1 as pb;
use cohort_proto::analysis::v1::analysis_service_client::AnalysisServiceClient;
use serde_json::json;
use uuid::Uuid;

use crate::{Kind, Org, World, create, http_get, two_arm};

const EVEN: &[(&str, f64, f64)] = &[("control", 0.5, 0.1), ("treatment", 0.5, 0.1)];

async fn purchase_metric(w: &World, org: &Org) {
    let m =
        json!({"key": "purchase", "event": "purchase", "aggregation": "conversion", "direction": "increase"});
    w.write_as(org, create(Kind::Metric, m)).await;
}

/// Creates and starts an experiment in `org`'s environment; its id.
async fn run_in(w: &World, org: &Org, definition: serde_json::Value) -> Uuid {
    w.running_experiment_in(&org.tenant, definition).await
}

fn units(r: &cohort_analysis::analyze::ExperimentResult) -> u64 {
    r.units.values().sum::<u64>() + r.excluded_units
}

#[tokio::test]
async fn exposures_sent_in_one_environment_never_count_in_another_environments_experiment() {
    let w = World::new().await;
    let b = w.other_organization("globex").await;
    purchase_metric(&w, &b).await;
    let id = run_in(&w, &b, two_arm("checkout", &["purchase"], &[])).await;
    w.traffic_in(b.tenant.environment_id, id, 1, 0, 1_000, EVEN, "purchase", false).await;
    let analyzer = w.analyzer(Settings::default());
    analyzer.cycle().await.unwrap();

    // Exposures stored under acme's environment (sent with acme's SDK key) naming globex's
    // experiment id, which globex's clients see in every decision. The next cycle folds new
    // rows in incrementally: the path that once joined on the experiment id alone.
    w.traffic_in(w.tenant.environment_id, id, 2, 5_000, 200, &[("treatment", 1.0, 1.0)], "purchase", false)
        .await;
    analyzer.cycle().await.unwrap();
    let store = cohort_analysis::store::Store::new(w.db().pool.clone());
    let r = store.latest(b.exp(id)).await.unwrap().unwrap();
    assert_eq!(units(&r), 1_000, "globex's result counts globex's units only: {:?}", r.units);
    assert!(store.latest(w.exp(id)).await.unwrap().is_none(), "acme runs no such experiment");
}

#[tokio::test]
async fn an_experiment_id_reused_in_another_organization_keeps_both_results_apart() {
    let mut w = World::new().await;
    let b = w.other_organization("globex").await;
    w.metric("purchase", "purchase", "conversion", "increase", None).await;
    purchase_metric(&w, &b).await;
    let id = run_in(&w, &b, two_arm("theirs", &["purchase"], &[])).await;
    // Acme names globex's id for an experiment of its own (copied from an example, or on
    // purpose): the config service accepts it, as the id is unique per environment.
    let mut mine = two_arm("mine", &["purchase"], &[]);
    mine["id"] = json!(id);
    assert_eq!(w.running_experiment(mine).await, id);
    w.traffic_in(b.tenant.environment_id, id, 3, 0, 1_000, EVEN, "purchase", false).await;
    w.traffic(id, 4, 0, 600, EVEN, "purchase", false).await;

    // One cycle over both: the colliding ids once failed every cycle of every organization.
    let report = w.analyzer(Settings::default()).cycle().await.unwrap();
    assert_eq!((report.experiments, report.failed), (2, 0));
    let store = cohort_analysis::store::Store::new(w.db().pool.clone());
    let (ours, theirs) =
        (store.latest(w.exp(id)).await.unwrap().unwrap(), store.latest(b.exp(id)).await.unwrap().unwrap());
    assert_eq!((units(&ours), ours.experiment_key.as_str()), (600, "mine"));
    assert_eq!((units(&theirs), theirs.experiment_key.as_str()), (1_000, "theirs"));

    // Every read path answers acme with acme's experiment, by id or by key.
    let server = w.start_analysis().await;
    let mut c = AnalysisServiceClient::connect(format!("http://{}", server.grpc)).await.unwrap();
    fn authed<T>(key: &str, m: T) -> tonic::Request<T> {
        let mut r = tonic::Request::new(m);
        // The scheme is case-insensitive.
        r.metadata_mut().insert("authorization", format!("bearer {key}").parse().unwrap());
        r
    }
    let key = w.tenant.admin_key.as_str();
    for name in [id.to_string(), "mine".to_owned()] {
        let r = c
            .get_results(authed(
                key,
                pb::GetResultsRequest { environment: "production".into(), experiment: name },
            ))
            .await
            .unwrap()
            .into_inner()
            .result
            .unwrap();
        assert_eq!(
            (r.experiment_key.as_str(), r.exposures.iter().map(|e| e.units).sum::<u64>()),
            ("mine", 600)
        );
    }
    let history = c
        .list_results(authed(
            key,
            pb::ListResultsRequest {
                environment: "production".into(),
                experiment: id.to_string(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(history.results.iter().all(|r| r.experiment_key == "mine"), "{history:?}");
    let (status, body) = http_get(
        server.http,
        &format!("/api/v1/experiments/{id}/results"),
        &format!("bearer {}", w.tenant.admin_key),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"experiment_key\":\"mine\""), "{body}");

    // Names that cannot name anything are the caller's mistake, never a server error.
    for query in ["?environment=%00", "?environment=prod%01uction"] {
        let path = format!("/api/v1/experiments/{id}/results{query}");
        let (status, body) = http_get(server.http, &path, &format!("Bearer {}", w.tenant.admin_key)).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert!(body.contains("environment"), "{body}");
    }
    w.stop_analysis().await;
}

#[tokio::test]
async fn a_metric_value_beyond_the_documented_range_is_left_out_and_overflows_nothing() {
    let w = World::new().await;
    w.metric("revenue", "revenue", "mean", "increase", None).await;
    let id = w.running_experiment(two_arm("priced", &["revenue"], &[])).await;
    w.traffic(id, 5, 0, 400, EVEN, "unrelated", false).await;
    let analyzer = w.analyzer(Settings::default());
    analyzer.cycle().await.unwrap();
    let c = w.db().pool.get().await.unwrap();
    let insert = |unit: &'static str, value: f64| {
        let c = &c;
        let env = w.tenant.environment_id;
        async move {
            c.execute(
                "INSERT INTO metric_events (environment_id, event_id, unit, event, value, ts, received_at)
                 VALUES ($1, gen_random_uuid(), $2, 'revenue', $3, now(), now())",
                &[&env, &unit, &value],
            )
            .await
            .unwrap();
        }
    };
    // Stored before the events service enforced the range (it rejects such values now).
    insert("user-1", f64::MAX).await;
    insert("user-1", f64::MAX).await;
    insert("user-2", 10.0).await;
    insert("user-3", -1e15).await;
    let report = analyzer.cycle().await.unwrap();
    assert_eq!(report.failed, 0);
    let r = cohort_analysis::store::Store::new(w.db().pool.clone()).latest(w.exp(id)).await.unwrap().unwrap();
    let json = serde_json::to_string(&r).unwrap();
    assert!(!json.contains("e308") && !json.contains("Infinity"), "{json}");
    let sums = cohort_analysis::store::Store::new(w.db().pool.clone())
        .sums(&[cohort_analysis::store::Basis {
            experiment_id: id,
            environment_id: w.tenant.environment_id,
            events: vec!["revenue".into()],
            pairs: vec![],
            breakdowns: vec!["country".into()],
        }])
        .await
        .unwrap();
    let total: f64 = sums[&w.exp(id)].overall.events.values().map(|s| s.value_sum).sum();
    assert_eq!(total, 10.0 - 1e15, "the in-range values, and only those");
}

/// Makes every insert of `experiment`'s rows into `table` fail, as data no statement can
/// take would.
async fn plant_failure(w: &World, table: &str, experiment: Uuid) {
    let c = w.db().pool.get().await.unwrap();
    c.batch_execute(&format!(
        "CREATE FUNCTION planted_{table}() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
           IF NEW.experiment_id = '{experiment}' THEN RAISE EXCEPTION 'planted failure'; END IF;
           RETURN NEW;
         END $$;
         CREATE TRIGGER planted BEFORE INSERT ON {table} FOR EACH ROW EXECUTE FUNCTION planted_{table}();"
    ))
    .await
    .unwrap();
}

fn failures(registry: &prometheus_client::registry::Registry, stage: &str) -> String {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
    let prefix = format!("cohort_analysis_experiment_failures_total{{stage=\"{stage}\"}} ");
    text.lines().find_map(|l| l.strip_prefix(&prefix)).unwrap_or("0").to_owned()
}

#[tokio::test]
async fn an_experiment_whose_aggregation_fails_is_set_aside_and_the_others_are_analyzed() {
    let w = World::new().await;
    w.metric("purchase", "purchase", "conversion", "increase", None).await;
    let healthy = w.running_experiment(two_arm("healthy", &["purchase"], &[])).await;
    let broken = w.running_experiment(two_arm("broken", &["purchase"], &[])).await;
    let also = w.running_experiment(two_arm("also-healthy", &["purchase"], &[])).await;
    for (seed, id) in [healthy, broken, also].into_iter().enumerate() {
        w.traffic(id, seed as u64, 0, 300, EVEN, "purchase", false).await;
    }
    plant_failure(&w, "analysis_units", broken).await;
    let mut registry = prometheus_client::registry::Registry::default();
    let analyzer = w.analyzer_in(Settings::default(), &mut registry);

    let first = analyzer.cycle().await.expect("one experiment's failure is not the cycle's");
    assert_eq!((first.experiments, first.failed, first.quarantined), (2, 1, 1));
    let store = cohort_analysis::store::Store::new(w.db().pool.clone());
    for id in [healthy, also] {
        assert_eq!(units(&store.latest(w.exp(id)).await.unwrap().unwrap()), 300);
    }
    assert!(store.latest(w.exp(broken)).await.unwrap().is_none());
    assert_eq!(failures(&registry, "aggregate"), "1");

    // Set aside until its retry: the next cycles go on without trying it again each time.
    w.traffic(healthy, 9, 300, 100, EVEN, "purchase", false).await;
    let second = analyzer.cycle().await.unwrap();
    assert_eq!((second.experiments, second.failed, second.quarantined), (2, 0, 1));
    assert_eq!(units(&store.latest(w.exp(healthy)).await.unwrap().unwrap()), 400);
}

#[tokio::test]
async fn an_experiment_whose_result_cannot_be_stored_does_not_keep_the_others_from_theirs() {
    let w = World::new().await;
    w.metric("purchase", "purchase", "conversion", "increase", None).await;
    let healthy = w.running_experiment(two_arm("healthy", &["purchase"], &[])).await;
    let broken = w.running_experiment(two_arm("broken", &["purchase"], &[])).await;
    // Too few units for a formal look: results are stored between looks, all in one statement.
    w.traffic(healthy, 1, 0, 50, EVEN, "purchase", false).await;
    w.traffic(broken, 2, 0, 50, EVEN, "purchase", false).await;
    plant_failure(&w, "analysis_latest", broken).await;
    let mut registry = prometheus_client::registry::Registry::default();
    let analyzer = w.analyzer_in(Settings::default(), &mut registry);

    let report = analyzer.cycle().await.unwrap();
    assert_eq!((report.failed, report.quarantined), (1, 1));
    let store = cohort_analysis::store::Store::new(w.db().pool.clone());
    assert_eq!(units(&store.latest(w.exp(healthy)).await.unwrap().unwrap()), 50);
    assert!(store.latest(w.exp(broken)).await.unwrap().is_none());
    assert_eq!(failures(&registry, "store"), "1");
}

#[tokio::test]
async fn the_analysis_service_runs_as_a_role_with_no_privilege_on_configs_schema() {
    use cohort_db::testing::Privilege;
    let w = World::new().await;
    w.metric("purchase", "purchase", "conversion", "increase", None).await;
    let id = w.running_experiment(two_arm("walled", &["purchase"], &[])).await;
    w.traffic(id, 1, 0, 500, EVEN, "purchase", false).await;
    let url = w
        .db()
        .role("analysis", &[("cohort_analysis", Privilege::All), ("cohort_events", Privilege::Read)])
        .await;
    let pool = cohort_db::connect(
        &url,
        &cohort_db::PoolOptions {
            search_path: ["cohort_analysis", "cohort_events"].map(String::from).into(),
            ..Default::default()
        },
    )
    .unwrap();
    // The role cannot see what the config service owns ...
    let denied = pool.get().await.unwrap().query("SELECT count(*) FROM cohort_config.entities", &[]).await;
    assert_eq!(denied.unwrap_err().code(), Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE));
    // ... and analysis does its whole job with it: running experiments from the config
    // service's API, events from the read model, results in its own schema.
    let analyzer = cohort_analysis::cycle::Analyzer::new(
        cohort_analysis::store::Store::new(pool.clone()),
        w.config_client(),
        Settings::default(),
        cohort_analysis::metrics::Metrics::new(&mut prometheus_client::registry::Registry::default()),
    );
    let report = analyzer.cycle().await.unwrap();
    assert_eq!((report.experiments, report.failed), (1, 0));
    let r = cohort_analysis::store::Store::new(pool).latest(w.exp(id)).await.unwrap().unwrap();
    assert_eq!(units(&r), 500);
}
