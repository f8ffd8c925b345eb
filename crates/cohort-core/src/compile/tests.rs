//! Validation: each problem is reported with the path of the field at fault, all at once.

use serde_json::json;

use crate::model::{Definitions, Measure, Span, Stream};
use crate::{ConfigErrors, compile};

fn errors(defs: serde_json::Value) -> Vec<String> {
    let defs: Definitions = serde_json::from_value(defs).expect("parses");
    match compile(&defs) {
        Ok(_) => Vec::new(),
        Err(ConfigErrors(errs)) => errs.iter().map(ToString::to_string).collect(),
    }
}

fn assert_error(defs: serde_json::Value, expected: &str) {
    let errs = errors(defs);
    assert!(errs.iter().any(|e| e == expected), "expected {expected:?} among {errs:#?}");
}

fn experiment(key: &str, weights: &[u32]) -> serde_json::Value {
    let variants: Vec<_> =
        weights.iter().enumerate().map(|(i, w)| json!({"key": format!("v{i}"), "weight_bp": w})).collect();
    json!({"id": uuid_for(key), "key": key, "status": "running", "variants": variants})
}

fn uuid_for(key: &str) -> String {
    format!("00000000-0000-4000-8000-{:012x}", crate::hash::hash32(key.as_bytes()))
}

fn flag(key: &str) -> serde_json::Value {
    json!({
        "key": key, "type": "boolean", "salt": "s",
        "variations": [{"key": "on", "value": true}, {"key": "off", "value": false}],
        "off_variation": "off", "default": {"variation": "on"},
    })
}

#[test]
fn weights_must_sum_to_10000() {
    let mut defs = json!({"experiments": [experiment("a", &[5000, 5000]), experiment("b", &[5000, 5000])]});
    defs["experiments"]
        .as_array_mut()
        .unwrap()
        .extend([experiment("c", &[5000, 5000]), experiment("d", &[5000, 4900])]);
    assert_error(defs, "experiments[3].variants[1].weight_bp: weights sum to 9900, expected 10000");
}

#[test]
fn every_problem_is_reported_at_once() {
    let errs = errors(json!({
        "flags": [flag("dup"), flag("dup")],
        "experiments": [experiment("bad key!", &[10000, 1])],
    }));
    assert!(errs.iter().any(|e| e.starts_with("flags[1].key: duplicate key \"dup\"")), "{errs:#?}");
    assert!(errs.iter().any(|e| e.starts_with("experiments[0].key: \"bad key!\"")), "{errs:#?}");
    assert!(
        errs.iter()
            .any(|e| e == "experiments[0].variants[1].weight_bp: weights sum to 10001, expected 10000"),
        "{errs:#?}"
    );
}

#[test]
fn flags_and_experiments_share_one_key_space() {
    assert_error(
        json!({"flags": [flag("same")], "experiments": [experiment("same", &[5000, 5000])]}),
        "experiments[0].key: duplicate key \"same\", already used by flags[0]",
    );
}

#[test]
fn variation_values_must_match_the_flag_type() {
    let mut f = flag("f");
    f["variations"][1]["value"] = json!("false");
    assert_error(json!({"flags": [f]}), "flags[0].variations[1].value: \"false\" is not a boolean value");
}

#[test]
fn references_must_resolve() {
    let mut f = flag("f");
    f["off_variation"] = json!("nope");
    f["rules"] =
        json!([{"condition": {"op": "in_segment", "segment": "ghosts"}, "serve": {"variation": "maybe"}}]);
    let errs = errors(json!({"flags": [f]}));
    for expected in [
        "flags[0].off_variation: unknown variation \"nope\"",
        "flags[0].rules[0].condition.segment: unknown segment \"ghosts\"",
        "flags[0].rules[0].serve.variation: unknown variation \"maybe\"",
    ] {
        assert!(errs.iter().any(|e| e == expected), "expected {expected:?} among {errs:#?}");
    }
    let mut e = experiment("e", &[5000, 5000]);
    e["primary_metrics"] = json!(["revenue"]);
    assert_error(
        json!({"experiments": [e]}),
        "experiments[0].primary_metrics[0]: unknown metric \"revenue\"",
    );
}

