//! Marked documents: YAML (and JSON, which is YAML) parsed into trees that remember the line
//! of every node, and field paths (`definition.variants[1].weight_bp`, `flags["x"].rules[0]`)
//! resolved to the line of the node they name.

use std::collections::HashMap;
use std::fmt;

use serde_json::{Map, Number, Value};
use yaml_rust2::Yaml;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// A node of a parsed document and the line (1-based) it starts on.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub line: usize,
    pub value: NodeValue,
}

#[derive(Debug, Clone, PartialEq)]
pub enum NodeValue {
    /// A resolved scalar, and its text as written (mapping keys use the text).
    Scalar {
        value: Value,
        text: String,
    },
    Seq(Vec<Node>),
    Map(Vec<Entry>),
}

/// One `key: value` of a mapping; `line` is the key's line, where a reader looks for a field.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub key: String,
    pub line: usize,
    pub value: Node,
}

/// Where a YAML or JSON text stops making sense.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (line {}, column {})", self.message, self.line, self.column)
    }
}

impl Node {
    /// The JSON value of this node.
    pub fn to_json(&self) -> Value {
        match &self.value {
            NodeValue::Scalar { value, .. } => value.clone(),
            NodeValue::Seq(items) => Value::Array(items.iter().map(Node::to_json).collect()),
            NodeValue::Map(entries) => {
                let map: Map<String, Value> =
                    entries.iter().map(|e| (e.key.clone(), e.value.to_json())).collect();
                Value::Object(map)
            }
        }
    }

    /// The value under `key` in a mapping node.
    pub fn get(&self, key: &str) -> Option<&Entry> {
        match &self.value {
            NodeValue::Map(entries) => entries.iter().find(|e| e.key == key),
            _ => None,
        }
    }

    /// The line of the deepest node along `path` that exists: the field itself when it is in
    /// the file, else its nearest written ancestor (a missing field points at its parent).
    pub fn line_of(&self, path: &[Segment]) -> usize {
        let mut node = self;
        let mut line = self.line;
        for segment in path {
            let next = match (segment, &node.value) {
                (Segment::Field(name), NodeValue::Map(entries)) => {
                    entries.iter().find(|e| e.key == *name).map(|e| (e.line, &e.value))
                }
                (Segment::Index(i), NodeValue::Seq(items)) => items.get(*i).map(|n| (n.line, n)),
                // `flags["new-checkout"]`: the element of a list whose `key` is that.
                (Segment::Key(key), NodeValue::Seq(items)) => items
                    .iter()
                    .find(|n| n.get("key").and_then(|e| e.value.as_str()) == Some(key.as_str()))
                    .map(|n| (n.line, n)),
                (Segment::Key(key), NodeValue::Map(entries)) => {
                    entries.iter().find(|e| e.key == *key).map(|e| (e.line, &e.value))
                }
                _ => None,
            };
            let Some((at, child)) = next else { break };
            line = at;
            node = child;
        }
        line
    }

    fn as_str(&self) -> Option<&str> {
        match &self.value {
            NodeValue::Scalar { value: Value::String(s), .. } => Some(s),
            _ => None,
        }
    }
}

/// Parses a YAML stream (one or more `---` documents) into marked trees. Empty documents
/// (a trailing `---`, a file of comments) are left out.
pub fn parse_yaml(text: &str) -> Result<Vec<Node>, SyntaxError> {
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(text);
    parser.load(&mut builder, true).map_err(|e| syntax(e.marker(), e.info()))?;
    if let Some(e) = builder.error {
        return Err(e);
    }
    Ok(builder
        .docs
        .into_iter()
        .filter(|d| !matches!(&d.value, NodeValue::Scalar { value: Value::Null, .. }))
        .collect())
}

fn syntax(mark: &Marker, message: &str) -> SyntaxError {
    // The scanner's lines are 1-based and its columns 0-based.
    SyntaxError { line: mark.line().max(1), column: mark.col() + 1, message: message.to_owned() }
}

/// Builds trees from parser events; the parser reports a marker with every event.
#[derive(Default)]
struct Builder {
    docs: Vec<Node>,
    stack: Vec<Frame>,
    anchors: HashMap<usize, Node>,
    error: Option<SyntaxError>,
}

enum Frame {
    Seq { line: usize, anchor: usize, items: Vec<Node> },
    Map { line: usize, anchor: usize, entries: Vec<Entry>, key: Option<(String, usize)> },
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, event: Event, mark: Marker) {
        if self.error.is_some() {
            return;
        }
        if let Err(e) = self.event(event, mark) {
            self.error = Some(e);
        }
    }
}

impl Builder {
    fn event(&mut self, event: Event, mark: Marker) -> Result<(), SyntaxError> {
        let line = mark.line().max(1);
        match event {
            Event::SequenceStart(anchor, _) => {
                self.stack.push(Frame::Seq { line, anchor, items: Vec::new() })
            }
            Event::MappingStart(anchor, _) => {
                self.stack.push(Frame::Map { line, anchor, entries: Vec::new(), key: None })
            }
            Event::SequenceEnd | Event::MappingEnd => match self.stack.pop() {
                Some(Frame::Seq { line, anchor, items }) => {
                    self.insert(Node { line, value: NodeValue::Seq(items) }, anchor, &mark)?
                }
                Some(Frame::Map { line, anchor, entries, .. }) => {
                    self.insert(Node { line, value: NodeValue::Map(entries) }, anchor, &mark)?
                }
                None => return Err(syntax(&mark, "unbalanced collection end")),
            },
            Event::Scalar(text, style, anchor, tag) => {
                let value = resolve(&text, style, tag.as_ref())
                    .ok_or_else(|| syntax(&mark, &format!("{text:?} is not a valid value for its tag")))?;
                self.insert(Node { line, value: NodeValue::Scalar { value, text } }, anchor, &mark)?;
            }
            Event::Alias(anchor) => {
                let mut node = self
                    .anchors
                    .get(&anchor)
                    .cloned()
                    .ok_or_else(|| syntax(&mark, "alias to an unknown anchor"))?;
                node.line = line;
                self.insert(node, 0, &mark)?;
            }
            Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart
            | Event::DocumentEnd
            | Event::Nothing => {}
        }
        Ok(())
    }

