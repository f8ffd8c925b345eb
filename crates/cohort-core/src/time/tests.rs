//! RFC 3339 parsing against known Unix times.

use super::parse_rfc3339_millis as p;

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
