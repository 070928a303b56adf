//! `aimux check`: validate a mesh file and print every mistake.

use crate::output::outln;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::mesh;

#[derive(Debug, clap::Args)]
pub(crate) struct CheckArgs {
    /// Mesh file to check [default: ./mesh.toml, else the embedded default]
    #[arg(long, short, value_name = "FILE")]
    config: Option<PathBuf>,
}

pub(crate) fn run(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let (origin, source) = mesh::locate(args.config.as_deref())?;
    match mesh::parse(origin.clone(), source) {
        Ok(mesh) => {
            outln!("{origin}: valid\n{mesh}");
            Ok(ExitCode::SUCCESS)
        }
        Err(invalid) => {
            crate::output::write_stderr(&format!("{invalid}\n"));
            Ok(ExitCode::FAILURE)
        }
    }
}
