//! flagd's evaluation API (`flagd.evaluation.v1.Service` and `v2`, which differ only in the
//! responses' field presence), so that OpenFeature's flagd providers in RPC mode evaluate
//! Cohort's flags and experiments. Each call finds its key's environment and evaluates through
//! the SDK client's guard exactly as `Evaluate` does (exposures included), then answers as flagd
//! would. This module decides; [`v1`] and [`v2`] only encode.
//!
//! - Keys: `authorization: Bearer <sdk or client key>`. A call without one evaluates as
//!   `--flagd-environment-key` bound to its `flagd-selector` (or to none) when the service has
//!   one, and is UNAUTHENTICATED otherwise.
//! - Contexts: a `google.protobuf.Struct` (`cohort_proto::convert::flagd::context`).
//! - Values: ResolveBoolean, ResolveString, ResolveFloat and ResolveObject take the flag's JSON
//!   type; ResolveInt an integral number. An experiment resolves as a string (its variant key)
//!   or an object (its variant's payload). A unit that is not enrolled gets neither value nor
//!   variant, flagd's way of deferring to the caller's default. Metadata: `ruleId` for flags,
//!   `experimentId`, `enrolled` and `variant` for experiments; client keys see no ids.
//! - Errors: [`FlagdError`], mapped to statuses as flagd maps its errors, with the OpenFeature
//!   code first in the message.
//! - EventStream: `provider_ready`, `configuration_change` naming the flags and experiments
//!   whose compiled form changed (see [`Fingerprints`]), `keep_alive` every [`KEEP_ALIVE`].

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::future::Future;
use std::hash::{DefaultHasher, Hasher};
use std::sync::Arc;
use std::time::Duration;

use cohort_core::{CompiledConfig, Context, Decision, DecisionKind, ErrorCode};
use cohort_proto::ProtoError;
use cohort_proto::convert::flagd::{self as convert, Kind, Struct, Value};
use cohort_sdk::{Client, ConfigGuard};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::metadata::MetadataMap;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};
use tracing::debug;

use crate::environments::{bearer, is_client_key};
use crate::error::ServiceError;
use crate::evaluate::{Evaluator, MAX_KEY_BYTES};

mod v1;
mod v2;
mod wire;

/// The fully qualified gRPC service names, for health.
pub const SERVICE_NAMES: [&str; 2] = ["flagd.evaluation.v1.Service", "flagd.evaluation.v2.Service"];

/// How often an event stream says `keep_alive`: flagd's interval. Each one also marks the
/// environment in use, so an open stream keeps its environment from being closed as idle.
pub const KEEP_ALIVE: Duration = Duration::from_secs(20);

/// Events queued per stream; a stream whose client does not read waits.
const STREAM_QUEUE: usize = 8;

/// The tonic service. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Flagd {
    evaluator: Evaluator,
    /// `Bearer <key>` for calls that carry no `authorization` (`--flagd-environment-key`), by
    /// the `flagd-selector` they send (`None`: for calls that send none).
    bound: Arc<HashMap<Option<String>, String>>,
    /// Fired at shutdown: every event stream ends.
    streams: CancellationToken,
}

impl Flagd {
    /// `bindings`: `--flagd-environment-key` entries (`KEY` or `SELECTOR=KEY`, validated).
    pub fn new(evaluator: Evaluator, bindings: &[String], streams: CancellationToken) -> Flagd {
        let bound = bindings
            .iter()
            .map(|b| {
                let (selector, key) = crate::settings::flagd_binding(b);
                (selector.map(str::to_owned), format!("Bearer {key}"))
            })
            .collect();
        Flagd { evaluator, bound: Arc::new(bound), streams }
    }

    /// The call's `authorization`, or when it sends none the key bound to its
    /// `flagd-selector` (or to no selector). A malformed one is not replaced: it is refused.
    fn authorization<'a>(&'a self, metadata: &'a MetadataMap) -> Option<&'a str> {
        if let Some(value) = metadata.get("authorization") {
            return value.to_str().ok();
        }
        let selector = match metadata.get("flagd-selector") {
            Some(s) => Some(s.to_str().ok()?.trim().to_owned()),
            None => None,
        };
        self.bound.get(&selector).map(String::as_str)
    }

