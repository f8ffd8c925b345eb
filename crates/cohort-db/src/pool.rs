//! Connection pools from a `postgres://` URL (TLS as its `sslmode` says), each with its own
//! `search_path`, and the health check that pings one.

use std::time::Duration;

use crate::{DatabaseUrl, DbError};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};

/// How a pool connects and how large it grows.
#[derive(Debug, Clone)]
pub struct PoolOptions {
    pub max_connections: usize,
    /// How long a caller waits for a connection before the request fails.
    pub wait_timeout: Duration,
    pub connect_timeout: Duration,
    /// Application name shown in `pg_stat_activity`.
    pub application_name: String,
    /// Schemas searched for unqualified names, first first (plain lowercase identifiers).
    /// Sent with every connection's startup message (`options=-c search_path=...`), so it costs
    /// no round trip; it wins over a `search_path` in the URL's `options`. Empty: the server's
    /// default.
    pub search_path: Vec<String>,
}

impl Default for PoolOptions {
    fn default() -> Self {
        PoolOptions {
            max_connections: 16,
            wait_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            application_name: "cohort".to_owned(),
            search_path: Vec::new(),
        }
    }
}

/// Builds a pool. Connections are opened lazily, so this succeeds while the database is down.
/// The URL's `sslmode` and `sslrootcert` apply to every connection (see [`crate::tls`]); the
/// `sslrootcert` file is read here, once.
pub fn connect(url: &str, options: &PoolOptions) -> Result<Pool, DbError> {
    let url = DatabaseUrl::parse(url)?;
    let tls = url.tls()?;
    let mut pg = url.into_config();
    pg.connect_timeout(options.connect_timeout);
    if pg.get_application_name().is_none() {
        pg.application_name(&options.application_name);
    }
    if !options.search_path.is_empty() {
        let path = search_path_option(&options.search_path)?;
        // The server applies `-c` settings in order: ours, last, wins over the URL's.
        let all = match pg.get_options() {
            Some(existing) if !existing.trim().is_empty() => format!("{existing} {path}"),
            _ => path,
        };
        pg.options(&all);
    }
    // Fast recycling checks the connection is open; a dead one is replaced on next use.
    let manager = Manager::from_config(pg, tls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
    Pool::builder(manager)
        .max_size(options.max_connections)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(options.wait_timeout))
        .create_timeout(Some(options.connect_timeout))
        .recycle_timeout(Some(options.connect_timeout))
        .build()
        .map_err(|e| DbError::Pool(e.to_string()))
}

/// `-c search_path=a,b` for a connection's `options`. Names are checked to be plain
/// identifiers: the option is split on spaces and its value is not quoted.
pub(crate) fn search_path_option(schemas: &[String]) -> Result<String, DbError> {
    let plain = |s: &str| {
        s.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c == '_')
            && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    };
    if let Some(bad) = schemas.iter().find(|s| !plain(s)) {
        return Err(DbError::Pool(format!("search_path: {bad:?} is not a plain lowercase identifier")));
    }
    Ok(format!("-c search_path={}", schemas.join(",")))
}

/// How often and how patiently [`HealthCheck`] pings.
#[derive(Debug, Clone, Copy)]
pub struct HealthOptions {
    /// Time between pings (the first is at once).
    pub every: Duration,
    /// A ping that has not answered by then (connection included) counts as down.
    pub timeout: Duration,
}

impl Default for HealthOptions {
    fn default() -> Self {
        HealthOptions { every: Duration::from_secs(2), timeout: Duration::from_secs(1) }
    }
}

/// `SELECT 1` on a pooled connection, within `timeout`.
pub async fn ping(pool: &Pool, timeout: Duration) -> Result<(), DbError> {
    let query = async {
        let client = pool.get().await?;
        client.simple_query("SELECT 1").await.map_err(DbError::query("ping"))?;
        Ok(())
    };
    tokio::time::timeout(timeout, query)
        .await
        .unwrap_or_else(|_| Err(DbError::Pool(format!("no answer within {timeout:?}"))))
}

/// A background task that pings a pool and reports each outcome (`true`: the database
/// answered) to a callback, typically a readiness condition. It stops when dropped.
#[derive(Debug)]
pub struct HealthCheck {
    task: tokio::task::JoinHandle<()>,
}

impl HealthCheck {
    /// Pings every 2 s with a 1 s timeout; see [`HealthCheck::spawn_with`].
    pub fn spawn(pool: Pool, report: impl FnMut(bool) + Send + 'static) -> HealthCheck {
        HealthCheck::spawn_with(pool, HealthOptions::default(), report)
    }

    /// Starts pinging on the current tokio runtime. Changes are logged, not every ping.
    pub fn spawn_with(
        pool: Pool,
        options: HealthOptions,
        mut report: impl FnMut(bool) + Send + 'static,
    ) -> HealthCheck {
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(options.every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut last = None;
            loop {
                tick.tick().await;
                let outcome = ping(&pool, options.timeout).await;
                let up = outcome.is_ok();
                match (&outcome, last) {
                    (Err(e), Some(true) | None) => tracing::warn!(error = %e, "database does not answer"),
                    (Ok(()), Some(false)) => tracing::info!("database answers again"),
                    _ => {}
                }
                last = Some(up);
                report(up);
            }
        });
        HealthCheck { task }
    }
}

impl Drop for HealthCheck {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests;
