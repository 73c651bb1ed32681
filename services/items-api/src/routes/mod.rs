//! HTTP routes, one module per concern.

pub mod health;
pub mod items;
pub mod meta;
