//! What every Cohort service shares: command-line and environment settings, logging, signal
//! handling and ordered shutdown, and the admin HTTP server (`/metrics`, `/healthz`,
//! `/readyz`).
//!
//! # Layout
//! - [`settings`]: clap argument groups flattened into each service's settings, duration
//!   parsing, and the exit code and one-line reason for bad settings.
//! - [`telemetry`]: tracing setup (text or JSON, `RUST_LOG`).
//! - [`shutdown`]: SIGTERM/SIGINT into a cancellation token.
//! - [`admin`]: the admin server and readiness (started, and every named [`Condition`]
//!   holding), shared with gRPC health.
//! - [`auth`]: the `Bearer` credential of an `authorization` header.
//! - [`error`]: [`ApiError`], the one failed answer and its mapping to gRPC and HTTP.
//! - `listen`: [`Listeners`] bound in `main`, and [`shutdown_on_signal`].
//! - [`tls`]: TLS for the listeners (certificate files reloaded when they change, optional
//!   client certificates) and the `--tls-*` settings; clients use `cohort-transport`.
//! - `incoming`: a listener's connections, plaintext or TLS.
//! - [`throttle`]: per-key rate limits and slowed failed authentications.
//! - [`origin`]: browser origins (CORS) as environments list them and browsers send them.
//! - [`server`]: the one service skeleton ([`Skeleton`]): health, reflection (per server, of
//!   its [`GrpcRoutes`]), the tower stack on every RPC and route, supervised servers, drain.
//! - [`metrics`]: build information, `process_*` and PostgreSQL pool gauges, read at scrape.

pub mod admin;
pub mod auth;
pub mod error;
mod incoming;
mod listen;
pub mod metrics;
pub mod origin;
pub mod server;
pub mod settings;
pub mod shutdown;
pub mod telemetry;
pub mod throttle;
pub mod tls;

pub use admin::{Condition, Readiness, serve_admin};
pub use auth::bearer;
pub use error::ApiError;
pub use incoming::{Conn, Incoming, Peer};
pub use listen::{Listeners, shutdown_on_signal};
pub use server::{GrpcRoutes, Limits, Running, ServeError, ServerStopped, Skeleton, reflected_services};
pub use settings::{
    CommonArgs, DatabaseArgs, EX_USAGE, MAX_DURATION, parse_duration, parse_settings, usage_error,
};
pub use shutdown::{Shutdown, wait_for_signal};
pub use telemetry::init_tracing;
pub use throttle::{FailedAuth, KeyRateLimit};
pub use tls::{ClientAuth, ServerTls, TlsArgs, TlsError};
