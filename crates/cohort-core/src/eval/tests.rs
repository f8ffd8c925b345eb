//! Typed access to decisions.

use serde_json::json;

use crate::model::Definitions;
use crate::{Context, ErrorCode, Reason, compile, evaluate, evaluate_all};

fn config() -> crate::CompiledConfig {
    let defs: Definitions = serde_json::from_value(json!({
        "flags": [{
            "key": "limit", "type": "number", "salt": "s",
            "variations": [{"key": "low", "value": 5}], "off_variation": "low", "default": {"variation": "low"},
        }],
        "experiments": [{
            "id": "00000000-0000-4000-8000-000000000001", "key": "exp", "status": "running",
            "variants": [{"key": "a", "weight_bp": 10000, "payload": {"x": 1}}, {"key": "b", "weight_bp": 0}],
            "breakdown_attributes": ["country"],
        }],
    }))
    .unwrap();
    compile(&defs).unwrap()
}

#[test]
fn typed_values() {
    let config = config();
    let ctx = Context::new("u");
    let d = evaluate(&config, &ctx, "limit");
    assert_eq!(d.number_value(), Ok(5.0));
    assert_eq!(d.bool_value(), Err(ErrorCode::TypeMismatch));
    assert_eq!(d.string_value(), Err(ErrorCode::TypeMismatch));
    assert_eq!(d.value_json, Some("5"));
    assert_eq!(evaluate(&config, &ctx, "missing").bool_value(), Err(ErrorCode::FlagNotFound));
}

#[test]
fn experiment_decisions_carry_the_experiment() {
    let config = config();
    let d = evaluate(&config, &Context::new("u"), "exp");
    assert!(d.enrolled);
    assert_eq!(d.reason, Reason::Split);
    assert_eq!(d.json_value(), Ok(&json!({"x": 1})));
    let exp = d.experiment.unwrap();
    assert_eq!(exp.breakdown_attributes(), ["country"]);
    assert_eq!(exp.id().to_string(), "00000000-0000-4000-8000-000000000001");
}

#[test]
fn a_zero_weight_variant_is_never_served() {
    let config = config();
    for i in 0..2000 {
        assert_eq!(evaluate(&config, &Context::new(format!("u{i}")), "exp").variant, Some("a"));
    }
}

#[test]
fn evaluate_all_covers_every_key() {
    let config = config();
    let all = evaluate_all(&config, &Context::new("u"));
    let keys: Vec<&str> = all.iter().map(|d| d.key).collect();
    assert_eq!(keys, ["limit", "exp"]);
}

mod holdouts {
    //! Holdouts: the held-out share, held-out units never enrolled, everyone else served as
    //! without the holdout, scope by layer, disabled holdouts inert.

    use serde_json::{Value, json};

    use crate::model::Definitions;
    use crate::{CompiledConfig, Context, Decision, Reason, compile, evaluate};

    const HOLDOUT_ID: &str = "00000000-0000-4000-8000-0000000000f1";

    fn experiment(key: &str, n: u8) -> Value {
        json!({
            "id": format!("00000000-0000-4000-8000-0000000000{n:02x}"), "key": key, "status": "running",
            "variants": [{"key": "control", "weight_bp": 5000}, {"key": "treatment", "weight_bp": 5000}],
        })
    }

    /// Experiments `a` (layer `one`), `b` (layer `two`) and `c` (no layer), with `holdouts`.
    fn config(holdouts: Value) -> CompiledConfig {
        let defs: Definitions = serde_json::from_value(json!({
            "flags": [{
                "key": "f", "type": "boolean", "salt": "fs",
                "variations": [{"key": "on", "value": true}, {"key": "off", "value": false}],
                "off_variation": "off", "default": {"variation": "on"},
            }],
            "experiments": [experiment("a", 1), experiment("b", 2), experiment("c", 3)],
            "layers": [
                {"key": "one", "salt": "one", "experiments": [{"experiment": "a", "range": [0, 10000]}]},
                {"key": "two", "salt": "two", "experiments": [{"experiment": "b", "range": [0, 10000]}]},
            ],
            "holdouts": holdouts,
        }))
        .unwrap();
        compile(&defs).unwrap()
    }

    fn holdout(share_bp: u32, layers: &[&str]) -> Value {
        json!([{"id": HOLDOUT_ID, "key": "h", "share_bp": share_bp, "layers": layers}])
    }

    fn held_out(d: &Decision<'_>) -> bool {
        d.holdout.is_some_and(|h| h.held_out)
    }

    fn units() -> impl Iterator<Item = Context> {
        (0..10_000).map(|i| Context::new(format!("unit-{i}")))
    }

