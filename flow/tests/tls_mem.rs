//! TLS over in-memory flows (no network): both ends are ours, certificates are
//! made by rcgen for the test. Exact bytes both ways, TLS 1.2 and 1.3, ALPN,
//! client certificates, close_notify, and the typed errors: a wrong name, an
//! expired certificate, an unknown issuer, a peer that sends garbage.

mod common;

use common::{leaf, pki, Pki};
use flow::exec::{Executor, TimerReactor};
use flow::mem::duplex;
use flow::tls::{self, ClientSettings, ServerSettings, TlsError, TlsFlow, TlsVersion};
use flow::{Flow, FlowError};

fn client(pki: &Pki, versions: &[TlsVersion], alpn: &[&[u8]]) -> ClientSettings {
    ClientSettings {
        roots: vec![pki.ca.clone()],
        versions: versions.to_vec(),
        alpn: alpn.iter().map(|a| a.to_vec()).collect(),
        client_cert: None,
    }
}

fn server(pki: &Pki, name: &str, expired: bool, versions: &[TlsVersion]) -> ServerSettings {
    let (chain, key) = leaf(pki, name, expired);
    ServerSettings { chain, key, versions: versions.to_vec(), alpn: vec![], client_roots: None }
}

fn ex() -> Executor<TimerReactor> {
    Executor::new(TimerReactor::virtual_time(pmd::VirtualClock::new(), 1_000))
}

/// Runs a handshake over a fresh duplex; returns both results.
fn handshake(c: ClientSettings, s: ServerSettings, name: &str) -> Ends {
    let (cc, sc) = (tls::client_config(&c).unwrap(), tls::server_config(&s).unwrap());
    let name = tls::server_name(name).unwrap();
    ex().block_on(async move {
        let (a, b) = duplex(4096);
        let srv = flow::spawn(TlsFlow::accept(b, sc));
        let cli = TlsFlow::connect(a, cc, name).await;
        (cli, srv.await)
    })
    .unwrap()
}

/// Results of both ends.
type Ends = (Result<TlsFlow<flow::mem::MemFlow>, FlowError>, Result<TlsFlow<flow::mem::MemFlow>, FlowError>);

/// A TLS 1.3 handshake to "echo.test" where the client trusts `client_ca`
/// and the server shows a certificate of `server_ca` for `cert_name`.
fn tls13_handshake(client_ca: &Pki, server_ca: &Pki, cert_name: &str) -> Ends {
    let v = [TlsVersion::Tls13];
    handshake(client(client_ca, &v, &[]), server(server_ca, cert_name, false, &v), "echo.test")
}

#[test]
fn exact_bytes_both_ways_over_tls12_and_tls13_then_close_notify() {
    let p = pki("test ca");
    for v in [TlsVersion::Tls12, TlsVersion::Tls13] {
        let (cc, sc) = (
            tls::client_config(&client(&p, &[v], &[b"echo/1"])).unwrap(),
            tls::server_config(&ServerSettings {
                alpn: vec![b"echo/1".to_vec()],
                ..server(&p, "echo.test", false, &[v])
            })
            .unwrap(),
        );
        ex().block_on(async move {
            let (a, b) = duplex(1000);
            let srv = flow::spawn(async move {
                let mut s = TlsFlow::accept(b, sc).await.unwrap();
                assert_eq!(s.sni(), Some("echo.test"));
                let mut buf = vec![0u8; 7000];
                loop {
                    let n = s.read(&mut buf).await.unwrap();
                    if n == 0 {
                        break; // close_notify
                    }
                    s.write_all(&buf[..n]).await.unwrap();
                }
                s.close().await.unwrap();
            });
            let mut c = TlsFlow::connect(a, cc, tls::server_name("echo.test").unwrap()).await.unwrap();
            assert_eq!(c.alpn_protocol(), Some(&b"echo/1"[..]));
            let want = if v == TlsVersion::Tls13 {
                rustls::ProtocolVersion::TLSv1_3
            } else {
                rustls::ProtocolVersion::TLSv1_2
            };
            assert_eq!(c.protocol_version(), Some(want));
            let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
            let mut got = vec![0u8; data.len()];
            for (o, b) in data.chunks(3000).zip(got.chunks_mut(3000)) {
                c.write_all(o).await.unwrap();
                c.read_exact(b).await.unwrap();
            }
            assert_eq!(got, data);
            c.shutdown().await.unwrap();
            let mut one = [0u8; 1];
            assert_eq!(c.read(&mut one).await.unwrap(), 0, "the server's close_notify ends the stream");
            srv.await;
        })
        .unwrap();
    }
}

#[test]
fn a_certificate_for_another_name_is_a_typed_certificate_error() {
    let p = pki("test ca");
    let (c, _s) = tls13_handshake(&p, &p, "other.test");
    match c {
        Err(FlowError::Tls(TlsError::Certificate(rustls::CertificateError::NotValidForNameContext { .. })))
        | Err(FlowError::Tls(TlsError::Certificate(rustls::CertificateError::NotValidForName))) => {}
        other => panic!("{:?}", other.err()),
    }
}

