//! The config service (being written).
