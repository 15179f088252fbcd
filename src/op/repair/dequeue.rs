//! `repair-dequeue` (CKE's `op/repair_dequeue.go`): removes an entry marked deleted from the queue,
//! with a write fenced on the leader's key.

use super::*;

/// The operator for entry `index` of the machine at `address`.
pub fn operator(index: i64, address: &str) -> Box<dyn Operator> {
    single(
        "repair-dequeue",
        address,
        Dequeue {
            index,
            address: address.into(),
        },
    )
}

/// Deletes `repairs/data/<index>`.
pub struct Dequeue {
    /// The entry's index.
    pub index: i64,
    /// The machine's address.
    pub address: String,
}

#[async_trait::async_trait]
impl super::super::Commander for Dequeue {
    fn command(&self) -> RecordCommand {
        record("repair-dequeue", &self.address, format!("repair entry {}", self.index))
    }

    async fn run(&self, infra: &Infra) -> Result<Outcome, CommandError> {
        let Some(fence) = &infra.fence else {
            return Err(CommandError::refused(
                &self.command(),
                "no leader fence to dequeue with",
            ));
        };
        crate::storage::repairs::dequeue(&*infra.storage, fence, self.index)
            .await
            .map_err(|e| CommandError::new(&self.command(), e))?;
        tracing::info!(index = self.index, address = self.address, "repair entry dequeued");
        Ok(Outcome::Done)
    }
}
