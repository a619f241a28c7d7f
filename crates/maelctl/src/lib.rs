//! `maelctl`: the command-line client of maelstromd. The binary (`src/main.rs`) parses the
//! command line and calls the node's JSON-RPC API; this library holds what it reads and
//! prints:
//!
//! - [`interpolate`]: `${VAR}` interpolation of project files.
//! - [`project_file`]: `maelstrom.yml` into a [`maelstromd_api::model::Project`].
//! - [`output`]: the original's tables and messages.
#![deny(missing_docs)]

pub mod interpolate;
pub mod output;
pub mod project_file;
