//! Where a command's output goes (stdout, stderr, stdin, or buffers in tests) and the shapes
//! it takes: aligned human tables, or JSON, YAML or CSV for machines.

use std::io::{Read, Write};

use serde::Serialize;

/// `--output`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns and sentences for people.
    Table,
    /// One JSON document on stdout.
    Json,
    /// The read commands: the same document as `json`, as YAML.
    Yaml,
    /// `results` only: one row per variant and metric.
    Csv,
    /// `get flags` only: a flagd flag-definition file (JSON) of the environment's flags.
    Flagd,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Table => "table",
            Format::Json => "json",
            Format::Yaml => "yaml",
            Format::Csv => "csv",
            Format::Flagd => "flagd",
        }
    }
}

/// A command's streams. Results go to `out`; progress that is not the result, warnings and
/// errors go to `err`, so `out` stays parseable.
pub struct Console<'a> {
    pub out: &'a mut (dyn Write + Send),
    pub err: &'a mut (dyn Write + Send),
    pub input: &'a mut (dyn Read + Send),
    pub format: Format,
    /// Whether `input` is a terminal, where a person can answer a question (`apply --prune`).
    pub terminal: bool,
}

impl std::fmt::Debug for Console<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Console")
            .field("format", &self.format)
            .field("terminal", &self.terminal)
            .finish_non_exhaustive()
    }
}

impl Console<'_> {
    pub fn is_json(&self) -> bool {
        self.format == Format::Json
    }

    /// JSON or YAML: a document for machines rather than a table.
    pub fn is_data(&self) -> bool {
        matches!(self.format, Format::Json | Format::Yaml)
    }

    /// A document in the chosen machine format: YAML with `-o yaml`, else pretty JSON.
    pub fn data(&mut self, value: &impl Serialize) -> std::io::Result<()> {
        if self.format != Format::Yaml {
            return self.json(value);
        }
        let text = yaml(value).map_err(std::io::Error::other)?;
        write!(self.out, "{text}")
    }

    /// Asks a yes/no question on stderr and reads the answer from `input`; only `y` or `yes`
    /// is yes.
    pub fn confirm(&mut self, question: &str) -> std::io::Result<bool> {
        write!(self.err, "{question} [y/N] ")?;
        self.err.flush()?;
        let mut answer = Vec::new();
        let mut byte = [0u8; 1];
        // Byte by byte up to the newline, so nothing after the answer is consumed.
        while self.input.read(&mut byte)? == 1 && byte[0] != b'\n' {
            answer.push(byte[0]);
        }
        let answer = String::from_utf8_lossy(&answer).trim().to_ascii_lowercase();
        Ok(answer == "y" || answer == "yes")
    }

    /// A line of human output on stdout.
    pub fn line(&mut self, text: impl AsRef<str>) -> std::io::Result<()> {
        writeln!(self.out, "{}", text.as_ref())
    }

    /// A line on stderr.
    pub fn note(&mut self, text: impl AsRef<str>) -> std::io::Result<()> {
        writeln!(self.err, "{}", text.as_ref())
    }

    /// A value as pretty JSON on stdout.
    pub fn json(&mut self, value: &impl Serialize) -> std::io::Result<()> {
        serde_json::to_writer_pretty(&mut *self.out, value)?;
        writeln!(self.out)
    }
}

/// A value as YAML, keeping the field order it serializes in (the model's order, `kind`
/// first), with externally tagged enums as plain mappings (`default: {variation: off}`), so
/// the text reads back through `apply`.
pub fn yaml(value: &impl Serialize) -> Result<String, String> {
    // JSON text keeps the serialization order, and YAML is a superset of JSON: the YAML
    // loader's ordered mappings carry the order on to the emitter.
    let json = serde_json::to_string(value).map_err(|e| e.to_string())?;
    let docs = yaml_rust2::YamlLoader::load_from_str(&json).map_err(|e| e.to_string())?;
    let mut out = String::new();
    let mut emitter = yaml_rust2::YamlEmitter::new(&mut out);
    emitter.multiline_strings(true);
    if let Some(doc) = docs.first() {
        emitter.dump(doc).map_err(|e| format!("{e:?}"))?;
    }
    let body = out.strip_prefix("---\n").or_else(|| out.strip_prefix("---")).unwrap_or(&out);
    Ok(format!("{}\n", body.trim_start_matches('\n').trim_end()))
}

/// Rows aligned under their headers, two spaces apart; the last column is not padded.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let mut out = String::new();
    let header: Vec<String> = headers.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            line.push_str(cell);
            if i + 1 < row.len() {
                let pad = widths.get(i).copied().unwrap_or(0).saturating_sub(cell.chars().count());
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// CSV (RFC 4180): a header line, then the rows; a field with a comma, a quote or a line
/// break is quoted, its quotes doubled. Lines end in LF, as shell tools expect (readers of
/// the RFC's CRLF take both).
pub fn csv(headers: &[&str], rows: &[Vec<String>]) -> String {
    fn field(text: &str) -> String {
        if text.contains([',', '"', '\n', '\r']) {
            format!("\"{}\"", text.replace('"', "\"\""))
        } else {
            text.to_owned()
        }
    }
    let mut out = String::new();
    let header: Vec<String> = headers.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header).chain(rows) {
        out.push_str(&row.iter().map(|c| field(c)).collect::<Vec<_>>().join(","));
        out.push('\n');
    }
    out
}

/// Milliseconds since the Unix epoch as `2026-03-01T12:00:00Z`; `-` for 0 (never).
pub fn timestamp(ms: i64) -> String {
    if ms <= 0 {
        return "-".into();
    }
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = cohort_core::time::civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests;
