//! The operators one by one, on values worked out by hand from jsonlogic.com's and flagd's
//! documentation; write-time errors with their paths.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::*;
use crate::context::Context;

/// Evaluates `logic` as an operand (not a result) and renders the value as JSON; an abort is
/// the string "<abort>".
fn run_at(logic: Value, ctx: &Context, now: Option<i64>) -> Value {
    let evaluators = BTreeMap::new();
    let mut c = LogicCompiler {
        evaluators: &evaluators,
        evaluators_path: "evaluators",
        variants: &[],
        errors: Vec::new(),
        nodes: 0,
        refs: Vec::new(),
        used: HashSet::new(),
        reads_clock: false,
        splits: Vec::new(),
        open_splits: 0,
    };
    let expr = c.expr(&logic, "t", 0, false);
    assert!(c.errors.is_empty(), "{logic}: {:?}", c.errors);
    let expr = expr.expect("compiles");
    let env = Env { ctx, flag_key: "flag", now };
    match eval(&expr, &env) {
        Ok(v) => render(&v),
        Err(Abort) => json!("<abort>"),
    }
}

fn run(logic: Value) -> Value {
    run_at(logic, &ctx(), None)
}

fn render(v: &Val<'_>) -> Value {
    match v {
        Val::Null => Value::Null,
        Val::Bool(b) => json!(b),
        Val::Num(n) if n.fract() == 0.0 && n.abs() < 1e15 => json!(*n as i64),
        Val::Num(n) => json!(n),
        Val::Str(s) => json!(s),
        Val::Owned(s) => json!(s),
        Val::List(l) => json!(l),
        Val::Json(j) => (*j).clone(),
        Val::Items(items) => Value::Array(items.iter().map(render).collect()),
        Val::Variant(i) | Val::Split(i) => json!(format!("variant #{i}")),
    }
}

fn ctx() -> Context {
    Context::new("user-1")
        .with("email", "ann@example.com")
        .with("age", 41)
        .with("plan", "pro")
        .with("beta", true)
        .with("empty", "")
        .with("zero", 0)
        .with("tags", vec!["a", "b"])
        .with("user.name", "ann")
        .with("version", "2.1.0")
}

fn errors(logic: Value, variants: &[&str]) -> Vec<String> {
    errors_with(logic, variants, BTreeMap::new())
}

fn errors_with(logic: Value, variants: &[&str], evaluators: BTreeMap<String, Value>) -> Vec<String> {
    match compile_targeting(&logic, "t", &evaluators, "e", variants) {
        Ok(_) => Vec::new(),
        Err(e) => e.into_iter().map(|e| format!("{}: {}", e.path, e.message)).collect(),
    }
}

#[test]
fn var_reads_attributes_dotted_names_defaults_and_flagd_properties() {
    assert_eq!(run(json!({"var": "email"})), json!("ann@example.com"));
    assert_eq!(run(json!({"var": ["email"]})), json!("ann@example.com"));
    assert_eq!(run(json!({"var": "user.name"})), json!("ann"));
    assert_eq!(run(json!({"var": "tags.1"})), json!("b"));
    assert_eq!(run(json!({"var": "missing"})), Value::Null);
    assert_eq!(run(json!({"var": ["missing", "fallback"]})), json!("fallback"));
    // A default applies only to what is missing, not to falsy values.
    assert_eq!(run(json!({"var": ["zero", 7]})), json!(0));
    assert_eq!(run(json!({"var": "targetingKey"})), json!("user-1"));
    assert_eq!(run(json!({"var": "$flagd.flagKey"})), json!("flag"));
    assert_eq!(run_at(json!({"var": "$flagd.timestamp"}), &ctx(), Some(1_700_000_000)), json!(1_700_000_000));
    assert_eq!(run(json!({"var": "$flagd.timestamp"})), Value::Null);
    // An attribute named targetingKey wins over the context's targeting key.
    let shadowed = Context::new("u").with("targetingKey", "attr");
    assert_eq!(run_at(json!({"var": "targetingKey"}), &shadowed, None), json!("attr"));
    assert_eq!(run_at(json!({"var": "targetingKey"}), &Context::anonymous(), None), Value::Null);
}

