//! The change feed of [`Storage::watch`](super::Storage::watch): its events, its stream type, and
//! the contract both implementations keep.
//!
//! A watch delivers every put and delete under a key prefix, in revision order, starting at the
//! revision asked for. It never ends silently: its last item is an error saying why it ended —
//! [`StorageError::Compacted`] when the history it needs is gone, [`StorageError::WatchBroken`]
//! when the connection broke or the server cancelled it (with the revision to resume from) — and
//! after that item the stream ends. The caller decides whether to make the watch again. Dropping
//! the stream cancels the watch. This module holds no state and does no I/O.

use futures::stream::BoxStream;

use super::StorageError;

/// One change seen by a watch. Keys are relative to the storage prefix, as everywhere in
/// [`Storage`](super::Storage).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    /// A key was created or updated.
    Put {
        /// The key.
        key: String,
        /// Its new value.
        value: Vec<u8>,
        /// The key's create revision (equal to `revision` when the put created it).
        create_revision: i64,
        /// The revision of this change (the key's new mod revision).
        revision: i64,
    },
    /// A key was deleted.
    Delete {
        /// The key.
        key: String,
        /// The revision of the deletion.
        revision: i64,
    },
}

impl WatchEvent {
    /// The key that changed.
    pub fn key(&self) -> &str {
        match self {
            WatchEvent::Put { key, .. } | WatchEvent::Delete { key, .. } => key,
        }
    }

    /// The revision of the change. Writes of one transaction share a revision.
    pub fn revision(&self) -> i64 {
        match self {
            WatchEvent::Put { revision, .. } | WatchEvent::Delete { revision, .. } => *revision,
        }
    }
}

/// The stream a watch returns: events in revision order, then possibly one error item (see the
/// module documentation), then the end.
pub type WatchStream = BoxStream<'static, Result<WatchEvent, StorageError>>;
