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
/// A cause that its wrapper already printed (`#[error("...: {0}")]`) is not repeated.
pub fn error_report(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut last = s.clone();
    let mut src = e.source();
    while let Some(c) = src {
        let text = c.to_string();
        if !last.ends_with(&text) {
            s.push_str("\n  caused by: ");
            s.push_str(&text);
        }
        last = text;
        src = c.source();
    }
    s
}

/// Prints `program: error` and its causes on standard error: the one error printer of `cke`,
/// `ckecli` and `rivers`.
pub fn print_error(program: &str, e: &dyn std::error::Error) {
    eprintln!("{program}: {}", error_report(e));
}

/// The exit codes of the three binaries, by name. Every error type maps to one of these with an
/// exhaustive match (`CliError::exit_code`, `DaemonError::exit_code`, rivers' `main_impl`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    /// Done.
    Success,
    /// A runtime failure: a service unreachable, a command that failed.
    Failure,
    /// Invalid flags, config or input; nothing was changed.
    InvalidInput,
    /// `ckecli status`: no status has been published (CKE's code 4).
    NoStatus,
    /// A child process (`ckecli ssh`, `scp`) exited with this code; passed through.
    Child(u8),
}

impl ExitCode {
    /// The process exit status.
    pub fn code(self) -> u8 {
        match self {
            ExitCode::Success => 0,
            ExitCode::Failure => 1,
            ExitCode::InvalidInput => 2,
            ExitCode::NoStatus => 4,
            ExitCode::Child(c) => c,
        }
    }
}

impl From<ExitCode> for std::process::ExitCode {
    fn from(c: ExitCode) -> Self {
        std::process::ExitCode::from(c.code())
    }
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
        assert_eq!(error_report(&Wrapper(Inner)), "wrapper: inner");
        assert_eq!(
            [
                ExitCode::Success,
                ExitCode::Failure,
                ExitCode::InvalidInput,
                ExitCode::NoStatus,
                ExitCode::Child(7)
            ]
            .map(ExitCode::code),
            [0, 1, 2, 4, 7]
        );
    }
}