#[test]
fn if_chains_and_falls_through_to_null() {
    assert_eq!(run(json!({"if": [true, "yes", "no"]})), json!("yes"));
    assert_eq!(run(json!({"if": [false, "yes", "no"]})), json!("no"));
    assert_eq!(run(json!({"if": [false, "a", false, "b", "c"]})), json!("c"));
    assert_eq!(run(json!({"if": [false, "a", false, "b"]})), Value::Null);
    assert_eq!(run(json!({"if": [false, "a"]})), Value::Null);
    assert_eq!(run(json!({"if": []})), Value::Null);
    assert_eq!(run(json!({"?:": [{"var": "beta"}, 1, 2]})), json!(1));
    // Zero values are falsy: 0, "", [], null; {} is truthy.
    for falsy in [json!(0), json!(""), json!([]), Value::Null, json!(false)] {
        assert_eq!(run(json!({"if": [falsy, "t", "f"]})), json!("f"), "{falsy}");
    }
    assert_eq!(run(json!({"if": [{}, "t", "f"]})), json!("t"));
    assert_eq!(run(json!({"if": [{"var": "empty"}, "t", "f"]})), json!("f"));
}

#[test]
fn equality_coerces_and_strict_equality_does_not() {
    let cases = [
        (json!({"==": [1, 1]}), true),
        (json!({"==": [1, "1"]}), true),
        (json!({"==": [0, ""]}), true),
        (json!({"==": [0, "0"]}), true),
        (json!({"==": ["", "0"]}), false),
        (json!({"==": [true, 1]}), true),
        (json!({"==": [true, "1"]}), true),
        (json!({"==": [false, "0"]}), true),
        (json!({"==": [null, 0]}), false),
        (json!({"==": [null, null]}), true),
        (json!({"==": [{"var": "missing"}, null]}), true),
        (json!({"==": [1, [1]]}), true),
        (json!({"==": ["a,b", {"var": "tags"}]}), true),
        (json!({"==": [{"var": "age"}, "41"]}), true),
        (json!({"===": [1, 1]}), true),
        (json!({"===": [1, "1"]}), false),
        (json!({"===": [null, null]}), true),
        (json!({"===": [[1], [1]]}), false),
        (json!({"!=": [1, 2]}), true),
        (json!({"!=": [1, "1"]}), false),
        (json!({"!==": [1, 2]}), true),
        (json!({"!==": [1, "1"]}), true),
        (json!({"==": [{"var": "email"}, "ann@example.com"]}), true),
    ];
    for (logic, want) in cases {
        assert_eq!(run(logic.clone()), json!(want), "{logic}");
    }
}

#[test]
fn comparisons_between_forms_and_strings() {
    let cases = [
        (json!({"<": [1, 2]}), true),
        (json!({"<": [2, 1]}), false),
        (json!({"<=": [1, 1]}), true),
        (json!({">": [2, 1]}), true),
        (json!({">=": [1, 1]}), true),
        (json!({"<": [1, 5, 10]}), true),
        (json!({"<": [1, 11, 10]}), false),
        (json!({"<": [1, 1, 10]}), false),
        (json!({"<=": [1, 1, 10]}), true),
        (json!({"<=": [1, 11, 10]}), false),
        (json!({"<": ["a", "b"]}), true),
        (json!({"<": ["10", "9"]}), true),
        (json!({"<": ["10", 9]}), false),
        (json!({"<": [{"var": "missing"}, 1]}), true),
        (json!({"<": ["abc", 1]}), false),
        (json!({">=": ["abc", 1]}), false),
        (json!({">": [{"var": "age"}, 40]}), true),
        (json!({"<": [18, {"var": "age"}, 65]}), true),
        (json!({"<": [{"var": "age"}, 18, 65]}), false),
    ];
    for (logic, want) in cases {
        assert_eq!(run(logic.clone()), json!(want), "{logic}");
    }
    assert_eq!(
        run_at(json!({">": [{"var": "$flagd.timestamp"}, 1_600_000_000]}), &ctx(), Some(1_700_000_000)),
        json!(true)
    );
    assert_eq!(run(json!({">": [{"var": "$flagd.timestamp"}, 1_600_000_000]})), json!(false));
}

