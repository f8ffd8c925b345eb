//! What every Cohort service shares: command-line and environment settings, logging, signal
//! handling and ordered shutdown, and the admin HTTP server (`/metrics`, `/healthz`,
//! `/readyz`).
//!
//! # Layout
//! - [`settings`]: clap argument groups flattened into each service's settings, duration
//!   parsing, and the exit code for bad settings.
//! - [`telemetry`]: tracing setup (text or JSON, `RUST_LOG`).
//! - [`shutdown`]: SIGTERM/SIGINT into a cancellation token.
//! - [`admin`]: the admin server and the readiness flag shared with gRPC health.
//! - `listen`: [`Listeners`] bound in `main`, and [`shutdown_on_signal`].

pub mod admin;
mod listen;
pub mod settings;
pub mod shutdown;
pub mod telemetry;

pub use admin::{Readiness, serve_admin};
pub use listen::{Listeners, grpc_incoming, http_incoming, shutdown_on_signal};
pub use settings::{CommonArgs, DatabaseArgs, EX_USAGE, parse_duration, usage_error};
pub use shutdown::{Shutdown, wait_for_signal};
pub use telemetry::init_tracing;
