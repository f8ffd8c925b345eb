//! The fixtures mean the same in both engines: rates for the splits (the engines hash
//! differently, so per-user answers differ), exact answers for the constraints.

use super::*;

/// Enough users that a fair 50 % rate lands within ±1.5 % (about 4 standard deviations).
const USERS: usize = 20_000;
const TOLERANCE: f64 = 0.015;

fn rate(hits: usize) -> f64 {
    hits as f64 / USERS as f64
}

fn assert_near(engine: &str, key: &str, got: f64, want: f64) {
    assert!((got - want).abs() <= TOLERANCE, "{engine} {key}: rate {got:.4}, expected {want} ± {TOLERANCE}");
}

fn cohort_on(p: &Peers, key: &str, ctx: &cohort_core::Context) -> bool {
    let cfg = p.cohort.config();
    let d = cfg.evaluate(key, ctx);
    assert_eq!(d.error, None, "cohort {key}");
    d.bool_value().expect("a boolean flag")
}

fn unleash_on(p: &Peers, key: &str, ctx: &unleash_yggdrasil::Context) -> bool {
    p.unleash.is_enabled(key, ctx, &None)
}

#[test]
fn every_rollout_enables_its_percentage_in_both() {
    let p = Peers::new(USERS);
    let rollouts: Vec<(String, u32)> = flag_set()
        .into_iter()
        .filter_map(|(key, kind)| match kind {
            FlagKind::Rollout(percent) => Some((key, percent)),
            _ => None,
        })
        .collect();
    assert!(rollouts.iter().any(|(key, percent)| key == ROLLOUT_50 && *percent == 50));
    for (key, percent) in &rollouts {
        let want = f64::from(*percent) / 100.0;
        let cohort = p.cohort_contexts.iter().filter(|ctx| cohort_on(&p, key, ctx)).count();
        let unleash = p.unleash_contexts.iter().filter(|ctx| unleash_on(&p, key, ctx)).count();
        assert_near("cohort", key, rate(cohort), want);
        assert_near("yggdrasil", key, rate(unleash), want);
    }
}

#[test]
fn variants_split_half_and_half_in_both() {
    let p = Peers::new(USERS);
    let mut cohort_a = 0;
    for ctx in &p.cohort_contexts {
        match p.cohort.string_value(VARIANTS_2, ctx, "none").as_str() {
            "a" => cohort_a += 1,
            "b" => {}
            other => panic!("cohort served {other:?}"),
        }
    }
    let mut unleash_a = 0;
    for ctx in &p.unleash_contexts {
        let v = p.unleash.get_variant(VARIANTS_2, ctx, &None);
        assert!(v.feature_enabled && v.enabled, "yggdrasil served no variant: {v:?}");
        match v.name.as_str() {
            "a" => unleash_a += 1,
            "b" => {}
            other => panic!("yggdrasil served {other:?}"),
        }
    }
    assert_near("cohort", VARIANTS_2, rate(cohort_a), 0.5);
    assert_near("yggdrasil", VARIANTS_2, rate(unleash_a), 0.5);
}

/// Makes one of the five constraints fail.
type Break = fn(&mut User);

#[test]
fn constraints_hold_for_every_user_and_fail_one_at_a_time_in_both() {
    let p = Peers::new(1_000);
    for (c, u) in p.cohort_contexts.iter().zip(&p.unleash_contexts) {
        assert!(cohort_on(&p, CONSTRAINTS_5, c), "cohort off for {:?}", c.targeting_key);
        assert!(unleash_on(&p, CONSTRAINTS_5, u), "yggdrasil off for {:?}", u.user_id);
    }

    let breaks: [(&str, Break); 6] = [
        ("country", |u| u.country = "BR".to_owned()),
        ("plan", |u| u.plan = "free".to_owned()),
        ("age at the bound", |u| u.age = MIN_AGE),
        ("app_version at the bound", |u| u.app_version = MIN_APP_VERSION.to_owned()),
        ("app_version older", |u| u.app_version = "2.3.9".to_owned()),
        ("email", |u| u.email = "u1@example.org".to_owned()),
    ];
    for (what, break_it) in breaks {
        let mut user = User::nth(1);
        break_it(&mut user);
        assert!(!cohort_on(&p, CONSTRAINTS_5, &user.cohort_context()), "cohort on with a failing {what}");
        assert!(
            !unleash_on(&p, CONSTRAINTS_5, &user.unleash_context()),
            "yggdrasil on with a failing {what}"
        );
    }

    // A missing attribute fails the constraint in both, rather than erroring.
    let user = User::nth(1);
    let mut c = user.cohort_context();
    c.attributes.remove("plan");
    let mut u = user.unleash_context();
    u.properties.as_mut().expect("properties").remove("plan");
    assert!(!cohort_on(&p, CONSTRAINTS_5, &c));
    assert!(!unleash_on(&p, CONSTRAINTS_5, &u));
}

#[test]
fn all_flags_resolve_in_both() {
    let p = Peers::new(10);
    let keys: Vec<String> = flag_set().into_iter().map(|(key, _)| key).collect();
    assert_eq!(keys.len(), FLAG_COUNT);

    let cohort = p.cohort.evaluate_all(&p.cohort_contexts[0]);
    assert_eq!(cohort.len(), FLAG_COUNT);
    for e in &cohort {
        assert_eq!(e.error, None, "cohort {}", e.key);
        assert!(e.variant.is_some(), "cohort served nothing for {}", e.key);
    }

    let unleash = p.unleash.resolve_all(&p.unleash_contexts[0], &None).expect("yggdrasil has state");
    assert_eq!(unleash.len(), FLAG_COUNT);
    for key in &keys {
        assert!(unleash.contains_key(key), "yggdrasil lacks {key}");
        assert!(cohort.iter().any(|e| &e.key == key), "cohort lacks {key}");
    }
    for (key, kind) in flag_set() {
        if kind == FlagKind::Constraints {
            assert!(unleash[&key].enabled, "yggdrasil {key}");
            let e = cohort.iter().find(|e| e.key == key).expect("evaluated");
            assert_eq!(e.value, Some(Value::Bool(true)), "cohort {key}");
        }
    }
}
