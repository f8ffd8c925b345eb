//! flagd's targeting language: JSONLogic (jsonlogic.com) with flagd's operators, compiled once
//! on write into an expression tree and evaluated per request without walking JSON.
//!
//! Values follow JSONLogic's reference implementation (json-logic-js), that is JavaScript's
//! coercions: `==` and `<` convert, `===` does not, `[]`, `""`, `0` and `null` are falsy.
//! flagd's operators (`fractional`, `sem_ver`, `starts_with`, `ends_with`) follow flagd's
//! documentation and conformance suite: given input they cannot use (a version that does not
//! parse, a number where a string belongs, no bucketing key) they make the whole targeting
//! null, so the flag serves its default variant rather than an `if`'s false branch.
//!
//! Everything that can be known on write is checked then, with the path of the offending
//! node: unknown operators, arities, `$ref`s, literal operands of the wrong type, literal
//! results that name no variant. What is left for evaluation cannot fail, only come out null.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;

use serde_json::Value;

use crate::compile::limits::{MAX_LIST_VALUES, MAX_STRING_BYTES};
use crate::condition::parse_semver_lenient;
use crate::context::{AttrValue, Context};
use crate::hash::{fractional_point, hash32, hash32_concat};

mod js;

/// Deepest nesting of operators a targeting may have.
pub const MAX_LOGIC_DEPTH: usize = 64;
/// Most operator nodes in one flag's targeting (evaluators included at each use).
pub const MAX_LOGIC_NODES: usize = 10_000;

/// The flagd context property holding the targeting key.
pub(crate) const TARGETING_KEY_VAR: &str = "targetingKey";

/// A compiled JSONLogic expression.
#[derive(Debug, Clone)]
pub(crate) enum Expr {
    /// A literal: scalars, and arrays or objects of literals.
    Lit(Value),
    /// A literal variant key where the targeting's result is decided, resolved on write.
    Variant(usize),
    /// A written-out variant a `fractional` split assigns as the targeting's result.
    Split(usize),
    /// An array with computed elements.
    Array(Box<[Expr]>),
    Var {
        var: Var,
        default: Option<Box<Expr>>,
    },
    If(Box<[Expr]>),
    And(Box<[Expr]>),
    Or(Box<[Expr]>),
    /// `!` (negate) and `!!`.
    Truth {
        arg: Box<Expr>,
        negate: bool,
    },
    Eq {
        a: Box<Expr>,
        b: Box<Expr>,
        strict: bool,
        negate: bool,
    },
    /// `<`, `<=` (two or three operands: the between forms), `>`, `>=`.
    Rel {
        op: Rel,
        args: Box<[Expr]>,
    },
    In {
        needle: Box<Expr>,
        hay: Box<Expr>,
    },
    /// `in` over a literal list of strings: sorted for binary search.
    InStrings {
        needle: Box<Expr>,
        set: Box<[Box<str>]>,
    },
    Cat(Box<[Expr]>),
    Substr {
        s: Box<Expr>,
        start: Box<Expr>,
        len: Option<Box<Expr>>,
    },
    Affix {
        s: Box<Expr>,
        affix: Box<Expr>,
        ends: bool,
    },
    SemVer {
        a: Box<Expr>,
        op: SemOp,
        b: Box<Expr>,
    },
    Fractional(Box<Fractional>),
}

/// A flag's compiled targeting.
#[derive(Debug, Clone)]
pub(crate) struct Targeting {
    pub(crate) expr: Expr,
    /// It reads `$flagd.timestamp`, so callers pass the time.
    pub(crate) reads_clock: bool,
    /// The `fractional` splits that decide the result with written-out variants and weights:
    /// (variant, weight) per bucket.
    pub(crate) splits: Vec<Vec<(usize, u64)>>,
    /// `fractional` splits that decide the result with computed variants or weights.
    pub(crate) open_splits: usize,
}