#[test]
fn and_or_return_operands_and_not_negates() {
    assert_eq!(run(json!({"and": [true, "x", 3]})), json!(3));
    assert_eq!(run(json!({"and": [true, "", 3]})), json!(""));
    assert_eq!(run(json!({"or": [false, 0, "x"]})), json!("x"));
    assert_eq!(run(json!({"or": [false, 0]})), json!(0));
    assert_eq!(run(json!({"!": [true]})), json!(false));
    assert_eq!(run(json!({"!": ""})), json!(true));
    assert_eq!(run(json!({"!": [[]]})), json!(true));
    assert_eq!(run(json!({"!!": ["mike"]})), json!(true));
    assert_eq!(run(json!({"!!": [""]})), json!(false));
    assert_eq!(run(json!({"!!": [{"var": "missing"}]})), json!(false));
    assert_eq!(run(json!({"!!": [{"var": "zero"}]})), json!(false));
}

#[test]
fn in_is_substring_or_membership() {
    let cases = [
        (json!({"in": ["Spring", "Springfield"]}), true),
        (json!({"in": ["Illinois", "Springfield"]}), false),
        (json!({"in": ["Mike", ["Bob", "Mike"]]}), true),
        (json!({"in": ["Todd", ["Bob", "Mike"]]}), false),
        (json!({"in": ["@example.com", {"var": "email"}]}), true),
        (json!({"in": [{"var": "plan"}, ["free", "pro"]]}), true),
        (json!({"in": [{"var": "missing"}, ["free", "pro"]]}), false),
        (json!({"in": [1, [1, 2]]}), true),
        (json!({"in": ["1", [1, 2]]}), false),
        (json!({"in": [1, "a1"]}), true),
        (json!({"in": ["", ""]}), false),
        (json!({"in": ["a", {"var": "tags"}]}), true),
        (json!({"in": ["c", {"var": "tags"}]}), false),
        (json!({"in": ["x", 5]}), false),
        (json!({"in": [{"var": "plan"}, [{"var": "plan"}, "other"]]}), true),
    ];
    for (logic, want) in cases {
        assert_eq!(run(logic.clone()), json!(want), "{logic}");
    }
}

#[test]
fn cat_and_substr_follow_javascript() {
    assert_eq!(run(json!({"cat": ["I love", " pie"]})), json!("I love pie"));
    assert_eq!(run(json!({"cat": ["n=", 1, " ", 1.5, " ", true, " ", null]})), json!("n=1 1.5 true "));
    assert_eq!(
        run(json!({"cat": [{"var": "$flagd.flagKey"}, {"var": "targetingKey"}]})),
        json!("flaguser-1")
    );
    assert_eq!(
        run(json!({"cat": [1e21, " ", 1e-7, " ", 0.000001, " ", -0.0]})),
        json!("1e+21 1e-7 0.000001 0")
    );
    assert_eq!(run(json!({"substr": ["jsonlogic", 4]})), json!("logic"));
    assert_eq!(run(json!({"substr": ["jsonlogic", -5]})), json!("logic"));
    assert_eq!(run(json!({"substr": ["jsonlogic", 1, 3]})), json!("son"));
    assert_eq!(run(json!({"substr": ["jsonlogic", 4, -2]})), json!("log"));
    assert_eq!(run(json!({"substr": ["jsonlogic", 0, -20]})), json!(""));
    assert_eq!(run(json!({"substr": ["abc", 10]})), json!(""));
    assert_eq!(run(json!({"substr": [{"var": "email"}, -11]})), json!("example.com"));
    assert_eq!(run(json!({"substr": [12345, 1, 2]})), json!("23"));
}

