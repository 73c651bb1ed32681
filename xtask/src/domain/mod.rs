//! The pipeline's domain: tags, environments, the GitOps branch, promotion,
//! images and registries, gates with their attestations and signatures,
//! services, GitHub, Argo CD and the cluster. Commands are short scripts over
//! these; nothing here imports `checks` or `commands` (held by `tests/tidy.rs`).
//!
//! # Code map
//!
//! - `promotion`: environments (`Env`), the image a values file deploys, the
//!   monotonic check, the commit record (subject + trailers, written and parsed
//!   back) and `promote()`, which promote, rollback, release and preview call.
//!   **Where a promotion is made, and what it writes, is this one file.**
//! - `gitops`: the GitOps branch: read at the remote's tip, commit from
//!   objects (never a working tree), push with fetch-and-redo retries, history.
//! - `registry`: where images live (a registry over OCI distribution, or an
//!   OCI layout directory), one set of operations with the same rules;
//!   `oci`: assembling images from a static binary, and reading a file out
//!   of a layer.
//! - `tags`: `main-<sha>`, `pr-<N>-<sha>`, `v<X.Y.Z>` and digests, parsed.
//! - `service_repo`: the service repository: commits of tags, ancestry.
//! - `gate_store`: test results bound to a commit and a digest, in the local
//!   store (git notes) for the demo and a laptop; `github`: the GitHub REST calls (writes through one
//!   function, dry-run, variables; sealed secrets in its child `github/secrets.rs`, full xtask only).
//! - `attestation`: signed gates: in-toto statements about a digest in DSSE
//!   envelopes (ECDSA P-256, what `cosign verify-attestation --key` checks),
//!   stored as cosign's `.att` tag, verified by release.
//! - `signature`: image signatures as cosign writes them (simple-signing
//!   payload, ECDSA P-256, cosign's `.sig` tag), made on push, checked by
//!   `verify` and `status`.
//! - `fork_settings`: a fork's GitHub settings (environments, secrets,
//!   variables, rulesets per profile, a deploy key as GitHub lists it) that
//!   `setup` writes and `doctor` checks;
//!   `fork_files`: the files that name the fork (`fork`, `setup`);
//!   `deploy_key`: the GitOps deploy key (ed25519, OpenSSH's format), made in memory.
//! - `argocd_api`: Argo CD's REST API (wait, sync).
//! - `application_sets`: the ApplicationSets expanded into the Applications
//!   Argo CD would make (list, matrix, git files; Go template expressions),
//!   for `validate`; the services list `new-service` appends to.
//! - `cluster_up`: `cluster up|down|status`: the plan read from the
//!   repository (Terraform's variables, the fork's admission policy and its
//!   key's digest), Terraform, the policy through kubectl's stdin, a private
//!   fork's deploy key, Argo CD's project-role tokens into the fork's
//!   secrets, and the rule that no `.tf` file carries a key inline;
//!   `cluster_runner`: the dispatcher, one just-in-time runner per queued job
//!   of main in a fresh container, on a network of its own that the host's
//!   firewall confines to kind's ports and the internet; the runner's settings
//!   for this repository's cluster, and what `doctor` checks of it (the
//!   dispatcher's pid, the firewall as kind's nodes are now).
//! - `upstream_schemas`: the upstream contracts of `xtask/schemas/sources.toml`
//!   (Argo CD's REST description, the CRDs, upstream examples) at the releases
//!   Terraform's charts install: installed and sha256-checked in a cache,
//!   Terraform pins compared, objects checked against their CRD.
//! - `services`: the services, discovered (`services/<name>/service.toml`,
//!   strict), and the packages and path dependencies of `cargo metadata`;
//!   `affected_services`: which services a commit range affects, with reasons;
//!   `lock_closure`: what a change to Cargo.lock or the workspace Cargo.toml
//!   does to one service (its resolved dependency closure); `scaffold`: the
//!   files, values and workspace member of `new-service`.
//! - `service_url`: where a deployed service answers for `smoke` and
//!   `preprod-test`: `--url`, or its Ingress host through the ingress controller;
//!   `service_suite`: the checks run against it, one line each (the smoke
//!   checks both commands run, items-api's round trip).
//! - `deployments`: what runs where: every service's environments at a GitOps
//!   commit, with the image, its source commit and the promoting commit
//!   (`status` prints it, `trace` searches it).
//! - `image_build`: the static binaries and image metadata `image build` and
//!   `bench` share; `sbom`: the dependency list `cargo auditable` embeds in the
//!   image's binary, read back and written as CycloneDX; `advisories`: RustSec
//!   offline (a snapshot, deny.toml's ignore list), for `scan`.
//! - `lead_time`: the phases (checks, build, push, promote, sync-wait, tests)
//!   of a commit's way to a preview and a merge's to a gate, which the demo
//!   records and `bench pipeline` prints cold and warm.
//!
//! The cluster jobs' build (`--no-default-features`) leaves out, whole, the
//! modules marked `#[cfg(feature = "full")]` below: what only the commands
//! those jobs never run use (ARCHITECTURE.md lists them).
//!
//! # Invariants (held by `xtask/tests/tidy.rs`)
//!
//! - Only `promotion` writes an image into a values file or a promotion record.
//! - Only `gitops` builds commits for the GitOps branch; commands hand it
//!   `Decision`s and it pushes, so a failure leaves the user's checkout as it was.
//! - Only `registry` (with `oci`) speaks OCI.

pub mod advisories;
#[cfg(feature = "full")]
pub mod affected_services;
#[cfg(feature = "full")]
pub mod application_sets;
pub mod argocd_api;
pub mod attestation;
pub mod cluster_runner;
#[cfg(feature = "full")]
pub mod cluster_up;
#[cfg(feature = "full")]
pub mod deploy_key;
#[cfg(feature = "full")]
pub mod deployments;
#[cfg(feature = "full")]
pub mod fork_files;
pub mod fork_settings;
pub mod gate_store;
pub mod github;
pub mod gitops;
pub mod image_build;
#[cfg(feature = "full")]
pub mod lead_time;
#[cfg(feature = "full")]
pub mod lock_closure;
pub mod oci;
pub mod promotion;
pub mod registry;
pub mod sbom;
#[cfg(feature = "full")]
pub mod scaffold;
pub mod service_repo;
pub mod service_suite;
pub mod service_url;
pub mod services;
pub mod signature;
pub mod tags;
#[cfg(feature = "full")]
pub mod upstream_schemas;

use anyhow::Result;

/// The fork's admission policy, which `setup` rewrites, `cluster up` applies
/// and `validate` checks.
pub const POLICY_FILE: &str = "gitops/policy/image-signatures.yaml";
/// The public key that policy admits images signed by (cosign's PEM).
pub const POLICY_PUBLIC_KEY_FILE: &str = "gitops/policy/cosign.pub";

/// The two repositories a pipeline command works with.
pub struct Repos {
    pub service: service_repo::ServiceRepo,
    pub gitops: gitops::GitopsRepo,
}

impl Repos {
    pub fn open(options: &gitops::GitopsOptions) -> Result<Self> {
        let service = service_repo::ServiceRepo::discover(&options.service_repo)?;
        let gitops = gitops::GitopsRepo::open(&service.root(), options)?;
        Ok(Self { service, gitops })
    }
}
