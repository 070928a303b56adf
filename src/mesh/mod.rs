//! The mesh file (`mesh.toml`): schema, parsing with source spans, validation.
//!
//! `raw` mirrors the TOML, `validate` checks it and builds the `model` that the gateway and
//! sidecars are configured from, and `diagnostic` renders mistakes with line and column.

mod diagnostic;
mod model;
mod raw;
mod summary;
mod validate;

use std::fmt;
use std::path::{Path, PathBuf};

pub(crate) use model::*;

/// The mesh file shipped in the binary: the repository's `mesh.toml`, used when no file is
/// given and `./mesh.toml` does not exist.
pub(crate) const EMBEDDED_DEFAULT: &str = include_str!("../../mesh.toml");

/// Where a mesh file came from, for messages and for resolving relative paths.
#[derive(Debug, Clone)]
pub(crate) enum Origin {
    File(PathBuf),
    /// The embedded default; relative paths resolve against the working directory.
    Embedded,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File(path) => write!(f, "{}", path.display()),
            Origin::Embedded => f.write_str("<embedded default mesh.toml>"),
        }
    }
}

/// A mesh file that failed validation, with every mistake found.
#[derive(Debug)]
pub(crate) struct Invalid {
    pub(crate) origin: Origin,
    pub(crate) source: String,
    pub(crate) diagnostics: Vec<diagnostic::Diagnostic>,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let origin = self.origin.to_string();
        let report = diagnostic::Report {
            origin: &origin,
            source: &self.source,
            diagnostics: &self.diagnostics,
        };
        write!(f, "{report}")
    }
}

impl std::error::Error for Invalid {}

/// Reads the mesh file named on the command line, or `./mesh.toml`, or the embedded default.
pub(crate) fn locate(config: Option<&Path>) -> anyhow::Result<(Origin, String)> {
    let path = match config {
        Some(path) => path.to_path_buf(),
        None if Path::new("mesh.toml").is_file() => PathBuf::from("mesh.toml"),
        None => return Ok((Origin::Embedded, EMBEDDED_DEFAULT.to_owned())),
    };
    let source = std::fs::read_to_string(&path).map_err(|e| {
        anyhow::anyhow!(
            "cannot read mesh file {}: {e}; pass an existing file with --config",
            path.display()
        )
    })?;
    Ok((Origin::File(path), source))
}

/// Parses and validates `source`.
pub(crate) fn parse(origin: Origin, source: String) -> Result<Mesh, Invalid> {
    let base_dir = match &origin {
        Origin::File(path) => match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        },
        Origin::Embedded => PathBuf::from("."),
    };
    validate::parse(&source, &base_dir).map_err(|diagnostics| Invalid {
        origin,
        source,
        diagnostics,
    })
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_agents;
#[cfg(test)]
mod tests_upstreams;
