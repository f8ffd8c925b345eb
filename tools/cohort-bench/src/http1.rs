//! A lean HTTP/1.1 keep-alive load driver over raw TCP, for the HTTP subcommand.
//!
//! Written by hand rather than with hyper's client for the reason [`crate::unary`] drives
//! HTTP/2 with `h2` and no channel: the load generator shares two cores with the service it
//! measures, so its cost per request must stay small. hyper's client runs a connection task
//! beside every caller (a wakeup across tasks and a channel send per request), builds an
//! `http::Request` and header map per request, and decodes headers into a `HeaderMap`. Here
//! each connection is one task that writes requests from a per-run template (only the unit
//! and the content length change) and reads answers with a minimal parser: the status code,
//! `Content-Length`, and the body. About one write and one read system call per request, as
//! few as a keep-alive client can make without pipelining.
//!
//! A connection carries `--concurrency / --connections` requests at once: one (the default,
//! one connection per request in flight) is how HTTP/1.1 clients and OpenFeature's OFREP
//! providers use keep-alive connections; more pipelines them (hyper's server answers them in
//! order), which measures fewer, busier connections.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::outcome::{Outcome, Schedule};

/// How long a connection waits for bytes of an answer before giving up on it.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a load run could not start.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LoadError {
    #[error("invalid endpoint {0:?}: expected http://host:port")]
    Endpoint(String),
    #[error("invalid settings: {0}")]
    Settings(String),
    #[error("connect to {authority}: {source}")]
    Connect {
        authority: String,
        #[source]
        source: std::io::Error,
    },
    #[error("first request to {authority}: {message}")]
    Probe { authority: String, message: String },
}

/// `host:port` of an `http://host:port` endpoint.
pub(crate) fn authority(endpoint: &str) -> Result<&str, LoadError> {
    endpoint
        .strip_prefix("http://")
        .map(|rest| rest.trim_end_matches('/'))
        .filter(|a| !a.is_empty() && !a.contains('/'))
        .ok_or_else(|| LoadError::Endpoint(endpoint.to_owned()))
}

/// What to call, how hard and for how long.
#[derive(Debug, Clone)]
pub(crate) struct Load {
    /// `host:port`.
    pub(crate) authority: String,
    pub(crate) connections: usize,
    /// Requests in flight at once, spread evenly over the connections.
    pub(crate) concurrency: usize,
    pub(crate) warmup: Duration,
    pub(crate) duration: Duration,
    /// Stop after this many measured requests (the duration still bounds the run).
    pub(crate) requests: Option<u64>,
    /// The server's process, to measure its CPU time (`/proc`).
    pub(crate) server_pid: Option<u32>,
}

/// The requests of one connection, and what each answer counts for.
pub(crate) trait Workload: Send + 'static {
    /// Appends the next whole request (head and body) to `buf`.
    fn next_request(&mut self, buf: &mut Vec<u8>);
    /// What a 200 answer's body counts for (decisions). An error means the answer was wrong.
    fn count(&mut self, body: &[u8]) -> Result<u64, String>;
}

/// A parsed answer's framing: its status, where its body lies in the buffer, and its length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) body: Range<usize>,
    /// Head and body: where the next answer starts.
    pub(crate) len: usize,
}

/// The first whole answer at the start of `buf`, `None` if it has not all arrived yet. Only
/// answers framed by `Content-Length` are understood (hyper sends every whole body so).
pub(crate) fn parse_answer(buf: &[u8]) -> Result<Option<Answer>, &'static str> {
    let Some(head_len) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = std::str::from_utf8(&buf[..head_len]).map_err(|_| "a head that is not text")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or("no HTTP/1.1 status line")?;
    let mut length = None;
    for line in lines {
        let (name, value) = line.split_once(':').ok_or("a header line without a colon")?;
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(value.trim().parse::<usize>().map_err(|_| "an unreadable content-length")?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err("a chunked answer (only content-length framing is read)");
        }
    }
    let length = length.ok_or("an answer without content-length")?;
    let start = head_len + 4;
    if buf.len() < start + length {
        return Ok(None);
    }
    Ok(Some(Answer { status, body: start..start + length, len: start + length }))
}

