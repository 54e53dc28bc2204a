//! Congestion control choices: RFC 5681/6582 NewReno (in `conn`) and RFC 9438
//! CUBIC (here). Slow start, fast retransmit and recovery are shared; the
//! algorithms differ in how far the window drops on a loss and how it grows in
//! congestion avoidance.

/// Which congestion control a connection uses (a required [`super::TcpConfig`]
/// value; listeners pass theirs to every accepted connection).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CongestionControl {
    /// RFC 5681 / RFC 6582: halve on loss, +1 MSS per RTT.
    NewReno,
    /// RFC 9438: multiply by 0.7 on loss, grow along a cubic curve in time.
    Cubic,
}

/// RFC 9438 4.1: the cubic scaling constant C.
pub const CUBIC_C: f64 = 0.4;
/// RFC 9438 4.6: the multiplicative decrease factor.
pub const CUBIC_BETA: f64 = 0.7;

/// CUBIC's state between congestion events. Windows are in bytes, times in ns.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Cubic {
    /// Window before the last reduction (W_max), bytes.
    w_max: f64,
    /// W_max before that, for fast convergence (RFC 9438 4.7).
    w_last_max: f64,
    /// Start of the current congestion-avoidance epoch.
    epoch_start: Option<u64>,
    /// Time to reach W_max again, seconds (K).
    k: f64,
    /// The Reno-friendly estimate (W_est), bytes.
    w_est: f64,
}

impl Cubic {
    /// RFC 9438 4.2, equation 1: W_cubic(t) in bytes, `t` in seconds.
    pub fn window_at(&self, t: f64, mss: f64) -> f64 {
        CUBIC_C * (t - self.k).powi(3) * mss + self.w_max
    }

    /// K in seconds (RFC 9438 4.2, equation 2).
    pub fn k(&self) -> f64 {
        self.k
    }

    /// A congestion event with window `cwnd`: returns the new ssthresh (RFC 9438
    /// 4.6), applying fast convergence (4.7).
    pub fn on_congestion(&mut self, cwnd: u32, mss: u32) -> u32 {
        let cwnd = cwnd as f64;
        self.w_max = if cwnd < self.w_last_max { cwnd * (1.0 + CUBIC_BETA) / 2.0 } else { cwnd };
        self.w_last_max = cwnd;
        self.epoch_start = None;
        ((cwnd * CUBIC_BETA) as u32).max(2 * mss)
    }

    /// A retransmission timeout (RFC 9438 4.8): start over from slow start.
    pub fn on_timeout(&mut self) {
        self.epoch_start = None;
    }

    /// Congestion avoidance: the new window after `acked` bytes were
    /// acknowledged at `now`, with smoothed RTT `rtt_ns` (RFC 9438 4.2-4.4).
    pub fn on_ack(&mut self, now: u64, cwnd: u32, acked: u32, mss: u32, rtt_ns: u64) -> u32 {
        let (mssf, cw) = (mss as f64, cwnd as f64);
        if self.epoch_start.is_none() {
            self.epoch_start = Some(now);
            if self.w_max < cw {
                // No reduction remembered (or we already passed it): start the
                // curve at the current window.
                self.w_max = cw;
            }
            self.k = ((self.w_max - cw) / mssf / CUBIC_C).max(0.0).cbrt();
            self.w_est = cw;
        }
        let t = (now - self.epoch_start.unwrap_or(now)) as f64 / 1e9;
        let rtt = rtt_ns as f64 / 1e9;
        // RFC 9438 4.2: aim for the curve one RTT ahead, growing at most 50% per RTT.
        let target = self.window_at(t + rtt, mssf).clamp(cw, 1.5 * cw);
        // RFC 9438 4.3: the Reno-friendly estimate.
        let alpha = 3.0 * (1.0 - CUBIC_BETA) / (1.0 + CUBIC_BETA);
        self.w_est += alpha * mssf * acked as f64 / cw;
        let next = if self.w_est > target {
            self.w_est
        } else {
            // RFC 9438 4.4/4.5: (target - cwnd) / cwnd per MSS acknowledged.
            cw + (target - cw) * acked as f64 / cw
        };
        (next.max(cw) as u32).max(cwnd)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSS: u32 = 1000;

    #[test]
    fn rfc9438_4_6_loss_reduces_to_beta_and_4_7_fast_convergence() {
        let mut c = Cubic::default();
        assert_eq!(c.on_congestion(100_000, MSS), 70_000);
        assert_eq!(c.w_max, 100_000.0);
        // A second loss below the previous maximum releases bandwidth faster.
        c.on_congestion(80_000, MSS);
        assert_eq!(c.w_max, 80_000.0 * 1.7 / 2.0);
    }

    #[test]
    fn rfc9438_4_2_curve_is_concave_to_w_max_at_k_then_convex() {
        // A long-RTT, large-window path, where the cubic curve (not the
        // Reno-friendly estimate of 4.3) decides the window.
        let mut c = Cubic::default();
        let ssthresh = c.on_congestion(1_000_000, MSS);
        let mut now = 0u64;
        let mut cwnd = ssthresh;
        let rtt = 100_000_000; // 100 ms
        let mut trace = Vec::new();
        // Acknowledge a window's worth of data every RTT for 30 s.
        for _ in 0..300 {
            cwnd = c.on_ack(now, cwnd, cwnd, MSS, rtt);
            trace.push((now, cwnd));
            now += rtt;
        }
        let k = c.k();
        // K = cbrt(W_max (1 - beta) / C) in MSS units: cbrt(1000 * 0.3 / 0.4).
        assert!((k - (1000.0f64 * 0.3 / 0.4).cbrt()).abs() < 1e-9, "K = {k}");
        let at = |secs: f64| trace.iter().find(|(t, _)| *t as f64 / 1e9 >= secs).unwrap().1;
        let near_k = at(k);
        assert!((960_000..=1_060_000).contains(&near_k), "back near W_max at K: {near_k}");
        // Concave: growth slows approaching K; convex: it speeds up after.
        let g1 = at(k * 0.5) - at(k * 0.25);
        let g2 = at(k) - at(k * 0.75);
        let g3 = at(k * 1.75) - at(k * 1.5);
        assert!(g1 > g2, "concave before K: {g1} vs {g2}");
        assert!(g3 > g2, "convex after K: {g3} vs {g2}");
    }

    #[test]
    fn rfc9438_4_3_reno_friendly_region_never_loses_to_reno() {
        let mut c = Cubic::default();
        let mut cwnd = c.on_congestion(20_000, MSS);
        let mut reno = cwnd;
        let rtt = 1_000_000; // 1 ms: short RTTs favour Reno
        let mut now = 0;
        for _ in 0..200 {
            cwnd = c.on_ack(now, cwnd, cwnd, MSS, rtt);
            reno += MSS / 2; // Reno with beta 0.5 adds 1 MSS/RTT; alpha makes up for 0.7
            now += rtt;
        }
        assert!(cwnd >= reno * 8 / 10, "cubic {cwnd} vs reno-ish {reno}");
    }
}