#[test]
fn splits_are_validated() {
    let mut f = flag("f");
    f["default"] =
        json!({"split": [{"variation": "on", "weight_bp": 6000}, {"variation": "on", "weight_bp": 4000}]});
    assert_error(
        json!({"flags": [f.clone()]}),
        "flags[0].default.split[1].variation: variation \"on\" appears twice in the split",
    );
    f["default"] =
        json!({"split": [{"variation": "on", "weight_bp": 6000}, {"variation": "off", "weight_bp": 3000}]});
    assert_error(
        json!({"flags": [f]}),
        "flags[0].default.split[1].weight_bp: weights sum to 9000, expected 10000",
    );
}

#[test]
fn salts_follow_the_spec() {
    let mut f = flag("f");
    f["salt"] = json!("has:colon");
    assert_error(
        json!({"flags": [f.clone()]}),
        "flags[0].salt: \"has:colon\" is not a valid salt: 1 to 64 characters of A-Z a-z 0-9 _ -",
    );
    f["salt"] = json!("x".repeat(65));
    assert!(errors(json!({"flags": [f]}))[0].starts_with("flags[0].salt:"));
}

#[test]
fn live_experiments_never_overlap_in_a_layer() {
    let mut draft = experiment("c", &[5000, 5000]);
    draft["status"] = json!("draft");
    let defs = json!({
        "experiments": [experiment("a", &[5000, 5000]), experiment("b", &[5000, 5000]), draft],
        "layers": [{"key": "l", "salt": "ls", "experiments": [
            {"experiment": "a", "range": [0, 4000]},
            {"experiment": "b", "range": [3000, 6000]},
            {"experiment": "c", "range": [0, 10000]},
        ]}],
    });
    let errs = errors(defs);
    assert_eq!(
        errs,
        vec!["layers[0].experiments[1].range: [3000, 6000) overlaps [0, 4000) of live experiment \"a\""]
    );
}

#[test]
fn layer_ranges_and_traffic_are_exclusive() {
    let mut e = experiment("a", &[5000, 5000]);
    e["traffic_bp"] = json!(5000);
    let errs = errors(json!({
        "experiments": [e],
        "layers": [{"key": "l", "salt": "ls", "experiments": [{"experiment": "a", "range": [10, 5]}, {"experiment": "zz", "range": [0, 1]}]}],
    }));
    assert!(
        errs.contains(&"layers[0].experiments[0].range: [10, 5) is not a range within [0, 10000)".to_owned()),
        "{errs:#?}"
    );
    assert!(
        errs.contains(&"layers[0].experiments[1].experiment: unknown experiment \"zz\"".to_owned()),
        "{errs:#?}"
    );
}

#[test]
fn regexes_are_bounded() {
    let mut f = flag("f");
    f["rules"] = json!([{"condition": {"op": "matches", "attribute": "a", "pattern": "(unclosed"}, "serve": {"variation": "on"}}]);
    assert!(
        errors(json!({"flags": [f.clone()]}))[0]
            .starts_with("flags[0].rules[0].condition.pattern: invalid regular expression")
    );
    // A pattern whose compiled program exceeds the size limit is refused, not built.
    f["rules"][0]["condition"]["pattern"] = json!("\\w{1000}\\w{1000}");
    assert!(
        errors(json!({"flags": [f]}))[0]
            .starts_with("flags[0].rules[0].condition.pattern: invalid regular expression")
    );
}

#[test]
fn segment_cycles_are_refused() {
    let errs = errors(json!({"segments": [
        {"key": "a", "condition": {"op": "in_segment", "segment": "b"}},
        {"key": "b", "condition": {"op": "any", "conditions": [{"op": "in_segment", "segment": "a"}]}},
        {"key": "self", "condition": {"op": "in_segment", "segment": "self"}},
    ]}));
    assert!(errs.iter().any(|e| e.contains("cycle: a -> b -> a")), "{errs:#?}");
    assert!(errs.iter().any(|e| e.contains("cycle: self -> self")), "{errs:#?}");
}

