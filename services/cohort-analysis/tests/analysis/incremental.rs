//! The incremental aggregation equals a from-scratch one: over rounds of random traffic with
//! late exposures and events, repeated and two-variant exposures, events before exposure, a
//! windowed stream (a conversion within hours of the first exposure), a pre-period stream
//! (CUPED's covariate) and the cross products of ratio and CUPED metrics; after
//! a pause and resume, and a change of breakdowns; and when two advances race.

use std::time::{Duration, SystemTime};

use cohort_analysis::analyze::{Aggregates, EventSums, PairSums};
use cohort_analysis::store::{Basis, ExperimentSums, RebuildLimits, Store};
use cohort_core::model::MetricDef;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::json;
use uuid::Uuid;

use crate::{Action, World, transition};

/// Rebuild whatever needs it, however long it takes.
const ALL: RebuildLimits = RebuildLimits { experiments: usize::MAX, time: Duration::MAX };

/// Relative agreement of two sums computed in different orders.
fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

fn same_sums(a: &EventSums, b: &EventSums) -> bool {
    a.units_with_events == b.units_with_events
        && a.mean_units == b.mean_units
        && close(a.count_sum, b.count_sum)
        && close(a.count_sum_sq, b.count_sum_sq)
        && close(a.value_sum, b.value_sum)
        && close(a.value_sum_sq, b.value_sum_sq)
        && close(a.mean_sum, b.mean_sum)
        && close(a.mean_sum_sq, b.mean_sum_sq)
}

fn same_pairs(a: &PairSums, b: &PairSums) -> bool {
    a.units == b.units
        && close(a.count_count, b.count_count)
        && close(a.count_value, b.count_value)
        && close(a.value_count, b.value_count)
        && close(a.value_value, b.value_value)
}

fn same_aggregates(a: &Aggregates, b: &Aggregates) -> bool {
    // Pairs the incremental state emptied again are kept as zeros; scratch has no row.
    let pairs = |x: &Aggregates, y: &Aggregates| {
        x.pairs.iter().all(|(k, s)| same_pairs(s, &y.pairs.get(k).copied().unwrap_or_default()))
    };
    a.units == b.units
        && a.events.len() == b.events.len()
        && a.events.iter().all(|(k, s)| b.events.get(k).is_some_and(|t| same_sums(s, t)))
        && pairs(a, b)
        && pairs(b, a)
}

/// The from-scratch aggregation of every stored row, in the incremental one's shape.
async fn from_scratch(store: &Store, basis: &Basis) -> ExperimentSums {
    let until = SystemTime::now() + Duration::from_secs(86_400);
    let (overall, excluded, segments) = store.aggregate(basis, until).await.unwrap();
    let segments = segments
        .into_iter()
        .map(|(attribute, mut values)| {
            values.sort_by(|a, b| a.0.cmp(&b.0));
            (attribute, values)
        })
        .collect();
    ExperimentSums { overall, excluded, segments }
}

async fn assert_matches_scratch(store: &Store, bases: &[Basis], round: &str) {
    let sums = store.sums(bases).await.unwrap();
    for b in bases {
        let got = &sums[&b.id()];
        let want = from_scratch(store, b).await;
        assert_eq!(got.excluded, want.excluded, "{round}: excluded units");
        assert!(
            same_aggregates(&got.overall, &want.overall),
            "{round}: overall\n{:?}\n{:?}",
            got.overall,
            want.overall
        );
        assert_eq!(got.segments.len(), want.segments.len(), "{round}");
        for ((a, values), (b_attr, want_values)) in got.segments.iter().zip(&want.segments) {
            assert_eq!(a, b_attr, "{round}");
            let got_keys: Vec<&String> = values.iter().map(|(v, _)| v).collect();
            let want_keys: Vec<&String> = want_values.iter().map(|(v, _)| v).collect();
            assert_eq!(got_keys, want_keys, "{round}: values of {a}");
            for ((v, g), (_, w)) in values.iter().zip(want_values) {
                assert!(same_aggregates(g, w), "{round}: {a}={v}\n{g:?}\n{w:?}");
            }
        }
    }
}

