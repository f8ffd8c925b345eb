//! Key parsing and hashing.

use super::*;

#[test]
fn bearer_takes_the_key_and_refuses_the_rest() {
    assert_eq!(bearer(Some("Bearer cohort_sdk_abc")).unwrap(), "cohort_sdk_abc");
    assert_eq!(bearer(Some("bearer  k ")).unwrap(), "k");
    assert_eq!(bearer(Some("BEARER\tk")).unwrap(), "k", "the scheme in any case");
    for bad in [None, Some(""), Some("Bearer "), Some("Basic abc"), Some("Bearer a b")] {
        assert!(matches!(bearer(bad), Err(ServiceError::Unauthenticated(_))), "{bad:?}");
    }
    let long = format!("Bearer {}", "k".repeat(MAX_KEY_BYTES + 1));
    assert!(bearer(Some(&long)).is_err());
}

#[test]
fn key_ids_are_stable_and_do_not_show_the_key() {
    let a = KeyId::of("cohort_sdk_secret");
    assert_eq!(a, KeyId::of("cohort_sdk_secret"));
    assert_ne!(a, KeyId::of("cohort_sdk_secreT"));
    assert_eq!(a.short().len(), 8);
    assert!(!format!("{a:?}").contains("secret"));
    assert!(a.shard() < SHARDS);
}
