//! In-memory sliding-window counters for abuse limits on unauthenticated
//! endpoints (signup, login). Per process: with several replicas each keeps
//! its own window, which bounds abuse per replica.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Once this many keys are tracked, stale ones are pruned on the next call.
const PRUNE_ABOVE: usize = 10_000;

pub struct SlidingWindow {
    max: usize,
    window: Duration,
    hits: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl SlidingWindow {
    pub fn new(max: usize, window: Duration) -> Self {
        Self {
            max,
            window,
            hits: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one attempt for `key`; refuses (with the seconds until a slot
    /// frees up) when the window is full. Refused attempts are not counted.
    pub fn acquire(&self, key: &str) -> Result<(), u64> {
        self.check(key, true)
    }

    /// Whether an attempt would be allowed, without counting it.
    pub fn peek(&self, key: &str) -> Result<(), u64> {
        self.check(key, false)
    }

    /// Counts an attempt unconditionally (e.g. a failed login).
    pub fn record(&self, key: &str) {
        let now = Instant::now();
        let mut hits = self.hits.lock().unwrap_or_else(|p| p.into_inner());
        hits.entry(key.to_string()).or_default().push_back(now);
    }

    fn check(&self, key: &str, count: bool) -> Result<(), u64> {
        let now = Instant::now();
        let mut hits = self.hits.lock().unwrap_or_else(|p| p.into_inner());
        if hits.len() > PRUNE_ABOVE {
            let window = self.window;
            hits.retain(|_, q| q.back().is_some_and(|t| now.duration_since(*t) < window));
        }
        let queue = hits.entry(key.to_string()).or_default();
        while queue
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.window)
        {
            queue.pop_front();
        }
        if queue.len() >= self.max {
            let oldest = queue.front().copied().unwrap_or(now);
            let wait = self.window.saturating_sub(now.duration_since(oldest));
            return Err(wait.as_secs().max(1));
        }
        if count {
            queue.push_back(now);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_past_the_limit_per_key() {
        let w = SlidingWindow::new(2, Duration::from_secs(60));
        assert!(w.acquire("a").is_ok());
        assert!(w.acquire("a").is_ok());
        let retry = w.acquire("a").unwrap_err();
        assert!((1..=60).contains(&retry));
        assert!(w.acquire("b").is_ok());
    }

    #[test]
    fn window_slides() {
        let w = SlidingWindow::new(1, Duration::from_millis(20));
        assert!(w.acquire("a").is_ok());
        assert!(w.acquire("a").is_err());
        std::thread::sleep(Duration::from_millis(30));
        assert!(w.acquire("a").is_ok());
    }
}
