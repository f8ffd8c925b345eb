//! A lean gRPC unary load driver over raw HTTP/2 (the `h2` crate), shared by every gRPC
//! subcommand.
//!
//! The load generator shares the machine with the service it measures, so its own cost per
//! call is kept small: each connection is one task that drives the HTTP/2 connection and all
//! of its calls in flight (no channel worker task, no cross-task wakeups per call), request
//! messages are encoded straight into a reused buffer, and responses are checked by their
//! `grpc-status` and counted by the [`Workload`] without building whole messages unless it
//! wants to.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use h2::client::SendRequest;
use http::{HeaderMap, HeaderValue, Method, Request, Uri};
use tokio::net::TcpStream;

use crate::outcome::{Outcome, Schedule};

/// Why a load run could not start or went wrong as a whole.
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
    #[error("HTTP/2 with {authority}: {source}")]
    Http2 {
        authority: String,
        #[source]
        source: h2::Error,
    },
}

/// What to call, how hard and for how long.
#[derive(Debug, Clone)]
pub(crate) struct Load {
    /// `http://host:port`.
    pub(crate) endpoint: String,
    /// The gRPC method path, e.g. `/cohort.evaluation.v1.EvaluationService/Evaluate`.
    pub(crate) path: &'static str,
    /// The `authorization` header's value.
    pub(crate) authorization: String,
    pub(crate) connections: usize,
    /// Calls in flight at once, spread evenly over the connections.
    pub(crate) concurrency: usize,
    pub(crate) warmup: Duration,
    pub(crate) duration: Duration,
    /// Stop after this many measured calls (the duration still bounds the run).
    pub(crate) requests: Option<u64>,
    /// The server's process, to measure its CPU time (`/proc`).
    pub(crate) server_pid: Option<u32>,
}

/// The calls of one connection: what each request says, and what each answer counts for.
pub(crate) trait Workload: Send + 'static {
    /// Writes the next request message (protobuf, without the gRPC frame header) to `buf`.
    fn next_request(&mut self, buf: &mut BytesMut);
    /// What a successful answer (its protobuf message) counts for: decisions, events
    /// accepted. An error means the answer was wrong.
    fn count(&mut self, response: &[u8]) -> Result<u64, String>;
}

/// What every connection shares.
#[derive(Debug)]
struct Plan {
    authority: String,
    uri: Uri,
    headers: HeaderMap,
    schedule: Schedule,
}

