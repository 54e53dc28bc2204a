//! Shared by the flow integration tests: a certificate authority made by
//! rcgen for the test, leaf certificates it signs, and resolver settings.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use flow::dns::ResolverConfig;

use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A test CA: its certificate (what a client trusts) and what signs leaves.
pub struct Pki {
    pub ca: CertificateDer<'static>,
    ca_cert: rcgen::Certificate,
    ca_key: KeyPair,
}

/// A fresh CA named `cn`.
pub fn pki(cn: &str) -> Pki {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(rcgen::DnType::CommonName, cn);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = p.self_signed(&ca_key).unwrap();
    Pki { ca: ca_cert.der().clone(), ca_cert, ca_key }
}

/// A certificate for `name` signed by `pki` (valid only in 2001 if
/// `expired`), and its key.
pub fn leaf(pki: &Pki, name: &str, expired: bool) -> (Vec<CertificateDer<'static>>, Arc<PrivateKeyDer<'static>>) {
    let mut p = CertificateParams::new(vec![name.to_string()]).unwrap();
    if expired {
        p.not_before = rcgen::date_time_ymd(2001, 1, 1);
        p.not_after = rcgen::date_time_ymd(2002, 1, 1);
    }
    let k = KeyPair::generate().unwrap();
    let c = p.signed_by(&k, &pki.ca_cert, &pki.ca_key).unwrap();
    (vec![c.der().clone()], Arc::new(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(k.serialize_der()))))
}

/// Resolver settings: `servers` (IP:PORT) each given `timeout`, `retries`
/// after the first query, `cache_capacity` answers cached, a UDP receive
/// queue `udp_queue` deep, the tests' TCP settings for truncated answers.
pub fn resolver_config(
    servers: &[&str],
    timeout: Duration,
    retries: u32,
    cache_capacity: usize,
    udp_queue: usize,
) -> ResolverConfig {
    ResolverConfig {
        servers: servers.iter().map(|s| s.parse().unwrap()).collect(),
        timeout,
        retries,
        cache_capacity,
        udp: flow::UdpConfig { rx_queue_len: udp_queue },
        tcp: flow::kernel::tests_support::tcp_config(),
    }
}