#[test]
fn starts_and_ends_with_abort_on_non_strings() {
    assert_eq!(run(json!({"starts_with": ["192.168.0.1", "192.168"]})), json!(true));
    assert_eq!(run(json!({"starts_with": ["10.0.0.1", "192.168"]})), json!(false));
    assert_eq!(run(json!({"ends_with": [{"var": "email"}, "@example.com"]})), json!(true));
    assert_eq!(run(json!({"ends_with": [{"var": "email"}, "@test.com"]})), json!(false));
    assert_eq!(run(json!({"ends_with": [{"var": "age"}, "1"]})), json!("<abort>"));
    assert_eq!(run(json!({"starts_with": [{"var": "missing"}, "a"]})), json!("<abort>"));
    // The abort is not a false: it escapes `!` and `if` alike.
    assert_eq!(run(json!({"!": {"starts_with": [{"var": "missing"}, "a"]}})), json!("<abort>"));
    assert_eq!(run(json!({"if": [{"ends_with": [{"var": "age"}, "1"]}, "a", "b"]})), json!("<abort>"));
    // ...unless it is never evaluated.
    assert_eq!(run(json!({"or": [true, {"ends_with": [{"var": "age"}, "1"]}]})), json!(true));
}

#[test]
fn sem_ver_compares_lenient_versions_and_aborts_on_bad_ones() {
    let v = |version: &str, op: &str, other: Value| {
        run_at(json!({"sem_ver": [{"var": "v"}, op, other]}), &Context::new("u").with("v", version), None)
    };
    let cases = [
        ("1.1.2", ">=", json!("1.0.0"), json!(true)),
        ("2.0.0", "=", json!("2.0.0"), json!(true)),
        ("2.0.0", "!=", json!("2.0.1"), json!(true)),
        ("2.1.0", ">", json!("2.0.0"), json!(true)),
        ("1.9.0", "<", json!("2.0.0"), json!(true)),
        ("2.0.0-alpha", "<", json!("2.0.0"), json!(true)),
        ("2.0.0-alpha", "<", json!("2.0.0-beta"), json!(true)),
        ("2.0.0", "<=", json!("2.0.0"), json!(true)),
        ("v1.0.0", "=", json!("1.0.0"), json!(true)),
        ("V1.0.0", "=", json!("v1.0.0"), json!(true)),
        ("1.0", "=", json!("1.0.0"), json!(true)),
        ("1", "=", json!("1.0.0"), json!(true)),
        ("1.0.0+build.5", "=", json!("1.0.0"), json!(true)),
        ("1.0.0+a", "=", json!("1.0.0+b"), json!(true)),
        ("3.0.1", "~", json!("3.0.0"), json!(true)),
        ("3.1.0", "~", json!("3.0.0"), json!(false)),
        ("3.1.0", "^", json!("3.0.0"), json!(true)),
        ("4.0.0", "^", json!("3.0.0"), json!(false)),
        ("1.5.0", "^", json!("1"), json!(true)),
        ("1.2.0", ">", json!(1.1), json!(true)),
        ("2.0.0.0", "=", json!("2.0.0"), json!("<abort>")),
        ("not-a-version", "=", json!("1.0.0"), json!("<abort>")),
    ];
    for (version, op, other, want) in cases {
        assert_eq!(v(version, op, other.clone()), want, "{version} {op} {other}");
    }
    let numeric = Context::new("u").with("v", 1);
    assert_eq!(run_at(json!({"sem_ver": [{"var": "v"}, "^", "1.2.3"]}), &numeric, None), json!(true));
    assert_eq!(run(json!({"sem_ver": [{"var": "missing"}, "=", "1.0.0"]})), json!("<abort>"));
}

/// MurmurHash3 x86_32 (seed 0) preimages of the boundary values, published with flagd's
/// conformance suite (open-feature/flagd-testbed, `fractional-hash-edge-flag`): 0, 1,
/// 2^31 - 1, 2^31 and 2^32 - 1.
const EDGES: [(&str, u32); 5] = [
    ("ejOoVL", 0),
    ("bY9fO-", 1),
    ("SI7p-", 2_147_483_647),
    ("6LvT0", 2_147_483_648),
    ("ceQdGm", 4_294_967_295),
];

