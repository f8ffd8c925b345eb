//! Check values from the bucketing spec and the streaming equivalence of the hasher.

use super::*;

#[test]
fn spec_check_values() {
    assert_eq!(hash32(b"hello"), 613_153_351);
    assert_eq!(hash32(b""), 0);
    assert_eq!(hash32(b"The quick brown fox jumps over the lazy dog"), 776_992_547);
}

#[test]
fn streaming_matches_one_shot_at_every_split() {
    let input = b"salt-with-odd-length:user-1234567";
    let whole = hash32(input);
    for a in 0..=input.len() {
        for b in a..=input.len() {
            let mut h = Murmur3::new(SEED);
            h.write(&input[..a]);
            h.write(&input[a..b]);
            h.write(&input[b..]);
            assert_eq!(h.finish(), whole, "split at {a},{b}");
        }
    }
}

#[test]
fn bucket_is_hash_of_joined_string_mod_10000() {
    for (salt, unit) in [("s", "u"), ("abc", ""), ("X", "user-611178002")] {
        let joined = format!("{salt}:{unit}");
        assert_eq!(bucket(salt, unit), hash32(joined.as_bytes()) % BUCKETS);
    }
    assert_eq!(bucket("X", "user-611178002"), 4384);
}

#[test]
fn long_inputs_take_the_streaming_path_with_the_same_result() {
    let salt = "s".repeat(64);
    let unit = "u".repeat(400);
    let joined = format!("{salt}:{unit}");
    assert_eq!(bucket(&salt, &unit), hash32(joined.as_bytes()) % BUCKETS);
}