    /// Checks the key, decodes the context, and runs `f` over the key's environment's config
    /// (`public`: a client-side key).
    async fn with_config<T>(
        &self,
        metadata: &MetadataMap,
        context: Option<Struct>,
        f: impl FnOnce(&ConfigGuard<'_>, &Context, bool) -> T,
    ) -> Result<T, FlagdError> {
        let authorization = self.authorization(metadata);
        let public = is_client_key(bearer(authorization)?);
        let ctx = convert::context(context).map_err(|e| FlagdError::Context(e.at("context")))?;
        let client = self.evaluator.client(authorization).await?;
        let cfg = client.config();
        Ok(f(&cfg, &ctx, public))
    }

    /// One Resolve* call.
    async fn resolve(
        &self,
        metadata: &MetadataMap,
        key: &str,
        context: Option<Struct>,
        wanted: Wanted,
    ) -> Result<Resolution, FlagdError> {
        self.with_config(metadata, context, |cfg, ctx, public| {
            if key.is_empty() || key.len() > MAX_KEY_BYTES {
                let message = format!("a flag key is 1 to {MAX_KEY_BYTES} bytes");
                return Err(FlagdError::resolution(ErrorCode::FlagNotFound, message));
            }
            let decision = cfg.evaluate(key, ctx);
            self.evaluator.metrics.decisions.inc();
            resolve(&decision, wanted, public)
        })
        .await?
    }

    /// ResolveAll: every flag and experiment that flagd's types can carry, and the config
    /// version as the response's metadata.
    async fn all(
        &self,
        metadata: &MetadataMap,
        context: Option<Struct>,
    ) -> Result<(Vec<(String, AnyFlag)>, Struct), FlagdError> {
        self.with_config(metadata, context, |cfg, ctx, public| {
            let decisions = cfg.evaluate_all(ctx);
            self.evaluator.metrics.decisions.inc_by(decisions.len() as u64);
            let flags = decisions.iter().filter_map(|d| Some((d.key.to_owned(), any_flag(d, public)?)));
            (flags.collect(), object([("configVersion", number(cfg.version() as f64))]))
        })
        .await
    }

    /// EventStream: refused keys and environments without a config answer before it starts.
    async fn events(
        &self,
        metadata: &MetadataMap,
    ) -> Result<ReceiverStream<Result<Event, Status>>, FlagdError> {
        let keyless = metadata.get("authorization").is_none() && metadata.get("flagd-selector").is_none();
        let keys: Vec<String> = match self.authorization(metadata) {
            Some(a) => vec![a.to_owned()],
            // Node's flagd provider opens its stream with neither key nor selector, though it
            // sends its selector with every resolve: such a stream follows every environment
            // bound to a selector (a change elsewhere only empties some of its cache).
            None if keyless && !self.bound.is_empty() => {
                self.bound.iter().filter(|(s, _)| s.is_some()).map(|(_, k)| k.clone()).collect()
            }
            None => vec![],
        };
        if keys.is_empty() {
            bearer(None)?;
        }
        let merged = keys.len() > 1;
        let mut clients = Vec::with_capacity(keys.len());
        let mut refused = None;
        for authorization in keys {
            bearer(Some(&authorization))?;
            match self.evaluator.client(Some(&authorization)).await {
                Ok(client) => clients.push((client, authorization)),
                // A merged stream follows the environments it can: one revoked binding does
                // not silence the others.
                Err(e) if merged => refused = Some(e),
                Err(e) => return Err(e.into()),
            }
        }
        if let (true, Some(e)) = (clients.is_empty(), refused) {
            return Err(e.into());
        }
        let (tx, rx) = mpsc::channel(STREAM_QUEUE);
        for (i, (client, authorization)) in clients.into_iter().enumerate() {
            let source = Keyed { evaluator: self.evaluator.clone(), authorization };
            // One announces the stream and keeps it alive; every one reports its changes.
            let announce = i == 0;
            tokio::spawn(stream_events(
                source,
                client,
                tx.clone(),
                self.streams.clone(),
                KEEP_ALIVE,
                announce,
            ));
        }
        Ok(ReceiverStream::new(rx))
    }
}

/// What a Resolve* call asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wanted {
    Boolean,
    String,
    Integer,
    Float,
    Object,
}

