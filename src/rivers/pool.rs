//! The upstream pool: the current upstream set, per-upstream health and counters, round-robin
//! choice over healthy upstreams, and the upstreams removed from the set that still drain
//! connections. Pure state; no sockets.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use tokio::sync::watch;

/// One upstream server with its health and counters.
#[derive(Debug)]
pub(crate) struct Upstream {
    pub(crate) address: String,
    healthy: AtomicBool,
    active: AtomicU64,
    total: AtomicU64,
    dial_failures: AtomicU64,
    /// Bumped to close every open connection to this upstream.
    close: watch::Sender<u64>,
}

impl Upstream {
    fn new(address: String) -> Upstream {
        Upstream {
            address,
            // Optimistic until the first check: a failed dial marks it down at once anyway.
            healthy: AtomicBool::new(true),
            active: AtomicU64::new(0),
            total: AtomicU64::new(0),
            dial_failures: AtomicU64::new(0),
            close: watch::Sender::new(0),
        }
    }

    pub(crate) fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Acquire)
    }

    /// Sets the health flag; returns the previous value.
    pub(crate) fn set_healthy(&self, healthy: bool) -> bool {
        self.healthy.swap(healthy, Ordering::AcqRel)
    }

    pub(crate) fn record_dial_failure(&self) {
        self.dial_failures.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn active(&self) -> u64 {
        self.active.load(Ordering::Relaxed)
    }

    /// Asks every open connection to this upstream to close.
    pub(crate) fn close_connections(&self) {
        self.close.send_modify(|g| *g = g.wrapping_add(1));
    }

    /// A receiver that changes when [`Upstream::close_connections`] is called.
    pub(crate) fn close_signal(&self) -> watch::Receiver<u64> {
        self.close.subscribe()
    }

    /// Counts a connection as open until the guard is dropped.
    pub(crate) fn open(self: &Arc<Self>) -> ActiveGuard {
        self.active.fetch_add(1, Ordering::Relaxed);
        self.total.fetch_add(1, Ordering::Relaxed);
        ActiveGuard(self.clone())
    }

    fn stats(&self, current: bool) -> UpstreamStats {
        UpstreamStats {
            address: self.address.clone(),
            current,
            healthy: self.is_healthy(),
            active: self.active(),
            total: self.total.load(Ordering::Relaxed),
            dial_failures: self.dial_failures.load(Ordering::Relaxed),
        }
    }
}

