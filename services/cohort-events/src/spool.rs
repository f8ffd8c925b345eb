//! The durable local spool: accepted events are appended here, fsynced in groups, and only
//! then acknowledged; the drainer reads them back and moves them to PostgreSQL.
//!
//! One writer thread owns the active segment. Requests queue their framed records on a
//! bounded channel; the writer takes everything queued (after an optional window), writes it
//! with one `write` and one `fdatasync`, then answers every waiting request. Segments roll at
//! a size limit; the drainer deletes them once its checkpoint has passed them.
//!
//! # Layout
//! - [`codec`]: record framing with CRC32C, the checkpoint encoding, [`SpoolRecord`].
//! - [`files`]: segment files, the checkpoint file, crash recovery.
//! - [`reader`]: the drainer's side: reading durable records and committing its position.

pub mod codec;
pub mod files;
pub mod reader;

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch};
use tracing::{error, info, warn};

pub use codec::{Position, SpoolRecord, frame};
pub use reader::{ReadBatch, SpoolReader};

use crate::metrics::Metrics;

/// How the spool is laid out and how it writes.
#[derive(Debug, Clone)]
pub struct SpoolConfig {
    pub dir: PathBuf,
    /// Past this many bytes on disk, appends are refused with [`SpoolError::Full`].
    pub max_bytes: u64,
    /// A segment rolls once it is at least this large.
    pub segment_bytes: u64,
    /// How long the writer waits for more appends before writing a group.
    pub fsync_window: Duration,
}

/// A spool failure.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool is full: {used} of {max} bytes in use")]
    Full { used: u64, max: u64 },
    #[error("spool is closed")]
    Closed,
    #[error("spool write failed: {0}")]
    Write(String),
    #[error("spool stopped accepting appends after a write it could not undo")]
    Failed,
    #[error("spool {op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// State shared by the writer, the reader and the handles.
#[derive(Debug)]
struct Shared {
    dir: PathBuf,
    /// Bytes of segment files on disk.
    disk_bytes: AtomicU64,
    /// Set when the writer cannot continue safely.
    failed: AtomicBool,
    /// `received_at_ms` of the oldest record not yet drained; 0 when there is none in flight.
    oldest_undrained_ms: AtomicI64,
    metrics: Arc<Metrics>,
}

impl Shared {
    fn add_bytes(&self, n: u64) {
        let now = self.disk_bytes.fetch_add(n, Ordering::AcqRel) + n;
        self.metrics.spool_bytes.set(now as i64);
    }

    fn sub_bytes(&self, n: u64) {
        let now = self.disk_bytes.fetch_sub(n, Ordering::AcqRel).saturating_sub(n);
        self.metrics.spool_bytes.set(now as i64);
    }
}

enum Command {
    Append { frame: Vec<u8>, ack: oneshot::Sender<Result<(), SpoolError>> },
    Close { done: oneshot::Sender<()> },
}

/// The appending side of the spool; cheap to clone.
#[derive(Debug, Clone)]
pub struct Spool {
    tx: mpsc::Sender<Command>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Append { frame, .. } => f.debug_struct("Append").field("bytes", &frame.len()).finish(),
            Command::Close { .. } => f.write_str("Close"),
        }
    }
}

/// Recovers the spool in `config.dir` and starts its writer thread. Blocking: call it from
/// `spawn_blocking` or before the runtime is busy.
pub fn open(config: SpoolConfig, metrics: Arc<Metrics>) -> Result<(Spool, SpoolReader), SpoolError> {
    let recovered = files::recover(&config.dir)?;
    let disk: u64 = recovered.segments.iter().map(|&(_, len)| len).sum();
    let shared = Arc::new(Shared {
        dir: config.dir.clone(),
        disk_bytes: AtomicU64::new(0),
        failed: AtomicBool::new(false),
        oldest_undrained_ms: AtomicI64::new(0),
        metrics,
    });
    shared.add_bytes(disk);
    let seq = recovered.next_segment;
    let file = files::create_segment(&config.dir, seq)?;
    shared.add_bytes(codec::SEGMENT_HEADER_LEN);
    let (durable_tx, durable_rx) =
        watch::channel(Position { segment: seq, offset: codec::SEGMENT_HEADER_LEN });
    let (tx, rx) = mpsc::channel(8192);
    let writer = Writer {
        config,
        shared: shared.clone(),
        seq,
        file,
        offset: codec::SEGMENT_HEADER_LEN,
        durable: durable_tx,
        buf: Vec::with_capacity(1 << 20),
    };
    std::thread::Builder::new()
        .name("spool-writer".to_owned())
        .spawn(move || writer.run(rx))
        .map_err(files::io_error("start writer thread", &shared.dir))?;
    let first_seq = recovered.segments.first().map_or(seq, |&(s, _)| s);
    let reader = SpoolReader::new(shared.clone(), recovered.drain_from, first_seq, durable_rx);
    Ok((Spool { tx, shared }, reader))
}

impl Spool {
    /// Appends one framed record (see [`frame`]) and returns once it is on disk.
    pub async fn append(&self, frame: Vec<u8>) -> Result<(), SpoolError> {
        if self.shared.failed.load(Ordering::Acquire) {
            return Err(SpoolError::Failed);
        }
        let (ack, done) = oneshot::channel();
        self.tx.send(Command::Append { frame, ack }).await.map_err(|_| SpoolError::Closed)?;
        done.await.map_err(|_| SpoolError::Closed)?
    }

    /// Finishes the appends already queued (their group fsync included), then stops the writer.
    /// Later appends fail with [`SpoolError::Closed`].
    pub async fn close(&self) {
        let (done, closed) = oneshot::channel();
        if self.tx.send(Command::Close { done }).await.is_ok() {
            let _ = closed.await;
        }
    }