/// Random rows for `experiments`: exposures of units from a small pool (so units repeat,
/// sometimes with the other variant, sometimes earlier than their first exposure so far) and
/// metric events of those units and others, at times spread over the last day.
async fn random_round(w: &World, experiments: &[Uuid], rng: &mut ChaCha8Rng, n: usize) {
    let now = SystemTime::now();
    let at = |rng: &mut ChaCha8Rng| now - Duration::from_secs(rng.random_range(0..86_400));
    let (mut exps, mut units, mut variants, mut attrs, mut ts) = (vec![], vec![], vec![], vec![], vec![]);
    for _ in 0..n {
        let unit = format!("u{}", rng.random_range(0..300));
        let experiment = experiments[rng.random_range(0..experiments.len())];
        // Mostly the unit's own variant; now and then the other one.
        let own = if unit.len() % 2 == 0 { "control" } else { "treatment" };
        let variant = if rng.random::<f64>() < 0.03 { "control" } else { own };
        exps.push(experiment);
        let country = ["NZ", "AU", "US", "FR"][rng.random_range(0..4)];
        attrs.push(json!({ "country": country }));
        units.push(unit);
        variants.push(variant.to_owned());
        ts.push(at(rng));
    }
    let (mut munits, mut events, mut values, mut mts) = (vec![], vec![], vec![], vec![]);
    for _ in 0..2 * n {
        munits.push(format!("u{}", rng.random_range(0..350)));
        let (event, value) = match rng.random_range(0..4) {
            0 => ("purchase", None),
            1 => ("order", Some(rng.random_range(1.0..100.0f64))),
            2 => ("load", Some(rng.random_range(100.0..900.0f64))),
            // Valued and unvalued events of one name: the mean counts only the valued ones.
            _ => ("load", None),
        };
        events.push(event.to_owned());
        values.push(value);
        mts.push(at(rng));
    }
    let c = w.db().pool.get().await.unwrap();
    c.execute(
        "INSERT INTO exposures (environment_id, event_id, experiment_id, unit, variant, config_version, attributes, ts, received_at)
         SELECT $1, gen_random_uuid(), x, u, v, 1, a, t, now()
         FROM unnest($2::uuid[], $3::text[], $4::text[], $5::jsonb[], $6::timestamptz[]) AS r(x, u, v, a, t)",
        &[&w.tenant.environment_id, &exps, &units, &variants, &attrs, &ts],
    )
    .await
    .unwrap();
    c.execute(
        "INSERT INTO metric_events (environment_id, event_id, unit, event, value, properties, ts, received_at)
         SELECT $1, gen_random_uuid(), u, e, v, '{}', t, now()
         FROM unnest($2::text[], $3::text[], $4::float8[], $5::timestamptz[]) AS r(u, e, v, t)",
        &[&w.tenant.environment_id, &munits, &events, &values, &mts],
    )
    .await
    .unwrap();
}

/// The metrics of [`world_with_metrics`], as analysis reads them.
fn metrics() -> Vec<MetricDef> {
    [
        json!({"key": "purchase", "event": "purchase", "aggregation": "conversion"}),
        json!({"key": "revenue", "event": "order", "aggregation": "sum"}),
        json!({"key": "load_time", "event": "load", "aggregation": "mean", "direction": "decrease"}),
        // The same events as `purchase`, windowed.
        json!({"key": "purchase_6h", "event": "purchase", "aggregation": "conversion",
               "window_seconds": 6 * 3600}),
        // Revenue per order: one stream paired with itself.
        json!({"key": "revenue_per_order", "event": "order", "aggregation": "ratio",
               "ratio": {"denominator_event": "order"}}),
        // Purchases per page load: two streams.
        json!({"key": "purchases_per_load", "event": "purchase", "aggregation": "ratio",
               "ratio": {"numerator": "count", "denominator_event": "load"}}),
        // Revenue adjusted by the 12 hours before exposure.
        json!({"key": "revenue_cuped", "event": "order", "aggregation": "sum",
               "cuped": {"pre_period_seconds": 12 * 3600}}),
    ]
    .into_iter()
    .map(|m| serde_json::from_value(m).unwrap())
    .collect()
}