/// Sends one request on a new connection and reads its answer: the status and body.
pub(crate) async fn once(authority: &str, request: &[u8]) -> Result<(u16, Vec<u8>), LoadError> {
    let probe = |message: String| LoadError::Probe { authority: authority.to_owned(), message };
    let mut tcp = connect(authority).await?;
    tcp.write_all(request).await.map_err(|e| probe(e.to_string()))?;
    let mut buf = BytesMut::with_capacity(16 * 1024);
    loop {
        if let Some(answer) = parse_answer(&buf).map_err(|e| probe(e.to_owned()))? {
            return Ok((answer.status, buf[answer.body].to_vec()));
        }
        buf.reserve(16 * 1024);
        let read = tokio::time::timeout(READ_TIMEOUT, tcp.read_buf(&mut buf))
            .await
            .map_err(|_| probe("no answer".to_owned()))?
            .map_err(|e| probe(e.to_string()))?;
        if read == 0 {
            return Err(probe("the connection closed before the answer".to_owned()));
        }
    }
}

async fn connect(authority: &str) -> Result<TcpStream, LoadError> {
    let tcp = TcpStream::connect(authority)
        .await
        .map_err(|source| LoadError::Connect { authority: authority.to_owned(), source })?;
    tcp.set_nodelay(true).map_err(|source| LoadError::Connect { authority: authority.to_owned(), source })?;
    Ok(tcp)
}

/// Runs the load: `workload(i)` makes connection `i`'s workload.
pub(crate) async fn run<W: Workload>(
    load: &Load,
    workload: impl Fn(usize) -> W,
) -> Result<Outcome, LoadError> {
    if load.connections == 0 || load.concurrency < load.connections {
        return Err(LoadError::Settings(
            "--connections must be at least 1 and --concurrency at least --connections".to_owned(),
        ));
    }
    // Every connection is open before the clock starts.
    let mut streams = Vec::with_capacity(load.connections);
    for _ in 0..load.connections {
        streams.push(connect(&load.authority).await?);
    }
    let schedule = Arc::new(Schedule::new(load.warmup, load.duration, load.requests));
    let cpu = load.server_pid.map(|pid| crate::cpu::Sampler::start(pid, &schedule));
    let mut tasks = Vec::with_capacity(load.connections);
    for (i, tcp) in streams.into_iter().enumerate() {
        // Spread the requests in flight evenly; the first connections take the remainder.
        let slots =
            load.concurrency / load.connections + usize::from(i < load.concurrency % load.connections);
        tasks.push(tokio::spawn(drive(schedule.clone(), tcp, workload(i), slots)));
    }
    let mut total = Outcome::new();
    for task in tasks {
        match task.await {
            Ok(outcome) => total.merge(outcome),
            Err(e) => total.error("panic".to_owned(), e.to_string()),
        }
    }
    total.measured = total.measured.max(Duration::from_millis(1));
    if let Some(cpu) = cpu {
        total.server_cpu = cpu.finish().await;
    }
    Ok(total)
}

