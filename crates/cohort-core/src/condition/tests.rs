//! Lenient semantic versions.

use super::parse_semver_lenient as p;

#[test]
fn lenient_versions() {
    assert_eq!(p("1.2.3").unwrap().to_string(), "1.2.3");
    assert_eq!(p("v1.2").unwrap().to_string(), "1.2.0");
    assert_eq!(p("V7").unwrap().to_string(), "7.0.0");
    assert_eq!(p("2.0-rc.1").unwrap().to_string(), "2.0.0-rc.1");
    assert_eq!(p(" 3.1.4 ").unwrap().to_string(), "3.1.4");
    assert!(p("").is_none());
    assert!(p("1.2.3.4").is_none());
    assert!(p("latest").is_none());
}
