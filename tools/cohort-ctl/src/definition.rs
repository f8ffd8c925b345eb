//! The six kinds of entity and their typed definitions (cohort-core's model): strict parsing
//! that names the bad field, and the canonical JSON that decides whether a file and the
//! server agree.

use cohort_core::model::{ExperimentDef, FlagDef, HoldoutDef, LayerDef, MetricDef, SegmentDef};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

pub use cohort_core::model::EntityKind as Kind;

/// `flag`, `Flag`, ` flags`: what people type on the command line and in files.
pub fn parse_kind(text: &str) -> Option<Kind> {
    Kind::parse(&text.trim().to_ascii_lowercase())
}

/// [`parse_kind`] for clap, listing the kinds when the text names none.
pub fn kind_arg(text: &str) -> Result<Kind, String> {
    parse_kind(text).ok_or_else(|| {
        let names: Vec<&str> = Kind::ALL.iter().map(|k| k.as_str()).collect();
        format!("{text:?} is not a kind; expected one of {}", names.join(", "))
    })
}

/// A definition that does not fit the model: the field (relative to the definition, `.` for
/// the whole) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub path: String,
    pub message: String,
}

/// One typed definition.
#[derive(Debug, Clone, PartialEq)]
pub enum Def {
    Flag(FlagDef),
    Experiment(ExperimentDef),
    Layer(LayerDef),
    Segment(SegmentDef),
    Metric(MetricDef),
    Holdout(HoldoutDef),
}

impl Def {
    /// Parses strictly (unknown fields are errors, though the model itself reads leniently),
    /// naming the field at fault.
    pub fn parse(kind: Kind, value: &Value) -> Result<Def, FieldError> {
        fn typed<T: DeserializeOwned>(value: &Value) -> Result<T, FieldError> {
            // The model reads leniently (for compatibility); files are held to the exact schema.
            let mut unknown = Vec::new();
            let mut record = |path: serde_ignored::Path<'_>| unknown.push(path.to_string());
            let parsed =
                serde_path_to_error::deserialize(serde_ignored::Deserializer::new(value, &mut record))
                    .map_err(|e| FieldError {
                        path: e.path().to_string(),
                        message: e.into_inner().to_string(),
                    })?;
            match unknown.first() {
                None => Ok(parsed),
                Some(dotted) => {
                    let mut path = String::new();
                    for part in dotted.split('.').filter(|p| !p.is_empty() && *p != "?") {
                        if part.bytes().all(|b| b.is_ascii_digit()) {
                            path.push_str(&format!("[{part}]"));
                        } else {
                            if !path.is_empty() {
                                path.push('.');
                            }
                            path.push_str(part);
                        }
                    }
                    let name = dotted.rsplit('.').next().unwrap_or(dotted).to_owned();
                    Err(FieldError { path, message: format!("unknown field `{name}`") })
                }
            }
        }
        Ok(match kind {
            Kind::Flag => Def::Flag(typed(value)?),
            Kind::Experiment => Def::Experiment(typed(value)?),
            Kind::Layer => Def::Layer(typed(value)?),
            Kind::Segment => Def::Segment(typed(value)?),
            Kind::Metric => Def::Metric(typed(value)?),
            Kind::Holdout => Def::Holdout(typed(value)?),
        })
    }

    pub fn kind(&self) -> Kind {
        match self {
            Def::Flag(_) => Kind::Flag,
            Def::Experiment(_) => Kind::Experiment,
            Def::Layer(_) => Kind::Layer,
            Def::Segment(_) => Kind::Segment,
            Def::Metric(_) => Kind::Metric,
            Def::Holdout(_) => Kind::Holdout,
        }
    }

    pub fn key(&self) -> &str {
        match self {
            Def::Flag(d) => &d.key,
            Def::Experiment(d) => &d.key,
            Def::Layer(d) => &d.key,
            Def::Segment(d) => &d.key,
            Def::Metric(d) => &d.key,
            Def::Holdout(d) => &d.key,
        }
    }

    /// The typed model serialized back: defaults filled in, field order fixed. Two
    /// definitions mean the same thing exactly when their canonical values are equal.
    pub fn canonical(&self) -> Value {
        let value = match self {
            Def::Flag(d) => serde_json::to_value(d),
            Def::Experiment(d) => serde_json::to_value(d),
            Def::Layer(d) => serde_json::to_value(d),
            Def::Segment(d) => serde_json::to_value(d),
            Def::Metric(d) => serde_json::to_value(d),
            Def::Holdout(d) => serde_json::to_value(d),
        };
        // The model's types serialize to JSON without fail (string keys, finite numbers).
        value.unwrap_or(Value::Null)
    }

    /// The definition with `kind:` first, in the model's field order: what `apply` reads.
    pub fn tagged(&self) -> Tagged<'_> {
        Tagged { kind: self.kind().as_str(), def: self }
    }
}

/// A definition with its `kind`, serialized in the model's field order.
#[derive(Debug)]
pub struct Tagged<'a> {
    kind: &'static str,
    def: &'a Def,
}

impl Serialize for Tagged<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct With<'a, T: Serialize> {
            kind: &'static str,
            #[serde(flatten)]
            def: &'a T,
        }
        match self.def {
            Def::Flag(d) => With { kind: self.kind, def: d }.serialize(serializer),
            Def::Experiment(d) => With { kind: self.kind, def: d }.serialize(serializer),
            Def::Layer(d) => With { kind: self.kind, def: d }.serialize(serializer),
            Def::Segment(d) => With { kind: self.kind, def: d }.serialize(serializer),
            Def::Metric(d) => With { kind: self.kind, def: d }.serialize(serializer),
            Def::Holdout(d) => With { kind: self.kind, def: d }.serialize(serializer),
        }
    }
}

/// The top-level fields whose values differ between two canonical definitions.
pub fn changed_fields(before: &Value, after: &Value) -> Vec<String> {
    let (Some(b), Some(a)) = (before.as_object(), after.as_object()) else {
        return vec![".".into()];
    };
    let mut fields: Vec<String> =
        b.keys().chain(a.keys()).filter(|k| b.get(*k) != a.get(*k)).cloned().collect();
    fields.sort();
    fields.dedup();
    fields
}
