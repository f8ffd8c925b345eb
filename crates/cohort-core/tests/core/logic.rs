//! flagd targeting compiled by cohort-core decides as a straightforward interpreter of the
//! same JSONLogic does, on random expressions and random contexts. The interpreter below walks
//! the JSON on every call, reads the context as flagd sees it (a nested object with
//! `targetingKey` and `$flagd.flagKey`/`$flagd.timestamp` injected) and writes JavaScript's
//! coercions out plainly: nothing is shared with the compiled evaluator.

use cohort_core::model::{FlagDef, FlagType, Serve, Variation};
use cohort_core::{Context, Definitions, ErrorCode, Reason, compile, evaluate_at};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

const FLAG: &str = "flag";

/// The reference: `Err(())` is an operator that could not use its input (null overall).
fn apply(logic: &Value, data: &Value) -> Result<Value, ()> {
    let Value::Object(op) = logic else {
        if let Value::Array(items) = logic {
            return items.iter().map(|i| apply(i, data)).collect::<Result<Vec<_>, _>>().map(Value::Array);
        }
        return Ok(logic.clone());
    };
    if op.is_empty() {
        return Ok(logic.clone());
    }
    let (name, raw) = op.iter().next().unwrap();
    let args: Vec<Value> = match raw {
        Value::Array(a) => a.clone(),
        other => vec![other.clone()],
    };
    let arg = |i: usize| -> Result<Value, ()> { args.get(i).map_or(Ok(Value::Null), |a| apply(a, data)) };
    Ok(match name.as_str() {
        "var" => {
            let path = arg(0)?;
            let path = match &path {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let mut at = data;
            for part in path.split('.') {
                let next = match at {
                    Value::Object(m) => m.get(part),
                    Value::Array(a) => part.parse::<usize>().ok().and_then(|i| a.get(i)),
                    _ => None,
                };
                match next {
                    Some(v) => at = v,
                    None => return arg(1),
                }
            }
            at.clone()
        }
        "if" => {
            let mut i = 0;
            while i + 1 < args.len() {
                if truthy(&arg(i)?) {
                    return arg(i + 1);
                }
                i += 2;
            }
            if i < args.len() { arg(i)? } else { Value::Null }
        }
        "and" | "or" => {
            let mut last = Value::Null;
            for i in 0..args.len() {
                last = arg(i)?;
                if truthy(&last) == (name == "or") {
                    break;
                }
            }
            last
        }
        "!" => json!(!truthy(&arg(0)?)),
        "!!" => json!(truthy(&arg(0)?)),
        "==" => json!(loose(&arg(0)?, &arg(1)?)),
        "!=" => json!(!loose(&arg(0)?, &arg(1)?)),
        "===" => json!(strict(&arg(0)?, &arg(1)?)),
        "!==" => json!(!strict(&arg(0)?, &arg(1)?)),
        "<" | "<=" | ">" | ">=" => {
            let holds = |a: &Value, b: &Value| less(a, b, name).unwrap_or_default();
            let (a, b) = (arg(0)?, arg(1)?);
            let mut r = holds(&a, &b);
            if args.len() == 3 {
                let c = arg(2)?;
                r = r && holds(&b, &c);
            }
            json!(r)
        }
        "in" => {
            let (a, b) = (arg(0)?, arg(1)?);
            json!(match &b {
                Value::String(s) if !s.is_empty() => s.contains(&string_of(&a)),
                Value::Array(items) => items.iter().any(|i| strict(i, &a)),
                _ => false,
            })
        }
        "cat" => {
            let mut out = String::new();
            for i in 0..args.len() {
                let v = arg(i)?;
                if !v.is_null() {
                    out.push_str(&string_of(&v));
                }
            }
            json!(out)
        }
        "substr" => {
            let s: Vec<char> = string_of(&arg(0)?).chars().collect();
            let len = s.len() as i64;
            let int = |v: &Value| {
                let n = number(v);
                if n.is_nan() { 0 } else { n.trunc().clamp(-1e12, 1e12) as i64 }
            };
            let mut start = int(&arg(1)?);
            if start < 0 {
                start = (len + start).max(0);
            }
            let start = start.min(len);
            let end = if args.len() == 3 {
                let l = int(&arg(2)?);
                if l < 0 { (len + l).max(start) } else { (start + l).min(len) }
            } else {
                len
            };
            json!(s[start as usize..end as usize].iter().collect::<String>())
        }
        "starts_with" | "ends_with" => match (arg(0)?, arg(1)?) {
            (Value::String(s), Value::String(p)) => {
                json!(if name == "starts_with" { s.starts_with(&p) } else { s.ends_with(&p) })
            }
            _ => return Err(()),
        },
        "sem_ver" => {
            let version = |v: Value| -> Result<semver::Version, ()> {
                let text = match v {
                    Value::String(s) => s,
                    Value::Number(n) => string_of(&Value::Number(n)),
                    _ => return Err(()),
                };
                let text = text.trim().trim_start_matches(['v', 'V']);
                let (core, rest) = text.split_at(text.find(['-', '+']).unwrap_or(text.len()));
                let padded = match core.split('.').count() {
                    1 => format!("{core}.0.0{rest}"),
                    2 => format!("{core}.0{rest}"),
                    _ => text.to_owned(),
                };
                semver::Version::parse(&padded).map_err(|_| ())
            };
            let (a, op, b) = (version(arg(0)?)?, arg(1)?, version(arg(2)?)?);
            let ord = a.cmp_precedence(&b);
            json!(match op.as_str().ok_or(())? {
                "=" => ord.is_eq(),
                "!=" => ord.is_ne(),
                "<" => ord.is_lt(),
                "<=" => ord.is_le(),
                ">" => ord.is_gt(),
                ">=" => ord.is_ge(),
                "^" => a.major == b.major,
                "~" => a.major == b.major && a.minor == b.minor,
                _ => return Err(()),
            })
        }
        "fractional" => {
            let (key, buckets) = match args.first() {
                Some(Value::Array(_)) => (Value::Null, &args[..]),
                _ => (arg(0)?, &args[1..]),
            };
            let key = match key {
                Value::String(s) => s,
                _ => match data.get("targetingKey") {
                    Some(Value::String(t)) => format!("{FLAG}{t}"),
                    _ => return Err(()),
                },
            };
            let mut weights = Vec::new();
            for b in buckets {
                let w = match b.get(1) {
                    Some(w) => number(&apply(w, data)?),
                    None => 1.0,
                };
                weights.push(if w > 0.0 { w.trunc() as u64 } else { 0 });
            }
            let total: u64 = weights.iter().sum();
            if total == 0 {
                return Err(());
            }
            let point = (u64::from(cohort_core::hash::hash32(key.as_bytes())) * total) >> 32;
            let mut upper = 0;
            let index = weights.iter().position(|w| {
                upper += w;
                point < upper
            });
            apply(&buckets[index.ok_or(())?][0], data)?
        }
        other => panic!("the generator made an operator the reference does not know: {other}"),
    })
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|x| x != 0.0 && !x.is_nan()),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(_) => true,
    }
}

