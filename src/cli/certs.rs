//! `aimux certs`: placeholder, being written.
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub(crate) struct CertsArgs {}

pub(crate) fn run(_args: CertsArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not yet")
}
