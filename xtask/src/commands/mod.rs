//! Commands: one module per subcommand, named as the subcommand (`new-service`
//! is `new_service`), each a short script over `domain`, `checks` and
//! `plumbing` with a `run` on its own flags struct. A command never imports
//! another (held by `tests/tidy.rs`): what two commands share is in a layer below.

#[cfg(feature = "full")]
pub mod affected;
pub mod argocd;
#[cfg(feature = "full")]
pub mod bench;
#[cfg(feature = "full")]
pub mod ci;
#[cfg(feature = "full")]
pub mod cluster;
#[cfg(feature = "full")]
pub mod demo;
pub mod doctor;
#[cfg(feature = "full")]
pub mod fork;
#[cfg(feature = "full")]
pub mod gate;
pub mod image;
#[cfg(feature = "full")]
pub mod new_service;
pub mod prebuilt;
pub mod preprod_test;
pub mod preview;
pub mod promote;
pub mod release;
#[cfg(feature = "full")]
pub mod rollback;
pub mod scan;
#[cfg(feature = "full")]
pub mod schemas;
#[cfg(feature = "full")]
pub mod setup;
pub mod smoke;
#[cfg(feature = "full")]
pub mod status;
#[cfg(feature = "full")]
pub mod trace;
#[cfg(feature = "full")]
pub mod validate;
#[cfg(feature = "full")]
pub mod values;
#[cfg(feature = "full")]
pub mod verify;
