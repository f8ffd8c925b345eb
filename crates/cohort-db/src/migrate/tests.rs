//! Migrations against a real PostgreSQL: each schema's list idempotent, concurrent-safe and
//! tamper-evident, and an installation made by the single legacy list adopted in place.

use crate::migrate::{ALL, ANALYSIS, CONFIG, EVENTS, Migration, Schema, at_start, check_version};
use crate::testing::TestDb;
use crate::{Pool, migrate};

/// The single list every service ran before each owned a schema, as it was at version 6.
const LEGACY: &[(&str, &str)] = &[
    ("config", include_str!("../../migrations/legacy/0001_config.sql")),
    ("events", include_str!("../../migrations/legacy/0002_events.sql")),
    ("analysis", include_str!("../../migrations/legacy/0003_analysis.sql")),
    ("analysis_incremental", include_str!("../../migrations/legacy/0004_analysis_incremental.sql")),
    ("analysis_scoped", include_str!("../../migrations/legacy/0005_analysis_scoped.sql")),
    ("config_batch", include_str!("../../migrations/legacy/0006_config_batch.sql")),
];

/// Applies the first `upto` legacy migrations into `public`, with their bookkeeping in
/// `public.schema_migrations`, as the legacy runner did.
async fn apply_legacy(pool: &Pool, upto: usize) {
    let mut client = pool.get().await.unwrap();
    client
        .batch_execute(
            "CREATE TABLE public.schema_migrations (
                version     integer PRIMARY KEY,
                name        text NOT NULL,
                checksum    text NOT NULL,
                applied_at  timestamptz NOT NULL DEFAULT now()
            )",
        )
        .await
        .unwrap();
    for (i, (name, sql)) in LEGACY[..upto].iter().enumerate() {
        let tx = client.transaction().await.unwrap();
        tx.batch_execute("SET LOCAL search_path TO public").await.unwrap();
        tx.batch_execute(sql).await.unwrap_or_else(|e| panic!("legacy {name}: {e}"));
        tx.execute(
            "INSERT INTO public.schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
            &[&(i as i32 + 1), name, &super::checksum(sql)],
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
    }
}

async fn migrate_all(pool: &Pool) -> Vec<Vec<i32>> {
    let mut applied = Vec::new();
    for schema in ALL {
        applied.push(migrate(pool, schema).await.unwrap());
    }
    applied
}

/// Every relation, column, index and constraint of the three schemas (partitions aside), in a
/// stable order: equal for two databases whose tables are the same.
async fn shape(pool: &Pool) -> Vec<String> {
    let client = pool.get().await.unwrap();
    let scope = "n.nspname IN ('cohort_config', 'cohort_events', 'cohort_analysis') AND NOT c.relispartition";
    let queries = [
        format!(
            "SELECT concat_ws(' ', n.nspname, c.relname, c.relkind, c.relpersistence)
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE {scope} AND c.relkind IN ('r', 'p', 'S') ORDER BY 1"
        ),
        format!(
            "SELECT concat_ws(' ', n.nspname, c.relname, a.attname,
                    format_type(a.atttypid, a.atttypmod), a.attnotnull, pg_get_expr(d.adbin, d.adrelid),
                    co.collname, a.attgenerated)
             FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
             JOIN pg_namespace n ON n.oid = c.relnamespace
             LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
             LEFT JOIN pg_collation co ON co.oid = a.attcollation
             WHERE {scope} AND c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped
             ORDER BY n.nspname, c.relname, a.attnum"
        ),
        format!(
            "SELECT pg_get_indexdef(i.indexrelid)
             FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE {scope} ORDER BY 1"
        ),
        format!(
            "SELECT concat_ws(' ', n.nspname, c.relname, k.conname, pg_get_constraintdef(k.oid))
             FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE {scope} ORDER BY 1"
        ),
    ];
    let mut out = Vec::new();
    for q in &queries {
        out.extend(client.query(q.as_str(), &[]).await.unwrap().iter().map(|r| r.get::<_, String>(0)));
    }
    out
}

async fn tables_in(pool: &Pool, schema: &str) -> Vec<String> {
    let client = pool.get().await.unwrap();
    let rows = client
        .query(
            "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND NOT c.relispartition ORDER BY 1",
            &[&schema],
        )
        .await
        .unwrap();
    rows.iter().map(|r| r.get(0)).collect()
}