fn basis(w: &World, id: Uuid, breakdowns: &[&str]) -> Basis {
    let metrics = metrics();
    Basis {
        experiment_id: id,
        environment_id: w.tenant.environment_id,
        events: metrics.iter().flat_map(MetricDef::streams).collect(),
        pairs: metrics.iter().flat_map(MetricDef::stream_pairs).collect(),
        breakdowns: breakdowns.iter().map(|s| (*s).to_owned()).collect(),
    }
}

async fn world_with_metrics() -> World {
    let w = World::new().await;
    for m in metrics() {
        w.write(crate::create(crate::Kind::Metric, serde_json::to_value(m).unwrap())).await;
    }
    w
}

fn experiment(key: &str) -> serde_json::Value {
    json!({
        "key": key,
        "variants": [{"key": "control", "weight_bp": 5000, "control": true}, {"key": "treatment", "weight_bp": 5000}],
        "primary_metrics": ["purchase", "revenue", "purchase_6h", "revenue_per_order", "purchases_per_load",
                            "revenue_cuped"],
        "guardrail_metrics": ["load_time"],
        "breakdown_attributes": ["country"],
    })
}

#[tokio::test]
async fn incremental_state_equals_a_from_scratch_aggregation_round_after_round() {
    let w = world_with_metrics().await;
    let a = w.running_experiment(experiment("a")).await;
    let b = w.running_experiment(experiment("b")).await;
    let store = Store::new(w.db().pool.clone());
    let bases = [basis(&w, a, &["country"]), basis(&w, b, &["country"])];
    let mut rng = ChaCha8Rng::seed_from_u64(11);

    // Nothing stored yet, then a first round built from scratch, then rounds on top.
    let first = store.advance(&bases, ALL, true).await.unwrap();
    assert_eq!(first.rebuilt, 2);
    assert_matches_scratch(&store, &bases, "empty").await;
    for round in 0..6 {
        random_round(&w, &[a, b], &mut rng, 150).await;
        let advanced = store.advance(&bases, ALL, true).await.unwrap();
        assert_eq!(advanced.rebuilt, 0, "round {round} is incremental");
        assert!(advanced.touched_units > 0);
        assert!(advanced.folded > 0, "round {round}: the new rows are the backlog it took in");
        assert_matches_scratch(&store, &bases, &format!("round {round}")).await;
    }
    // A cycle with nothing new changes nothing.
    let idle = store.advance(&bases, ALL, true).await.unwrap();
    assert_eq!((idle.touched_units, idle.folded), (0, 0));
    assert_matches_scratch(&store, &bases, "idle").await;

    // The comparisons above were of something: pre-period values and every pair's products.
    let sums = &store.sums(&bases).await.unwrap()[&w.exp(a)];
    let metrics = metrics();
    let cuped = metrics.iter().find(|m| m.key == "revenue_cuped").unwrap();
    let pre = cuped.pre_period_stream().unwrap();
    assert!(sums.overall.events.iter().any(|((_, s), e)| *s == pre && e.value_sum > 0.0));
    for (x, y) in metrics.iter().flat_map(MetricDef::stream_pairs) {
        let key = cohort_analysis::analyze::pair_key(&x, &y);
        assert!(sums.overall.pairs.iter().any(|((_, k), p)| *k == key && p.units > 0), "{key:?}");
    }
}

