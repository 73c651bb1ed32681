//! Commands: one module per subcommand, named as the subcommand (`new-service`
//! is `new_service`), each a short script over `domain`, `checks` and
//! `plumbing` with a `run` on its own flags struct. A command never imports
//! another (held by `tests/tidy.rs`): what two commands share is in a layer below.

pub mod affected;
pub mod argocd;
pub mod bench;
pub mod ci;
pub mod cluster;
pub mod demo;
pub mod doctor;
pub mod fork;
pub mod gate;
pub mod image;
pub mod new_service;
pub mod prebuilt;
pub mod preprod_test;
pub mod preview;
pub mod promote;
pub mod release;
pub mod rollback;
pub mod scan;
pub mod schemas;
pub mod setup;
pub mod smoke;
pub mod status;
pub mod trace;
pub mod validate;
pub mod values;
pub mod verify;