    fn insert(&mut self, node: Node, anchor: usize, mark: &Marker) -> Result<(), SyntaxError> {
        if anchor > 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            None => self.docs.push(node),
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map { entries, key, .. }) => match key.take() {
                Some((key, line)) => entries.push(Entry { key, line, value: node }),
                None => {
                    let NodeValue::Scalar { text, .. } = node.value else {
                        return Err(syntax(mark, "mapping keys must be plain strings"));
                    };
                    if entries.iter().any(|e| e.key == text) {
                        return Err(SyntaxError {
                            line: node.line,
                            column: mark.col() + 1,
                            message: format!("duplicate key {text:?}"),
                        });
                    }
                    *key = Some((text, node.line));
                }
            },
        }
        Ok(())
    }
}

/// The YAML 1.2 core schema: quoted scalars are strings; plain ones may be null, booleans or
/// numbers; `!!str` and friends force a type. `None` when a tag and its text disagree.
fn resolve(text: &str, style: TScalarStyle, tag: Option<&Tag>) -> Option<Value> {
    if let Some(tag) = tag.filter(|t| t.handle == "tag:yaml.org,2002:") {
        return match tag.suffix.as_str() {
            "str" => Some(Value::String(text.to_owned())),
            "null" => matches!(text, "" | "~" | "null" | "Null" | "NULL").then_some(Value::Null),
            "bool" => match text {
                "true" | "True" | "TRUE" => Some(Value::Bool(true)),
                "false" | "False" | "FALSE" => Some(Value::Bool(false)),
                _ => None,
            },
            "int" | "float" => match yaml_scalar(text) {
                v @ Some(Value::Number(_)) => v,
                _ => None,
            },
            _ => Some(Value::String(text.to_owned())),
        };
    }
    if style != TScalarStyle::Plain {
        return Some(Value::String(text.to_owned()));
    }
    match text {
        "Null" | "NULL" => Some(Value::Null),
        _ => yaml_scalar(text),
    }
}

fn yaml_scalar(text: &str) -> Option<Value> {
    Some(match Yaml::from_str(text) {
        Yaml::Null => Value::Null,
        Yaml::Boolean(b) => Value::Bool(b),
        Yaml::Integer(i) => Value::Number(i.into()),
        Yaml::Real(r) => match r.parse::<f64>().ok().and_then(Number::from_f64) {
            Some(n) => Value::Number(n),
            // `.inf`, `.nan` and friends have no JSON form; keep the text.
            None => Value::String(r),
        },
        Yaml::String(s) => Value::String(s),
        _ => return None,
    })
}

/// One step of a field path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// `.name`
    Field(String),
    /// `[3]`
    Index(usize),
    /// `["key"]`: an element of a list by its `key`, or a mapping entry.
    Key(String),
}

/// Parses `definition.variants[1].weight_bp` or `flags["new-checkout"].rules[0]`. Parsing
/// stops at the first thing it does not understand, keeping what came before.
pub fn parse_path(path: &str) -> Vec<Segment> {
    let mut out = Vec::new();
    let mut rest = path.trim();
    if rest == "." {
        return out;
    }
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            rest = r;
            continue;
        }
        if let Some(r) = rest.strip_prefix("[\"") {
            // A JSON string literal up to the closing `"]`.
            let Some(end) = find_string_end(r) else { break };
            let Ok(key) = serde_json::from_str::<String>(&rest[1..end + 3]) else { break };
            out.push(Segment::Key(key));
            rest = r[end..].strip_prefix("\"]").unwrap_or("");
            continue;
        }
        if let Some(r) = rest.strip_prefix('[') {
            let Some((index, after)) = r.split_once(']') else { break };
            let Ok(index) = index.trim().parse() else { break };
            out.push(Segment::Index(index));
            rest = after;
            continue;
        }
        let end = rest.find(['.', '[']).unwrap_or(rest.len());
        let name = &rest[..end];
        if name == "?" {
            break;
        }
        out.push(Segment::Field(name.to_owned()));
        rest = &rest[end..];
    }
    out
}

/// The byte index of the unescaped `"` that closes a string whose body starts `s`.
fn find_string_end(s: &str) -> Option<usize> {
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match c {
            '\\' if !escaped => escaped = true,
            '"' if !escaped => return Some(i),
            _ => escaped = false,
        }
    }
    None
}

/// Writes a path back in the server's notation.
pub fn format_path(path: &[Segment]) -> String {
    let mut out = String::new();
    for segment in path {
        match segment {
            Segment::Field(name) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(name);
            }
            Segment::Index(i) => out.push_str(&format!("[{i}]")),
            Segment::Key(k) => out.push_str(&format!("[{}]", Value::String(k.clone()))),
        }
    }
    out
}

#[cfg(test)]
mod tests;
