//! Transports chosen from values (DESIGN.md, "Transports from values"; the
//! MirageOS `mimic` design in Rust terms).
//!
//! `connect(&ctx, "tls://name:443")` parses the URI, finds the scheme in the
//! context's [`Registry`] and runs its constructor, which takes what it needs
//! from the [`Context`] — a typed map (one value per type): the core's network
//! ([`Dialer`]), the [`TcpConfig`], the resolver ([`Resolver`](crate::dns::Resolver)
//! or any [`Lookup`]), the [`HappyEyeballsConfig`], the TLS client
//! configuration ([`TlsClientConfig`]). A value a scheme needs and the context
//! lacks is an error naming it; nothing has a default.
//!
//! Built in:
//! * `tcp://host:port`: resolve (a name), race the addresses (RFC 8305), TCP;
//! * `tls://host[:443]`: `tcp://` to the same host and port, then TLS verifying
//!   the host (SNI for a name);
//! * `mem://host:port`: the same race over the context's [`MemNet`] (tests).
//!
//! An application registers its own scheme with a constructor that may connect
//! another scheme first ([`Context::connect_uri`]) and layer on the flow it gets
//! (e.g. `proxy-v2+tcp://` writing a PROXY header over `tcp://`), or use
//! [`tls_over`] to put TLS over another scheme.

pub mod dial;
pub mod race;
pub mod uri;

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;
use std::rc::Rc;
use std::sync::Arc;

pub use dial::{BoxDatagram, BoxFlow, Dial, Dialer, LocalBoxFuture};
pub use race::{race, RaceError};
pub use uri::{Host, Uri, UriError};

use crate::dns::Lookup;
use crate::happy_eyeballs::HappyEyeballsConfig;
use crate::mem::MemNet;
use crate::tls::{TlsError, TlsFlow};
use crate::{FlowError, TcpConfig};

/// Why a connect failed.
#[derive(Debug)]
pub enum ConnectError {
    /// The URI was malformed, or its scheme unknown.
    Uri(UriError),
    /// The context lacks a value the scheme needs.
    Missing {
        /// The scheme.
        scheme: String,
        /// The value (its field name).
        field: &'static str,
    },
    /// Happy eyeballs: bad configuration, no address, every address failed,
    /// or timed out.
    Race {
        /// The host.
        host: String,
        /// What happened.
        error: RaceError,
    },
    /// The connection was made but a layer over it failed (a TLS handshake,
    /// a scheme's own preamble).
    Flow(FlowError),
}

impl ConnectError {
    /// The TLS error, if that is what it was.
    pub fn tls(&self) -> Option<&TlsError> {
        match self {
            ConnectError::Flow(FlowError::Tls(e)) => Some(e),
            _ => None,
        }
    }
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::Uri(e) => write!(f, "{e}"),
            ConnectError::Missing { scheme, field } => {
                write!(f, "{scheme}: the context has no {field} (Context::with_..)")
            }
            ConnectError::Race { host, error } => write!(f, "{host}: {error}"),
            ConnectError::Flow(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ConnectError {}

impl From<FlowError> for ConnectError {
    fn from(e: FlowError) -> Self {
        ConnectError::Flow(e)
    }
}

impl From<UriError> for ConnectError {
    fn from(e: UriError) -> Self {
        ConnectError::Uri(e)
    }
}

/// A scheme's constructor: from the context and the parsed URI to a flow.
pub type Connector = Rc<dyn Fn(Context, Uri) -> LocalBoxFuture<'static, Result<BoxFlow, ConnectError>>>;

#[derive(Clone)]
struct Scheme {
    default_port: Option<u16>,
    connect: Connector,
}

/// Schemes and their constructors.
#[derive(Clone, Default)]
pub struct Registry {
    schemes: HashMap<String, Scheme>,
}

/// The resolver a context uses.
#[derive(Clone)]
pub struct ResolverRef(pub Rc<dyn Lookup>);

/// The TLS client configuration a context uses.
#[derive(Clone)]
pub struct TlsClientConfig(pub Arc<rustls::ClientConfig>);

impl Registry {
    /// No schemes at all.
    pub fn empty() -> Registry {
        Registry::default()
    }

    /// `tcp`, `tls` (default port 443) and `mem`.
    pub fn builtin() -> Registry {
        let mut r = Registry::empty();
        r.register("tcp", None, Rc::new(|ctx, uri| Box::pin(tcp(ctx, uri))));
        r.register("mem", None, Rc::new(|ctx, uri| Box::pin(mem(ctx, uri))));
        r.register("tls", Some(443), tls_over("tcp"));
        r
    }

    /// Adds (or replaces) a scheme; names are lower-case.
    pub fn register(&mut self, scheme: &str, default_port: Option<u16>, connect: Connector) {
        self.schemes.insert(scheme.to_ascii_lowercase(), Scheme { default_port, connect });
    }

    /// The registered schemes, sorted.
    pub fn schemes(&self) -> Vec<String> {
        let mut v: Vec<String> = self.schemes.keys().cloned().collect();
        v.sort();
        v
    }

    /// Parses `uri` with the schemes' default ports; an unknown scheme is an error.
    pub fn parse(&self, uri: &str) -> Result<Uri, UriError> {
        let (scheme, _) = uri::scheme_of(uri)?;
        if !self.schemes.contains_key(&scheme) {
            return Err(UriError::UnknownScheme { scheme, known: self.schemes() });
        }
        uri::parse(uri, |s| self.schemes.get(s).and_then(|x| x.default_port))
    }
}

/// What a connect uses: the registry and one value per type.
#[derive(Clone)]
pub struct Context {
    registry: Rc<Registry>,
    values: HashMap<TypeId, Rc<dyn Any>>,
}

impl Context {
    /// A context with `registry` and no values.
    pub fn new(registry: Registry) -> Context {
        Context { registry: Rc::new(registry), values: HashMap::new() }
    }

    /// Adds a value (replacing one of the same type).
    pub fn with<T: 'static>(mut self, v: T) -> Context {
        self.values.insert(TypeId::of::<T>(), Rc::new(v));
        self
    }

    /// The network to connect over.
    pub fn with_net<N: crate::Net>(self, net: N) -> Context {
        self.with(Dialer::of(net))
    }

    /// The resolver for names.
    pub fn with_resolver(self, r: Rc<dyn Lookup>) -> Context {
        self.with(ResolverRef(r))
    }

    /// The TLS client configuration of `tls://`.
    pub fn with_tls_client(self, c: Arc<rustls::ClientConfig>) -> Context {
        self.with(TlsClientConfig(c))
    }

    /// The value of type `T`, if any.
    pub fn get<T: 'static>(&self) -> Option<&T> {
        self.values.get(&TypeId::of::<T>()).and_then(|v| v.downcast_ref())
    }

