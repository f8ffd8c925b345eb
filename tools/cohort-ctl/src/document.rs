//! Definition files: YAML or JSON holding one entity per document (`kind: flag` plus the
//! definition), several in a `---` stream, a whole environment (`flags:`, `experiments:`,
//! ...), or flagd's flag-definition file (`flags` by key), read into typed specs that
//! remember where in which file they came from.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cohort_core::json::JsonError;
use cohort_core::model::ExperimentStatus;
use serde_json::Value;

use crate::definition::{Def, Kind};
use crate::diagnostic::Diagnostic;
use crate::source::{Node, Segment, parse_path, parse_yaml};

/// The name stdin goes by in messages.
pub const STDIN: &str = "<stdin>";

/// How to read a file's documents (`apply --format`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum FileFormat {
    /// By shape: a document whose `flags` is an object of flags by key is a flagd file;
    /// anything else is Cohort's own.
    #[default]
    Auto,
    /// Cohort's definitions (`kind:` documents, or an environment's lists).
    Cohort,
    /// flagd's flag-definition file (flagd.dev/reference/flag-definitions).
    Flagd,
}

/// How a file names an entity's fields, for diagnostics.
#[derive(Debug, Clone, Default)]
pub enum Form {
    /// Cohort's documents: the model's field names, relative to the entity.
    #[default]
    Cohort,
    /// A flag of a flagd file: paths from the file's root, in flagd's names
    /// (`flags["k"].defaultVariant`, `$evaluators["x"]`). `variants` are the flag's variant
    /// names in the model's order, so `variations[1]` can be named as the file does.
    Flagd { variants: Arc<[String]> },
}

/// Where a spec was written: the file, its document, and the path from the document's root
/// to the entity (empty for a `kind:` document, `flags[2]` in an environment document,
/// `flags["k"]` in a flagd file).
#[derive(Debug, Clone)]
pub struct Origin {
    pub file: Arc<str>,
    /// The document's marked tree; `None` when positions are unknown.
    pub root: Option<Arc<Node>>,
    pub prefix: Vec<Segment>,
    pub form: Form,
}

impl Origin {
    /// The line the entity starts on.
    pub fn line(&self) -> usize {
        self.line_of(&[])
    }

    /// The line of a field of the entity (its nearest written ancestor when absent).
    pub fn line_of(&self, field: &[Segment]) -> usize {
        let Some(root) = &self.root else { return 1 };
        let path: Vec<Segment> = self.prefix.iter().chain(field).cloned().collect();
        root.line_of(&path)
    }

    /// A diagnostic located at a field path of this entity, as the server or the model names
    /// it (`definition.variants[1].weight_bp`, `variants[1].weight_bp`, `.`). A flagd file's
    /// flag is named as the file names it (`flags["k"].targeting.if[0]`).
    pub fn diagnostic(&self, kind: Kind, key: &str, field: &str, message: impl Into<String>) -> Diagnostic {
        let mut path = parse_path(field);
        if path.first() == Some(&Segment::Field("definition".into())) {
            path.remove(0);
        }
        if let Form::Flagd { variants } = &self.form {
            let in_file = self.flagd_path(variants, &path);
            let line = self.root.as_ref().map_or(1, |root| root.line_of(&in_file));
            return Diagnostic::new(message)
                .at(self.file.as_ref(), Some(line))
                .about(kind, key)
                .field(crate::source::format_path(&in_file))
                .named_by_field();
        }
        let shown = crate::source::format_path(&path);
        Diagnostic::new(message)
            .at(self.file.as_ref(), Some(self.line_of(&path)))
            .about(kind, key)
            .field(shown)
    }

