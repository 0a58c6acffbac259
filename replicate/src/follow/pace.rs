//! When a follower polls an object store next.
//!
//! A busy writer uploads a round of segments about once per `sync-interval`. Polling at a fixed interval would add
//! up to a whole interval of lag on top of the writer's, so a follower that keeps finding new segments learns how far
//! apart they arrive, and from three quarters of the way to the next round polls every eighth of the poll interval
//! until it comes. A follower
//! that finds nothing backs off to a fixed ceiling, so an idle replica costs a small, constant number of requests.

use std::time::{Duration, Instant};

/// How much more often than the poll interval a follower polls around an expected arrival.
const FINE: u32 = 8;
/// Idle polls space out, doubling, up to this many poll intervals.
pub const MAX_IDLE_FACTOR: u32 = 10;
/// A writer's default `sync-interval` for an object store: arrivals up to four of these apart (or four poll
/// intervals, if longer) are one busy stretch. Measured in poll intervals alone, a follower polling more often than
/// the writer uploads would never learn the writer's rhythm, and would back off between its rounds.
const WRITER_ROUND: Duration = Duration::from_secs(1);

pub struct Pace {
    poll: Duration,
    /// Consecutive polls that found nothing, outside an expected arrival.
    idle: u32,
    /// How far apart new segments have been arriving, while they keep coming.
    cadence: Option<Duration>,
    /// About when the last round found arrived, and when the last poll found nothing.
    last_found: Option<Instant>,
    last_empty: Option<Instant>,
    /// Until when the next round is expected: polls are fine-grained until then.
    expect_until: Option<Instant>,
}

impl Pace {
    pub fn new(poll: Duration) -> Self {
        Self { poll, idle: 0, cadence: None, last_found: None, last_empty: None, expect_until: None }
    }

    fn fine(&self) -> Duration {
        self.poll / FINE
    }

    /// A poll at `now` found and applied everything that was new: the wait before the next one.
    pub fn found(&mut self, now: Instant) -> Duration {
        self.idle = 0;
        // The round arrived between the last empty poll, when that was a fine one, and this one: reckoning from
        // about when it arrived keeps a late poll from making the next one later still.
        let arrival = match self.last_empty.take() {
            Some(e) if now.saturating_duration_since(e) <= self.fine() => e + (now - e) / 2,
            _ => now,
        };
        let since = self.last_found.map(|t| arrival.saturating_duration_since(t));
        // Only arrivals of one busy stretch say anything about the writer's rhythm.
        let stretch = self.poll.max(WRITER_ROUND) * 4;
        self.cadence = match (since, self.cadence) {
            (Some(d), Some(c)) if d <= stretch => Some((c * 3 + d) / 4),
            (Some(d), None) if d <= stretch => Some(d),
            _ => None,
        };
        self.last_found = Some(arrival);
        let cadence = self.cadence.unwrap_or(self.poll).max(self.fine());
        // A loaded writer's rounds come late by a fraction of a round: keep looking for a whole round more before
        // falling back to idle polls, which would add up to a poll interval of lag.
        self.expect_until = Some(arrival + cadence * 2);
        // From three quarters of a round on, not just before it is due: a round after a late one comes early.
        (arrival + cadence * 3 / 4).saturating_duration_since(now).max(self.fine())
    }

    /// A poll at `now` found nothing: the wait before the next one.
    pub fn empty(&mut self, now: Instant) -> Duration {
        self.last_empty = Some(now);
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

    /// When each round is seen, for rounds arriving at `rounds` (from the first poll), and the polls made.
    fn follow(rounds: &[Duration]) -> (Vec<Duration>, usize) {
        follow_polling(P, rounds)
    }

    fn follow_polling(poll: Duration, rounds: &[Duration]) -> (Vec<Duration>, usize) {
        let mut pace = Pace::new(poll);
        let start = Instant::now();
        let mut now = start;
        let mut next_round = 0;
        let mut delays = vec![];
        let mut polls = 0;
        while next_round < rounds.len() {
            polls += 1;
            let t = now - start;
            let wait = if rounds[next_round] <= t {
                delays.push(t - rounds[next_round]);
                while next_round < rounds.len() && rounds[next_round] <= t {
                    next_round += 1;
                }
                pace.found(now)
            } else {
                pace.empty(now)
            };
            now += wait;
        }
        (delays, polls)
    }

    #[test]
    fn rounds_that_come_late_are_still_seen_soon_after_they_arrive() {
        // Every third round comes 300 ms late, as from a loaded writer.
        let rounds: Vec<Duration> =
            (0..40).map(|k| Duration::from_millis(300 + 1000 * k + if k % 3 == 0 { 300 } else { 0 })).collect();
        let (delays, polls) = follow(&rounds);
        let settled = &delays[5..];
        assert!(settled.iter().all(|d| *d <= P / 4), "{settled:?}");
        assert!(polls <= 40 * 5, "{polls} polls for 40 rounds");
    }

    #[test]
    fn a_steady_writer_is_polled_just_before_each_round_and_finely_until_it_comes() {
        // Rounds arrive every 1 s, at a phase the follower does not know.
        let rounds: Vec<Duration> = (0..40).map(|k| Duration::from_millis(300 + 1000 * k)).collect();
        let (delays, polls) = follow(&rounds);
        // Once in step, each round is seen within a fine interval of its arrival, at a few polls per round.
        let settled = &delays[5..];
        assert!(settled.iter().all(|d| *d <= P / FINE + Duration::from_millis(1)), "{settled:?}");
        assert!(polls <= 40 * 4, "{polls} polls for 40 rounds");
    }

    #[test]
    fn a_poll_interval_shorter_than_the_writers_rounds_does_not_back_off_between_them() {
        // A writer uploading every 1 s, a follower asked to poll every 100 ms.
        let poll = Duration::from_millis(100);
        let rounds: Vec<Duration> = (0..40).map(|k| Duration::from_millis(300 + 1000 * k)).collect();
        let (delays, polls) = follow_polling(poll, &rounds);
        // The cadence it starts from is the poll interval: it takes a few rounds to learn the writer's.
        let settled = &delays[10..];
        assert!(settled.iter().all(|d| *d <= poll / FINE + Duration::from_millis(1)), "{settled:?}");
        assert!(polls <= 40 * 25, "{polls} polls for 40 rounds");
    }
}
