//! The WAN scenarios: the sidecar and the load generator in namespace A, the gateway and
//! the upstream in namespace B, joined by the emulated link (`crate::netem`). Small requests
//! are measured while, optionally, a bulk download shares the same tunnel — the case where
//! one TCP connection's head-of-line blocking hurts every stream on it, and QUIC's
//! independent streams should not.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use serde::Serialize;

use super::setup::{Proxies, spawn_command, wait_listening};
use super::upstream::Upstream;
use super::{ProxyUsage, ScenarioError, procstat, wait_until_serving};
use crate::load::{self, LoadConfig, LoadResult, Progress};
use crate::netem::{ADDR_B, LinkProfile, NetNs, NetemError, WanLink};

/// Which tunnel the sidecar uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
pub enum Tunnel {
    /// Mutual-TLS QUIC.
    Quic,
    /// HTTP/2 over mutual TLS over TCP.
    H2,
}

impl Tunnel {
    pub fn name(self) -> &'static str {
        match self {
            Tunnel::Quic => "quic",
            Tunnel::H2 => "h2",
        }
    }
}

/// One WAN case.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct WanCase {
    pub profile_loss_percent: f32,
    pub bulk: bool,
    pub tunnel: Tunnel,
}

impl WanCase {
    pub fn name(&self) -> String {
        let bulk = if self.bulk { "+bulk" } else { "" };
        format!(
            "{} {}% loss{bulk}",
            self.tunnel.name(),
            self.profile_loss_percent
        )
    }
}

/// What a WAN run needs besides the case.
#[derive(Debug, Clone)]
pub struct WanSettings {
    pub aimux: PathBuf,
    pub scratch: PathBuf,
    /// The link without loss; each case sets its loss.
    pub link: LinkProfile,
    /// The small-request load (URL and headers are filled in).
    pub load: LoadConfig,
    /// Size of each bulk download, repeated back to back while measuring.
    pub bulk_bytes: u64,
}

/// A measured WAN case: latency of the small requests, bulk throughput alongside.
#[derive(Debug)]
pub struct WanMeasured {
    pub case: WanCase,
    pub result: LoadResult,
    pub proxies: Vec<ProxyUsage>,
    pub bulk_mbit_per_s: f64,
}

/// Ports inside the namespaces (which are fresh, so nothing else holds them).
const GATEWAY_QUIC: u16 = 4433;
const GATEWAY_H2: u16 = 4443;
const SIDECAR_LISTEN: &str = "127.0.0.1:15001";

pub fn measure(
    settings: &WanSettings,
    case: WanCase,
    run: usize,
    progress: &Arc<Progress>,
) -> Result<WanMeasured, ScenarioError> {
    let loss = crate::netem::Loss::Random(case.profile_loss_percent / 100.0);
    let profile = LinkProfile {
        loss,
        seed: settings.link.seed.wrapping_add(run as u64),
        ..settings.link
    };
    let prefix = format!("amxb{}r{run}", std::process::id() % 100_000);
    let link = WanLink::start(&prefix, profile).map_err(netem_error)?;
    let upstream = in_namespace(&link.b, Upstream::start)??;
    let config = mesh_file(
        &settings.aimux,
        &settings.scratch,
        upstream.addr,
        case.tunnel,
    )?;
    let config_str = config.to_string_lossy().into_owned();
    let log = |n: &str| {
        settings
            .scratch
            .join(format!("wan-{}-{n}.log", case.tunnel.name()))
    };
    let mut gateway_cmd = link.b.command(&settings.aimux.to_string_lossy());
    gateway_cmd.args(["gateway", "--config", &config_str]);
    let gateway = spawn_command(gateway_cmd, &log("gateway"))?;
    let mut sidecar_cmd = link.a.command(&settings.aimux.to_string_lossy());
    sidecar_cmd.args(["sidecar", "--config", &config_str, "--agent", "bench"]);
    let sidecar = spawn_command(sidecar_cmd, &log("sidecar"))?;
    let proxies = Proxies {
        url: format!("http://{SIDECAR_LISTEN}/"),
        headers: Vec::new(),
        processes: vec![("gateway".into(), gateway), ("sidecar".into(), sidecar)],
    };
    let measured = in_namespace(&link.a, || run_in_a(settings, case, &proxies, progress))??;
    drop(proxies);
    drop(upstream);
    drop(link);
    Ok(measured)
}

