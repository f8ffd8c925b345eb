//! `make dev`'s stack: start-up that remembers its database and keys across runs (`restart`),
//! and the binary stopping cleanly on SIGTERM (`sigterm`). One binary, many modules.

mod restart;
mod sigterm;
