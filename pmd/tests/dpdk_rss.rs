//! Our Toeplitz hash ([`pmd::rss`]) against DPDK's `rte_softrss` (through
//! dpdk-sys's shim, since it is static inline in `rte_thash.h`) on the same
//! inputs: Microsoft's key and the symmetric one, IPv4 and IPv6, with and
//! without ports. `rte_softrss` needs no EAL.
#![cfg(feature = "dpdk")]

use std::net::{Ipv4Addr, Ipv6Addr};

use pmd::rss::{Toeplitz, MICROSOFT_KEY, SYMMETRIC_KEY};
use proptest::prelude::*;

/// DPDK's hash of `words` (host order, as `rte_thash_tuple` holds them).
fn softrss(words: &mut [u32], key: &[u8; 40]) -> u32 {
    // SAFETY: `words` is `words.len()` valid u32s and `key` 40 bytes, which
    // covers the 4 * len + 4 bytes rte_softrss reads for len <= 9.
    assert!(words.len() <= 9);
    unsafe { dpdk_sys::rte_shim_softrss(words.as_mut_ptr(), words.len() as u32, key.as_ptr()) }
}

fn words(bytes: &[u8]) -> Vec<u32> {
    bytes.chunks(4).map(|c| u32::from_be_bytes(c.try_into().unwrap())).collect()
}

proptest! {
    #[test]
    fn ipv4_hashes_equal_rte_softrss(s in any::<u32>(), d in any::<u32>(), sp in any::<u16>(), dp in any::<u16>()) {
        for key in [&MICROSOFT_KEY, &SYMMETRIC_KEY] {
            let t = Toeplitz::new(key).unwrap();
            let (s, d) = (Ipv4Addr::from(s), Ipv4Addr::from(d));
            let mut w = vec![u32::from(s), u32::from(d), (u32::from(sp) << 16) | u32::from(dp)];
            prop_assert_eq!(t.hash_v4(s, d, Some((sp, dp))), softrss(&mut w, key));
            prop_assert_eq!(t.hash_v4(s, d, None), softrss(&mut w[..2], key));
        }
    }

    #[test]
    fn ipv6_hashes_equal_rte_softrss(s in any::<[u8; 16]>(), d in any::<[u8; 16]>(), sp in any::<u16>(), dp in any::<u16>()) {
        for key in [&MICROSOFT_KEY, &SYMMETRIC_KEY] {
            let t = Toeplitz::new(key).unwrap();
            let mut w = words(&[&s[..], &d[..]].concat());
            w.push((u32::from(sp) << 16) | u32::from(dp));
            let (s6, d6) = (Ipv6Addr::from(s), Ipv6Addr::from(d));
            prop_assert_eq!(t.hash_v6(s6, d6, Some((sp, dp))), softrss(&mut w, key));
            prop_assert_eq!(t.hash_v6(s6, d6, None), softrss(&mut w[..8], key));
        }
    }
}

#[test]
fn rte_softrss_reproduces_microsofts_first_row_so_the_comparison_means_something() {
    let mut w = vec![
        u32::from(Ipv4Addr::new(66, 9, 149, 187)),
        u32::from(Ipv4Addr::new(161, 142, 100, 80)),
        (2794 << 16) | 1766,
    ];
    assert_eq!(softrss(&mut w, &MICROSOFT_KEY), 0x51cc_c178);
}