impl Wanted {
    fn name(self) -> &'static str {
        match self {
            Wanted::Boolean => "a boolean",
            Wanted::String => "a string",
            Wanted::Integer => "an integer",
            Wanted::Float => "a number",
            Wanted::Object => "an object",
        }
    }
}

/// A resolved value of the type asked for.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    Boolean(bool),
    String(String),
    Integer(i64),
    Float(f64),
    Object(Struct),
}

impl Answer {
    fn boolean(self) -> Option<bool> {
        if let Answer::Boolean(b) = self { Some(b) } else { None }
    }
    fn string(self) -> Option<String> {
        if let Answer::String(s) = self { Some(s) } else { None }
    }
    fn integer(self) -> Option<i64> {
        if let Answer::Integer(n) = self { Some(n) } else { None }
    }
    fn float(self) -> Option<f64> {
        if let Answer::Float(n) = self { Some(n) } else { None }
    }
    fn object(self) -> Option<Struct> {
        if let Answer::Object(o) = self { Some(o) } else { None }
    }
}

/// A successful resolution, as a flagd response carries it.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolution {
    /// `None`: the caller's default applies (the response leaves `value` unset).
    pub value: Option<Answer>,
    /// `None` when none was served.
    pub variant: Option<String>,
    pub reason: &'static str,
    pub metadata: Struct,
}