/// What `var` reads.
#[derive(Debug, Clone)]
pub(crate) enum Var {
    /// A context attribute (nested objects arrive flattened to dotted names).
    Attr(Box<str>),
    /// `targetingKey`: the attribute of that name, else the context's targeting key.
    TargetingKey,
    /// `$flagd.flagKey`.
    FlagKey,
    /// `$flagd.timestamp`: Unix seconds at evaluation, supplied by the caller.
    Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rel {
    Lt,
    Lte,
    Gt,
    Gte,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SemOp {
    Eq,
    Ne,
    Lt,
    Lte,
    Gt,
    Gte,
    /// `^`: the same major version.
    Major,
    /// `~`: the same major and minor version.
    Minor,
}

#[derive(Debug, Clone)]
pub(crate) struct Fractional {
    /// The bucketing expression; when absent, or when it yields no string, the flag key
    /// followed by the targeting key.
    pub(crate) key: Option<Expr>,
    /// (variant, weight) per bucket; a missing weight is 1.
    pub(crate) buckets: Box<[(Expr, Expr)]>,
    /// Cumulative weights when every weight is a literal (the common case), and their sum.
    pub(crate) fixed: Option<(Box<[u64]>, u64)>,
}

/// An operator could not use its input: the whole targeting comes out null.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Abort;

/// What evaluation reads besides the context.
pub(crate) struct Env<'a> {
    pub(crate) ctx: &'a Context,
    pub(crate) flag_key: &'a str,
    pub(crate) now: Option<i64>,
}

/// A value during evaluation, borrowing from the expression and the context where it can.
#[derive(Debug, Clone)]
pub(crate) enum Val<'a> {
    Null,
    Bool(bool),
    Num(f64),
    Str(&'a str),
    Owned(String),
    /// A list attribute.
    List(&'a [String]),
    /// A literal array or object.
    Json(&'a Value),
    /// A computed array.
    Items(Vec<Val<'a>>),
    Variant(usize),
    Split(usize),
}

impl<'a> Val<'a> {
    fn from_json(v: &'a Value) -> Val<'a> {
        match v {
            Value::Null => Val::Null,
            Value::Bool(b) => Val::Bool(*b),
            Value::Number(n) => Val::Num(n.as_f64().unwrap_or(f64::NAN)),
            Value::String(s) => Val::Str(s),
            other => Val::Json(other),
        }
    }

    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            Val::Str(s) => Some(s),
            Val::Owned(s) => Some(s),
            _ => None,
        }
    }
}

/// What a flag's targeting decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Null, or an operator could not use its input: the default variant.
    Default,
    Variant(usize),
    /// A variant a `fractional` split assigned.
    Split(usize),
    /// A result that names no variant.
    Invalid,
}

/// Evaluates a flag's targeting and maps its result onto the flag's variations.
pub(crate) fn decide(expr: &Expr, env: &Env<'_>, find: impl Fn(&str) -> Option<usize>) -> Outcome {
    match eval(expr, env) {
        Err(Abort) | Ok(Val::Null) => Outcome::Default,
        Ok(Val::Variant(i)) => Outcome::Variant(i),
        Ok(Val::Split(i)) => Outcome::Split(i),
        Ok(Val::Bool(b)) => find(if b { "true" } else { "false" }).map_or(Outcome::Invalid, Outcome::Variant),
        Ok(v) => v.as_str().and_then(&find).map_or(Outcome::Invalid, Outcome::Variant),
    }
}

pub(crate) fn eval<'a>(expr: &'a Expr, env: &Env<'a>) -> Result<Val<'a>, Abort> {
    Ok(match expr {
        Expr::Lit(v) => Val::from_json(v),
        Expr::Variant(i) => Val::Variant(*i),
        Expr::Split(i) => Val::Split(*i),
        Expr::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for item in items.iter() {
                out.push(eval(item, env)?);
            }
            Val::Items(out)
        }
        Expr::Var { var, default } => {
            let found = lookup(var, env);
            match (found, default) {
                (Val::Null, Some(d)) => eval(d, env)?,
                (v, _) => v,
            }
        }
        Expr::If(args) => {
            let mut i = 0;
            while i + 1 < args.len() {
                if js::truthy(&eval(&args[i], env)?) {
                    return eval(&args[i + 1], env);
                }
                i += 2;
            }
            if i < args.len() { eval(&args[i], env)? } else { Val::Null }
        }
        Expr::And(args) | Expr::Or(args) => {
            let want = matches!(expr, Expr::Or(_));
            let mut last = Val::Null;
            for a in args.iter() {
                last = eval(a, env)?;
                if js::truthy(&last) == want {
                    return Ok(last);
                }
            }
            last
        }
        Expr::Truth { arg, negate } => Val::Bool(js::truthy(&eval(arg, env)?) != *negate),
        Expr::Eq { a, b, strict, negate } => {
            let (a, b) = (eval(a, env)?, eval(b, env)?);
            let eq = if *strict { js::strict_eq(&a, &b) } else { js::loose_eq(&a, &b) };
            Val::Bool(eq != *negate)
        }
        Expr::Rel { op, args } => {
            // Operands are evaluated before the operator, all of them (only if, and, or are
            // lazy), so an abort in the third counts even when the first pair fails.
            let a = eval(&args[0], env)?;
            let b = eval(&args[1], env)?;
            let c = match args.get(2) {
                Some(c) => Some(eval(c, env)?),
                None => None,
            };
            let holds = |x: &Val<'_>, y: &Val<'_>| js::relate(x, y).is_some_and(|o| rel_holds(*op, o));
            Val::Bool(holds(&a, &b) && c.is_none_or(|c| holds(&b, &c)))
        }
        Expr::In { needle, hay } => {
            let needle = eval(needle, env)?;
            let hay = eval(hay, env)?;
            Val::Bool(js::contains(&hay, &needle))
        }
        Expr::InStrings { needle, set } => {
            let needle = eval(needle, env)?;
            Val::Bool(needle.as_str().is_some_and(|s| set.binary_search_by(|p| (**p).cmp(s)).is_ok()))
        }
        Expr::Cat(args) => {
            let mut out = String::new();
            for a in args.iter() {
                js::join_into(&eval(a, env)?, &mut out);
            }
            Val::Owned(out)
        }
        Expr::Substr { s, start, len } => {
            let s = js::to_string(&eval(s, env)?);
            let start = js::to_number(&eval(start, env)?);
            let len = match len {
                Some(l) => Some(js::to_number(&eval(l, env)?)),
                None => None,
            };
            Val::Owned(js::substr(&s, start, len))
        }
        Expr::Affix { s, affix, ends } => {
            let s = eval(s, env)?;
            let affix = eval(affix, env)?;
            match (s.as_str(), affix.as_str()) {
                (Some(s), Some(a)) => Val::Bool(if *ends { s.ends_with(a) } else { s.starts_with(a) }),
                _ => return Err(Abort),
            }
        }
        Expr::SemVer { a, op, b } => Val::Bool(sem_ver(eval(a, env)?, *op, eval(b, env)?)?),
        Expr::Fractional(f) => return fractional(f, env),
    })
}

fn rel_holds(op: Rel, o: Ordering) -> bool {
    match op {
        Rel::Lt => o == Ordering::Less,
        Rel::Lte => o != Ordering::Greater,
        Rel::Gt => o == Ordering::Greater,
        Rel::Gte => o != Ordering::Less,
    }
}

fn lookup<'a>(var: &'a Var, env: &Env<'a>) -> Val<'a> {
    let attr = |v: &'a AttrValue| match v {
        AttrValue::String(s) => Val::Str(s),
        AttrValue::Number(n) => Val::Num(*n),
        AttrValue::Bool(b) => Val::Bool(*b),
        AttrValue::StringList(l) => Val::List(l),
    };
    match var {
        Var::Attr(name) => match env.ctx.attributes.get(&**name) {
            Some(v) => attr(v),
            None => list_element(env.ctx, name).map_or(Val::Null, Val::Str),
        },
        Var::TargetingKey => match env.ctx.attributes.get(TARGETING_KEY_VAR) {
            Some(v) => attr(v),
            None => env.ctx.key().map_or(Val::Null, Val::Str),
        },
        Var::FlagKey => Val::Str(env.flag_key),
        Var::Timestamp => env.now.map_or(Val::Null, |t| Val::Num(t as f64)),
    }
}

