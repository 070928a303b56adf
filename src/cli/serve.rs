//! `aimux up`, `aimux gateway` and `aimux sidecar`: the long-running commands.

use crate::output::outln;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::mesh::{self, Mesh, Origin};
use crate::{assemble, bootstrap, process, reload};

#[derive(Debug, clap::Args)]
pub(crate) struct UpArgs {
    /// Mesh file [default: ./mesh.toml, else the embedded default]
    #[arg(long, short, value_name = "FILE")]
    config: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub(crate) struct GatewayArgs {
    /// Mesh file [default: ./mesh.toml, else the embedded default]
    #[arg(long, short, value_name = "FILE")]
    config: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub(crate) struct SidecarArgs {
    /// Mesh file [default: ./mesh.toml, else the embedded default]
    #[arg(long, short, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The agent this sidecar serves (an [[agent]] name in the mesh file)
    #[arg(long, value_name = "NAME")]
    agent: String,
}

/// Reads and validates the mesh file, and creates development certificates if it asks.
fn load(config: Option<&std::path::Path>) -> anyhow::Result<(Origin, Mesh)> {
    let (origin, source) = mesh::locate(config)?;
    let mesh =
        mesh::parse(origin.clone(), source).map_err(|invalid| anyhow::anyhow!("{invalid}"))?;
    for line in bootstrap::ensure_dev_certs(&mesh)? {
        outln!("created {line}");
    }
    tracing::info!(%origin, "mesh loaded");
    Ok((origin, mesh))
}

pub(crate) fn up(args: UpArgs) -> anyhow::Result<()> {
    let (origin, mesh) = load(args.config.as_deref())?;
    process::run(|shutdown, tasks| async move {
        let gateway = start_gateway(&origin, &mesh, &shutdown, &tasks).await?;
        for agent in &mesh.agents {
            start_sidecar(&mesh, &agent.name, &shutdown, &tasks).await?;
        }
        outln!(
            "aimux is up (certificates in {}); Ctrl-C stops it. Try:",
            mesh.certs_dir.display()
        );
        print_examples(&mesh);
        wait(gateway, &shutdown).await
    })
}

pub(crate) fn gateway(args: GatewayArgs) -> anyhow::Result<()> {
    let (origin, mesh) = load(args.config.as_deref())?;
    process::run(|shutdown, tasks| async move {
        let gateway = start_gateway(&origin, &mesh, &shutdown, &tasks).await?;
        wait(gateway, &shutdown).await
    })
}

pub(crate) fn sidecar(args: SidecarArgs) -> anyhow::Result<()> {
    let (_, mesh) = load(args.config.as_deref())?;
    process::run(|shutdown, tasks| async move {
        let sidecar = start_sidecar(&mesh, &args.agent, &shutdown, &tasks).await?;
        wait(sidecar, &shutdown).await
    })
}

type Component = tokio::task::JoinHandle<anyhow::Result<()>>;

async fn start_gateway(
    origin: &Origin,
    mesh: &Mesh,
    shutdown: &CancellationToken,
    tasks: &TaskTracker,
) -> anyhow::Result<Component> {
    let builtins = Arc::new(assemble::Builtins::new(shutdown, tasks));
    let config = assemble::gateway(mesh, &builtins).await?;
    let gateway = aimux_gateway::Gateway::bind(config)
        .await
        .context("starting the gateway")?;
    // The embedded default is not a file anyone can edit; a real file is watched.
    if let Origin::File(path) = origin {
        tasks.spawn(reload::watch(
            path.clone(),
            mesh.clone(),
            gateway.reloader(),
            builtins,
            shutdown.clone(),
        ));
    }
    if let Some(addr) = gateway.quic_addr() {
        outln!("gateway `{}`: QUIC on {addr}", mesh.gateway.name);
    }
    if let Some(addr) = gateway.h2_addr() {
        outln!(
            "gateway `{}`: HTTP/2 tunnel on {addr} (TCP, mutual TLS)",
            mesh.gateway.name
        );
    }
    if let Some(addr) = gateway.dev_http_addr() {
        outln!(
            "gateway `{}`: dev-mode HTTP on {addr} (trusts x-aimux-identity: never use in production)",
            mesh.gateway.name
        );
    }
    if let Some(addr) = gateway.admin_addr() {
        outln!(
            "gateway `{}`: admin on http://{addr} (/healthz /readyz /metrics)",
            mesh.gateway.name
        );
    }
    let token = shutdown.clone();
    Ok(tasks.spawn(async move { gateway.run(token).await.context("gateway stopped") }))
}

async fn start_sidecar(
    mesh: &Mesh,
    agent: &str,
    shutdown: &CancellationToken,
    tasks: &TaskTracker,
) -> anyhow::Result<Component> {
    let config = assemble::sidecar(mesh, agent)?;
    let sidecar = aimux_sidecar::Sidecar::bind(config)
        .await
        .with_context(|| format!("starting the sidecar of `{agent}`"))?;
    for (addr, service) in sidecar.listener_addrs() {
        match service {
            Some(service) => outln!("sidecar `{agent}`: http://{addr} → service `{service}`"),
            None => outln!("sidecar `{agent}`: proxy on {addr} (HTTP_PROXY=http://{addr})"),
        }
    }
    let token = shutdown.clone();
    let agent = agent.to_owned();
    Ok(tasks.spawn(async move {
        sidecar
            .run(token)
            .await
            .with_context(|| format!("sidecar of `{agent}` stopped"))
    }))
}

/// Waits for a signal or for the component to fail; a failure stops everything.
async fn wait(component: Component, shutdown: &CancellationToken) -> anyhow::Result<()> {
    let result = component.await.context("component task panicked")?;
    shutdown.cancel();
    result
}

/// One command per listener that a new user can paste; the built-in demo services get
/// requests that show what they do.
fn print_examples(mesh: &Mesh) {
    for agent in &mesh.agents {
        for l in &agent.listeners {
            let builtin = mesh
                .services
                .iter()
                .find(|s| s.name == l.service)
                .and_then(|s| s.upstreams.first())
                .and_then(|u| match u {
                    mesh::Upstream::Builtin(b) => Some(*b),
                    mesh::Upstream::Url(_) => None,
                });
            let example = match builtin {
                Some(mesh::Builtin::McpTools) => format!(
                    "curl -s http://{}/mcp -H 'content-type: application/json' -d '{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\"}}'",
                    l.listen
                ),
                _ => format!("curl -si http://{}/ -d 'hello mesh'", l.listen),
            };
            outln!("  {example}    # {} → {}", agent.name, l.service);
        }
    }
}
