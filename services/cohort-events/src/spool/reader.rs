//! The drainer's side of the spool: reads durable records in order, and after they are stored
//! in PostgreSQL, commits the position (the checkpoint) and deletes drained segments.

use std::io::{BufReader, Read};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use prost::Message;
use tokio::sync::watch;
use tracing::{error, warn};

use super::codec::{Position, SEGMENT_HEADER_LEN, SpoolRecord};
use super::files::{self, RecordReader, Stop};
use super::{Shared, SpoolError};

/// Records read from the spool, not yet committed.
#[derive(Debug, Default)]
pub struct ReadBatch {
    pub records: Vec<SpoolRecord>,
    /// Events in `records`.
    pub events: usize,
    /// The position just after the last record read.
    pub end: Position,
}

/// Reads what the writer has made durable; one per spool, owned by the drainer.
#[derive(Debug)]
pub struct SpoolReader {
    shared: Arc<Shared>,
    /// Next record to read.
    read: Position,
    /// Last committed (checkpointed) position.
    committed: Position,
    /// Oldest segment still on disk.
    oldest_segment: u64,
    durable: watch::Receiver<Position>,
}

impl SpoolReader {
    pub(super) fn new(
        shared: Arc<Shared>,
        from: Position,
        oldest_segment: u64,
        durable: watch::Receiver<Position>,
    ) -> Self {
        SpoolReader { shared, read: from, committed: from, oldest_segment, durable }
    }

    /// Where the next read starts.
    pub fn position(&self) -> Position {
        self.read
    }

    /// The last committed position.
    pub fn committed(&self) -> Position {
        self.committed
    }

    /// Whether durable records are waiting to be read.
    pub fn has_more(&self) -> bool {
        *self.durable.borrow() > self.read
    }

    /// Resolves `true` when the writer has made more records durable, `false` once the writer
    /// has stopped (nothing more will come).
    pub async fn wait_for_more(&mut self) -> bool {
        let read = self.read;
        self.durable.wait_for(|d| *d > read).await.is_ok()
    }

    /// Reads durable records from the current position until `max_events` events are read or
    /// nothing durable is left. Blocking file I/O: call from `spawn_blocking`.
    pub fn read(&mut self, max_events: usize) -> Result<ReadBatch, SpoolError> {
        let mut batch = ReadBatch { end: self.read, ..ReadBatch::default() };
        while batch.events < max_events {
            let durable = *self.durable.borrow();
            if self.read >= durable {
                break;
            }
            let sealed = self.read.segment < durable.segment;
            let (file, len) = match files::open_segment_at(
                &self.shared.dir,
                self.read.segment,
                self.read.offset,
            ) {
                Ok(opened) => opened,
                Err(e) if sealed => {
                    error!(error = %e, segment = self.read.segment, "skipping an unreadable sealed spool segment");
                    self.next_segment();
                    continue;
                }
                Err(e) => return Err(e),
            };
            let limit = if sealed { len } else { durable.offset.min(len) };
            let start = self.read.offset.max(SEGMENT_HEADER_LEN);
            let mut records = RecordReader::new(
                BufReader::with_capacity(1 << 20, file.take(limit.saturating_sub(start))),
                start,
            );
            while batch.events < max_events {
                let next = records.next_record().map_err(files::io_error(
                    "read segment",
                    &files::segment_path(&self.shared.dir, self.read.segment),
                ))?;
                match next {
                    Ok(raw) => {
                        self.read.offset = raw.end;
                        match SpoolRecord::decode(raw.payload.as_slice()) {
                            Ok(record) => {
                                batch.events += record.events.len();
                                batch.records.push(record);
                            }
                            Err(e) => {
                                // The checksum matched, so the bytes are what was written; a
                                // payload that does not decode is a bug, reported loudly.
                                error!(error = %e, segment = self.read.segment, offset = raw.end,
                                       bytes = raw.payload.len(), "skipping a spool record that does not decode");
                                self.shared.metrics.spool_corrupt_bytes.inc_by(raw.payload.len() as u64);
                            }
                        }
                    }
                    Err(Stop::End) => break,
                    Err(Stop::Torn) => {
                        let lost = limit.saturating_sub(records.offset());
                        error!(
                            segment = self.read.segment,
                            offset = records.offset(),
                            bytes = lost,
                            "spool record failed its checksum after recovery; skipping the rest of the segment"
                        );
                        self.shared.metrics.spool_corrupt_bytes.inc_by(lost);
                        self.read.offset = limit;
                        break;
                    }
                }
            }
            if sealed && self.read.offset >= limit {
                self.next_segment();
            } else if !sealed {
                break;
            }
        }
        batch.end = self.read;
        if let Some(first) = batch.records.first() {
            // Only the first read after a commit sets the age; a retried batch keeps its own.
            let _ = self.shared.oldest_undrained_ms.compare_exchange(
                0,
                first.received_at_ms.max(1),
                Ordering::AcqRel,
                Ordering::Acquire,
            );
        }
        Ok(batch)
    }

    fn next_segment(&mut self) {
        self.read = Position { segment: self.read.segment + 1, offset: SEGMENT_HEADER_LEN };
    }

    /// Records that everything before `position` is stored: writes the checkpoint, then deletes
    /// the segments wholly before it. Blocking file I/O.
    pub fn commit(&mut self, position: Position) -> Result<(), SpoolError> {
        if position == self.committed {
            return Ok(());
        }
        files::write_checkpoint(&self.shared.dir, position)?;
        self.committed = position;
        self.shared.oldest_undrained_ms.store(0, Ordering::Release);
        let mut deleted = false;
        while self.oldest_segment < position.segment {
            let path = files::segment_path(&self.shared.dir, self.oldest_segment);
            match std::fs::metadata(&path).map(|m| m.len()) {
                Ok(len) => match std::fs::remove_file(&path) {
                    Ok(()) => {
                        self.shared.sub_bytes(len);
                        deleted = true;
                    }
                    Err(e) => {
                        // Recovery deletes it next time; it only costs disk until then.
                        warn!(error = %e, path = %path.display(), "cannot delete a drained segment");
                        break;
                    }
                },
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    warn!(error = %e, path = %path.display(), "cannot stat a drained segment");
                    break;
                }
            }
            self.oldest_segment += 1;
        }
        if deleted {
            files::sync_dir(&self.shared.dir)?;
        }
        Ok(())
    }
}
