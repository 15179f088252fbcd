//! Node access and host commands for one term of leadership: every shell command on a node is sent,
//! and every command on cke's own host started, only while the leader's lease deadline
//! ([`LeaseDeadline`]) has not passed. The controller checks the deadline before each command it
//! records; [`GuardedNodes`] checks it again before each of the SSH commands a command is made of (a
//! container replaced is a removal and a run), so that a leader paused in the middle of one
//! (SIGSTOP, a frozen VM) sends nothing more once it wakes past its lease. [`GuardedCommands`]
//! checks it before a host command starts and ends the command at the deadline if it is still
//! running then (its process group killed, [`crate::infra::host_command`]): a reboot or repair
//! command never outlives the lease, and its result is never used once the deadline has passed.
//! It does not decide anything else and holds no connection or process of its own.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::agent::{AgentError, Output, Runner};
use super::host_command::{HostCommandError, HostCommands};
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

/// [`HostCommands`] that run only while `deadline` holds: a command is not started once it has
/// passed, and one still running when it passes is ended there (dropped, which kills its process
/// group) and reported as [`HostCommandError::LeaseExpired`], whatever it would have printed. A
/// deadline moved forward while the command runs (keep-alive answers) is followed.
pub struct GuardedCommands {
    inner: Arc<dyn HostCommands>,
    deadline: LeaseDeadline,
}

impl GuardedCommands {
    /// Wraps `inner` for the term whose lease lasts until `deadline`.
    pub fn new(inner: Arc<dyn HostCommands>, deadline: LeaseDeadline) -> Self {
        GuardedCommands { inner, deadline }
    }

    fn expired(&self, argv: &[String], running: bool) -> HostCommandError {
        let command = argv.join(" ");
        tracing::warn!(
            command,
            running,
            "leadership lease deadline passed: host command {}",
            if running {
                "killed, its result not used"
            } else {
                "not started"
            }
        );
        HostCommandError::LeaseExpired { command, running }
    }
}

