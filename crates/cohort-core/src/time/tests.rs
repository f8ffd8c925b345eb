//! The calendar against known days, and RFC 3339 parsing against known Unix times.

use std::time::{Duration, UNIX_EPOCH};

use super::{civil_from_days, day_of, days_from_civil, parse_rfc3339_millis as p, unix_ms};

#[test]
fn civil_dates_match_known_days() {
    assert_eq!(civil_from_days(0), (1970, 1, 1));
    assert_eq!(civil_from_days(-1), (1969, 12, 31));
    assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    assert_eq!(civil_from_days(19_782), (2024, 2, 29));
    assert_eq!(civil_from_days(20_454), (2026, 1, 1));
    assert_eq!(day_of(1_767_225_600_000), 20_454);
    assert_eq!(day_of(1_767_225_599_999), 20_453);
    assert_eq!(day_of(-1), -1);
}

#[test]
fn days_and_dates_round_trip() {
    for days in -800_000..800_000 {
        let (y, m, d) = civil_from_days(days);
        assert_eq!(days_from_civil(y, i64::from(m), i64::from(d)), days, "{y}-{m}-{d}");
    }
}

#[test]
fn unix_ms_counts_from_the_epoch_both_ways() {
    assert_eq!(unix_ms(UNIX_EPOCH), 0);
    assert_eq!(unix_ms(UNIX_EPOCH + Duration::from_millis(1_767_225_600_123)), 1_767_225_600_123);
    assert_eq!(unix_ms(UNIX_EPOCH - Duration::from_millis(1500)), -1500);
}

#[test]
fn known_instants() {
    assert_eq!(p("1970-01-01"), Some(0));
    assert_eq!(p("1970-01-01T00:00:00Z"), Some(0));
    assert_eq!(p("2000-03-01T00:00:00Z"), Some(951_868_800_000));
    assert_eq!(p("2024-02-29T12:30:15.250Z"), Some(1_709_209_815_250));
    assert_eq!(p("2024-02-29T14:30:15.25+02:00"), Some(1_709_209_815_250));
    assert_eq!(p("1969-12-31T23:59:59Z"), Some(-1000));
    assert_eq!(p("2026-11-22T01:00:00-05:30"), p("2026-11-22T06:30:00Z"));
}

#[test]
fn rejects_malformed() {
    for bad in [
        "",
        "2024-02-30",
        "2023-02-29",
        "2024-13-01",
        "2024-1-01",
        "2024-01-01T25:00:00Z",
        "2024-01-01T00:00:00",
        "2024-01-01T00:00:00.Z",
        "2024-01-01T00:00:00+0200",
        "not a date",
    ] {
        assert_eq!(p(bad), None, "{bad}");
    }
}