#[test]
fn conditions_are_validated() {
    let mut f = flag("f");
    f["rules"] = json!([
        {"condition": {"op": "semver_gt", "attribute": "v", "value": "one"}, "serve": {"variation": "on"}},
        {"condition": {"op": "before", "attribute": "d", "value": "2024-02-30"}, "serve": {"variation": "on"}},
        {"condition": {"op": "equals", "attribute": "", "value": 1}, "serve": {"variation": "on"}},
    ]);
    let errs = errors(json!({"flags": [f]}));
    assert_eq!(
        errs,
        vec![
            "flags[0].rules[0].condition.value: \"one\" is not a semantic version",
            "flags[0].rules[1].condition.value: \"2024-02-30\" is not an RFC 3339 date or timestamp",
            "flags[0].rules[2].condition.attribute: an attribute name must be 1 to 256 bytes",
        ]
    );
}

#[test]
fn nesting_depth_is_limited() {
    let mut cond = json!({"op": "exists", "attribute": "a"});
    for _ in 0..20 {
        cond = json!({"op": "not", "condition": cond});
    }
    let mut f = flag("f");
    f["rules"] = json!([{"condition": cond, "serve": {"variation": "on"}}]);
    assert!(errors(json!({"flags": [f]}))[0].ends_with("conditions nest more than 16 deep"));
}

#[test]
fn experiments_need_one_control_and_few_breakdowns() {
    let mut e = experiment("e", &[5000, 5000]);
    e["variants"][0]["control"] = json!(true);
    e["variants"][1]["control"] = json!(true);
    e["breakdown_attributes"] = json!(["a", "b", "c", "d", "e", "f"]);
    let errs = errors(json!({"experiments": [e]}));
    assert!(errs.contains(&"experiments[0].variants[1].control: only one variant can be the control, and variants[0] already is".to_owned()), "{errs:#?}");
    assert!(
        errs.contains(
            &"experiments[0].breakdown_attributes: 6 breakdown attributes, at most 5 allowed".to_owned()
        ),
        "{errs:#?}"
    );
}

#[test]
fn a_valid_config_compiles_and_keeps_its_version() {
    let defs: Definitions = serde_json::from_value(json!({
        "version": 42,
        "flags": [flag("f")],
        "experiments": [experiment("e", &[2500, 7500])],
        "metrics": [{"key": "purchase", "event": "purchase", "aggregation": "conversion"}],
    }))
    .unwrap();
    let config = compile(&defs).unwrap();
    assert_eq!(config.version(), 42);
    assert_eq!(config.len(), 2);
    assert_eq!(config.experiment("e").unwrap().control_variant(), "v0");
}

#[test]
fn nul_characters_are_refused_wherever_they_are() {
    const NUL: &str = "contains a NUL character (\\u0000), which cannot be stored";
    let mut f = flag("f");
    f["description"] = json!("a\u{0}b");
    f["variations"][0]["value"] = json!(true);
    f["type"] = json!("json");
    f["variations"][0]["value"] = json!({"nested": ["ok", "x\u{0}"], "k\u{0}ey": 1});
    f["variations"][1]["value"] = json!({});
    let mut e = experiment("e", &[5000, 5000]);
    e["variants"][1]["payload"] = json!({"text": "\u{0}"});
    e["targeting"] =
        json!({"op": "not", "condition": {"op": "equals", "attribute": "country", "value": "N\u{0}Z"}});
    let mut s = json!({"key": "s", "include": ["u1", "u\u{0}2"]});
    s["condition"] = json!({"op": "any", "conditions": [{"op": "exists", "attribute": "a\u{0}"}]});
    let m = json!({"key": "m", "event": "buy\u{0}", "aggregation": "count"});
    let errs = errors(json!({"flags": [f], "experiments": [e], "segments": [s], "metrics": [m]}));
    for path in [
        "flags[0].description",
        "flags[0].variations[0].value.nested[1]",
        "flags[0].variations[0].value.k\\u{0}ey",
        "experiments[0].variants[1].payload.text",
        "experiments[0].targeting.condition.value",
        "segments[0].condition.conditions[0].attribute",
        "segments[0].include[1]",
        "metrics[0].event",
    ] {
        let expected = format!("{path}: {NUL}");
        assert!(errs.contains(&expected), "expected {expected:?} among {errs:#?}");
    }
    // The same definitions without the NULs compile.
    let clean = json!({"flags": [flag("f")], "experiments": [experiment("e", &[5000, 5000])]});
    assert_eq!(errors(clean), Vec::<String>::new());
}

