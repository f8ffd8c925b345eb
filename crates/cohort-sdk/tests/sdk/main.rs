//! cohort-sdk's integration tests, one binary: conformance through the public API, the config
//! stream against a fake config service, and event delivery against a fake event service.

mod conformance;
mod events;
mod stream;
mod support;