/// `tags.0`: an element of a list attribute.
fn list_element<'a>(ctx: &'a Context, path: &str) -> Option<&'a str> {
    let (list, index) = path.rsplit_once('.')?;
    let index: usize = index.parse().ok()?;
    match ctx.attributes.get(list)? {
        AttrValue::StringList(l) => l.get(index).map(String::as_str),
        _ => None,
    }
}

fn sem_ver(a: Val<'_>, op: SemOp, b: Val<'_>) -> Result<bool, Abort> {
    let version = |v: &Val<'_>| -> Result<semver::Version, Abort> {
        let text = match v {
            Val::Num(n) => js::number_to_string(*n),
            other => other.as_str().ok_or(Abort)?.to_owned(),
        };
        parse_semver_lenient(&text).ok_or(Abort)
    };
    let (x, y) = (version(&a)?, version(&b)?);
    let ord = x.cmp_precedence(&y);
    Ok(match op {
        SemOp::Eq => ord == Ordering::Equal,
        SemOp::Ne => ord != Ordering::Equal,
        SemOp::Lt => ord == Ordering::Less,
        SemOp::Lte => ord != Ordering::Greater,
        SemOp::Gt => ord == Ordering::Greater,
        SemOp::Gte => ord != Ordering::Less,
        SemOp::Major => x.major == y.major,
        SemOp::Minor => x.major == y.major && x.minor == y.minor,
    })
}

