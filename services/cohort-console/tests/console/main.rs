//! The console against the real services: its JSON API (`api`), and the page in Debian's
//! chromium driving a real stack (`browser`). One binary, many modules.

mod api;
mod browser;
mod metrics;
