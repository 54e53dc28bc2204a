//! The resolver's sans-IO core: build a query, judge an answer. hickory-proto
//! is the wire codec; everything about *which* answer to believe is here.
//!
//! An answer is accepted only if it comes from the server asked, carries the
//! query's ID, is a response, and repeats the question (name, case-insensitively,
//! type and class IN); anything else is a [`Verdict::Mismatch`], which the
//! resolver counts and ignores (RFC 5452 9.1: spoofing resistance rests on ID,
//! source port and question matching).

use std::net::{IpAddr, SocketAddr};

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, RecordType};

use crate::happy_eyeballs::Family;

/// The record type of a family.
pub fn rtype(f: Family) -> RecordType {
    match f {
        Family::V6 => RecordType::AAAA,
        Family::V4 => RecordType::A,
    }
}

/// A fully qualified name for `name` (a trailing dot added if missing).
pub fn fqdn(name: &str) -> Result<Name, String> {
    let n = if name.ends_with('.') { name.to_string() } else { format!("{name}.") };
    Name::from_ascii(&n).map_err(|e| format!("'{name}' is not a DNS name: {e}"))
}

/// The query for `name`/`family` with `id`, recursion desired.
pub fn query(id: u16, name: &Name, family: Family) -> Vec<u8> {
    let mut m = Message::new();
    m.set_id(id).set_message_type(MessageType::Query).set_op_code(OpCode::Query).set_recursion_desired(true);
    let mut q = Query::query(name.clone(), rtype(family));
    q.set_query_class(DNSClass::IN);
    m.add_query(q);
    m.to_vec().expect("a query of a valid name encodes")
}

/// What an answer means.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Not the answer to our question (or not DNS): ignore it, count it.
    Mismatch(&'static str),
    /// Our answer, but truncated: ask again over TCP.
    Truncated,
    /// The addresses (maybe none: the name has no record of the type) and the
    /// lowest TTL of the records used, seconds.
    Answer {
        /// Addresses, in the server's order.
        addrs: Vec<IpAddr>,
        /// Lowest TTL along the CNAME chain and the addresses.
        ttl: u32,
    },
    /// NXDOMAIN.
    NoSuchName,
    /// Another response code (SERVFAIL, REFUSED, ...).
    ServerError(String),
}

/// Judges `bytes` received from `from` as the answer to query `id` for
/// `name`/`family` sent to `server`. Never panics, whatever the bytes.
pub fn judge(bytes: &[u8], from: SocketAddr, server: SocketAddr, id: u16, name: &Name, family: Family) -> Verdict {
    if from != server {
        return Verdict::Mismatch("source address");
    }
    let Ok(m) = Message::from_vec(bytes) else { return Verdict::Mismatch("not a DNS message") };
    if m.id() != id {
        return Verdict::Mismatch("id");
    }
    if m.message_type() != MessageType::Response {
        return Verdict::Mismatch("not a response");
    }
    let q = m.queries();
    if q.len() != 1 || q[0].query_class() != DNSClass::IN || q[0].query_type() != rtype(family) || q[0].name() != name {
        return Verdict::Mismatch("question");
    }
    if m.truncated() {
        return Verdict::Truncated;
    }
    match m.response_code() {
        ResponseCode::NoError => {}
        ResponseCode::NXDomain => return Verdict::NoSuchName,
        rc => return Verdict::ServerError(rc.to_string()),
    }
    // Follow the CNAME chain from the question's name, in whatever order the
    // records come (bounded: at most as many steps as records).
    let mut names: Vec<Name> = vec![name.clone()];
    let mut ttl = u32::MAX;
    let answers = m.answers();
    for _ in 0..answers.len() {
        let mut grew = false;
        for r in answers {
            if let Some(RData::CNAME(c)) = r.data() {
                if names.iter().any(|n| n == r.name()) && !names.contains(&c.0) {
                    names.push(c.0.clone());
                    ttl = ttl.min(r.ttl());
                    grew = true;
                }
            }
        }
        if !grew {
            break;
        }
    }
    let mut addrs = Vec::new();
    for r in answers {
        if r.dns_class() != DNSClass::IN || !names.iter().any(|n| n == r.name()) {
            continue;
        }
        let ip = match (r.data(), family) {
            (Some(RData::A(a)), Family::V4) => IpAddr::V4(a.0),
            (Some(RData::AAAA(a)), Family::V6) => IpAddr::V6(a.0),
            _ => continue,
        };
        ttl = ttl.min(r.ttl());
        addrs.push(ip);
    }
    if addrs.is_empty() {
        ttl = 0;
    }
    Verdict::Answer { addrs, ttl }
}
