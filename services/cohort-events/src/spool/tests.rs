//! The spool's codec, recovery of torn tails, group commit, rolling, limits and checkpoints.

use std::fs::OpenOptions;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use cohort_proto::events::v1 as pb;
use prometheus_client::registry::Registry;

use super::codec::{self, Header, Position, SEGMENT_HEADER_LEN, SpoolRecord};
use super::files::{self, RecordReader, Stop};
use super::{SpoolConfig, SpoolError, open};
use crate::metrics::Metrics;

fn metrics() -> Arc<Metrics> {
    Arc::new(Metrics::new(&mut Registry::default()))
}

fn record(n: usize, tag: i64) -> SpoolRecord {
    SpoolRecord {
        environment_id: vec![7; 16],
        received_at_ms: 1_700_000_000_000 + tag,
        events: (0..n)
            .map(|i| pb::Event {
                event_id: format!("00000000-0000-4000-8000-{:012}", tag * 10_000 + i as i64),
                timestamp_ms: 1_700_000_000_000,
                kind: Some(pb::event::Kind::Metric(pb::Metric {
                    unit: format!("user-{i}"),
                    name: "checkout".to_owned(),
                    value: Some(i as f64),
                    properties: Default::default(),
                })),
            })
            .collect(),
    }
}

fn config(dir: &std::path::Path) -> SpoolConfig {
    SpoolConfig {
        dir: dir.to_owned(),
        max_bytes: 1 << 30,
        segment_bytes: 1 << 20,
        fsync_window: Duration::ZERO,
    }
}

#[test]
fn frames_round_trip_and_checksums_catch_damage() {
    let rec = record(3, 1);
    let framed = codec::frame(&rec);
    let mut reader = RecordReader::new(framed.as_slice(), 0);
    let raw = reader.next_record().unwrap().unwrap();
    assert_eq!(raw.end, framed.len() as u64);
    assert_eq!(<SpoolRecord as prost::Message>::decode(raw.payload.as_slice()).unwrap(), rec);
    assert_eq!(reader.next_record().unwrap().unwrap_err(), Stop::End);

    for i in [0, 3, 5, 9, framed.len() - 1] {
        let mut damaged = framed.clone();
        damaged[i] ^= 0x40;
        let got = RecordReader::new(damaged.as_slice(), 0).next_record().unwrap();
        assert_eq!(got.unwrap_err(), Stop::Torn, "flipped byte {i}");
    }
    let short = &framed[..framed.len() - 1];
    assert_eq!(RecordReader::new(short, 0).next_record().unwrap().unwrap_err(), Stop::Torn);
    assert_eq!(RecordReader::new(&framed[..5], 0).next_record().unwrap().unwrap_err(), Stop::Torn);
    assert_eq!(codec::parse_header([0; 8]), Header::Invalid);
}

#[test]
fn checkpoints_round_trip_and_reject_garbage() {
    let p = Position { segment: 42, offset: 123_456 };
    let bytes = codec::encode_checkpoint(p);
    assert_eq!(codec::decode_checkpoint(&bytes), Some(p));
    let mut bad = bytes;
    bad[10] ^= 1;
    assert_eq!(codec::decode_checkpoint(&bad), None);
    assert_eq!(codec::decode_checkpoint(&bytes[..20]), None);
}

/// Writes a segment by hand: header plus framed records; returns the record end offsets.
fn write_segment(dir: &std::path::Path, seq: u64, records: &[SpoolRecord]) -> Vec<u64> {
    let mut file = files::create_segment(dir, seq).unwrap();
    let mut ends = Vec::new();
    let mut offset = SEGMENT_HEADER_LEN;
    for r in records {
        let framed = codec::frame(r);
        file.write_all(&framed).unwrap();
        offset += framed.len() as u64;
        ends.push(offset);
    }
    file.sync_all().unwrap();
    ends
}

#[test]
fn recovery_cuts_a_torn_tail_and_keeps_every_complete_record() {
    let dir = tempfile::tempdir().unwrap();
    let records: Vec<_> = (0..5).map(|i| record(10, i)).collect();
    let ends = write_segment(dir.path(), 1, &records);
    // Tear the last record in the middle, as a crash during its write would.
    let torn_at = ends[3] + (ends[4] - ends[3]) / 2;
    OpenOptions::new()
        .write(true)
        .open(files::segment_path(dir.path(), 1))
        .unwrap()
        .set_len(torn_at)
        .unwrap();

    let recovered = files::recover(dir.path()).unwrap();
    assert_eq!(recovered.segments, vec![(1, ends[3])]);
    assert_eq!(recovered.truncated_bytes, torn_at - ends[3]);
    assert_eq!(recovered.undrained_records, 4);
    assert_eq!(recovered.drain_from, Position { segment: 1, offset: SEGMENT_HEADER_LEN });
    assert_eq!(recovered.next_segment, 2);
    let len = std::fs::metadata(files::segment_path(dir.path(), 1)).unwrap().len();
    assert_eq!(len, ends[3]);

    // Everything complete reads back through the spool.
    let (_spool, mut reader) = open(config(dir.path()), metrics()).unwrap();
    let batch = reader.read(usize::MAX).unwrap();
    assert_eq!(batch.records, records[..4].to_vec());
    assert_eq!(batch.events, 40);
}

