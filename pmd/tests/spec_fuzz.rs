//! Whatever a user types as a port spec, `pmd::open` returns a port or an error
//! naming the problem; it never panics.

use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_specs_never_panic(s in "\\PC{0,60}") {
        if let Err(e) = pmd::open(&s) {
            prop_assert!(!e.to_string().is_empty());
        }
    }

    #[test]
    fn spec_shaped_strings_never_panic(
        scheme in prop::sample::select(vec!["ring", "null", "rng", "", "dpdk"]),
        target in "[a-z0-9:._-]{0,12}",
        opts in prop::collection::vec(("[a-z_]{0,9}", "[-0-9a-z.:]{0,8}"), 0..5),
    ) {
        let q: Vec<String> = opts.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let spec = format!("{scheme}:fz{target}?{}", q.join("&"));
        if let Err(e) = pmd::open(&spec) {
            prop_assert!(!e.to_string().is_empty());
        }
    }
}
