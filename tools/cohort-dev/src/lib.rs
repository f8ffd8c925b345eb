//! `cohort-dev` as a library: all of Cohort's services started in one process, for `make dev`
//! and the end-to-end test (integration-tests/).
//!
//! # Layout
//! - [`stack`]: `Stack::start` runs config, events, analysis and evaluation against one
//!   database, on the usual ports or any free ones; each service can be stopped or killed.

pub mod stack;
