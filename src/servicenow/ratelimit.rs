//! `servicenow.max_requests_per_second`: background requests (polls, reconciliation) take
//! evenly spaced slots, so the load on the instance stays bounded however many gates wait.
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

pub struct RateLimiter {
    spacing: Mutex<Duration>,
    next: Mutex<Instant>,
}

impl RateLimiter {
    pub fn per_second(rate: u32) -> RateLimiter {
        RateLimiter {
            spacing: Mutex::new(Duration::from_secs(1) / rate.max(1)),
            next: Mutex::new(Instant::now()),
        }
    }

    /// Change the rate (replicas share the deployment's limit).
    pub fn set_rate(&self, rate: u32) {
        if let Ok(mut s) = self.spacing.lock() {
            *s = Duration::from_secs(1) / rate.max(1);
        }
    }

    /// Wait for the next free slot.
    pub async fn acquire(&self) {
        let slot = {
            let mut next = self.next.lock().expect("rate limiter lock");
            let now = Instant::now();
            let slot = (*next).max(now);
            let spacing = *self.spacing.lock().expect("rate limiter lock");
            *next = slot + spacing;
            slot
        };
        tokio::time::sleep_until(slot).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn slots_are_evenly_spaced() {
        let limiter = RateLimiter::per_second(10);
        let start = Instant::now();
        for _ in 0..5 {
            limiter.acquire().await;
        }
        // Slots at 0, 100, 200, 300, 400 ms.
        assert_eq!(start.elapsed(), Duration::from_millis(400));
    }
}
