//! Connection pools from a `postgres://` URL.

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;

use crate::DbError;

/// How a pool connects and how large it grows.
#[derive(Debug, Clone)]
pub struct PoolOptions {
    pub max_connections: usize,
    /// How long a caller waits for a connection before the request fails.
    pub wait_timeout: Duration,
    pub connect_timeout: Duration,
    /// Application name shown in `pg_stat_activity`.
    pub application_name: String,
}

impl Default for PoolOptions {
    fn default() -> Self {
        PoolOptions {
            max_connections: 16,
            wait_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            application_name: "cohort".to_owned(),
        }
    }
}

/// Builds a pool. Connections are opened lazily, so this succeeds while the database is down.
pub fn connect(url: &str, options: &PoolOptions) -> Result<Pool, DbError> {
    let mut pg: tokio_postgres::Config = url.parse().map_err(DbError::Url)?;
    pg.connect_timeout(options.connect_timeout);
    if pg.get_application_name().is_none() {
        pg.application_name(&options.application_name);
    }
    // Fast recycling checks the connection is open; a dead one is replaced on next use.
    let manager = Manager::from_config(pg, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
    Pool::builder(manager)
        .max_size(options.max_connections)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(options.wait_timeout))
        .create_timeout(Some(options.connect_timeout))
        .recycle_timeout(Some(options.connect_timeout))
        .build()
        .map_err(|e| DbError::Pool(e.to_string()))
}
