//! Cycles over real data: planted effects, A/A, SRM, exclusions, guardrail pauses, leader failover.

use std::sync::Arc;
use std::time::Duration;

use cohort_analysis::analyze::Settings;
use cohort_analysis::store::Store;
use tokio_util::sync::CancellationToken;

use crate::{World, two_arm};

#[tokio::test]
async fn a_planted_effect_is_found_and_an_aa_test_is_not() {
    let w = World::new().await;
    w.metric("purchase", "purchase", "conversion", "increase", None).await;
    let effect = w.running_experiment(two_arm("effect", &["purchase"], &[])).await;
    let aa = w.running_experiment(two_arm("aa", &["purchase"], &[])).await;
    w.traffic(effect, 1, 0, 20_000, &[("control", 0.5, 0.10), ("treatment", 0.5, 0.12)], "purchase", true)
        .await;
    w.traffic(aa, 2, 100_000, 20_000, &[("control", 0.5, 0.10), ("treatment", 0.5, 0.10)], "purchase", true)
        .await;

    let analyzer = w.analyzer(Settings::default());
    let report = analyzer.cycle().await.unwrap();
    assert_eq!((report.experiments, report.looks, report.failed), (2, 2, 0));

    let store = Store::new(w.db().pool.clone());
    let r = store.latest(w.exp(effect)).await.unwrap().unwrap();
    assert_eq!(r.look, 1);
    let c = &r.metrics[0].comparisons[0];
    assert!(c.abs_diff.unwrap() > 0.0, "{c:?}");
    let [lo, hi] = c.interval.as_ref().unwrap().abs.unwrap();
    assert!(lo < 0.02 && 0.02 < hi, "the repeated CI [{lo:.4}, {hi:.4}] covers the planted +2 points");
    assert_eq!((r.decided_at_look, c.crossed_at_look), (Some(1), Some(1)));
    assert!(!r.srm.detected);
    assert_eq!(r.units.values().sum::<u64>(), 20_000);
    // Segment breakdown by country, with the multiple-comparisons warning.
    let countries: Vec<&str> = r.segments.iter().map(|s| s.value.as_str()).collect();
    assert_eq!(countries.len(), 3, "{countries:?}");
    assert!(r.warnings.iter().any(|w| w.contains("segment comparisons")));

    let aa = store.latest(w.exp(aa)).await.unwrap().unwrap();
    assert_eq!(aa.decided_at_look, None, "{:?}", aa.metrics[0].comparisons[0]);
}

#[tokio::test]
async fn a_skewed_split_raises_srm_and_double_exposures_are_excluded() {
    let w = World::new().await;
    w.metric("purchase", "purchase", "conversion", "increase", None).await;
    let id = w.running_experiment(two_arm("skewed", &["purchase"], &[])).await;
    w.traffic(id, 3, 0, 10_000, &[("control", 0.55, 0.1), ("treatment", 0.45, 0.1)], "purchase", false).await;
    // Ten units also saw the other variant.
    w.traffic(id, 4, 0, 10, &[("treatment", 0.5, 0.0), ("control", 0.5, 0.0)], "purchase", false).await;
    w.analyzer(Settings::default()).cycle().await.unwrap();
    let r = Store::new(w.db().pool.clone()).latest(w.exp(id)).await.unwrap().unwrap();
    assert!(r.srm.detected, "{:?}", r.srm);
    assert!(r.excluded_units > 0 && r.excluded_units <= 10, "{}", r.excluded_units);
    assert_eq!(r.units.values().sum::<u64>() + r.excluded_units, 10_000);
}

#[tokio::test]
async fn a_harmful_guardrail_pauses_the_experiment() {
    let w = World::new().await;
    w.metric("purchase", "purchase", "conversion", "increase", None).await;
    w.metric("errors", "error", "conversion", "decrease", Some(0.0)).await;
    let id = w.running_experiment(two_arm("risky", &["purchase"], &["errors"])).await;
    w.traffic(id, 5, 0, 20_000, &[("control", 0.5, 0.05), ("treatment", 0.5, 0.10)], "error", false).await;
    let report = w.analyzer(Settings::default()).cycle().await.unwrap();
    assert_eq!(report.paused, 1);
    assert_eq!(w.status("risky").await, "paused");
    let pauses: Vec<_> = w.audit("risky").await.into_iter().filter(|e| e.action == "pause").collect();
    assert_eq!(pauses.len(), 1, "{pauses:?}");
    let (actor, reason) = (pauses[0].actor_name.clone(), pauses[0].reason.clone());
    assert_eq!(actor, "cohort-analysis");
    assert!(reason.starts_with("guardrail errors is worse than its threshold"), "{reason}");
    let r = Store::new(w.db().pool.clone()).latest(w.exp(id)).await.unwrap().unwrap();
    assert!(r.paused_by_guardrail.is_some());
    // Paused experiments are no longer analyzed.
    assert_eq!(w.analyzer(Settings::default()).cycle().await.unwrap().experiments, 0);
}

