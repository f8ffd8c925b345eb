//! The notifications replicas exchange: changes and revocations.

use uuid::Uuid;

use super::{Notice, parse_payload};

#[test]
fn notifications_are_changes_or_revocations() {
    let id = Uuid::new_v4();
    assert_eq!(parse_payload(&format!("{id}:7")), Some(Notice::Change(id, 7)));
    assert_eq!(parse_payload(&format!("revoked:{id}")), Some(Notice::Revoked(id)));
    for bad in ["", "revoked:", "revoked:nope", &format!("{id}:x"), "x:1"] {
        assert_eq!(parse_payload(bad), None, "{bad}");
    }
}
