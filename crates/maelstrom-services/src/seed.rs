//! Independent random streams derived from one seed.
//!
//! Every consumer of randomness (generator, schedule, each link's latency, each service) draws
//! from its own named stream, so adding a draw in one place never shifts another's sequence.
//! ChaCha8 is used because its output is fixed by its specification: a seed replays the same
//! run on every platform and every version of this crate.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// The seed of the stream called `name` under the run seed `seed`.
///
/// A stable hash (FNV-1a, then a SplitMix64 finaliser) rather than `std`'s `DefaultHasher`,
/// whose output may change between Rust releases and would break replays.
///
/// ```
/// use maelstrom_services::seed::derive;
/// assert_eq!(derive(1, "schedule"), derive(1, "schedule"));
/// assert_ne!(derive(1, "schedule"), derive(2, "schedule"));
/// assert_ne!(derive(1, "schedule"), derive(1, "nemesis"));
/// ```
pub fn derive(seed: u64, name: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    for b in name.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let mut z = h.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The random stream called `name` under the run seed `seed`.
///
/// ```
/// use rand::Rng;
/// let mut a = maelstrom_services::seed::stream(9, "latency/n1/n2");
/// let mut b = maelstrom_services::seed::stream(9, "latency/n1/n2");
/// assert_eq!(a.r#gen::<u64>(), b.r#gen::<u64>());
/// ```
pub fn stream(seed: u64, name: &str) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(derive(seed, name))
}
