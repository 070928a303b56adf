//! Network namespaces made for one run and removed afterwards, driven through iproute2
//! (`ip netns`), plus entering one from the current thread (setns(2) affects only the
//! calling thread, so other threads keep the host's network).

use std::os::fd::AsFd;
use std::process::Command;

use super::NetemError;

/// A network namespace that exists while this value lives.
#[derive(Debug)]
pub struct NetNs {
    name: String,
}

impl NetNs {
    /// Creates namespace `name` with its loopback up. Fails with
    /// [`NetemError::NotPermitted`] when not running as root.
    pub fn create(name: &str) -> Result<NetNs, NetemError> {
        if !is_root() {
            return Err(NetemError::NotPermitted);
        }
        // A namespace left behind by a crashed run of the same name is removed first.
        let _ = Command::new("ip").args(["netns", "delete", name]).output();
        ip(&["netns", "add", name])?;
        let ns = NetNs {
            name: name.to_owned(),
        };
        ip(&["-n", name, "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// A command that runs `program` inside this namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name, program]);
        command
    }

    /// Moves the calling thread into this namespace; sockets and TUN devices it creates
    /// afterwards belong here.
    pub fn enter_current_thread(&self) -> Result<(), NetemError> {
        let path = format!("/var/run/netns/{}", self.name);
        let enter_error = |source| NetemError::Enter {
            name: self.name.clone(),
            source,
        };
        let file = std::fs::File::open(&path).map_err(enter_error)?;
        nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|errno| enter_error(std::io::Error::from(errno)))
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.name])
            .output();
    }
}

pub(crate) fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

/// Runs `ip ARGS`, turning a failure into an error that shows the command and its stderr.
pub(crate) fn ip(args: &[&str]) -> Result<(), NetemError> {
    let command = format!("ip {}", args.join(" "));
    let output = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| NetemError::Command {
            command: command.clone(),
            detail: format!("{e} (is iproute2 installed?)"),
        })?;
    if output.status.success() {
        Ok(())
    } else {
        Err(NetemError::Command {
            command,
            detail: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        })
    }
}
