//! Seeded randomness on ChaCha8 (`rand_chacha`): the same seed gives the same draws on every
//! platform, and nothing reads OS entropy (the crate builds for wasm32 as is).

use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};

/// The generator used throughout the crate.
pub type Rng = ChaCha8Rng;

/// A generator from a 64-bit seed.
pub fn seeded(seed: u64) -> Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// Uniform in `[0, 1)` with 53 random bits.
pub fn unit(rng: &mut Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// Uniform integer in `[0, n)` (Lemire's multiply-and-reject: unbiased). `n` must be > 0.
pub fn below(rng: &mut Rng, n: u64) -> u64 {
    debug_assert!(n > 0);
    let threshold = n.wrapping_neg() % n;
    loop {
        let m = (rng.next_u64() as u128) * (n as u128);
        if (m as u64) >= threshold {
            return (m >> 64) as u64;
        }
    }
}

/// Fisher–Yates shuffle.
pub fn shuffle<T>(rng: &mut Rng, xs: &mut [T]) {
    for i in (1..xs.len()).rev() {
        let j = below(rng, i as u64 + 1) as usize;
        xs.swap(i, j);
    }
}

/// Standard normal draw (Box–Muller; one of the pair is discarded for simplicity).
pub fn normal(rng: &mut Rng) -> f64 {
    let u1 = 1.0 - unit(rng); // (0, 1]: ln is finite
    let u2 = unit(rng);
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_are_reproducible_and_in_range() {
        let (mut a, mut b) = (seeded(7), seeded(7));
        for _ in 0..1000 {
            let x = unit(&mut a);
            assert_eq!(x, unit(&mut b));
            assert!((0.0..1.0).contains(&x));
            assert!(below(&mut a, 3) < 3);
            below(&mut b, 3);
        }
    }

    #[test]
    fn shuffle_is_a_permutation_and_roughly_uniform() {
        let mut rng = seeded(1);
        let mut first = [0usize; 4];
        for _ in 0..8000 {
            let mut xs = [0, 1, 2, 3];
            shuffle(&mut rng, &mut xs);
            let mut sorted = xs;
            sorted.sort();
            assert_eq!(sorted, [0, 1, 2, 3]);
            first[xs[0]] += 1;
        }
        for c in first {
            assert!((1800..2200).contains(&c), "{first:?}");
        }
    }

    #[test]
    fn normal_has_unit_moments() {
        let mut rng = seeded(3);
        let xs: Vec<f64> = (0..20000).map(|_| normal(&mut rng)).collect();
        let m = xs.iter().sum::<f64>() / xs.len() as f64;
        let v = xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / xs.len() as f64;
        assert!(m.abs() < 0.03 && (v - 1.0).abs() < 0.05, "{m} {v}");
    }
}
