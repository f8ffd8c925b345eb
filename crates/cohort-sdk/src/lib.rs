//! Cohort's Rust SDK: every flag and experiment evaluated in-process from a config that the
//! config service pushes over a gRPC stream, with a last-known-good copy on disk and exposure
//! and metric events batched to the event service.
//!
//! Built for the request path: evaluation never waits (the config is swapped atomically and
//! events are recorded without blocking), never panics on bad input, and keeps serving the
//! last config it had, or the caller's defaults, when everything around it is down.
//!
//! ```no_run
//! # async fn run() -> Result<(), cohort_sdk::SdkError> {
//! use std::time::Duration;
//! use cohort_sdk::{Client, Context, MetricEvent};
//!
//! let client = Client::builder("sdk-key")
//!     .config_endpoint("http://cohort-config:7000")
//!     .event_endpoint("http://cohort-events:7001")
//!     .cache_file("/var/cache/cohort/production.json")
//!     .init_timeout(Duration::from_secs(2))
//!     .build()
//!     .await?;
//!
//! let ctx = Context::new("user-42").with("country", "NZ");
//! if client.bool_value("new-checkout", &ctx, false) {
//!     // ...
//! }
//! let assignment = client.experiment("checkout-button", &ctx);
//! let color = assignment.variant_or("control");
//! client.track(MetricEvent::new("user-42", "checkout").with_value(42.0)).ok();
//! client.close().await?;
//! # let _ = color; Ok(()) }
//! ```
//!
//! # Layout
//! - [`Client`] (`client`): evaluation (owned, typed, details, zero-copy [`ConfigGuard`]),
//!   `track`, `flush`/`close`, state and [`Stats`].
//! - [`ClientBuilder`] (`builder`): options and `build()`.
//! - `store`: the `ArcSwap`ped compiled config, [`State`] and its watch channel.
//! - `sync`: the background task holding the config service's `Sync` stream, and the cache
//!   file writer.
//! - `delta`: applying a `Delta`'s changes to the held `Definitions`.
//! - `cache`: the last-known-good file (atomic write, read, corruption handling).
//! - `events`: [`MetricEvent`], the bounded event queue and the batching delivery worker.
//! - `dedup`: the exposure dedup window.
//! - `decision`: owned results ([`Evaluation`], [`Details`], [`Assignment`]).
//! - `error`: [`SdkError`], [`TrackError`].

mod builder;
mod cache;
mod client;
mod decision;
mod dedup;
mod delta;
mod error;
mod events;
mod store;
mod sync;

pub use builder::ClientBuilder;
pub use client::{Client, ConfigGuard, Stats};
/// The bounds of the reconnect and event retry backoff (from `cohort-backoff`).
pub use cohort_backoff::BackoffPolicy;
pub use cohort_transport::ClientTls;
pub use decision::{Assignment, Details, Evaluation};
pub use error::{SdkError, TrackError};
pub use events::{EventOptions, MAX_BATCH_SIZE, MAX_SENDERS as MAX_EVENT_SENDERS, MetricEvent};
pub use store::{State, Status};

/// The engine types callers need: contexts, decisions, reasons and definitions.
pub use cohort_core::{
    AttrValue, CompiledConfig, Context, Decision, DecisionKind, Definitions, ErrorCode, HoldoutHit, Reason,
};
