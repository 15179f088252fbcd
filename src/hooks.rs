//! Test hooks, compiled only with the `test-hooks` feature (the test suites' builds, `make test`).
//! A release build has none of them: [`failpoint!`](crate::failpoint) expands to nothing and the
//! `--test-operator` flag does not exist.

use std::sync::atomic::{AtomicBool, Ordering};

/// Set once a `:stop` failpoint has paused the process: it pauses only once.
static PAUSED: AtomicBool = AtomicBool::new(false);

/// Acts when `CKE_FAILPOINT` names `name`: `NAME` aborts the process on the spot (as on a power
/// loss), so that tests can check that another leader finishes the work; `NAME:stop` sends the
/// process SIGSTOP (as a frozen VM), once, so that tests can let its lease expire and wake it with
/// SIGCONT.
pub fn failpoint(name: &str) {
    let Ok(value) = std::env::var("CKE_FAILPOINT") else {
        return;
    };
    let (point, action) = value.split_once(':').unwrap_or((value.as_str(), "abort"));
    if point != name {
        return;
    }
    match action {
        "stop" => {
            if PAUSED.swap(true, Ordering::SeqCst) {
                return;
            }
            tracing::error!(failpoint = name, "failpoint reached: pausing (SIGSTOP)");
            // kill(1) sends the signal before it exits; this thread stops before it returns from
            // waiting for it, and the whole process with it.
            let _ = std::process::Command::new("kill")
                .args(["-STOP", &std::process::id().to_string()])
                .status();
            tracing::warn!(failpoint = name, "woken up (SIGCONT)");
        }
        _ => {
            tracing::error!(failpoint = name, "failpoint reached: aborting");
            std::process::abort();
        }
    }
}