fn fractional<'a>(f: &'a Fractional, env: &Env<'a>) -> Result<Val<'a>, Abort> {
    let key = match &f.key {
        Some(k) => eval(k, env)?,
        None => Val::Null,
    };
    let hash = match key.as_str() {
        Some(k) => hash32(k.as_bytes()),
        None => {
            let unit = match lookup(&Var::TargetingKey, env) {
                Val::Null => return Err(Abort),
                v => js::to_string(&v),
            };
            hash32_concat(&[env.flag_key.as_bytes(), unit.as_bytes()])
        }
    };
    let index = match &f.fixed {
        Some((bounds, total)) => {
            let point = fractional_point(hash, *total);
            bounds.iter().position(|upper| point < *upper).ok_or(Abort)?
        }
        None => {
            let mut weights = Vec::with_capacity(f.buckets.len());
            for (_, w) in f.buckets.iter() {
                weights.push(weight(js::to_number(&eval(w, env)?)));
            }
            let total: u64 = weights.iter().sum();
            if total == 0 {
                return Err(Abort);
            }
            let point = fractional_point(hash, total);
            let mut upper = 0;
            weights
                .iter()
                .position(|w| {
                    upper += w;
                    point < upper
                })
                .ok_or(Abort)?
        }
    };
    eval(&f.buckets[index].0, env)
}

/// A bucket's weight: whole, negative clamped to zero (flagd's rules).
pub(crate) fn weight(w: f64) -> u64 {
    if w.is_finite() && w > 0.0 { w.trunc() as u64 } else { 0 }
}

// ---------------------------------------------------------------------------------------------
// Compiling.

/// One problem in a targeting: the path below the targeting's own and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LogicError {
    pub(crate) path: String,
    pub(crate) message: String,
}

/// Compiles `logic` for a flag with `variants`, resolving `$ref`s against `evaluators`.
/// `path` names the targeting (`flags[2].targeting`); errors extend it.
pub(crate) fn compile_targeting(
    logic: &Value,
    path: &str,
    evaluators: &BTreeMap<String, Value>,
    evaluators_path: &str,
    variants: &[&str],
) -> Result<Option<Targeting>, Vec<LogicError>> {
    let mut c = LogicCompiler {
        reads_clock: false,
        splits: Vec::new(),
        open_splits: 0,
        evaluators,
        evaluators_path,
        variants,
        errors: Vec::new(),
        nodes: 0,
        refs: Vec::new(),
        used: HashSet::new(),
    };
    // `{}` is no targeting at all (flagd serves the default variant, reason STATIC).
    if logic.as_object().is_some_and(|o| o.is_empty()) || logic.is_null() {
        return Ok(None);
    }
    let expr = c.expr(logic, path, 0, true);
    for name in evaluators.keys() {
        if !c.used.contains(name.as_str()) {
            c.err(format!("{evaluators_path}[{name:?}]"), "no $ref in the targeting uses this evaluator");
        }
    }
    match expr {
        Some(expr) if c.errors.is_empty() => Ok(Some(Targeting {
            expr,
            reads_clock: c.reads_clock,
            splits: c.splits,
            open_splits: c.open_splits,
        })),
        _ => Err(c.errors),
    }
}

