//! The whole path through Cohort, as an operator (with cohortctl's gRPC calls) and an
//! application (with the SDK) walk it: bootstrap, metrics and an experiment started; the SDK
//! has it within a second; 20,000 units split by the weights; exposures, conversions and
//! orders (some from before each unit's exposure) with planted effects; the analysis service
//! finds the effect, and its CUPED-adjusted revenue and its revenue per order equal values
//! computed here from the units' own numbers; a flag from a flagd file has its split
//! analysed like an experiment; a second organization that reuses
//! the experiment's id and sends exposures naming it changes nothing of the first's results
//! and sees nothing of them, and its revoked key stops working within seconds; a harmful
//! guardrail pauses a second experiment and the SDK sees it paused; the config service dies
//! and the SDK keeps serving its last-known-good config.
//!
//! It runs twice: in plaintext, as `make dev` does, and with TLS on every listener and mutual
//! TLS between the services (and from the test's clients), as a secured deployment does.
//! Everything the services and the SDK log meanwhile (Cohort's crates at debug level) is kept,
//! and no secret the run made may appear in it.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use cohort_analysis::analyze::ExperimentResult;
use cohort_core::model::ExperimentStatus;
use cohort_dev::stack::Service;
use cohort_dev::testing::{TestCluster, authed};
use cohort_proto::analysis::v1 as apb;
use cohort_proto::analysis::v1::analysis_service_client::AnalysisServiceClient;
use cohort_proto::common::v1 as common;
use cohort_proto::config::v1 as cpb;
use cohort_proto::config::v1::config_service_client::ConfigServiceClient;
use cohort_proto::evaluation::v1 as epb;
use cohort_proto::evaluation::v1::evaluation_service_client::EvaluationServiceClient;
use cohort_sdk::{Client, Context, MetricEvent, Reason, State};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};
use tonic::transport::Channel;

const ENV: &str = "production";
/// The experiment with a planted effect: the green button converts at 15 % instead of 10 %.
const CHECKOUT: &str = "checkout-button";
const CHECKOUT_WEIGHTS: [(&str, f64); 2] = [("grey", 0.4), ("green", 0.6)];
const CONVERSION: [(&str, f64); 2] = [("grey", 0.10), ("green", 0.15)];
const UNITS: usize = 20_000;
/// The experiment whose new variant doubles errors, far beyond its guardrail's 5 %.
const RISKY: &str = "new-search";
const RISKY_UNITS: usize = 6_000;
const ERROR_RATE: [(&str, f64); 2] = [("old", 0.02), ("new", 0.08)];
const COUNTRIES: [&str; 3] = ["NZ", "AU", "US"];
/// A flag in flagd's form whose `fractional` split is analysed.
const FLAGD_SPLIT: &str = "checkout-steps";
/// The longest any step may take before the test fails (an analysis result, a pause, ...).
const PATIENCE: Duration = Duration::from_secs(30);

/// The operator's admin key and the application's SDK key.
#[derive(Debug)]
struct Keys {
    admin: String,
    sdk: String,
}

/// What the application did in the checkout experiment: each unit's variant, per variant
/// (units, units that converted), and per unit its order revenue before and after its
/// exposure and its orders after it, for checking answers and results against.
#[derive(Debug)]
struct Traffic {
    assigned: Vec<String>,
    expected: BTreeMap<String, (u64, u64)>,
    orders: Vec<Orders>,
}

/// One unit's orders: revenue in the day before its exposure (CUPED's covariate), revenue and
/// number of orders after it.
#[derive(Debug, Clone, Copy, Default)]
struct Orders {
    pre_revenue: f64,
    revenue: f64,
    count: f64,
}

/// Revenue per order is higher in green by this much per order (before noise).
const GREEN_ORDER_LIFT: f64 = 4.0;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_experiment_runs_from_bootstrap_to_results_and_survives_a_config_outage() {
    the_whole_path(TestCluster::start().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_path_over_tls_with_mutual_tls_between_services() {
    let cluster = TestCluster::start_tls().await;
    assert!(cluster.config_url().starts_with("https://"), "{}", cluster.config_url());
    the_whole_path(cluster).await;
}

/// Everything logged in this process from the first call on.
fn captured_logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Arc::new(Mutex::new(Vec::new()));
        let sink = logs.clone();
        let filter = "info,cohort_config=debug,cohort_events=debug,cohort_analysis=debug,\
                      cohort_evaluation=debug,cohort_runtime=debug,cohort_sdk=debug,cohort_discovery=debug";
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_ansi(false)
            .with_writer(move || Sink(sink.clone()))
            .try_init()
            .expect("the test's log capture is the process's subscriber");
        logs
    })
    .clone()
}

