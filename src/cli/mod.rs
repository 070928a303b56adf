//! One module per subcommand: argument types (clap) and the code that runs them.

pub(crate) mod certs;
pub(crate) mod check;
pub(crate) mod serve;
