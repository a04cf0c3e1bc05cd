//! `servicenow.max_requests_per_second`: background requests (polls, reconciliation) and the
//! pipeline API's pass-throughs take evenly spaced slots, so the load on the instance stays
//! bounded however many gates wait and however busy the pipelines are.
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

    /// Wait for the next free slot if it comes within `max_wait`; otherwise take no slot and
    /// say how long the wait would be (for a `Retry-After`).
    pub async fn acquire_within(&self, max_wait: Duration) -> Result<(), Duration> {
        let slot = {
            let mut next = self.next.lock().expect("rate limiter lock");
            let now = Instant::now();
            let slot = (*next).max(now);
            if slot - now > max_wait {
                return Err(slot - now);
            }
            let spacing = *self.spacing.lock().expect("rate limiter lock");
            *next = slot + spacing;
            slot
        };
        tokio::time::sleep_until(slot).await;
        Ok(())
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

    #[tokio::test(start_paused = true)]
    async fn a_slot_too_far_away_is_refused_and_not_taken() {
        let limiter = RateLimiter::per_second(10);
        for _ in 0..3 {
            limiter.acquire().await;
        }
        // The next slot is 100 ms away.
        assert_eq!(
            limiter.acquire_within(Duration::from_millis(50)).await,
            Err(Duration::from_millis(100))
        );
        let start = Instant::now();
        assert_eq!(
            limiter.acquire_within(Duration::from_millis(150)).await,
            Ok(())
        );
        assert_eq!(start.elapsed(), Duration::from_millis(100));
    }
}