struct Sink(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// No secret of `secrets` in anything logged so far.
fn assert_no_secret_logged(secrets: &[String]) {
    let logs = captured_logs();
    let text = String::from_utf8_lossy(&logs.lock().unwrap_or_else(|p| p.into_inner())).into_owned();
    assert!(text.contains("cohort_config"), "the capture saw the services' logs: {} bytes", text.len());
    for secret in secrets {
        assert!(!secret.is_empty());
        // The random part alone: no log line carries any piece of a key that would identify it.
        let random = secret.rsplit('_').next().unwrap_or(secret);
        if let Some(at) = text.find(random) {
            let line = text[..at].rsplit('\n').next().unwrap_or_default();
            panic!("a secret reached the logs ({} bytes logged), in a line starting {line:?}", text.len());
        }
    }
}

async fn the_whole_path(mut cluster: TestCluster) {
    captured_logs();
    let mut config = cluster.config().await;
    let keys = bootstrap_and_define(&mut config).await;

    let cache = tempfile::tempdir().expect("a cache directory");
    let cache_file = cache.path().join("production.json");
    let sdk = sdk(&cluster, &keys.sdk, &cache_file).await;
    the_sdk_has_the_start_within_a_second(&mut config, &keys.admin, &sdk).await;
    let traffic = units_split_by_the_weights_and_convert(&sdk).await;
    let mut evaluation = cluster.evaluation().await;
    assert_remote_agrees(&mut evaluation, &keys.sdk, &traffic, sdk.version()).await;
    let client_key =
        a_web_page_with_a_client_key_sees_the_same(&mut config, &keys.admin, &mut evaluation, &traffic).await;
    the_analysis_finds_the_planted_effect(&cluster, &keys.admin, &traffic).await;
    a_flagd_split_is_analysed_like_an_experiment(&cluster, &mut config, &keys.admin, &sdk).await;
    let rival_secrets = a_second_organization_reaches_nothing_of_the_first(
        &cluster,
        &mut config,
        &keys.admin,
        &sdk,
        &traffic,
    )
    .await;
    a_harmful_guardrail_pauses_the_second_experiment(&cluster, &mut config, &keys.admin, &sdk).await;

    let version = sdk.version();
    the_sdk_outlives_the_config_service(&mut cluster, &keys.sdk, &sdk, &traffic, &cache_file).await;
    // The evaluation service, an SDK inside, serves its last config too.
    assert_remote_agrees(&mut evaluation, &keys.sdk, &traffic, version).await;

    sdk.close().await.expect("the SDK delivers its last events and closes");
    let mut secrets = vec![keys.admin.clone(), keys.sdk.clone(), client_key];
    secrets.extend(rival_secrets);
    secrets.extend([Service::Events, Service::Analysis, Service::Evaluation].map(|s| cluster.service_key(s)));
    cluster.stop().await;
    assert_no_secret_logged(&secrets);
}

/// An operator bootstraps the first organization, makes an SDK key for the application,
/// defines the metrics and drafts the checkout experiment.
async fn bootstrap_and_define(config: &mut ConfigServiceClient<Channel>) -> Keys {
    let boot = config
        .bootstrap(cpb::BootstrapRequest {
            organization: "e2e".into(),
            environment: ENV.into(),
            token: "".into(),
        })
        .await
        .expect("bootstrap an empty installation")
        .into_inner();
    let admin = boot.admin_key.expect("bootstrap returns an admin key").secret;
    let sdk = config
        .create_api_key(authed(
            &admin,
            cpb::CreateApiKeyRequest {
                kind: cpb::KeyKind::Sdk as i32,
                name: "e2e app".into(),
                environment: ENV.into(),
                ..Default::default()
            },
        ))
        .await
        .expect("create an SDK key")
        .into_inner()
        .secret;
    let purchase = json!({"key": "purchase", "event": "purchase", "aggregation": "conversion"});
    create(config, &admin, cpb::EntityKind::Metric, purchase).await;
    let errors = json!({
        "key": "errors", "event": "error", "aggregation": "conversion", "direction": "decrease",
        "guardrail_threshold": 0.05,
    });
    create(config, &admin, cpb::EntityKind::Metric, errors).await;
    let revenue = json!({"key": "revenue", "event": "order", "aggregation": "sum",
        "cuped": {"pre_period_seconds": 86_400}});
    create(config, &admin, cpb::EntityKind::Metric, revenue).await;
    let per_order = json!({"key": "revenue_per_order", "event": "order", "aggregation": "ratio",
        "ratio": {"numerator": "sum", "denominator_event": "order", "denominator": "count"}});
    create(config, &admin, cpb::EntityKind::Metric, per_order).await;
    let checkout = json!({
        "key": CHECKOUT, "salt": "checkout-button-e2e",
        "variants": [
            {"key": "grey", "weight_bp": 4000, "control": true, "payload": {"color": "#9e9e9e"}},
            {"key": "green", "weight_bp": 6000, "payload": {"color": "#2e7d32"}},
        ],
        "primary_metrics": ["purchase", "revenue", "revenue_per_order"],
        "breakdown_attributes": ["country"],
        "planned_units_per_variant": 8000,
    });
    create(config, &admin, cpb::EntityKind::Experiment, checkout).await;
    Keys { admin, sdk }
}

/// The SDK, connected while the experiment is a draft, has it started in under a second
/// after the start call returns.
async fn the_sdk_has_the_start_within_a_second(
    config: &mut ConfigServiceClient<Channel>,
    admin: &str,
    sdk: &Client,
) {
    assert_eq!(sdk.state(), State::Ready, "{:?}", sdk.last_error());
    let draft = sdk.experiment(CHECKOUT, &checkout_context(0));
    assert!(!draft.enrolled && draft.reason == Reason::Disabled, "a draft enrolls nobody: {draft:?}");

    let mut status = sdk.subscribe();
    let started = transition(config, admin, CHECKOUT, cpb::ExperimentAction::Start, 1).await;
    let returned = Instant::now();
    tokio::time::timeout(PATIENCE, status.wait_for(|s| s.version >= started))
        .await
        .expect("the SDK receives the started experiment")
        .expect("the SDK is alive");
    let took = returned.elapsed();
    assert!(took < Duration::from_secs(1), "the SDK saw the start after {took:?}");
}

/// 20,000 units: the split follows the weights (within 3 standard deviations), each unit
/// converts with its variant's rate (seeded, so every run is the same), most ordered in the
/// hours before (a spend level carries over), all order after, and every exposure,
/// conversion and order reaches the event service.
async fn units_split_by_the_weights_and_convert(sdk: &Client) -> Traffic {
    let mut rng = ChaCha8Rng::seed_from_u64(20_000);
    let mut assigned = Vec::with_capacity(UNITS);
    let mut expected: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let mut orders = Vec::with_capacity(UNITS);
    let mut order_events = 0u64;
    let earlier = std::time::SystemTime::now() - Duration::from_secs(2 * 3600);
    for i in 0..UNITS {
        let unit = format!("user-{i}");
        let spend: f64 = rng.random_range(10.0..80.0);
        let mut o = Orders::default();
        if rng.random::<f64>() < 0.9 {
            o.pre_revenue = (spend + rng.random_range(-5.0..5.0f64)).round();
            sdk.track(MetricEvent::new(&unit, "order").with_value(o.pre_revenue).at(earlier))
                .expect("order queued");
            order_events += 1;
        }
        let a = sdk.experiment(CHECKOUT, &checkout_context(i));
        assert!(a.enrolled && a.reason == Reason::Split, "user-{i} is enrolled: {a:?}");
        let variant = a.variant.expect("an enrolled unit has a variant");
        let converted = rng.random::<f64>() < rate(&CONVERSION, &variant);
        if converted {
            let purchase = MetricEvent::new(format!("user-{i}"), "purchase").with_value(1.0);
            sdk.track(purchase).expect("purchase queued");
        }
        for _ in 0..1 + u32::from(rng.random::<f64>() < 0.3) {
            let lift = if variant == "green" { GREEN_ORDER_LIFT } else { 0.0 };
            let value = (spend + lift + rng.random_range(-10.0..10.0f64)).round();
            sdk.track(MetricEvent::new(&unit, "order").with_value(value)).expect("order queued");
            (o.revenue, o.count) = (o.revenue + value, o.count + 1.0);
            order_events += 1;
        }
        orders.push(o);
        let counts = expected.entry(variant.clone()).or_default();
        counts.0 += 1;
        counts.1 += u64::from(converted);
        assigned.push(variant);
    }
    for (variant, weight) in CHECKOUT_WEIGHTS {
        let n = expected.get(variant).map_or(0, |c| c.0) as f64;
        let (mean, sd) = (UNITS as f64 * weight, (UNITS as f64 * weight * (1.0 - weight)).sqrt());
        assert!((n - mean).abs() <= 3.0 * sd, "{variant}: {n} units, expected {mean} ± {:.0}", 3.0 * sd);
    }

    sdk.flush().await.expect("every exposure and conversion is delivered");
    let stats = sdk.stats();
    let conversions: u64 = expected.values().map(|c| c.1).sum();
    assert_eq!(stats.exposures_recorded, UNITS as u64, "{stats:?}");
    assert_eq!(stats.events_sent, UNITS as u64 + conversions + order_events, "{stats:?}");
    assert_eq!(sdk.dropped_events(), 0, "{stats:?}");
    Traffic { assigned, expected, orders }
}

/// Once every exposure, conversion and order is analyzed: the planted effect, with the right
/// sign, decided at a look, its repeated interval covering the truth and not 0, and no sample
/// ratio mismatch; the CUPED and ratio metrics as [`Independent`] computes them.
async fn the_analysis_finds_the_planted_effect(cluster: &TestCluster, admin: &str, traffic: &Traffic) {
    let mut analysis = cluster.analysis().await;
    let want = Independent::of(traffic);
    let result = wait_for_result(&mut analysis, admin, CHECKOUT, |r| {
        traffic.expected.iter().all(|(variant, &(units, converted))| {
            r.units.get(variant) == Some(&units) && conversions_of(r, "purchase", variant) == Some(converted)
        }) && want.counted_in(r)
    })
    .await;
    want.check(&result);
    assert_eq!(result.excluded_units, 0);
    assert!(!result.srm.detected, "no sample ratio mismatch: {:?}", result.srm);
    let purchase = result.metrics.iter().find(|m| m.metric == "purchase").expect("the primary metric");
    let green = purchase.comparisons.iter().find(|c| c.variant == "green").expect("green against grey");
    let truth = rate(&CONVERSION, "green") - rate(&CONVERSION, "grey");
    assert!(green.abs_diff.is_some_and(|d| d > 0.0), "green converts better: {green:?}");
    assert!(green.p_value.is_some_and(|p| p < 0.001), "{green:?}");
    let interval = green.interval.as_ref().expect("a repeated confidence interval");
    let [lo, hi] = interval.abs.expect("an interval for the difference");
    assert!(
        0.0 < lo && lo < truth && truth < hi,
        "the interval [{lo:.4}, {hi:.4}] covers the planted {truth}, not 0"
    );
    let decided = result.decided_at_look.expect("the experiment is decided at a look");
    let first_crossing =
        result.metrics.iter().flat_map(|m| &m.comparisons).filter_map(|c| c.crossed_at_look).min();
    assert_eq!(first_crossing, Some(decided), "the comparisons and the experiment agree: {result:?}");
    assert!(green.crossed_at_look.is_some(), "the planted conversion effect crossed: {green:?}");
    assert!(result.paused_by_guardrail.is_none());
    let countries: Vec<&str> = result.segments.iter().map(|s| s.value.as_str()).collect();
    assert_eq!(countries.len(), COUNTRIES.len(), "one segment per country: {countries:?}");
}

/// A flag from a flagd file (JSONLogic targeting whose `fractional` split decides), with the
/// purchase metric attached: the SDK serves it as flagd would and exposes the units the split
/// assigns (not those the `if` serves first), and the analysis service reports it under the
/// flag's key with exactly those units and conversions.
async fn a_flagd_split_is_analysed_like_an_experiment(
    cluster: &TestCluster,
    config: &mut ConfigServiceClient<Channel>,
    admin: &str,
    sdk: &Client,
) {
    const UNITS: usize = 1_000;
    let file = json!({"flags": {FLAGD_SPLIT: {
        "state": "ENABLED",
        "variants": {"classic": "one page", "steps": "three steps"},
        "defaultVariant": "classic",
        "targeting": {"if": [
            {"ends_with": [{"var": "email"}, "@staff.example"]}, "classic",
            {"fractional": [["classic", 1], ["steps", 1]]}
        ]}
    }}});
    let mut flag = cohort_core::flagd::import(&file).expect("the file imports").remove(0);
    let experiment = json!({"id": "0191e3a4-0000-7000-8000-00000000e2e5", "metrics": ["purchase"]});
    flag.experiment = Some(serde_json::from_value(experiment).expect("an experiment"));
    create(config, admin, cpb::EntityKind::Flag, serde_json::to_value(&flag).unwrap()).await;
    // Asked without a targeting key: the split cannot assign, so nobody is exposed.
    let anonymous = Context::default();
    wait_until("the SDK has the flag", || async { sdk.evaluate(FLAGD_SPLIT, &anonymous).variant.is_some() })
        .await;

    let mut rng = ChaCha8Rng::seed_from_u64(1_000);
    let mut expected: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for i in 0..UNITS {
        let unit = format!("flagd-{i}");
        let staff = i % 10 == 0;
        let email = if staff { format!("{unit}@staff.example") } else { format!("{unit}@mail.example") };
        let e = sdk.evaluate(FLAGD_SPLIT, &Context::new(unit.as_str()).with("email", email));
        assert_eq!(e.enrolled, !staff, "{unit}: only units the split assigns are exposed: {e:?}");
        let variant = e.variant.expect("every unit gets a variant");
        if staff {
            continue;
        }
        let converted = rng.random::<f64>() < 0.2;
        if converted {
            sdk.track(MetricEvent::new(&unit, "purchase").with_value(1.0)).expect("purchase queued");
        }
        let counts = expected.entry(variant).or_default();
        counts.0 += 1;
        counts.1 += u64::from(converted);
    }
    sdk.flush().await.expect("the flag's exposures are delivered");
    let mut analysis = cluster.analysis().await;
    let result = wait_for_result(&mut analysis, admin, FLAGD_SPLIT, |r| {
        expected.iter().all(|(variant, &(units, converted))| {
            r.units.get(variant) == Some(&units) && conversions_of(r, "purchase", variant) == Some(converted)
        })
    })
    .await;
    assert_eq!(result.units.len(), 2, "{result:?}");
    assert!(!result.srm.detected, "the split is 1:1 as written: {:?}", result.srm);
}

/// A second organization on the same installation tries what an outside test once got
/// through. It names the first organization's experiment id (every decision shows it) for an
/// experiment of its own and sends exposures and conversions for it, with the same unit ids:
/// the first organization's results do not move, and the rival's results, asked for by that
/// id, are its own. Then its SDK key is revoked: the evaluation service refuses it, and its
/// SDK's config stream is ended, within seconds.
async fn a_second_organization_reaches_nothing_of_the_first(
    cluster: &TestCluster,
    config: &mut ConfigServiceClient<Channel>,
    admin: &str,
    sdk: &Client,
    traffic: &Traffic,
) -> Vec<String> {
    const RIVAL_UNITS: usize = 500;
    let checkout_id = sdk.experiment(CHECKOUT, &checkout_context(0)).experiment_id.expect("an experiment id");
    let rival = cluster.seed_organization("rival").await;
    let purchase = json!({"key": "purchase", "event": "purchase", "aggregation": "conversion"});
    create(config, &rival.admin_key, cpb::EntityKind::Metric, purchase).await;
    let copycat = json!({
        "id": checkout_id, "key": "copycat",
        "variants": [{"key": "grey", "weight_bp": 5000, "control": true}, {"key": "green", "weight_bp": 5000}],
        "primary_metrics": ["purchase"], "planned_units_per_variant": 8000,
    });
    create(config, &rival.admin_key, cpb::EntityKind::Experiment, copycat).await;
    let started = transition(config, &rival.admin_key, "copycat", cpb::ExperimentAction::Start, 1).await;
    let cache = tempfile::tempdir().expect("a cache directory");
    let rival_sdk = self::sdk(cluster, &rival.sdk_key, &cache.path().join("rival.json")).await;
    tokio::time::timeout(PATIENCE, rival_sdk.subscribe().wait_for(|s| s.version >= started))
        .await
        .expect("the rival's SDK receives its experiment")
        .expect("the SDK is alive");
    for i in 0..RIVAL_UNITS {
        let unit = format!("user-{i}");
        let a = rival_sdk.experiment("copycat", &Context::new(unit.as_str()));
        assert_eq!((a.enrolled, a.experiment_id), (true, Some(checkout_id)), "{unit}: {a:?}");
        rival_sdk.track(MetricEvent::new(unit.as_str(), "purchase")).expect("purchase queued");
    }
    rival_sdk.flush().await.expect("the rival's events are delivered");

    let mut analysis = cluster.analysis().await;
    let theirs = wait_for_result(&mut analysis, &rival.admin_key, &checkout_id.to_string(), |r| {
        r.units.values().sum::<u64>() == RIVAL_UNITS as u64
    })
    .await;
    assert_eq!(theirs.experiment_key, "copycat", "the rival's id names the rival's experiment");
    assert_eq!(get_result(&mut analysis, &rival.admin_key, CHECKOUT).await.map(|r| r.experiment_key), None);
    // The cycles that analyzed the rival's data left the first organization's results as
    // they were: the same units and conversions per variant.
    let ours = get_result(&mut analysis, admin, CHECKOUT).await.expect("the first organization's result");
    for (variant, &(units, converted)) in &traffic.expected {
        assert_eq!(ours.units.get(variant), Some(&units), "{variant}");
        assert_eq!(conversions_of(&ours, "purchase", variant), Some(converted), "{variant}");
    }
    assert_eq!(ours.experiment_key, CHECKOUT);

    // The rival's SDK key is revoked while both its SDK and the evaluation service use it.
    let mut evaluation = cluster.evaluation().await;
    let evaluate = |evaluation: &mut EvaluationServiceClient<Channel>| {
        let request = epb::EvaluateRequest {
            context: Some(common::EvaluationContext { targeting_key: "user-1".into(), ..Default::default() }),
            keys: vec!["copycat".into()],
        };
        let mut evaluation = evaluation.clone();
        let key = rival.sdk_key.clone();
        async move { evaluation.evaluate(authed(&key, request)).await.map(|_| ()).map_err(|s| s.code()) }
    };
    assert_eq!(evaluate(&mut evaluation).await, Ok(()), "the key works before it is revoked");
    let keys = config
        .list_api_keys(authed(&rival.admin_key, cpb::ListApiKeysRequest { include_revoked: false }))
        .await
        .expect("list the rival's keys")
        .into_inner()
        .keys;
    let sdk_key = keys.iter().find(|k| k.kind == cpb::KeyKind::Sdk as i32).expect("the rival's SDK key");
    config
        .revoke_api_key(authed(&rival.admin_key, cpb::RevokeApiKeyRequest { id: sdk_key.id.clone() }))
        .await
        .expect("revoke the rival's SDK key");
    let revoked = Instant::now();
    wait_until("the evaluation service refuses the revoked key", || {
        let mut evaluation = evaluation.clone();
        let evaluate = &evaluate;
        async move { evaluate(&mut evaluation).await == Err(tonic::Code::Unauthenticated) }
    })
    .await;
    tokio::time::timeout(PATIENCE, rival_sdk.subscribe().wait_for(|s| s.key_rejected))
        .await
        .expect("the revoked key's config stream is ended")
        .expect("the SDK is alive");
    let took = revoked.elapsed();
    assert!(took < Duration::from_secs(10), "revocation took {took:?} to reach every service");
    rival_sdk.close().await.expect("the rival's SDK closes");
    vec![rival.admin_key.clone(), rival.sdk_key.clone()]
}

/// A second experiment makes things worse: the analysis service pauses it on its guardrail,
/// with the reason in the audit log, and the SDK stops enrolling units in it.
async fn a_harmful_guardrail_pauses_the_second_experiment(
    cluster: &TestCluster,
    config: &mut ConfigServiceClient<Channel>,
    admin: &str,
    sdk: &Client,
) {
    let risky = json!({
        "key": RISKY, "salt": "new-search-e2e",
        "variants": [{"key": "old", "weight_bp": 5000, "control": true}, {"key": "new", "weight_bp": 5000}],
        "primary_metrics": ["purchase"], "guardrail_metrics": ["errors"],
        "planned_units_per_variant": RISKY_UNITS / 2,
    });
    create(config, admin, cpb::EntityKind::Experiment, risky).await;
    let started = transition(config, admin, RISKY, cpb::ExperimentAction::Start, 1).await;
    tokio::time::timeout(PATIENCE, sdk.subscribe().wait_for(|s| s.version >= started))
        .await
        .expect("the SDK receives the second experiment")
        .expect("the SDK is alive");
    let mut rng = ChaCha8Rng::seed_from_u64(6_000);
    for i in 0..RISKY_UNITS {
        let unit = format!("visitor-{i}");
        let a = sdk.experiment(RISKY, &Context::new(unit.as_str()));
        assert!(a.enrolled, "{unit} is enrolled: {a:?}");
        if rng.random::<f64>() < rate(&ERROR_RATE, a.variant_or("old")) {
            sdk.track(MetricEvent::new(unit.as_str(), "error")).expect("error queued");
        }
    }
    sdk.flush().await.expect("the second experiment's events are delivered");

    wait_until("the guardrail pauses the experiment", || {
        let (mut config, admin) = (config.clone(), admin.to_owned());
        async move { entity_status(&mut config, &admin, RISKY).await == "paused" }
    })
    .await;
    let audit = config
        .list_audit(authed(
            admin,
            cpb::ListAuditRequest {
                environment: ENV.into(),
                kind: cpb::EntityKind::Experiment as i32,
                key: RISKY.into(),
                page_size: 50,
                page_token: String::new(),
            },
        ))
        .await
        .expect("list the audit log")
        .into_inner();
    let pause = audit.entries.iter().find(|e| e.action == "pause").expect("the pause is in the audit log");
    assert_eq!(pause.actor_name, "cohort-analysis");
    assert!(pause.reason.starts_with("guardrail errors is worse than its threshold"), "{}", pause.reason);
    let result = get_result(&mut cluster.analysis().await, admin, RISKY).await.expect("a result");
    assert!(result.paused_by_guardrail.is_some(), "{result:?}");

    wait_until("the SDK sees the pause", || {
        let status = sdk.with_config(|c| c.compiled().experiment(RISKY).map(|e| e.status()));
        async move { status == Some(ExperimentStatus::Paused) }
    })
    .await;
    let after = sdk.experiment(RISKY, &Context::new("visitor-0"));
    assert!(!after.enrolled && after.reason == Reason::Disabled, "paused enrolls nobody: {after:?}");
    assert!(sdk.experiment(CHECKOUT, &checkout_context(0)).enrolled, "the other experiment runs on");
}

/// The config service dies like a crashed process. The SDK notices (STALE) and keeps serving
/// what it had: the same assignments, the pause included. So does a new SDK that starts from
/// the cache file while the config service is down.
async fn the_sdk_outlives_the_config_service(
    cluster: &mut TestCluster,
    sdk_key: &str,
    sdk: &Client,
    traffic: &Traffic,
    cache_file: &Path,
) {
    let version = sdk.version();
    let mut status = sdk.subscribe();
    cluster.kill(Service::Config).await;
    assert!(
        ConfigServiceClient::connect(cluster.config_url()).await.is_err(),
        "a killed config service accepts no connections"
    );
    tokio::time::timeout(PATIENCE, status.wait_for(|s| s.state == State::Stale))
        .await
        .expect("the SDK notices the config service is gone")
        .expect("the SDK is alive");
    assert_eq!(sdk.version(), version);
    for (i, variant) in traffic.assigned.iter().enumerate() {
        let a = sdk.experiment(CHECKOUT, &checkout_context(i));
        assert_eq!(a.variant.as_ref(), Some(variant), "user-{i} keeps its variant: {a:?}");
    }
    assert!(!sdk.experiment(RISKY, &Context::new("visitor-0")).enrolled, "still paused");

    let restarted = Client::builder(sdk_key)
        .config_endpoint(cluster.config_url())
        .tls(cluster.client_tls())
        .cache_file(cache_file)
        .init_timeout(Duration::from_millis(500))
        .build()
        .await
        .expect("an SDK starts without the config service");
    let (state, served) = (restarted.state(), restarted.version());
    assert_eq!((state, served), (State::Stale, version), "{:?}", restarted.last_error());
    for i in sample() {
        let a = restarted.experiment(CHECKOUT, &checkout_context(i));
        assert_eq!(a.variant.as_ref(), Some(&traffic.assigned[i]), "user-{i} from the cache file: {a:?}");
    }
    restarted.close().await.expect("the cache-started SDK closes");
}

/// An SDK for the application, with quick retries so the test does not wait on backoff.
async fn sdk(cluster: &TestCluster, sdk_key: &str, cache_file: &Path) -> Client {
    Client::builder(sdk_key)
        .config_endpoint(cluster.config_url())
        .event_endpoint(cluster.events_url())
        .tls(cluster.client_tls())
        .cache_file(cache_file)
        .init_timeout(Duration::from_secs(10))
        .reconnect_backoff(Duration::from_millis(50), Duration::from_millis(500))
        .event_retry_backoff(Duration::from_millis(50), Duration::from_millis(500))
        .flush_timeout(PATIENCE)
        .build()
        .await
        .expect("the SDK starts")
}

fn checkout_context(i: usize) -> Context {
    Context::new(format!("user-{i}")).with("country", COUNTRIES[i % COUNTRIES.len()])
}

fn rate(rates: &[(&str, f64)], variant: &str) -> f64 {
    rates.iter().find(|(v, _)| *v == variant).map_or_else(|| panic!("no rate for {variant}"), |r| r.1)
}

/// `cohortctl apply` of one definition; panics with the server's answer when refused.
async fn create(
    config: &mut ConfigServiceClient<Channel>,
    admin: &str,
    kind: cpb::EntityKind,
    definition: Value,
) {
    config
        .create_entity(authed(
            admin,
            cpb::CreateEntityRequest {
                environment: ENV.into(),
                kind: kind as i32,
                definition: cohort_proto::convert::structured::json_struct(&definition),
                reason: String::new(),
            },
        ))
        .await
        .unwrap_or_else(|e| panic!("create {definition}: {e:?}"));
}

/// Moves an experiment along its lifecycle; returns the environment version of the change.
async fn transition(
    config: &mut ConfigServiceClient<Channel>,
    admin: &str,
    key: &str,
    action: cpb::ExperimentAction,
    revision: i64,
) -> u64 {
    config
        .transition_experiment(authed(
            admin,
            cpb::TransitionExperimentRequest {
                environment: ENV.into(),
                key: key.into(),
                action: action as i32,
                expected_revision: revision,
                reason: "end-to-end test".into(),
            },
        ))
        .await
        .unwrap_or_else(|e| panic!("{action:?} {key}: {e:?}"))
        .into_inner()
        .version
}

async fn entity_status(config: &mut ConfigServiceClient<Channel>, admin: &str, key: &str) -> String {
    let entity = config
        .get_entity(authed(
            admin,
            cpb::GetEntityRequest {
                environment: ENV.into(),
                kind: cpb::EntityKind::Experiment as i32,
                key: key.into(),
            },
        ))
        .await
        .unwrap_or_else(|e| panic!("get {key}: {e:?}"))
        .into_inner()
        .entity
        .expect("an entity");
    let definition: Value =
        cohort_proto::convert::structured::to_json(entity.definition.as_ref()).expect("definitions are JSON");
    definition["status"].as_str().unwrap_or_default().to_owned()
}

/// The latest analysis result, or None before the first cycle that saw the experiment.
async fn get_result(
    analysis: &mut AnalysisServiceClient<Channel>,
    admin: &str,
    key: &str,
) -> Option<ExperimentResult> {
    let request = apb::GetResultsRequest { environment: ENV.into(), experiment: key.into() };
    match analysis.get_results(authed(admin, request)).await {
        Ok(r) => Some(
            serde_json::from_value(
                cohort_proto::convert::structured::to_json(
                    r.into_inner().result.and_then(|r| r.result).as_ref(),
                )
                .expect("a result is JSON"),
            )
            .expect("a result"),
        ),
        Err(status) if status.code() == tonic::Code::NotFound => None,
        Err(status) => panic!("results of {key}: {status:?}"),
    }
}

/// Polls the analysis service until a result of `key` satisfies `done` (every event drained
/// and analyzed), or fails after [`PATIENCE`] showing the last result.
async fn wait_for_result(
    analysis: &mut AnalysisServiceClient<Channel>,
    admin: &str,
    key: &str,
    done: impl Fn(&ExperimentResult) -> bool,
) -> ExperimentResult {
    let deadline = Instant::now() + PATIENCE;
    let mut last = None;
    while Instant::now() < deadline {
        if let Some(r) = get_result(analysis, admin, key).await {
            if done(&r) {
                return r;
            }
            last = Some(r);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("no complete result for {key} within {PATIENCE:?}; the last was {last:#?}");
}

/// The CUPED-adjusted revenue and the revenue per order of green against grey, computed from
/// each unit's numbers with textbook two-pass formulas (no running sums, nothing shared with
/// the analysis): θ as the pooled least-squares slope of revenue on pre-period revenue, each
/// arm's variance of y − θx; the ratio's variance from the linearized per-unit values
/// (y − R·k)/k̄ (Deng, Knoblich & Lu 2018).
#[derive(Debug)]
struct Independent {
    theta: f64,
    cuped_diff: f64,
    cuped_se: f64,
    unadjusted_se: f64,
    grey_revenue: f64,
    ratio: [f64; 2],
    ratio_diff: f64,
    ratio_se: f64,
}

impl Independent {
    fn of(traffic: &Traffic) -> Independent {
        let arm = |v: &str| -> Vec<Orders> {
            traffic.assigned.iter().zip(&traffic.orders).filter(|(a, _)| *a == v).map(|(_, o)| *o).collect()
        };
        let (grey, green) = (arm("grey"), arm("green"));
        let mean = |xs: &[f64]| xs.iter().sum::<f64>() / xs.len() as f64;
        let var = |xs: &[f64]| {
            let m = mean(xs);
            xs.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (xs.len() - 1) as f64
        };
        let pick = |os: &[Orders], f: fn(&Orders) -> f64| os.iter().map(f).collect::<Vec<f64>>();
        let all: Vec<Orders> = grey.iter().chain(&green).copied().collect();
        let (x, y) = (pick(&all, |o| o.pre_revenue), pick(&all, |o| o.revenue));
        let (mx, my) = (mean(&x), mean(&y));
        let sxy: f64 = x.iter().zip(&y).map(|(a, b)| (a - mx) * (b - my)).sum();
        let sxx: f64 = x.iter().map(|a| (a - mx) * (a - mx)).sum();
        let theta = sxy / sxx;
        let adjusted = |os: &[Orders]| {
            let z: Vec<f64> = os.iter().map(|o| o.revenue - theta * o.pre_revenue).collect();
            let mean_y = mean(&pick(os, |o| o.revenue));
            let mean_x = mean(&pick(os, |o| o.pre_revenue));
            (
                mean_y - theta * (mean_x - mx),
                var(&z) / os.len() as f64,
                var(&pick(os, |o| o.revenue)) / os.len() as f64,
            )
        };
        let ((ac, vc, uc), (at, vt, ut)) = (adjusted(&grey), adjusted(&green));
        let ratio = |os: &[Orders]| {
            let (revenue, count) = (pick(os, |o| o.revenue), pick(os, |o| o.count));
            let r = revenue.iter().sum::<f64>() / count.iter().sum::<f64>();
            let k = mean(&count);
            let linear: Vec<f64> = revenue.iter().zip(&count).map(|(y, c)| (y - r * c) / k).collect();
            (r, var(&linear) / os.len() as f64)
        };
        let ((rc, rvc), (rt, rvt)) = (ratio(&grey), ratio(&green));
        Independent {
            theta,
            cuped_diff: at - ac,
            cuped_se: (vc + vt).sqrt(),
            unadjusted_se: (uc + ut).sqrt(),
            grey_revenue: mean(&pick(&grey, |o| o.revenue)),
            ratio: [rc, rt],
            ratio_diff: rt - rc,
            ratio_se: (rvc + rvt).sqrt(),
        }
    }

    fn metric<'r>(r: &'r ExperimentResult, key: &str) -> Option<&'r cohort_analysis::analyze::MetricResult> {
        r.metrics.iter().find(|m| m.metric == key)
    }

    /// Whether every order is counted: both arms' revenue per order, grey's revenue and θ
    /// (which needs the pre-period orders) are as computed here.
    fn counted_in(&self, r: &ExperimentResult) -> bool {
        let close = |a: Option<f64>, b: f64| a.is_some_and(|a| (a - b).abs() <= 1e-9 * b.abs().max(1.0));
        let ratio = Self::metric(r, "revenue_per_order");
        let revenue = Self::metric(r, "revenue");
        let theta =
            revenue.and_then(|m| m.comparisons.first()).and_then(|c| c.cuped.as_ref()).map(|c| c.theta);
        ratio.is_some_and(|m| {
            close(m.variants[0].mean, self.ratio[0]) && close(m.variants[1].mean, self.ratio[1])
        }) && revenue.is_some_and(|m| close(m.variants[0].mean, self.grey_revenue))
            && close(theta, self.theta)
    }

    fn check(&self, r: &ExperimentResult) {
        let close = |what: &str, got: Option<f64>, want: f64| {
            let got = got.unwrap_or_else(|| panic!("{what}: none; {r:?}"));
            assert!((got - want).abs() <= 1e-9 * want.abs().max(1e-12), "{what}: {got} against {want}");
        };
        let revenue = Self::metric(r, "revenue").expect("the CUPED metric");
        let green = &revenue.comparisons[0];
        let cuped = green.cuped.as_ref().expect("a CUPED report");
        close("θ", Some(cuped.theta), self.theta);
        close("adjusted difference", green.abs_diff, self.cuped_diff);
        close("adjusted standard error", green.abs_std_error, self.cuped_se);
        close("unadjusted standard error", cuped.unadjusted_abs_std_error, self.unadjusted_se);
        let reduction = 1.0 - (self.cuped_se / self.unadjusted_se).powi(2);
        close("variance reduction", cuped.variance_reduction, reduction);
        assert!(reduction > 0.2, "the pre-period explains much of the revenue: {reduction}");

        let per_order = Self::metric(r, "revenue_per_order").expect("the ratio metric");
        let green = &per_order.comparisons[0];
        close("ratio difference", green.abs_diff, self.ratio_diff);
        close("ratio standard error", green.abs_std_error, self.ratio_se);
        assert!(green.abs_diff.is_some_and(|d| d > 0.0), "green's orders are larger: {green:?}");
    }
}

/// Units of `variant` with at least one event of `metric`, from a conversion metric's rate.
fn conversions_of(r: &ExperimentResult, metric: &str, variant: &str) -> Option<u64> {
    let m = r.metrics.iter().find(|m| m.metric == metric)?;
    let v = m.variants.iter().find(|v| v.variant == variant)?;
    Some((v.mean? * v.n as f64).round() as u64)
}

/// Polls `check` every 50 ms until it holds; fails after [`PATIENCE`] naming `what`.
async fn wait_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + PATIENCE;
    while Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what}: not within {PATIENCE:?}");
}

