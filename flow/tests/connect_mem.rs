//! The connect registry over in-memory flows: built-in `mem://`, an
//! application's own scheme layered over another, TLS over `mem://` through
//! `tls_over`, and errors that name what was missing or wrong.

mod common;

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use common::{leaf, pki, resolver_config};
use flow::connect::{connect, tls_over, BoxFlow, ConnectError, Context, Registry, UriError};
use flow::dns::{Hosts, Resolver};
use flow::exec::{Executor, TimerReactor};
use flow::happy_eyeballs::HappyEyeballsConfig;
use flow::kernel::tests_support::{listen_config, tcp_config};
use flow::mem::MemNet;
use flow::tls::{self, ClientSettings, ServerSettings, TlsFlow, TlsVersion};
use flow::{Flow, Listener, Net, TcpConfig};

fn he() -> HappyEyeballsConfig {
    HappyEyeballsConfig {
        resolution_delay: Duration::from_millis(50),
        connection_attempt_delay: Duration::from_millis(250),
        first_address_family_count: 1,
        attempt_timeout: Duration::from_secs(2),
        overall_timeout: Duration::from_secs(5),
        max_concurrent: 4,
    }
}

fn ctx(net: &MemNet, registry: Registry) -> Context {
    let mut hosts = Hosts::new();
    hosts.insert("echo.test", "2001:2::2".parse().unwrap());
    hosts.insert("echo.test", "198.18.0.2".parse().unwrap());
    let r = Resolver::new(
        resolver_config(&["198.18.0.53:53"], Duration::from_millis(200), 0, 8, 8),
        flow::connect::Dialer::of(net.clone()),
        hosts,
    )
    .unwrap();
    Context::new(registry).with(net.clone()).with::<TcpConfig>(tcp_config()).with(he()).with_resolver(Rc::new(r))
}

fn run<T: 'static>(f: impl std::future::Future<Output = T> + 'static) -> T {
    let mut ex = Executor::new(TimerReactor::virtual_time(pmd::VirtualClock::new(), 1_000));
    ex.block_on(f).unwrap()
}

/// An echo server on `net` at `port` of both families; with a TLS config, TLS first.
fn echo(net: &MemNet, port: u16, tls: Option<Arc<rustls::ServerConfig>>) {
    for any in ["0.0.0.0", "[::]"] {
        echo_on(net, &format!("{any}:{port}"), tls.clone());
    }
}

fn echo_on(net: &MemNet, addr: &str, tls: Option<Arc<rustls::ServerConfig>>) {
    let mut l = net.listen(addr.parse().unwrap(), &listen_config(7)).unwrap();
    flow::spawn(async move {
        loop {
            let (f, _) = l.accept().await.unwrap();
            let tls = tls.clone();
            flow::spawn(async move {
                let mut f: BoxFlow = match tls {
                    Some(c) => Box::new(TlsFlow::accept(f, c).await.unwrap()),
                    None => Box::new(f),
                };
                let mut buf = [0u8; 1024];
                loop {
                    match f.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => f.write_all(&buf[..n]).await.unwrap(),
                    }
                }
                let _ = f.close().await;
            });
        }
    });
}

#[test]
fn mem_scheme_resolves_a_name_and_connects_ipv6_first() {
    run(async {
        let net = MemNet::new();
        echo(&net, 7, None);
        let c = ctx(&net, Registry::builtin());
        let mut f = connect(&c, "mem://Echo.Test:7").await.unwrap();
        assert_eq!(f.peer_addr().unwrap(), "[2001:2::2]:7".parse().unwrap());
        f.write_all(b"ping").await.unwrap();
        let mut b = [0u8; 4];
        f.read_exact(&mut b).await.unwrap();
        assert_eq!(&b, b"ping");
        let f = connect(&c, "mem://198.18.0.2:7").await.unwrap();
        assert_eq!(f.peer_addr().unwrap(), "198.18.0.2:7".parse().unwrap());
    });
}