#[tokio::test]
async fn a_late_earlier_exposure_moves_the_first_exposure_and_its_events() {
    let w = world_with_metrics().await;
    let id = w.running_experiment(experiment("late")).await;
    let store = Store::new(w.db().pool.clone());
    let bases = [basis(&w, id, &["country"])];
    let now = SystemTime::now();
    let hours = |h: u64| now - Duration::from_secs(3600 * h);
    let c = w.db().pool.get().await.unwrap();
    let expose = |variant: &'static str, country: &'static str, at: SystemTime| {
        let c = &c;
        let env = w.tenant.environment_id;
        async move {
            c.execute(
                "INSERT INTO exposures (environment_id, event_id, experiment_id, unit, variant, config_version, attributes, ts, received_at)
                 VALUES ($1, gen_random_uuid(), $2, 'late-unit', $3, 1, $4, $5, now())",
                &[&env, &id, &variant, &json!({"country": country}), &at],
            )
            .await
            .unwrap();
        }
    };
    let event = |value: f64, at: SystemTime| {
        let c = &c;
        let env = w.tenant.environment_id;
        async move {
            c.execute(
                "INSERT INTO metric_events (environment_id, event_id, unit, event, value, properties, ts, received_at)
                 VALUES ($1, gen_random_uuid(), 'late-unit', 'order', $2, '{}', $3, now())",
                &[&env, &value, &at],
            )
            .await
            .unwrap();
        }
    };
    // An order before the unit's (so far) first exposure does not count...
    expose("treatment", "NZ", hours(2)).await;
    event(10.0, hours(3)).await;
    event(5.0, hours(1)).await;
    store.advance(&bases, ALL, true).await.unwrap();
    let sums = &store.sums(&bases).await.unwrap()[&w.exp(id)];
    let key = ("treatment".to_owned(), "order".to_owned());
    assert_eq!(sums.overall.events[&key].value_sum, 5.0);
    assert_matches_scratch(&store, &bases, "before the late exposure").await;

    // ...until an exposure from before it arrives late: the first exposure moves, the order
    // counts, and the unit's attributes are now those of the earlier exposure.
    expose("treatment", "AU", hours(4)).await;
    store.advance(&bases, ALL, true).await.unwrap();
    let sums = &store.sums(&bases).await.unwrap()[&w.exp(id)];
    assert_eq!(sums.overall.events[&key].value_sum, 15.0);
    let countries: Vec<&str> = sums.segments[0].1.iter().map(|(v, _)| v.as_str()).collect();
    assert_eq!(countries, ["AU"]);
    assert_matches_scratch(&store, &bases, "after the late exposure").await;

    // A late event after the first exposure adds; a late exposure to the other variant
    // excludes the unit.
    event(1.5, hours(5) + Duration::from_secs(3600 * 3)).await;
    store.advance(&bases, ALL, true).await.unwrap();
    assert_eq!(store.sums(&bases).await.unwrap()[&w.exp(id)].overall.events[&key].value_sum, 16.5);
    expose("control", "AU", hours(1)).await;
    store.advance(&bases, ALL, true).await.unwrap();
    let sums = &store.sums(&bases).await.unwrap()[&w.exp(id)];
    assert_eq!((sums.excluded, sums.overall.units.values().sum::<u64>()), (1, 0));
    assert!(sums.overall.events.is_empty() && sums.segments[0].1.is_empty());
    assert_matches_scratch(&store, &bases, "excluded").await;
}

#[tokio::test]
async fn a_resumed_experiment_and_a_changed_basis_are_rebuilt() {
    let w = world_with_metrics().await;
    let a = w.running_experiment(experiment("resumed")).await;
    let b = w.running_experiment(experiment("steady")).await;
    let store = Store::new(w.db().pool.clone());
    let analyzer = w.analyzer(cohort_analysis::analyze::Settings::default());
    let mut rng = ChaCha8Rng::seed_from_u64(12);
    random_round(&w, &[a, b], &mut rng, 200).await;
    analyzer.cycle().await.unwrap();

    // Paused for a cycle, during which its events arrive: resumed, it is rebuilt from all rows.
    w.write(transition("resumed", Action::Pause, 2)).await;
    random_round(&w, &[a, b], &mut rng, 200).await;
    assert_eq!(analyzer.cycle().await.unwrap().experiments, 1);
    w.write(transition("resumed", Action::Resume, 3)).await;
    random_round(&w, &[a, b], &mut rng, 200).await;
    analyzer.cycle().await.unwrap();
    let bases = [basis(&w, a, &["country"]), basis(&w, b, &["country"])];
    assert_matches_scratch(&store, &bases, "resumed").await;

    // Different breakdowns (as if the definition changed): rebuilt for the new basis.
    let changed = [basis(&w, a, &["country", "platform"]), basis(&w, b, &["country"])];
    random_round(&w, &[a, b], &mut rng, 100).await;
    assert_eq!(store.advance(&changed, ALL, true).await.unwrap().rebuilt, 1);
    assert_matches_scratch(&store, &changed, "new basis").await;
}

