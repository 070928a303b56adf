//! `aimux`: the one binary of the mesh. Subcommands bootstrap certificates, validate mesh
//! files, and run the gateway and sidecars (reloading the mesh file on edits).
#![forbid(unsafe_code)]

mod assemble;
mod bootstrap;
mod cli;
mod demo;
mod mesh;
mod output;
mod process;
mod reload;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// AIMux: a service mesh for AI agents.
///
/// Agents talk to their local sidecar as if it were the service itself; the sidecar proves
/// the agent's identity with mutual TLS and carries each request over one QUIC connection to
/// the gateway, which routes on the request's intent and enforces access rules.
#[derive(Debug, Parser)]
#[command(
    name = "aimux",
    version,
    propagate_version = true,
    max_term_width = 100
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create the mesh CA, issue agent and gateway certificates, revoke and list them.
    Certs(cli::certs::CertsArgs),
    /// Validate a mesh file and print every mistake with its line, column and a hint.
    Check(cli::check::CheckArgs),
    /// Run the whole mesh of a mesh file in one process: the gateway, one sidecar per agent
    /// and the built-in demo services, creating development certificates on first run.
    Up(cli::serve::UpArgs),
    /// Run the gateway of a mesh file.
    Gateway(cli::serve::GatewayArgs),
    /// Run the sidecar of one agent of a mesh file.
    Sidecar(cli::serve::SidecarArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Certs(args) => cli::certs::run(args),
        Command::Check(args) => cli::check::run(args),
        Command::Up(args) => cli::serve::up(args).map(|()| ExitCode::SUCCESS),
        Command::Gateway(args) => cli::serve::gateway(args).map(|()| ExitCode::SUCCESS),
        Command::Sidecar(args) => cli::serve::sidecar(args).map(|()| ExitCode::SUCCESS),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            output::write_stderr(&format!("error: {err:#}\n"));
            ExitCode::FAILURE
        }
    }
}