    #[test]
    fn a_holdout_keeps_its_share_out_of_the_experiment() {
        let config = config(holdout(1000, &[]));
        let mut out = 0;
        for ctx in units() {
            let d = evaluate(&config, &ctx, "c");
            let hit = d.holdout.expect("c is in the holdout's scope");
            assert_eq!(hit.holdout.key(), "h");
            assert_eq!(hit.holdout.id_text(), HOLDOUT_ID);
            if hit.held_out {
                out += 1;
                assert!(!d.enrolled);
                assert_eq!((d.reason, d.variant, d.value), (Reason::Default, None, None));
                assert!(d.experiment.is_some(), "the decision still names the experiment");
            } else {
                assert!(d.enrolled, "c enrolls everyone it does not hold out");
            }
        }
        // 10 % of 10,000 units: 1000 expected, standard deviation 30; this unit set gives a
        // fixed count, well within 1 percentage point.
        assert!((900..=1100).contains(&out), "{out} of 10000 held out");
    }

    #[test]
    fn units_not_held_out_are_served_as_without_the_holdout() {
        let without = config(json!([]));
        let with = config(holdout(2500, &[]));
        let mut general = 0;
        for ctx in units() {
            for key in ["a", "b", "c"] {
                let d = evaluate(&with, &ctx, key);
                let before = evaluate(&without, &ctx, key);
                assert!(before.holdout.is_none());
                if held_out(&d) {
                    continue;
                }
                general += 1;
                assert_eq!(
                    (d.enrolled, d.variant, d.reason),
                    (before.enrolled, before.variant, before.reason)
                );
            }
        }
        assert!(general > 20_000, "{general}");
    }

    #[test]
    fn the_same_units_are_held_out_of_every_experiment_in_scope() {
        let config = config(holdout(1000, &[]));
        for ctx in units().take(2000) {
            let out: Vec<bool> =
                ["a", "b", "c"].iter().map(|k| held_out(&evaluate(&config, &ctx, k))).collect();
            assert!(out.iter().all(|o| *o == out[0]), "{out:?}");
        }
    }

    #[test]
    fn the_holdout_draw_comes_before_targeting() {
        let mut defs: Definitions = serde_json::from_value(
            json!({"experiments": [experiment("c", 3)], "holdouts": holdout(5000, &[])}),
        )
        .unwrap();
        defs.experiments[0].targeting = Some(
            serde_json::from_value(json!({"op": "equals", "attribute": "country", "value": "NZ"})).unwrap(),
        );
        let config = compile(&defs).unwrap();
        let (mut out, mut general) = (0, 0);
        for ctx in units().take(1000) {
            // Not targeted: not enrolled, yet counted on one side of the holdout.
            let d = evaluate(&config, &ctx, "c");
            assert!(!d.enrolled);
            if d.holdout.expect("in scope").held_out { out += 1 } else { general += 1 }
        }
        assert!(out > 0 && general > 0, "{out} held out, {general} not");
    }

    #[test]
    fn a_layer_holdout_covers_only_its_layers_experiments() {
        let config = config(holdout(5000, &["one"]));
        let mut out = 0;
        for ctx in units().take(2000) {
            let a = evaluate(&config, &ctx, "a");
            assert!(a.holdout.is_some());
            out += usize::from(held_out(&a));
            for key in ["b", "c", "f"] {
                assert!(evaluate(&config, &ctx, key).holdout.is_none(), "{key}");
            }
        }
        assert!(out > 500, "{out}");
        assert_eq!(config.holdout_of(config.experiment("a").unwrap()).map(|h| h.key()), Some("h"));
        assert!(config.holdout_of(config.experiment("b").unwrap()).is_none());
    }

    #[test]
    fn a_disabled_holdout_holds_nobody_out() {
        let mut h = holdout(5000, &[]);
        h[0]["enabled"] = json!(false);
        let config = config(h);
        assert_eq!(config.holdouts().len(), 1);
        assert!(!config.holdouts()[0].enabled());
        for ctx in units().take(2000) {
            for key in ["a", "b", "c"] {
                let d = evaluate(&config, &ctx, key);
                assert!(d.holdout.is_none());
                assert!(d.enrolled);
            }
        }
    }

    #[test]
    fn experiments_not_running_and_unitless_contexts_have_no_holdout() {
        let mut defs: Definitions = serde_json::from_value(
            json!({"experiments": [experiment("c", 3)], "holdouts": holdout(5000, &[])}),
        )
        .unwrap();
        defs.experiments[0].status = crate::model::ExperimentStatus::Paused;
        let paused = compile(&defs).unwrap();
        assert!(evaluate(&paused, &Context::new("u"), "c").holdout.is_none());
        let running = config(holdout(5000, &[]));
        assert!(evaluate(&running, &Context::anonymous(), "c").holdout.is_none());
    }
}
