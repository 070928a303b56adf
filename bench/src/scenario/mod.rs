//! Scenarios side by side against the same upstream: the direct path, the gateway in dev
//! mode, the sidecar → QUIC → gateway production path, and nginx as a plain reverse proxy.
//! Each runs as real processes; the load generator measures latency, and /proc gives the
//! CPU time and peak memory of each proxy process over the measured window.

pub mod procstat;
mod setup;
pub mod upstream;
pub mod wan;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::load::{self, LoadConfig, LoadResult, Mode, Progress};
pub use setup::Proxies;
use setup::{Destination, mesh_files, nginx, spawn, wait_listening};

/// The paths a request can take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
pub enum Scenario {
    /// Load generator → upstream.
    Direct,
    /// → gateway dev-mode HTTP listener → upstream.
    Dev,
    /// → sidecar → mutual-TLS QUIC → gateway → upstream (the production path).
    Quic,
    /// → nginx reverse proxy → upstream (baseline; needs nginx installed).
    Nginx,
    /// → sidecar → HTTP/2 over mutual TLS over TCP → gateway → upstream (the design of
    /// Istio's ambient mode, in the same processes as the QUIC path).
    H2,
    /// → sidecar → QUIC → gateway → the peer agent's own QUIC connection → its sidecar →
    /// upstream (agent-to-agent delivery, SPEC.md §12.2).
    A2a,
}

impl Scenario {
    pub const ALL: [Scenario; 6] = [
        Scenario::Direct,
        Scenario::Dev,
        Scenario::Quic,
        Scenario::H2,
        Scenario::A2a,
        Scenario::Nginx,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::Direct => "direct",
            Scenario::Dev => "gateway-dev",
            Scenario::Quic => "sidecar-quic-gateway",
            Scenario::Nginx => "nginx",
            Scenario::H2 => "sidecar-h2-gateway",
            Scenario::A2a => "sidecar-quic-gateway-sidecar",
        }
    }
}

/// Why a scenario could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScenarioError {
    #[error("cannot start {what}: {source}")]
    Spawn {
        what: String,
        source: std::io::Error,
    },
    #[error("setting up the scenario failed: {0}")]
    Setup(String),
    #[error("{0}")]
    Missing(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Load(#[from] load::LoadError),
}

/// Shared for all scenarios of one run.
#[derive(Debug)]
pub struct Bench {
    /// The `aimux` binary (release build for real numbers).
    pub aimux: PathBuf,
    pub scratch: PathBuf,
    pub upstream: upstream::Upstream,
    /// The load of every scenario; `url` and `headers` are filled in per scenario.
    pub load: LoadConfig,
    /// Run the proxies on this CPU only (`taskset`), apart from the load generator.
    pub proxy_cpu: Option<usize>,
}

/// Pins the calling thread, and every thread it starts afterwards, to `cpu`.
pub fn pin_current_thread(cpu: usize) -> Result<(), ScenarioError> {
    let mut set = nix::sched::CpuSet::new();
    set.set(cpu)
        .map_err(|e| ScenarioError::Setup(format!("CPU {cpu}: {e}")))?;
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set)
        .map_err(|e| ScenarioError::Setup(format!("pinning to CPU {cpu}: {e}")))
}

/// CPU and memory of one proxy process over the measured window.
#[derive(Debug, Clone, Serialize)]
pub struct ProxyUsage {
    pub role: String,
    pub cpu_us_per_request: f64,
    pub peak_rss_mb: f64,
}

/// One measured run of one scenario.
#[derive(Debug)]
pub struct Measured {
    pub scenario: Scenario,
    pub result: LoadResult,
    pub proxies: Vec<ProxyUsage>,
}

