//! Cache file round trip, atomic replacement, corruption and key mismatch.

use std::path::PathBuf;

use cohort_core::{Definitions, compile};
use serde_json::json;

use super::{CacheError, key_fingerprint, read, write};

/// A fresh directory under the target dir's temp area, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "cohort-sdk-cache-{tag}-{}-{}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn defs(version: u64) -> Definitions {
    let mut d: Definitions = serde_json::from_value(json!({
        "flags": [{
            "key": "f", "type": "string", "salt": "s",
            "variations": [{"key": "a", "value": "A"}, {"key": "b", "value": "B"}],
            "off_variation": "a", "default": {"variation": "b"},
        }],
    }))
    .unwrap();
    d.version = version;
    d
}

#[test]
fn round_trip() {
    let dir = TempDir::new("rt");
    let path = dir.0.join("cohort.json");
    let fp = key_fingerprint("sdk-key-1");
    write(&path, &defs(42), &fp).unwrap();
    let file = read(&path, &fp).unwrap().unwrap();
    assert_eq!(file.version, 42);
    assert_eq!(file.definitions, defs(42));
    assert!(file.written_at > 1_600_000_000_000);
    compile(&file.definitions).unwrap();
    let raw: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    for field in ["version", "written_at", "key_fingerprint", "definitions"] {
        assert!(raw.get(field).is_some(), "missing {field}");
    }
}

#[test]
fn rewrite_replaces_and_leaves_no_temp_files() {
    let dir = TempDir::new("rw");
    let path = dir.0.join("cohort.json");
    let fp = key_fingerprint("k");
    for v in 1..=5 {
        write(&path, &defs(v), &fp).unwrap();
    }
    assert_eq!(read(&path, &fp).unwrap().unwrap().version, 5);
    let names: Vec<String> = std::fs::read_dir(&dir.0)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["cohort.json"]);
}

#[test]
fn missing_file_is_none() {
    let dir = TempDir::new("missing");
    assert!(read(&dir.0.join("nope.json"), "x").unwrap().is_none());
}

#[test]
fn corrupt_file_is_an_error() {
    let dir = TempDir::new("corrupt");
    let path = dir.0.join("cohort.json");
    let fp = key_fingerprint("k");
    write(&path, &defs(3), &fp).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    assert!(matches!(read(&path, &fp), Err(CacheError::Corrupt { .. })));
    std::fs::write(&path, b"").unwrap();
    assert!(matches!(read(&path, &fp), Err(CacheError::Corrupt { .. })));
    std::fs::write(&path, br#"{"version": 1}"#).unwrap();
    assert!(matches!(read(&path, &fp), Err(CacheError::Corrupt { .. })));
}

#[test]
fn another_keys_file_is_refused() {
    let dir = TempDir::new("key");
    let path = dir.0.join("cohort.json");
    write(&path, &defs(3), &key_fingerprint("key-a")).unwrap();
    assert!(matches!(read(&path, &key_fingerprint("key-b")), Err(CacheError::OtherKey { .. })));
}

#[test]
fn write_into_a_missing_directory_fails_cleanly() {
    let dir = TempDir::new("nodir");
    let path = dir.0.join("no/such/dir/cohort.json");
    assert!(matches!(write(&path, &defs(1), "x"), Err(CacheError::Io { .. })));
}

#[test]
fn fingerprint_is_stable_and_hides_the_key() {
    assert_eq!(key_fingerprint(""), "cbf29ce484222325");
    assert_eq!(key_fingerprint("a"), "af63dc4c8601ec8c");
    assert_ne!(key_fingerprint("sdk-1"), key_fingerprint("sdk-2"));
    assert!(!key_fingerprint("sdk-secret").contains("secret"));
}