#[test]
fn a_metric_window_is_a_second_to_a_year_and_names_its_own_stream() {
    let metric = |window: serde_json::Value| json!({"metrics": [{"key": "buy", "event": "purchase", "aggregation": "conversion", "window_seconds": window}]});
    assert!(errors(metric(json!(86_400))).is_empty());
    for bad in [0u64, 400 * 86_400] {
        let errs = errors(metric(json!(bad)));
        assert!(errs.iter().any(|e| e.starts_with("metrics[0].window_seconds: ")), "{bad}: {errs:?}");
    }
    let control =
        json!({"metrics": [{"key": "buy", "event": "pur\u{1f}chase", "aggregation": "conversion"}]});
    assert_error(control, "metrics[0].event: must not contain control characters");

    let defs: Definitions = serde_json::from_value(metric(json!(3600))).unwrap();
    let windowed = &defs.metrics[0];
    let plain = crate::model::MetricDef { window_seconds: None, ..windowed.clone() };
    assert_ne!(windowed.stream(), plain.stream());
    let parsed = |m: &crate::model::MetricDef| {
        let key = m.stream();
        let s = Stream::parse(&key);
        (s.event.to_owned(), s.span)
    };
    assert_eq!(parsed(windowed), ("purchase".to_owned(), Span::After { window: Some(3600) }));
    assert_eq!(parsed(&plain), ("purchase".to_owned(), Span::After { window: None }));
}

#[test]
fn ratio_metrics_name_their_denominator_and_cuped_reads_the_pre_period() {
    let metric = |m: serde_json::Value| json!({"metrics": [m]});
    let ratio = json!({"key": "rpo", "event": "purchase", "aggregation": "ratio",
                       "ratio": {"denominator_event": "purchase"}});
    assert!(errors(metric(ratio.clone())).is_empty());
    assert_error(
        metric(json!({"key": "rpo", "event": "purchase", "aggregation": "ratio"})),
        "metrics[0].ratio: a ratio metric needs its denominator: {\"denominator_event\": ...}",
    );
    assert_error(
        metric(json!({"key": "rpo", "event": "purchase", "aggregation": "ratio",
                      "ratio": {"denominator_event": "or\u{1e}der"}})),
        "metrics[0].ratio.denominator_event: must not contain control characters",
    );
    assert_error(
        metric(json!({"key": "s", "event": "purchase", "aggregation": "sum",
                      "ratio": {"denominator_event": "order"}})),
        "metrics[0].ratio: only ratio metrics have a ratio (this one is sum)",
    );
    assert_error(
        metric(json!({"key": "m", "event": "purchase", "aggregation": "mean",
                      "cuped": {"pre_period_seconds": 86400}})),
        "metrics[0].cuped: CUPED adjusts conversion, count and sum metrics, not mean metrics",
    );
    assert_error(
        metric(json!({"key": "s", "event": "purchase", "aggregation": "sum",
                      "cuped": {"pre_period_seconds": 0}})),
        "metrics[0].cuped.pre_period_seconds: 0 must be 1 to 31622400 seconds (a year)",
    );

    let defs: Definitions = serde_json::from_value(metric(ratio)).unwrap();
    let r = &defs.metrics[0];
    let ratio = r.ratio.as_ref().unwrap();
    assert_eq!((ratio.numerator, ratio.denominator), (Measure::Sum, Measure::Count));
    // Revenue per order reads one stream twice: its pair is the stream with itself.
    assert_eq!(r.streams(), vec!["purchase".to_owned(), "purchase".to_owned()]);
    assert_eq!(r.stream_pairs(), vec![("purchase".to_owned(), "purchase".to_owned())]);

    let defs: Definitions = serde_json::from_value(metric(json!({"key": "s", "event": "purchase",
        "aggregation": "sum", "window_seconds": 60, "cuped": {"pre_period_seconds": 1209600}})))
    .unwrap();
    let c = &defs.metrics[0];
    let pre = c.pre_period_stream().unwrap();
    assert_eq!(Stream::parse(&pre), Stream { event: "purchase", span: Span::Before { seconds: 1_209_600 } });
    assert_eq!(c.stream_pairs(), vec![(pre, c.stream())]);
}