async fn count(pool: &Pool, sql: &str) -> i64 {
    pool.get().await.unwrap().query_one(sql, &[]).await.unwrap().get(0)
}

#[tokio::test]
async fn running_twice_applies_nothing_the_second_time() {
    let db = TestDb::empty().await;
    for schema in ALL {
        let first = migrate(&db.pool, schema).await.unwrap();
        assert_eq!(first.len(), schema.migrations.len(), "{}", schema.name);
        assert!(migrate(&db.pool, schema).await.unwrap().is_empty(), "{}", schema.name);
    }
}

#[tokio::test]
async fn every_service_migrating_from_two_replicas_at_once_applies_each_migration_once() {
    let db = TestDb::empty().await;
    let tasks: Vec<_> = ALL
        .iter()
        .chain(ALL)
        .map(|schema: &Schema| {
            let (pool, schema) = (db.pool.clone(), *schema);
            tokio::spawn(async move { (schema.name, migrate(&pool, &schema).await.unwrap().len()) })
        })
        .collect();
    let mut applied = std::collections::BTreeMap::new();
    for task in tasks {
        let (name, n) = task.await.unwrap();
        *applied.entry(name).or_insert(0) += n;
    }
    for schema in ALL {
        assert_eq!(applied[schema.name], schema.migrations.len(), "{}", schema.name);
        let n = count(&db.pool, &format!("SELECT count(*) FROM {}.schema_migrations", schema.name)).await;
        assert_eq!(n as usize, schema.migrations.len(), "{}", schema.name);
    }
}

#[tokio::test]
async fn an_edited_migration_is_refused() {
    let db = TestDb::new().await;
    let client = db.pool.get().await.unwrap();
    client
        .execute("UPDATE cohort_analysis.schema_migrations SET checksum = 'x' WHERE version = 1", &[])
        .await
        .unwrap();
    assert!(migrate(&db.pool, &CONFIG).await.unwrap().is_empty(), "another schema's list is unaffected");
    let err = migrate(&db.pool, &ANALYSIS).await.unwrap_err().to_string();
    assert!(
        err.starts_with(
            "schema cohort_analysis: migration 1 (analysis) in the database differs from this binary's (checksum x, expected "
        ),
        "{err}"
    );
}

#[tokio::test]
async fn each_service_owns_its_tables_and_no_foreign_key_crosses_schemas() {
    let db = TestDb::new().await;
    let owned = [
        (
            CONFIG.name,
            "api_keys audit_log entities environments organizations propagation replica_streams schema_migrations",
        ),
        (EVENTS.name, "exposures metric_events schema_migrations"),
        (
            ANALYSIS.name,
            "analysis_coverage analysis_latest analysis_looks analysis_pair_sums analysis_plans analysis_state analysis_sums \
             analysis_unit_events analysis_units analysis_watermark schema_migrations",
        ),
        ("public", ""),
    ];
    for (schema, tables) in owned {
        assert_eq!(tables_in(&db.pool, schema).await.join(" "), tables, "{schema}");
    }
    let crossing = count(
        &db.pool,
        "SELECT count(*) FROM pg_constraint k JOIN pg_class t ON t.oid = k.conrelid
         JOIN pg_class r ON r.oid = k.confrelid
         WHERE k.contype = 'f' AND t.relnamespace <> r.relnamespace",
    )
    .await;
    assert_eq!(crossing, 0);
}

