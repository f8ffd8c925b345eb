//! Deterministic bucketing (spec version 1): MurmurHash3 x86 32-bit and `bucket(salt, unit)`.
//!
//! This is the one function that decides who sees what. Changing any output reassigns users in
//! running experiments, so it is pinned by golden vectors and versioned by [`SPEC_VERSION`].

/// The bucketing spec these functions implement. A new version lives beside this one.
pub const SPEC_VERSION: u32 = 1;

/// The MurmurHash3 seed of spec version 1. Never changes.
pub const SEED: u32 = 0;

/// Buckets per experiment or layer: one bucket is one basis point.
pub const BUCKETS: u32 = 10_000;

/// Longest randomization unit, in bytes.
pub const MAX_UNIT_BYTES: usize = 256;

const C1: u32 = 0xcc9e_2d51;
const C2: u32 = 0x1b87_3593;

/// MurmurHash3 x86 32-bit of `bytes` with seed [`SEED`].
pub fn hash32(bytes: &[u8]) -> u32 {
    murmur3_x86_32(bytes, SEED)
}

/// MurmurHash3 x86 32-bit of `bytes` with any seed; bucketing uses [`hash32`].
///
/// Written here rather than taken from the `murmur3` crate, whose `io::Read` interface made
/// `experiment_no_rules` about 64 % slower (BENCHMARKS.md); a property test checks both agree.
#[inline]
pub fn murmur3_x86_32(bytes: &[u8], seed: u32) -> u32 {
    let mut h = seed;
    let mut chunks = bytes.chunks_exact(4);
    for c in &mut chunks {
        h ^= scramble(u32::from_le_bytes([c[0], c[1], c[2], c[3]]));
        h = h.rotate_left(13).wrapping_mul(5).wrapping_add(0xe654_6b64);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut block = [0u8; 4];
        block[..rest.len()].copy_from_slice(rest);
        h ^= scramble(u32::from_le_bytes(block));
    }
    fmix(h ^ bytes.len() as u32)
}

/// `hash32(salt ++ ":" ++ unit) mod 10000`: the unit's bucket in `[0, 10000)`.
///
/// Nothing is allocated: the joined key is built on the stack when it fits (it always does
/// for valid salts and units), else the pieces are hashed as one stream.
pub fn bucket(salt: &str, unit: &str) -> u32 {
    const STACK: usize = 64 + 1 + MAX_UNIT_BYTES;
    let len = salt.len() + 1 + unit.len();
    if len <= STACK {
        let mut buf = [0u8; STACK];
        buf[..salt.len()].copy_from_slice(salt.as_bytes());
        buf[salt.len()] = b':';
        buf[salt.len() + 1..len].copy_from_slice(unit.as_bytes());
        return hash32(&buf[..len]) % BUCKETS;
    }
    let mut h = Murmur3::new(SEED);
    h.write(salt.as_bytes());
    h.write(b":");
    h.write(unit.as_bytes());
    h.finish() % BUCKETS
}

/// [`hash32`] of the concatenation of `parts`, without building it.
pub fn hash32_concat(parts: &[&[u8]]) -> u32 {
    let mut h = Murmur3::new(SEED);
    for p in parts {
        h.write(p);
    }
    h.finish()
}

/// flagd's `fractional` mapping of a hash onto `total` integer weights: `(hash * total) >> 32`,
/// a point in `[0, total)` whose place among the cumulative weights picks the bucket. Every
/// point has the same number of hashes, give or take one.
pub fn fractional_point(hash: u32, total: u64) -> u64 {
    // total < 2^32 in practice; u128 keeps any weight sum exact.
    ((u128::from(hash) * u128::from(total)) >> 32) as u64
}

/// Incremental MurmurHash3 x86 32-bit: the same result as hashing the concatenated input.
#[derive(Debug, Clone)]
struct Murmur3 {
    h: u32,
    tail: [u8; 4],
    tail_len: usize,
    len: usize,
}

impl Murmur3 {
    fn new(seed: u32) -> Self {
        Murmur3 { h: seed, tail: [0; 4], tail_len: 0, len: 0 }
    }

    #[inline]
    fn mix_block(&mut self, block: [u8; 4]) {
        let k = scramble(u32::from_le_bytes(block));
        self.h ^= k;
        self.h = self.h.rotate_left(13).wrapping_mul(5).wrapping_add(0xe654_6b64);
    }

    fn write(&mut self, mut bytes: &[u8]) {
        self.len += bytes.len();
        if self.tail_len > 0 {
            let take = (4 - self.tail_len).min(bytes.len());
            self.tail[self.tail_len..self.tail_len + take].copy_from_slice(&bytes[..take]);
            self.tail_len += take;
            bytes = &bytes[take..];
            if self.tail_len < 4 {
                return;
            }
            self.mix_block(self.tail);
            self.tail_len = 0;
        }
        let mut chunks = bytes.chunks_exact(4);
        for chunk in &mut chunks {
            self.mix_block([chunk[0], chunk[1], chunk[2], chunk[3]]);
        }
        let rest = chunks.remainder();
        self.tail[..rest.len()].copy_from_slice(rest);
        self.tail_len = rest.len();
    }

    fn finish(mut self) -> u32 {
        if self.tail_len > 0 {
            let mut block = [0u8; 4];
            block[..self.tail_len].copy_from_slice(&self.tail[..self.tail_len]);
            self.h ^= scramble(u32::from_le_bytes(block));
        }
        // The length is mixed in modulo 2^32, as the reference implementation does.
        fmix(self.h ^ (self.len as u32))
    }
}

#[inline]
fn fmix(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

#[inline]
fn scramble(k: u32) -> u32 {
    k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2)
}

#[cfg(test)]
mod tests;