#[tokio::test]
async fn racing_advances_apply_each_event_once() {
    let w = world_with_metrics().await;
    let id = w.running_experiment(experiment("raced")).await;
    let store = Store::new(w.db().pool.clone());
    let bases = [basis(&w, id, &["country"])];
    let mut rng = ChaCha8Rng::seed_from_u64(13);
    store.advance(&bases, ALL, true).await.unwrap();
    for round in 0..3 {
        random_round(&w, &[id], &mut rng, 200).await;
        let (x, y) = tokio::join!(store.advance(&bases, ALL, true), store.advance(&bases, ALL, true));
        assert!(x.is_ok() || y.is_ok(), "round {round}: one of them advances");
        // Any event applied twice would show here.
        assert_matches_scratch(&store, &bases, &format!("race {round}")).await;
    }
}

#[tokio::test]
async fn a_cold_start_rebuilds_a_bounded_share_per_cycle_and_analyzes_only_those_ready() {
    let w = world_with_metrics().await;
    let mut ids = Vec::new();
    for key in ["c1", "c2", "c3"] {
        ids.push(w.running_experiment(experiment(key)).await);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(14);
    random_round(&w, &ids, &mut rng, 300).await;
    let settings = cohort_analysis::analyze::Settings { max_rebuilds_per_cycle: 2, ..Default::default() };
    let analyzer = w.analyzer(settings);

    let first = analyzer.cycle().await.unwrap();
    assert_eq!((first.rebuilt, first.pending, first.experiments), (2, 1, 2));
    let store = Store::new(w.db().pool.clone());
    let mut without_results = 0;
    for id in &ids {
        without_results += usize::from(store.latest(w.exp(*id)).await.unwrap().is_none());
    }
    assert_eq!(without_results, 1, "the pending experiment has no result yet");

    // New rows meanwhile; the next cycle rebuilds the last one and advances the other two.
    random_round(&w, &ids, &mut rng, 100).await;
    let second = analyzer.cycle().await.unwrap();
    assert_eq!((second.rebuilt, second.pending, second.experiments), (1, 0, 3));
    let bases: Vec<Basis> = ids.iter().map(|id| basis(&w, *id, &["country"])).collect();
    assert_matches_scratch(&store, &bases, "after the cold start").await;
    for id in &ids {
        assert!(store.latest(w.exp(*id)).await.unwrap().is_some());
    }
}

#[tokio::test]
async fn a_cold_start_stops_rebuilding_when_its_time_is_up() {
    let w = world_with_metrics().await;
    let mut ids = Vec::new();
    for i in 0..10 {
        ids.push(w.running_experiment(experiment(&format!("t{i}"))).await);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(15);
    random_round(&w, &ids, &mut rng, 200).await;
    // No time at all: each cycle rebuilds its first chunk of experiments and no more.
    let settings =
        cohort_analysis::analyze::Settings { rebuild_budget: Duration::ZERO, ..Default::default() };
    let analyzer = w.analyzer(settings);

    let first = analyzer.cycle().await.unwrap();
    assert!(first.rebuilt > 0 && first.rebuilt < ids.len(), "rebuilt {}", first.rebuilt);
    assert_eq!((first.pending, first.experiments), (ids.len() - first.rebuilt, first.rebuilt));
    random_round(&w, &ids, &mut rng, 100).await;
    let second = analyzer.cycle().await.unwrap();
    assert_eq!(
        (second.rebuilt, second.pending, second.experiments),
        (ids.len() - first.rebuilt, 0, ids.len())
    );
    let store = Store::new(w.db().pool.clone());
    let bases: Vec<Basis> = ids.iter().map(|id| basis(&w, *id, &["country"])).collect();
    assert_matches_scratch(&store, &bases, "after a time-bounded cold start").await;
}