mod holdouts {
    //! Holdouts: each rule, reported at the field at fault.

    use serde_json::{Value, json};

    use super::{assert_error, errors, experiment, flag};

    fn holdout(key: &str, n: u8, extra: Value) -> Value {
        let mut h =
            json!({"id": format!("00000000-0000-4000-8000-0000000001{n:02x}"), "key": key, "share_bp": 500});
        for (k, v) in extra.as_object().unwrap() {
            h[k] = v.clone();
        }
        h
    }

    /// Experiments `a` (layer `one`), `b` (layer `two`), metric `m`, flag `f`, and `holdouts`.
    fn defs(holdouts: Value) -> Value {
        json!({
            "flags": [flag("f")],
            "experiments": [experiment("a", &[5000, 5000]), experiment("b", &[5000, 5000])],
            "layers": [
                {"key": "one", "salt": "one", "experiments": [{"experiment": "a", "range": [0, 5000]}]},
                {"key": "two", "salt": "two", "experiments": [{"experiment": "b", "range": [0, 5000]}]},
            ],
            "metrics": [{"key": "m", "event": "purchase", "aggregation": "conversion"}],
            "holdouts": holdouts,
        })
    }

    #[test]
    fn a_valid_holdout_compiles() {
        let h = holdout(
            "h",
            1,
            json!({"layers": ["one", "two"], "metrics": ["m"], "salt": "hs",
                                       "minimum_detectable_effect": 0.02}),
        );
        assert_eq!(
            errors(defs(json!([h, holdout("off", 2, json!({"enabled": false}))]))),
            Vec::<String>::new()
        );
    }

    #[test]
    fn the_share_is_one_basis_point_to_half() {
        for bp in [0, 5001, 6000] {
            assert_error(
                defs(json!([holdout("h", 1, json!({"share_bp": bp}))])),
                &format!("holdouts[0].share_bp: {bp} must be 1 to 5000 basis points"),
            );
        }
        assert_eq!(errors(defs(json!([holdout("h", 1, json!({"share_bp": 5000}))]))), Vec::<String>::new());
    }

    #[test]
    fn keys_name_one_thing() {
        assert_error(
            defs(json!([holdout("bad key", 1, json!({}))])),
            "holdouts[0].key: \"bad key\" must start with a letter or digit and contain only letters, digits and _ - . :",
        );
        assert_error(
            defs(json!([holdout("a", 1, json!({}))])),
            "holdouts[0].key: duplicate key \"a\", already used by experiments[0]",
        );
        assert_error(
            defs(json!([holdout("f", 1, json!({}))])),
            "holdouts[0].key: duplicate key \"f\", already used by flags[0]",
        );
        assert_error(
            defs(json!([
                holdout("h", 1, json!({"enabled": false})),
                holdout("h", 2, json!({"enabled": false}))
            ])),
            "holdouts[1].key: duplicate holdout key \"h\", first used by holdouts[0]",
        );
    }

    #[test]
    fn ids_are_not_shared_with_experiments_or_holdouts() {
        let mut h = holdout("h", 1, json!({}));
        h["id"] = experiment("a", &[])["id"].clone();
        let id = h["id"].as_str().unwrap().to_owned();
        assert_error(
            defs(json!([h])),
            &format!("holdouts[0].id: duplicate id {id}, already used by experiments[0]"),
        );
    }