/// Decrements the active count of an upstream on drop.
pub(crate) struct ActiveGuard(Arc<Upstream>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Counters of one upstream, as shown by [`super::Handle::stats`] and the metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamStats {
    /// `host:port` of the upstream.
    pub address: String,
    /// In the current upstream set (false: removed, still draining connections).
    pub current: bool,
    /// Whether new connections may go to it.
    pub healthy: bool,
    /// Connections open now.
    pub active: u64,
    /// Connections proxied to it since start.
    pub total: u64,
    /// Dials for clients that failed.
    pub dial_failures: u64,
}

/// The upstream set with a round-robin cursor.
#[derive(Debug)]
pub(crate) struct Pool {
    current: RwLock<Arc<Vec<Arc<Upstream>>>>,
    draining: Mutex<Vec<Arc<Upstream>>>,
    cursor: AtomicUsize,
}

impl Pool {
    pub(crate) fn new(addresses: &[String]) -> Pool {
        let list = addresses.iter().map(|a| Arc::new(Upstream::new(a.clone()))).collect();
        Pool {
            current: RwLock::new(Arc::new(list)),
            draining: Mutex::new(Vec::new()),
            cursor: AtomicUsize::new(0),
        }
    }

    /// The current upstream set.
    pub(crate) fn snapshot(&self) -> Arc<Vec<Arc<Upstream>>> {
        self.current.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Upstreams to try for one new connection, in order: the healthy ones starting at the
    /// round-robin cursor; when none is healthy, all of them (a last resort that also finds an
    /// upstream that came back before the next check).
    pub(crate) fn candidates(&self) -> Vec<Arc<Upstream>> {
        let list = self.snapshot();
        let n = list.len();
        if n == 0 {
            return Vec::new();
        }
        let start = self.cursor.fetch_add(1, Ordering::Relaxed) % n;
        let rotated = || (0..n).map(|i| &list[(start + i) % n]);
        let healthy: Vec<_> = rotated().filter(|u| u.is_healthy()).cloned().collect();
        if healthy.is_empty() {
            rotated().cloned().collect()
        } else {
            healthy
        }
    }

    /// Replaces the upstream set. Upstreams kept keep their health and counters; new ones start
    /// healthy; removed ones stop getting connections and drain the ones they have.
    pub(crate) fn replace(&self, addresses: &[String]) {
        let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
        let old = current.clone();
        let mut draining = self.draining.lock().unwrap_or_else(|e| e.into_inner());
        let new: Vec<Arc<Upstream>> = addresses
            .iter()
            .map(|a| {
                if let Some(u) = old.iter().find(|u| &u.address == a) {
                    return u.clone();
                }
                if let Some(i) = draining.iter().position(|u| &u.address == a) {
                    let u = draining.swap_remove(i);
                    u.set_healthy(true);
                    return u;
                }
                Arc::new(Upstream::new(a.clone()))
            })
            .collect();
        for u in old.iter() {
            if !addresses.contains(&u.address) {
                draining.push(u.clone());
            }
        }
        draining.retain(|u| u.active() > 0);
        *current = Arc::new(new);
    }

    /// Counters of the current upstreams, then of removed ones that still have connections.
    pub(crate) fn stats(&self) -> Vec<UpstreamStats> {
        let mut out: Vec<UpstreamStats> = self.snapshot().iter().map(|u| u.stats(true)).collect();
        let mut draining = self.draining.lock().unwrap_or_else(|e| e.into_inner());
        draining.retain(|u| u.active() > 0);
        out.extend(draining.iter().map(|u| u.stats(false)));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn order(p: &Pool) -> Vec<String> {
        p.candidates().iter().map(|u| u.address.clone()).collect()
    }

    #[test]
    fn round_robin_over_healthy() {
        let p = Pool::new(&addrs(&["a:1", "b:1", "c:1"]));
        let firsts: Vec<String> = (0..6).map(|_| order(&p)[0].clone()).collect();
        assert_eq!(firsts, addrs(&["a:1", "b:1", "c:1", "a:1", "b:1", "c:1"]));
        p.snapshot()[1].set_healthy(false);
        let orders: Vec<Vec<String>> = (0..3).map(|_| order(&p)).collect();
        assert!(
            orders.iter().all(|o| o.len() == 2 && !o.contains(&"b:1".to_string())),
            "{orders:?}"
        );
        assert_eq!(
            orders.iter().filter(|o| o[0] == "a:1").count() + orders.iter().filter(|o| o[0] == "c:1").count(),
            3
        );
    }

    #[test]
    fn all_down_falls_back_to_all() {
        let p = Pool::new(&addrs(&["a:1", "b:1"]));
        for u in p.snapshot().iter() {
            u.set_healthy(false);
        }
        assert_eq!(order(&p).len(), 2);
    }

    #[test]
    fn replace_keeps_state_and_drains_removed() {
        let p = Pool::new(&addrs(&["a:1", "b:1"]));
        let a = p.snapshot()[0].clone();
        let b = p.snapshot()[1].clone();
        a.set_healthy(false);
        let guard = b.open();
        p.replace(&addrs(&["a:1", "c:1"]));
        let s = p.stats();
        assert_eq!(s.len(), 3);
        assert_eq!(
            (s[0].address.as_str(), s[0].healthy, s[0].current),
            ("a:1", false, true)
        );
        assert_eq!((s[1].address.as_str(), s[1].healthy, s[1].current), ("c:1", true, true));
        assert_eq!((s[2].address.as_str(), s[2].active, s[2].current), ("b:1", 1, false));
        assert_eq!(order(&p), addrs(&["c:1"]));
        drop(guard);
        assert_eq!(p.stats().len(), 2, "drained upstream disappears");
    }
}
