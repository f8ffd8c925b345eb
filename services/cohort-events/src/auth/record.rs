//! The record of recently verified SDK keys, kept in the spool directory, so a service
//! restarted while the config service cannot answer still accepts the keys it knew and the
//! spool absorbs the outage.
//!
//! Only what the principal needs is kept, by the SHA-256 of the secret (never the secret):
//! environment, organization, key id, and when the config service last vouched for the key.
//! Entries expire after the configured age and the record holds at most [`MAX_RECORDED_KEYS`].
//! The file is replaced atomically (write, fsync, rename, fsync directory) by one writer task,
//! at most once per [`MIN_WRITE_INTERVAL`]. The record only stands in for the config service:
//! whenever it answers, its answer wins and a refused key is dropped from the record.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use cohort_core::time::unix_ms;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::warn;
use uuid::Uuid;

/// The record's file name in the spool directory.
pub(crate) const RECORD_FILE: &str = "verified-keys.json";
const RECORD_TMP: &str = "verified-keys.json.tmp";
/// Most keys recorded; past it the least recently verified is dropped.
pub(crate) const MAX_RECORDED_KEYS: usize = 10_000;
/// Shortest time between two writes of the file.
const MIN_WRITE_INTERVAL: Duration = Duration::from_secs(1);
/// A re-verification rewrites the file only when the recorded time is older than this, so
/// busy keys re-verified every cache TTL do not rewrite it each time.
const REFRESH_AFTER_MS: i64 = 60_000;
/// The file format's version.
const VERSION: u32 = 1;

/// What the record knows of one verified SDK key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Recorded {
    pub(crate) environment_id: Uuid,
    pub(crate) organization_id: Uuid,
    pub(crate) key_id: Uuid,
    /// When the config service last vouched for the key, in milliseconds since the Unix epoch.
    pub(crate) verified_at_ms: i64,
    /// A client-side key (exposures only). Absent in records written before client keys
    /// existed, which held SDK keys only.
    #[serde(default)]
    pub(crate) exposures_only: bool,
}

#[derive(Debug, Serialize, Deserialize)]
struct FileEntry {
    /// Hex SHA-256 of the secret.
    key_sha256: String,
    #[serde(flatten)]
    recorded: Recorded,
}

#[derive(Debug, Serialize, Deserialize)]
struct RecordFile {
    version: u32,
    keys: Vec<FileEntry>,
}

/// Recently verified SDK keys, in memory and in the spool directory.
#[derive(Debug)]
pub(crate) struct KeyRecord {
    dir: PathBuf,
    max_age_ms: i64,
    keys: Mutex<HashMap<Vec<u8>, Recorded>>,
    dirty: AtomicBool,
    changed: Notify,
}

impl KeyRecord {
    /// The record in `dir` without its entries older than `max_age`. A missing file is an
    /// empty record; an unreadable one is logged and replaced at the next write (the record
    /// only helps during outages, it must not stop the service from starting).
    pub(crate) fn load(dir: &Path, max_age: Duration, now_ms: i64) -> KeyRecord {
        let record = KeyRecord {
            dir: dir.to_owned(),
            max_age_ms: i64::try_from(max_age.as_millis()).unwrap_or(i64::MAX),
            keys: Mutex::new(HashMap::new()),
            dirty: AtomicBool::new(false),
            changed: Notify::new(),
        };
        let path = dir.join(RECORD_FILE);
        let file = match fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice::<RecordFile>(&bytes) {
                Ok(file) if file.version == VERSION => file,
                Ok(file) => {
                    warn!(path = %path.display(), version = file.version, "ignoring a verified-key record of an unknown version");
                    return record;
                }
                Err(e) => {
                    warn!(path = %path.display(), error = %e, "ignoring an unreadable verified-key record");
                    return record;
                }
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => return record,
            Err(e) => {
                warn!(path = %path.display(), error = %e, "cannot read the verified-key record");
                return record;
            }
        };
        {
            let mut keys = record.lock();
            for entry in file.keys {
                let Ok(hash) = hex::decode(&entry.key_sha256) else { continue };
                if hash.len() == 32 && record.fresh(&entry.recorded, now_ms) {
                    keys.insert(hash, entry.recorded);
                }
            }
            while keys.len() > MAX_RECORDED_KEYS {
                evict_oldest(&mut keys);
            }
        }
        record
    }

    /// Whether `recorded` is younger than the maximum age (either way, should the clock have
    /// stepped back).
    fn fresh(&self, recorded: &Recorded, now_ms: i64) -> bool {
        (i128::from(now_ms) - i128::from(recorded.verified_at_ms)).abs() < i128::from(self.max_age_ms)
    }

