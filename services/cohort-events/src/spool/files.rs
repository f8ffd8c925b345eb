//! Segment files and the checkpoint on disk: naming, listing, durable creation, and recovery
//! after a crash (cutting a torn tail at the last complete record).

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use tracing::{info, warn};

use super::SpoolError;
use super::codec::{
    self, CHECKPOINT_LEN, Header, Position, RECORD_HEADER_LEN, SEGMENT_HEADER_LEN, SEGMENT_MAGIC,
};

const SEGMENT_SUFFIX: &str = ".seg";
const CHECKPOINT_FILE: &str = "checkpoint";
const CHECKPOINT_TMP: &str = "checkpoint.tmp";

/// The path of segment `seq`.
pub fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:020}{SEGMENT_SUFFIX}"))
}

pub(super) fn io_error(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> SpoolError {
    let path = path.to_owned();
    move |source| SpoolError::Io { op, path, source }
}

/// Every segment in `dir`, by sequence number.
pub fn list_segments(dir: &Path) -> Result<Vec<u64>, SpoolError> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_error("list", dir))? {
        let entry = entry.map_err(io_error("list", dir))?;
        let name = entry.file_name();
        let Some(seq) =
            name.to_str().and_then(|n| n.strip_suffix(SEGMENT_SUFFIX)).and_then(|n| n.parse().ok())
        else {
            continue;
        };
        out.push(seq);
    }
    out.sort_unstable();
    Ok(out)
}

/// Makes renames, creations and deletions in `dir` durable.
pub fn sync_dir(dir: &Path) -> Result<(), SpoolError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_error("sync directory", dir))
}

/// Creates segment `seq` with its header, durably (file and directory entry).
pub fn create_segment(dir: &Path, seq: u64) -> Result<File, SpoolError> {
    let path = segment_path(dir, seq);
    let mut file = OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(&path)
        .map_err(io_error("create segment", &path))?;
    file.write_all(SEGMENT_MAGIC).map_err(io_error("write segment header", &path))?;
    file.sync_all().map_err(io_error("sync segment", &path))?;
    sync_dir(dir)?;
    Ok(file)
}

/// The drained position, if a checkpoint was ever written.
pub fn read_checkpoint(dir: &Path) -> Result<Option<Position>, SpoolError> {
    let path = dir.join(CHECKPOINT_FILE);
    match fs::read(&path) {
        Ok(bytes) => codec::decode_checkpoint(&bytes).map(Some).ok_or_else(|| SpoolError::Io {
            op: "read checkpoint",
            path,
            source: io::Error::new(io::ErrorKind::InvalidData, "not a valid checkpoint"),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error("read checkpoint", &path)(e)),
    }
}

/// Replaces the checkpoint atomically and durably (write, fsync, rename, fsync directory).
pub fn write_checkpoint(dir: &Path, position: Position) -> Result<(), SpoolError> {
    let tmp = dir.join(CHECKPOINT_TMP);
    let bytes = codec::encode_checkpoint(position);
    debug_assert_eq!(bytes.len(), CHECKPOINT_LEN);
    let mut file = File::create(&tmp).map_err(io_error("create checkpoint", &tmp))?;
    file.write_all(&bytes).map_err(io_error("write checkpoint", &tmp))?;
    file.sync_data().map_err(io_error("sync checkpoint", &tmp))?;
    let path = dir.join(CHECKPOINT_FILE);
    fs::rename(&tmp, &path).map_err(io_error("rename checkpoint", &path))?;
    sync_dir(dir)
}

/// One record as read back: where it ends and its payload.
#[derive(Debug)]
pub struct RawRecord {
    pub end: u64,
    pub payload: Vec<u8>,
}

/// Why reading stopped before the end of the readable bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Clean end: no more bytes.
    End,
    /// A partial or corrupt record starts here.
    Torn,
}

/// Reads consecutive records from a segment, tracking the offset of the next one.
#[derive(Debug)]
pub struct RecordReader<R> {
    inner: R,
    offset: u64,
}

impl<R: Read> RecordReader<R> {
    /// `inner` must be positioned at `offset`.
    pub fn new(inner: R, offset: u64) -> Self {
        RecordReader { inner, offset }
    }

    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The next complete, checksummed record, or why there is none.
    pub fn next_record(&mut self) -> io::Result<Result<RawRecord, Stop>> {
        let mut header = [0u8; RECORD_HEADER_LEN];
        match read_full(&mut self.inner, &mut header)? {
            0 => return Ok(Err(Stop::End)),
            n if n < RECORD_HEADER_LEN => return Ok(Err(Stop::Torn)),
            _ => {}
        }
        let Header::Record { len, crc } = codec::parse_header(header) else {
            return Ok(Err(Stop::Torn));
        };
        let mut payload = vec![0u8; len];
        if read_full(&mut self.inner, &mut payload)? < len || !codec::verify(len, crc, &payload) {
            return Ok(Err(Stop::Torn));
        }
        self.offset += (RECORD_HEADER_LEN + len) as u64;
        Ok(Ok(RawRecord { end: self.offset, payload }))
    }
}

