//! A WAN link emulator for network namespaces (this kernel has no `netem` qdisc).
//!
//! Two network namespaces are joined by a point-to-point link made of two TUN devices, one
//! in each namespace, and a forwarder that moves every IP packet from one to the other
//! through a [`str0m_netem::Netem`] model per direction: delay, jitter, random or bursty
//! (Gilbert–Elliott) loss, reordering and a rate limit with a finite buffer. TCP and QUIC
//! cross the same emulated link, so they suffer the same conditions.
//!
//! ```text
//!  namespace A                      this process                      namespace B
//!  10.77.0.1 ─ tun ──fd──▶ [netem A→B] ──fd──▶ tun ─ 10.77.0.2
//!            ◀──fd── [netem B→A] ◀──fd──
//! ```

mod forwarder;
mod namespace;

use std::fmt;
use std::time::Duration;

pub use forwarder::{WanLink, WanLinkStats};
pub use namespace::NetNs;
use str0m_netem::{Bitrate, DataSize, GilbertElliot, NetemConfig, Probability, RandomLoss};

/// Address of the link end in namespace A.
pub const ADDR_A: std::net::Ipv4Addr = std::net::Ipv4Addr::new(10, 77, 0, 1);
/// Address of the link end in namespace B.
pub const ADDR_B: std::net::Ipv4Addr = std::net::Ipv4Addr::new(10, 77, 0, 2);

/// How packets are lost.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Loss {
    None,
    /// Each packet independently, with this probability (0..=1).
    Random(f32),
    /// Gilbert–Elliott: bursts of loss averaging `burst` packets, with an overall loss
    /// probability close to `rate`.
    Bursty {
        rate: f32,
        burst: f32,
    },
}

/// Conditions of the emulated link, the same in both directions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkProfile {
    /// Round-trip time; each direction gets half.
    pub rtt: Duration,
    /// Delay variation per direction.
    pub jitter: Duration,
    pub loss: Loss,
    /// Every `n`-th packet is sent without its delay (overtakes others), as netem's `gap`.
    pub reorder_gap: Option<u32>,
    /// Link capacity in bits per second, with a buffer of `buffer` bytes (tail drop).
    pub rate: Option<(u64, usize)>,
    /// Seed of the random models, so runs are repeatable.
    pub seed: u64,
}

impl LinkProfile {
    /// A clean link with this round-trip time.
    pub fn rtt(rtt: Duration) -> LinkProfile {
        LinkProfile {
            rtt,
            jitter: Duration::ZERO,
            loss: Loss::None,
            reorder_gap: None,
            rate: None,
            seed: 1,
        }
    }

    pub fn with_loss(mut self, loss: Loss) -> LinkProfile {
        self.loss = loss;
        self
    }

    pub fn with_rate(mut self, bits_per_second: u64, buffer_bytes: usize) -> LinkProfile {
        self.rate = Some((bits_per_second, buffer_bytes));
        self
    }

    /// The netem model of one direction (`direction` varies the seed).
    pub(crate) fn netem(&self, direction: u64) -> NetemConfig {
        let mut config = NetemConfig::new()
            .latency(self.rtt / 2)
            .jitter(self.jitter)
            .seed(self.seed.wrapping_mul(31).wrapping_add(direction));
        config = match self.loss {
            Loss::None => config,
            Loss::Random(p) => config.loss(RandomLoss::new(Probability::new(p))),
            Loss::Bursty { rate, burst } => {
                // Bad state loses everything and lasts `burst` packets on average; the good
                // state lasts long enough that the stationary loss is `rate`:
                // rate = bad / (good + bad)  ⇒  good = bad · (1 − rate) / rate.
                let good = if rate > 0.0 {
                    burst * (1.0 - rate) / rate
                } else {
                    f32::MAX
                };
                config.loss(
                    GilbertElliot::new()
                        .good_duration(good)
                        .bad_duration(burst)
                        .loss_in_bad(Probability::ONE)
                        .loss_in_good(Probability::ZERO),
                )
            }
        };
        if let Some(gap) = self.reorder_gap {
            config = config.reorder_gap(gap);
        }
        if let Some((bps, buffer)) = self.rate {
            config = config.link(
                Bitrate::bps(bps),
                DataSize::bytes(i64::try_from(buffer).unwrap_or(i64::MAX)),
            );
        }
        config
    }
}

impl fmt::Display for LinkProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ms RTT", self.rtt.as_millis())?;
        if !self.jitter.is_zero() {
            write!(f, " ±{} ms", self.jitter.as_millis())?;
        }
        match self.loss {
            Loss::None => {}
            Loss::Random(p) => write!(f, ", {}% loss", p * 100.0)?,
            Loss::Bursty { rate, burst } => {
                write!(f, ", {}% loss in bursts of {burst}", rate * 100.0)?
            }
        }
        if let Some((bps, _)) = self.rate {
            write!(f, ", {} Mbit/s", bps / 1_000_000)?;
        }
        Ok(())
    }
}

/// Why the emulator could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetemError {
    #[error("the WAN emulator needs root (network namespaces and TUN devices): run as root")]
    NotPermitted,
    #[error("`{command}` failed: {detail}")]
    Command { command: String, detail: String },
    #[error("cannot enter network namespace {name}: {source}")]
    Enter {
        name: String,
        source: std::io::Error,
    },
    #[error("cannot create TUN device {name}: {detail}")]
    Tun { name: String, detail: String },
    #[error("the link forwarder thread failed: {0}")]
    Forwarder(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_describe_themselves() {
        let p = LinkProfile::rtt(Duration::from_millis(50)).with_loss(Loss::Random(0.02));
        assert_eq!(p.to_string(), "50 ms RTT, 2% loss");
        let b = LinkProfile::rtt(Duration::from_millis(50)).with_loss(Loss::Bursty {
            rate: 0.05,
            burst: 3.0,
        });
        assert_eq!(b.to_string(), "50 ms RTT, 5% loss in bursts of 3");
    }

    #[test]
    fn bursty_loss_model_matches_the_requested_rate() {
        use str0m_netem::{Input, Netem, Output};
        let profile = LinkProfile::rtt(Duration::ZERO).with_loss(Loss::Bursty {
            rate: 0.05,
            burst: 3.0,
        });
        let mut netem: Netem<Vec<u8>> = Netem::new(profile.netem(0));
        let now = std::time::Instant::now();
        let mut delivered = 0u32;
        for _ in 0..100_000 {
            netem.handle_input(Input::Packet(now, vec![0u8; 100]));
            while let Some(out) = netem.poll_output() {
                if let Output::Packet(_) = out {
                    delivered += 1;
                }
            }
        }
        let loss = 1.0 - f64::from(delivered) / 100_000.0;
        assert!((0.04..0.06).contains(&loss), "loss {loss}");
    }
}