#[tokio::test]
async fn an_installation_of_the_legacy_list_is_adopted_in_place() {
    let db = TestDb::empty().await;
    apply_legacy(&db.pool, LEGACY.len()).await;
    let env = uuid::Uuid::new_v4();
    let client = db.pool.get().await.unwrap();
    client
        .batch_execute(&format!(
            "SET search_path TO public;
             INSERT INTO organizations (id, name) VALUES ('{org}', 'acme');
             INSERT INTO environments (id, organization_id, key, name) VALUES ('{env}', '{org}', 'production', 'P');
             INSERT INTO audit_log (organization_id, environment_id, version, actor_name, action)
                 VALUES ('{org}', '{env}', 1, 'test', 'create');
             CREATE TABLE exposures_p20260101 PARTITION OF exposures
                 FOR VALUES FROM ('2026-01-01 00:00:00+00') TO ('2026-01-02 00:00:00+00');
             CREATE TABLE metric_events_p20260101 PARTITION OF metric_events
                 FOR VALUES FROM ('2026-01-01 00:00:00+00') TO ('2026-01-02 00:00:00+00');
             CREATE TABLE metric_events_p20260102 PARTITION OF metric_events
                 FOR VALUES FROM ('2026-01-02 00:00:00+00') TO ('2026-01-03 00:00:00+00');
             INSERT INTO exposures (environment_id, event_id, experiment_id, unit, variant, config_version, ts, received_at)
                 VALUES ('{env}', gen_random_uuid(), gen_random_uuid(), 'u1', 'control', 1, '2026-01-01 10:00+00', now());
             INSERT INTO metric_events (environment_id, event_id, unit, event, value, ts, received_at)
                 VALUES ('{env}', gen_random_uuid(), 'u1', 'purchase', 9.5, '2026-01-02 10:00+00', now());
             INSERT INTO analysis_plans (experiment_id, environment_id, planned_units_per_variant, basis)
                 VALUES (gen_random_uuid(), '{env}', 100, '{{}}');
             RESET search_path;",
            org = uuid::Uuid::new_v4(),
        ))
        .await
        .unwrap();
    drop(client);

    let applied = migrate_all(&db.pool).await;
    let every: Vec<Vec<i32>> =
        ALL.iter().map(|schema| schema.migrations.iter().map(|m| m.version).collect()).collect();
    assert_eq!(applied, every, "each schema's whole list applies to the adopted installation");

    for (schema, tables) in [(CONFIG.name, 8), (EVENTS.name, 3), (ANALYSIS.name, 11)] {
        assert_eq!(tables_in(&db.pool, schema).await.len(), tables, "{schema}");
    }
    // Only the legacy bookkeeping stays behind, untouched: it can be dropped.
    assert_eq!(tables_in(&db.pool, "public").await, ["schema_migrations"]);
    assert_eq!(count(&db.pool, "SELECT count(*) FROM public.schema_migrations").await, 6);
    let partitions = count(
        &db.pool,
        "SELECT count(*) FROM pg_class
         WHERE relispartition AND relkind = 'r' AND relnamespace = 'cohort_events'::regnamespace",
    )
    .await;
    assert_eq!(partitions, 3, "partitions move with their tables");

    // The data survived, and sequences moved with their tables.
    assert_eq!(count(&db.pool, "SELECT count(*) FROM cohort_config.environments").await, 1);
    assert_eq!(count(&db.pool, "SELECT count(*) FROM cohort_events.exposures WHERE unit = 'u1'").await, 1);
    assert_eq!(
        count(&db.pool, "SELECT count(*) FROM cohort_events.metric_events WHERE value = 9.5").await,
        1
    );
    assert_eq!(count(&db.pool, "SELECT count(*) FROM cohort_analysis.analysis_plans").await, 1);
    assert_eq!(count(&db.pool, "SELECT count(*) FROM cohort_analysis.analysis_watermark").await, 1);
    let client = db.pool.get().await.unwrap();
    let id: i64 = client
        .query_one(
            "INSERT INTO cohort_config.audit_log (organization_id, actor_name, action)
             SELECT organization_id, 'test', 'again' FROM cohort_config.environments RETURNING id",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(id, 2);
    // Analysis no longer references config's environments.
    client
        .execute(
            "INSERT INTO cohort_analysis.analysis_latest (experiment_id, environment_id, look, result, computed_at)
             VALUES (gen_random_uuid(), gen_random_uuid(), 0, '{}', now())",
            &[],
        )
        .await
        .unwrap();

    assert!(migrate_all(&db.pool).await.iter().all(Vec::is_empty), "a second run applies nothing");
    let fresh = TestDb::new().await;
    let (adopted, fresh) = (shape(&db.pool).await, shape(&fresh.pool).await);
    assert!(fresh.len() > 150, "every table, column, index and constraint: {}", fresh.len());
    assert_eq!(adopted, fresh, "adopted tables are the fresh ones");
}

#[tokio::test]
async fn an_installation_short_of_the_legacy_list_is_refused() {
    let db = TestDb::empty().await;
    apply_legacy(&db.pool, 5).await;
    let err = migrate(&db.pool, &CONFIG).await.unwrap_err();
    let mut message = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(e) = source {
        message.push_str(&format!(": {e}"));
        source = e.source();
    }
    assert!(message.contains("public.audit_log has no batch_index"), "{message}");
    assert_eq!(tables_in(&db.pool, CONFIG.name).await, ["schema_migrations"], "nothing moved");
    assert_eq!(count(&db.pool, "SELECT count(*) FROM cohort_config.schema_migrations").await, 0);
    assert!(tables_in(&db.pool, "public").await.contains(&"audit_log".to_owned()));
}

#[tokio::test]
async fn seeded_keys_verify_and_revoked_ones_do_not() {
    use crate::keys::{KeyKind, verify};
    let db = TestDb::new().await;
    let tenant = db.seed_tenant("acme").await;
    let client = db.pool.get().await.unwrap();
    let sdk = verify(&client, &tenant.sdk_key).await.unwrap().expect("sdk key verifies");
    assert_eq!((sdk.kind, sdk.environment_id), (KeyKind::Sdk, Some(tenant.environment_id)));
    let admin = verify(&client, &tenant.admin_key).await.unwrap().expect("admin key verifies");
    assert_eq!((admin.kind, admin.environment_id), (KeyKind::Admin, None));
    assert_eq!(verify(&client, "cohort_sdk_nope").await.unwrap(), None);
    client.execute("UPDATE api_keys SET revoked_at = now()", &[]).await.unwrap();
    assert_eq!(verify(&client, &tenant.sdk_key).await.unwrap(), None);
}

/// A schema of two trivial migrations, and the binaries that know one, two or three of them.
const GUARDED: [Migration; 3] = [
    Migration { version: 1, name: "one", sql: "CREATE TABLE one (id int)" },
    Migration { version: 2, name: "two", sql: "CREATE TABLE two (id int)" },
    Migration { version: 3, name: "three", sql: "CREATE TABLE three (id int)" },
];

fn knowing(n: usize) -> Schema {
    Schema { name: "cohort_guarded", migrations: &GUARDED[..n] }
}

#[tokio::test]
async fn a_database_newer_than_the_binary_is_refused() {
    let db = TestDb::new().await;
    let newest = CONFIG.newest();
    assert_eq!(check_version(&db.pool, &CONFIG).await.unwrap(), Some(newest), "equal: starts");
    assert!(at_start(&db.pool, &CONFIG, false).await.unwrap().is_empty());
    assert!(at_start(&db.pool, &CONFIG, true).await.unwrap().is_empty());

    // A newer binary migrated, then this one came back.
    let future = db.migrated_past(&CONFIG).await;
    let expected = format!(
        "schema cohort_config: the database is at migration {future}, newer than this binary's newest, {newest}; "
    );
    for apply in [false, true] {
        let err = at_start(&db.pool, &CONFIG, apply).await.unwrap_err();
        assert!(matches!(err, crate::DbError::SchemaTooNew { .. }), "{err}");
        let err = err.to_string();
        assert!(err.starts_with(&expected) && !err.contains('\n'), "{err}");
    }
    assert!(at_start(&db.pool, &EVENTS, false).await.is_ok(), "another schema's list is unaffected");
}

#[tokio::test]
async fn an_older_database_starts_and_a_newer_one_stops_the_older_binary() {
    let db = TestDb::empty().await;
    assert_eq!(check_version(&db.pool, &knowing(2)).await.unwrap(), None, "nothing migrated yet");
    assert_eq!(migrate(&db.pool, &knowing(2)).await.unwrap(), [1, 2]);
    assert_eq!(check_version(&db.pool, &knowing(3)).await.unwrap(), Some(2), "older: starts");
    assert_eq!(check_version(&db.pool, &knowing(2)).await.unwrap(), Some(2), "equal: starts");
    let refused = check_version(&db.pool, &knowing(1)).await.unwrap_err().to_string();
    assert!(
        refused.starts_with(
            "schema cohort_guarded: the database is at migration 2, newer than this binary's newest, 1"
        ),
        "{refused}"
    );
    assert!(migrate(&db.pool, &knowing(1)).await.is_err(), "nor does it migrate");
    assert_eq!(migrate(&db.pool, &knowing(3)).await.unwrap(), [3], "the newer binary migrates on");
}

#[tokio::test]
async fn without_migrating_an_unreachable_database_is_not_a_refusal() {
    // Nothing listens on port 1.
    let pool = crate::connect("postgres://postgres@127.0.0.1:1/cohort", &Default::default()).unwrap();
    assert!(at_start(&pool, &CONFIG, false).await.unwrap().is_empty());
    assert!(at_start(&pool, &CONFIG, true).await.is_err(), "migrating needs the database");
}
