//! The verified-key record on disk: round trip, expiry, bound, refusals, and what the file holds.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use cohort_core::time::unix_ms;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{KeyRecord, MAX_RECORDED_KEYS, RECORD_FILE, Recorded};

const NOW: i64 = 1_750_000_000_000;
const DAY: Duration = Duration::from_secs(24 * 3600);

fn recorded(verified_at_ms: i64) -> Recorded {
    Recorded {
        environment_id: Uuid::new_v4(),
        organization_id: Uuid::new_v4(),
        key_id: Uuid::new_v4(),
        verified_at_ms,
        exposures_only: false,
    }
}

#[test]
fn a_saved_record_is_loaded_by_the_next_start_without_the_secret() {
    let dir = tempfile::tempdir().unwrap();
    let secret = cohort_db::keys::generate(cohort_db::keys::KeyKind::Sdk).secret;
    let hash = cohort_db::keys::hash(&secret);
    let key = recorded(NOW - 1000);

    let record = KeyRecord::load(dir.path(), DAY, NOW);
    assert!(record.get(&hash, NOW).is_none());
    record.verified(&hash, key);
    record.save(NOW).unwrap();

    let text = std::fs::read_to_string(dir.path().join(RECORD_FILE)).unwrap();
    assert!(!text.contains(&secret), "the secret is on disk");
    assert!(!text.contains(&secret["cohort_sdk_".len()..]), "the secret is on disk");
    assert!(text.contains(&hex::encode(&hash)), "{text}");
    assert!(!dir.path().join(super::RECORD_TMP).exists());

    let reloaded = KeyRecord::load(dir.path(), DAY, NOW);
    let (got, left) = reloaded.get(&hash, NOW).expect("recorded key");
    assert_eq!(got, key);
    assert_eq!(left, DAY - Duration::from_secs(1));
}

#[test]
fn expired_entries_are_not_used_nor_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let hash = cohort_db::keys::hash("a");
    let record = KeyRecord::load(dir.path(), Duration::from_secs(60), NOW);
    record.verified(&hash, recorded(NOW));
    assert!(record.get(&hash, NOW + 59_000).is_some());
    assert!(record.get(&hash, NOW + 60_000).is_none());
    record.save(NOW).unwrap();
    assert!(KeyRecord::load(dir.path(), Duration::from_secs(60), NOW + 61_000).get(&hash, NOW).is_none());
    // A shorter maximum age at the next start applies to entries written under a longer one.
    assert!(
        KeyRecord::load(dir.path(), Duration::from_secs(1), NOW + 2_000).get(&hash, NOW + 2_000).is_none()
    );
}

#[test]
fn refused_keys_are_forgotten_and_the_record_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let record = KeyRecord::load(dir.path(), DAY, NOW);
    let revoked = cohort_db::keys::hash("revoked");
    record.verified(&revoked, recorded(NOW));
    record.forget(&revoked);
    assert!(record.get(&revoked, NOW).is_none());

    let oldest = cohort_db::keys::hash("key-0");
    for i in 0..=MAX_RECORDED_KEYS {
        record.verified(&cohort_db::keys::hash(&format!("key-{i}")), recorded(NOW - 1_000_000 + i as i64));
    }
    assert_eq!(record.lock().len(), MAX_RECORDED_KEYS);
    assert!(record.get(&oldest, NOW).is_none(), "the least recently verified key is dropped");
    record.save(NOW).unwrap();
    assert_eq!(KeyRecord::load(dir.path(), DAY, NOW).lock().len(), MAX_RECORDED_KEYS);
}

#[test]
fn an_unreadable_file_is_an_empty_record() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(RECORD_FILE), b"{not json").unwrap();
    let record = KeyRecord::load(dir.path(), DAY, NOW);
    assert!(record.lock().is_empty());
    record.save(NOW).unwrap();
    assert!(KeyRecord::load(dir.path(), DAY, NOW).lock().is_empty());
}

#[tokio::test]
async fn the_writer_saves_changes_and_once_more_at_stop() {
    let dir = tempfile::tempdir().unwrap();
    let record = Arc::new(KeyRecord::load(dir.path(), DAY, unix_ms(SystemTime::now())));
    let stop = CancellationToken::new();
    let writer = tokio::spawn(record.clone().run_writer(stop.clone()));
    let (first, second) = (cohort_db::keys::hash("first"), cohort_db::keys::hash("second"));
    record.verified(&first, recorded(unix_ms(SystemTime::now())));
    let path = dir.path().join(RECORD_FILE);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !path.exists() {
        assert!(std::time::Instant::now() < deadline, "the record was not written");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Saved by the next write or, at the latest, by the last one at stop.
    record.verified(&second, recorded(unix_ms(SystemTime::now())));
    stop.cancel();
    writer.await.unwrap();
    let reloaded = KeyRecord::load(dir.path(), DAY, unix_ms(SystemTime::now()));
    assert!(reloaded.get(&first, unix_ms(SystemTime::now())).is_some());
    assert!(reloaded.get(&second, unix_ms(SystemTime::now())).is_some());
}