#[test]
fn an_expired_certificate_is_a_typed_certificate_error() {
    let p = pki("test ca");
    let v = [TlsVersion::Tls12, TlsVersion::Tls13];
    let (c, _s) = handshake(client(&p, &v, &[]), server(&p, "echo.test", true, &v), "echo.test");
    let e = c.err().expect("must fail");
    assert!(
        matches!(
            e,
            FlowError::Tls(TlsError::Certificate(
                rustls::CertificateError::Expired | rustls::CertificateError::ExpiredContext { .. }
            ))
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("expired"), "{e}");
}

#[test]
fn an_unknown_issuer_is_rejected_and_the_server_hears_the_alert() {
    let (p, other) = (pki("test ca"), pki("another ca"));
    let (c, s) = tls13_handshake(&other, &p, "echo.test");
    assert!(
        matches!(c, Err(FlowError::Tls(TlsError::Certificate(rustls::CertificateError::UnknownIssuer)))),
        "{:?}",
        c.err()
    );
    assert!(matches!(s, Err(FlowError::Tls(TlsError::PeerAlert(_)))), "{:?}", s.err());
}

#[test]
fn a_client_certificate_is_required_and_checked() {
    let p = pki("test ca");
    let v = [TlsVersion::Tls13];
    let mut s = server(&p, "echo.test", false, &v);
    s.client_roots = Some(vec![p.ca.clone()]);
    // Without one: the server refuses.
    let (c, srv) = handshake(client(&p, &v, &[]), s.clone(), "echo.test");
    assert!(srv.is_err(), "server accepted a client without a certificate");
    drop(c);
    // With one from the CA: accepted.
    let mut cs = client(&p, &v, &[]);
    cs.client_cert = Some(leaf(&p, "client.test", false));
    let (c, srv) = handshake(cs, s, "echo.test");
    assert!(c.is_ok() && srv.is_ok(), "{:?} {:?}", c.err(), srv.err());
}

#[test]
fn a_peer_that_sends_garbage_is_a_protocol_error_without_panic() {
    let p = pki("test ca");
    let v = [TlsVersion::Tls12, TlsVersion::Tls13];
    let cc = tls::client_config(&client(&p, &v, &[])).unwrap();
    let sc = tls::server_config(&server(&p, "echo.test", false, &v)).unwrap();
    let garbage: Vec<Vec<u8>> = vec![
        b"HTTP/1.1 200 OK\r\n\r\n".to_vec(),
        vec![0x16, 0x03, 0x03, 0xff, 0xff, 1, 2, 3],
        vec![0x17, 0x03, 0x03, 0x00, 0x05, 0, 0, 0, 0, 0],
        (0..3000u32).map(|i| (i * 31 % 256) as u8).collect(),
    ];
    for g in garbage {
        let (cc, sc, g2) = (cc.clone(), sc.clone(), g.clone());
        ex().block_on(async move {
            // Garbage to a client...
            let (a, mut b) = duplex(8192);
            let peer = flow::spawn(async move {
                let mut sink = [0u8; 8192];
                let _ = b.read(&mut sink).await;
                let _ = b.write_all(&g2).await;
                let _ = b.shutdown().await;
                let _ = b.read(&mut sink).await;
            });
            let e = TlsFlow::connect(a, cc, tls::server_name("echo.test").unwrap()).await.err().expect("fails");
            assert!(matches!(e, FlowError::Tls(TlsError::Protocol(_) | TlsError::Truncated)), "{e:?}");
            peer.await;
            // ... and to a server.
            let (mut a, b) = duplex(8192);
            a.write_all(&g).await.unwrap();
            a.shutdown().await.unwrap();
            let e = TlsFlow::accept(b, sc).await.err().expect("fails");
            assert!(matches!(e, FlowError::Tls(TlsError::Protocol(_) | TlsError::Truncated)), "{e:?}");
        })
        .unwrap();
    }
}

#[test]
fn a_stream_cut_without_close_notify_is_truncated_not_eof() {
    let p = pki("test ca");
    let (c, s) = tls13_handshake(&p, &p, "echo.test");
    let (mut c, s) = (c.unwrap(), s.unwrap());
    ex().block_on(async move {
        drop(s); // the transport ends, no close_notify
        let mut b = [0u8; 16];
        let e = c.read(&mut b).await.expect_err("not a clean end");
        assert!(matches!(e, FlowError::Tls(TlsError::Truncated)), "{e:?}");
    })
    .unwrap();
}

#[test]
fn pem_errors_name_the_file_and_configs_name_the_field() {
    let e = tls::certs_from_pem(std::path::Path::new("/nonexistent/ca.pem")).unwrap_err();
    assert!(e.to_string().contains("/nonexistent/ca.pem"), "{e}");
    let dir = std::env::temp_dir().join(format!("flow-tls-pem-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let empty = dir.join("empty.pem");
    std::fs::write(&empty, "not a pem file\n").unwrap();
    let e = tls::certs_from_pem(&empty).unwrap_err();
    assert!(matches!(e, TlsError::Pem { .. }) && e.to_string().contains("empty.pem"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
    let p = pki("test ca");
    let mut c = client(&p, &[], &[]);
    assert!(matches!(tls::client_config(&c), Err(TlsError::Config { field: "versions", .. })));
    c.versions = vec![TlsVersion::Tls13];
    c.roots.clear();
    assert!(matches!(tls::client_config(&c), Err(TlsError::Config { field: "roots", .. })));
}
