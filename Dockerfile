# syntax=docker/dockerfile:1
# One image for every Cohort binary; the command picks the service:
#   cohort-config | cohort-evaluation | cohort-events | cohort-analysis | cohortctl
#
#   docker build -t cohort:dev .
#   docker run --rm cohort:dev cohort-config --help
#
# Needs BuildKit (the default builder of current Docker) for the cache mounts.

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS builder
WORKDIR /src
COPY . .
# The registry, git checkouts and target/ live in BuildKit caches, so a rebuild after a source
# change recompiles only what changed. Binaries are copied out of the cache mount to /out.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked \
        --bin cohort-config \
        --bin cohort-evaluation \
        --bin cohort-events \
        --bin cohort-analysis \
        --bin cohortctl \
 && mkdir -p /out /data/spool \
 && cp target/release/cohort-config target/release/cohort-evaluation target/release/cohort-events \
       target/release/cohort-analysis target/release/cohortctl /out/

# glibc and libgcc, CA certificates and tzdata; no shell, no package manager.
FROM gcr.io/distroless/cc-debian12:nonroot

ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="cohort" \
      org.opencontainers.image.description="Cohort feature-flag and experimentation services: cohort-config, cohort-evaluation, cohort-events, cohort-analysis and cohortctl" \
      org.opencontainers.image.source="https://github.com/cohort-dev/cohort" \
      org.opencontainers.image.url="https://github.com/cohort-dev/cohort" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"

COPY --from=builder /out/ /usr/local/bin/
# The event spool's default directory (COHORT_SPOOL_DIR), writable by the service's user, so
# `docker run` works without a volume; Kubernetes mounts a persistent volume over /var/lib/cohort.
COPY --from=builder --chown=65532:65532 /data/ /var/lib/cohort/

USER 65532:65532

# gRPC: config 50051, evaluation 50052, events 50053, analysis 50054.
# HTTP: config 8081, evaluation 8082, events 8083, analysis 8084. Admin (COHORT_ADMIN_ADDR): 9090.
EXPOSE 50051 50052 50053 50054 8081 8082 8083 8084 9090

# No default service: `docker run IMAGE cohort-config` (or any other binary). Without a
# command, cohortctl prints its help.
ENTRYPOINT []
CMD ["/usr/local/bin/cohortctl", "--help"]
