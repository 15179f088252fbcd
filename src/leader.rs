//! Leader election in the management etcd under `<prefix>leader/`, with an etcd lease kept alive by
//! its own task. A [`Term`] ends — and every fenced write of it fails — when the lease is lost, the
//! election key is deleted, or etcd stops answering keep-alives; the holder must stop acting at once.
//! Each term also keeps a [`LeaseDeadline`] by the local monotonic clock, moved forward by every
//! keep-alive answer, so that a holder paused past its lease (SIGSTOP, a frozen VM) knows it on waking
//! without asking etcd.

use std::time::Duration;

use etcd_client::{Client, EventType};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::storage::{Fence, LeaseDeadline};

/// Errors of the election (all "retry later": the caller campaigns again).
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    /// An etcd request failed.
    #[error("leader election: {what} failed")]
    Etcd {
        /// What was attempted.
        what: &'static str,
        /// The client error.
        #[source]
        source: etcd_client::Error,
    },
    /// The lease expired or keep-alives failed before the campaign was won.
    #[error("leader election: lease lost while campaigning")]
    LeaseLost,
}

/// Campaigns for leadership as `name` under `<prefix>leader`.
pub struct Elector {
    client: Client,
    election: String,
    name: String,
    ttl: Duration,
}

/// One term of leadership.
pub struct Term {
    /// The fence every write of this term is conditioned on.
    pub fence: Fence,
    lease: i64,
    client: Client,
    lost: watch::Receiver<bool>,
    deadline: LeaseDeadline,
    keeper: JoinHandle<()>,
    watcher: Option<JoinHandle<()>>,
}

impl Elector {
    /// An elector; `client` must have no request timeout (a campaign blocks until won).
    pub fn new(client: Client, prefix: &str, name: &str, ttl: Duration) -> Self {
        Elector {
            client,
            election: format!("{prefix}leader"),
            name: name.to_string(),
            ttl,
        }
    }

    /// Blocks until this instance leads. The lease is kept alive while campaigning; if it is lost
    /// the campaign fails with [`LeaderError::LeaseLost`] and the caller campaigns again.
    pub async fn campaign(&self) -> Result<Term, LeaderError> {
        let mut c = self.client.clone();
        let ttl_secs = self.ttl.as_secs().max(2) as i64;
        let asked = tokio::time::Instant::now();
        let lease = c
            .lease_grant(ttl_secs, None)
            .await
            .map_err(|e| LeaderError::Etcd {
                what: "lease grant",
                source: e,
            })?
            .id();
        let (lost_tx, lost_rx) = watch::channel(false);
        let deadline = LeaseDeadline::until(lease_end(asked, ttl_secs));
        let keeper = tokio::spawn(keep_alive(
            self.client.clone(),
            lease,
            self.ttl,
            lost_tx.clone(),
            deadline.clone(),
        ));
        let mut lost = lost_rx.clone();
        let campaign = c.campaign(self.election.clone(), self.name.clone(), lease);
        let resp = tokio::select! {
            r = campaign => r,
            _ = lost.wait_for(|l| *l) => {
                keeper.abort();
                return Err(LeaderError::LeaseLost);
            }
        };
        let resp = match resp {
            Ok(r) => r,
            Err(e) => {
                keeper.abort();
                let _ = c.lease_revoke(lease).await;
                return Err(LeaderError::Etcd {
                    what: "campaign",
                    source: e,
                });
            }
        };
        let Some(key) = resp.leader() else {
            keeper.abort();
            return Err(LeaderError::LeaseLost);
        };
        let fence = Fence {
            key: String::from_utf8_lossy(key.key()).into_owned(),
            create_revision: key.rev(),
        };
        let watcher = Some(tokio::spawn(watch_key(self.client.clone(), fence.key.clone(), lost_tx)));
        Ok(Term {
            fence,
            lease,
            client: self.client.clone(),
            lost: lost_rx,
            deadline,
            keeper,
            watcher,
        })
    }
}

impl Term {
    /// True once the term has ended.
    pub fn is_lost(&self) -> bool {
        *self.lost.borrow()
    }

    /// Resolves when the term ends.
    pub async fn lost(&self) {
        let mut rx = self.lost.clone();
        let _ = rx.wait_for(|l| *l).await;
    }

