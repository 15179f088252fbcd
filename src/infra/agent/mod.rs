//! Reaching the nodes: an SSH connection pool with verified (pinned) host keys ([`ssh`]), the pins
//! themselves ([`hostkey`]), and a docker-compatible container engine driven over SSH
//! ([`container`]). Everything a node does for cke goes through [`Runner::run`].

pub mod container;
pub mod hostkey;
pub mod ssh;

use std::time::Duration;

use async_trait::async_trait;

/// Errors reaching or running things on a node.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// TCP or SSH connection failed (refused, timed out, reset).
    #[error("{address}: cannot connect: {reason}")]
    Connect {
        /// Node address.
        address: String,
        /// Why.
        reason: String,
    },
    /// The node presented a host key other than the pinned one (or none is pinned in strict mode).
    #[error("{address}: host key refused: {reason}")]
    HostKey {
        /// Node address.
        address: String,
        /// Pinned versus presented key.
        reason: String,
    },
    /// Authentication failed.
    #[error("{address}: SSH authentication as {user} failed")]
    Auth {
        /// Node address.
        address: String,
        /// SSH user.
        user: String,
    },
    /// No private key is available for the node.
    #[error("{address}: no SSH private key: {reason}")]
    NoKey {
        /// Node address.
        address: String,
        /// Why.
        reason: String,
    },
    /// The command did not finish in time.
    #[error("{address}: command timed out after {timeout:?}: {command}")]
    Timeout {
        /// Node address.
        address: String,
        /// The command.
        command: String,
        /// The limit.
        timeout: Duration,
    },
    /// The SSH session failed while running a command.
    #[error("{address}: SSH session failed: {reason}")]
    Session {
        /// Node address.
        address: String,
        /// Why.
        reason: String,
    },
    /// A command exited non-zero.
    #[error("{address}: `{command}` exited with {status}: {stderr}")]
    Failed {
        /// Node address.
        address: String,
        /// The command.
        command: String,
        /// Exit status.
        status: u32,
        /// Standard error (truncated).
        stderr: String,
    },
    /// The leader's lease deadline had passed (the process was paused, say): the command was not
    /// sent. The term is over; the next leader re-plans.
    #[error("{address}: not sent, the leadership lease may have expired: {command}")]
    LeaseExpired {
        /// Node address.
        address: String,
        /// The command.
        command: String,
    },
    /// Invalid input (a name that is not safe to put in a command, ...).
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// What was invalid.
        what: String,
        /// Why.
        reason: String,
    },
    /// A command's output could not be understood.
    #[error("{address}: unexpected output of {command}: {reason}")]
    Output {
        /// Node address.
        address: String,
        /// The command.
        command: String,
        /// Why.
        reason: String,
    },
}

/// What a command printed and how it ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Output {
    /// Standard output.
    pub stdout: Vec<u8>,
    /// Standard error.
    pub stderr: Vec<u8>,
    /// Exit status (255 when the remote side reported none).
    pub status: u32,
}

impl Output {
    /// Standard output as text.
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

/// Runs shell commands on one node.
#[async_trait]
pub trait Runner: Send + Sync {
    /// The node's address.
    fn address(&self) -> &str;

    /// Runs `command` (a shell command line) with optional standard input, within `timeout`.
    async fn run(&self, command: &str, stdin: Option<&[u8]>, timeout: Duration) -> Result<Output, AgentError>;

    /// Runs `command` and fails unless it exits 0.
    async fn check(&self, command: &str, stdin: Option<&[u8]>, timeout: Duration) -> Result<Output, AgentError> {
        let out = self.run(command, stdin, timeout).await?;
        if out.status != 0 {
            let stderr: String = String::from_utf8_lossy(&out.stderr).trim().chars().take(500).collect();
            return Err(AgentError::Failed {
                address: self.address().into(),
                command: command.into(),
                status: out.status,
                stderr,
            });
        }
        Ok(out)
    }

    /// Writes `content` to `path` atomically (a temporary file renamed into place) with `mode` and,
    /// when given, `owner` (`user[:group]`). Parent directories are created.
    async fn write_file(&self, path: &str, content: &[u8], mode: u32, owner: Option<&str>) -> Result<(), AgentError> {
        if !path.starts_with('/') || path.contains('\0') {
            return Err(AgentError::Invalid {
                what: "path".into(),
                reason: format!("{path:?} must be absolute"),
            });
        }
        let q = shell_quote(path);
        let chown = match owner {
            Some(o) => format!(" && chown {} \"$tmp\"", shell_quote(o)),
            None => String::new(),
        };
        // The size is checked before the rename: stdin cut short by a broken connection ends `cat`
        // as a normal end of file would, and a partial file must never replace the old one.
        let size = content.len();
        let script = format!(
            "set -e; umask 077; mkdir -p \"$(dirname {q})\"; tmp=$(mktemp {q}.XXXXXX); trap 'rm -f \"$tmp\"' EXIT; \
             cat > \"$tmp\"; [ \"$(wc -c < \"$tmp\")\" -eq {size} ] || {{ echo 'short write: the file is left as it was' >&2; exit 1; }}; \
             chmod {mode:o} \"$tmp\"{chown}; sync \"$tmp\" 2>/dev/null || true; mv -f \"$tmp\" {q}; trap - EXIT"
        );
        self.check(&script, Some(content), Duration::from_secs(60))
            .await
            .map(|_| ())
    }
}

/// Quotes a string for a POSIX shell.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,@+%".contains(c)) {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Quotes every word and joins them.
pub fn shell_join<S: AsRef<str>>(words: &[S]) -> String {
    words
        .iter()
        .map(|w| shell_quote(w.as_ref()))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("abc"), "abc");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote("$(rm -rf /)"), "'$(rm -rf /)'");
        assert_eq!(shell_join(&["echo", "a;b", "--x=1"]), "echo 'a;b' --x=1");
    }
}
