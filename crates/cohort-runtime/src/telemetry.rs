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

/// An error and its sources on one line (`outer: inner: root`), for logs: most errors'
/// own text stops at their layer ("db error") and the cause is in the chain.
pub fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let part = e.to_string();
        // Some layers repeat their source's text in their own; print it once.
        if !text.ends_with(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = e.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::chain;

    #[derive(Debug, thiserror::Error)]
    enum Outer {
        #[error("database")]
        Query(#[source] std::io::Error),
        #[error("pool: {0}")]
        Pool(#[source] std::io::Error),
    }

    #[test]
    fn the_chain_names_every_cause_once() {
        let root = || std::io::Error::other("value out of range: overflow");
        assert_eq!(chain(&Outer::Query(root())), "database: value out of range: overflow");
        assert_eq!(chain(&Outer::Pool(root())), "pool: value out of range: overflow");
    }
}