/// Why a flagd call failed.
#[derive(Debug, thiserror::Error)]
pub enum FlagdError {
    /// Keys, environments and limits, answered as the service answers them everywhere.
    #[error(transparent)]
    Service(#[from] ServiceError),
    /// The context does not convert (a field of a type no attribute has, a limit).
    #[error("INVALID_CONTEXT: {0}")]
    Context(ProtoError),
    /// The flag or experiment cannot be resolved as asked.
    #[error("{}: {message}", code.as_str())]
    Resolution { code: ErrorCode, message: String },
}

impl FlagdError {
    fn resolution(code: ErrorCode, message: impl Into<String>) -> FlagdError {
        FlagdError::Resolution { code, message: message.into() }
    }
}

/// The status code flagd answers an OpenFeature error with (providers map it back: NOT_FOUND
/// to FLAG_NOT_FOUND, INVALID_ARGUMENT to TYPE_MISMATCH, DATA_LOSS to PARSE_ERROR, anything
/// else to GENERAL). flagd has no INVALID_CONTEXT or TARGETING_KEY_MISSING of its own; both
/// are about the request's context, so INVALID_ARGUMENT.
fn status_code(code: ErrorCode) -> Code {
    match code {
        ErrorCode::FlagNotFound => Code::NotFound,
        ErrorCode::TypeMismatch | ErrorCode::InvalidContext | ErrorCode::TargetingKeyMissing => {
            Code::InvalidArgument
        }
        ErrorCode::ParseError => Code::DataLoss,
        ErrorCode::ProviderNotReady => Code::Unavailable,
        ErrorCode::General => Code::Unknown,
    }
}

impl From<FlagdError> for Status {
    fn from(e: FlagdError) -> Status {
        match e {
            FlagdError::Service(e) => e.into(),
            FlagdError::Context(ref bad) => {
                let mut details = ErrorDetails::new();
                details.add_bad_request_violation(bad.field.clone(), bad.message.clone());
                Status::with_error_details(Code::InvalidArgument, e.to_string(), details)
            }
            FlagdError::Resolution { code, .. } => Status::new(status_code(code), e.to_string()),
        }
    }
}

/// Resolves `d` as the type `wanted`; `public` (a client-side key) leaves ids out.
pub fn resolve(d: &Decision<'_>, wanted: Wanted, public: bool) -> Result<Resolution, FlagdError> {
    if let Some(code) = d.error {
        return Err(FlagdError::resolution(code, error_message(code, d.key)));
    }
    let mismatch = || {
        FlagdError::resolution(
            ErrorCode::TypeMismatch,
            format!("the value of {} is not {}", d.key, wanted.name()),
        )
    };
    let experiment = d.kind == Some(DecisionKind::Experiment);
    let value = match wanted {
        // An experiment's string is its variant: none when the unit is not enrolled (or the
        // experiment is not running), so the caller's default.
        Wanted::String if experiment => d.variant.map(|v| Answer::String(v.to_owned())),
        Wanted::Boolean | Wanted::Integer | Wanted::Float if experiment => {
            let message = format!(
                "{} is an experiment: resolve it as a string (its variant) or an object (its payload)",
                d.key
            );
            return Err(FlagdError::resolution(ErrorCode::TypeMismatch, message));
        }
        _ => match d.value {
            Some(v) => Some(typed(v, wanted).ok_or_else(mismatch)?),
            None => None,
        },
    };
    Ok(Resolution {
        value,
        variant: d.variant.map(str::to_owned),
        reason: d.reason.as_str(),
        metadata: metadata(d, public),
    })
}

/// `v` as the type `wanted`, if it is one: integers are numbers without a fraction that fit
/// in 64 bits; objects are JSON objects (not arrays).
fn typed(v: &serde_json::Value, wanted: Wanted) -> Option<Answer> {
    match wanted {
        Wanted::Boolean => v.as_bool().map(Answer::Boolean),
        Wanted::String => v.as_str().map(|s| Answer::String(s.to_owned())),
        Wanted::Float => v.as_f64().map(Answer::Float),
        Wanted::Integer => v
            .as_i64()
            .or_else(|| {
                // 2^63: the first double beyond i64.
                const LIMIT: f64 = 9_223_372_036_854_775_808.0;
                v.as_f64().filter(|n| n.fract() == 0.0 && (-LIMIT..LIMIT).contains(n)).map(|n| n as i64)
            })
            .map(Answer::Integer),
        Wanted::Object => v.as_object().map(|o| Answer::Object(convert::json_object(o))),
    }
}

/// A readable message for an error code about `key` (after the code itself).
fn error_message(code: ErrorCode, key: &str) -> String {
    match code {
        ErrorCode::FlagNotFound => format!("no flag or experiment named {key}"),
        ErrorCode::TargetingKeyMissing => format!("{key} splits by unit: the context needs a targetingKey"),
        ErrorCode::InvalidContext => format!("the context cannot evaluate {key}"),
        ErrorCode::TypeMismatch => format!("{key} is of another type"),
        ErrorCode::ParseError => format!("{key} could not be parsed"),
        ErrorCode::ProviderNotReady => "no config loaded yet".to_owned(),
        ErrorCode::General => format!("{key} could not be evaluated"),
    }
}

/// A decision's metadata: the matched rule's id for flags; the experiment's id, whether the
/// unit is enrolled and its variant for experiments. Client-side keys get no ids.
fn metadata(d: &Decision<'_>, public: bool) -> Struct {
    let mut fields = BTreeMap::new();
    if d.kind == Some(DecisionKind::Experiment) {
        if let Some(e) = d.experiment.filter(|_| !public) {
            fields.insert("experimentId".to_owned(), string(e.id_text()));
        }
        fields.insert("enrolled".to_owned(), Value { kind: Some(Kind::BoolValue(d.enrolled)) });
        if let Some(variant) = d.variant {
            fields.insert("variant".to_owned(), string(variant));
        }
    } else {
        // flagd's flag and flag-set metadata, merged when the flag was compiled.
        for (name, value) in d.metadata.into_iter().flatten() {
            fields.insert(name.clone(), convert::json_value(value));
        }
        if let Some(rule) = d.rule_id.filter(|_| !public) {
            fields.insert("ruleId".to_owned(), string(rule));
        }
    }
    Struct { fields }
}

/// One flag or experiment of ResolveAll, for either version's `AnyFlag`.
#[derive(Debug, Clone, PartialEq)]
pub struct AnyFlag {
    pub reason: &'static str,
    pub variant: Option<String>,
    /// `None`: no value (a failed decision, or the caller's default).
    pub value: Option<AnyValue>,
    pub metadata: Struct,
}

/// `AnyFlag`'s value: flagd's four types.
#[derive(Debug, Clone, PartialEq)]
pub enum AnyValue {
    Bool(bool),
    String(String),
    Double(f64),
    Object(Struct),
}

/// One decision of ResolveAll: a flag's value by its JSON type, an experiment's variant key.
/// Failed decisions carry no value, reason ERROR and `errorCode` in their metadata; a value
/// flagd has no type for (a JSON array or null) leaves the flag out, as flagd does.
fn any_flag(d: &Decision<'_>, public: bool) -> Option<AnyFlag> {
    let value = match (d.error, d.kind) {
        (Some(_), _) => None,
        (None, Some(DecisionKind::Experiment)) => d.variant.map(|v| AnyValue::String(v.to_owned())),
        (None, _) => match d.value {
            None => None,
            Some(serde_json::Value::Bool(b)) => Some(AnyValue::Bool(*b)),
            Some(serde_json::Value::String(s)) => Some(AnyValue::String(s.clone())),
            Some(serde_json::Value::Number(n)) => Some(AnyValue::Double(n.as_f64().unwrap_or_default())),
            Some(serde_json::Value::Object(o)) => Some(AnyValue::Object(convert::json_object(o))),
            Some(serde_json::Value::Array(_) | serde_json::Value::Null) => return None,
        },
    };
    let mut metadata = metadata(d, public);
    if let Some(code) = d.error {
        metadata.fields.insert("errorCode".to_owned(), string(code.as_str()));
    }
    Some(AnyFlag { reason: d.reason.as_str(), variant: d.variant.map(str::to_owned), value, metadata })
}

fn string(s: &str) -> Value {
    Value { kind: Some(Kind::StringValue(s.to_owned())) }
}

fn number(n: f64) -> Value {
    Value { kind: Some(Kind::NumberValue(n)) }
}

fn object<const N: usize>(fields: [(&str, Value); N]) -> Struct {
    Struct { fields: fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect() }
}

// --- EventStream ---

/// Where an event stream gets its environment's client, again at every keep-alive: that marks
/// the environment in use, and follows it if it was closed (idle, evicted) and built anew.
trait Source: Send + 'static {
    fn client(&mut self) -> impl Future<Output = Result<Client, ServiceError>> + Send;
}

