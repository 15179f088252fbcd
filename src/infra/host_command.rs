//! Commands cke runs on its own host, the management server, where CKE runs them: the reboot
//! queue's `reboot_command` and `boot_check_command`, the repair queue's repair, health-check and
//! success commands. Each gets the node's address appended by its caller ([`with_args`]), as CKE
//! passes it, runs with no shell in between, and is bounded by its timeout.
//!
//! [`ProcessCommands`] starts each command as the leader of a new process group. At the timeout the
//! whole group is killed (SIGKILL), so no child it started (a `sleep` in a shell script, an `ssh` to
//! a BMC) outlives the deadline; dropping the future (cke shutting down, leadership lost) kills the
//! group too: that is how a command still running when the leader's lease deadline passes ends
//! ([`crate::infra::term_guard::GuardedCommands`], which the daemon wraps around it). Once the
//! command itself has exited, its output is read for at most [`PIPE_GRACE`] more: a child left in
//! the background that holds the output open cannot stall cke (CKE's `runCommand` would wait for
//! it), and such a child is the command's business, not killed.
//!
//! [`run_with_retries`] is CKE's retry loop (`command_retries`, `command_interval`). This module
//! knows nothing of queues; the fake is in [`crate::infra::fake`].

use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::io::AsyncReadExt;

/// How long the output of a command that has exited is still read (a background child may hold it).
pub const PIPE_GRACE: Duration = Duration::from_secs(1);
/// At most this much of each of stdout and stderr is kept.
pub const OUTPUT_LIMIT: usize = 1 << 20;

/// A host command failed.
#[derive(Debug, thiserror::Error)]
pub enum HostCommandError {
    /// The command line is empty (the declaration lacks the command).
    #[error("empty command")]
    Empty,
    /// The program could not be started.
    #[error("cannot start {command}")]
    Spawn {
        /// The command line.
        command: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// It exited unsuccessfully.
    #[error("{command} failed ({status}){}", stderr_part(stderr))]
    Failed {
        /// The command line.
        command: String,
        /// `exit status N` or `killed by signal N`.
        status: String,
        /// What it printed on stdout.
        stdout: String,
        /// What it printed on stderr.
        stderr: String,
    },
    /// It did not finish in time: its process group was killed.
    #[error(
        "{command} did not finish within {timeout:?}; its process group was killed{}",
        stderr_part(stderr)
    )]
    TimedOut {
        /// The command line.
        command: String,
        /// The limit.
        timeout: Duration,
        /// What it printed on stdout before.
        stdout: String,
        /// What it printed on stderr before.
        stderr: String,
    },
    /// The leader's lease deadline passed ([`crate::infra::term_guard::GuardedCommands`]): the
    /// command was not started, or, running, its process group was killed; what it did is not used.
    /// The term is over; the next leader decides again.
    #[error("{command}: {}", lease_part(*running))]
    LeaseExpired {
        /// The command line.
        command: String,
        /// It was running (and was killed); otherwise it never started.
        running: bool,
    },
}

impl HostCommandError {
    /// The leader's lease deadline passed: nothing may be concluded from the command.
    pub fn is_lease_expired(&self) -> bool {
        matches!(self, HostCommandError::LeaseExpired { .. })
    }
}

fn lease_part(running: bool) -> &'static str {
    if running {
        "killed with its process group, the leadership lease was lost while it ran (its deadline \
         passed); its result is not used"
    } else {
        "not started, the leadership lease was lost (its deadline had passed)"
    }
}

fn stderr_part(stderr: &str) -> String {
    let s = stderr.trim();
    if s.is_empty() {
        String::new()
    } else {
        format!(": {s}")
    }
}

/// Runs commands on cke's own host.
#[async_trait]
pub trait HostCommands: Send + Sync {
    /// Runs `argv` (program, then arguments) with at most `timeout` (`None`: no limit); its stdout
    /// when it exits with status 0.
    async fn run(&self, argv: &[String], timeout: Option<Duration>) -> Result<String, HostCommandError>;
}

