//! The scheduler's seeded random number generator.

/// A small deterministic generator (SplitMix64): the same seed gives the same sequence on every
/// platform and every version of Gantry, so a placement can be replayed from its seed.
///
/// Not for cryptography. The scheduler only uses it to break ties and for the `random` strategy.
#[derive(Debug, Clone)]
pub struct SchedRng {
    state: u64,
}

impl SchedRng {
    /// A generator whose sequence is fully determined by `seed`.
    pub fn seed_from_u64(seed: u64) -> Self {
        Self { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`0` when `n` is 0), without modulo bias worth speaking of for the
    /// sizes the scheduler uses (Lemire's multiply-shift).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence() {
        let mut a = SchedRng::seed_from_u64(7);
        let mut b = SchedRng::seed_from_u64(7);
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
        assert_ne!(
            SchedRng::seed_from_u64(1).next_u64(),
            SchedRng::seed_from_u64(2).next_u64()
        );
    }

    #[test]
    fn below_stays_in_range() {
        let mut r = SchedRng::seed_from_u64(3);
        let mut seen = [false; 5];
        for _ in 0..1000 {
            let v = r.below(5);
            assert!(v < 5);
            seen[v as usize] = true;
        }
        assert!(seen.iter().all(|s| *s));
        assert_eq!(r.below(0), 0);
    }
}
