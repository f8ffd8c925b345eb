//! Settings parsing and validation.

use clap::Parser;

use std::time::Duration;

use super::{Settings, parse_bytes, parse_retention};

/// A service key of the right shape (the config service is what knows whether it is valid).
const SERVICE_KEY: &str = "cohort_service_0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// The settings from `args`, after a valid `--service-key` (which has no default).
fn parse(args: &[&str]) -> Settings {
    let mut all = vec!["cohort-events", "--service-key", SERVICE_KEY];
    all.extend_from_slice(args);
    Settings::try_parse_from(all).expect("settings parse")
}

#[test]
fn sizes_parse_with_binary_and_decimal_units() {
    assert_eq!(parse_bytes("4096"), Ok(4096));
    assert_eq!(parse_bytes("64KiB"), Ok(64 * 1024));
    assert_eq!(parse_bytes("64MiB"), Ok(64 << 20));
    assert_eq!(parse_bytes("2GiB"), Ok(2 << 30));
    assert_eq!(parse_bytes("5MB"), Ok(5_000_000));
    assert_eq!(parse_bytes("8KB"), Ok(8_000));
    assert_eq!(parse_bytes("8kB"), Ok(8_000));
    assert_eq!(parse_bytes("3GB"), Ok(3_000_000_000));
    assert_eq!(parse_bytes("512B"), Ok(512));
    assert_eq!(parse_bytes("1TiB"), Ok(1 << 40));
    assert_eq!(parse_bytes(" 64MiB "), Ok(64 << 20));
    assert_eq!(parse_bytes("64 MiB"), Ok(64 << 20));
    assert_eq!(parse_bytes("1.5GiB"), Ok(3 << 29));
    assert!(parse_bytes("").is_err());
    assert!(parse_bytes("-5MiB").is_err());
    assert!(parse_bytes("18446744073709551615").is_err());
    assert!(parse_bytes("lots").is_err());
    assert!(parse_bytes("5 parsecs").is_err());
    assert!(parse_bytes("99999999999TiB").is_err());
}

#[test]
fn defaults_are_valid() {
    let s = parse(&[]);
    assert_eq!(s.grpc_addr.port(), 50053);
    assert_eq!(s.http_addr.port(), 8083);
    assert_eq!(s.config_endpoint, "http://127.0.0.1:50051");
    s.validate().unwrap();
}

#[test]
fn the_service_key_and_the_config_endpoint_are_checked_last() {
    let none = Settings::try_parse_from(["cohort-events"]).unwrap();
    assert!(none.validate().unwrap_err().starts_with("--service-key"));
    let sdk = "cohort_sdk_0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    let s = Settings::try_parse_from(["cohort-events", "--service-key", sdk]).unwrap();
    assert!(s.validate().unwrap_err().starts_with("--service-key"));
    // Another bad setting is named first.
    let s = Settings::try_parse_from(["cohort-events", "--drain-batch-size", "0"]).unwrap();
    assert!(s.validate().unwrap_err().starts_with("--drain-batch-size"));
    for endpoint in ["127.0.0.1:50051", "grpc://config:50051", "http://config service:50051", "http://"] {
        let s = parse(&["--config-endpoint", endpoint]);
        assert!(s.validate().unwrap_err().starts_with("--config-endpoint"), "{endpoint}");
    }
    parse(&["--config-endpoint", "https://config.cohort.svc:50051"]).validate().unwrap();
}

#[test]
fn inconsistent_settings_are_refused_with_the_flag_named() {
    let s = parse(&["--spool-max-bytes", "64MiB", "--spool-segment-bytes", "64MiB"]);
    assert!(s.validate().unwrap_err().starts_with("--spool-max-bytes"));
    let s = parse(&["--spool-segment-bytes", "1KiB"]);
    assert!(s.validate().unwrap_err().starts_with("--spool-segment-bytes"));
    let s = parse(&["--rate-limit-burst", "10"]);
    assert!(s.validate().unwrap_err().starts_with("--rate-limit-burst"));
    let s = parse(&["--rate-limit-burst", "10", "--rate-limit-per-environment", "0"]);
    s.validate().unwrap();
    let s = parse(&["--fsync-window", "1s"]);
    assert!(s.validate().unwrap_err().starts_with("--fsync-window"));
    let s = parse(&["--drain-batch-size", "0"]);
    assert!(s.validate().unwrap_err().starts_with("--drain-batch-size"));
}

#[test]
fn the_verified_key_record_age_the_spool_dir_and_the_database_url_are_checked() {
    assert_eq!(parse(&[]).verified_key_max_age, std::time::Duration::from_secs(24 * 3600));
    let s = parse(&["--verified-key-max-age", "500ms"]);
    assert!(s.validate().unwrap_err().starts_with("--verified-key-max-age"));
    let s = parse(&["--spool-dir", "/dev/null"]);
    assert!(s.validate().unwrap_err().starts_with("--spool-dir"));
    let s = parse(&["--database-url", "postgres://cohort@db:notaport/cohort"]);
    assert!(s.validate().unwrap_err().starts_with("--database-url"));
}

#[test]
fn retention_is_days_a_duration_or_off() {
    const DAY: u64 = 86_400;
    assert_eq!(parse(&[]).retention, Duration::from_secs(90 * DAY));
    assert_eq!(parse(&[]).retention_interval, Duration::from_secs(3600));
    assert_eq!(parse_retention("30d"), Ok(Duration::from_secs(30 * DAY)));
    assert_eq!(parse_retention("240h"), Ok(Duration::from_secs(10 * DAY)));
    assert_eq!(parse_retention("off"), Ok(Duration::ZERO));
    assert_eq!(parse_retention("OFF"), Ok(Duration::ZERO));
    assert_eq!(parse_retention("0"), Ok(Duration::ZERO));
    assert!(parse_retention("366d").is_err());
    assert!(parse_retention("1.5d").is_err());
    assert!(parse_retention("forever").is_err());
    parse(&["--retention", "off"]).validate().unwrap();
    parse(&["--retention", "8d"]).validate().unwrap();
    // Events up to 7 days old are accepted: they must not be dropped as they arrive.
    let s = parse(&["--retention", "7d"]);
    assert!(s.validate().unwrap_err().starts_with("--retention"));
    let s = parse(&["--retention-interval", "0s"]);
    assert!(s.validate().unwrap_err().starts_with("--retention-interval"));
}
