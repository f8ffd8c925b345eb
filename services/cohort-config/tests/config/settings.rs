//! Bad settings of the `cohort-config` binary: each kind exits 64 with one line on stderr naming the
//! setting, before anything is bound or connected, without a panic.

use std::net::TcpListener;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A duration whose seconds overflow `Duration`.
const HUGE: &str = "99999999999999999999s";

/// Runs the binary with `args` and `env` (and no other `COHORT_*` variable), killed after 30 s.
fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cohort-config"));
    for (name, _) in std::env::vars() {
        if name.starts_with("COHORT_") {
            command.env_remove(name);
        }
    }
    let mut child = command
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the binary");
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().expect("wait for the binary").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("binary output")
}

/// Flags, environment variables, and the setting the error must name.
type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);

fn assert_usage_error(args: &[&str], env: &[(&str, &str)], setting: &str) {
    let out = run(args, env);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{args:?} {env:?}: {stderr}");
    assert!(!stderr.contains("panicked"), "{args:?} {env:?}: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{args:?} {env:?}: not one line: {stderr}");
    assert!(lines[0].contains(setting), "{args:?} {env:?}: {setting} is not named: {stderr}");
}

#[test]
fn help_and_version_still_exit_0() {
    for flag in ["--help", "--version"] {
        let out = run(&[flag], &[]);
        assert_eq!(out.status.code(), Some(0), "{flag}");
        assert!(!out.stdout.is_empty(), "{flag}");
    }
}

#[test]
fn a_bad_setting_exits_before_binding() {
    // The address is taken: binding first would fail differently.
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    assert_usage_error(&["--grpc-addr", &addr, "--shutdown-grace", HUGE], &[], "--shutdown-grace");
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
    for (args, env, setting) in cases {
        assert_usage_error(args, env, setting);
    }
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
        assert_usage_error(args, &[], setting);
    }
    let out = run(&["migrate", "--help"], &[]);
    assert_eq!(out.status.code(), Some(0));
}

#[tokio::test]
async fn migrate_applies_the_named_services_schema_only() {
    let db = cohort_db::testing::TestDb::empty().await;
    for schema in ["events", "config"] {
        let args =
            ["--database-url".to_owned(), db.url.clone(), "migrate".into(), "--schema".into(), schema.into()];
        let out = tokio::task::spawn_blocking(move || {
            run(&args.iter().map(String::as_str).collect::<Vec<_>>(), &[])
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
