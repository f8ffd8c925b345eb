//! The last-known-good config on disk: each applied config is written atomically (temp file in
//! the same directory, fsync, rename) as `{version, written_at, key_fingerprint, definitions}`,
//! and read back at start when the config service cannot be reached.
//!
//! `written_at` is Unix milliseconds. `key_fingerprint` is a 64-bit FNV-1a hash of the SDK key
//! (not the key), so a file written for another environment is never served or resumed from.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use cohort_core::Definitions;
use cohort_core::time::unix_ms;
use serde::{Deserialize, Serialize};

/// Why a cache file could not be used. Logged and ignored by the client.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CacheError {
    #[error("cache file {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("cache file {path} is corrupt: {source}")]
    Corrupt { path: PathBuf, source: serde_json::Error },
    #[error("cache file {path} was written for another sdk key")]
    OtherKey { path: PathBuf },
}

/// The file's contents as written.
#[derive(Debug, Serialize)]
struct CacheFileRef<'a> {
    version: u64,
    written_at: u64,
    key_fingerprint: &'a str,
    definitions: &'a Definitions,
}

/// The file's contents as read.
#[derive(Debug, Deserialize)]
pub(crate) struct CacheFile {
    pub(crate) version: u64,
    pub(crate) written_at: u64,
    pub(crate) key_fingerprint: String,
    pub(crate) definitions: Definitions,
}

/// A stable fingerprint of the SDK key: FNV-1a 64, as 16 hex digits.
pub(crate) fn key_fingerprint(sdk_key: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in sdk_key.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// Reads the cache file: `Ok(None)` when there is none, an error when it exists but cannot be
/// used. The definitions' version is the file's `version`.
pub(crate) fn read(path: &Path, fingerprint: &str) -> Result<Option<CacheFile>, CacheError> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(CacheError::Io { path: path.to_owned(), source }),
    };
    let mut file: CacheFile = serde_json::from_slice(&bytes)
        .map_err(|source| CacheError::Corrupt { path: path.to_owned(), source })?;
    if file.key_fingerprint != fingerprint {
        return Err(CacheError::OtherKey { path: path.to_owned() });
    }
    file.definitions.version = file.version;
    Ok(Some(file))
}

/// Writes `defs` atomically: a reader sees the old file or the new one, never a torn one.
pub(crate) fn write(path: &Path, defs: &Definitions, fingerprint: &str) -> Result<(), CacheError> {
    let io_err = |source| CacheError::Io { path: path.to_owned(), source };
    let written_at = u64::try_from(unix_ms(SystemTime::now())).unwrap_or(0);
    let body =
        CacheFileRef { version: defs.version, written_at, key_fingerprint: fingerprint, definitions: defs };
    let bytes = serde_json::to_vec(&body).map_err(|e| io_err(io::Error::other(e)))?;

    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    let name = path.file_name().map_or_else(|| "cohort-cache".into(), |n| n.to_string_lossy().into_owned());
    let tmp = dir.join(format!(".{name}.{}.{}.tmp", std::process::id(), rand::random::<u32>()));
    let result = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)?;
        // Persist the rename itself; not every platform lets a directory be opened, so this is
        // best effort.
        if let Ok(d) = File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(io_err)
}

#[cfg(test)]
mod tests;