fn string_of(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => {
            let x = n.as_f64().unwrap();
            if x == 0.0 {
                "0".into()
            } else if x.fract() == 0.0 && x.abs() < 1e21 {
                format!("{}", x as i128)
            } else if x.abs() >= 1e21 {
                format!("{x:e}").replace('e', "e+")
            } else {
                format!("{x}")
            }
        }
        Value::String(s) => s.clone(),
        Value::Array(a) => a
            .iter()
            .map(|i| if i.is_null() { String::new() } else { string_of(i) })
            .collect::<Vec<_>>()
            .join(","),
        Value::Object(_) => "[object Object]".into(),
    }
}

fn number(v: &Value) -> f64 {
    match v {
        Value::Null => 0.0,
        Value::Bool(b) => f64::from(u8::from(*b)),
        Value::Number(n) => n.as_f64().unwrap(),
        Value::String(s) => {
            let t = s.trim();
            if t.is_empty() {
                0.0
            } else if t.chars().all(|c| c.is_ascii_digit() || "+-.eE".contains(c)) {
                t.parse().unwrap_or(f64::NAN)
            } else {
                f64::NAN
            }
        }
        Value::Array(_) => number(&Value::String(string_of(v))),
        Value::Object(_) => f64::NAN,
    }
}

fn loose(a: &Value, b: &Value) -> bool {
    let object = |v: &Value| v.is_array() || v.is_object();
    match (a, b) {
        _ if object(a) && object(b) => false,
        (Value::Null, Value::Null) => true,
        (Value::Null, _) | (_, Value::Null) => false,
        (Value::Bool(x), _) => loose(&json!(u8::from(*x)), b),
        (_, Value::Bool(y)) => loose(a, &json!(u8::from(*y))),
        _ if object(a) => loose(&Value::String(string_of(a)), b),
        _ if object(b) => loose(a, &Value::String(string_of(b))),
        (Value::String(x), Value::String(y)) => x == y,
        _ => number(a) == number(b),
    }
}