/// Reads until `buf` is full or the input ends; returns how many bytes were read.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Opens segment `seq` for reading at `offset`, checking its header.
pub fn open_segment_at(dir: &Path, seq: u64, offset: u64) -> Result<(File, u64), SpoolError> {
    let path = segment_path(dir, seq);
    let mut file = File::open(&path).map_err(io_error("open segment", &path))?;
    let len = file.metadata().map_err(io_error("stat segment", &path))?.len();
    let offset = offset.max(SEGMENT_HEADER_LEN);
    file.seek(SeekFrom::Start(offset)).map_err(io_error("seek segment", &path))?;
    Ok((file, len))
}

/// What recovery found in the spool directory.
#[derive(Debug, Clone)]
pub struct Recovered {
    /// Where draining resumes.
    pub drain_from: Position,
    /// Segments kept, each with its (possibly truncated) length.
    pub segments: Vec<(u64, u64)>,
    /// The sequence number of the segment the writer creates next.
    pub next_segment: u64,
    /// Bytes cut from torn tails.
    pub truncated_bytes: u64,
    /// Records found after the drain position (not yet in PostgreSQL).
    pub undrained_records: u64,
}

/// Brings the spool directory to a consistent state after a clean stop or a crash: deletes
/// segments the checkpoint says are drained, cuts each remaining segment after its last
/// complete record, and says where draining resumes.
pub fn recover(dir: &Path) -> Result<Recovered, SpoolError> {
    fs::create_dir_all(dir).map_err(io_error("create spool directory", dir))?;
    let _ = fs::remove_file(dir.join(CHECKPOINT_TMP));
    let checkpoint = read_checkpoint(dir)?;
    let mut segments = Vec::new();
    let mut truncated_bytes = 0;
    let mut undrained_records = 0;
    let mut changed = false;
    for seq in list_segments(dir)? {
        let path = segment_path(dir, seq);
        if checkpoint.is_some_and(|c| seq < c.segment) {
            fs::remove_file(&path).map_err(io_error("delete drained segment", &path))?;
            changed = true;
            continue;
        }
        let mut file =
            OpenOptions::new().read(true).write(true).open(&path).map_err(io_error("open segment", &path))?;
        let len = file.metadata().map_err(io_error("stat segment", &path))?.len();
        let mut magic = [0u8; SEGMENT_MAGIC.len()];
        let header_ok =
            len >= SEGMENT_HEADER_LEN && file.read_exact(&mut magic).is_ok() && &magic == SEGMENT_MAGIC;
        if !header_ok {
            // Created but its header never reached the disk: it cannot hold an acknowledged
            // record, since records are acknowledged only after the header is synced.
            warn!(segment = seq, bytes = len, "removing a segment without a valid header");
            truncated_bytes += len;
            drop(file);
            fs::remove_file(&path).map_err(io_error("delete torn segment", &path))?;
            changed = true;
            continue;
        }
        let drain_offset = match checkpoint {
            Some(c) if c.segment == seq => c.offset,
            _ => SEGMENT_HEADER_LEN,
        };
        let mut reader = RecordReader::new(BufReader::with_capacity(1 << 20, &mut file), SEGMENT_HEADER_LEN);
        let end = loop {
            match reader.next_record().map_err(io_error("read segment", &path))? {
                Ok(record) => {
                    if record.end > drain_offset {
                        undrained_records += 1;
                    }
                }
                Err(_) => break reader.offset(),
            }
        };
        if end < len {
            warn!(segment = seq, valid_bytes = end, cut_bytes = len - end, "cutting a torn spool tail");
            truncated_bytes += len - end;
            file.set_len(end).map_err(io_error("truncate segment", &path))?;
            file.sync_all().map_err(io_error("sync segment", &path))?;
        }
        segments.push((seq, end));
    }
    if changed {
        sync_dir(dir)?;
    }
    let last = segments.last().map(|&(s, _)| s);
    let next_segment = last.or(checkpoint.map(|c| c.segment)).map_or(1, |s| s + 1);
    let drain_from = match (checkpoint, segments.first()) {
        (Some(c), Some(&(first, first_len))) if c.segment == first => {
            Position { segment: first, offset: c.offset.clamp(SEGMENT_HEADER_LEN, first_len) }
        }
        (_, Some(&(first, _))) => Position { segment: first, offset: SEGMENT_HEADER_LEN },
        (_, None) => Position { segment: next_segment, offset: SEGMENT_HEADER_LEN },
    };
    info!(
        segments = segments.len(),
        undrained_records,
        truncated_bytes,
        drain_segment = drain_from.segment,
        drain_offset = drain_from.offset,
        "spool recovered"
    );
    Ok(Recovered { drain_from, segments, next_segment, truncated_bytes, undrained_records })
}
