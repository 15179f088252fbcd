//! `repair-drain-timeout` (CKE's `op/repair_drain_timeout.go`): backs off an entry whose drain took
//! longer than `eviction_timeout_seconds`, or whose queue was disabled while it drained.

use super::*;

/// The operator for entry `index` of the machine at `address`.
pub fn operator(index: i64, address: &str) -> Box<dyn Operator> {
    single(
        "repair-drain-timeout",
        address,
        DrainTimeout {
            index,
            address: address.into(),
        },
    )
}

/// Backs the entry off.
pub struct DrainTimeout {
    /// The entry's index.
    pub index: i64,
    /// The machine's address.
    pub address: String,
}

#[async_trait::async_trait]
impl super::super::Commander for DrainTimeout {
    fn command(&self) -> RecordCommand {
        record(
            "repair-drain-timeout",
            &self.address,
            format!("back off repair entry {}", self.index),
        )
    }

    async fn run(&self, infra: &Infra) -> Result<Outcome, CommandError> {
        back_off(infra, &self.command(), self.index, "drain timed out").await?;
        Ok(Outcome::Done)
    }
}
