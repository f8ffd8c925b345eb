//! The project's MurmurHash3 against the `murmur3` crate's, on random inputs: kept as our own
//! for speed (BENCHMARKS.md), it must still be the same function.

use std::io::Cursor;

use cohort_core::hash::{BUCKETS, SEED, bucket, hash32, murmur3_x86_32};
use proptest::prelude::*;

fn reference(bytes: &[u8], seed: u32) -> u32 {
    murmur3::murmur3_32(&mut Cursor::new(bytes), seed).expect("reading a byte slice")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

    #[test]
    fn equals_the_murmur3_crate(bytes in proptest::collection::vec(any::<u8>(), 0..600), seed in any::<u32>()) {
        prop_assert_eq!(murmur3_x86_32(&bytes, seed), reference(&bytes, seed));
        prop_assert_eq!(hash32(&bytes), reference(&bytes, SEED));
    }

    // Salts and units long enough to leave the stack buffer take the streaming path.
    #[test]
    fn bucket_equals_the_murmur3_crate_on_the_joined_key(salt in ".{0,80}", unit in ".{0,400}") {
        let joined = format!("{salt}:{unit}");
        prop_assert_eq!(bucket(&salt, &unit), reference(joined.as_bytes(), SEED) % BUCKETS);
    }
}