    #[test]
    fn layers_and_metrics_must_exist() {
        assert_error(
            defs(json!([holdout("h", 1, json!({"layers": ["one", "nope"]}))])),
            "holdouts[0].layers[1]: unknown layer \"nope\"",
        );
        assert_error(
            defs(json!([holdout("h", 1, json!({"layers": ["one", "one"]}))])),
            "holdouts[0].layers[1]: layer \"one\" is listed twice",
        );
        assert_error(
            defs(json!([holdout("h", 1, json!({"metrics": ["m", "nope"]}))])),
            "holdouts[0].metrics[1]: unknown metric \"nope\"",
        );
    }

    #[test]
    fn salts_and_effects_are_checked() {
        assert_error(
            defs(json!([holdout("h", 1, json!({"salt": ""}))])),
            "holdouts[0].salt: \"\" is not a valid salt: 1 to 64 characters of A-Z a-z 0-9 _ -",
        );
        assert_error(
            defs(json!([holdout("h", 1, json!({"minimum_detectable_effect": 0.0}))])),
            "holdouts[0].minimum_detectable_effect: 0 must be a relative effect above 0 and at most 10 (1000 %)",
        );
    }

    #[test]
    fn an_experiment_is_in_one_enabled_holdout_at_most() {
        let rule = "an experiment may be in the scope of one enabled holdout at most";
        // Two environment-wide holdouts: each is told of the other.
        let errs = errors(defs(json!([holdout("h1", 1, json!({})), holdout("h2", 2, json!({}))])));
        for (i, other) in [(0, "h2"), (1, "h1")] {
            let expected = format!(
                "holdouts[{i}].layers: with no layers it covers every experiment, and enabled holdout \
                 {other:?} covers some of them; {rule}"
            );
            assert!(errs.contains(&expected), "{expected:?} among {errs:#?}");
        }
        // An environment-wide holdout and a layer holdout.
        assert_error(
            defs(json!([holdout("wide", 1, json!({})), holdout("l", 2, json!({"layers": ["two"]}))])),
            &format!(
                "holdouts[1].layers: enabled holdout \"wide\" has no layers, so it covers every experiment already; {rule}"
            ),
        );
        // Two holdouts sharing a layer.
        assert_error(
            defs(json!([
                holdout("l1", 1, json!({"layers": ["one"]})),
                holdout("l2", 2, json!({"layers": ["two", "one"]})),
            ])),
            &format!("holdouts[1].layers[1]: layer \"one\" is also in enabled holdout \"l1\"; {rule}"),
        );
        // Disjoint layers, or a disabled one, are fine.
        let ok = [
            json!([
                holdout("l1", 1, json!({"layers": ["one"]})),
                holdout("l2", 2, json!({"layers": ["two"]}))
            ]),
            json!([
                holdout("wide", 1, json!({})),
                holdout("l", 2, json!({"layers": ["one"], "enabled": false}))
            ]),
            json!([holdout("w1", 1, json!({})), holdout("w2", 2, json!({"enabled": false}))]),
        ];
        for holdouts in ok {
            assert_eq!(errors(defs(holdouts.clone())), Vec::<String>::new(), "{holdouts}");
        }
    }

    #[test]
    fn nul_characters_in_holdouts_are_refused() {
        assert_error(
            defs(json!([holdout("h", 1, json!({"description": "a\u{0}b"}))])),
            "holdouts[0].description: contains a NUL character (\\u0000), which cannot be stored",
        );
    }
}

#[test]
fn a_number_flag_with_a_fraction_writes_every_value_as_a_float() {
    let flag = |values: &[serde_json::Value]| {
        let variations: Vec<_> =
            values.iter().enumerate().map(|(i, v)| json!({"key": format!("v{i}"), "value": v})).collect();
        json!({"flags": [{"key": "n", "type": "number", "salt": "s", "variations": variations,
                          "off_variation": "v0", "default": {"variation": "v0"}}]})
    };
    let texts = |defs: serde_json::Value| {
        let config = compile(&serde_json::from_value(defs).unwrap()).unwrap();
        let decision = crate::evaluate(&config, &crate::Context::new("u"), "n");
        decision.value_json.unwrap().to_owned()
    };
    assert_eq!(texts(flag(&[json!(10), json!(50.5)])), "10.0");
    assert_eq!(texts(flag(&[json!(10), json!(50)])), "10");
}

