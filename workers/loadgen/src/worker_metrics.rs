//! A histogram read from a worker's `/metrics` (Prometheus text): the
//! worker's own timestamps, for the parts of a latency that only it sees.

use anyhow::{anyhow, Result};

/// Cumulative bucket counts of one histogram, by upper bound (`+Inf` last).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    pub buckets: Vec<(f64, f64)>,
}

impl Histogram {
    /// The histogram `name` in a `/metrics` text; empty when it has no
    /// sample yet (the exporter writes a histogram once it is recorded).
    pub fn parse(text: &str, name: &str) -> Result<Self> {
        let prefix = format!("{name}_bucket{{");
        let mut buckets = Vec::new();
        for line in text.lines().filter(|l| l.starts_with(&prefix)) {
            let bad = || anyhow!("a malformed bucket line: {line}");
            let le = line
                .split("le=\"")
                .nth(1)
                .and_then(|r| r.split('"').next())
                .ok_or_else(bad)?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().map_err(|_| bad())?
            };
            let count = line
                .rsplit(' ')
                .next()
                .and_then(|c| c.parse().ok())
                .ok_or_else(bad)?;
            buckets.push((le, count));
        }
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        Ok(Self { buckets })
    }

    /// What was recorded between `before` and `self`.
    pub fn since(&self, before: &Histogram) -> Histogram {
        let earlier = |le: f64| {
            before
                .buckets
                .iter()
                .find(|(b, _)| *b == le)
                .map_or(0.0, |(_, c)| *c)
        };
        Histogram {
            buckets: self
                .buckets
                .iter()
                .map(|&(le, c)| (le, c - earlier(le)))
                .collect(),
        }
    }

    pub fn count(&self) -> f64 {
        self.buckets.last().map_or(0.0, |(_, c)| *c)
    }

    /// The share of the samples at or below `le` (a bucket bound).
    pub fn share_within(&self, le: f64) -> Option<f64> {
        let n = self.count();
        let within = self.buckets.iter().find(|(b, _)| *b == le)?.1;
        (n > 0.0).then(|| within / n)
    }

    /// The `q` quantile, interpolated linearly inside its bucket as
    /// Prometheus's `histogram_quantile` does; `None` without samples.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let n = self.count();
        if n <= 0.0 {
            return None;
        }
        let rank = q * n;
        let mut lower = (0.0, 0.0);
        for &(le, c) in &self.buckets {
            if c >= rank {
                if le.is_infinite() {
                    return Some(lower.0);
                }
                let inside = c - lower.1;
                let part = if inside > 0.0 {
                    (rank - lower.1) / inside
                } else {
                    1.0
                };
                return Some(lower.0 + (le - lower.0) * part);
            }
            lower = (le, c);
        }
        Some(lower.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# TYPE h histogram
h_bucket{le=\"0.01\"} 50
h_bucket{le=\"0.02\"} 99
h_bucket{le=\"0.025\"} 100
h_bucket{le=\"+Inf\"} 100
h_sum 1.2
h_count 100
other_bucket{le=\"0.01\"} 7
";

    #[test]
    fn reads_quantiles_and_shares() {
        let h = Histogram::parse(TEXT, "h").unwrap();
        assert_eq!(h.count(), 100.0);
        let cases = [(0.5, 0.01), (0.25, 0.005), (0.99, 0.02), (1.0, 0.025)];
        for (q, want) in cases {
            let got = h.quantile(q).unwrap();
            assert!((got - want).abs() < 1e-9, "q {q}: {got} != {want}");
        }
        assert_eq!(h.share_within(0.02), Some(0.99));
        assert_eq!(h.share_within(0.03), None);
    }

    #[test]
    fn subtracts_an_earlier_reading() {
        let after = Histogram::parse(TEXT, "h").unwrap();
        let earlier = "h_bucket{le=\"0.01\"} 50\nh_bucket{le=\"0.02\"} 50\n\
                       h_bucket{le=\"0.025\"} 50\nh_bucket{le=\"+Inf\"} 50\n";
        let d = after.since(&Histogram::parse(earlier, "h").unwrap());
        assert_eq!(d.count(), 50.0);
        assert_eq!(d.share_within(0.01), Some(0.0));
        assert_eq!(d.share_within(0.02), Some(0.98));
        // Rank 49.5 of 50: half way into the (0.02, 0.025] bucket's one sample.
        assert!((d.quantile(0.99).unwrap() - 0.0225).abs() < 1e-9);
    }

    #[test]
    fn empty_and_malformed() {
        let none = Histogram::parse("", "h").unwrap();
        assert_eq!(none.quantile(0.99), None);
        assert_eq!(none.share_within(0.02), None);
        assert!(Histogram::parse("h_bucket{le=\"x\"} 1\n", "h").is_err());
        assert!(Histogram::parse("h_bucket{le=\"1\"} many\n", "h").is_err());
        // Everything above the last finite bound: the bound is the answer.
        let high =
            Histogram::parse("h_bucket{le=\"1\"} 0\nh_bucket{le=\"+Inf\"} 3\n", "h").unwrap();
        assert_eq!(high.quantile(0.99), Some(1.0));
    }
}
