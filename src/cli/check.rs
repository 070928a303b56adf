//! `aimux check`: placeholder, being written.
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub(crate) struct CheckArgs {}

pub(crate) fn run(_args: CheckArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not yet")
}
