//! The hasher of the TCP flow table (4-tuple -> connection slot), keyed from
//! the stack's secret.

/// The flow table's hash: a keyed multiply-fold over the words `FlowId`
/// writes (as foldhash and ahash's fallback do), a few multiplications per
/// lookup where SipHash-1-3 took a couple of hundred instructions, on every
/// segment received. Keyed from the stack's secret, so flows cannot be aimed
/// at one probe sequence without knowing it.
#[derive(Clone)]
pub(super) struct FlowHash {
    k0: u64,
    k1: u64,
}

impl FlowHash {
    pub(super) fn new(secret: &[u8; 16]) -> Self {
        let k0 = u64::from_le_bytes(secret[..8].try_into().expect("8 bytes"));
        let k1 = u64::from_le_bytes(secret[8..].try_into().expect("8 bytes"));
        FlowHash { k0, k1: k1 | 1 }
    }
}

impl std::hash::BuildHasher for FlowHash {
    type Hasher = FlowHasher;
    fn build_hasher(&self) -> FlowHasher {
        FlowHasher { acc: self.k0, k: self.k1 }
    }
}

pub(super) struct FlowHasher {
    acc: u64,
    k: u64,
}

/// The high and low halves of a 64 × 64-bit product, folded.
fn fold_mul(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

impl std::hash::Hasher for FlowHasher {
    fn write(&mut self, bytes: &[u8]) {
        for c in bytes.chunks(8) {
            let mut w = [0u8; 8];
            w[..c.len()].copy_from_slice(c);
            self.write_u64(u64::from_le_bytes(w));
        }
    }
    fn write_u32(&mut self, x: u32) {
        self.write_u64(u64::from(x));
    }
    fn write_u64(&mut self, x: u64) {
        self.acc = fold_mul(self.acc ^ x, self.k ^ 0x9e37_79b9_7f4a_7c15);
    }
    fn write_u128(&mut self, x: u128) {
        self.write_u64(x as u64);
        self.write_u64((x >> 64) as u64);
    }
    fn finish(&self) -> u64 {
        fold_mul(self.acc, self.k).rotate_left(23)
    }
}
