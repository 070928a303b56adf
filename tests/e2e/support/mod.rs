//! Shared helpers for the end-to-end tests: real `aimux` processes, a PKI made with the
//! real CLI, free loopback ports, and a real HTTP/1.1 upstream that hashes what it receives.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)] // each test binary uses a subset

pub mod a2a;
pub mod upstream;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn aimux_bin() -> &'static str {
    env!("CARGO_BIN_EXE_aimux")
}

/// Runs `aimux ARGS` to completion; panics with its output when it fails.
pub fn aimux(args: &[&str]) -> String {
    let out = Command::new(aimux_bin())
        .args(args)
        .output()
        .expect("run aimux");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "aimux {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// A TCP port free on 127.0.0.1, never handed out twice and outside the ephemeral range,
/// so neither another test nor an outgoing socket takes it before the child binds.
pub fn free_tcp() -> SocketAddr {
    aimux_bench::ports::free_tcp().expect("a free loopback port")
}

/// A UDP port with the same guarantees as [`free_tcp`].
pub fn free_udp() -> SocketAddr {
    aimux_bench::ports::free_udp().expect("a free loopback port")
}

/// A child process killed when dropped, so a failing test leaves nothing running.
pub struct Proc {
    pub child: Child,
    pub name: String,
    log: PathBuf,
}

impl Proc {
    /// Runs `aimux ARGS` in `dir`, logging to `dir/NAME.log`.
    pub fn spawn(name: &str, args: &[&str], dir: &Path) -> Proc {
        Self::spawn_command(name, Command::new(aimux_bin()), args, dir)
    }

    /// Runs `aimux ARGS` inside network namespace `netns` (`ip netns exec` execs the
    /// program, so killing the child kills aimux).
    pub fn spawn_in_netns(name: &str, netns: &str, args: &[&str], dir: &Path) -> Proc {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", netns, aimux_bin()]);
        Self::spawn_command(name, command, args, dir)
    }

    fn spawn_command(name: &str, mut command: Command, args: &[&str], dir: &Path) -> Proc {
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let child = command
            .args(args)
            .current_dir(dir)
            .env("RUST_LOG", "info,aimux=debug")
            .stdout(Stdio::from(file.try_clone().unwrap()))
            .stderr(Stdio::from(file))
            .spawn()
            .expect("spawn aimux");
        Proc {
            child,
            name: name.to_owned(),
            log,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("----- log of {} -----\n{}", self.name, self.log());
        }
    }
}

/// Waits until something accepts TCP connections at `addr` (bounded).
pub fn wait_tcp(addr: SocketAddr, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(
            Instant::now() < deadline,
            "{what} did not start listening on {addr}"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// A mesh CA with a gateway and agent certificates, made by the real CLI.
pub struct Pki {
    pub dir: PathBuf,
}

impl Pki {
    pub fn new(root: &Path, trust_domain: &str, agents: &[&str]) -> Pki {
        let dir = root.join("pki");
        let d = dir.to_str().unwrap();
        aimux(&["certs", "init", "--dir", d, "--trust-domain", trust_domain]);
        aimux(&[
            "certs",
            "issue",
            "--dir",
            d,
            "--name",
            "gateway",
            "--gateway",
            "--ip",
            "127.0.0.1",
        ]);
        for agent in agents {
            aimux(&["certs", "issue", "--dir", d, "--name", agent]);
        }
        Pki { dir }
    }

    pub fn revoke(&self, name: &str) {
        aimux(&[
            "certs",
            "revoke",
            "--dir",
            self.dir.to_str().unwrap(),
            "--name",
            name,
        ]);
    }
}