    /// Bytes of segment files on disk.
    pub fn disk_bytes(&self) -> u64 {
        self.shared.disk_bytes.load(Ordering::Acquire)
    }

    /// Whether the writer has stopped after an unrecoverable write failure.
    pub fn failed(&self) -> bool {
        self.shared.failed.load(Ordering::Acquire)
    }

    /// Age of the oldest event not yet drained to PostgreSQL (zero when caught up).
    pub fn oldest_undrained_age(&self, now_ms: i64) -> Duration {
        match self.shared.oldest_undrained_ms.load(Ordering::Acquire) {
            0 => Duration::ZERO,
            t => Duration::from_millis(now_ms.saturating_sub(t).max(0) as u64),
        }
    }
}

/// Largest group written at once; more waits for the next group.
const MAX_GROUP_BYTES: usize = 16 << 20;

struct Writer {
    config: SpoolConfig,
    shared: Arc<Shared>,
    seq: u64,
    file: File,
    /// End of the durable bytes of the active segment.
    offset: u64,
    durable: watch::Sender<Position>,
    buf: Vec<u8>,
}

impl Writer {
    fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        let mut group: Vec<(usize, oneshot::Sender<Result<(), SpoolError>>)> = Vec::new();
        let mut closing = None;
        while closing.is_none() {
            let Some(first) = rx.blocking_recv() else { break };
            let deadline = Instant::now() + self.config.fsync_window;
            let mut next = Some(first);
            loop {
                match next.take() {
                    Some(Command::Append { frame, ack }) => self.admit(frame, ack, &mut group),
                    Some(Command::Close { done }) => {
                        closing = Some(done);
                        break;
                    }
                    None => {}
                }
                if self.buf.len() >= MAX_GROUP_BYTES {
                    break;
                }
                match rx.try_recv() {
                    Ok(c) => next = Some(c),
                    Err(_) => {
                        let now = Instant::now();
                        if now >= deadline || group.is_empty() {
                            break;
                        }
                        std::thread::sleep((deadline - now).min(Duration::from_micros(200)));
                    }
                }
            }
            self.commit(&mut group);
        }
        rx.close();
        // Anything still queued after Close is refused, not lost: its sender sees an error.
        while let Ok(c) = rx.try_recv() {
            if let Command::Append { ack, .. } = c {
                let _ = ack.send(Err(SpoolError::Closed));
            }
        }
        info!(segment = self.seq, offset = self.offset, "spool writer stopped");
        if let Some(done) = closing {
            let _ = done.send(());
        }
    }

    /// Adds a frame to the group, or refuses it if the spool is full or failed.
    fn admit(
        &mut self,
        frame: Vec<u8>,
        ack: oneshot::Sender<Result<(), SpoolError>>,
        group: &mut Vec<(usize, oneshot::Sender<Result<(), SpoolError>>)>,
    ) {
        if self.shared.failed.load(Ordering::Acquire) {
            let _ = ack.send(Err(SpoolError::Failed));
            return;
        }
        let used = self.shared.disk_bytes.load(Ordering::Acquire) + self.buf.len() as u64;
        if used + frame.len() as u64 > self.config.max_bytes {
            let _ = ack.send(Err(SpoolError::Full { used, max: self.config.max_bytes }));
            return;
        }
        self.buf.extend_from_slice(&frame);
        group.push((frame.len(), ack));
    }

    /// Writes and syncs the group, then answers every request in it.
    fn commit(&mut self, group: &mut Vec<(usize, oneshot::Sender<Result<(), SpoolError>>)>) {
        if group.is_empty() {
            return;
        }
        let started = Instant::now();
        let result = self.file.write_all(&self.buf).and_then(|()| self.file.sync_data());
        self.shared.metrics.fsync_seconds.observe(started.elapsed().as_secs_f64());
        self.shared.metrics.group_size.observe(group.len() as f64);
        match result {
            Ok(()) => {
                let n = self.buf.len() as u64;
                self.offset += n;
                self.shared.add_bytes(n);
                self.durable.send_replace(Position { segment: self.seq, offset: self.offset });
                for (_, ack) in group.drain(..) {
                    let _ = ack.send(Ok(()));
                }
            }
            Err(e) => {
                error!(error = %e, segment = self.seq, requests = group.len(), "spool write failed");
                for (_, ack) in group.drain(..) {
                    let _ = ack.send(Err(SpoolError::Write(e.to_string())));
                }
                // Cut whatever part of the group reached the file, so the segment ends at the
                // last acknowledged record; if even that fails, stop accepting.
                let undo = self.file.set_len(self.offset).and_then(|()| self.file.sync_all());
                if let Err(e) = undo {
                    error!(error = %e, segment = self.seq, "cannot undo a failed spool write; refusing appends");
                    self.shared.failed.store(true, Ordering::Release);
                }
            }
        }
        self.buf.clear();
        if self.offset >= self.config.segment_bytes {
            self.roll();
        }
    }

    /// Starts the next segment. The current one is complete and synced.
    fn roll(&mut self) {
        let next = self.seq + 1;
        match files::create_segment(&self.config.dir, next) {
            Ok(file) => {
                self.file = file;
                self.seq = next;
                self.offset = codec::SEGMENT_HEADER_LEN;
                self.shared.add_bytes(codec::SEGMENT_HEADER_LEN);
                self.durable.send_replace(Position { segment: next, offset: self.offset });
            }
            // The active segment just grows; the next group tries again.
            Err(e) => warn!(error = %e, segment = next, "cannot start a new spool segment"),
        }
    }
}

#[cfg(test)]
mod tests;
