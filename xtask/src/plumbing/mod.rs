//! Plumbing: what any tool needs and that knows nothing of the pipeline.
//! Nothing here imports `domain`, `checks` or `commands` (held by `tests/tidy.rs`).
//!
//! The cluster jobs' build (`--no-default-features`) leaves out, whole, the
//! modules marked `#[cfg(feature = "full")]` below (ARCHITECTURE.md lists them).
//!
//! # Code map
//!
//! - `yaml`: YAML read and edited in one place: documents of a stream,
//!   strict parsing against a type, format-preserving edits (`(path, value)`
//!   pairs and `map_strings` for the pipeline, jq for people and for edits
//!   like "every `publicKeys`", in its child `yaml/jq.rs`, full xtask only):
//!   changed scalars rewritten in their style
//!   (block scalars included), entries appended to a block list. The only
//!   module that edits YAML text.
//! - `json_schema`: one JSON Schema validator (OpenAPI 3.0, Swagger 2.0,
//!   CRDs' structural schemas), strict on undeclared fields.
//! - `fs`: scratch directories, atomic writes, and the one reader of a
//!   folder's YAML (`yaml_documents`: every document of every file, a problem
//!   per unreadable file).
//! - `http`: the one HTTP client (user agent, timeout, no redirect unless
//!   asked).
//! - `process`: whether a program is installed; arguments no program may
//!   read as options.
//! - `retry`: one retry loop with jittered backoff, and one wait for a
//!   condition (a server listening, an Argo CD application running a
//!   revision), whose look may fail.
//! - `text`: unified diffs, RFC 3339 times, globs, URLs without credentials,
//!   bytes in hex.
//! - `workspace`: the checkout xtask acts on (found from the working
//!   directory or `XTASK_WORKSPACE`, never the path it was built in), its
//!   target dir, and the environment variables that hold secrets.
//! - `prebuilt`: the xtask binary a workflow run builds once for its cluster
//!   jobs: the artifact and cargo subcommand names, the step that checks its
//!   sha256 and installs it, the copy with its digest.
//! - `tools`: the tool pins of `xtask/tools.txt`, for hints that name an install.
//! - `output_cache`: a checker's output kept by the hash of all it reads
//!   (`validate`'s actionlint).
//! - `test_binaries`: a `cargo test`'s binaries, built once and run a few at a
//!   time (`ci`'s test step).
//! - `test_times`: each test binary's time in a test run, for the slowest list
//!   `ci` ends with and the order of the next run.
//! - Measuring: `wrk` (runs and parses it), `pinned_server` (a server on one
//!   CPU), `proc_stats` (RSS and CPU from /proc), `pgbench`, `local_registry`
//!   (a docker-registry on loopback, for the benchmarks, the demo and the
//!   tests), `counting_proxy` (bytes sent to a registry).

#[cfg(feature = "full")]
pub mod counting_proxy;
pub mod fs;
pub mod http;
#[cfg(feature = "full")]
pub mod json_schema;
#[cfg(feature = "full")]
pub mod local_registry;
#[cfg(feature = "full")]
pub mod output_cache;
#[cfg(feature = "full")]
pub mod pgbench;
#[cfg(feature = "full")]
pub mod pinned_server;
pub mod prebuilt;
#[cfg(feature = "full")]
pub mod proc_stats;
pub mod process;
pub mod retry;
#[cfg(feature = "full")]
pub mod test_binaries;
#[cfg(feature = "full")]
pub mod test_times;
pub mod text;
pub mod tools;
pub mod workspace;
#[cfg(feature = "full")]
pub mod wrk;
pub mod yaml;