impl Bench {
    /// Brings up the proxies of `scenario`.
    pub fn start(&self, scenario: Scenario) -> Result<Proxies, ScenarioError> {
        let aimux = &self.aimux;
        let upstream = self.upstream.addr;
        match scenario {
            Scenario::Direct => Ok(Proxies {
                url: format!("http://{upstream}/"),
                headers: Vec::new(),
                processes: Vec::new(),
            }),
            Scenario::Nginx => nginx(&self.scratch, upstream, self.proxy_cpu),
            Scenario::Dev | Scenario::Quic | Scenario::H2 | Scenario::A2a => {
                let transport = if scenario == Scenario::H2 {
                    "h2"
                } else {
                    "quic"
                };
                let to = if scenario == Scenario::A2a {
                    Destination::Agent
                } else {
                    Destination::Upstream
                };
                let files = mesh_files(aimux, &self.scratch, upstream, transport, to)?;
                let config = files.config.to_string_lossy().into_owned();
                let log = |n: &str| self.scratch.join(format!("{}-{n}.log", scenario.name()));
                let gateway = spawn(
                    aimux,
                    &["gateway", "--config", &config],
                    &log("gateway"),
                    self.proxy_cpu,
                )?;
                let mut proxies = Proxies {
                    url: String::new(),
                    headers: Vec::new(),
                    processes: vec![("gateway".into(), gateway)],
                };
                wait_listening(files.dev_http, "the gateway")?;
                if scenario == Scenario::Dev {
                    proxies.url = format!("http://{}/", files.dev_http);
                    proxies.headers = vec![
                        ("host".into(), "upstream".into()),
                        ("x-aimux-identity".into(), "bench".into()),
                    ];
                } else {
                    if scenario == Scenario::A2a {
                        // The peer connects first, so the first request finds it.
                        let peer = spawn(
                            aimux,
                            &["sidecar", "--config", &config, "--agent", "peer"],
                            &log("peer-sidecar"),
                            self.proxy_cpu,
                        )?;
                        proxies.processes.push(("peer-sidecar".into(), peer));
                    }
                    let sidecar = spawn(
                        aimux,
                        &["sidecar", "--config", &config, "--agent", "bench"],
                        &log("sidecar"),
                        self.proxy_cpu,
                    )?;
                    proxies.processes.push(("sidecar".into(), sidecar));
                    wait_listening(files.listener, "the sidecar")?;
                    proxies.url = format!("http://{}/", files.listener);
                }
                Ok(proxies)
            }
        }
    }

    /// Warms up, then measures `scenario` once.
    pub fn measure(
        &self,
        scenario: Scenario,
        progress: &Arc<Progress>,
    ) -> Result<Measured, ScenarioError> {
        let proxies = self.start(scenario)?;
        let mut config = self.load.clone();
        config.url = proxies
            .url
            .parse()
            .map_err(|e| ScenarioError::Setup(format!("bad URL {}: {e}", proxies.url)))?;
        config.headers.extend(proxies.headers.iter().cloned());
        wait_until_serving(&config)?;
        let warmup = LoadConfig {
            duration: config.warmup,
            warmup: Duration::ZERO,
            ..config.clone()
        };
        if !warmup.duration.is_zero() {
            load::run(&warmup, &Arc::new(Progress::default()))?;
        }
        let before: Vec<Option<Duration>> = proxies
            .processes
            .iter()
            .map(|(_, c)| procstat::cpu_time(c.id()))
            .collect();
        let measured = LoadConfig {
            warmup: Duration::ZERO,
            ..config
        };
        let result = load::run(&measured, progress)?;
        let requests = result.requests.max(1) as f64;
        let proxies_usage = proxies
            .processes
            .iter()
            .zip(before)
            .map(|((role, child), before)| {
                let after = procstat::cpu_time(child.id());
                let cpu = match (before, after) {
                    (Some(b), Some(a)) => a.saturating_sub(b).as_secs_f64() * 1e6 / requests,
                    _ => f64::NAN,
                };
                let rss = procstat::peak_rss(child.id())
                    .map_or(f64::NAN, |b| b as f64 / (1024.0 * 1024.0));
                ProxyUsage {
                    role: role.clone(),
                    cpu_us_per_request: cpu,
                    peak_rss_mb: rss,
                }
            })
            .collect();
        Ok(Measured {
            scenario,
            result,
            proxies: proxies_usage,
        })
    }
}

/// The proxies connect in the background; a few single requests until one succeeds.
pub(crate) fn wait_until_serving(config: &LoadConfig) -> Result<(), ScenarioError> {
    let probe = LoadConfig {
        mode: Mode::Closed,
        connections: 1,
        duration: Duration::from_millis(100),
        warmup: Duration::ZERO,
        ..config.clone()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let result = load::run(&probe, &Arc::new(Progress::default()));
        match result {
            Ok(r) if r.requests > 0 && r.errors == 0 => return Ok(()),
            _ if std::time::Instant::now() > deadline => {
                let detail = match result {
                    Ok(r) => format!("{:?}", r.error_samples),
                    Err(e) => e.to_string(),
                };
                return Err(ScenarioError::Setup(format!(
                    "{} never answered: {detail}",
                    config.url
                )));
            }
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}