    /// A field of the model's flag (`variations[1].value`) as its path in the flagd file
    /// (`flags["k"].variants["off"]`). Fields flagd has no name for keep the model's.
    fn flagd_path(&self, variants: &[String], field: &[Segment]) -> Vec<Segment> {
        let at = |name: &str| Segment::Field(name.to_owned());
        let flag = |rest: &[Segment]| -> Vec<Segment> { self.prefix.iter().chain(rest).cloned().collect() };
        let Some((Segment::Field(first), rest)) = field.split_first() else { return flag(field) };
        match first.as_str() {
            "key" => flag(&[]),
            "enabled" => flag(&[at("state")]),
            "default" => flag(&[at("defaultVariant")]),
            "variations" => match rest.first() {
                Some(Segment::Index(i)) => match variants.get(*i) {
                    Some(name) => flag(&[at("variants"), Segment::Key(name.clone())]),
                    None => flag(&[at("variants")]),
                },
                _ => flag(&[at("variants")]),
            },
            // Shared by the file's flags: at the top, not under the flag.
            "evaluators" => std::iter::once(at("$evaluators")).chain(rest.iter().cloned()).collect(),
            "flag_set_metadata" => std::iter::once(at("metadata")).chain(rest.iter().cloned()).collect(),
            _ => flag(field),
        }
    }
}

/// One entity read from a file.
#[derive(Debug, Clone)]
pub struct Spec {
    /// For experiments without an `id` in the file, the id is nil until the plan fills it.
    pub def: Def,
    pub origin: Origin,
    /// Experiments and holdouts: whether the file gave an `id`.
    pub id_given: bool,
    /// Experiments: the status the file asks for, if it names one.
    pub status: Option<ExperimentStatus>,
}

impl Spec {
    pub fn kind(&self) -> Kind {
        self.def.kind()
    }

    pub fn key(&self) -> &str {
        self.def.key()
    }
}

/// Reads every path (`-` is stdin; a directory means its `.yaml`, `.yml` and `.json` files,
/// in name order) as `format` says. Returns what parsed and every problem found.
pub fn load(paths: &[PathBuf], format: FileFormat, stdin: &mut dyn Read) -> (Vec<Spec>, Vec<Diagnostic>) {
    let mut specs = Vec::new();
    let mut problems = Vec::new();
    let mut files = Vec::new();
    for path in paths {
        if path.as_os_str() == "-" {
            files.push(None);
        } else if path.is_dir() {
            match definition_files(path) {
                Ok(found) if found.is_empty() => problems.push(
                    Diagnostic::new("no .yaml, .yml or .json files in this directory")
                        .at(path.display().to_string(), None),
                ),
                Ok(found) => files.extend(found.into_iter().map(Some)),
                Err(e) => problems.push(Diagnostic::new(e.to_string()).at(path.display().to_string(), None)),
            }
        } else {
            files.push(Some(path.clone()));
        }
    }
    let mut stdin_read = false;
    for file in files {
        let (name, text, json) = match file {
            None if stdin_read => continue,
            None => {
                stdin_read = true;
                let mut text = String::new();
                if let Err(e) = stdin.read_to_string(&mut text) {
                    problems.push(Diagnostic::new(e.to_string()).at(STDIN, None));
                    continue;
                }
                (STDIN.to_owned(), text, false)
            }
            Some(path) => {
                let name = path.display().to_string();
                match std::fs::read_to_string(&path) {
                    Ok(text) => {
                        let json = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("json"));
                        (name, text, json)
                    }
                    Err(e) => {
                        problems.push(Diagnostic::new(e.to_string()).at(name, None));
                        continue;
                    }
                }
            }
        };
        let (s, p) = parse_text_as(&name, &text, json, format);
        specs.extend(s);
        problems.extend(p);
    }
    (specs, problems)
}

fn definition_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
        if path.is_file() && matches!(ext.as_deref(), Some("yaml" | "yml" | "json")) {
            found.push(path);
        }
    }
    found.sort();
    Ok(found)
}

/// Parses one file's text, telling Cohort's documents from flagd's by their shape.
pub fn parse_text(name: &str, text: &str, json: bool) -> (Vec<Spec>, Vec<Diagnostic>) {
    parse_text_as(name, text, json, FileFormat::Auto)
}