/// The production source: the evaluator, under the stream's key.
struct Keyed {
    evaluator: Evaluator,
    authorization: String,
}

impl Source for Keyed {
    async fn client(&mut self) -> Result<Client, ServiceError> {
        self.evaluator.client(Some(&self.authorization)).await
    }
}

/// One event stream's producer: `provider_ready`, then `configuration_change` whenever the
/// environment's version changes what a flag or experiment is, and `keep_alive` every
/// `keep_alive` (those two only when it `announce`s: one of several producers of a stream). Ends when the client goes away or `stop` fires (an OK end: providers
/// reconnect), or with UNAUTHENTICATED when the key is revoked.
async fn stream_events(
    mut source: impl Source,
    mut client: Client,
    tx: mpsc::Sender<Result<Event, Status>>,
    stop: CancellationToken,
    keep_alive: Duration,
    announce: bool,
) {
    let send = |item: Result<Event, Status>| {
        let (tx, stop) = (&tx, &stop);
        async move {
            tokio::select! {
                _ = stop.cancelled() => false,
                sent = tx.send(item) => sent.is_ok(),
            }
        }
    };
    let mut held = Fingerprints::of(&client).await;
    if announce && !send(Ok(event("provider_ready", None))).await {
        return;
    }
    let mut status = client.subscribe();
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + keep_alive, keep_alive);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tx.closed() => return,
            _ = tick.tick() => {
                match source.client().await {
                    Ok(current) => {
                        client = current;
                        status = client.subscribe();
                    }
                    Err(e) => {
                        send(Err(FlagdError::from(e).into())).await;
                        return;
                    }
                }
                if announce && !send(Ok(event("keep_alive", None))).await {
                    return;
                }
            }
            changed = status.changed() => if changed.is_err() { return },
        }
        if status.borrow_and_update().key_rejected {
            send(Err(Status::unauthenticated("sdk key rejected"))).await;
            return;
        }
        if client.config().version() != held.version {
            let next = Fingerprints::of(&client).await;
            let changes = held.changes(&next);
            debug!(
                from = held.version,
                to = next.version,
                changed = changes.len(),
                "flagd configuration change"
            );
            held = next;
            if !changes.is_empty() && !send(Ok(configuration_change(&changes))).await {
                return;
            }
        }
    }
}

/// One message of an event stream, for either version's `EventStreamResponse`.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// `provider_ready`, `configuration_change` or `keep_alive`.
    pub kind: &'static str,
    pub data: Option<Struct>,
}

