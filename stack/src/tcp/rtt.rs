//! Retransmission timeout estimation (RFC 6298).
//!
//! Times are nanoseconds. Initial, minimum and maximum RTO are explicit values
//! of the connection's configuration; nothing here has a hidden default.

/// RTO bounds from the configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RtoConfig {
    /// RTO before any RTT sample (RFC 6298 2.1 recommends 1 s).
    pub initial_ns: u64,
    /// Lower bound (RFC 6298 2.4 recommends 1 s; data centres use far less).
    pub min_ns: u64,
    /// Upper bound (RFC 6298 2.5: at least 60 s).
    pub max_ns: u64,
}

/// Clock granularity G of RFC 6298: our clock is exact to the nanosecond, but a
/// zero variance term would make the RTO equal the SRTT and fire on any jitter.
const GRANULARITY_NS: u64 = 1_000_000;

/// Smoothed RTT state.
#[derive(Clone, Debug)]
pub struct RttEstimator {
    cfg: RtoConfig,
    srtt_ns: Option<u64>,
    rttvar_ns: u64,
    rto_ns: u64,
    backoff: u32,
}

impl RttEstimator {
    /// A fresh estimator (RFC 6298 2.1).
    pub fn new(cfg: RtoConfig) -> Self {
        RttEstimator {
            rto_ns: cfg.initial_ns.clamp(cfg.min_ns, cfg.max_ns),
            cfg,
            srtt_ns: None,
            rttvar_ns: 0,
            backoff: 0,
        }
    }

    /// Feeds one RTT measurement (RFC 6298 2.2 and 2.3); clears the backoff.
    pub fn sample(&mut self, r: u64) {
        match self.srtt_ns {
            None => {
                self.srtt_ns = Some(r);
                self.rttvar_ns = r / 2;
            }
            Some(srtt) => {
                let diff = srtt.abs_diff(r);
                self.rttvar_ns = (3 * self.rttvar_ns + diff) / 4;
                self.srtt_ns = Some((7 * srtt + r) / 8);
            }
        }
        let srtt = self.srtt_ns.unwrap_or(r);
        self.rto_ns = (srtt + (4 * self.rttvar_ns).max(GRANULARITY_NS)).clamp(self.cfg.min_ns, self.cfg.max_ns);
        self.backoff = 0;
    }

    /// The current RTO including exponential backoff (RFC 6298 5.5), capped at max.
    pub fn rto(&self) -> u64 {
        self.rto_ns.saturating_mul(1u64 << self.backoff.min(20)).min(self.cfg.max_ns)
    }

    /// Doubles the RTO after a timeout (RFC 6298 5.5).
    pub fn back_off(&mut self) {
        self.backoff = self.backoff.saturating_add(1);
    }

    /// Forgets the backoff: the peer answered, so the path is alive (a window
    /// opening after zero-window probes; the persist timer's backoff says
    /// nothing about the path's RTT).
    pub fn reset_backoff(&mut self) {
        self.backoff = 0;
    }

    /// Smoothed RTT, once measured.
    pub fn srtt(&self) -> Option<u64> {
        self.srtt_ns
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;
    const CFG: RtoConfig = RtoConfig { initial_ns: 1000 * MS, min_ns: 200 * MS, max_ns: 60_000 * MS };

    #[test]
    fn rfc6298_2_1_initial_rto_is_the_configured_value() {
        assert_eq!(RttEstimator::new(CFG).rto(), 1000 * MS);
    }

    #[test]
    fn rfc6298_2_2_first_sample_sets_srtt_and_half_variance() {
        let mut e = RttEstimator::new(CFG);
        e.sample(100 * MS);
        assert_eq!(e.srtt(), Some(100 * MS));
        assert_eq!(e.rto(), 300 * MS); // 100 + 4 * 50
    }

    #[test]
    fn rfc6298_2_3_later_samples_are_smoothed() {
        let mut e = RttEstimator::new(CFG);
        e.sample(100 * MS);
        e.sample(200 * MS);
        // rttvar = 3/4*50 + 1/4*100 = 62.5; srtt = 7/8*100 + 1/8*200 = 112.5
        assert_eq!(e.srtt(), Some(112_500_000));
        assert_eq!(e.rto(), 112_500_000 + 250 * MS);
    }

    #[test]
    fn rfc6298_2_4_rto_is_clamped_to_min_and_max() {
        let mut e = RttEstimator::new(CFG);
        e.sample(MS);
        assert_eq!(e.rto(), 200 * MS);
        e.sample(100_000 * MS);
        assert_eq!(e.rto(), 60_000 * MS);
    }

    #[test]
    fn rfc6298_5_5_timeouts_double_the_rto_up_to_max_and_a_sample_resets() {
        let mut e = RttEstimator::new(CFG);
        e.back_off();
        assert_eq!(e.rto(), 2000 * MS);
        for _ in 0..30 {
            e.back_off();
        }
        assert_eq!(e.rto(), 60_000 * MS);
        e.sample(100 * MS);
        assert_eq!(e.rto(), 300 * MS);
    }
}