/// The units checked through the evaluation service: 50 spread over all of them.
fn sample() -> Vec<usize> {
    (0..UNITS).step_by(UNITS / 50).collect()
}

/// The operator makes a client key for the web shop; the page, evaluating through the
/// evaluation service (which streams the environment under its own key), sees the SDK's
/// assignments and nothing of how they are made. Returns the key's secret.
async fn a_web_page_with_a_client_key_sees_the_same(
    config: &mut ConfigServiceClient<Channel>,
    admin: &str,
    evaluation: &mut EvaluationServiceClient<Channel>,
    traffic: &Traffic,
) -> String {
    let web = config
        .create_api_key(authed(
            admin,
            cpb::CreateApiKeyRequest {
                kind: cpb::KeyKind::Client as i32,
                name: "web shop".into(),
                environment: ENV.into(),
                ..Default::default()
            },
        ))
        .await
        .expect("create a client key")
        .into_inner()
        .secret;
    let status = config
        .get_snapshot(authed(&web, cpb::GetSnapshotRequest { environment: ENV.into() }))
        .await
        .expect_err("a client key reads no config");
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
    for &i in &sample() {
        let request = epb::EvaluateRequest {
            context: Some(common::EvaluationContext {
                targeting_key: format!("user-{i}"),
                attributes: [].into(),
            }),
            keys: vec![CHECKOUT.into()],
        };
        let r = evaluation.evaluate(authed(&web, request)).await.expect("the page is answered").into_inner();
        let d = &r.decisions[0];
        assert_eq!(d.variant, traffic.assigned[i], "user-{i}: the page agrees with the SDK");
        assert!(d.experiment_id.is_empty() && d.rule_id.is_empty(), "user-{i}: {d:?}");
    }
    web
}