fn event(kind: &'static str, data: Option<Struct>) -> Event {
    Event { kind, data }
}

/// flagd's `configuration_change`: `{"flags": {"<key>": {"type": "write" | "update" |
/// "delete"}}}`.
fn configuration_change(changes: &BTreeMap<String, &'static str>) -> Event {
    let flags = changes
        .iter()
        .map(|(key, kind)| {
            (key.clone(), Value { kind: Some(Kind::StructValue(object([("type", string(kind))]))) })
        })
        .collect();
    let flags = Value { kind: Some(Kind::StructValue(Struct { fields: flags })) };
    event("configuration_change", Some(object([("flags", flags)])))
}

/// What identifies the content of each flag and experiment of one config: a hash of its
/// compiled form (its `Debug` rendering: every field, conditions with their regexes and
/// sorted lists), with the experiment's holdout, and the segments when its conditions name
/// one. cohort-core offers no other view of a compiled entry; a change that does not change
/// what evaluates (an experiment's metric list) is still reported, which is harmless.
#[derive(Debug, Default, PartialEq, Eq)]
struct Fingerprints {
    version: u64,
    by_key: HashMap<Box<str>, u64>,
}

impl Fingerprints {
    /// The client's current config's, computed off the async threads (a whole config).
    async fn of(client: &Client) -> Fingerprints {
        let client = client.clone();
        let computed = tokio::task::spawn_blocking(move || {
            let cfg = client.config();
            Fingerprints::compute(cfg.compiled(), cfg.version())
        })
        .await;
        computed.unwrap_or_default()
    }

    fn compute(cfg: &CompiledConfig, version: u64) -> Fingerprints {
        let segments = segments_text(cfg);
        let digest = |text: &str| {
            let mut h = DefaultHasher::new();
            h.write(text.as_bytes());
            // Conditions name segments by index: what they match is in the segments. If they
            // cannot be read, the version stands in, so every change reports the entry.
            if text.contains("Segment(") {
                match &segments {
                    Some(s) => h.write(s.as_bytes()),
                    None => h.write_u64(version),
                }
            }
            h.finish()
        };
        let mut by_key = HashMap::with_capacity(cfg.len());
        let mut text = String::new();
        for flag in cfg.flags() {
            text.clear();
            let _ = write!(text, "{flag:?}");
            by_key.insert(flag.key().into(), digest(&text));
        }
        for exp in cfg.experiments() {
            text.clear();
            let _ = write!(text, "{exp:?} {:?}", cfg.holdout_of(exp));
            by_key.insert(exp.key().into(), digest(&text));
        }
        Fingerprints { version, by_key }
    }

    /// Keys added (`write`), changed (`update`) and removed (`delete`) from `self` to `next`.
    fn changes(&self, next: &Fingerprints) -> BTreeMap<String, &'static str> {
        let mut out = BTreeMap::new();
        for (key, fingerprint) in &next.by_key {
            match self.by_key.get(key) {
                None => {
                    out.insert(key.to_string(), "write");
                }
                Some(old) if old != fingerprint => {
                    out.insert(key.to_string(), "update");
                }
                Some(_) => {}
            }
        }
        for key in self.by_key.keys().filter(|k| !next.by_key.contains_key(*k)) {
            out.insert(key.to_string(), "delete");
        }
        out
    }
}

/// The segments' part of the config's `Debug` rendering, found between the flags and
/// experiments before it and the metrics, holdouts and clock flag after it (each rendered on its own, so
/// the match is exact), or `None` if the rendering is not laid out so.
fn segments_text(cfg: &CompiledConfig) -> Option<String> {
    let whole = format!("{cfg:?}");
    let head = format!("flags: {:?}, experiments: {:?}, segments: ", cfg.flags(), cfg.experiments());
    let tail = format!(
        ", metrics: {:?}, holdouts: {:?}, reads_clock: {:?} }}",
        cfg.metrics(),
        cfg.holdouts(),
        cfg.reads_clock()
    );
    let start = whole.find(&head)? + head.len();
    let end = whole.strip_suffix(&tail)?.len();
    whole.get(start..end).map(str::to_owned)
}

#[cfg(test)]
mod tests;
