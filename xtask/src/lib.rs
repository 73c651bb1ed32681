//! `xtask`: every pipeline action of the service-demo project, as a library
//! with a thin binary (`main.rs` parses flags and dispatches).
//!
//! Four layers, each a folder; a module imports only from its own layer or
//! the ones below it (held by `tests/tidy.rs`, which also refuses cycles
//! between layers):
//!
//! ```text
//! commands   one module per subcommand: a short script of numbered steps
//!    │
//! checks     the rules `validate` (and `ci`) run on the repository
//!    │
//! domain     tags, environments, GitOps, promotion, registry and OCI, gates
//!    │       with attestations and signatures, services, GitHub, Argo CD
//!    │
//! plumbing   YAML, JSON Schema, text, files, processes, the workspace, measuring
//! ```
//!
//! Each folder's `mod.rs` holds its code map; `ARCHITECTURE.md` at the
//! repository root says where each pipeline idea lives and which test holds
//! each invariant.

#[cfg(feature = "full")]
pub mod checks;
pub mod commands;
pub mod domain;
pub mod plumbing;
