//! Targeting conditions: compiled once from [`crate::model::Condition`], matched on every evaluation.

use std::cmp::Ordering;

use regex::Regex;

use crate::context::{Attr, AttrValue, Context};
use crate::model::ScalarValue;
use crate::time::parse_rfc3339_millis;

/// A compiled condition. Attribute names are owned here so matching never allocates.
#[derive(Debug, Clone)]
pub(crate) enum Cond {
    All(Box<[Cond]>),
    Any(Box<[Cond]>),
    Not(Box<Cond>),
    Equals { attr: Box<str>, value: Scalar, negate: bool },
    In { attr: Box<str>, set: ScalarSet, negate: bool },
    Text { attr: Box<str>, op: TextOp, value: Box<str> },
    Regex { attr: Box<str>, re: Regex },
    Number { attr: Box<str>, op: CmpOp, value: f64 },
    Semver { attr: Box<str>, op: CmpOp, value: semver::Version },
    Date { attr: Box<str>, before: bool, millis: i64 },
    Exists { attr: Box<str> },
    Segment(usize),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Scalar {
    Str(Box<str>),
    Num(f64),
    Bool(bool),
}

impl From<ScalarValue> for Scalar {
    fn from(v: ScalarValue) -> Self {
        match v {
            ScalarValue::String(s) => Scalar::Str(s.into()),
            ScalarValue::Number(n) => Scalar::Num(n),
            ScalarValue::Bool(b) => Scalar::Bool(b),
        }
    }
}

/// The members of an `in` list, split by type; strings sorted for binary search.
#[derive(Debug, Clone, Default)]
pub(crate) struct ScalarSet {
    pub(crate) strings: Box<[Box<str>]>,
    pub(crate) numbers: Box<[f64]>,
    pub(crate) bools: Box<[bool]>,
}

impl ScalarSet {
    pub(crate) fn new(values: Vec<ScalarValue>) -> Self {
        let mut strings = Vec::new();
        let mut numbers = Vec::new();
        let mut bools = Vec::new();
        for v in values {
            match v {
                ScalarValue::String(s) => strings.push(s.into_boxed_str()),
                ScalarValue::Number(n) => numbers.push(n),
                ScalarValue::Bool(b) => bools.push(b),
            }
        }
        strings.sort_unstable();
        strings.dedup();
        ScalarSet { strings: strings.into(), numbers: numbers.into(), bools: bools.into() }
    }

