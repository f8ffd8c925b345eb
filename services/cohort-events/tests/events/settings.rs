//! Bad settings of the `cohort-events` binary: each kind exits 64 with one line on stderr naming the
//! setting, before anything is bound or connected, without a panic.

use cohort_dev::testing::{Binary, Case, HUGE_DURATION as HUGE};

const BINARY: Binary = Binary(env!("CARGO_BIN_EXE_cohort-events"));

/// A service key of the right shape.
const SERVICE_KEY: &str = "cohort_service_0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

#[test]
fn help_and_version_still_exit_0() {
    BINARY.assert_help_and_version();
}

#[test]
fn help_does_not_show_the_service_key() {
    let out = BINARY.run(&["--help"], &[("COHORT_SERVICE_KEY", SERVICE_KEY)]);
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("--service-key"), "{help}");
    assert!(!help.contains(SERVICE_KEY), "{help}");
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
        (&[], &[("COHORT_REQUEST_TIMEOUT", HUGE)], "--request-timeout"),
        (&["--fsync-window", "5 parsecs"], &[], "--fsync-window"),
        (&[], &[("COHORT_EVENTS_RETENTION", "forever")], "--retention"),
        // Shorter than the oldest event accepted (7 days).
        (&["--retention", "7d"], &[], "--retention"),
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
    BINARY.assert_usage_errors(cases);
}
