//! Parts shared by the commands; commands never call each other's internals.

pub mod workspace;
