//! Repeated runs of several scenarios, summarised as medians with min and max, and ratios
//! against the first scenario measured in the same run.

use std::fmt::Write as _;

use serde::Serialize;

use crate::load::LoadResult;
use crate::report::Summary;
use crate::scenario::{Measured, ProxyUsage};

/// A statistic over repetitions.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    pub fn of(values: &[f64]) -> Spread {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        v.sort_by(f64::total_cmp);
        if v.is_empty() {
            return Spread {
                median: f64::NAN,
                min: f64::NAN,
                max: f64::NAN,
            };
        }
        let mid = v.len() / 2;
        let median = if v.len() % 2 == 1 {
            v[mid]
        } else {
            (v[mid - 1] + v[mid]) / 2.0
        };
        Spread {
            median,
            min: v[0],
            max: v[v.len() - 1],
        }
    }
}

/// One scenario across repetitions.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioSummary {
    pub scenario: String,
    pub runs: Vec<Summary>,
    pub p50_ms: Spread,
    pub p99_ms: Spread,
    pub p999_ms: Spread,
    pub throughput_rps: Spread,
    pub errors: u64,
    /// Per proxy role: CPU µs per request and peak RSS MB.
    pub proxies: Vec<(String, Spread, Spread)>,
}

pub fn summarise(name: &str, runs: &[Measured]) -> ScenarioSummary {
    let pairs: Vec<(&LoadResult, &[ProxyUsage])> = runs
        .iter()
        .map(|m| (&m.result, m.proxies.as_slice()))
        .collect();
    summarise_runs(name, &pairs)
}

/// The same from `(latency, proxy usage)` pairs, one per repetition.
pub fn summarise_runs(name: &str, runs: &[(&LoadResult, &[ProxyUsage])]) -> ScenarioSummary {
    let summaries: Vec<Summary> = runs.iter().map(|(r, _)| Summary::new(name, r)).collect();
    let ms = |p: f64| -> Vec<f64> {
        summaries
            .iter()
            .map(|s| s.percentile(p).map_or(f64::NAN, |v| v as f64 / 1000.0))
            .collect()
    };
    let roles: Vec<String> = runs
        .first()
        .map(|(_, p)| p.iter().map(|p| p.role.clone()).collect())
        .unwrap_or_default();
    let proxies = roles
        .iter()
        .map(|role| {
            let usage: Vec<&ProxyUsage> = runs
                .iter()
                .flat_map(|(_, p)| p.iter().filter(|p| &p.role == role))
                .collect();
            let cpu: Vec<f64> = usage.iter().map(|u| u.cpu_us_per_request).collect();
            let rss: Vec<f64> = usage.iter().map(|u| u.peak_rss_mb).collect();
            (role.clone(), Spread::of(&cpu), Spread::of(&rss))
        })
        .collect();
    ScenarioSummary {
        scenario: name.to_owned(),
        p50_ms: Spread::of(&ms(50.0)),
        p99_ms: Spread::of(&ms(99.0)),
        p999_ms: Spread::of(&ms(99.9)),
        throughput_rps: Spread::of(
            &summaries
                .iter()
                .map(|s| s.throughput_rps)
                .collect::<Vec<_>>(),
        ),
        errors: summaries.iter().map(|s| s.errors).sum(),
        proxies,
        runs: summaries,
    }
}

/// A Markdown table: median [min–max]; the last columns compare with the first scenario.
pub fn markdown(scenarios: &[ScenarioSummary]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| scenario | p50 ms | p99 ms | p99.9 ms | req/s | errors | p99 − baseline | proxy CPU µs/req | proxy peak RSS MB |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|");
    let base = scenarios.first().map_or(f64::NAN, |s| s.p99_ms.median);
    for s in scenarios {
        let spread = |x: &Spread, digits: usize| {
            format!("{:.d$} [{:.d$}–{:.d$}]", x.median, x.min, x.max, d = digits)
        };
        let cpu: Vec<String> = s
            .proxies
            .iter()
            .map(|(r, c, _)| format!("{r} {}", spread(c, 1)))
            .collect();
        let rss: Vec<String> = s
            .proxies
            .iter()
            .map(|(r, _, m)| format!("{r} {:.1}", m.max))
            .collect();
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {:.0} | {} | {:+.3} ms | {} | {} |",
            s.scenario,
            spread(&s.p50_ms, 3),
            spread(&s.p99_ms, 3),
            spread(&s.p999_ms, 3),
            s.throughput_rps.median,
            s.errors,
            s.p99_ms.median - base,
            if cpu.is_empty() {
                "–".into()
            } else {
                cpu.join(", ")
            },
            if rss.is_empty() {
                "–".into()
            } else {
                rss.join(", ")
            },
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_takes_the_median_and_ignores_nan() {
        let s = Spread::of(&[3.0, 1.0, f64::NAN, 2.0]);
        assert_eq!((s.median, s.min, s.max), (2.0, 1.0, 3.0));
        assert_eq!(Spread::of(&[1.0, 2.0, 3.0, 4.0]).median, 2.5);
        assert!(Spread::of(&[]).median.is_nan());
    }
}