#[test]
fn fractional_maps_hashes_onto_cumulative_weights() {
    for (key, hash) in EDGES {
        assert_eq!(crate::hash::hash32(key.as_bytes()), hash, "{key}");
    }
    // [a 1, b 2, c 1]: total 4, point = hash >> 30, so a below 2^30, b to 3 * 2^30, c above.
    let split = json!({"fractional": [{"var": "k"}, ["a", 1], ["b", 2], ["c", 1]]});
    let expected = ["a", "a", "b", "b", "c"];
    for ((key, _), want) in EDGES.iter().zip(expected) {
        assert_eq!(run_at(split.clone(), &Context::new("u").with("k", *key), None), json!(want), "{key}");
    }
    // 50/50: points 0, 0, 49, 50, 99.
    let halves = json!({"fractional": [{"var": "k"}, ["lower", 50], ["upper", 50]]});
    for ((key, _), want) in EDGES.iter().zip(["lower", "lower", "lower", "upper", "upper"]) {
        assert_eq!(run_at(halves.clone(), &Context::new("u").with("k", *key), None), json!(want), "{key}");
    }
}

#[test]
fn fractional_shorthand_default_key_and_errors() {
    // Without a bucketing expression the key is the flag key followed by the targeting key:
    // "flag" + "ejOoVL" is not a preimage of anything special, so compare with the hash.
    let ctx = Context::new("ejOoVL");
    let h = crate::hash::hash32(b"flagejOoVL");
    let want = if (u64::from(h) * 2) >> 32 == 0 { "heads" } else { "tails" };
    assert_eq!(run_at(json!({"fractional": [["heads"], ["tails", 1]]}), &ctx, None), json!(want));
    // A bucketing expression that yields no string falls back to the same key.
    assert_eq!(
        run_at(json!({"fractional": [{"var": "missing"}, ["heads"], ["tails", 1]]}), &ctx, None),
        json!(want)
    );
    // ...and with no targeting key either, the operator aborts.
    assert_eq!(
        run_at(json!({"fractional": [{"var": "missing"}, ["a", 1]]}), &Context::anonymous(), None),
        json!("<abort>")
    );
    // A single bucket always wins; negative weights count as zero; float weights truncate.
    assert_eq!(run(json!({"fractional": [["only", 1]]})), json!("only"));
    assert_eq!(run(json!({"fractional": [{"var": "email"}, ["one", -50], ["two", 100]]})), json!("two"));
    assert_eq!(run(json!({"fractional": [{"var": "email"}, ["one", 0.9], ["two", 1.5]]})), json!("two"));
    // Computed weights and variants.
    let tiered = json!({"fractional": [{"var": "email"}, ["red", {"if": [{"==": [{"var": "plan"}, "pro"]}, 100, 0]}], ["blue", 0]]});
    assert_eq!(run(tiered), json!("red"));
    let zero = json!({"fractional": [{"var": "email"}, ["red", {"var": "zero"}], ["blue", {"var": "zero"}]]});
    assert_eq!(run(zero), json!("<abort>"));
    assert_eq!(run(json!({"fractional": [{"var": "email"}, [{"var": "plan"}, 1]]})), json!("pro"));
    // As a condition: its buckets may be booleans.
    assert_eq!(run(json!({"if": [{"fractional": [[false, 0], [true, 100]]}, "big", "small"]})), json!("big"));
}

#[test]
fn decide_maps_results_onto_variants() {
    let variants = ["on", "off", "true", "false"];
    let decide_with = |logic: Value, ctx: &Context| {
        let t = compile_targeting(&logic, "t", &BTreeMap::new(), "e", &variants).unwrap().unwrap();
        let env = Env { ctx, flag_key: "flag", now: None };
        decide(&t.expr, &env, |name| variants.iter().position(|v| *v == name))
    };
    let c = ctx();
    assert_eq!(decide_with(json!({"if": [true, "on", "off"]}), &c), Outcome::Variant(0));
    assert_eq!(decide_with(json!({"if": [false, "on", null]}), &c), Outcome::Default);
    assert_eq!(
        decide_with(json!({"ends_with": [{"var": "email"}, "@example.com"]}), &c),
        Outcome::Variant(2)
    );
    assert_eq!(decide_with(json!({"ends_with": [{"var": "email"}, "@x.com"]}), &c), Outcome::Variant(3));
    assert_eq!(decide_with(json!({"var": "plan"}), &c), Outcome::Invalid);
    assert_eq!(decide_with(json!({"cat": ["o", "n"]}), &c), Outcome::Variant(0));
    assert_eq!(decide_with(json!({"var": "age"}), &c), Outcome::Invalid);
    assert_eq!(
        decide_with(json!({"if": [{"sem_ver": [{"var": "email"}, "=", "1.0.0"]}, "on", "off"]}), &c),
        Outcome::Default
    );
    assert!(compile_targeting(&json!({}), "t", &BTreeMap::new(), "e", &variants).unwrap().is_none());
}