#[test]
fn recovery_cuts_garbage_after_the_last_record_and_drops_headerless_segments() {
    let dir = tempfile::tempdir().unwrap();
    let records: Vec<_> = (0..3).map(|i| record(2, i)).collect();
    let ends = write_segment(dir.path(), 1, &records);
    let mut f = OpenOptions::new().append(true).open(files::segment_path(dir.path(), 1)).unwrap();
    f.write_all(&[0xAB; 100]).unwrap();
    // A segment created but whose header never made it to disk.
    std::fs::write(files::segment_path(dir.path(), 2), b"CHS").unwrap();

    let recovered = files::recover(dir.path()).unwrap();
    assert_eq!(recovered.segments, vec![(1, ends[2])]);
    assert_eq!(recovered.truncated_bytes, 103);
    assert!(!files::segment_path(dir.path(), 2).exists());
    assert_eq!(recovered.next_segment, 2);
}

#[test]
fn recovery_resumes_at_the_checkpoint_and_deletes_drained_segments() {
    let dir = tempfile::tempdir().unwrap();
    write_segment(dir.path(), 3, &[record(1, 1)]);
    let ends = write_segment(dir.path(), 4, &[record(1, 2), record(1, 3)]);
    files::write_checkpoint(dir.path(), Position { segment: 4, offset: ends[0] }).unwrap();

    let recovered = files::recover(dir.path()).unwrap();
    assert!(!files::segment_path(dir.path(), 3).exists());
    assert_eq!(recovered.drain_from, Position { segment: 4, offset: ends[0] });
    assert_eq!(recovered.undrained_records, 1);
    let (_spool, mut reader) = open(config(dir.path()), metrics()).unwrap();
    let batch = reader.read(100).unwrap();
    assert_eq!(batch.records, vec![record(1, 3)]);
}

#[tokio::test]
async fn appends_are_durable_in_order_and_group_committed() {
    let dir = tempfile::tempdir().unwrap();
    let m = metrics();
    let (spool, mut reader) = open(config(dir.path()), m.clone()).unwrap();
    let mut tasks = Vec::new();
    for i in 0..200 {
        let spool = spool.clone();
        tasks.push(tokio::spawn(async move { spool.append(codec::frame(&record(5, i))).await }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let batch = tokio::task::spawn_blocking(move || {
        let b = reader.read(usize::MAX).unwrap();
        (b, reader)
    })
    .await
    .unwrap()
    .0;
    assert_eq!(batch.records.len(), 200);
    assert_eq!(batch.events, 1000);
    let mut tags: Vec<_> = batch.records.iter().map(|r| r.received_at_ms).collect();
    tags.sort_unstable();
    tags.dedup();
    assert_eq!(tags.len(), 200);
    assert!(spool.disk_bytes() > 0);
    spool.close().await;
    assert!(matches!(spool.append(codec::frame(&record(1, 0))).await, Err(SpoolError::Closed)));
}

#[tokio::test]
async fn segments_roll_and_committed_ones_are_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, mut reader) = open(config(dir.path()), metrics()).unwrap();
    // ~2.5 MiB in 1 MiB segments.
    let big = record(2000, 0);
    let framed = codec::frame(&big);
    let count = (5 << 19) / framed.len() + 1;
    for _ in 0..count {
        spool.append(framed.clone()).await.unwrap();
    }
    assert!(files::list_segments(dir.path()).unwrap().len() >= 3);
    let before = spool.disk_bytes();
    let mut total = 0;
    let mut reader = tokio::task::spawn_blocking(move || {
        loop {
            let batch = reader.read(5000).unwrap();
            if batch.records.is_empty() {
                break;
            }
            total += batch.records.len();
            reader.commit(batch.end).unwrap();
        }
        assert_eq!(total, count);
        reader
    })
    .await
    .unwrap();
    assert!(!reader.has_more());
    assert_eq!(files::list_segments(dir.path()).unwrap().len(), 1, "only the active segment is left");
    assert!(spool.disk_bytes() < before);
    assert_eq!(files::read_checkpoint(dir.path()).unwrap(), Some(reader.committed()));
    // More appends after draining are read from where it stopped.
    spool.append(codec::frame(&record(1, 9))).await.unwrap();
    assert!(reader.wait_for_more().await);
    assert_eq!(reader.read(10).unwrap().records, vec![record(1, 9)]);
}

#[tokio::test]
async fn a_full_spool_refuses_appends_instead_of_dropping_them() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = SpoolConfig { max_bytes: 64 * 1024, ..config(dir.path()) };
    let (spool, _reader) = open(cfg, metrics()).unwrap();
    let framed = codec::frame(&record(100, 0));
    let mut accepted = 0;
    let err = loop {
        match spool.append(framed.clone()).await {
            Ok(()) => accepted += 1,
            Err(e) => break e,
        }
    };
    assert!(matches!(err, SpoolError::Full { .. }), "{err}");
    assert!(accepted > 0);
    assert!(spool.disk_bytes() <= 64 * 1024);
}

#[tokio::test]
async fn reopening_after_a_clean_close_loses_nothing_and_redelivers_only_uncommitted() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (spool, mut reader) = open(config(dir.path()), metrics()).unwrap();
        for i in 0..10 {
            spool.append(codec::frame(&record(1, i))).await.unwrap();
        }
        let batch = reader.read(4).unwrap();
        assert_eq!(batch.records.len(), 4);
        reader.commit(batch.end).unwrap();
        spool.close().await;
    }
    let (_spool, mut reader) = open(config(dir.path()), metrics()).unwrap();
    let batch = reader.read(100).unwrap();
    let tags: Vec<_> = batch.records.iter().map(|r| r.received_at_ms - 1_700_000_000_000).collect();
    assert_eq!(tags, (4..10).collect::<Vec<_>>());
}