/// A declared command with the arguments cke appends (the node's address, ...).
pub fn with_args(command: &[String], args: &[&str]) -> Vec<String> {
    command
        .iter()
        .cloned()
        .chain(args.iter().map(|a| a.to_string()))
        .collect()
}

/// A declared timeout in seconds as CKE reads it: unset is `default`, and 0 means no limit.
pub fn timeout_of(seconds: Option<i64>, default: i64) -> Option<Duration> {
    match seconds.unwrap_or(default) {
        s if s > 0 => Some(Duration::from_secs(s as u64)),
        _ => None,
    }
}

/// CKE's retry loop: `retries + 1` attempts, `interval` after each failed one (not after the last);
/// the last error when every attempt fails. A command ended by the lease deadline is not retried.
pub async fn run_with_retries(
    commands: &dyn HostCommands,
    argv: &[String],
    timeout: Option<Duration>,
    retries: u32,
    interval: Duration,
) -> Result<String, HostCommandError> {
    let mut attempt = 0;
    loop {
        match commands.run(argv, timeout).await {
            Ok(out) => return Ok(out),
            Err(e) if attempt >= retries || e.is_lease_expired() => return Err(e),
            Err(e) => {
                tracing::warn!(
                    command = argv.join(" "),
                    attempt,
                    error = crate::error::error_chain(&e),
                    "host command failed; retrying"
                );
                attempt += 1;
                if !interval.is_zero() {
                    tokio::time::sleep(interval).await;
                }
            }
        }
    }
}

/// The real runner: child processes of cke, each in its own process group.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessCommands;

/// Kills a process group when dropped, unless disarmed.
struct GroupGuard {
    pgid: Option<i32>,
}

impl GroupGuard {
    fn kill(&mut self) {
        if let Some(pgid) = self.pgid.take() {
            let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pgid), nix::sys::signal::Signal::SIGKILL);
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Reads a pipe to its end, keeping at most [`OUTPUT_LIMIT`] bytes.
async fn read_all(pipe: Option<impl tokio::io::AsyncRead + Unpin>) -> Vec<u8> {
    let mut out = Vec::new();
    let Some(mut pipe) = pipe else { return out };
    let mut buf = [0u8; 8192];
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => return out,
            Ok(n) => {
                let room = OUTPUT_LIMIT.saturating_sub(out.len());
                out.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
}

fn describe(status: std::process::ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit status {c}"),
        (None, Some(s)) => format!("killed by signal {s}"),
        _ => status.to_string(),
    }
}

#[async_trait]
impl HostCommands for ProcessCommands {
    async fn run(&self, argv: &[String], timeout: Option<Duration>) -> Result<String, HostCommandError> {
        let Some((program, args)) = argv.split_first() else {
            return Err(HostCommandError::Empty);
        };
        let command = argv.join(" ");
        let started = Instant::now();
        let mut child = tokio::process::Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| HostCommandError::Spawn {
                command: command.clone(),
                source,
            })?;
        // The child leads its own group: its id is the group's.
        let mut group = GroupGuard {
            pgid: child.id().map(|id| id as i32),
        };
        let stdout = tokio::spawn(read_all(child.stdout.take()));
        let stderr = tokio::spawn(read_all(child.stderr.take()));
        let waited = match timeout {
            Some(t) => tokio::time::timeout(t, child.wait()).await.ok(),
            None => Some(child.wait().await),
        };
        let status = match waited {
            Some(s) => {
                // Exited by itself: leave anything it left behind alone.
                group.pgid = None;
                Some(s)
            }
            None => {
                group.kill();
                let _ = child.wait().await;
                None
            }
        };
        let collect = |h: tokio::task::JoinHandle<Vec<u8>>| async move {
            let abort = h.abort_handle();
            match tokio::time::timeout(PIPE_GRACE, h).await {
                Ok(Ok(v)) => String::from_utf8_lossy(&v).into_owned(),
                _ => {
                    abort.abort();
                    String::new()
                }
            }
        };
        let (stdout, stderr) = futures::join!(collect(stdout), collect(stderr));
        let elapsed = started.elapsed();
        match status {
            None => {
                let timeout = timeout.unwrap_or_default();
                tracing::warn!(
                    command,
                    ?elapsed,
                    stdout,
                    stderr,
                    "host command timed out; process group killed"
                );
                Err(HostCommandError::TimedOut {
                    command,
                    timeout,
                    stdout,
                    stderr,
                })
            }
            Some(Err(source)) => Err(HostCommandError::Spawn { command, source }),
            Some(Ok(s)) if s.success() => {
                tracing::info!(command, ?elapsed, stdout, stderr, "host command succeeded");
                Ok(stdout)
            }
            Some(Ok(s)) => {
                let status = describe(s);
                tracing::warn!(command, ?elapsed, status, stdout, stderr, "host command failed");
                Err(HostCommandError::Failed {
                    command,
                    status,
                    stdout,
                    stderr,
                })
            }
        }
    }
}