/// Evaluates the [`sample`] through the evaluation service (one batch) and checks each
/// decision against the SDK's assignment and config version.
async fn assert_remote_agrees(
    evaluation: &mut EvaluationServiceClient<Channel>,
    sdk_key: &str,
    traffic: &Traffic,
    version: u64,
) {
    let sample = sample();
    let contexts = sample
        .iter()
        .map(|&i| common::EvaluationContext {
            targeting_key: format!("user-{i}"),
            attributes: [(
                "country".to_owned(),
                common::AttributeValue {
                    kind: Some(common::attribute_value::Kind::StringValue(
                        COUNTRIES[i % COUNTRIES.len()].into(),
                    )),
                },
            )]
            .into(),
        })
        .collect();
    let batch = evaluation
        .evaluate_batch(authed(sdk_key, epb::EvaluateBatchRequest { contexts, keys: vec![CHECKOUT.into()] }))
        .await
        .expect("the evaluation service answers")
        .into_inner();
    assert_eq!(batch.results.len(), sample.len());
    for (&i, result) in sample.iter().zip(&batch.results) {
        assert_eq!(result.config_version, version, "user-{i}");
        let d = &result.decisions[0];
        assert!(d.enrolled && d.reason == common::Reason::Split as i32, "user-{i}: {d:?}");
        assert_eq!(d.variant, traffic.assigned[i], "user-{i}: the evaluation service agrees with the SDK");
    }
}