/// One connection: keeps `slots` requests in flight (pipelined when more than one) until the
/// deadline. A broken connection or an answer it cannot frame ends it.
async fn drive<W: Workload>(
    schedule: Arc<Schedule>,
    mut tcp: TcpStream,
    mut workload: W,
    slots: usize,
) -> Outcome {
    let mut outcome = Outcome::new();
    // When each request in flight was sent, oldest first: answers come in order.
    let mut sent = VecDeque::with_capacity(slots);
    let mut out = Vec::with_capacity(slots * 256);
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut starting = true;
    loop {
        let now = Instant::now();
        while starting && sent.len() < slots {
            if !schedule.may_start(now) {
                starting = false;
                break;
            }
            workload.next_request(&mut out);
            sent.push_back(now);
        }
        if !out.is_empty() {
            if let Err(e) = tcp.write_all(&out).await {
                outcome.error("transport".to_owned(), format!("writing: {e}"));
                break;
            }
            out.clear();
        }
        if sent.is_empty() {
            break;
        }
        buf.reserve(16 * 1024);
        let read = match tokio::time::timeout(READ_TIMEOUT, tcp.read_buf(&mut buf)).await {
            Ok(Ok(0)) => Err("the server closed the connection".to_owned()),
            Ok(Ok(n)) => Ok(n),
            Ok(Err(e)) => Err(format!("reading: {e}")),
            Err(_) => Err(format!("no answer within {READ_TIMEOUT:?}")),
        };
        if let Err(message) = read {
            outcome.error("transport".to_owned(), message);
            break;
        }
        let done = Instant::now();
        let mut back_off = false;
        loop {
            let answer = match parse_answer(&buf) {
                Ok(Some(answer)) => answer,
                Ok(None) => break,
                Err(e) => {
                    outcome.error("malformed".to_owned(), e.to_owned());
                    return outcome;
                }
            };
            let Some(started) = sent.pop_front() else {
                outcome.error("malformed".to_owned(), "an answer to no request".to_owned());
                return outcome;
            };
            if schedule.measures(started, done) {
                let body = &buf[answer.body.clone()];
                let result = match answer.status {
                    200 => workload.count(body).map_err(|e| ("wrong_answer".to_owned(), e)),
                    status => Err((status.to_string(), String::from_utf8_lossy(body).into_owned())),
                };
                match result {
                    Ok(n) => outcome.success(&schedule, done, done - started, n),
                    Err((code, message)) => {
                        // An overloaded service says so; the caller backs off like an SDK would.
                        back_off |= code == "429" || code == "503";
                        outcome.failure(&schedule, done, code, message);
                    }
                }
            }
            buf.advance(answer.len);
        }
        if back_off {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nContent-Length: 7\r\n\
                        date: Thu, 03 Dec 2026 12:00:00 GMT\r\n\r\n{\"a\":1}";

    #[test]
    fn an_answer_is_framed_by_its_content_length() {
        let answer = parse_answer(OK).unwrap().unwrap();
        assert_eq!(answer.status, 200);
        assert_eq!(&OK[answer.body.clone()], b"{\"a\":1}");
        assert_eq!(answer.len, OK.len());
    }

    #[test]
    fn a_partial_answer_waits_for_more() {
        for cut in [0, 10, OK.len() - 8, OK.len() - 1] {
            assert_eq!(parse_answer(&OK[..cut]), Ok(None), "cut at {cut}");
        }
    }

    #[test]
    fn pipelined_answers_follow_each_other() {
        let second = b"HTTP/1.1 429 Too Many Requests\r\ncontent-length: 0\r\nretry-after: 1\r\n\r\n";
        let both = [OK, second.as_slice()].concat();
        let first = parse_answer(&both).unwrap().unwrap();
        let next = parse_answer(&both[first.len..]).unwrap().unwrap();
        assert_eq!(next.status, 429);
        assert_eq!(next.body, second.len()..second.len());
        assert_eq!(first.len + next.len, both.len());
    }

    #[test]
    fn answers_it_cannot_frame_are_errors() {
        let chunked = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n7\r\n{\"a\":1}\r\n0\r\n\r\n";
        assert!(parse_answer(chunked).is_err());
        assert!(parse_answer(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nabc").is_err());
        assert!(parse_answer(b"HTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n").is_err());
        assert!(parse_answer(b"HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\n").is_err());
    }

    #[test]
    fn endpoints_are_host_and_port() {
        assert_eq!(authority("http://127.0.0.1:8082/").unwrap(), "127.0.0.1:8082");
        assert!(authority("https://127.0.0.1:8082").is_err());
        assert!(authority("http://127.0.0.1:8082/api").is_err());
    }
}
