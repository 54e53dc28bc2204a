//! proxy_proto
