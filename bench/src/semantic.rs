//! The cost of semantic routing: loading all-MiniLM-L6-v2, embedding route examples, and
//! choosing a route for an intent on a cache miss (the model runs) and on a cache hit (the
//! LRU answers). Latencies go into HDR histograms, like every other figure of the bench.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use aimux_gateway::semantic::{SemanticConfig, SemanticMatcher, SemanticRoute};
use hdrhistogram::Histogram;

/// What to measure.
#[derive(Debug, Clone)]
pub struct SemanticBench {
    /// The model folder; `None` measures the lexical matcher.
    pub model_dir: Option<PathBuf>,
    /// Distinct intents (each one cache miss, then `hits` cache hits).
    pub intents: usize,
    /// Cache hits per intent.
    pub hits: usize,
}

/// The measured figures, as a Markdown table.
pub fn run(b: &SemanticBench) -> anyhow::Result<String> {
    let routes = vec![
        SemanticRoute {
            route: 0,
            examples: vec!["analyze budget".into(), "forecast revenue".into()],
        },
        SemanticRoute {
            route: 1,
            examples: vec!["reset a user's password".into(), "unlock an account".into()],
        },
    ];
    let cfg = SemanticConfig {
        model_dir: b.model_dir.clone(),
        cache_capacity: b.intents.max(1),
        ..SemanticConfig::default()
    };
    let started = Instant::now();
    let matcher = SemanticMatcher::new(&cfg, routes)?;
    let load = started.elapsed();
    let mut miss = histogram()?;
    let mut hit = histogram()?;
    for i in 0..b.intents {
        let text = format!("analyze q{i} budget for region {}", i * 7);
        let t = Instant::now();
        matcher.decide(&text)?;
        record(&mut miss, t.elapsed());
        for _ in 0..b.hits {
            let t = Instant::now();
            matcher.decide(&text)?;
            record(&mut hit, t.elapsed());
        }
    }
    let row = |name: &str, h: &Histogram<u64>| {
        format!(
            "| {name} | {} | {:.1} | {:.1} | {:.1} |\n",
            h.len(),
            h.value_at_quantile(0.5) as f64 / 1000.0,
            h.value_at_quantile(0.99) as f64 / 1000.0,
            h.max() as f64 / 1000.0
        )
    };
    let mut out = format!(
        "backend: {}\nload (model and examples): {:.1} ms\n\n| decision | count | p50 µs | p99 µs | max µs |\n|---|---|---|---|---|\n",
        matcher.backend(),
        load.as_secs_f64() * 1000.0
    );
    out.push_str(&row("cache miss (intent embedded)", &miss));
    out.push_str(&row("cache hit", &hit));
    Ok(out)
}

fn histogram() -> anyhow::Result<Histogram<u64>> {
    // Nanoseconds up to a minute, three significant digits.
    Ok(Histogram::new_with_bounds(1, 60_000_000_000, 3)?)
}

fn record(h: &mut Histogram<u64>, d: Duration) {
    let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
    h.saturating_record(nanos.max(1));
}
