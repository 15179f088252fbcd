//! Test-only operators, enabled by the hidden `cke --test-operator SPEC` flag so that the daemon's
//! framework (records, fencing, failover, shutdown) can be tested end to end without nodes:
//!
//! - `write:PATH`: three commands, each appending a line to PATH on the management server;
//! - `block:SECONDS`: one command that sleeps (a long-running command to kill the leader during);
//! - `fail`: one command that fails.
//!
//! Built only with the `test-hooks` feature (the tests' builds); a release build has none of them.

use std::time::Duration;

use async_trait::async_trait;

use super::{CommandError, Commander, Infra, Operator, Outcome};
use crate::error::Retry;
use crate::model::RecordCommand;

/// A parsed `--test-operator` spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TestOperatorSpec {
    /// Append lines to a file.
    Write(String),
    /// Sleep this long.
    Block(Duration),
    /// Fail.
    Fail,
}

impl std::str::FromStr for TestOperatorSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once(':') {
            Some(("write", path)) if !path.is_empty() => Ok(TestOperatorSpec::Write(path.to_string())),
            Some(("block", secs)) => secs
                .parse::<u64>()
                .map(|s| TestOperatorSpec::Block(Duration::from_secs(s)))
                .map_err(|e| format!("block: {e}")),
            None if s == "fail" => Ok(TestOperatorSpec::Fail),
            _ => Err(format!("{s:?}: expected write:PATH, block:SECONDS or fail")),
        }
    }
}

impl TestOperatorSpec {
    /// A fresh operator for this spec.
    pub fn operator(&self) -> Box<dyn Operator> {
        Box::new(TestOperator {
            spec: self.clone(),
            step: 0,
        })
    }
}

struct TestOperator {
    spec: TestOperatorSpec,
    step: usize,
}

impl Operator for TestOperator {
    fn name(&self) -> &'static str {
        match self.spec {
            TestOperatorSpec::Write(_) => "test-write",
            TestOperatorSpec::Block(_) => "test-block",
            TestOperatorSpec::Fail => "test-fail",
        }
    }

    fn targets(&self) -> Vec<String> {
        match &self.spec {
            TestOperatorSpec::Write(p) => vec![p.clone()],
            _ => vec![],
        }
    }

    fn next_command(&mut self) -> Option<Box<dyn Commander>> {
        self.step += 1;
        let steps = if matches!(self.spec, TestOperatorSpec::Write(_)) {
            3
        } else {
            1
        };
        (self.step <= steps).then(|| {
            Box::new(TestCommand {
                spec: self.spec.clone(),
                step: self.step,
            }) as Box<dyn Commander>
        })
    }
}

struct TestCommand {
    spec: TestOperatorSpec,
    step: usize,
}

#[async_trait]
impl Commander for TestCommand {
    fn command(&self) -> RecordCommand {
        let (name, target) = match &self.spec {
            TestOperatorSpec::Write(p) => ("append-line", p.clone()),
            TestOperatorSpec::Block(d) => ("sleep", format!("{}s", d.as_secs())),
            TestOperatorSpec::Fail => ("fail", String::new()),
        };
        RecordCommand {
            name: name.into(),
            target,
            detail: format!("step {}", self.step),
        }
    }

    async fn run(&self, _infra: &Infra) -> Result<Outcome, CommandError> {
        match &self.spec {
            TestOperatorSpec::Write(path) => {
                use tokio::io::AsyncWriteExt;
                let mut f = tokio::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .await
                    .map_err(|e| CommandError::with_retry(&self.command(), Retry::Soon, e))?;
                f.write_all(format!("step {}\n", self.step).as_bytes())
                    .await
                    .map_err(|e| CommandError::with_retry(&self.command(), Retry::Soon, e))?;
                Ok(Outcome::Done)
            }
            TestOperatorSpec::Block(d) => {
                tokio::time::sleep(*d).await;
                Ok(Outcome::Done)
            }
            TestOperatorSpec::Fail => Err(CommandError::soon(&self.command(), "this test command always fails")),
        }
    }
}