#[test]
fn an_application_scheme_layers_a_preamble_over_another_scheme() {
    run(async {
        let net = MemNet::new();
        echo(&net, 7, None);
        let mut reg = Registry::builtin();
        // A PROXY protocol v1 header, then the stream: over whatever mem:// gives.
        reg.register(
            "proxy-v1+mem",
            None,
            Rc::new(|ctx: Context, uri| {
                Box::pin(async move {
                    let mut f = ctx.connect_uri(uri.with_scheme("mem")).await?;
                    let (l, p) = (f.local_addr()?, f.peer_addr()?);
                    let fam = if p.is_ipv4() { "TCP4" } else { "TCP6" };
                    let hdr = format!("PROXY {fam} {} {} {} {}\r\n", l.ip(), p.ip(), l.port(), p.port());
                    f.write_all(hdr.as_bytes()).await?;
                    Ok(f)
                })
            }),
        );
        let c = ctx(&net, reg);
        let mut f = connect(&c, "PROXY-v1+mem://198.18.0.2:7").await.unwrap();
        let mut b = [0u8; 10];
        f.read_exact(&mut b).await.unwrap();
        assert_eq!(&b, b"PROXY TCP4");
    });
}

#[test]
fn tls_over_mem_verifies_the_name_and_echoes() {
    let ca = pki("connect ca");
    let (chain, key) = leaf(&ca, "echo.test", false);
    let sc = tls::server_config(&ServerSettings {
        chain,
        key,
        versions: vec![TlsVersion::Tls13],
        alpn: vec![],
        client_roots: None,
    })
    .unwrap();
    let cc = tls::client_config(&ClientSettings {
        roots: vec![ca.ca.clone()],
        versions: vec![TlsVersion::Tls13],
        alpn: vec![],
        client_cert: None,
    })
    .unwrap();
    run(async move {
        let net = MemNet::new();
        echo(&net, 443, Some(sc));
        let mut reg = Registry::builtin();
        reg.register("tls+mem", Some(443), tls_over("mem"));
        let c = ctx(&net, reg).with_tls_client(cc);
        let mut f = connect(&c, "tls+mem://echo.test").await.unwrap();
        f.write_all(b"over tls").await.unwrap();
        let mut b = [0u8; 8];
        f.read_exact(&mut b).await.unwrap();
        assert_eq!(&b, b"over tls");
        f.shutdown().await.unwrap();
        // By address: the certificate has no IP SAN, so verification fails, typed.
        let e = connect(&c, "tls+mem://[2001:2::2]").await.err().expect("no IP SAN");
        assert!(matches!(e.tls(), Some(tls::TlsError::Certificate(_))), "{e}");
    });
}

#[test]
fn errors_name_the_scheme_host_port_or_missing_value() {
    run(async {
        let net = MemNet::new();
        let e = connect(&ctx(&net, Registry::builtin()), "gopher://a.test:70").await.err().unwrap();
        assert!(matches!(&e, ConnectError::Uri(UriError::UnknownScheme { scheme, .. }) if scheme == "gopher"), "{e}");
        assert!(e.to_string().contains("registered: mem, tcp, tls"), "{e}");
        let e = connect(&ctx(&net, Registry::builtin()), "tcp://a.test:99999").await.err().unwrap();
        assert!(e.to_string().contains("port '99999'"), "{e}");
        let e = connect(&ctx(&net, Registry::builtin()), "tcp://a.test").await.err().unwrap();
        assert!(e.to_string().contains("tcp: a port is needed"), "{e}");
        let bare = Context::new(Registry::builtin());
        let e = connect(&bare, "tcp://198.18.0.2:7").await.err().unwrap();
        assert!(matches!(&e, ConnectError::Missing { field, .. } if field.contains("network")), "{e}");
        let e = connect(&bare.clone().with(net.clone()), "mem://198.18.0.2:7").await.err().unwrap();
        assert!(matches!(&e, ConnectError::Missing { field, .. } if field.contains("TcpConfig")), "{e}");
        let no_resolver =
            Context::new(Registry::builtin()).with(net.clone()).with::<TcpConfig>(tcp_config()).with(he());
        let e = connect(&no_resolver, "mem://echo.test:7").await.err().unwrap();
        assert!(matches!(&e, ConnectError::Missing { field: "resolver", .. }), "{e}");
        let e = connect(&no_resolver, "tls://echo.test").await.err().unwrap();
        assert!(e.to_string().contains("TLS client config"), "{e}");
        // Nobody listens: refused, with the address in the message.
        let e = connect(&ctx(&net, Registry::builtin()), "mem://198.18.0.9:7").await.err().unwrap();
        assert!(e.to_string().contains("198.18.0.9:7: connection refused"), "{e}");
    });
}
