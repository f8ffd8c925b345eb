//! Logging: `RUST_LOG` filters (default `info`), text or JSON lines.

use tracing_subscriber::EnvFilter;

use crate::settings::LogFormat;

/// Installs the global subscriber. Safe to call twice (the second call does nothing).
pub fn init_tracing(format: LogFormat) {
    init_tracing_with_default(format, "info");
}

/// Like [`init_tracing`], with another filter when `RUST_LOG` is unset.
pub fn init_tracing_with_default(format: LogFormat, default_filter: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_target(true);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
