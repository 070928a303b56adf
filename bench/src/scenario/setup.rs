//! Bringing up each scenario's proxies as real processes: the `aimux` binary (gateway in
//! dev mode, or gateway + sidecar over QUIC) and nginx, from files written into a scratch
//! directory. Every process is killed when its [`Proxies`] value is dropped.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::ScenarioError;

/// The proxies of one scenario, and where the load goes.
#[derive(Debug)]
pub struct Proxies {
    pub url: String,
    pub headers: Vec<(String, String)>,
    /// `(role, process)`: the processes whose CPU and memory are reported.
    pub processes: Vec<(String, Child)>,
}

impl Drop for Proxies {
    fn drop(&mut self) {
        for (_, child) in &mut self.processes {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub(crate) fn free_tcp() -> Result<SocketAddr, ScenarioError> {
    Ok(crate::ports::free_tcp()?)
}

fn free_udp() -> Result<SocketAddr, ScenarioError> {
    Ok(crate::ports::free_udp()?)
}

/// Runs `aimux ARGS` to completion.
fn aimux(aimux: &Path, args: &[&str]) -> Result<(), ScenarioError> {
    let out = Command::new(aimux)
        .args(args)
        .output()
        .map_err(|e| ScenarioError::Spawn {
            what: format!(
                "{} (build it with `cargo build --release`)",
                aimux.display()
            ),
            source: e,
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(ScenarioError::Setup(format!(
            "aimux {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        )))
    }
}

/// A PKI and a mesh file for one agent `bench` calling service `upstream`.
pub(crate) struct MeshFiles {
    pub(crate) config: PathBuf,
    pub(crate) dev_http: SocketAddr,
    pub(crate) listener: SocketAddr,
}

/// Creates the bench PKI in `dir/pki` once: a CA, the gateway (with `ips` as IP SANs
/// besides 127.0.0.1) and the agent `bench`.
pub(crate) fn ensure_pki(aimux_bin: &Path, dir: &Path, ips: &[&str]) -> Result<(), ScenarioError> {
    let pki = dir.join("pki");
    if pki.join("ca.crt").exists() {
        return Ok(());
    }
    let d = pki
        .to_str()
        .ok_or_else(|| ScenarioError::Setup("non-UTF-8 scratch path".into()))?;
    aimux(
        aimux_bin,
        &["certs", "init", "--dir", d, "--trust-domain", "bench.local"],
    )?;
    let mut gateway = vec![
        "certs",
        "issue",
        "--dir",
        d,
        "--name",
        "gateway",
        "--gateway",
        "--ip",
        "127.0.0.1",
    ];
    for ip in ips {
        gateway.extend(["--ip", ip]);
    }
    aimux(aimux_bin, &gateway)?;
    for agent in ["bench", "peer"] {
        aimux(aimux_bin, &["certs", "issue", "--dir", d, "--name", agent])?;
    }
    Ok(())
}

/// Where the mesh sends the bench agent's requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Destination {
    /// Service `upstream` is the upstream's URL.
    Upstream,
    /// Service `upstream` is agent `peer`, whose sidecar delivers to the upstream as if it
    /// were the peer agent's own HTTP server.
    Agent,
}

pub(crate) fn mesh_files(
    aimux_bin: &Path,
    dir: &Path,
    upstream: SocketAddr,
    transport: &str,
    to: Destination,
) -> Result<MeshFiles, ScenarioError> {
    ensure_pki(aimux_bin, dir, &[])?;
    let (quic, h2, dev_http, listener) = (free_udp()?, free_tcp()?, free_tcp()?, free_tcp()?);
    let transport_line = if transport == "quic" {
        String::new()
    } else {
        format!("transport = \"{transport}\"\n")
    };
    let service = match to {
        Destination::Upstream => {
            format!("[[service]]\nname = \"upstream\"\nupstreams = [\"http://{upstream}\"]\n")
        }
        Destination::Agent => format!(
            "[[service]]\nname = \"upstream\"\nagent = \"peer\"\n\n[[agent]]\nname = \"peer\"\n\
             inbound = {{ http = \"{upstream}\", allow = [\"bench\"] }}\n"
        ),
    };
    let text = format!(
        r#"[mesh]
trust_domain = "bench.local"
certs = "pki"

[gateway]
quic = "{quic}"
h2 = "{h2}"
dev_http = "{dev_http}"

[[agent]]
name = "bench"
{transport_line}listeners = [{{ listen = "{listener}", service = "upstream" }}]

{service}

[[access]]
from = ["bench"]
to = ["upstream"]
"#
    );
    let suffix = if to == Destination::Agent { "-a2a" } else { "" };
    let config = dir.join(format!("mesh-{transport}{suffix}.toml"));
    std::fs::write(&config, text)?;
    Ok(MeshFiles {
        config,
        dev_http,
        listener,
    })
}

/// Starts `program ARGS`, on CPU `cpu` only when given (`taskset -c`, which execs the
/// program, so the child's PID is the program's).
pub(crate) fn spawn(
    program: &Path,
    args: &[&str],
    log: &Path,
    cpu: Option<usize>,
) -> Result<Child, ScenarioError> {
    let mut command = match cpu {
        Some(cpu) => {
            let mut c = Command::new("taskset");
            c.arg("-c").arg(cpu.to_string()).arg(program);
            c
        }
        None => Command::new(program),
    };
    command.args(args);
    spawn_command(command, log)
}

/// Starts `command` with its output in `log` and quiet logging.
pub(crate) fn spawn_command(mut command: Command, log: &Path) -> Result<Child, ScenarioError> {
    let file = std::fs::File::create(log)?;
    let what = format!("{:?}", command.get_program());
    command
        .env("RUST_LOG", "warn")
        .stdout(Stdio::from(file.try_clone()?))
        .stderr(Stdio::from(file))
        .spawn()
        .map_err(|source| ScenarioError::Spawn { what, source })
}

/// Waits until `addr` accepts TCP connections.
pub(crate) fn wait_listening(addr: SocketAddr, what: &str) -> Result<(), ScenarioError> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        if Instant::now() > deadline {
            return Err(ScenarioError::Setup(format!(
                "{what} did not listen on {addr} within 20 s"
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// nginx as a plain reverse proxy with upstream keep-alive: one process (`master_process
/// off`), so its CPU and memory are one /proc entry, like each aimux process.
pub(crate) fn nginx(
    dir: &Path,
    upstream: SocketAddr,
    cpu: Option<usize>,
) -> Result<Proxies, ScenarioError> {
    let nginx = find_nginx().ok_or_else(|| {
        ScenarioError::Missing(
            "nginx is not installed (Debian: `apt-get install nginx-light`, or `nginx`)".into(),
        )
    })?;
    let listen = free_tcp()?;
    let root = dir.join("nginx");
    std::fs::create_dir_all(root.join("tmp"))?;
    let conf = root.join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            r#"daemon off;
master_process off;
worker_processes 1;
pid {root}/nginx.pid;
error_log stderr warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {root}/tmp;
    proxy_temp_path {root}/tmp;
    fastcgi_temp_path {root}/tmp;
    uwsgi_temp_path {root}/tmp;
    scgi_temp_path {root}/tmp;
    upstream bench {{ server {upstream}; keepalive 64; }}
    server {{
        listen {listen};
        location / {{
            proxy_pass http://bench;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"#,
            root = root.display()
        ),
    )?;
    let conf_str = conf.to_string_lossy().into_owned();
    let prefix = root.to_string_lossy().into_owned();
    let child = spawn(
        &nginx,
        &["-c", &conf_str, "-p", &prefix],
        &root.join("nginx.log"),
        cpu,
    )?;
    let proxies = Proxies {
        url: format!("http://{listen}/"),
        headers: Vec::new(),
        processes: vec![("nginx".into(), child)],
    };
    wait_listening(listen, "nginx")?;
    Ok(proxies)
}

fn find_nginx() -> Option<PathBuf> {
    ["/usr/sbin/nginx", "/usr/bin/nginx", "/usr/local/sbin/nginx"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}