#[test]
fn refs_expand_evaluators_and_report_missing_cycles_and_unused() {
    let evaluators: BTreeMap<String, Value> = [
        ("staff".to_owned(), json!({"ends_with": [{"var": "email"}, "@example.com"]})),
        ("loop".to_owned(), json!({"$ref": "loop"})),
    ]
    .into();
    let t = compile_targeting(
        &json!({"if": [{"$ref": "staff"}, "on", "off"]}),
        "t",
        &evaluators,
        "e",
        &["on", "off"],
    );
    // "loop" is unused and refers to itself, but only what the targeting reaches is expanded.
    assert_eq!(t.unwrap_err().iter().map(|e| e.path.as_str()).collect::<Vec<_>>(), ["e[\"loop\"]"]);
    let staff: BTreeMap<String, Value> =
        evaluators.iter().filter(|(k, _)| *k == "staff").map(|(k, v)| (k.clone(), v.clone())).collect();
    let t =
        compile_targeting(&json!({"if": [{"$ref": "staff"}, "on", "off"]}), "t", &staff, "e", &["on", "off"]);
    let env = Env { ctx: &ctx(), flag_key: "f", now: None };
    let t = t.unwrap().unwrap();
    assert_eq!(decide(&t.expr, &env, |n| ["on", "off"].iter().position(|v| *v == n)), Outcome::Variant(0));

    assert_eq!(
        errors_with(json!({"$ref": "loop"}), &["on"], [("loop".to_owned(), json!({"$ref": "loop"}))].into()),
        ["e[\"loop\"].$ref: evaluators refer to each other in a cycle: loop -> loop"]
    );
    assert_eq!(
        errors_with(json!({"if": [{"$ref": "nope"}, "on", null]}), &["on"], staff.clone()),
        [
            "t.if[0].$ref: no evaluator named \"nope\" (staff)",
            "e[\"staff\"]: no $ref in the targeting uses this evaluator"
        ]
    );
}

#[test]
fn write_time_errors_name_the_node() {
    assert_eq!(
        errors(json!({"if": [{"sem_ver": [{"var": "v"}, "≈", "1.0.0"]}, "on", "off"]}), &["on", "off"]),
        ["t.if[0].sem_ver[1]: unknown operator \"≈\"; sem_ver compares with =, !=, <, <=, >, >=, ^ or ~"]
    );
    assert_eq!(
        errors(json!({"if": [{"sem_ver": [{"var": "v"}, "=", "1.x"]}, "on", "off"]}), &["on", "off"]),
        ["t.if[0].sem_ver[2]: \"1.x\" is not a semantic version"]
    );
    assert_eq!(
        errors(json!({"invalid": ["x"]}), &["on"])[0].split(';').next().unwrap(),
        "t.invalid: unknown operator \"invalid\""
    );
    assert_eq!(
        errors(json!({"if": [true, "three", "one"]}), &["one", "two"]),
        ["t.if[1]: \"three\" is not a variant of this flag (one, two)"]
    );
    assert_eq!(
        errors(json!({"if": [true, 3, "one"]}), &["one"])[0],
        "t.if[1]: 3 is not a variant: a targeting yields a variant name, true, false or null"
    );
    assert_eq!(
        errors(json!({"starts_with": ["abc"]}), &["true", "false"]),
        ["t.starts_with: starts_with takes 2 operands, not 1"]
    );
    assert_eq!(
        errors(json!({"ends_with": [{"var": "id"}, 3]}), &["true", "false"]),
        ["t.ends_with[1]: 3 is not a string; ends_with compares strings"]
    );
    assert_eq!(errors(json!({">": [1, 2, 3]}), &["true", "false"]), ["t[\">\"]: > takes 2 operands, not 3"]);
    assert_eq!(
        errors(json!({"==": [1, 2], "!=": [1, 2]}), &["true"])[0],
        "t: an operation is an object with one key, the operator; this has !=, =="
    );
    assert_eq!(
        errors(json!({"var": ""}), &["on"]),
        ["t.var[0]: var of the whole context is not supported; name a property"]
    );
    assert_eq!(
        errors(json!({"fractional": [{"var": "k"}, ["a", 0], ["b", 0]]}), &["a", "b"]),
        ["t.fractional: the bucket weights sum to 0; at least one must be positive"]
    );
    assert_eq!(
        errors(json!({"fractional": [{"var": "k"}, ["z", 1]]}), &["a"]),
        ["t.fractional[1][0]: \"z\" is not a variant of this flag (a)"]
    );
    assert_eq!(
        errors(json!({"fractional": [{"var": "k"}, "a"]}), &["a"]),
        ["t.fractional[1]: \"a\" is not a bucket: [variant, weight] or [variant]"]
    );
    assert_eq!(
        errors(json!(true), &["on"]),
        ["t: true stands for the variant \"true\", which this flag does not have"]
    );
    let mut deep = json!("on");
    for _ in 0..=MAX_LOGIC_DEPTH {
        deep = json!({"if": [true, deep, null]});
    }
    assert!(errors(deep, &["on"])[0].ends_with(&format!("operators nest more than {MAX_LOGIC_DEPTH} deep")));
}

