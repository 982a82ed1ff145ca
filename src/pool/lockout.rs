//! Progressive lockout arithmetic (docs/src/pool/index.md): after `max_attempts` failures the key is locked for
//! `initial`, doubling with each further failure up to `max`; a key quiet for `reset_after`
//! starts again from zero. Pure functions over millisecond timestamps, so the rules are tested
//! without a clock; the counters themselves live in the database (`store::attempts`) so every
//! replica enforces the same limits.

use std::time::Duration;

use super::config::LockoutPolicy;

/// The failure count after a new failure at `now`, given the last failure time.
pub fn next_failures(
    previous: u32,
    last_failure_ms: i64,
    now_ms: i64,
    policy: &LockoutPolicy,
) -> u32 {
    if now_ms.saturating_sub(last_failure_ms) >= policy.reset_after.as_millis() as i64 {
        1
    } else {
        previous.saturating_add(1)
    }
}

/// How long a key with `failures` failures stays locked after its latest failure.
pub fn lock_duration(failures: u32, threshold: u32, policy: &LockoutPolicy) -> Duration {
    if threshold == 0 || failures < threshold {
        return Duration::ZERO;
    }
    let doublings = (failures - threshold).min(40);
    let ms = (policy.initial.as_millis() as u64).saturating_mul(1u64 << doublings);
    Duration::from_millis(ms).min(policy.max)
}

/// Milliseconds until a key may try again (0: not locked).
pub fn remaining_ms(
    failures: u32,
    threshold: u32,
    last_failure_ms: i64,
    now_ms: i64,
    policy: &LockoutPolicy,
) -> i64 {
    if now_ms.saturating_sub(last_failure_ms) >= policy.reset_after.as_millis() as i64 {
        return 0;
    }
    let until = last_failure_ms
        .saturating_add(lock_duration(failures, threshold, policy).as_millis() as i64);
    (until - now_ms).max(0)
}

/// Whole seconds to show ("try again in N seconds"), never 0 while locked.
pub fn retry_seconds(remaining_ms: i64) -> i64 {
    (remaining_ms + 999) / 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> LockoutPolicy {
        LockoutPolicy::default()
    }

    #[test]
    fn lock_doubles_from_the_fifth_failure_and_caps() {
        let p = policy();
        let table = [
            (0, 0),
            (4, 0),
            (5, 1_000),
            (6, 2_000),
            (7, 4_000),
            (10, 32_000),
            (14, 512_000),
            (15, 900_000),
            (40, 900_000),
        ];
        for (failures, ms) in table {
            assert_eq!(
                lock_duration(failures, 5, &p).as_millis() as u64,
                ms,
                "failures={failures}"
            );
        }
    }

    #[test]
    fn quiet_period_resets_the_counter() {
        let p = policy();
        let quarter_hour = 15 * 60 * 1000;
        assert_eq!(next_failures(7, 0, quarter_hour - 1, &p), 8);
        assert_eq!(next_failures(7, 0, quarter_hour, &p), 1);
    }

    #[test]
    fn remaining_time_counts_down() {
        let p = policy();
        assert_eq!(remaining_ms(5, 5, 10_000, 10_000, &p), 1_000);
        assert_eq!(remaining_ms(5, 5, 10_000, 10_600, &p), 400);
        assert_eq!(remaining_ms(5, 5, 10_000, 11_000, &p), 0);
        assert_eq!(remaining_ms(4, 5, 10_000, 10_000, &p), 0);
        assert_eq!(retry_seconds(400), 1);
        assert_eq!(retry_seconds(2_000), 2);
        // A lock of the maximum never outlives the reset window.
        assert_eq!(remaining_ms(30, 5, 0, 15 * 60 * 1000, &p), 0);
    }
}
