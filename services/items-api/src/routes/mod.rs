//! HTTP routes, one module per concern (the probes, version and metrics are
//! service-kit's).

pub mod items;
pub mod meta;