    /// The value of type `T`, or an error naming `field` for `scheme`.
    pub fn require<T: 'static>(&self, scheme: &str, field: &'static str) -> Result<&T, ConnectError> {
        self.get().ok_or_else(|| ConnectError::Missing { scheme: scheme.to_string(), field })
    }

    /// The registry.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Connects a parsed URI (how a layered scheme reaches the one below).
    pub async fn connect_uri(&self, uri: Uri) -> Result<BoxFlow, ConnectError> {
        let s = self
            .registry
            .schemes
            .get(&uri.scheme)
            .ok_or_else(|| UriError::UnknownScheme { scheme: uri.scheme.clone(), known: self.registry.schemes() })?;
        (s.connect)(self.clone(), uri).await
    }
}

/// Opens a flow to `uri` with whatever the context holds.
pub async fn connect(ctx: &Context, uri: &str) -> Result<BoxFlow, ConnectError> {
    let u = ctx.registry.parse(uri)?;
    ctx.connect_uri(u).await
}

/// Resolves and races `uri`'s host over `dial` (shared by `tcp` and `mem`).
async fn race_over(ctx: &Context, uri: &Uri, dial: Dialer) -> Result<BoxFlow, ConnectError> {
    let scheme = uri.scheme.as_str();
    let tcp = ctx.require::<TcpConfig>(scheme, "tcp config (TcpConfig)")?.clone();
    let he = ctx.require::<HappyEyeballsConfig>(scheme, "happy-eyeballs config (HappyEyeballsConfig)")?.clone();
    let lookup = match &uri.host {
        Host::Name(_) => Some(ctx.require::<ResolverRef>(scheme, "resolver")?.0.clone()),
        Host::Ip(_) => None,
    };
    let (f, _addr) = race(&he, &uri.host, uri.port, lookup, |a| dial.0.connect(a, &tcp))
        .await
        .map_err(|error| ConnectError::Race { host: uri.host.to_string(), error })?;
    Ok(f)
}

async fn tcp(ctx: Context, uri: Uri) -> Result<BoxFlow, ConnectError> {
    let d = ctx.require::<Dialer>(&uri.scheme, "network (Context::with_net)")?.clone();
    race_over(&ctx, &uri, d).await
}

async fn mem(ctx: Context, uri: Uri) -> Result<BoxFlow, ConnectError> {
    let net = ctx.require::<MemNet>(&uri.scheme, "in-memory network (MemNet)")?.clone();
    race_over(&ctx, &uri, Dialer::of(net)).await
}

/// A constructor that connects `lower://` to the same host and port, then runs
/// a TLS client handshake over it, verifying the host (a name is sent as SNI).
pub fn tls_over(lower: &'static str) -> Connector {
    Rc::new(move |ctx: Context, uri: Uri| {
        Box::pin(async move {
            let cfg =
                ctx.require::<TlsClientConfig>(&uri.scheme, "TLS client config (Context::with_tls_client)")?.0.clone();
            let name = match &uri.host {
                Host::Name(n) => crate::tls::server_name(n).map_err(FlowError::Tls)?,
                Host::Ip(ip) => rustls::pki_types::ServerName::IpAddress((*ip).into()),
            };
            let inner = ctx.connect_uri(uri.with_scheme(lower)).await?;
            let t = TlsFlow::connect(inner, cfg, name).await?;
            Ok(Box::new(t) as BoxFlow)
        })
    })
}