#[async_trait]
impl HostCommands for GuardedCommands {
    async fn run(&self, argv: &[String], timeout: Option<Duration>) -> Result<String, HostCommandError> {
        if self.deadline.is_past() {
            return Err(self.expired(argv, false));
        }
        // Boxed by `async_trait`: dropping it below drops the command itself.
        let mut run = self.inner.run(argv, timeout);
        loop {
            let Some(at) = self.deadline.at() else {
                return run.await;
            };
            tokio::select! {
                // A command that ended as the process woke past the deadline is not believed either.
                biased;
                r = &mut run => {
                    return if self.deadline.is_past() { Err(self.expired(argv, true)) } else { r };
                }
                _ = tokio::time::sleep_until(at) => {
                    if self.deadline.is_past() {
                        break;
                    }
                }
            }
        }
        // Dropping the command kills its process group at once.
        drop(run);
        Err(self.expired(argv, true))
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

#[cfg(test)]
mod host_command_tests {
    //! [`GuardedCommands`] over the fake, under paused time. The same with a real child process
    //! (its process group killed at the deadline) is in [`crate::infra::host_command`]'s tests.

    use super::*;
    use crate::infra::fake::Fake;
    use crate::infra::host_command::run_with_retries;
    use tokio::time::Instant;

    fn argv(s: &str) -> Vec<String> {
        s.split(' ').map(str::to_string).collect()
    }

    fn guarded(fake: &Fake, secs: u64) -> (GuardedCommands, LeaseDeadline) {
        let deadline = LeaseDeadline::until(Instant::now() + Duration::from_secs(secs));
        (GuardedCommands::new(Arc::new(fake.clone()), deadline.clone()), deadline)
    }

    #[tokio::test(start_paused = true)]
    async fn a_command_outliving_the_deadline_ends_there_and_its_answer_is_not_used() {
        let fake = Fake::new();
        fake.on_host_command("repair", Ok("true\n"));
        fake.host_command_takes("repair", Duration::from_secs(60));
        let (commands, _) = guarded(&fake, 5);
        let t0 = Instant::now();
        let e = commands
            .run(&argv("repair 10.0.0.1"), Some(Duration::from_secs(30)))
            .await
            .unwrap_err();
        assert_eq!(t0.elapsed(), Duration::from_secs(5), "ended at the deadline");
        assert!(
            matches!(&e, HostCommandError::LeaseExpired { command, running: true } if command == "repair 10.0.0.1"),
            "{e:?}"
        );
        let text = e.to_string();
        assert!(
            text.starts_with("repair 10.0.0.1: killed") && text.contains("leadership lease was lost while it ran"),
            "{text}"
        );
        assert_eq!(fake.take_log(), ["host: repair 10.0.0.1"]);
        // Once past, nothing starts.
        let e = commands.run(&argv("check 10.0.0.1"), None).await.unwrap_err();
        assert!(
            matches!(&e, HostCommandError::LeaseExpired { running: false, .. }),
            "{e:?}"
        );
        assert!(e.to_string().starts_with("check 10.0.0.1: not started"), "{e}");
        assert!(fake.take_log().is_empty(), "not started");
    }

    #[tokio::test(start_paused = true)]
    async fn a_command_finishing_before_the_deadline_is_unaffected() {
        let fake = Fake::new();
        fake.on_host_command("check", Ok("true\n"));
        fake.on_host_command("repair", Err("BMC unreachable"));
        fake.host_command_takes("10.0.0.1", Duration::from_secs(4));
        let (commands, _) = guarded(&fake, 10);
        assert_eq!(commands.run(&argv("check 10.0.0.2"), None).await.unwrap(), "true\n");
        // Its own failure and timeout are its own.
        let e = commands.run(&argv("repair 10.0.0.2"), None).await.unwrap_err();
        assert!(matches!(e, HostCommandError::Failed { .. }), "{e:?}");
        let e = commands
            .run(&argv("check 10.0.0.1"), Some(Duration::from_secs(1)))
            .await
            .unwrap_err();
        assert!(matches!(e, HostCommandError::TimedOut { .. }), "{e:?}");
        // From 1 s to 5 s, the deadline at 10 s.
        assert_eq!(commands.run(&argv("check 10.0.0.1"), None).await.unwrap(), "true\n");
        assert_eq!(fake.take_log().len(), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn a_deadline_moved_forward_while_the_command_runs_is_followed() {
        let fake = Fake::new();
        fake.on_host_command("reboot", Ok("done\n"));
        fake.host_command_takes("reboot", Duration::from_secs(8));
        let (commands, deadline) = guarded(&fake, 5);
        let keep_alive = deadline.clone();
        tokio::spawn(async move {
            // A keep-alive answer at 3 s moves the deadline to 10 s.
            tokio::time::sleep(Duration::from_secs(3)).await;
            keep_alive.extend_to(Instant::now() + Duration::from_secs(7));
        });
        assert_eq!(commands.run(&argv("reboot 10.0.0.1"), None).await.unwrap(), "done\n");
    }

    #[tokio::test(start_paused = true)]
    async fn a_command_done_when_the_deadline_is_found_passed_is_not_believed() {
        // As a process woken from a pause finds both: the command ended and the deadline passed.
        let fake = Fake::new();
        fake.on_host_command("check", Ok("true\n"));
        fake.host_command_takes("check", Duration::from_secs(5));
        let (commands, _) = guarded(&fake, 5);
        let e = commands.run(&argv("check 10.0.0.1"), None).await.unwrap_err();
        assert!(e.is_lease_expired(), "{e:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_command_ended_by_the_deadline_is_not_retried() {
        let fake = Fake::new();
        fake.host_command_takes("repair", Duration::from_secs(60));
        let (commands, _) = guarded(&fake, 5);
        let t0 = Instant::now();
        let e = run_with_retries(
            &commands,
            &argv("repair 10.0.0.1"),
            Some(Duration::from_secs(30)),
            3,
            Duration::from_secs(10),
        )
        .await
        .unwrap_err();
        assert!(e.is_lease_expired(), "{e:?}");
        assert_eq!(t0.elapsed(), Duration::from_secs(5), "no interval, no further attempt");
        assert_eq!(fake.take_log(), ["host: repair 10.0.0.1"]);
    }
}
