//! What CKE's queues (the reboot queue, the repair queue) have in common: each entry carries its
//! index, written as a JSON string (Go's `json:"index,string"`), and times as Go writes them, where
//! the zero time is `0001-01-01T00:00:00Z` rather than absent. Pure.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An entry of a queue stored under `<queue>/data/<16 hex digits of its index>`.
pub trait QueueEntry: Serialize + DeserializeOwned + Clone + Send + Sync {
    /// Its index (given at enqueue time).
    fn index(&self) -> i64;
    /// Sets its index.
    fn set_index(&mut self, index: i64);
}

/// Go's zero `time.Time` as JSON.
pub const GO_ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// A time in Go's encoding, seconds precision as CKE keeps them: `2024-01-02T03:04:05Z`.
pub fn go_time_string(t: &DateTime<Utc>) -> String {
    if t.timestamp_subsec_nanos() == 0 {
        t.to_rfc3339_opts(SecondsFormat::Secs, true)
    } else {
        t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
    }
}

/// `Option<DateTime<Utc>>` as Go writes a `time.Time`: `None` is the zero time, which reads back as
/// `None` (as do `null` and an absent field, with `#[serde(default)]`).
pub mod go_time {
    use super::*;

    /// Serializes `None` as [`GO_ZERO_TIME`].
    pub fn serialize<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.serialize_str(&go_time_string(t)),
            None => s.serialize_str(GO_ZERO_TIME),
        }
    }

    /// Reads an RFC 3339 time; the zero time (any time in year 1) and `null` are `None`.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
        let Some(text) = Option::<String>::deserialize(d)? else {
            return Ok(None);
        };
        let t = DateTime::parse_from_rfc3339(&text)
            .map_err(|e| serde::de::Error::custom(format!("{text:?} is not an RFC 3339 time: {e}")))?
            .with_timezone(&Utc);
        Ok((chrono::Datelike::year(&t) > 1).then_some(t))
    }
}

/// An `i64` as a JSON string (Go's `,string` option); a number reads too.
pub mod index_string {
    use super::*;

    /// Serializes as a decimal string.
    pub fn serialize<S: Serializer>(v: &i64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.to_string())
    }

    /// Reads a decimal string or a number.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Text(String),
            Number(i64),
        }
        match Either::deserialize(d)? {
            Either::Number(n) => Ok(n),
            Either::Text(t) => t
                .trim()
                .parse()
                .map_err(|_| serde::de::Error::custom(format!("index {t:?} is not a number"))),
        }
    }
}
