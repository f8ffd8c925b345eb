# syntax=docker/dockerfile:1
# One image for every Cohort binary; the command picks the service:
#   cohort-config | cohort-evaluation | cohort-events | cohort-analysis | cohort-console | cohortctl
# cohort-console serves the web console's page, built from console/ (Vite) into
# /usr/share/cohort/console: run it with COHORT_ASSETS_DIR=/usr/share/cohort/console (the Helm
# chart sets it).
#
#   docker build -t cohort:dev .
#   docker run --rm cohort:dev cohort-config --help
#   docker run --rm -p 8086:8086 -e COHORT_ASSETS_DIR=/usr/share/cohort/console \
#     -e COHORT_CONFIG_ENDPOINT=http://host.docker.internal:50051 \
#     -e COHORT_ANALYSIS_ENDPOINT=http://host.docker.internal:50054 cohort:dev cohort-console
#
# Needs BuildKit (the default builder of current Docker) for the cache mounts, and the
# Dockerfile frontend 1.19 or later (what docker/dockerfile:1 resolves to) for COPY --exclude.

ARG RUST_VERSION=1.95
ARG NODE_VERSION=20

# The console's page: `npm ci` from the lockfile, then `npm run build` (type check, Vite) writes
# console/dist (index.html and assets/). Dependencies are installed before the sources are
# copied, so a source change reuses the npm layer.
FROM node:${NODE_VERSION}-bookworm-slim AS console
WORKDIR /src/console
COPY console/package.json console/package-lock.json ./
RUN --mount=type=cache,target=/root/.npm,sharing=locked \
    npm ci --no-audit --no-fund
# A local node_modules or dist must not replace the ones built here.
COPY --exclude=node_modules --exclude=dist console/ ./
RUN npm run build && test -f dist/index.html

FROM rust:${RUST_VERSION}-bookworm AS builder
WORKDIR /src
# The commit (`--build-arg REVISION=$(git rev-parse HEAD)`), compiled into the binaries for
# `cohort_build_info`; also the image's revision label below. A changed value recompiles
# cohort-runtime and the crates above it, never the dependencies.
ARG REVISION=unknown
# console/ is built in its own stage: leaving it out here keeps a page change from rebuilding
# the binaries.
COPY --exclude=console . .
# The registry, git checkouts and target/ live in BuildKit caches, so a rebuild after a source
# change recompiles only what changed. Binaries are copied out of the cache mount to /out.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    COHORT_GIT_COMMIT="${REVISION}" cargo build --release --locked \
        --bin cohort-config \
        --bin cohort-evaluation \
        --bin cohort-events \
        --bin cohort-analysis \
        --bin cohort-console \
        --bin cohortctl \
 && mkdir -p /out /data/spool \
 && cp target/release/cohort-config target/release/cohort-evaluation target/release/cohort-events \
       target/release/cohort-analysis target/release/cohort-console target/release/cohortctl /out/

# glibc and libgcc, CA certificates and tzdata; no shell, no package manager.
FROM gcr.io/distroless/cc-debian12:nonroot

ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="cohort" \
      org.opencontainers.image.description="Cohort feature-flag and experimentation services: cohort-config, cohort-evaluation, cohort-events, cohort-analysis, cohort-console (the web console) and cohortctl" \
      org.opencontainers.image.source="https://github.com/cohort-dev/cohort" \
      org.opencontainers.image.url="https://github.com/cohort-dev/cohort" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"

COPY --from=builder /out/ /usr/local/bin/
# The console's built page (COHORT_ASSETS_DIR), read-only: cohort-console reads it once at start.
COPY --from=console /src/console/dist/ /usr/share/cohort/console/
# The event spool's default directory (COHORT_SPOOL_DIR), writable by the service's user, so
# `docker run` works without a volume; Kubernetes mounts a persistent volume over /var/lib/cohort.
COPY --from=builder --chown=65532:65532 /data/ /var/lib/cohort/

USER 65532:65532

# gRPC: config 50051, evaluation 50052, events 50053, analysis 50054, console 50056 (health and
# reflection only).
# HTTP: config 8081, evaluation 8082, events 8083, analysis 8084, console 8086 (the page and
# /api/v1). Admin (COHORT_ADMIN_ADDR): 9090.
EXPOSE 50051 50052 50053 50054 50056 8081 8082 8083 8084 8086 9090

# No default service: `docker run IMAGE cohort-config` (or any other binary). Without a
# command, cohortctl prints its help.
ENTRYPOINT []
CMD ["/usr/local/bin/cohortctl", "--help"]
