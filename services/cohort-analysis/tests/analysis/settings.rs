//! Bad settings of the `cohort-analysis` binary: each kind exits 64 with one line on stderr naming the
//! setting, before anything is bound or connected, without a panic.

use cohort_dev::testing::{Binary, Case, HUGE_DURATION as HUGE};

const BINARY: Binary = Binary(env!("CARGO_BIN_EXE_cohort-analysis"));

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
        (&["--interval", HUGE], &[], "--interval"),
        (&[], &[("COHORT_SHUTDOWN_GRACE", HUGE)], "--shutdown-grace"),
        (&["--interval", "10ms"], &[], "--interval"),
        // An address.
        (&["--grpc-addr", "nowhere"], &[], "--grpc-addr"),
        // Numbers: unparsable, then out of range.
        (&["--alpha", "lots"], &[], "--alpha"),
        (&["--alpha", "0.7"], &[], "--alpha"),
        // An enum.
        (&["--log-format", "xml"], &[], "--log-format"),
        // A URL (this exited 1 with a multi-line chain).
        (&["--database-url", "postgres://cohort@db:notaport/cohort"], &[], "--database-url"),
        (&["--no-such-flag"], &[], "--no-such-flag"),
        // A key of the wrong kind (or none) for the config service.
        (&["--service-key", "cohort_sdk_0123"], &[], "--service-key"),
    ];
    BINARY.assert_usage_errors(cases);
}
