//! When to try a failed delivery again: exponential from a base, capped, with "equal jitter" (half the
//! wait fixed, half random) so the retries of many deliveries that failed together spread out instead
//! of arriving together at a receiver that just came back.

use std::time::Duration;

/// Wait before attempt `failures + 1` after `failures` failed attempts (`failures` ≥ 1): `base · 2^(failures-1)`
/// capped at `cap`, of which the upper half is scaled by `jitter` (in `[0, 1)`; 0 gives the shortest wait).
pub fn delay(failures: u32, base: Duration, cap: Duration, jitter: f64) -> Duration {
    let exponent = failures.saturating_sub(1).min(62);
    let full = if exponent >= 32 {
        cap
    } else {
        base.checked_mul(1u32 << exponent).unwrap_or(cap).min(cap)
    };
    let half = full / 2;
    half + half.mul_f64(jitter.clamp(0.0, 1.0))
}

/// A jitter in `[0, 1)` from the standard library's randomly keyed hasher (no RNG dependency for one number).
pub fn jitter() -> f64 {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    let mut h = RandomState::new().build_hasher();
    h.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
    );
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_the_base_up_to_the_cap_with_jitter_in_the_upper_half() {
        let s = Duration::from_secs;
        let ms = Duration::from_millis;
        let (base, cap) = (s(1), s(300));
        // (failures, jitter, wait)
        let table = [
            (1, 0.0, ms(500)),
            (1, 0.5, ms(750)),
            (2, 0.0, s(1)),
            (2, 1.0, s(2)),
            (3, 0.0, s(2)),
            (9, 1.0, s(256)),
            (10, 0.0, s(150)),
            (10, 1.0, s(300)),
            (40, 1.0, s(300)),
            (u32::MAX, 0.0, s(150)),
            (0, 1.0, s(1)),
            // Out-of-range jitter is clamped rather than trusted.
            (2, 7.0, s(2)),
            (2, -1.0, s(1)),
        ];
        for (failures, j, want) in table {
            assert_eq!(
                delay(failures, base, cap, j),
                want,
                "failures={failures} jitter={j}"
            );
        }
    }

    #[test]
    fn jitter_stays_in_range_and_varies() {
        let draws: Vec<f64> = (0..200).map(|_| jitter()).collect();
        assert!(draws.iter().all(|j| (0.0..1.0).contains(j)));
        assert!(draws.iter().any(|j| *j < 0.5) && draws.iter().any(|j| *j >= 0.5));
    }
}