    fn contains_str(&self, s: &str) -> bool {
        self.strings.binary_search_by(|probe| (**probe).cmp(s)).is_ok()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TextOp {
    Contains,
    StartsWith,
    EndsWith,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CmpOp {
    Eq,
    Lt,
    Lte,
    Gt,
    Gte,
}

impl CmpOp {
    fn holds(self, ord: Ordering) -> bool {
        match self {
            CmpOp::Eq => ord == Ordering::Equal,
            CmpOp::Lt => ord == Ordering::Less,
            CmpOp::Lte => ord != Ordering::Greater,
            CmpOp::Gt => ord == Ordering::Greater,
            CmpOp::Gte => ord != Ordering::Less,
        }
    }
}

/// Looks up segments while matching, so `in_segment` can recurse.
pub(crate) trait SegmentLookup {
    fn segment_matches(&self, index: usize, ctx: &Context) -> bool;
}

impl Cond {
    /// Whether the context satisfies the condition. A missing attribute, or one of another
    /// type, never matches, negated operators included: use `not` to match on absence.
    pub(crate) fn matches(&self, ctx: &Context, segments: &impl SegmentLookup) -> bool {
        match self {
            Cond::All(all) => all.iter().all(|c| c.matches(ctx, segments)),
            Cond::Any(any) => any.iter().any(|c| c.matches(ctx, segments)),
            Cond::Not(inner) => !inner.matches(ctx, segments),
            Cond::Equals { attr, value, negate } => {
                ctx.lookup(attr).is_some_and(|a| scalar_matches(a, value) != *negate)
            }
            Cond::In { attr, set, negate } => {
                ctx.lookup(attr).is_some_and(|a| set_matches(a, set) != *negate)
            }
            Cond::Text { attr, op, value } => ctx.lookup(attr).is_some_and(|a| {
                let test = |s: &str| match op {
                    TextOp::Contains => s.contains(&**value),
                    TextOp::StartsWith => s.starts_with(&**value),
                    TextOp::EndsWith => s.ends_with(&**value),
                };
                match a {
                    // On a list, `contains` means membership; the others test any element.
                    Attr::Value(AttrValue::StringList(list)) => match op {
                        TextOp::Contains => list.iter().any(|s| *s == **value),
                        _ => list.iter().any(|s| test(s)),
                    },
                    other => other.as_str().is_some_and(test),
                }
            }),
            Cond::Regex { attr, re } => ctx.lookup(attr).is_some_and(|a| match a {
                Attr::Value(AttrValue::StringList(list)) => list.iter().any(|s| re.is_match(s)),
                other => other.as_str().is_some_and(|s| re.is_match(s)),
            }),
            Cond::Number { attr, op, value } => ctx.lookup(attr).is_some_and(|a| match a {
                Attr::Value(AttrValue::Number(n)) => n.partial_cmp(value).is_some_and(|ord| op.holds(ord)),
                _ => false,
            }),
            Cond::Semver { attr, op, value } => ctx
                .lookup(attr)
                .and_then(Attr::as_str)
                .and_then(parse_semver_lenient)
                .is_some_and(|v| op.holds(v.cmp_precedence(value))),
            Cond::Date { attr, before, millis } => ctx
                .lookup(attr)
                .and_then(|a| match a {
                    Attr::Value(AttrValue::Number(secs)) if secs.is_finite() => Some((secs * 1000.0) as i64),
                    other => other.as_str().and_then(parse_rfc3339_millis),
                })
                .is_some_and(|t| if *before { t < *millis } else { t > *millis }),
            Cond::Exists { attr } => ctx.lookup(attr).is_some(),
            Cond::Segment(index) => segments.segment_matches(*index, ctx),
        }
    }
}

fn scalar_matches(attr: Attr<'_>, value: &Scalar) -> bool {
    match (attr, value) {
        (Attr::Str(s), Scalar::Str(v)) => s == &**v,
        (Attr::Value(AttrValue::String(s)), Scalar::Str(v)) => **s == **v,
        (Attr::Value(AttrValue::Number(n)), Scalar::Num(v)) => n == v,
        (Attr::Value(AttrValue::Bool(b)), Scalar::Bool(v)) => b == v,
        (Attr::Value(AttrValue::StringList(list)), Scalar::Str(v)) => list.iter().any(|s| **s == **v),
        _ => false,
    }
}

fn set_matches(attr: Attr<'_>, set: &ScalarSet) -> bool {
    match attr {
        Attr::Str(s) => set.contains_str(s),
        Attr::Value(AttrValue::String(s)) => set.contains_str(s),
        Attr::Value(AttrValue::Number(n)) => set.numbers.contains(n),
        Attr::Value(AttrValue::Bool(b)) => set.bools.contains(b),
        Attr::Value(AttrValue::StringList(list)) => list.iter().any(|s| set.contains_str(s)),
    }
}

/// Parses a version leniently: a leading `v` and missing minor or patch numbers are allowed.
pub(crate) fn parse_semver_lenient(text: &str) -> Option<semver::Version> {
    let text = text.trim();
    let text = text.strip_prefix(['v', 'V']).unwrap_or(text);
    if let Ok(v) = semver::Version::parse(text) {
        return Some(v);
    }
    let core_end = text.find(['-', '+']).unwrap_or(text.len());
    let (core, rest) = text.split_at(core_end);
    let padded = match core.split('.').count() {
        1 => format!("{core}.0.0{rest}"),
        2 => format!("{core}.0{rest}"),
        _ => return None,
    };
    semver::Version::parse(&padded).ok()
}

#[cfg(test)]
mod tests;
