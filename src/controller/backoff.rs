//! The controller's retry delay after a transient failure: 1 s, doubling, capped at `--interval`,
//! back to 1 s after a pass that succeeds. Pure; time is the caller's.

use std::time::Duration;

/// The first delay.
pub const INITIAL: Duration = Duration::from_secs(1);

/// Capped exponential back-off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    cap: Duration,
    next: Duration,
}

impl Backoff {
    /// Delays from [`INITIAL`] up to `cap`.
    pub fn new(cap: Duration) -> Self {
        Backoff {
            cap,
            next: INITIAL.min(cap),
        }
    }

    /// The delay before the next try; each call doubles the one after, up to the cap.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.cap);
        d
    }

    /// After a success: the next failure waits [`INITIAL`] again.
    pub fn reset(&mut self) {
        self.next = INITIAL.min(self.cap);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_secs(10));
        let got: Vec<u64> = (0..6).map(|_| b.next_delay().as_secs()).collect();
        assert_eq!(got, [1, 2, 4, 8, 10, 10]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_secs(1));
        let mut small = Backoff::new(Duration::from_millis(300));
        assert_eq!(small.next_delay(), Duration::from_millis(300), "never above the cap");
    }
}
