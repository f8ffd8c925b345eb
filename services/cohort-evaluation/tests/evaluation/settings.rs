//! Bad settings of the `cohort-evaluation` binary: each kind exits 64 with one line on stderr naming the
//! setting, before anything is bound or connected, without a panic.

use cohort_dev::testing::{Binary, Case, HUGE_DURATION as HUGE};

const BINARY: Binary = Binary(env!("CARGO_BIN_EXE_cohort-evaluation"));

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
        (&["--request-timeout", HUGE], &[], "--request-timeout"),
        (&[], &[("COHORT_IDLE_TIMEOUT", HUGE)], "--idle-timeout"),
        (&["--init-timeout", "1m"], &[], "--init-timeout"),
        // An address.
        (&["--http-addr", "nowhere"], &[], "--http-addr"),
        // Numbers: unparsable, then out of range.
        (&["--max-keys", "lots"], &[], "--max-keys"),
        (&["--max-environments", "0"], &[], "--max-environments"),
        // An enum.
        (&["--log-format", "xml"], &[], "--log-format"),
        // URLs.
        (&["--config-endpoint", "ftp://config:50051"], &[], "--config-endpoint"),
        (&["--events-endpoint", "http://[bad"], &[], "--events-endpoint"),
        (&["--no-such-flag"], &[], "--no-such-flag"),
    ];
    BINARY.assert_usage_errors(cases);
}