#[tokio::test]
async fn a_killed_leader_is_replaced_and_no_look_is_lost_or_duplicated() {
    let w = World::new().await;
    w.metric("purchase", "purchase", "conversion", "increase", None).await;
    let id = w.running_experiment(two_arm("steady", &["purchase"], &[])).await;
    let stop = CancellationToken::new();
    let fast = Duration::from_millis(200);
    let pool = w.db().pool.clone();
    let looks = move || {
        let pool = pool.clone();
        async move {
            let c = pool.get().await.unwrap();
            let rows = c
                .query("SELECT look FROM analysis_looks WHERE experiment_id = $1 ORDER BY look", &[&id])
                .await
                .unwrap();
            rows.iter().map(|r| r.get::<_, i32>(0)).collect::<Vec<_>>()
        }
    };
    let wait_for = |n: usize| {
        let looks = looks.clone();
        async move {
            for _ in 0..150 {
                if looks().await.len() >= n {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            panic!("look {n} never came");
        }
    };

    w.traffic(id, 6, 0, 2_000, &[("control", 0.5, 0.1), ("treatment", 0.5, 0.1)], "purchase", false).await;
    let first = tokio::spawn(cohort_analysis::cycle::lead(
        Arc::new(w.analyzer(Settings::default())),
        w.db().url.clone(),
        fast,
        crate::condition(),
        stop.clone(),
    ));
    let standby = tokio::spawn(cohort_analysis::cycle::lead(
        Arc::new(w.analyzer(Settings::default())),
        w.db().url.clone(),
        fast,
        crate::condition(),
        stop.clone(),
    ));
    wait_for(1).await;
    // Killed wherever it is, mid-cycle or not: its lock connection goes with it.
    first.abort();
    let _ = first.await;
    w.traffic(id, 7, 2_000, 2_000, &[("control", 0.5, 0.1), ("treatment", 0.5, 0.1)], "purchase", false)
        .await;
    wait_for(2).await;
    w.traffic(id, 8, 4_000, 2_000, &[("control", 0.5, 0.1), ("treatment", 0.5, 0.1)], "purchase", false)
        .await;
    wait_for(3).await;
    stop.cancel();
    let _ = standby.await;
    assert_eq!(looks().await, [1, 2, 3], "contiguous looks, each once");
    let (fractions, _) = Store::new(w.db().pool.clone()).look_fractions(w.exp(id)).await.unwrap();
    assert!(fractions.windows(2).all(|f| f[0] < f[1]), "{fractions:?}");
}

#[tokio::test]
async fn a_leader_whose_cycles_keep_failing_is_not_ready() {
    let w = World::new().await;
    w.metric("purchase", "purchase", "conversion", "increase", None).await;
    let id = w.running_experiment(two_arm("stuck", &["purchase"], &[])).await;
    w.traffic(id, 1, 0, 100, &[("control", 0.5, 0.1), ("treatment", 0.5, 0.1)], "purchase", false).await;
    // No advance can commit: every cycle fails as a whole.
    w.db().pool
        .get()
        .await
        .unwrap()
        .batch_execute(
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN RAISE EXCEPTION 'planted failure'; END $$;
             CREATE TRIGGER refuse BEFORE UPDATE ON analysis_watermark FOR EACH ROW EXECUTE FUNCTION refuse();",
        )
        .await
        .unwrap();
    let cycles = crate::condition();
    let stop = cohort_runtime::Shutdown::new();
    let leader = tokio::spawn(cohort_analysis::cycle::lead(
        Arc::new(w.analyzer(Settings::default())),
        w.db().url.clone(),
        Duration::from_millis(100),
        cycles.clone(),
        stop.clone(),
    ));
    let mut unready_after = None;
    for tick in 0..100 {
        if !cycles.holds() {
            unready_after = Some(tick);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(unready_after.is_some(), "readiness never reflected the failing cycles");
    w.db()
        .pool
        .get()
        .await
        .unwrap()
        .batch_execute("DROP TRIGGER refuse ON analysis_watermark")
        .await
        .unwrap();
    let mut ready_again = false;
    for _ in 0..100 {
        if cycles.holds() {
            ready_again = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ready_again, "a cycle that succeeds makes the leader ready again");
    stop.cancel();
    leader.await.unwrap();
}

#[tokio::test]
async fn every_result_says_what_it_counts() {
    let w = World::new().await;
    w.metric("purchase", "purchase", "conversion", "increase", None).await;
    let id = w.running_experiment(two_arm("fresh", &["purchase"], &[])).await;
    w.traffic(id, 1, 0, 2_000, &[("control", 0.5, 0.10), ("treatment", 0.5, 0.12)], "purchase", false).await;
    let client = w.db().pool.get().await.unwrap();
    let acked: i64 = client
        .query_one(
            "SELECT (extract(epoch FROM max(received_at)) * 1000)::bigint FROM
             (SELECT received_at FROM exposures UNION ALL SELECT received_at FROM metric_events) e",
            &[],
        )
        .await
        .unwrap()
        .get(0);

    let analyzer = w.analyzer(Settings::default());
    analyzer.cycle().await.unwrap();
    let store = Store::new(w.db().pool.clone());
    let r = store.latest(w.exp(id)).await.unwrap().unwrap();
    let c = r.coverage.clone().expect("a result says what it counts");
    assert_eq!(c.newest_event_received_ms, Some(acked), "{c:?}");
    assert!(c.as_of_ms >= acked && c.ingest_position > 0, "{c:?}");
    assert!(c.lag_ms >= 0 && r.computed_at_ms == c.as_of_ms + c.lag_ms, "{c:?} vs {}", r.computed_at_ms);

    // Later events move it forward; a cycle with nothing new keeps the newest time.
    w.traffic(id, 2, 2_000, 500, &[("control", 0.5, 0.10), ("treatment", 0.5, 0.12)], "purchase", false)
        .await;
    analyzer.cycle().await.unwrap();
    let later = store.latest(w.exp(id)).await.unwrap().unwrap().coverage.unwrap();
    assert!(
        later.newest_event_received_ms > Some(acked) && later.ingest_position >= c.ingest_position,
        "{later:?}"
    );
    analyzer.cycle().await.unwrap();
    let idle = store.latest(w.exp(id)).await.unwrap().unwrap().coverage.unwrap();
    assert_eq!(idle.newest_event_received_ms, later.newest_event_received_ms);
    assert!(idle.as_of_ms >= later.as_of_ms);
}
