//! `cohort-dev` as a library: Cohort's services started in one process, for `make dev`, every
//! service's tests and the end-to-end test (integration-tests/).
//!
//! # Layout
//! - [`stack`]: [`stack::Stack`] runs config, events, analysis and evaluation (all, or those
//!   asked for) against one database, on the usual ports or any free ones; each service can be
//!   stopped, killed and restarted where it was.
//! - [`dev`]: `make dev`'s start-up (the stack, the keys kept between runs, the [`demo`]).
//! - [`testing`] (feature `testing`): [`testing::TestCluster`], a stack on a fresh database.

pub mod demo;
pub mod dev;
pub mod stack;
#[cfg(feature = "testing")]
pub mod testing;
