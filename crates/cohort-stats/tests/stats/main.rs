//! cohort-stats' integration tests: the reference vectors, properties, and the A/A simulation
//! that shows peeking with sequential boundaries is safe. One binary, many modules.

mod aa_simulation;
mod properties;
mod vectors;