    /// The recorded key with this hash, if it has not expired, and how long it stays usable.
    pub(crate) fn get(&self, hash: &[u8], now_ms: i64) -> Option<(Recorded, Duration)> {
        let recorded = *self.lock().get(hash)?;
        if !self.fresh(&recorded, now_ms) {
            return None;
        }
        let left = self.max_age_ms.saturating_sub(now_ms.saturating_sub(recorded.verified_at_ms));
        Some((recorded, Duration::from_millis(u64::try_from(left).unwrap_or(0))))
    }

    /// The config service has just vouched for this key.
    pub(crate) fn verified(&self, hash: &[u8], recorded: Recorded) {
        let mut keys = self.lock();
        let changed = match keys.get(hash) {
            Some(old) => {
                (old.environment_id, old.organization_id, old.key_id)
                    != (recorded.environment_id, recorded.organization_id, recorded.key_id)
                    || recorded.verified_at_ms - old.verified_at_ms >= REFRESH_AFTER_MS
            }
            None => {
                if keys.len() >= MAX_RECORDED_KEYS {
                    evict_oldest(&mut keys);
                }
                true
            }
        };
        keys.insert(hash.to_vec(), recorded);
        drop(keys);
        if changed {
            self.mark_changed();
        }
    }

    /// The config service refused this key (unknown, revoked, or not an SDK key).
    pub(crate) fn forget(&self, hash: &[u8]) {
        if self.lock().remove(hash).is_some() {
            self.mark_changed();
        }
    }

    fn mark_changed(&self) {
        self.dirty.store(true, Ordering::Release);
        self.changed.notify_one();
    }

    /// Writes the unexpired entries to the file, replacing it atomically and durably.
    pub(crate) fn save(&self, now_ms: i64) -> io::Result<()> {
        self.dirty.store(false, Ordering::Release);
        let file = {
            let mut keys = self.lock();
            keys.retain(|_, r| self.fresh(r, now_ms));
            let mut entries: Vec<FileEntry> = keys
                .iter()
                .map(|(hash, recorded)| FileEntry { key_sha256: hex::encode(hash), recorded: *recorded })
                .collect();
            // Stable output, so equal records give equal files.
            entries.sort_unstable_by(|a, b| a.key_sha256.cmp(&b.key_sha256));
            RecordFile { version: VERSION, keys: entries }
        };
        let bytes = serde_json::to_vec(&file).map_err(io::Error::other)?;
        let tmp = self.dir.join(RECORD_TMP);
        let mut out = File::create(&tmp)?;
        out.write_all(&bytes)?;
        out.sync_data()?;
        drop(out);
        fs::rename(&tmp, self.dir.join(RECORD_FILE))?;
        File::open(&self.dir)?.sync_all()
    }

    /// Writes the file after each change, at most once per [`MIN_WRITE_INTERVAL`], and a last
    /// time when `stop` fires if anything changed since.
    pub(crate) async fn run_writer(self: Arc<Self>, stop: CancellationToken) {
        loop {
            tokio::select! {
                _ = self.changed.notified() => {}
                _ = stop.cancelled() => break,
            }
            if self.dirty.load(Ordering::Acquire) {
                self.clone().save_in_background().await;
            }
            tokio::select! {
                _ = tokio::time::sleep(MIN_WRITE_INTERVAL) => {}
                _ = stop.cancelled() => break,
            }
        }
        if self.dirty.load(Ordering::Acquire) {
            self.save_in_background().await;
        }
    }

    async fn save_in_background(self: Arc<Self>) {
        let record = self.clone();
        let saved = tokio::task::spawn_blocking(move || record.save(unix_ms(SystemTime::now()))).await;
        match saved {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                // Try again at the next change or at shutdown.
                self.dirty.store(true, Ordering::Release);
                warn!(dir = %self.dir.display(), error = %e, "cannot write the verified-key record");
            }
            Err(_) => warn!("the verified-key record writer panicked"),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Vec<u8>, Recorded>> {
        self.keys.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Drops the least recently verified key.
fn evict_oldest(keys: &mut HashMap<Vec<u8>, Recorded>) {
    let oldest = keys.iter().min_by_key(|(_, r)| r.verified_at_ms).map(|(hash, _)| hash.clone());
    if let Some(hash) = oldest {
        keys.remove(&hash);
    }
}

#[cfg(test)]
mod tests;
