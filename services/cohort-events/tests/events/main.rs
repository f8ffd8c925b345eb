//! The event service end to end against a real PostgreSQL: the API's semantics, and the
//! durability guarantees under a crash, a database outage and a load spike.
//!
//! # Layout
//! - `support`: the shared test stack (`cohort_dev::testing::TestCluster`: a fresh database,
//!   the config service and this one in-process) with the config service behind a severable
//!   TCP proxy (PostgreSQL too, for outages), the real binary, a load generator, event
//!   builders, database checks.
//! - `api`: dedupe of retries, per-event errors, auth and tenant isolation, HTTP, limits.
//! - `crash`: SIGKILL in the middle of a load loses nothing acknowledged.
//! - `keys`: a restart while the config service cannot answer accepts the keys verified
//!   before it; keys are verified by the config service, never through config's tables.
//! - `metrics`: the admin port's `/metrics` and what reflection lists.
//! - `retention`: expired day partitions dropped, days running experiments read kept, nothing
//!   dropped when off, without the config service, or while another replica drops.
//! - `outage`: PostgreSQL cut off during a load; the spool absorbs it and drains after.
//! - `settings`: bad settings of the binary exit 64 with one line.
//! - `spike`: a 10x spike is absorbed with bounded latency and drained.

mod api;
mod crash;
mod keys;
mod metrics;
mod outage;
mod retention;
mod settings;
mod spike;
mod support;
