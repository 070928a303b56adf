//! The model backend of a build without the `minilm` feature: there is none. Loading says
//! so, with what to do; nothing else can be reached, since no model ever loads.

use std::path::Path;

use super::error::SemanticError;

/// Stands in for the all-MiniLM-L6-v2 backend; never constructed.
#[derive(Debug)]
pub(crate) enum MiniLm {}

impl MiniLm {
    pub(crate) fn load(dir: &Path) -> Result<Self, SemanticError> {
        Err(SemanticError::NoModelSupport {
            dir: dir.to_path_buf(),
        })
    }

    pub(crate) fn dir(&self) -> &Path {
        match *self {}
    }

    pub(crate) fn embed(&self, _text: &str) -> Result<Vec<f32>, SemanticError> {
        match *self {}
    }
}