impl Plan {
    fn request(&self) -> Request<()> {
        let mut request = Request::new(());
        *request.method_mut() = Method::POST;
        *request.uri_mut() = self.uri.clone();
        *request.headers_mut() = self.headers.clone();
        request
    }
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
    let authority = load
        .endpoint
        .strip_prefix("http://")
        .map(|rest| rest.trim_end_matches('/'))
        .filter(|a| !a.is_empty() && !a.contains('/'))
        .ok_or_else(|| LoadError::Endpoint(load.endpoint.clone()))?
        .to_owned();
    let uri: Uri = format!("http://{authority}{}", load.path)
        .parse()
        .map_err(|_| LoadError::Endpoint(load.endpoint.clone()))?;
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("application/grpc"));
    headers.insert("te", HeaderValue::from_static("trailers"));
    headers.insert(
        "authorization",
        HeaderValue::from_str(&load.authorization)
            .map_err(|_| LoadError::Settings("the key is not a valid header value".to_owned()))?,
    );

    // Every connection is open before the clock starts.
    let mut senders = Vec::with_capacity(load.connections);
    for _ in 0..load.connections {
        senders.push(connect(&authority).await?);
    }
    let plan = Arc::new(Plan {
        authority,
        uri,
        headers,
        schedule: Schedule::new(load.warmup, load.duration, load.requests),
    });
    let cpu = load.server_pid.map(|pid| crate::cpu::Sampler::start(pid, &plan.schedule));
    let mut tasks = Vec::new();
    for (i, (send, connection)) in senders.into_iter().enumerate() {
        // Spread the calls in flight evenly; the first connections take the remainder.
        let slots =
            load.concurrency / load.connections + usize::from(i < load.concurrency % load.connections);
        tasks.push(tokio::spawn(drive(plan.clone(), send, connection, workload(i), slots)));
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

type Connection = h2::client::Connection<TcpStream, Bytes>;

async fn connect(authority: &str) -> Result<(SendRequest<Bytes>, Connection), LoadError> {
    let tcp = TcpStream::connect(authority)
        .await
        .map_err(|source| LoadError::Connect { authority: authority.to_owned(), source })?;
    tcp.set_nodelay(true).map_err(|source| LoadError::Connect { authority: authority.to_owned(), source })?;
    h2::client::Builder::new()
        .initial_window_size(1 << 20)
        .initial_connection_window_size(1 << 24)
        .handshake(tcp)
        .await
        .map_err(|source| LoadError::Http2 { authority: authority.to_owned(), source })
}

/// One connection: keeps `slots` calls in flight until the deadline, polling the HTTP/2
/// connection in the same task.
async fn drive<W: Workload>(
    plan: Arc<Plan>,
    send: SendRequest<Bytes>,
    connection: Connection,
    mut workload: W,
    slots: usize,
) -> Outcome {
    let mut outcome = Outcome::new();
    let mut connection = std::pin::pin!(connection);
    let mut connection_open = true;
    let mut in_flight = FuturesUnordered::new();
    let mut buf = BytesMut::with_capacity(4096);
    let mut starting = true;
    loop {
        while starting && in_flight.len() < slots {
            if !plan.schedule.may_start(Instant::now()) {
                starting = false;
                break;
            }
            in_flight.push(call(send.clone(), plan.request(), frame(&mut workload, &mut buf)));
        }
        if in_flight.is_empty() {
            break;
        }
        tokio::select! {
            result = &mut connection, if connection_open => {
                connection_open = false;
                if let Err(e) = result {
                    outcome.error("transport".to_owned(), format!("connection to {}: {e}", plan.authority));
                }
            }
            Some((sent, result)) = in_flight.next() => {
                let done = Instant::now();
                if !plan.schedule.measures(sent, done) {
                    continue;
                }
                match result.map_err(|e| (e.code(), e.to_string())).and_then(|message| {
                    workload.count(&message).map_err(|e| ("wrong_answer".to_owned(), e))
                }) {
                    Ok(n) => outcome.success(&plan.schedule, done, done - sent, n),
                    Err((code, message)) => {
                        // An overloaded service says so; the caller backs off like an SDK would.
                        let back_off = code == "ResourceExhausted" || code == "Unavailable";
                        outcome.failure(&plan.schedule, done, code, message);
                        if back_off {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                        if !connection_open {
                            starting = false;
                        }
                    }
                }
            }
        }
    }
    outcome
}

/// The next request as a gRPC message frame: uncompressed flag, big-endian length, message.
fn frame<W: Workload>(workload: &mut W, buf: &mut BytesMut) -> Bytes {
    buf.clear();
    buf.put_bytes(0, 5);
    workload.next_request(buf);
    let len = u32::try_from(buf.len() - 5).unwrap_or(u32::MAX);
    buf[1..5].copy_from_slice(&len.to_be_bytes());
    buf.split().freeze()
}

/// Why one call failed.
#[derive(Debug, thiserror::Error)]
enum CallError {
    #[error("{code:?}: {message}")]
    Status { code: tonic::Code, message: String },
    #[error("transport: {0}")]
    Transport(#[from] h2::Error),
    #[error("malformed answer: {0}")]
    Malformed(&'static str),
}

impl CallError {
    fn code(&self) -> String {
        match self {
            CallError::Status { code, .. } => format!("{code:?}"),
            CallError::Transport(_) => "transport".to_owned(),
            CallError::Malformed(_) => "malformed".to_owned(),
        }
    }
}

/// One unary call; resolves to when it was sent and the answer's message bytes.
fn call(
    send: SendRequest<Bytes>,
    request: Request<()>,
    body: Bytes,
) -> impl Future<Output = (Instant, Result<Bytes, CallError>)> {
    let sent = Instant::now();
    async move {
        let result = async {
            let mut send = send.ready().await?;
            let (response, mut stream) = send.send_request(request, false)?;
            stream.send_data(body, true)?;
            let (parts, mut body) = response.await?.into_parts();
            // A failure may come at once, as a trailers-only answer.
            check_status(&parts.headers)?;
            let mut message = BytesMut::new();
            while let Some(chunk) = body.data().await {
                let chunk = chunk?;
                let _ = body.flow_control().release_capacity(chunk.len());
                message.extend_from_slice(&chunk);
            }
            match body.trailers().await? {
                Some(trailers) => check_status(&trailers)?,
                None => return Err(CallError::Malformed("no trailers")),
            }
            if message.len() < 5 {
                return Err(CallError::Malformed("no message"));
            }
            Ok(message.freeze().slice(5..))
        }
        .await;
        (sent, result)
    }
}

/// An error for a non-OK `grpc-status` (tonic reads the code and decodes `grpc-message`).
fn check_status(headers: &HeaderMap) -> Result<(), CallError> {
    match tonic::Status::from_header_map(headers) {
        Some(status) if status.code() != tonic::Code::Ok => {
            Err(CallError::Status { code: status.code(), message: status.message().to_owned() })
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_carries_the_message_length() {
        struct Fixed;
        impl Workload for Fixed {
            fn next_request(&mut self, buf: &mut BytesMut) {
                buf.put_slice(b"abc");
            }
            fn count(&mut self, _: &[u8]) -> Result<u64, String> {
                Ok(1)
            }
        }
        let mut buf = BytesMut::new();
        assert_eq!(&frame(&mut Fixed, &mut buf)[..], &[0, 0, 0, 0, 3, b'a', b'b', b'c']);
        assert_eq!(&frame(&mut Fixed, &mut buf)[..], &[0, 0, 0, 0, 3, b'a', b'b', b'c']);
    }

    #[test]
    fn a_non_ok_status_is_an_error() {
        let mut headers = HeaderMap::new();
        assert!(check_status(&headers).is_ok());
        headers.insert("grpc-status", HeaderValue::from_static("0"));
        assert!(check_status(&headers).is_ok());
        headers.insert("grpc-status", HeaderValue::from_static("8"));
        headers.insert("grpc-message", HeaderValue::from_static("slow%20down"));
        match check_status(&headers) {
            Err(CallError::Status { code, message }) => {
                assert_eq!(code, tonic::Code::ResourceExhausted);
                assert_eq!(message, "slow down");
            }
            other => panic!("expected a status error, got {other:?}"),
        }
    }
}
