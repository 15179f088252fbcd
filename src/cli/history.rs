//! `ckecli history [-n N] [-f]`: operation records, newest first; `-f` follows new and updated ones.

use clap::Args;
use futures::StreamExt;

use super::{print_json, CliError, Ctx};
use crate::model::Record;
use crate::storage::{decode, Storage, WatchEvent, KEY_RECORDS_PREFIX};

/// Arguments of `ckecli history`.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Show at most N records (0 = all kept).
    #[arg(short = 'n', long = "count", default_value_t = 0)]
    pub count: i64,
    /// Keep running and print records as they are created or updated.
    #[arg(short = 'f', long = "follow")]
    pub follow: bool,
}

/// Runs `history`.
pub async fn run(ctx: &Ctx, args: HistoryArgs) -> Result<(), CliError> {
    if args.count < 0 {
        return Err(CliError::Usage("-n must not be negative".into()));
    }
    let storage = ctx.storage().await?;
    // The listing comes with the revision it was read at: following starts right after it, so no
    // change made after the listing is missed and none is printed twice.
    let (records, revision) = storage.get_records_with_revision(args.count).await?;
    if !args.follow {
        for r in &records {
            print_json(r)?;
        }
        return Ok(());
    }
    // Follow: print what exists oldest first, then every change, in order.
    for r in records.iter().rev() {
        print_json(r)?;
    }
    follow(storage, revision + 1, print_json).await
}

/// Hands every record put under `records/` from `start_revision` on to `print`, until the watch
/// fails (an error naming the prefix and the reason; there is no end otherwise).
async fn follow(
    storage: &dyn Storage,
    start_revision: i64,
    mut print: impl FnMut(&Record) -> Result<(), CliError>,
) -> Result<(), CliError> {
    let mut stream = storage.watch(KEY_RECORDS_PREFIX, start_revision).await?;
    while let Some(item) = stream.next().await {
        // Deletions (records pruned) are not shown.
        if let WatchEvent::Put { key, value, .. } = item? {
            let r: Record = decode(&storage.full_key(&key), &value)?;
            print(&r)?;
        }
    }
    Err(anyhow::anyhow!(
        "watch on {} ended without saying why",
        storage.full_key(KEY_RECORDS_PREFIX)
    )
    .into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{RecordCommand, RecordStatus};
    use crate::storage::{encode, MemStorage, StorageError};

    fn record(id: i64, status: RecordStatus) -> Record {
        Record {
            id,
            status,
            operation: format!("op-{id}"),
            targets: vec![],
            command: RecordCommand::default(),
            error: String::new(),
            leader: "host1".into(),
            start_at: chrono::Utc::now(),
            end_at: None,
            results: None,
        }
    }

    async fn write(s: &MemStorage, r: &Record) {
        let key = format!("{KEY_RECORDS_PREFIX}{}", Record::key_suffix(r.id));
        s.put_raw(&key, encode(r)).await.unwrap();
    }

    #[tokio::test]
    async fn follow_starts_right_after_the_listing_and_reports_a_broken_watch() {
        let s = std::sync::Arc::new(MemStorage::default());
        write(&s, &record(1, RecordStatus::Completed)).await;
        write(&s, &record(2, RecordStatus::Running)).await;
        let (listed, revision) = s.get_records_with_revision(0).await.unwrap();
        assert_eq!(listed.iter().map(|r| r.id).collect::<Vec<_>>(), [2, 1]);
        // Written after the listing but before the watch exists: must not be missed.
        write(&s, &record(3, RecordStatus::Running)).await;
        write(&s, &record(2, RecordStatus::Completed)).await;
        s.put_raw("status", b"{}".to_vec()).await.unwrap();
        s.delete_raw(&format!("{KEY_RECORDS_PREFIX}{}", Record::key_suffix(1)))
            .await
            .unwrap();

        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let follower = {
            let s = s.clone();
            tokio::spawn(async move {
                follow(&*s, revision + 1, |r| {
                    tx.send((r.id, r.status)).unwrap();
                    Ok(())
                })
                .await
            })
        };
        let mut seen = vec![];
        for _ in 0..2 {
            seen.push(rx.recv().await.unwrap());
        }
        assert_eq!(seen, [(3, RecordStatus::Running), (2, RecordStatus::Completed)]);
        write(&s, &record(4, RecordStatus::Running)).await;
        assert_eq!(rx.recv().await.unwrap(), (4, RecordStatus::Running));

        s.break_watches();
        let err = follower.await.unwrap().unwrap_err();
        assert!(
            matches!(err, CliError::Storage(StorageError::WatchBroken { .. })),
            "{err}"
        );
        assert!(err.to_string().contains("/cke/records/"), "{err}");
        assert!(rx.try_recv().is_err(), "nothing printed twice or after the break");
    }
}