/// Parses one file's text as `format` says. JSON is parsed strictly (a key written twice is
/// an error, as in YAML, rather than the last one winning) by cohort-core's parser, which
/// decides the values, and by the YAML parser for positions; YAML by the YAML parser alone.
pub fn parse_text_as(name: &str, text: &str, json: bool, format: FileFormat) -> (Vec<Spec>, Vec<Diagnostic>) {
    let file: Arc<str> = Arc::from(name);
    let documents: Vec<(Value, Option<Arc<Node>>)> = if json {
        match cohort_core::json::from_slice::<Value>(text.as_bytes()) {
            Ok(value) => {
                let tree = parse_yaml(text).ok().and_then(|mut docs| docs.pop()).map(Arc::new);
                vec![(value, tree)]
            }
            Err(JsonError::DuplicateKey(d)) => {
                let problem = Diagnostic::new(format!("duplicate key {:?}", d.key))
                    .at(name, Some(d.line.max(1)))
                    .field(d.path);
                return (Vec::new(), vec![problem]);
            }
            Err(JsonError::Invalid(e)) => {
                let d = Diagnostic::new(format!("invalid JSON: {e}")).at(name, Some(e.line().max(1)));
                return (Vec::new(), vec![d]);
            }
        }
    } else {
        match parse_yaml(text) {
            Ok(docs) => docs.into_iter().map(|d| (d.to_json(), Some(Arc::new(d)))).collect(),
            Err(e) => {
                let d = Diagnostic::new(format!("invalid YAML: {}", e.message)).at(name, Some(e.line));
                return (Vec::new(), vec![d]);
            }
        }
    };
    if documents.is_empty() {
        return (Vec::new(), vec![Diagnostic::new("contains no definitions").at(name, None)]);
    }
    let mut reader = Reader { specs: Vec::new(), problems: Vec::new() };
    for (value, root) in documents {
        let origin = Origin { file: file.clone(), root, prefix: Vec::new(), form: Form::Cohort };
        let flagd = match format {
            FileFormat::Auto => cohort_core::flagd::is_flagd_file(&value),
            FileFormat::Cohort => false,
            FileFormat::Flagd => true,
        };
        if flagd {
            reader.flagd(&value, origin);
        } else {
            reader.document(value, origin);
        }
    }
    (reader.specs, reader.problems)
}

struct Reader {
    specs: Vec<Spec>,
    problems: Vec<Diagnostic>,
}

/// The fields of a whole-environment document (cohort-core `Definitions`).
const ENVIRONMENT_FIELDS: [&str; 7] =
    ["version", "flags", "experiments", "layers", "segments", "metrics", "holdouts"];

impl Reader {
    fn document(&mut self, value: Value, origin: Origin) {
        match value {
            Value::Object(mut map) => {
                if let Some(kind) = map.remove("kind") {
                    let kind_line = origin.line_of(&[Segment::Field("kind".into())]);
                    match kind.as_str().and_then(crate::definition::parse_kind) {
                        Some(kind) => self.entity(kind, Value::Object(map), origin),
                        None => self.problems.push(
                            Diagnostic::new(format!(
                                "unknown kind {kind}: expected flag, experiment, layer, segment, metric or holdout"
                            ))
                            .at(origin.file.as_ref(), Some(kind_line))
                            .field("kind"),
                        ),
                    }
                } else if map.keys().any(|k| ENVIRONMENT_FIELDS.contains(&k.as_str())) {
                    self.environment(map, origin);
                } else {
                    self.problems.push(
                        Diagnostic::new(
                            "a document needs `kind:` (flag, experiment, layer, segment, metric or holdout), \
                             or the lists of an environment (flags:, experiments:, layers:, segments:, metrics:, \
                             holdouts:)",
                        )
                        .at(origin.file.as_ref(), Some(origin.line())),
                    );
                }
            }
            // A list of `kind:` documents.
            Value::Array(items) => {
                for (i, item) in items.into_iter().enumerate() {
                    let mut at = origin.clone();
                    at.prefix.push(Segment::Index(i));
                    self.document(item, at);
                }
            }
            other => self.problems.push(
                Diagnostic::new(format!("expected a mapping, found {}", json_type(&other)))
                    .at(origin.file.as_ref(), Some(origin.line())),
            ),
        }
    }

