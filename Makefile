# The doors into Cohort. Logic lives in Rust and scripts/, not here.
.PHONY: test dev fmt lint bench deploy-check proto-check

# Formatting, lints as errors, then every test in the workspace (PostgreSQL must be running:
# .ci/run starts it). The real OpenFeature SDKs the evaluation service is tested with are
# installed first (once; again only when their pinned lists change): the Rust flagd provider's
# build needs the protoc they bring. The console's page is built (its browser test serves it)
# and its unit tests run.
test:
	bash scripts/openfeature-setup.sh
	bash scripts/console-setup.sh
	npm test --prefix console --silent
	cargo fmt --all --check
	cargo clippy --workspace --all-targets --locked -- -D warnings
	cargo test --workspace --locked

# Everything locally: PostgreSQL (found or started), the services, the console, a demo
# experiment with simulated traffic, and the live results table. Ctrl-C stops it all.
dev:
	bash scripts/console-setup.sh
	cargo run --locked -p cohort-dev

fmt:
	cargo fmt --all

lint:
	cargo clippy --workspace --all-targets -- -D warnings

# Criterion benchmarks; results are recorded in BENCHMARKS.md.
bench:
	cargo bench --workspace

# Helm chart and kustomize manifests: lint, values schema, Kubernetes schemas (installs helm,
# kubectl and kubernetes-validate into target/tools on first use).
deploy-check:
	bash scripts/validate-deploy.sh

# The gRPC API's contract: buf lint (every element documented) and buf breaking against the
# previous commit's protos (installs buf from npm into scripts/buf on first use).
proto-check:
	bash scripts/proto-check.sh