    /// Until when the lease surely lasts, by the local clock (moved forward by keep-alives).
    pub fn deadline(&self) -> LeaseDeadline {
        self.deadline.clone()
    }

    /// A receiver that turns `true` when the term ends.
    pub fn lost_signal(&self) -> watch::Receiver<bool> {
        self.lost.clone()
    }

    /// Gives up leadership now: revokes the lease, which deletes the election key, so another
    /// instance takes over at once instead of after the TTL.
    pub async fn resign(mut self) {
        self.stop_tasks();
        // Revoking the lease deletes the election key (the election API's resign would need the
        // key's lease and revision, and does nothing more).
        let mut c = self.client.clone();
        let _ = tokio::time::timeout(Duration::from_secs(2), c.lease_revoke(self.lease)).await;
    }

    fn stop_tasks(&mut self) {
        self.keeper.abort();
        if let Some(w) = self.watcher.take() {
            w.abort();
        }
    }
}

impl Drop for Term {
    fn drop(&mut self) {
        self.stop_tasks();
    }
}

/// When a lease of `ttl_secs` granted or renewed by a request sent at `asked` surely still lasts: etcd
/// counts the TTL from when it received the request, which is after `asked`; a margin of a sixth of
/// the TTL (at least 200 ms) covers clock-rate differences.
fn lease_end(asked: tokio::time::Instant, ttl_secs: i64) -> tokio::time::Instant {
    let ttl = Duration::from_secs(ttl_secs.max(0) as u64);
    asked + ttl - (ttl / 6).max(Duration::from_millis(200)).min(ttl)
}

/// Sends a keep-alive every third of the TTL; any failure, a late answer, or a deadline found passed
/// (the process was paused) ends the term, because past that point this instance can no longer be
/// sure it still holds the lease. Every answer moves `deadline` forward.
async fn keep_alive(client: Client, lease: i64, ttl: Duration, lost: watch::Sender<bool>, deadline: LeaseDeadline) {
    let period = (ttl / 3).max(Duration::from_millis(500));
    let mut c = client;
    let Ok((mut keeper, mut stream)) = c.lease_keep_alive(lease).await else {
        let _ = lost.send(true);
        return;
    };
    loop {
        if deadline.is_past() {
            break;
        }
        let asked = tokio::time::Instant::now();
        if keeper.keep_alive().await.is_err() {
            break;
        }
        match tokio::time::timeout(period, stream.message()).await {
            Ok(Ok(Some(resp))) if resp.ttl() > 0 => deadline.extend_to(lease_end(asked, resp.ttl())),
            _ => break,
        }
        tokio::time::sleep(period).await;
    }
    tracing::warn!(
        lease = format!("{lease:x}"),
        "lease keep-alive failed or its deadline passed; leadership is over"
    );
    let _ = lost.send(true);
}

/// Ends the term when the election key is deleted (e.g. by an operator) or the watch breaks.
async fn watch_key(client: Client, key: String, lost: watch::Sender<bool>) {
    let mut c = client;
    let Ok(mut stream) = c.watch(key.clone(), None).await else {
        let _ = lost.send(true);
        return;
    };
    while let Ok(Some(resp)) = stream.message().await {
        if resp.canceled() || resp.events().iter().any(|e| e.event_type() == EventType::Delete) {
            break;
        }
    }
    tracing::warn!(key, "election key deleted or watch broken; leadership is over");
    let _ = lost.send(true);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lease_ends_a_margin_before_its_ttl() {
        let t = tokio::time::Instant::now();
        assert_eq!(lease_end(t, 60), t + Duration::from_secs(50));
        assert_eq!(lease_end(t, 3), t + Duration::from_millis(2500));
        assert_eq!(lease_end(t, 0), t, "an expired lease ends at once");
    }

    #[tokio::test(start_paused = true)]
    async fn a_deadline_passes_with_time_and_only_moves_forward() {
        let now = tokio::time::Instant::now();
        let d = LeaseDeadline::until(now + Duration::from_secs(5));
        assert!(!d.is_past());
        d.extend_to(now + Duration::from_secs(2));
        assert_eq!(d.at(), Some(now + Duration::from_secs(5)), "never backwards");
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(d.is_past());
        d.extend_to(tokio::time::Instant::now() + Duration::from_secs(1));
        assert!(!d.is_past());
        assert!(!LeaseDeadline::unlimited().is_past());
    }
}