/// For a daemon that runs no host commands (tests of the framework): every command fails.
pub struct NoHostCommands;

#[async_trait]
impl HostCommands for NoHostCommands {
    async fn run(&self, argv: &[String], _timeout: Option<Duration>) -> Result<String, HostCommandError> {
        Err(HostCommandError::Spawn {
            command: argv.join(" "),
            source: std::io::Error::other("host commands are not enabled"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Vec<String> {
        vec!["sh".into(), "-c".into(), script.into()]
    }

    /// Whether process `pid` is gone (or a zombie waiting to be reaped).
    fn gone(pid: i32) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => true,
            Ok(stat) => stat
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        }
    }

    /// Waits (up to 20 s: the machine may be loaded) until `pid` is gone.
    async fn wait_gone(pid: i32) -> bool {
        for _ in 0..200 {
            if gone(pid) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }

    async fn read_pid(path: &std::path::Path) -> i32 {
        for _ in 0..200 {
            if let Ok(s) = std::fs::read_to_string(path) {
                if let Ok(p) = s.trim().parse() {
                    return p;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no pid in {}", path.display());
    }

    #[tokio::test]
    async fn output_status_and_the_appended_arguments() {
        let c = ProcessCommands;
        let argv = with_args(&sh(r#"echo "$0 $1""#), &["10.0.0.1", "1700000000"]);
        assert_eq!(c.run(&argv, None).await.unwrap(), "10.0.0.1 1700000000\n");
        match c.run(&sh("echo out; echo oops >&2; exit 3"), None).await {
            Err(e @ HostCommandError::Failed { .. }) => {
                let text = e.to_string();
                assert!(text.contains("exit status 3") && text.contains("oops"), "{text}");
                let HostCommandError::Failed { stdout, .. } = e else {
                    unreachable!()
                };
                assert_eq!(stdout, "out\n");
            }
            other => panic!("{other:?}"),
        }
        let e = c.run(&["/nonexistent/reboot-node".into()], None).await.unwrap_err();
        assert!(matches!(e, HostCommandError::Spawn { .. }), "{e:?}");
        assert!(e.to_string().contains("/nonexistent/reboot-node"));
        assert!(matches!(c.run(&[], None).await, Err(HostCommandError::Empty)));
    }

    #[tokio::test]
    async fn at_the_timeout_the_whole_process_group_is_killed() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("child.pid");
        // A child in the background and the shell itself both sleep far past the timeout.
        let script = format!("sleep 300 & echo $! > {}; echo started; sleep 300", pidfile.display());
        let t0 = Instant::now();
        let e = ProcessCommands
            .run(&sh(&script), Some(Duration::from_secs(1)))
            .await
            .unwrap_err();
        let elapsed = t0.elapsed();
        match &e {
            HostCommandError::TimedOut { stdout, timeout, .. } => {
                assert_eq!(stdout, "started\n");
                assert_eq!(*timeout, Duration::from_secs(1));
            }
            other => panic!("{other:?}"),
        }
        assert!(e.to_string().contains("did not finish within 1s"), "{e}");
        // Not the 300 s of the script (a loaded machine is allowed its slowness).
        assert!(elapsed < Duration::from_secs(60), "returned after {elapsed:?}");
        let child = read_pid(&pidfile).await;
        assert!(
            wait_gone(child).await,
            "the background child {child} survived the timeout"
        );
    }

    /// The live (not zombie) processes of process group `pgid`.
    fn group_members(pgid: i32) -> Vec<i32> {
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return vec![];
        };
        dir.flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .filter(|pid| {
                let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                    return false;
                };
                // After the command name: state, ppid, pgrp.
                let fields: Vec<&str> = stat
                    .rsplit_once(')')
                    .map_or(vec![], |(_, r)| r.split_whitespace().collect());
                fields.len() > 2 && fields[0] != "Z" && fields[2] == pgid.to_string()
            })
            .collect()
    }

    #[tokio::test]
    async fn at_the_lease_deadline_the_whole_process_group_is_killed_and_its_output_not_used() {
        use crate::infra::term_guard::GuardedCommands;
        use crate::storage::LeaseDeadline;
        let dir = tempfile::tempdir().unwrap();
        let (bg, leader) = (dir.path().join("bg.pid"), dir.path().join("leader.pid"));
        // It answers at once, then lingers with a child far past the deadline; the group leader's
        // pid (its group's id) is written last, once the child runs.
        let script = format!(
            "echo true; sleep 300 & echo $! > {}; echo $$ > {}; sleep 300",
            bg.display(),
            leader.display()
        );
        let deadline = LeaseDeadline::until(tokio::time::Instant::now() + Duration::from_secs(3));
        let commands = GuardedCommands::new(std::sync::Arc::new(ProcessCommands), deadline.clone());
        let argv = sh(&script);
        let t0 = Instant::now();
        let (result, pgid) = tokio::join!(commands.run(&argv, Some(Duration::from_secs(600))), read_pid(&leader));
        let elapsed = t0.elapsed();
        let e = result.expect_err("a command past the lease deadline gives no output");
        match &e {
            HostCommandError::LeaseExpired { command, running } => {
                assert_eq!(*command, argv.join(" "));
                assert!(running);
            }
            other => panic!("{other:?}"),
        }
        let text = e.to_string();
        assert!(
            text.starts_with(&format!("{}: killed with its process group", argv.join(" "))),
            "{text}"
        );
        assert!(text.contains("leadership lease was lost"), "{text}");
        assert!(deadline.is_past(), "not before the deadline");
        // Not the 300 s of the script nor its 600 s timeout (a loaded machine is allowed its slowness).
        assert!(elapsed < Duration::from_secs(60), "returned after {elapsed:?}");
        let child = read_pid(&bg).await;
        assert!(
            wait_gone(child).await,
            "the background child {child} survived the lease"
        );
        assert!(wait_gone(pgid).await, "the command {pgid} survived the lease");
        assert_eq!(group_members(pgid), Vec::<i32>::new(), "its process group is gone");
    }

    #[tokio::test]
    async fn a_command_done_before_the_lease_deadline_is_unaffected() {
        use crate::infra::term_guard::GuardedCommands;
        use crate::storage::LeaseDeadline;
        let deadline = LeaseDeadline::until(tokio::time::Instant::now() + Duration::from_secs(600));
        let commands = GuardedCommands::new(std::sync::Arc::new(ProcessCommands), deadline);
        let argv = with_args(&sh(r#"sleep 1; echo "$0""#), &["10.0.0.1"]);
        assert_eq!(
            commands.run(&argv, Some(Duration::from_secs(60))).await.unwrap(),
            "10.0.0.1\n"
        );
        let e = commands.run(&sh("echo oops >&2; exit 3"), None).await.unwrap_err();
        assert!(matches!(e, HostCommandError::Failed { .. }), "{e:?}");
        let e = commands
            .run(&sh("sleep 300"), Some(Duration::from_secs(1)))
            .await
            .unwrap_err();
        assert!(matches!(e, HostCommandError::TimedOut { .. }), "its own timeout: {e:?}");
    }

    #[tokio::test]
    async fn dropping_the_run_kills_the_group() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("child.pid");
        let script = format!("sleep 300 & echo $! > {}; sleep 300", pidfile.display());
        let argv = sh(&script);
        let run = ProcessCommands.run(&argv, None);
        let child = tokio::select! {
            _ = run => panic!("the command ended"),
            pid = read_pid(&pidfile) => pid,
        };
        // `run` was dropped by the select.
        assert!(
            wait_gone(child).await,
            "the child {child} survived the abandoned command"
        );
    }

    #[tokio::test]
    async fn a_background_child_holding_the_output_does_not_stall_a_finished_command() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("child.pid");
        let script = format!("sleep 300 & echo $! > {}; echo done", pidfile.display());
        let t0 = Instant::now();
        let out = ProcessCommands.run(&sh(&script), None).await;
        let child = read_pid(&pidfile).await;
        assert!(t0.elapsed() < Duration::from_secs(60));
        // The command's own output may be lost with the held pipe, but it succeeded.
        assert!(out.is_ok(), "{out:?}");
        // Left alone, as the command's business; clean up.
        assert!(!gone(child));
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(child), nix::sys::signal::Signal::SIGKILL);
    }

    #[tokio::test]
    async fn retries_as_cke() {
        let dir = tempfile::tempdir().unwrap();
        let count = dir.path().join("count");
        let failing = sh(&format!("echo x >> {}; exit 1", count.display()));
        let attempts = || std::fs::read_to_string(&count).unwrap_or_default().lines().count();
        let e = run_with_retries(&ProcessCommands, &failing, None, 2, Duration::ZERO).await;
        assert!(matches!(e, Err(HostCommandError::Failed { .. })));
        assert_eq!(attempts(), 3, "command_retries 2: three attempts");
        std::fs::remove_file(&count).unwrap();
        // Succeeds on the second attempt.
        let flaky = sh(&format!(
            "echo x >> {c}; [ $(wc -l < {c}) -ge 2 ] && echo ok",
            c = count.display()
        ));
        let out = run_with_retries(&ProcessCommands, &flaky, None, 5, Duration::from_millis(10)).await;
        assert_eq!(out.unwrap(), "ok\n");
        assert_eq!(attempts(), 2);
    }

    /// Fails until the `n`th call, recording when each call came (paused time).
    struct Flaky(std::sync::Mutex<Vec<tokio::time::Instant>>, usize);

    #[async_trait]
    impl HostCommands for Flaky {
        async fn run(&self, argv: &[String], _timeout: Option<Duration>) -> Result<String, HostCommandError> {
            let mut calls = self.0.lock().unwrap();
            calls.push(tokio::time::Instant::now());
            if calls.len() >= self.1 {
                return Ok("true".into());
            }
            Err(HostCommandError::Failed {
                command: argv.join(" "),
                status: "exit status 1".into(),
                stdout: String::new(),
                stderr: String::new(),
            })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_interval_separates_attempts_and_none_follows_the_last() {
        let flaky = Flaky(Default::default(), 3);
        let t0 = tokio::time::Instant::now();
        let out = run_with_retries(&flaky, &["x".into()], None, 5, Duration::from_secs(30)).await;
        assert_eq!(out.unwrap(), "true");
        let at: Vec<u64> = flaky.0.lock().unwrap().iter().map(|t| (*t - t0).as_secs()).collect();
        assert_eq!(at, [0, 30, 60]);
        let never = Flaky(Default::default(), usize::MAX);
        let t0 = tokio::time::Instant::now();
        assert!(
            run_with_retries(&never, &["x".into()], None, 1, Duration::from_secs(30))
                .await
                .is_err()
        );
        assert_eq!(never.0.lock().unwrap().len(), 2);
        assert_eq!(
            (tokio::time::Instant::now() - t0).as_secs(),
            30,
            "no wait after the last attempt"
        );
    }

    #[test]
    fn timeouts_as_cke_reads_them() {
        assert_eq!(timeout_of(None, 0), None);
        assert_eq!(timeout_of(Some(0), 30), None);
        assert_eq!(timeout_of(None, 30), Some(Duration::from_secs(30)));
        assert_eq!(timeout_of(Some(5), 30), Some(Duration::from_secs(5)));
    }
}
