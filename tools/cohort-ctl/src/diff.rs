//! Value-level differences between two JSON trees (a stored definition and the file's), for
//! `apply --dry-run`: each changed leaf by its field path, with the old and new values.

use serde::Serialize;
use serde_json::Value;

use crate::source::{Segment, format_path};

/// One difference: at `path`, `old` became `new`; `None` on a side means the node is absent
/// there (added or removed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new: Option<Value>,
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let path = if self.path.is_empty() { "." } else { &self.path };
        match (&self.old, &self.new) {
            (Some(old), Some(new)) => write!(f, "{path}: {old} → {new}"),
            (None, Some(new)) => write!(f, "{path}: added {new}"),
            (Some(old), None) => write!(f, "{path}: removed {old}"),
            (None, None) => write!(f, "{path}: unchanged"),
        }
    }
}

/// Every difference from `before` to `after`, in document order: objects key by key (the
/// keys of `before` first, then those only `after` has), arrays element by element (elements
/// past the shorter one's end are added or removed), anything else as a whole.
pub fn diff(before: &Value, after: &Value) -> Vec<Change> {
    let mut out = Vec::new();
    walk(&mut Vec::new(), before, after, &mut out);
    out
}

fn walk(path: &mut Vec<Segment>, before: &Value, after: &Value, out: &mut Vec<Change>) {
    match (before, after) {
        (Value::Object(b), Value::Object(a)) => {
            for (key, old) in b {
                path.push(Segment::Field(key.clone()));
                match a.get(key) {
                    Some(new) => walk(path, old, new, out),
                    None => out.push(change(path, Some(old), None)),
                }
                path.pop();
            }
            for (key, new) in a.iter().filter(|(k, _)| !b.contains_key(*k)) {
                path.push(Segment::Field(key.clone()));
                out.push(change(path, None, Some(new)));
                path.pop();
            }
        }
        (Value::Array(b), Value::Array(a)) => {
            for i in 0..b.len().max(a.len()) {
                path.push(Segment::Index(i));
                match (b.get(i), a.get(i)) {
                    (Some(old), Some(new)) => walk(path, old, new, out),
                    (old, new) => out.push(change(path, old, new)),
                }
                path.pop();
            }
        }
        _ if before == after => {}
        _ => out.push(change(path, Some(before), Some(after))),
    }
}

fn change(path: &[Segment], old: Option<&Value>, new: Option<&Value>) -> Change {
    Change { path: format_path(path), old: old.cloned(), new: new.cloned() }
}

#[cfg(test)]
mod tests;