fn strict(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(_) | Value::Object(_), _) => false,
        _ => a == b,
    }
}

/// `a op b` for `<`, `<=`, `>`, `>=`; `None` when a NaN is involved.
fn less(a: &Value, b: &Value, op: &str) -> Option<bool> {
    let prim =
        |v: &Value| if v.is_array() || v.is_object() { Value::String(string_of(v)) } else { v.clone() };
    let (a, b) = (prim(a), prim(b));
    let ord = match (&a, &b) {
        (Value::String(x), Value::String(y)) => x.cmp(y),
        _ => number(&a).partial_cmp(&number(&b))?,
    };
    Some(match op {
        "<" => ord.is_lt(),
        "<=" => ord.is_le(),
        ">" => ord.is_gt(),
        _ => ord.is_ge(),
    })
}

// ---------------------------------------------------------------------------------------------
// Random expressions and contexts.

fn literal() -> impl Strategy<Value = Value> {
    prop_oneof![
        prop::sample::select(vec![
            "",
            "a",
            "b",
            "1",
            "10",
            "2.0.0",
            "v1.2",
            "pro",
            "@example.com",
            "true",
            "1e3",
            " 5 "
        ])
        .prop_map(|s| json!(s)),
        prop::sample::select(vec![0.0, 1.0, -1.0, 2.5, 10.0, 1e21, 0.5]).prop_map(|n| json!(n)),
        any::<bool>().prop_map(|b| json!(b)),
        Just(Value::Null),
        prop::collection::vec(prop::sample::select(vec!["a", "b", "pro", "1"]), 0..3).prop_map(|l| json!(l)),
    ]
}

fn var() -> impl Strategy<Value = Value> {
    let names = vec![
        "s",
        "n",
        "b",
        "l",
        "user.name",
        "missing",
        "targetingKey",
        "$flagd.flagKey",
        "$flagd.timestamp",
        "l.0",
    ];
    (prop::sample::select(names), prop::option::of(literal())).prop_map(|(name, default)| match default {
        Some(d) => json!({"var": [name, d]}),
        None => json!({"var": name}),
    })
}

/// An operand for the string operators: a string literal or any expression.
fn string_or(e: BoxedStrategy<Value>) -> BoxedStrategy<Value> {
    prop_oneof![prop::sample::select(vec!["", "a", "pro", "@example.com", "x"]).prop_map(|s| json!(s)), e]
        .boxed()
}

