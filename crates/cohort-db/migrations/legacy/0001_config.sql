-- The config service's system of record: tenants, keys, definitions, and the audit log that
-- doubles as the change log (one row per environment version).

CREATE TABLE organizations (
    id          uuid PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE environments (
    id               uuid PRIMARY KEY,
    organization_id  uuid NOT NULL REFERENCES organizations (id),
    key              text NOT NULL,
    name             text NOT NULL,
    -- Bumped in the same transaction as every change; strictly increasing, no gaps.
    version          bigint NOT NULL DEFAULT 0,
    created_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (organization_id, key)
);

CREATE TABLE api_keys (
    id               uuid PRIMARY KEY,
    organization_id  uuid NOT NULL REFERENCES organizations (id),
    -- SDK keys belong to one environment; admin keys to the whole organization.
    environment_id   uuid REFERENCES environments (id),
    kind             text NOT NULL CHECK (kind IN ('admin', 'sdk')),
    name             text NOT NULL,
    -- The first characters of the secret, to recognise a key in listings.
    prefix           text NOT NULL,
    -- SHA-256 of the secret; the secret itself is never stored.
    key_hash         bytea NOT NULL UNIQUE,
    created_at       timestamptz NOT NULL DEFAULT now(),
    created_by       uuid,
    revoked_at       timestamptz,
    CHECK ((kind = 'sdk') = (environment_id IS NOT NULL))
);
CREATE INDEX api_keys_organization ON api_keys (organization_id, created_at);

-- Flags, experiments, layers, segments and metrics: one JSON definition each (the
-- cohort-core model), validated by compiling the whole environment before commit.
CREATE TABLE entities (
    environment_id  uuid NOT NULL REFERENCES environments (id),
    kind            text NOT NULL CHECK (kind IN ('flag', 'experiment', 'layer', 'segment', 'metric')),
    key             text NOT NULL,
    definition      jsonb NOT NULL,
    -- Optimistic concurrency: an update names the revision it read.
    revision        bigint NOT NULL,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    PRIMARY KEY (environment_id, kind, key)
);

CREATE TABLE audit_log (
    id               bigserial PRIMARY KEY,
    organization_id  uuid NOT NULL REFERENCES organizations (id),
    environment_id   uuid REFERENCES environments (id),
    -- The environment version this change created; null for changes outside definitions.
    version          bigint,
    actor_key_id     uuid,
    actor_name       text NOT NULL,
    action           text NOT NULL,
    kind             text,
    key              text,
    before           jsonb,
    after            jsonb,
    reason           text,
    at               timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE UNIQUE INDEX audit_log_version ON audit_log (environment_id, version) WHERE version IS NOT NULL;
CREATE INDEX audit_log_organization ON audit_log (organization_id, id);

-- Config propagation: each config-service replica records, per environment version, the
-- commit-to-acknowledgment latencies of its own streams, and how many streams it holds.
CREATE TABLE propagation (
    environment_id  uuid NOT NULL REFERENCES environments (id),
    version         bigint NOT NULL,
    replica_id      uuid NOT NULL,
    latencies_ms    real[] NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (environment_id, version, replica_id)
);

CREATE TABLE replica_streams (
    replica_id      uuid NOT NULL,
    environment_id  uuid NOT NULL REFERENCES environments (id),
    connected       integer NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (replica_id, environment_id)
);