struct LogicCompiler<'c> {
    evaluators: &'c BTreeMap<String, Value>,
    evaluators_path: &'c str,
    variants: &'c [&'c str],
    errors: Vec<LogicError>,
    nodes: usize,
    /// The `$ref`s being expanded, to catch cycles.
    refs: Vec<&'c str>,
    used: HashSet<&'c str>,
    reads_clock: bool,
    splits: Vec<Vec<(usize, u64)>>,
    open_splits: usize,
}

const OPERATORS: &str = "if, ?:, ==, ===, !=, !==, <, <=, >, >=, and, or, !, !!, in, var, cat, substr, \
     starts_with, ends_with, sem_ver, fractional";

impl<'c> LogicCompiler<'c> {
    fn err(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(LogicError { path: path.into(), message: message.into() });
    }

    /// `result`: whether this node's value can be the targeting's result, where a literal
    /// must name a variant.
    fn expr(&mut self, v: &'c Value, path: &str, depth: usize, result: bool) -> Option<Expr> {
        if depth > MAX_LOGIC_DEPTH {
            self.err(path, format!("operators nest more than {MAX_LOGIC_DEPTH} deep"));
            return None;
        }
        self.nodes += 1;
        if self.nodes > MAX_LOGIC_NODES {
            // Stop at once: evaluators that refer to each other twice over expand exponentially.
            if self.nodes == MAX_LOGIC_NODES + 1 {
                self.err(
                    path,
                    format!("more than {MAX_LOGIC_NODES} operators (evaluators counted at each $ref)"),
                );
            }
            return None;
        }
        match v {
            Value::Array(items) if items.len() > MAX_LIST_VALUES => {
                self.err(path, format!("{} values, at most {MAX_LIST_VALUES} allowed", items.len()));
                return None;
            }
            Value::String(text) if text.len() > MAX_STRING_BYTES => {
                self.err(path, format!("is {} bytes, at most {MAX_STRING_BYTES} allowed", text.len()));
                return None;
            }
            _ => {}
        }
        match v {
            Value::Object(map) if map.is_empty() => {
                if result {
                    self.err(path, "an empty object is not a variant");
                    return None;
                }
                Some(Expr::Lit(v.clone()))
            }
            Value::Object(map) => {
                if map.len() != 1 {
                    let keys: Vec<&str> = map.keys().map(String::as_str).collect();
                    self.err(
                        path,
                        format!(
                            "an operation is an object with one key, the operator; this has {}",
                            keys.join(", ")
                        ),
                    );
                    return None;
                }
                let (op, args) = map.iter().next()?;
                self.operation(op, args, &op_path(path, op), depth, result)
            }
            Value::Array(items) => {
                if result {
                    self.err(path, "an array is not a variant");
                    return None;
                }
                if items.iter().all(is_literal) {
                    return Some(Expr::Lit(v.clone()));
                }
                let compiled: Vec<Option<Expr>> = items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| self.expr(item, &format!("{path}[{i}]"), depth + 1, false))
                    .collect();
                Some(Expr::Array(compiled.into_iter().collect::<Option<Vec<_>>>()?.into()))
            }
            Value::String(s) if result => match self.variants.iter().position(|k| *k == s) {
                Some(i) => Some(Expr::Variant(i)),
                None => {
                    self.err(
                        path,
                        format!("{s:?} is not a variant of this flag ({})", self.variants.join(", ")),
                    );
                    None
                }
            },
            Value::Bool(b) if result => {
                let name = if *b { "true" } else { "false" };
                match self.variants.iter().position(|k| *k == name) {
                    Some(i) => Some(Expr::Variant(i)),
                    None => {
                        self.err(
                            path,
                            format!("{b} stands for the variant {name:?}, which this flag does not have"),
                        );
                        None
                    }
                }
            }
            Value::Number(n) if result => {
                self.err(
                    path,
                    format!("{n} is not a variant: a targeting yields a variant name, true, false or null"),
                );
                None
            }
            other => Some(Expr::Lit(other.clone())),
        }
    }

    fn args(&mut self, args: &'c Value) -> &'c [Value] {
        match args {
            Value::Array(items) => items,
            other => std::slice::from_ref(other),
        }
    }

    fn arity(&mut self, path: &str, op: &str, n: usize, allowed: &[usize]) -> bool {
        if allowed.contains(&n) {
            return true;
        }
        let want = match allowed {
            [one] => one.to_string(),
            [a, b] => format!("{a} or {b}"),
            _ => format!("{allowed:?}"),
        };
        self.err(path, format!("{op} takes {want} operands, not {n}"));
        false
    }

    fn each(&mut self, args: &'c [Value], path: &str, depth: usize, result: bool) -> Option<Box<[Expr]>> {
        let out: Vec<Option<Expr>> = args
            .iter()
            .enumerate()
            .map(|(i, a)| self.expr(a, &format!("{path}[{i}]"), depth + 1, result))
            .collect();
        out.into_iter().collect::<Option<Vec<_>>>().map(Vec::into_boxed_slice)
    }

    fn operation(
        &mut self,
        op: &str,
        raw: &'c Value,
        path: &str,
        depth: usize,
        result: bool,
    ) -> Option<Expr> {
        if op == "$ref" {
            return self.reference(raw, path, depth, result);
        }
        let args = self.args(raw);
        let n = args.len();
        let one = |c: &mut Self, i: usize| {
            c.expr(&args[i], &format!("{path}[{i}]"), depth + 1, false).map(Box::new)
        };
        let expr = match op {
            "if" | "?:" => {
                // Conditions at even places (but the last of an odd count), results between.
                let parts: Vec<Option<Expr>> = args
                    .iter()
                    .enumerate()
                    .map(|(i, a)| {
                        let is_result = i % 2 == 1 || i + 1 == n;
                        self.expr(a, &format!("{path}[{i}]"), depth + 1, result && is_result)
                    })
                    .collect();
                Expr::If(parts.into_iter().collect::<Option<Vec<_>>>()?.into())
            }
            "and" | "or" => {
                if n == 0 {
                    self.err(path, format!("{op} needs at least one operand"));
                    return None;
                }
                let parts = self.each(args, path, depth, result)?;
                if op == "and" { Expr::And(parts) } else { Expr::Or(parts) }
            }
            "!" | "!!" => {
                if !self.arity(path, op, n, &[1]) {
                    return None;
                }
                Expr::Truth { arg: one(self, 0)?, negate: op == "!" }
            }
            "==" | "===" | "!=" | "!==" => {
                if !self.arity(path, op, n, &[2]) {
                    return None;
                }
                let (a, b) = (one(self, 0), one(self, 1));
                Expr::Eq { a: a?, b: b?, strict: op.len() == 3, negate: op.starts_with('!') }
            }
            "<" | "<=" | ">" | ">=" => {
                let allowed: &[usize] = if op.starts_with('<') { &[2, 3] } else { &[2] };
                if !self.arity(path, op, n, allowed) {
                    return None;
                }
                let rel = match op {
                    "<" => Rel::Lt,
                    "<=" => Rel::Lte,
                    ">" => Rel::Gt,
                    _ => Rel::Gte,
                };
                Expr::Rel { op: rel, args: self.each(args, path, depth, false)? }
            }
            "in" => {
                if !self.arity(path, op, n, &[2]) {
                    return None;
                }
                let needle = one(self, 0);
                if let Value::Array(items) = &args[1]
                    && !items.is_empty()
                    && items.iter().all(Value::is_string)
                {
                    let mut set: Vec<Box<str>> =
                        items.iter().filter_map(Value::as_str).map(Box::from).collect();
                    set.sort_unstable();
                    set.dedup();
                    return Some(Expr::InStrings { needle: needle?, set: set.into() });
                }
                let hay = one(self, 1);
                Expr::In { needle: needle?, hay: hay? }
            }
            "var" => return self.var(args, path, depth),
            "cat" => Expr::Cat(self.each(args, path, depth, false)?),
            "substr" => {
                if !self.arity(path, op, n, &[2, 3]) {
                    return None;
                }
                let (s, start) = (one(self, 0), one(self, 1));
                let len = if n == 3 { Some(one(self, 2)?) } else { None };
                Expr::Substr { s: s?, start: start?, len }
            }
            "starts_with" | "ends_with" => {
                if !self.arity(path, op, n, &[2]) {
                    return None;
                }
                if let Some(v) = args.iter().find(|a| is_literal(a) && !a.is_string()) {
                    let at = args.iter().position(|a| std::ptr::eq(a, v)).unwrap_or(0);
                    self.err(format!("{path}[{at}]"), format!("{v} is not a string; {op} compares strings"));
                    return None;
                }
                let (s, affix) = (one(self, 0), one(self, 1));
                Expr::Affix { s: s?, affix: affix?, ends: op == "ends_with" }
            }
            "sem_ver" => return self.sem_ver(args, path, depth),
            "fractional" => return self.fractional(args, path, depth, result),
            unknown => {
                self.err(path, format!("unknown operator {unknown:?}; the operators are {OPERATORS}"));
                return None;
            }
        };
        Some(expr)
    }

    fn reference(&mut self, raw: &'c Value, path: &str, depth: usize, result: bool) -> Option<Expr> {
        let Some(name) = raw.as_str() else {
            self.err(path, "$ref takes the name of an evaluator");
            return None;
        };
        let Some((stored, body)) = self.evaluators.get_key_value(name) else {
            let known: Vec<&str> = self.evaluators.keys().map(String::as_str).collect();
            let known = if known.is_empty() { "none are defined".to_owned() } else { known.join(", ") };
            self.err(path, format!("no evaluator named {name:?} ({known})"));
            return None;
        };
        if self.refs.contains(&stored.as_str()) {
            let mut chain = self.refs.join(" -> ");
            let _ = write!(chain, " -> {name}");
            self.err(path, format!("evaluators refer to each other in a cycle: {chain}"));
            return None;
        }
        self.used.insert(stored);
        self.refs.push(stored);
        let epath = format!("{}[{name:?}]", self.evaluators_path);
        let expr = self.expr(body, &epath, depth + 1, result);
        self.refs.pop();
        expr
    }

    fn var(&mut self, args: &'c [Value], path: &str, depth: usize) -> Option<Expr> {
        if !self.arity(path, "var", args.len(), &[1, 2]) {
            return None;
        }
        let name = match &args[0] {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            other => {
                self.err(
                    format!("{path}[0]"),
                    format!("{other} is not a property name; var reads a named property"),
                );
                return None;
            }
        };
        if name.is_empty() {
            self.err(format!("{path}[0]"), "var of the whole context is not supported; name a property");
            return None;
        }
        let var = match name.as_str() {
            TARGETING_KEY_VAR => Var::TargetingKey,
            "$flagd.flagKey" => Var::FlagKey,
            "$flagd.timestamp" => {
                self.reads_clock = true;
                Var::Timestamp
            }
            _ => Var::Attr(name.into()),
        };
        let default = match args.get(1) {
            Some(d) => Some(Box::new(self.expr(d, &format!("{path}[1]"), depth + 1, false)?)),
            None => None,
        };
        Some(Expr::Var { var, default })
    }

    fn sem_ver(&mut self, args: &'c [Value], path: &str, depth: usize) -> Option<Expr> {
        if !self.arity(path, "sem_ver", args.len(), &[3]) {
            return None;
        }
        let op = match &args[1] {
            Value::String(s) => {
                match s.as_str() {
                    "=" => SemOp::Eq,
                    "!=" => SemOp::Ne,
                    "<" => SemOp::Lt,
                    "<=" => SemOp::Lte,
                    ">" => SemOp::Gt,
                    ">=" => SemOp::Gte,
                    "^" => SemOp::Major,
                    "~" => SemOp::Minor,
                    other => {
                        self.err(
                        format!("{path}[1]"),
                        format!("unknown operator {other:?}; sem_ver compares with =, !=, <, <=, >, >=, ^ or ~"),
                    );
                        return None;
                    }
                }
            }
            v if is_literal(v) => {
                self.err(
                    format!("{path}[1]"),
                    format!("{v} is not a sem_ver operator (=, !=, <, <=, >, >=, ^, ~)"),
                );
                return None;
            }
            _ => {
                self.err(
                    format!("{path}[1]"),
                    "the sem_ver operator must be written out (=, !=, <, <=, >, >=, ^, ~)",
                );
                return None;
            }
        };
        for i in [0, 2] {
            let ok = match &args[i] {
                Value::String(s) => parse_semver_lenient(s).is_some(),
                Value::Number(n) => {
                    parse_semver_lenient(&js::number_to_string(n.as_f64().unwrap_or(0.0))).is_some()
                }
                v => !is_literal(v),
            };
            if !ok {
                self.err(format!("{path}[{i}]"), format!("{} is not a semantic version", args[i]));
                return None;
            }
        }
        let a = self.expr(&args[0], &format!("{path}[0]"), depth + 1, false);
        let b = self.expr(&args[2], &format!("{path}[2]"), depth + 1, false);
        Some(Expr::SemVer { a: Box::new(a?), op, b: Box::new(b?) })
    }

    fn fractional(&mut self, args: &'c [Value], path: &str, depth: usize, result: bool) -> Option<Expr> {
        // The first operand is the bucketing expression unless it is a bucket itself.
        let (key, buckets) = match args.first() {
            Some(Value::Array(_)) | None => (None, args),
            Some(k) => (Some(k), &args[1..]),
        };
        let offset = usize::from(key.is_some());
        if buckets.is_empty() {
            self.err(path, "fractional needs at least one bucket: [variant, weight]");
            return None;
        }
        let key = match key {
            Some(k) => Some(self.expr(k, &format!("{path}[0]"), depth + 1, false)?),
            None => None,
        };
        let before = self.errors.len();
        let mut compiled = Vec::with_capacity(buckets.len());
        let mut fixed = Some(Vec::with_capacity(buckets.len()));
        let mut total = 0u64;
        for (i, b) in buckets.iter().enumerate() {
            let bpath = format!("{path}[{}]", i + offset);
            let Value::Array(pair) = b else {
                self.err(bpath, format!("{b} is not a bucket: [variant, weight] or [variant]"));
                continue;
            };
            if pair.is_empty() || pair.len() > 2 {
                self.err(
                    bpath,
                    format!("a bucket is [variant, weight] or [variant], not {} items", pair.len()),
                );
                continue;
            }
            let variant = match self.expr(&pair[0], &format!("{bpath}[0]"), depth + 1, result) {
                Some(Expr::Variant(v)) => Some(Expr::Split(v)),
                other => other,
            };
            let w = match pair.get(1) {
                None => Some(Expr::Lit(Value::from(1))),
                Some(Value::Number(n)) => Some(Expr::Lit(Value::Number(n.clone()))),
                Some(w) if is_literal(w) => {
                    self.err(format!("{bpath}[1]"), format!("{w} is not a weight: a number"));
                    None
                }
                Some(w) => self.expr(w, &format!("{bpath}[1]"), depth + 1, false),
            };
            match (&w, &mut fixed) {
                (Some(Expr::Lit(Value::Number(n))), Some(bounds)) => {
                    total += weight(n.as_f64().unwrap_or(0.0));
                    bounds.push(total);
                }
                _ => fixed = None,
            }
            if let (Some(v), Some(w)) = (variant, w) {
                compiled.push((v, w));
            }
        }
        if self.errors.len() > before {
            return None;
        }
        if fixed.is_some() && total == 0 {
            self.err(path, "the bucket weights sum to 0; at least one must be positive");
            return None;
        }
        if result {
            let written_out: Option<Vec<(usize, u64)>> = fixed.as_ref().and_then(|bounds| {
                let mut below = 0;
                compiled
                    .iter()
                    .zip(bounds)
                    .map(|((v, _), upper)| {
                        let w = upper - below;
                        below = *upper;
                        match v {
                            Expr::Split(i) => Some((*i, w)),
                            _ => None,
                        }
                    })
                    .collect()
            });
            match written_out {
                Some(buckets) => self.splits.push(buckets),
                None => self.open_splits += 1,
            }
        }
        Some(Expr::Fractional(Box::new(Fractional {
            key,
            buckets: compiled.into(),
            fixed: fixed.map(|b| (b.into_boxed_slice(), total)),
        })))
    }
}

fn is_literal(v: &Value) -> bool {
    match v {
        Value::Object(m) => m.is_empty(),
        Value::Array(items) => items.iter().all(is_literal),
        _ => true,
    }
}

/// The path of an operator below `path`: `.if`, or `["!=="]` when it is not a plain name.
fn op_path(path: &str, op: &str) -> String {
    if op.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$') {
        format!("{path}.{op}")
    } else {
        format!("{path}[{op:?}]")
    }
}

#[cfg(test)]
mod tests;
