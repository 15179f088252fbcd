//! `ckecli reboot-queue` (alias `rq`): the reboot queue in the management etcd (CKE's
//! `pkg/ckecli/cmd/reboot_queue_*.go`, keys `reboots/...`). These commands only change the queue;
//! the leader processes it ([docs/reboot.md](../../docs/reboot.md)). `add` checks every address
//! against the declaration before anything is written, and enqueues them all at once.

use clap::Subcommand;

use super::{display_input, read_input, CliError, Ctx};
use crate::model::queue::{go_time_string, GO_ZERO_TIME};
use crate::model::{FieldError, RebootQueueEntry, RebootStatus, ValidationError};
use crate::storage::queue::{self, REBOOT_QUEUE};
use crate::storage::Storage;

/// `ckecli reboot-queue ...`
#[derive(Debug, Subcommand)]
pub enum RebootQueueCommand {
    /// Let cke process the queue.
    Enable,
    /// Stop cke processing the queue (entries stay; nodes being drained are uncordoned).
    Disable,
    /// Print `true` when the queue is processed, `false` when it is disabled.
    IsEnabled,
    /// Append the nodes of FILE (`-`: standard input): IP addresses of declared nodes, separated by
    /// white space or new lines. One bad address stores nothing.
    Add {
        /// The file, or `-`.
        file: String,
    },
    /// Print the entries, in queue order.
    List {
        /// Output format: json (CKE's entries) or simple (a table).
        #[arg(long, short, default_value = "json", value_parser = ["json", "simple"])]
        output: String,
    },
    /// Cancel the entry with this index (cke removes it at its next pass).
    Cancel {
        /// The entry's index (`list` shows it).
        index: String,
    },
    /// Cancel every entry.
    CancelAll,
    /// Forget every entry's drain back-off, so that drains are tried again at once.
    ResetBackoff,
}

/// Runs a `reboot-queue` command.
pub async fn run(ctx: &Ctx, cmd: RebootQueueCommand) -> Result<(), CliError> {
    let q = &REBOOT_QUEUE;
    match cmd {
        RebootQueueCommand::Enable => Ok(queue::set_enabled(ctx.storage().await?, q, true).await?),
        RebootQueueCommand::Disable => Ok(queue::set_enabled(ctx.storage().await?, q, false).await?),
        RebootQueueCommand::IsEnabled => {
            println!("{}", queue::is_enabled(ctx.storage().await?, q).await?);
            Ok(())
        }
        RebootQueueCommand::Add { file } => {
            let text = read_input(&file)?;
            let storage = ctx.storage().await?;
            let Some(cluster) = storage.get_cluster().await? else {
                return Err(CliError::NotFound(
                    "no cluster is declared: the addresses cannot be checked (ckecli cluster set FILE)".into(),
                ));
            };
            let addresses = parse_addresses(&text, &cluster).map_err(|problems| CliError::Invalid {
                what: display_input(&file),
                problems,
            })?;
            let mut entries: Vec<RebootQueueEntry> = addresses.iter().map(|a| RebootQueueEntry::new(a)).collect();
            queue::enqueue(storage, q, &mut entries).await?;
            Ok(())
        }
        RebootQueueCommand::List { output } => {
            let entries: Vec<RebootQueueEntry> = queue::entries(ctx.storage().await?, q).await?;
            if output == "simple" {
                print!("{}", simple_table(&entries));
                Ok(())
            } else {
                println!("{}", json_4_spaces(&entries));
                Ok(())
            }
        }
        RebootQueueCommand::Cancel { index } => {
            let i: i64 = index.trim().parse().map_err(|_| CliError::Invalid {
                what: "INDEX".into(),
                problems: ValidationError::single("INDEX", format!("{index:?} is not a number")),
            })?;
            let storage = ctx.storage().await?;
            let cancelled = cancel(storage, i).await?;
            if cancelled.is_none() {
                return Err(CliError::NotFound(format!("the reboot queue has no entry {i}")));
            }
            Ok(())
        }
        RebootQueueCommand::CancelAll => {
            let storage = ctx.storage().await?;
            for e in queue::entries::<RebootQueueEntry>(storage, q).await? {
                // An entry that finished meanwhile is gone: nothing to cancel.
                cancel(storage, e.index).await?;
            }
            Ok(())
        }
        RebootQueueCommand::ResetBackoff => {
            let storage = ctx.storage().await?;
            for e in queue::entries::<RebootQueueEntry>(storage, q).await? {
                queue::update(storage, q, e.index, None, |e: &mut RebootQueueEntry| {
                    let changed = e.drain_backoff_count != 0 || e.drain_backoff_expire.is_some();
                    e.drain_backoff_count = 0;
                    e.drain_backoff_expire = None;
                    changed
                })
                .await?;
            }
            Ok(())
        }
    }
}