    fn environment(&mut self, map: serde_json::Map<String, Value>, origin: Origin) {
        for (field, value) in map {
            let at = |prefix: &[Segment]| {
                let mut o = origin.clone();
                o.prefix.extend_from_slice(prefix);
                o
            };
            let kind = Kind::ALL.into_iter().find(|k| k.plural() == field);
            match (kind, value) {
                // The version a snapshot was taken at; apply goes by what is there now.
                (None, _) if field == "version" => {}
                (None, _) => self.problems.push(
                    Diagnostic::new(
                        "unknown field in an environment document (expected flags, experiments, layers, segments, \
                         metrics, holdouts)",
                    )
                    .at(origin.file.as_ref(), Some(origin.line_of(&[Segment::Field(field.clone())])))
                    .field(field),
                ),
                (Some(kind), Value::Array(items)) => {
                    for (i, item) in items.into_iter().enumerate() {
                        self.entity(kind, item, at(&[Segment::Field(field.clone()), Segment::Index(i)]));
                    }
                }
                (Some(_), Value::Null) => {}
                (Some(kind), other) => {
                    // Only reached with `--format cohort`: auto reads such a file as flagd's.
                    let hint = if kind == Kind::Flag && other.is_object() {
                        " (flags by key are a flagd file: apply it with --format flagd or auto)"
                    } else {
                        ""
                    };
                    self.problems.push(
                        Diagnostic::new(format!("expected a list, found {}{hint}", json_type(&other)))
                            .at(origin.file.as_ref(), Some(origin.line_of(&[Segment::Field(field.clone())])))
                            .field(field),
                    )
                }
            }
        }
    }

    /// A flagd file: its flags, each at `flags["key"]`, or every problem with its shape at
    /// the line of the field at fault.
    fn flagd(&mut self, value: &Value, origin: Origin) {
        match cohort_core::flagd::import(value) {
            Ok(flags) => {
                for flag in flags {
                    let mut at = origin.clone();
                    at.prefix = vec![Segment::Field("flags".into()), Segment::Key(flag.key.clone())];
                    at.form =
                        Form::Flagd { variants: flag.variations.iter().map(|v| v.key.clone()).collect() };
                    let def = Def::Flag(flag);
                    self.specs.push(Spec { def, origin: at, id_given: true, status: None });
                }
            }
            Err(errors) => {
                for e in errors {
                    // A top-level property comes as `"extra"`; look it up as `["extra"]`.
                    let lookup = match serde_json::from_str::<String>(&e.path) {
                        Ok(name) => vec![Segment::Key(name)],
                        Err(_) => parse_path(&e.path),
                    };
                    let mut d = Diagnostic::new(e.message)
                        .at(origin.file.as_ref(), Some(origin.line_of(&lookup)))
                        .field(e.path)
                        .named_by_field();
                    if let [Segment::Field(flags), Segment::Key(key), ..] = lookup.as_slice()
                        && flags == "flags"
                    {
                        d = d.about(Kind::Flag, key.clone());
                    }
                    self.problems.push(d);
                }
            }
        }
    }

    fn entity(&mut self, kind: Kind, mut value: Value, origin: Origin) {
        let key = value.get("key").and_then(Value::as_str).unwrap_or("?").to_owned();
        let (mut id_given, mut status) = (true, None);
        if matches!(kind, Kind::Experiment | Kind::Holdout)
            && let Some(obj) = value.as_object_mut()
        {
            // The server assigns the id (and starts experiments as drafts); the model needs
            // them, so stand-ins go in now and the plan settles them.
            if !obj.contains_key("id") {
                id_given = false;
                obj.insert("id".into(), Value::String(uuid::Uuid::nil().to_string()));
            }
        }
        if kind == Kind::Experiment
            && let Some(obj) = value.as_object_mut()
        {
            match obj.get("status") {
                None => {
                    obj.insert("status".into(), Value::String("draft".into()));
                }
                Some(s) => status = serde_json::from_value::<ExperimentStatus>(s.clone()).ok(),
            }
        }
        match Def::parse(kind, &value) {
            Ok(def) => self.specs.push(Spec { def, origin, id_given, status }),
            Err(e) => self.problems.push(origin.diagnostic(kind, &key, &e.path, e.message)),
        }
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

#[cfg(test)]
mod tests;