fn split_flag(targeting: serde_json::Value, experiment: serde_json::Value) -> serde_json::Value {
    json!({
        "metrics": [{"key": "buys", "event": "buy", "aggregation": "conversion"}],
        "flags": [{
            "key": "price", "type": "string",
            "variations": [{"key": "a", "value": "A"}, {"key": "b", "value": "B"}, {"key": "c", "value": "C"}],
            "default": {"variation": "a"}, "targeting": targeting, "experiment": experiment,
        }],
    })
}

#[test]
fn a_flag_experiment_needs_one_written_out_split_and_known_metrics() {
    let x = json!({"id": uuid_for("x"), "metrics": ["buys"]});
    let split = json!({"fractional": [["a", 1], ["b", 1], ["c", 1]]});
    assert_eq!(errors(split_flag(split.clone(), x.clone())), Vec::<String>::new());
    let need = "flags[0].experiment: analysing a flag needs one fractional split in its targeting that decides \
                the result, with written-out variations and weights";
    // None, two, computed weights, a split that is only a condition.
    assert_error(split_flag(json!({"if": [true, "a", "b"]}), x.clone()), need);
    assert_error(split_flag(json!({"if": [{"var": "x"}, split.clone(), split.clone()]}), x.clone()), need);
    assert_error(split_flag(json!({"fractional": [["a", {"var": "w"}], ["b", 1]]}), x.clone()), need);
    assert_error(
        split_flag(json!({"if": [{"fractional": [[true, 1], [false, 1]]}, "a", "b"]}), x.clone()),
        need,
    );
    assert_error(
        split_flag(json!({"fractional": [["a", 1], ["b", 0]]}), x.clone()),
        "flags[0].experiment: the split gives every unit one variation: there is nothing to compare",
    );
    assert_error(
        split_flag(split.clone(), json!({"id": uuid_for("x"), "metrics": ["nope"], "control": "z"})),
        "flags[0].experiment.metrics[0]: unknown metric \"nope\"",
    );
    assert_error(
        split_flag(split.clone(), json!({"id": uuid_for("x"), "metrics": ["buys"], "control": "z"})),
        "flags[0].experiment.control: \"z\" is not a variation the split assigns",
    );
    let mut clash = split_flag(split, x);
    clash["experiments"] = json!([experiment("e", &[5000, 5000])]);
    clash["experiments"][0]["id"] = json!(uuid_for("x"));
    assert_error(
        clash,
        &format!("experiments[0].id: duplicate experiment id {}, first used by flags[0]", uuid_for("x")),
    );
}

#[test]
fn a_flag_experiment_is_analysed_as_an_experiment_with_basis_point_weights() {
    let defs: Definitions = serde_json::from_value(split_flag(
        json!({"fractional": [["a", 1], ["b", 1], ["c", 1]]}),
        json!({"id": uuid_for("x"), "metrics": ["buys"], "control": "b"}),
    ))
    .unwrap();
    let e = crate::flag_experiment(&defs.flags[0]).unwrap();
    assert_eq!(e.key, "price");
    let variants: Vec<(&str, u32, bool)> =
        e.variants.iter().map(|v| (v.key.as_str(), v.weight_bp, v.control)).collect();
    // 10000 / 3 = 3333 r 1: the remainders tie, so the first gets the spare point.
    assert_eq!(variants, [("a", 3334, false), ("b", 3333, true), ("c", 3333, false)]);
    assert_eq!(e.primary_metrics, ["buys"]);
    let config = compile(&defs).unwrap();
    let compiled = config.flag("price").unwrap().experiment().unwrap();
    assert_eq!(compiled.control_variant(), "b");
    assert_eq!(compiled.id().to_string(), uuid_for("x"));
}
