//! Errors on one line, for logs and for the messages people read.

/// An error and its sources on one line (`outer: inner: root`): most errors' own text stops
/// at their layer ("db error", "transport error") and the cause is in the chain. A layer that
/// already ends with its source's text is not repeated.
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let part = e.to_string();
        if !text.ends_with(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = e.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::chain;

    #[derive(Debug, thiserror::Error)]
    enum Outer {
        #[error("database")]
        Query(#[source] std::io::Error),
        #[error("pool: {0}")]
        Pool(#[source] std::io::Error),
    }

    #[test]
    fn the_chain_names_every_cause_once() {
        let root = || std::io::Error::other("value out of range: overflow");
        assert_eq!(chain(&Outer::Query(root())), "database: value out of range: overflow");
        assert_eq!(chain(&Outer::Pool(root())), "pool: value out of range: overflow");
    }
}
