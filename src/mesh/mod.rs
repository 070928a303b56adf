//! The mesh file (`mesh.toml`): schema, parsing with source spans, validation.
