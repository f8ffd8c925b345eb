//! Bad settings of the `cohort-events` binary: each kind exits 64 with one line on stderr naming the
//! setting, before anything is bound or connected, without a panic.

use std::net::TcpListener;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A duration whose seconds overflow `Duration`.
const HUGE: &str = "99999999999999999999s";
/// A service key of the right shape.
const SERVICE_KEY: &str = "cohort_service_0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// Runs the binary with `args` and `env` (and no other `COHORT_*` variable), killed after 30 s.
fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cohort-events"));
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
fn help_does_not_show_the_service_key() {
    let out = run(&["--help"], &[("COHORT_SERVICE_KEY", SERVICE_KEY)]);
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("--service-key"), "{help}");
    assert!(!help.contains(SERVICE_KEY), "{help}");
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
        (&[], &[("COHORT_REQUEST_TIMEOUT", HUGE)], "--request-timeout"),
        (&["--fsync-window", "5 parsecs"], &[], "--fsync-window"),
        // An address.
        (&["--grpc-addr", "nowhere"], &[], "--grpc-addr"),
        // Numbers and sizes: unparsable, then out of range.
        (&["--drain-batch-size", "lots"], &[], "--drain-batch-size"),
        (&["--drain-batch-size", "0"], &[], "--drain-batch-size"),
        (&["--spool-max-bytes", "2 parsecs"], &[], "--spool-max-bytes"),
        // An enum.
        (&["--log-format", "xml"], &[], "--log-format"),
        // A URL (this exited 1 with a multi-line chain).
        (&["--database-url", "postgres://cohort@db:notaport/cohort"], &[], "--database-url"),
        // A path that cannot be a directory.
        (&["--spool-dir", "/dev/null"], &[], "--spool-dir"),
        (&["--no-such-flag"], &[], "--no-such-flag"),
        // A key of the wrong kind (or none) for the config service, then its address.
        (&["--service-key", "cohort_sdk_0123"], &[], "--service-key"),
        (&[], &[], "--service-key"),
        (&["--config-endpoint", "config:50051"], &[("COHORT_SERVICE_KEY", SERVICE_KEY)], "--config-endpoint"),
    ];
    for (args, env, setting) in cases {
        assert_usage_error(args, env, setting);
    }
}
