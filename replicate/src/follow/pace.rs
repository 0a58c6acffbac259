//! When a follower polls an object store next.
//!
//! A busy writer uploads a round of segments about once per `sync-interval`. Polling at a fixed interval would add
//! up to a whole interval of lag on top of the writer's, so a follower that keeps finding new segments learns how far
//! apart they arrive and polls just before the next round is due, then briefly more often until it comes. A follower
//! that finds nothing backs off to a fixed ceiling, so an idle replica costs a small, constant number of requests.

use std::time::{Duration, Instant};

/// How much more often than the poll interval a follower polls around an expected arrival.
const FINE: u32 = 8;
/// Idle polls space out, doubling, up to this many poll intervals.
pub const MAX_IDLE_FACTOR: u32 = 10;

pub struct Pace {
    poll: Duration,
    /// Consecutive polls that found nothing, outside an expected arrival.
    idle: u32,
    /// How far apart new segments have been arriving, while they keep coming.
    cadence: Option<Duration>,
    last_found: Option<Instant>,
    /// Until when the next round is expected: polls are fine-grained until then.
    expect_until: Option<Instant>,
}

impl Pace {
    pub fn new(poll: Duration) -> Self {
        Self { poll, idle: 0, cadence: None, last_found: None, expect_until: None }
    }

    fn fine(&self) -> Duration {
        self.poll / FINE
    }

    /// A poll at `now` found and applied everything that was new: the wait before the next one.
    pub fn found(&mut self, now: Instant) -> Duration {
        self.idle = 0;
        let since = self.last_found.map(|t| now.saturating_duration_since(t));
        // Only arrivals of one busy stretch say anything about the writer's rhythm.
        self.cadence = match (since, self.cadence) {
            (Some(d), Some(c)) if d <= self.poll * 4 => Some((c * 3 + d) / 4),
            (Some(d), None) if d <= self.poll * 4 => Some(d),
            _ => None,
        };
        self.last_found = Some(now);
        let cadence = self.cadence.unwrap_or(self.poll).max(self.fine());
        self.expect_until = Some(now + cadence + self.fine() * 2);
        cadence.saturating_sub(self.fine()).max(self.fine())
    }

    /// A poll at `now` found nothing: the wait before the next one.
    pub fn empty(&mut self, now: Instant) -> Duration {
        if self.expect_until.is_some_and(|t| now < t) {
            return self.fine();
        }
        self.expect_until = None;
        self.idle = (self.idle + 1).min(16);
        self.poll * 2u32.saturating_pow(self.idle - 1).min(MAX_IDLE_FACTOR)
    }

    /// Whether polls are at their idle ceiling.
    pub fn backed_off(&self) -> bool {
        self.idle >= 1 && 2u32.saturating_pow(self.idle - 1) >= MAX_IDLE_FACTOR
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: Duration = Duration::from_secs(1);

    #[test]
    fn idle_polls_back_off_to_a_ceiling_and_activity_resets_them() {
        let mut pace = Pace::new(P);
        let mut now = Instant::now();
        let waits: Vec<u64> = (0..7)
            .map(|_| {
                let w = pace.empty(now);
                now += w;
                w.as_secs()
            })
            .collect();
        assert_eq!(waits, [1, 2, 4, 8, 10, 10, 10]);
        assert!(pace.backed_off());
        pace.found(now);
        assert!(!pace.backed_off());
        now += Duration::from_secs(60);
        assert_eq!(pace.empty(now), P, "after the expected arrival passed, back to the poll interval");
    }

    #[test]
    fn a_steady_writer_is_polled_just_before_each_round_and_finely_until_it_comes() {
        // Rounds arrive every 1 s, at a phase the follower does not know.
        let mut pace = Pace::new(P);
        let mut now = Instant::now();
        let rounds: Vec<Duration> = (0..40).map(|k| Duration::from_millis(300 + 1000 * k)).collect();
        let start = now;
        let mut next_round = 0;
        let mut delays = vec![];
        let mut polls = 0;
        while next_round < rounds.len() {
            polls += 1;
            let t = now - start;
            let wait = if rounds[next_round] <= t {
                delays.push(t - rounds[next_round]);
                next_round += 1;
                pace.found(now)
            } else {
                pace.empty(now)
            };
            now += wait;
        }
        // Once in step, each round is seen within a fine interval of its arrival, at a few polls per round.
        let settled = &delays[5..];
        assert!(settled.iter().all(|d| *d <= P / FINE + Duration::from_millis(1)), "{settled:?}");
        assert!(polls <= 40 * 4, "{polls} polls for 40 rounds");
    }
}
