//! Error helpers shared by every layer: printing an error with its whole chain of causes, and the
//! retry class of a failure. This module depends on nothing else in the crate, so any layer may use it.

/// An error and its causes on one line: `outer: cause: root cause`.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        let text = c.to_string();
        // A wrapper that prints its source (`#[error("...: {0}")]`) would repeat it; skip repeats.
        if !s.ends_with(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        src = c.source();
    }
    s
}

/// An error's causes, one per line after the first, as the binaries print them (`caused by: ...`).
pub fn error_report(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str("\n  caused by: ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

/// When a failed step is worth trying again.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Retry {
    /// A transient failure (a timeout, a node or member not answering yet): retry soon, backing off.
    Soon,
    /// Nothing will change until someone changes something (a missing CA, Vault not set up, a plan
    /// refused as unsafe): wait for a change of the declaration or the interval.
    AfterChange,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] Inner);

    #[derive(Debug, thiserror::Error)]
    #[error("inner")]
    struct Inner;

    #[derive(Debug, thiserror::Error)]
    #[error("wrapper: {0}")]
    struct Wrapper(#[source] Inner);

    #[test]
    fn chain_lists_every_cause_once() {
        assert_eq!(error_chain(&Outer(Inner)), "outer: inner");
        assert_eq!(error_chain(&Wrapper(Inner)), "wrapper: inner");
        assert_eq!(error_report(&Outer(Inner)), "outer\n  caused by: inner");
    }
}
