//! Fuzzes `lb`'s TOML config parser: any text (an operator's typo, a
//! truncated file) gives a config or an error naming the key at fault, never
//! a panic. The error's text is rendered too (it is what `lb check` prints).
//!
//! Only `Config::parse` runs: `validate` resolves server names through the
//! system resolver, which a fuzzer must not call a million times.
//!
//! Run from `apps/loadbalancer/`: `cargo +nightly fuzz run lb_config`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use loadbalancer::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Err(e) = Config::parse(text) {
        assert!(!e.to_string().is_empty());
    }
});