/// Runs in a thread inside namespace A: wait for the tunnel, warm up, then measure the
/// small requests with the bulk transfer (if any) running alongside.
fn run_in_a(
    settings: &WanSettings,
    case: WanCase,
    proxies: &Proxies,
    progress: &Arc<Progress>,
) -> Result<WanMeasured, ScenarioError> {
    let listen: SocketAddr = SIDECAR_LISTEN
        .parse()
        .map_err(|_| ScenarioError::Setup("bad listen address".into()))?;
    wait_listening(listen, "the sidecar")?;
    let mut config = settings.load.clone();
    config.url = proxies
        .url
        .parse()
        .map_err(|e| ScenarioError::Setup(format!("{e}")))?;
    wait_until_serving(&config)?;
    if !config.warmup.is_zero() {
        let warmup = LoadConfig {
            duration: config.warmup,
            warmup: Duration::ZERO,
            ..config.clone()
        };
        load::run(&warmup, &Arc::new(Progress::default()))?;
    }
    let stop = AtomicBool::new(false);
    let bulk_bytes = AtomicU64::new(0);
    let before: Vec<Option<Duration>> = proxies
        .processes
        .iter()
        .map(|(_, c)| procstat::cpu_time(c.id()))
        .collect();
    let started = Instant::now();
    let result = std::thread::scope(|scope| {
        if case.bulk {
            scope.spawn(|| bulk_loop(listen, settings.bulk_bytes, &stop, &bulk_bytes));
        }
        let measured = LoadConfig {
            warmup: Duration::ZERO,
            ..config.clone()
        };
        let result = load::run(&measured, progress);
        stop.store(true, Ordering::Relaxed);
        result
    })?;
    let elapsed = started.elapsed().as_secs_f64().max(f64::EPSILON);
    let requests = result.requests.max(1) as f64;
    let usage = proxies
        .processes
        .iter()
        .zip(before)
        .map(|((role, child), before)| {
            let cpu = match (before, procstat::cpu_time(child.id())) {
                (Some(b), Some(a)) => a.saturating_sub(b).as_secs_f64() * 1e6 / requests,
                _ => f64::NAN,
            };
            let rss =
                procstat::peak_rss(child.id()).map_or(f64::NAN, |b| b as f64 / (1024.0 * 1024.0));
            ProxyUsage {
                role: role.clone(),
                cpu_us_per_request: cpu,
                peak_rss_mb: rss,
            }
        })
        .collect();
    let bulk_mbit_per_s = bulk_bytes.load(Ordering::Relaxed) as f64 * 8.0 / 1e6 / elapsed;
    Ok(WanMeasured {
        case,
        result,
        proxies: usage,
        bulk_mbit_per_s,
    })
}

/// Downloads `len` bytes again and again through the sidecar until `stop`; counts bytes.
fn bulk_loop(listen: SocketAddr, len: u64, stop: &AtomicBool, received: &AtomicU64) {
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    rt.block_on(async {
        while !stop.load(Ordering::Relaxed) {
            let Ok(stream) = tokio::net::TcpStream::connect(listen).await else {
                return;
            };
            let Ok((mut sender, conn)) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
            else {
                return;
            };
            tokio::spawn(conn);
            while !stop.load(Ordering::Relaxed) {
                let Ok(request) = hyper::Request::get(format!("/bulk?len={len}"))
                    .header("host", listen.to_string())
                    .body(Empty::<Bytes>::new())
                else {
                    return;
                };
                let Ok(response) = sender.send_request(request).await else {
                    break;
                };
                let mut body = response.into_body();
                while let Some(Ok(frame)) = body.frame().await {
                    if let Some(data) = frame.data_ref() {
                        received.fetch_add(data.len() as u64, Ordering::Relaxed);
                    }
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                }
            }
        }
    });
}

/// The mesh file of the WAN scenarios: gateway in B on both tunnel listeners, agent
/// `bench` in A using `tunnel`.
fn mesh_file(
    aimux: &Path,
    dir: &Path,
    upstream: SocketAddr,
    tunnel: Tunnel,
) -> Result<PathBuf, ScenarioError> {
    super::setup::ensure_pki(aimux, dir, &[ADDR_B.to_string().as_str()])?;
    let text = format!(
        r#"[mesh]
trust_domain = "bench.local"
certs = "pki"

[gateway]
quic = "{ADDR_B}:{GATEWAY_QUIC}"
h2 = "{ADDR_B}:{GATEWAY_H2}"

[[agent]]
name = "bench"
transport = "{transport}"
listeners = [{{ listen = "{SIDECAR_LISTEN}", service = "upstream" }}]

[[service]]
name = "upstream"
upstreams = ["http://{upstream}"]

[[access]]
from = ["bench"]
to = ["upstream"]
"#,
        transport = tunnel.name()
    );
    let path = dir.join(format!("mesh-wan-{}.toml", tunnel.name()));
    std::fs::write(&path, text)?;
    Ok(path)
}

/// Runs `f` on a thread inside `ns` (threads it spawns stay there too).
fn in_namespace<T: Send>(ns: &NetNs, f: impl FnOnce() -> T + Send) -> Result<T, ScenarioError> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                ns.enter_current_thread().map_err(netem_error)?;
                Ok(f())
            })
            .join()
            .unwrap_or_else(|_| Err(ScenarioError::Setup("a namespace thread panicked".into())))
    })
}

fn netem_error(e: NetemError) -> ScenarioError {
    match e {
        NetemError::NotPermitted => ScenarioError::Missing(e.to_string()),
        other => ScenarioError::Setup(other.to_string()),
    }
}
