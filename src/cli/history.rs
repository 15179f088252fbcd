//! `ckecli history [-n N] [-f]`: operation records, newest first; `-f` follows new and updated ones.

use clap::Args;
use etcd_client::{EventType, GetOptions, WatchOptions};

use super::{print_json, CliError, Ctx};
use crate::model::Record;
use crate::storage::{decode, Storage, KEY_RECORDS_PREFIX};

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
    // The revision before the read: following starts right after it, so no change between the read
    // and the watch is missed (one made meanwhile may be printed twice).
    let mut client = storage.client();
    let revision = storage
        .request(client.get(
            storage.full_key(KEY_RECORDS_PREFIX),
            Some(GetOptions::new().with_count_only()),
        ))
        .await?
        .header()
        .map_or(0, |h| h.revision());
    let records = storage.get_records(args.count).await?;
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
    let prefix = storage.full_key(KEY_RECORDS_PREFIX);
    let mut stream = storage
        .request(client.watch(
            prefix.clone(),
            Some(WatchOptions::new().with_prefix().with_start_revision(revision + 1)),
        ))
        .await?;
    loop {
        let resp = match stream.message().await {
            Ok(Some(r)) => r,
            Ok(None) => return Err(anyhow::anyhow!("watch on {prefix} ended").into()),
            Err(e) => {
                return Err(anyhow::Error::new(e)
                    .context(format!("watch on {prefix} failed"))
                    .into())
            }
        };
        for ev in resp.events() {
            if ev.event_type() != EventType::Put {
                continue;
            }
            if let Some(kv) = ev.kv() {
                let key = String::from_utf8_lossy(kv.key()).into_owned();
                let r: Record = decode(&key, kv.value())?;
                print_json(&r)?;
            }
        }
    }
}