/// Marks entry `index` cancelled; `None` when it is not in the queue.
async fn cancel(storage: &dyn Storage, index: i64) -> Result<Option<RebootQueueEntry>, CliError> {
    Ok(
        queue::update(storage, &REBOOT_QUEUE, index, None, |e: &mut RebootQueueEntry| {
            let changed = e.status != RebootStatus::Cancelled;
            e.status = RebootStatus::Cancelled;
            changed
        })
        .await?,
    )
}

/// The addresses of `text` (separated by white space, as CKE reads them), each the address of a
/// declared node; every bad one is reported with its line.
pub fn parse_addresses(text: &str, cluster: &crate::model::Cluster) -> Result<Vec<String>, ValidationError> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for (n, line) in text.lines().enumerate() {
        for word in line.split_whitespace() {
            let path = format!("line {}", n + 1);
            if cluster.node(word).is_some() {
                out.push(word.to_string());
            } else if word.parse::<std::net::IpAddr>().is_err() {
                errors.push(FieldError::new(path, format!("{word:?} is not an IP address")));
            } else {
                errors.push(FieldError::new(
                    path,
                    format!("{word} is not the address of a declared node"),
                ));
            }
        }
    }
    ValidationError::from_errors(errors)?;
    if out.is_empty() {
        return Err(ValidationError::single("", "no node address"));
    }
    Ok(out)
}

/// The entries as CKE's `list` prints them (the reboot and the repair queue): a JSON array indented
/// by four spaces (`[]` when empty).
pub fn json_4_spaces<T: serde::Serialize>(entries: &[T]) -> String {
    let mut buf = Vec::new();
    let mut ser =
        serde_json::Serializer::with_formatter(&mut buf, serde_json::ser::PrettyFormatter::with_indent(b"    "));
    serde::Serialize::serialize(entries, &mut ser).expect("entries serialize");
    String::from_utf8(buf).expect("JSON is UTF-8")
}

/// The entries as `list -o simple` prints them: CKE's columns, aligned.
pub fn simple_table(entries: &[RebootQueueEntry]) -> String {
    let time = |t: &Option<chrono::DateTime<chrono::Utc>>| t.as_ref().map_or(GO_ZERO_TIME.to_string(), go_time_string);
    let mut rows = vec![[
        "Index".to_string(),
        "Node".into(),
        "Status".into(),
        "LastTransitionTime".into(),
        "DrainBackOffCount".into(),
        "DrainBackOffExpire".into(),
    ]];
    for e in entries {
        rows.push([
            e.index.to_string(),
            e.node.clone(),
            e.status.to_string(),
            time(&e.last_transition_time),
            e.drain_backoff_count.to_string(),
            time(&e.drain_backoff_expire),
        ]);
    }
    let widths: Vec<usize> = (0..6)
        .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in &rows {
        let cells: Vec<String> = r.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        out.push_str(cells.join(" ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster() -> crate::model::Cluster {
        crate::model::Cluster::new(
            "t",
            "10.96.0.0/16",
            vec![
                crate::model::Node::new("10.0.0.1", "core", true),
                crate::model::Node::new("10.0.0.4", "core", false),
                crate::model::Node::new("fd00::5", "core", false),
            ],
        )
    }

    #[test]
    fn addresses_are_words_of_declared_nodes() {
        let got = parse_addresses("10.0.0.4\n  10.0.0.1 fd00::5\n\n10.0.0.4\n", &cluster()).unwrap();
        assert_eq!(got, ["10.0.0.4", "10.0.0.1", "fd00::5", "10.0.0.4"]);
        let e = parse_addresses("10.0.0.4\nnode5\n\n10.0.0.9 10.0.0.1\n", &cluster()).unwrap_err();
        let text = e.to_string();
        assert!(
            e.has_path("line 2") && text.contains("\"node5\" is not an IP address"),
            "{text}"
        );
        assert!(
            e.has_path("line 4") && text.contains("10.0.0.9 is not the address of a declared node"),
            "{text}"
        );
        assert_eq!(e.errors.len(), 2);
    }

    #[test]
    fn list_formats() {
        let mut e = RebootQueueEntry::new("10.0.0.4");
        e.index = 7;
        assert_eq!(json_4_spaces::<RebootQueueEntry>(&[]), "[]");
        assert_eq!(
            json_4_spaces(std::slice::from_ref(&e)),
            "[\n    {\n        \"index\": \"7\",\n        \"node\": \"10.0.0.4\",\n        \"status\": \"queued\",\n        \"last_transition_time\": \"0001-01-01T00:00:00Z\",\n        \"drain_backoff_expire\": \"0001-01-01T00:00:00Z\"\n    }\n]"
        );
        assert_eq!(
            simple_table(&[e]),
            "Index Node     Status LastTransitionTime   DrainBackOffCount DrainBackOffExpire\n\
             7     10.0.0.4 queued 0001-01-01T00:00:00Z 0                 0001-01-01T00:00:00Z\n"
        );
    }
}