fn expr() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![var(), literal()];
    leaf.prop_recursive(4, 48, 4, |inner| {
        let e = inner.clone().boxed();
        let versions =
            prop::sample::select(vec!["1.0.0", "2", "1.2", "v2.0.0-rc.1", "1.0.0+b"]).prop_map(|s| json!(s));
        let bucket = (
            prop_oneof![
                prop::sample::select(vec!["a", "b", "c"]).prop_map(|s| json!(s)),
                any::<bool>().prop_map(|b| json!(b))
            ],
            prop::option::of(0u8..4),
        )
            .prop_map(|(v, w)| match w {
                Some(w) => json!([v, w]),
                None => json!([v]),
            });
        prop_oneof![
            prop::collection::vec(e.clone(), 1..6).prop_map(|a| json!({"if": a})),
            (prop::sample::select(vec!["==", "===", "!=", "!==", ">", ">="]), e.clone(), e.clone())
                .prop_map(|(op, a, b)| json!({op: [a, b]})),
            (prop::sample::select(vec!["<", "<="]), prop::collection::vec(e.clone(), 2..4))
                .prop_map(|(op, a)| json!({op: a})),
            (prop::sample::select(vec!["and", "or"]), prop::collection::vec(e.clone(), 1..4))
                .prop_map(|(op, a)| json!({op: a})),
            (prop::sample::select(vec!["!", "!!"]), e.clone()).prop_map(|(op, a)| json!({op: [a]})),
            (e.clone(), e.clone()).prop_map(|(a, b)| json!({"in": [a, b]})),
            prop::collection::vec(e.clone(), 1..4).prop_map(|a| json!({"cat": a})),
            (e.clone(), -12i32..12, prop::option::of(-12i32..12)).prop_map(|(s, a, b)| match b {
                Some(b) => json!({"substr": [s, a, b]}),
                None => json!({"substr": [s, a]}),
            }),
            (
                prop::sample::select(vec!["starts_with", "ends_with"]),
                string_or(e.clone()),
                string_or(e.clone())
            )
                .prop_map(|(op, a, b)| json!({op: [a, b]})),
            (
                prop_oneof![versions.clone(), e.clone()],
                prop::sample::select(vec!["=", "!=", "<", "<=", ">", ">=", "^", "~"]),
                versions
            )
                .prop_map(|(a, op, b)| json!({"sem_ver": [a, op, b]})),
            (prop::option::of(e.clone()), prop::collection::vec(bucket, 1..4)).prop_map(
                |(key, mut buckets)| {
                    // At least one positive weight, or the file is refused on write.
                    buckets[0] = json!([buckets[0][0].clone(), 1]);
                    let mut args: Vec<Value> = key.into_iter().collect();
                    args.extend(buckets);
                    json!({"fractional": args})
                }
            ),
        ]
    })
}

#[derive(Debug, Clone)]
struct Ctx {
    key: Option<&'static str>,
    s: Option<&'static str>,
    n: Option<f64>,
    b: Option<bool>,
    l: Option<Vec<&'static str>>,
    name: Option<&'static str>,
    now: i64,
}

fn context() -> impl Strategy<Value = Ctx> {
    let strings = vec![
        "",
        "a",
        "b",
        "1",
        "10",
        "2.0.0",
        "v1.2",
        "pro",
        "x@example.com",
        "true",
        "1e3",
        " 5 ",
        "1.0.0+z",
    ];
    (
        prop::option::of(prop::sample::select(vec!["u-1", "u-2", "user-3", ""])),
        prop::option::of(prop::sample::select(strings.clone())),
        prop::option::of(prop::sample::select(vec![0.0, 1.0, -1.0, 2.5, 10.0, 1e21, 0.5])),
        prop::option::of(any::<bool>()),
        prop::option::of(prop::collection::vec(prop::sample::select(vec!["a", "b", "pro", "1"]), 0..3)),
        prop::option::of(prop::sample::select(strings)),
        prop::sample::select(vec![0i64, 1_700_000_000, 2]),
    )
        .prop_map(|(key, s, n, b, l, name, now)| Ctx { key, s, n, b, l, name, now })
}

impl Ctx {
    fn cohort(&self) -> Context {
        let mut c = match self.key {
            Some(k) => Context::new(k),
            None => Context::anonymous(),
        };
        if let Some(s) = self.s {
            c.set("s", s);
        }
        if let Some(n) = self.n {
            c.set("n", n);
        }
        if let Some(b) = self.b {
            c.set("b", b);
        }
        if let Some(l) = &self.l {
            c.set("l", l.clone());
        }
        if let Some(name) = self.name {
            c.set("user.name", name);
        }
        c
    }

