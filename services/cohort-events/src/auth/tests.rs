//! Bearer parsing (the cache itself is exercised against a config service in the integration
//! tests).

use super::{AuthError, bearer};

#[test]
fn bearer_tokens_are_extracted_and_anything_else_is_missing() {
    assert_eq!(bearer(Some("Bearer abc")), Ok("abc"));
    assert_eq!(bearer(Some("bearer  abc ")), Ok("abc"));
    assert_eq!(bearer(None), Err(AuthError::Missing));
    assert_eq!(bearer(Some("Basic abc")), Err(AuthError::Missing));
    assert_eq!(bearer(Some("Bearer ")), Err(AuthError::Missing));
    assert_eq!(bearer(Some("abc")), Err(AuthError::Missing));
}
