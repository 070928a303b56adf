//! Turning histograms into what people read: a table, JSON, `.hgrm` percentile
//! distributions (HdrHistogram's `outputPercentileDistribution` text format, readable by
//! the HdrHistogram plotter), and SVG plots (`plot.rs`).

use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::load::LoadResult;

/// The percentiles every table and JSON summary reports.
pub const PERCENTILES: [f64; 5] = [50.0, 90.0, 99.0, 99.9, 99.99];

/// One scenario's numbers, as written to JSON.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub scenario: String,
    pub requests: u64,
    pub errors: u64,
    pub throughput_rps: f64,
    pub mean_us: f64,
    /// `(percentile, latency µs)` pairs for [`PERCENTILES`].
    pub percentiles_us: Vec<(f64, u64)>,
    pub max_us: u64,
    /// The same, measured from the actual send (no coordinated-omission correction).
    pub uncorrected_p99_us: u64,
    pub error_samples: Vec<String>,
}

impl Summary {
    pub fn new(scenario: &str, result: &LoadResult) -> Summary {
        let h = &result.corrected;
        Summary {
            scenario: scenario.to_owned(),
            requests: result.requests,
            errors: result.errors,
            throughput_rps: result.throughput(),
            mean_us: h.mean(),
            percentiles_us: PERCENTILES
                .iter()
                .map(|p| (*p, h.value_at_percentile(*p)))
                .collect(),
            max_us: h.max(),
            uncorrected_p99_us: result.uncorrected.value_at_percentile(99.0),
            error_samples: result.error_samples.clone(),
        }
    }

    pub fn percentile(&self, p: f64) -> Option<u64> {
        self.percentiles_us
            .iter()
            .find(|(q, _)| (*q - p).abs() < 1e-9)
            .map(|(_, v)| *v)
    }
}

/// A fixed-width table; the first summary is the baseline the `p99 ×` column divides by.
pub fn table(summaries: &[Summary]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<22} {:>9} {:>7} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7}",
        "scenario",
        "requests",
        "errors",
        "req/s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "p99.9 ms",
        "max ms",
        "p99 ×"
    );
    let baseline = summaries
        .first()
        .and_then(|s| s.percentile(99.0))
        .unwrap_or(1)
        .max(1);
    for s in summaries {
        let ms = |p: f64| s.percentile(p).map_or(f64::NAN, |v| v as f64 / 1000.0);
        let _ = writeln!(
            out,
            "{:<22} {:>9} {:>7} {:>10.1} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>7.2}",
            s.scenario,
            s.requests,
            s.errors,
            s.throughput_rps,
            ms(50.0),
            ms(90.0),
            ms(99.0),
            ms(99.9),
            s.max_us as f64 / 1000.0,
            s.percentile(99.0).unwrap_or(0) as f64 / baseline as f64,
        );
    }
    out
}

/// HdrHistogram percentile distribution, values in milliseconds.
pub fn hgrm(histogram: &Histogram<u64>) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    let mut total = 0u64;
    for v in histogram.iter_quantiles(5) {
        total += v.count_since_last_iteration();
        let q = v.quantile_iterated_to();
        let ms = v.value_iterated_to() as f64 / 1000.0;
        if q < 1.0 {
            let _ = writeln!(
                out,
                "{ms:>12.3} {q:>14.12} {total:>10} {:>14.2}",
                1.0 / (1.0 - q)
            );
        } else {
            let _ = writeln!(out, "{ms:>12.3} {q:>14.12} {total:>10}");
        }
    }
    let _ = writeln!(
        out,
        "#[Mean    = {:>12.3}, StdDeviation   = {:>12.3}]",
        histogram.mean() / 1000.0,
        histogram.stdev() / 1000.0
    );
    let _ = writeln!(
        out,
        "#[Max     = {:>12.3}, Total count    = {:>12}]",
        histogram.max() as f64 / 1000.0,
        histogram.len()
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn histogram(values: &[u64]) -> Histogram<u64> {
        let mut h = Histogram::new_with_bounds(1, 60_000_000, 3).unwrap();
        for v in values {
            h.record(*v).unwrap();
        }
        h
    }

    #[test]
    fn hgrm_is_cumulative_and_ends_at_the_maximum() {
        let h = histogram(&(1..=1000).map(|i| i * 10).collect::<Vec<_>>());
        let text = hgrm(&h);
        let rows: Vec<Vec<&str>> = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty() && !l.contains("Value"))
            .map(|l| l.split_whitespace().collect())
            .collect();
        let counts: Vec<u64> = rows.iter().map(|r| r[2].parse().unwrap()).collect();
        assert!(
            counts.windows(2).all(|w| w[0] <= w[1]),
            "TotalCount must not decrease"
        );
        assert_eq!(*counts.last().unwrap(), 1000);
        // The last row is the max (10 ms) at the histogram's 3-significant-digit resolution.
        let last_ms: f64 = rows.last().unwrap()[0].parse().unwrap();
        assert!((last_ms - 10.0).abs() <= 0.01, "last value {last_ms} ms");
        assert!(text.contains("Total count    =         1000"));
    }

    #[test]
    fn table_shows_ratio_to_the_first_scenario() {
        let mk = |name: &str, p99: u64| Summary {
            scenario: name.into(),
            requests: 10,
            errors: 0,
            throughput_rps: 10.0,
            mean_us: 1.0,
            percentiles_us: PERCENTILES.iter().map(|p| (*p, p99)).collect(),
            max_us: p99,
            uncorrected_p99_us: p99,
            error_samples: vec![],
        };
        let t = table(&[mk("direct", 100), mk("mesh", 250)]);
        let mesh_row = t.lines().find(|l| l.starts_with("mesh")).unwrap();
        assert!(mesh_row.trim_end().ends_with("2.50"), "{t}");
    }
}