    /// The context as flagd's evaluator sees it.
    fn data(&self) -> Value {
        let mut m = Map::new();
        // An empty targeting key is no targeting key (OpenFeature's).
        if let Some(k) = self.key.filter(|k| !k.is_empty()) {
            m.insert("targetingKey".into(), json!(k));
        }
        if let Some(s) = self.s {
            m.insert("s".into(), json!(s));
        }
        if let Some(n) = self.n {
            m.insert("n".into(), json!(n));
        }
        if let Some(b) = self.b {
            m.insert("b".into(), json!(b));
        }
        if let Some(l) = &self.l {
            m.insert("l".into(), json!(l));
        }
        if let Some(name) = self.name {
            m.insert("user".into(), json!({"name": name}));
        }
        m.insert("$flagd".into(), json!({"flagKey": FLAG, "timestamp": self.now}));
        Value::Object(m)
    }
}

fn flag(targeting: Value) -> FlagDef {
    FlagDef {
        key: FLAG.into(),
        flag_type: FlagType::String,
        salt: String::new(),
        enabled: true,
        description: String::new(),
        variations: ["yes", "no", "fallback"].map(|k| Variation { key: k.into(), value: json!(k) }).into(),
        off_variation: None,
        rules: Vec::new(),
        default: Some(Serve::Variation("fallback".into())),
        targeting: Some(targeting),
        evaluators: Default::default(),
        metadata: Map::new(),
        flag_set_metadata: Map::new(),
        experiment: None,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    /// `if E` and `if E == L`, `if E === L`: the compiled targeting decides as the reference.
    #[test]
    fn compiled_targeting_decides_as_the_reference(e in expr(), l in literal(), ctx in context(), form in 0u8..3) {
        let condition = match form {
            0 => e.clone(),
            1 => json!({"==": [e.clone(), l]}),
            _ => json!({"===": [e.clone(), l]}),
        };
        let targeting = json!({"if": [condition.clone(), "yes", "no"]});
        let defs = Definitions { flags: vec![flag(targeting.clone())], ..Definitions::default() };
        let config = match compile(&defs) {
            Ok(c) => c,
            // Literal operands of the wrong type are refused on write; nothing to compare.
            Err(_) => return Ok(()),
        };
        let c = ctx.cohort();
        let d = evaluate_at(&config, &c, FLAG, ctx.now);
        let want = match apply(&targeting, &ctx.data()) {
            Ok(Value::String(v)) => (Some(v), Reason::TargetingMatch, None),
            Ok(Value::Null) | Err(()) => (Some("fallback".to_owned()), Reason::Default, None),
            Ok(other) => panic!("the targeting yields a variant or null, not {other}"),
        };
        prop_assert_eq!((d.variant.map(str::to_owned), d.reason, d.error), want, "{} with {:?}", condition, ctx);
    }
}

#[test]
fn the_reference_and_the_compiled_form_agree_on_a_known_case() {
    // A fixed point for the property: the generator's pieces in one expression.
    let ctx = Ctx {
        key: Some("u-1"),
        s: Some("pro"),
        n: Some(2.5),
        b: Some(true),
        l: Some(vec!["a"]),
        name: Some("ann"),
        now: 2,
    };
    let targeting = json!({"if": [{"and": [{"in": [{"var": "s"}, ["pro", "team"]]}, {"<": [1, {"var": "n"}, 3]}, {"==": [{"var": "user.name"}, "ann"]}]}, "yes", "no"]});
    assert_eq!(apply(&targeting, &ctx.data()), Ok(json!("yes")));
    let config = compile(&Definitions { flags: vec![flag(targeting)], ..Definitions::default() }).unwrap();
    let c = ctx.cohort();
    let d = evaluate_at(&config, &c, FLAG, 2);
    assert_eq!((d.variant, d.reason, d.error), (Some("yes"), Reason::TargetingMatch, None::<ErrorCode>));
}
