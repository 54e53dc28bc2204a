//! HAProxy's `option tcplog` line for a connection (frontend key
//! `log = "tcplog"`): what a session records about itself ([`Trace`]) and
//! the date format (`%t`, UTC). The line itself is built by
//! [`crate::proxy::Lb`], which knows the counters it carries.
//!
//! Termination states (two letters, as HAProxy's): `--` both sides closed in
//! order; `CD` / `SD` the client / server reset during the data phase; `cD`
//! client or tunnel timeout; `sD` server timeout; `PR` PROXY header refused;
//! `SC` no server could be connected (none eligible, or every attempt
//! failed); `PQ` the queue was full; `sQ` the queue timeout expired.

use std::net::SocketAddr;

/// What a session's log line says about it.
#[derive(Debug, Clone)]
pub struct Trace {
    /// Accepted at (executor clock, ns).
    pub t0: u64,
    /// Accepted at (wall clock, for the date).
    pub wall: std::time::SystemTime,
    /// The client (as its PROXY header gave it, if any).
    pub src: SocketAddr,
    /// The server connected to.
    pub server: Option<usize>,
    /// Time in the queue (`None`: never got that far).
    pub queued_ns: Option<u64>,
    /// Time to connect (`None`: never connected).
    pub connect_ns: Option<u64>,
    /// Connect attempts after the first.
    pub retries: u32,
    /// Bytes sent to the client.
    pub bytes_out: u64,
    /// A termination state decided before the data phase.
    pub code: Option<&'static str>,
}

impl Default for Trace {
    fn default() -> Trace {
        Trace {
            t0: 0,
            wall: std::time::UNIX_EPOCH,
            src: SocketAddr::from(([0, 0, 0, 0], 0)),
            server: None,
            queued_ns: None,
            connect_ns: None,
            retries: 0,
            bytes_out: 0,
            code: None,
        }
    }
}

/// HAProxy's `%t`: `06/Dec/2026:05:40:39.123` (UTC).
pub fn haproxy_date(t: std::time::SystemTime) -> String {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    const MON: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    format!(
        "{day:02}/{}/{year}:{:02}:{:02}:{:02}.{:03}",
        MON[(month - 1) as usize],
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        d.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn haproxy_dates_are_utc_day_month_year_and_milliseconds() {
        let t = std::time::UNIX_EPOCH + Duration::from_millis(1_796_534_439_123);
        assert_eq!(haproxy_date(t), "06/Dec/2026:05:20:39.123");
        assert_eq!(haproxy_date(std::time::UNIX_EPOCH), "01/Jan/1970:00:00:00.000");
        let leap = std::time::UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(haproxy_date(leap), "29/Feb/2000:00:00:00.000");
    }
}
