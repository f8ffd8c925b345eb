# The doors into Cohort. Logic lives in Rust and scripts/, not here.
.PHONY: test fmt lint bench

# Formatting, lints as errors, then every test in the workspace.
test:
	cargo fmt --all --check
	cargo clippy --workspace --all-targets --locked -- -D warnings
	cargo test --workspace --locked

fmt:
	cargo fmt --all

lint:
	cargo clippy --workspace --all-targets -- -D warnings

# Criterion benchmarks; results are recorded in BENCHMARKS.md.
bench:
	cargo bench --workspace
