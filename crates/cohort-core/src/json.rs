//! Strict JSON: the one parser every JSON door into Cohort uses (definitions on the config
//! API, cohortctl's files, the evaluation and events services' HTTP bodies).
//!
//! serde_json keeps the last of two equal keys in an object and says nothing, so
//! `{"enabled": true, "enabled": false}` quietly means disabled. Here a duplicate key is an
//! error naming the key and where it is. [`duplicate_key`] is a check-only pass that callers
//! with their own typed parse run first; [`from_slice`] does both.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

use serde::de::{self, DeserializeOwned, DeserializeSeed, MapAccess, SeqAccess, Visitor};

/// A key written twice in one JSON object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuplicateKey {
    /// The field path of the repeated key: `enabled`, `variations[0].value.color`.
    pub path: String,
    pub key: String,
    /// Where the second occurrence ends (1-based), as serde_json counts.
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for DuplicateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "duplicate key {:?} at line {} column {}", self.key, self.line, self.column)
    }
}

impl std::error::Error for DuplicateKey {}

/// Why strict parsing failed.
#[derive(Debug, thiserror::Error)]
pub enum JsonError {
    #[error("{path}: {duplicate}", path = .0.path, duplicate = .0)]
    DuplicateKey(DuplicateKey),
    #[error(transparent)]
    Invalid(#[from] serde_json::Error),
}

/// Parses `json` as `T`, refusing duplicate keys anywhere in it.
pub fn from_slice<T: DeserializeOwned>(json: &[u8]) -> Result<T, JsonError> {
    if let Some(d) = duplicate_key(json) {
        return Err(JsonError::DuplicateKey(d));
    }
    Ok(serde_json::from_slice(json)?)
}

/// The first duplicate key in `json`, if any. Text that is not JSON has none: the caller's
/// own parse reports what is wrong with it.
pub fn duplicate_key(json: &[u8]) -> Option<DuplicateKey> {
    let mut path = Vec::new();
    let mut found = None;
    let mut de = serde_json::Deserializer::from_slice(json);
    let Err(e) = Check { path: &mut path, found: &mut found }.deserialize(&mut de) else {
        return None;
    };
    found.map(|(path, key)| DuplicateKey { path, key, line: e.line(), column: e.column() })
}

#[derive(Debug)]
enum Segment<'de> {
    Index(usize),
    Key(Cow<'de, str>),
}

fn format_path(path: &[Segment<'_>]) -> String {
    let mut out = String::new();
    for segment in path {
        match segment {
            Segment::Index(i) => out.push_str(&format!("[{i}]")),
            Segment::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
        }
    }
    out
}

/// Walks one value, recording the first duplicate key (path, key) and stopping there.
struct Check<'a, 'de> {
    path: &'a mut Vec<Segment<'de>>,
    found: &'a mut Option<(String, String)>,
}

impl<'de> DeserializeSeed<'de> for Check<'_, 'de> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

/// The keys of one object seen so far: a short list scanned in place, a set once it grows,
/// so a huge object costs linear time.
enum Seen<'de> {
    Few(Vec<Cow<'de, str>>),
    Many(HashSet<Cow<'de, str>>),
}

impl<'de> Seen<'de> {
    const FEW: usize = 16;

    /// Adds `key`; false when it was there already.
    fn insert(&mut self, key: Cow<'de, str>) -> bool {
        match self {
            Seen::Few(keys) => {
                if keys.contains(&key) {
                    return false;
                }
                if keys.len() < Self::FEW {
                    keys.push(key);
                } else {
                    let mut set: HashSet<Cow<'de, str>> = keys.drain(..).collect();
                    set.insert(key);
                    *self = Seen::Many(set);
                }
                true
            }
            Seen::Many(set) => set.insert(key),
        }
    }
}

impl<'de> Visitor<'de> for Check<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut index = 0;
        loop {
            self.path.push(Segment::Index(index));
            let next = seq.next_element_seed(Check { path: &mut *self.path, found: &mut *self.found });
            self.path.pop();
            match next? {
                Some(()) => index += 1,
                None => return Ok(()),
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = Seen::Few(Vec::new());
        while let Some(key) = map.next_key_seed(KeySeed)? {
            if !seen.insert(key.clone()) {
                self.path.push(Segment::Key(key.clone()));
                *self.found = Some((format_path(self.path), key.into_owned()));
                self.path.pop();
                return Err(de::Error::custom("duplicate key"));
            }
            self.path.push(Segment::Key(key));
            let value = map.next_value_seed(Check { path: &mut *self.path, found: &mut *self.found });
            self.path.pop();
            value?;
        }
        Ok(())
    }
}

/// An object key, borrowed from the input when it has no escapes.
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_owned()))
    }
}

#[cfg(test)]
mod tests;
