//! Bad settings of the `cohort-config` binary: each kind exits 64 with one line on stderr naming the
//! setting, before anything is bound or connected, without a panic.

use std::time::{Duration, Instant};

use cohort_dev::testing::{Binary, Case, HUGE_DURATION as HUGE, free_addr, http};

const BINARY: Binary = Binary(env!("CARGO_BIN_EXE_cohort-config"));

#[test]
fn help_and_version_still_exit_0() {
    BINARY.assert_help_and_version();
}

#[test]
fn a_bad_setting_exits_before_binding() {
    BINARY.assert_settings_checked_before_binding();
}

#[test]
fn every_kind_of_bad_setting_exits_64_with_one_line_naming_it() {
    let cases: &[Case] = &[
        // Durations, from a flag or the environment (these panicked with exit 101).
        (&["--shutdown-grace", HUGE], &[], "--shutdown-grace"),
        (&[], &[("COHORT_POLL_INTERVAL", HUGE)], "--poll-interval"),
        (&["--heartbeat-interval", "10m"], &[], "--heartbeat-interval"),
        // An address.
        (&["--http-addr", "nowhere"], &[], "--http-addr"),
        // Numbers: unparsable, then out of range.
        (&["--http-max-age", "lots"], &[], "--http-max-age"),
        (&["--database-max-connections", "0"], &[], "--database-max-connections"),
        // An enum.
        (&["--log-format", "xml"], &[], "--log-format"),
        // A URL.
        (&["--database-url", "postgres://cohort@db:notaport/cohort"], &[], "--database-url"),
        (&["--replica-id", "not-a-uuid"], &[], "--replica-id"),
        (&["--no-such-flag"], &[], "--no-such-flag"),
    ];
    BINARY.assert_usage_errors(cases);
}

#[test]
fn subcommands_follow_the_same_rule() {
    let cases: &[(&[&str], &str)] = &[
        (&["--database-url", "postgres://cohort@db:notaport/cohort", "migrate"], "--database-url"),
        (&["migrate", "--shutdown-grace", "5s"], "--shutdown-grace"),
        (&["migrate", "--schema", "billing"], "--schema"),
        (&["bootstrap"], "--organization"),
        (&["bootstrap", "--organization", " "], "--organization"),
        (&["bootstrap", "--organization", "acme", "--environment", "Not A Key"], "--environment"),
        (&["--shutdown-grace", HUGE, "bootstrap", "--organization", "acme"], "--shutdown-grace"),
        (&["frobnicate"], "frobnicate"),
    ];
    for (args, setting) in cases {
        BINARY.assert_usage_error(args, &[], setting);
    }
    let out = BINARY.run(&["migrate", "--help"], &[]);
    assert_eq!(out.status.code(), Some(0));
}

#[tokio::test]
async fn migrate_applies_the_named_services_schema_only() {
    let db = cohort_db::testing::TestDb::empty().await;
    for schema in ["events", "config"] {
        let args =
            ["--database-url".to_owned(), db.url.clone(), "migrate".into(), "--schema".into(), schema.into()];
        let out = tokio::task::spawn_blocking(move || {
            BINARY.run(&args.iter().map(String::as_str).collect::<Vec<_>>(), &[])
        })
        .await
        .unwrap();
        assert!(out.status.success(), "{schema}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let client = db.pool.get().await.unwrap();
    let migrated: Vec<String> = client
        .query(
            "SELECT n.nspname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.relname = 'schema_migrations' ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(migrated, ["cohort_config", "cohort_events"]);
}

/// The skeleton's promise, seen from outside: a server of a running process whose listener dies
/// ends the process with a non-zero status and a line naming that server, rather than leaving
/// a process that looks alive.
#[tokio::test]
async fn a_process_whose_grpc_listener_dies_exits_non_zero() {
    let db = cohort_db::testing::TestDb::new().await;
    let (grpc, http_addr, admin) = (free_addr(), free_addr(), free_addr());
    let args = [
        "--database-url".to_owned(),
        db.url.clone(),
        "--grpc-addr".into(),
        grpc.to_string(),
        "--http-addr".into(),
        http_addr.to_string(),
        "--admin-addr".into(),
        admin.to_string(),
    ];
    let process = BINARY.spawn(&args.iter().map(String::as_str).collect::<Vec<_>>(), &[]);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        // Connecting first: `http::get` panics on a refused connection.
        let bound = tokio::net::TcpStream::connect(admin).await.is_ok();
        if bound && http::get(admin, "/readyz", &[]).await.status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "the service never became ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    process.break_listener(grpc);
    let out = tokio::task::spawn_blocking(move || process.wait(Duration::from_secs(30))).await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "exited {:?}: {stderr}", out.status);
    assert!(out.status.code().is_some(), "an exit, not a signal: {:?}", out.status);
    assert!(stderr.contains("gRPC"), "the dead server is named: {stderr}");
}

/// Not a setting, but refused the same way at start: a database migrated by a newer binary (a
/// rollback after an upgrade) stops the start with one line naming the schema and both
/// versions, migrating or not.
#[tokio::test]
async fn a_database_newer_than_the_binary_stops_the_start_with_one_line() {
    let db = cohort_db::testing::TestDb::new().await;
    let newest = cohort_db::migrate::CONFIG.newest();
    let future = db.migrated_past(&cohort_db::migrate::CONFIG).await;
    let expected = format!(
        "schema cohort_config: the database is at migration {future}, newer than this binary's newest, {newest}"
    );
    for migrate in [false, true] {
        let (grpc, web) = (free_addr().to_string(), free_addr().to_string());
        let mut args = vec!["--database-url", db.url.as_str(), "--grpc-addr", &grpc, "--http-addr", &web];
        if migrate {
            args.push("--migrate");
        }
        let args: Vec<String> = args.into_iter().map(String::from).collect();
        let output = tokio::task::spawn_blocking(move || {
            BINARY.run(&args.iter().map(String::as_str).collect::<Vec<_>>(), &[])
        })
        .await
        .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "migrate {migrate}: {stderr}");
        let lines: Vec<&str> = stderr.lines().filter(|l| l.contains("schema cohort_config")).collect();
        assert_eq!(lines.len(), 1, "one line: {stderr}");
        assert!(lines[0].starts_with(&format!("Error: {expected}")), "{stderr}");
    }
}
