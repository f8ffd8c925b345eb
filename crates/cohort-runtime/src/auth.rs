//! The one reading of an `authorization` header: `Bearer <credential>`.

/// The credential of `Bearer <credential>`. The scheme is case-insensitive (RFC 9110
/// §11.1), surrounding white space is ignored; `None` for any other scheme or an empty
/// credential.
pub fn bearer(authorization: &str) -> Option<&str> {
    let value = authorization.trim();
    let (scheme, credential) = value.split_once([' ', '\t'])?;
    let credential = credential.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !credential.is_empty()).then_some(credential)
}

#[cfg(test)]
mod tests {
    use super::bearer;

    #[test]
    fn the_scheme_is_case_insensitive() {
        for header in ["Bearer k", "bearer k", "BEARER k", "  Bearer   k  ", "bEaReR\tk"] {
            assert_eq!(bearer(header), Some("k"), "{header:?}");
        }
    }

    #[test]
    fn other_schemes_and_empty_credentials_are_refused() {
        for header in ["", "Bearer", "Bearer   ", "Basic k", "Bearerk", "k"] {
            assert_eq!(bearer(header), None, "{header:?}");
        }
    }
}