#[test]
fn javascript_numbers_parse_and_print() {
    use super::js::{number_to_string, string_to_number};
    for (text, n) in [
        ("12", 12.0),
        (" 12 ", 12.0),
        ("", 0.0),
        ("1e3", 1000.0),
        ("-1.5", -1.5),
        ("0x10", 16.0),
        (".5", 0.5),
        ("5.", 5.0),
        ("Infinity", f64::INFINITY),
    ] {
        assert_eq!(string_to_number(text), n, "{text:?}");
    }
    for text in ["abc", "inf", "nan", "1e", "0x", "1 2", "--1"] {
        assert!(string_to_number(text).is_nan(), "{text:?}");
    }
    for (n, text) in [
        (1.0, "1"),
        (1.5, "1.5"),
        (-0.25, "-0.25"),
        (1e21, "1e+21"),
        (1e20, "100000000000000000000"),
        (1.5e-7, "1.5e-7"),
        (0.000001, "0.000001"),
        (123456789.125, "123456789.125"),
    ] {
        assert_eq!(number_to_string(n), text, "{n}");
    }
}

#[test]
fn evaluators_that_expand_exponentially_stop_at_the_node_limit() {
    // e0 refers to e1 twice, e1 to e2 twice, ...: 2^40 nodes if expanded.
    let evaluators: BTreeMap<String, Value> = (0..40)
        .map(|i| {
            let next = json!({"$ref": format!("e{}", i + 1)});
            (format!("e{i}"), json!({"or": [next.clone(), next]}))
        })
        .chain([("e40".to_owned(), json!({"==": [1, 1]}))])
        .collect();
    // Expanding them all would not finish: that this returns is half the test.
    let errors = errors_with(json!({"if": [{"$ref": "e0"}, "on", null]}), &["on"], evaluators);
    assert!(
        errors.iter().any(|e| e.contains(&format!("more than {MAX_LOGIC_NODES} operators"))),
        "{errors:?}"
    );
}

#[test]
fn literals_are_bounded() {
    let long = "x".repeat(crate::limits::MAX_STRING_BYTES + 1);
    assert!(
        errors(json!({"==": [{"var": "a"}, long]}), &["true", "false"])[0]
            .starts_with("t[\"==\"][1]: is 4097 bytes")
    );
    let many: Vec<u32> = (0..=crate::limits::MAX_LIST_VALUES as u32).collect();
    assert!(
        errors(json!({"in": [{"var": "a"}, many]}), &["true", "false"])[0]
            .starts_with("t.in[1]: 10001 values")
    );
}
