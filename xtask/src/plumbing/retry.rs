//! Trying again: one retry loop with backoff (a push that lost a race, a ref
//! another process held) and one wait for a condition (a server listening, an
//! Argo CD application running a revision), whose look may fail.

use std::time::{Duration, Instant};

/// What one attempt of [`retry`] came to.
pub enum Attempt<T> {
    /// Finished: `retry` returns it.
    Done(T),
    /// Worth another try after a backoff (another writer won a race).
    Again,
}

/// Runs `attempt` (given its number, from 1) until it is `Done`, an error,
/// or `attempts` tries asked `Again`: then `None`, for the caller to say it
/// gave up. Between tries it sleeps [`backoff`].
pub fn retry<T, E>(
    attempts: u32,
    mut attempt: impl FnMut(u32) -> Result<Attempt<T>, E>,
) -> Result<Option<T>, E> {
    for number in 1..=attempts {
        match attempt(number)? {
            Attempt::Done(value) => return Ok(Some(value)),
            Attempt::Again if number < attempts => std::thread::sleep(backoff(number)),
            Attempt::Again => {}
        }
    }
    Ok(None)
}

/// Exponential backoff with full jitter (AWS's "Exponential Backoff And
/// Jitter"): a random delay from zero up to a cap that doubles with each
/// attempt, from 50 ms to 1 s, so writers that collided spread out.
pub fn backoff(attempt: u32) -> Duration {
    let cap = 25u64.saturating_mul(1 << attempt.min(6)).min(1000);
    Duration::from_millis(fastrand::u64(0..=cap))
}

/// Polls `ready` every `interval` until it holds (`true`) or `timeout`
/// passed (`false`, after one last look at the deadline).
pub fn wait_until(timeout: Duration, interval: Duration, mut ready: impl FnMut() -> bool) -> bool {
    match try_wait_until(timeout, interval, || {
        Ok::<_, std::convert::Infallible>(ready())
    }) {
        Ok(ready) => ready,
        Err(never) => match never {},
    }
}

/// [`wait_until`] for a condition whose look can fail, or can tell that it
/// never will hold: its error ends the wait at once.
pub fn try_wait_until<E>(
    timeout: Duration,
    interval: Duration,
    mut ready: impl FnMut() -> Result<bool, E>,
) -> Result<bool, E> {
    let deadline = Instant::now() + timeout;
    loop {
        if ready()? {
            return Ok(true);
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(false);
        }
        // The last look is at the deadline, not an interval past it.
        std::thread::sleep(interval.min(deadline - now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_jittered_from_zero_up_to_a_growing_cap() {
        for (attempt, cap) in [(1, 50), (2, 100), (3, 200), (5, 800), (6, 1000), (40, 1000)] {
            let delays: Vec<u128> = (0..200).map(|_| backoff(attempt).as_millis()).collect();
            assert!(delays.iter().all(|d| *d <= cap), "{attempt}: {delays:?}");
            // Full jitter: the whole range is used, not only its upper half.
            assert!(delays.iter().any(|d| *d < cap / 2), "{attempt}: {delays:?}");
        }
    }

    #[test]
    fn retry_stops_at_done_at_an_error_or_after_the_last_attempt() {
        let mut tries = Vec::new();
        let done: Result<_, ()> = retry(5, |n| {
            tries.push(n);
            Ok(if n == 3 {
                Attempt::Done(n)
            } else {
                Attempt::Again
            })
        });
        assert_eq!((done, tries), (Ok(Some(3)), vec![1, 2, 3]));
        let mut count = 0;
        let gave_up: Result<Option<()>, ()> = retry(2, |_| {
            count += 1;
            Ok(Attempt::Again)
        });
        assert_eq!((gave_up, count), (Ok(None), 2));
        let failed: Result<Option<()>, &str> = retry(9, |_| Err("refused"));
        assert_eq!(failed, Err("refused"));
    }

    #[test]
    fn wait_until_returns_when_ready_or_at_the_timeout() {
        let mut polls = 0;
        assert!(wait_until(Duration::from_secs(5), Duration::ZERO, || {
            polls += 1;
            polls == 3
        }));
        assert_eq!(polls, 3);
        let started = Instant::now();
        assert!(!wait_until(
            Duration::from_millis(50),
            Duration::from_millis(5),
            || false
        ));
        assert!(started.elapsed() >= Duration::from_millis(50));
        // A long interval does not carry the wait past its timeout.
        let started = Instant::now();
        assert!(!wait_until(
            Duration::from_millis(50),
            Duration::from_secs(30),
            || false
        ));
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn try_wait_until_stops_at_the_first_error() {
        let mut polls = 0;
        let stopped: Result<bool, &str> =
            try_wait_until(Duration::from_secs(5), Duration::ZERO, || {
                polls += 1;
                if polls == 2 { Err("failed") } else { Ok(false) }
            });
        assert_eq!((stopped, polls), (Err("failed"), 2));
    }
}
