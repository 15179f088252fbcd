//! Test hooks, compiled only with the `test-hooks` feature (the test suites' builds, `make test`).
//! A release build has none of them: [`failpoint!`](crate::failpoint) expands to nothing and the
//! `--test-operator` flag does not exist.

/// Aborts the process on the spot (as on a power loss) when `CKE_FAILPOINT` names `name`, so that
/// tests can check that another leader finishes the work.
pub fn failpoint(name: &str) {
    if std::env::var("CKE_FAILPOINT").is_ok_and(|v| v == name) {
        tracing::error!(failpoint = name, "failpoint reached: aborting");
        std::process::abort();
    }
}
