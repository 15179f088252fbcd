//! Node access for one term of leadership: every shell command on a node is sent only while the
//! leader's lease deadline ([`LeaseDeadline`]) has not passed. The controller checks the deadline
//! before each command it records; this wrapper checks it again before each of the SSH commands a
//! command is made of (a container replaced is a removal and a run), so that a leader paused in the
//! middle of one (SIGSTOP, a frozen VM) sends nothing more once it wakes past its lease. It does not
//! decide anything else and holds no connection of its own.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::agent::{AgentError, Output, Runner};
use super::NodeAccess;
use crate::storage::LeaseDeadline;

/// [`NodeAccess`] whose runners refuse to send commands once `deadline` has passed.
pub struct GuardedNodes {
    inner: Arc<dyn NodeAccess>,
    deadline: LeaseDeadline,
}

impl GuardedNodes {
    /// Wraps `inner` for the term whose lease lasts until `deadline`.
    pub fn new(inner: Arc<dyn NodeAccess>, deadline: LeaseDeadline) -> Self {
        GuardedNodes { inner, deadline }
    }
}

impl NodeAccess for GuardedNodes {
    fn node(&self, address: &str, user: &str) -> Arc<dyn Runner> {
        Arc::new(GuardedRunner {
            inner: self.inner.node(address, user),
            deadline: self.deadline.clone(),
        })
    }
}

struct GuardedRunner {
    inner: Arc<dyn Runner>,
    deadline: LeaseDeadline,
}

#[async_trait]
impl Runner for GuardedRunner {
    fn address(&self) -> &str {
        self.inner.address()
    }

    async fn run(&self, command: &str, stdin: Option<&[u8]>, timeout: Duration) -> Result<Output, AgentError> {
        self.allowed(command)?;
        self.inner.run(command, stdin, timeout).await
    }

    async fn write_file(&self, path: &str, content: &[u8], mode: u32, owner: Option<&str>) -> Result<(), AgentError> {
        self.allowed(&format!("write {path}"))?;
        self.inner.write_file(path, content, mode, owner).await
    }
}

impl GuardedRunner {
    fn allowed(&self, command: &str) -> Result<(), AgentError> {
        if !self.deadline.is_past() {
            return Ok(());
        }
        tracing::warn!(
            address = self.inner.address(),
            "leadership lease deadline passed: command not sent"
        );
        Err(AgentError::LeaseExpired {
            address: self.inner.address().into(),
            command: command.into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::infra::fake::Fake;

    #[tokio::test(start_paused = true)]
    async fn commands_stop_at_the_deadline() {
        let fake = Fake::new();
        let deadline = LeaseDeadline::until(tokio::time::Instant::now() + Duration::from_secs(5));
        let nodes = GuardedNodes::new(Arc::new(fake.clone()), deadline);
        let n = nodes.node("10.0.0.1", "root");
        n.run("echo before", None, Duration::from_secs(1)).await.unwrap();
        n.write_file("/etc/a", b"x", 0o600, None).await.unwrap();
        tokio::time::advance(Duration::from_secs(5)).await;
        let e = n.run("echo after", None, Duration::from_secs(1)).await.unwrap_err();
        assert!(matches!(e, AgentError::LeaseExpired { .. }), "{e}");
        let e = n.write_file("/etc/b", b"x", 0o600, None).await.unwrap_err();
        assert!(matches!(e, AgentError::LeaseExpired { .. }), "{e}");
        assert_eq!(fake.take_log(), ["10.0.0.1: sh echo before", "10.0.0.1: write /etc/a"]);
    }
}
