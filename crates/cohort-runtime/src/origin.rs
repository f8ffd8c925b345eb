//! Browser origins, as an environment lists the ones allowed to call the evaluation service
//! with its keys (CORS), and as browsers send them in the `Origin` header: a scheme, a host and
//! an optional port (`https://app.example.com`, `http://localhost:5173`,
//! `capacitor://localhost`), lowercase, no path. `*` allows any origin.
//!
//! A listed origin must be written the way browsers serialize it (RFC 6454 §6.1), so that
//! matching stays an exact comparison: an entry that could never match is refused when it is
//! stored, not silently ignored.

/// The most origins one environment may list.
pub const MAX_ORIGINS: usize = 100;
/// Longest accepted origin.
const MAX_LEN: usize = 512;

/// Checks a list of origins; the error names the entry (`cors_origins[2]`) and the reason.
/// Returns the list without duplicates, in the order given.
pub fn check_list(field: &str, origins: &[String]) -> Result<Vec<String>, (String, String)> {
    if origins.len() > MAX_ORIGINS {
        return Err((field.to_owned(), format!("at most {MAX_ORIGINS} origins")));
    }
    let mut out: Vec<String> = Vec::with_capacity(origins.len());
    for (i, origin) in origins.iter().enumerate() {
        check(origin).map_err(|why| (format!("{field}[{i}]"), why))?;
        if !out.contains(origin) {
            out.push(origin.clone());
        }
    }
    Ok(out)
}

/// Whether `origin` (an `Origin` header's value) is one of `allowed`.
pub fn allowed(allowed: &[String], origin: &str) -> bool {
    allowed.iter().any(|a| a == "*" || a == origin)
}

/// `*`, or `scheme://host[:port]` as a browser serializes it.
pub fn check(origin: &str) -> Result<(), String> {
    if origin == "*" {
        return Ok(());
    }
    if origin.len() > MAX_LEN {
        return Err(format!("longer than {MAX_LEN} characters"));
    }
    let example = "write it as scheme://host[:port], e.g. https://app.example.com";
    let (scheme, rest) = origin.split_once("://").ok_or_else(|| format!("no scheme; {example}"))?;
    let scheme_ok = scheme.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
        && scheme.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+-.".contains(&b));
    if !scheme_ok {
        return Err(format!("{scheme:?} is not a lowercase URL scheme; {example}"));
    }
    if rest.contains(['/', '?', '#']) {
        return Err(format!("an origin has no path, query or trailing slash; {example}"));
    }
    if rest.contains('@') {
        return Err("an origin has no user name or password".into());
    }
    let (host, port) = match rest.rsplit_once(':') {
        // An IPv6 address without a port has colons only inside its brackets.
        Some((host, port)) if !port.contains(']') => (host, Some(port)),
        _ => (rest, None),
    };
    let host_ok = if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        !inner.is_empty()
            && inner
                .bytes()
                .all(|b| (b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) || b == b':' || b == b'.')
    } else {
        !host.is_empty()
            && host.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
    };
    if !host_ok {
        return Err(format!("{host:?} is not a lowercase host name or address, as browsers send it"));
    }
    if let Some(port) = port {
        let number: u16 = port
            .parse()
            .ok()
            .filter(|p| *p > 0 && !port.starts_with('0'))
            .ok_or_else(|| format!("{port:?} is not a port (1 to 65535)"))?;
        let default = match scheme {
            "http" => Some(80),
            "https" => Some(443),
            _ => None,
        };
        if default == Some(number) {
            return Err(format!(
                "browsers leave out the default port {number} of {scheme}; leave it out too"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_as_browsers_send_them_are_accepted() {
        for ok in [
            "*",
            "https://app.example.com",
            "http://localhost:5173",
            "capacitor://localhost",
            "http://127.0.0.1:8080",
            "https://[::1]:8443",
            "https://[::1]",
        ] {
            assert_eq!(check(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn origins_that_could_never_match_are_refused_with_the_reason() {
        for (bad, why) in [
            ("app.example.com", "no scheme"),
            ("https://app.example.com/", "no path"),
            ("https://app.example.com/login", "no path"),
            ("https://App.example.com", "lowercase host"),
            ("HTTPS://app.example.com", "lowercase URL scheme"),
            ("https://app.example.com:443", "default port 443"),
            ("http://app.example.com:80", "default port 80"),
            ("https://app.example.com:0", "not a port"),
            ("https://app.example.com:99999", "not a port"),
            ("https://user@app.example.com", "user name"),
            ("https://", "host"),
            ("https://*.example.com", "host"),
        ] {
            let err = check(bad).expect_err(bad);
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn a_list_names_the_bad_entry_and_drops_duplicates() {
        let list = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            check_list("cors_origins", &list(&["https://a.example", "https://a.example", "*"])),
            Ok(list(&["https://a.example", "*"]))
        );
        let (field, _) = check_list("cors_origins", &list(&["https://a.example", "nope"])).unwrap_err();
        assert_eq!(field, "cors_origins[1]");
        let many = list(&vec!["https://a.example"; MAX_ORIGINS + 1]);
        assert_eq!(check_list("cors_origins", &many).unwrap_err().0, "cors_origins");
    }

    #[test]
    fn matching_is_exact_unless_any_origin_is_allowed() {
        let list = vec!["https://a.example".to_owned()];
        assert!(allowed(&list, "https://a.example"));
        assert!(!allowed(&list, "https://a.example.evil"));
        assert!(!allowed(&list, "http://a.example"));
        assert!(!allowed(&[], "https://a.example"));
        assert!(allowed(&["*".to_owned()], "https://anything.example"));
    }
}
