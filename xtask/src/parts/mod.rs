//! The parts every command is written over. A command (`xtask/src/<name>.rs`)
//! is a short script of numbered steps; the mechanics live here.
//!
//! # Code map
//!
//! - `promotion`: environments (`Env`), the image a values file deploys, the
//!   monotonic check, the commit record (subject + trailers, written and parsed
//!   back) and `promote()`, which promote, rollback, release and preview call.
//!   **Where a promotion is made, and what it writes, is this one file.**
//! - `gitops`: the GitOps branch: read at the remote's tip, commit from
//!   objects (never a working tree), push with fetch-and-redo retries, history.
//! - `values`: format-preserving YAML edits: `(path, value)` pairs for the
//!   pipeline, jq for people (`cargo xtask values set`).
//! - `registry`: where images live (a registry over OCI distribution, or an
//!   OCI layout directory), one set of operations with the same rules;
//!   `oci`: assembling images from a static binary, and reading a file out
//!   of a layer.
//! - `tags`: `main-<sha>`, `pr-<N>-<sha>`, `v<X.Y.Z>` and digests, parsed.
//! - `service`: the service repository: commits of tags, ancestry.
//! - `gates`: test results bound to a commit and a digest (git notes or
//!   GitHub check runs); `github`: the GitHub REST calls (writes through one
//!   function, dry-run, sealed secrets, variables).
//! - `fork_settings`: a fork's GitHub settings (environments, secrets,
//!   variables, rulesets per profile) that `setup` writes and `doctor` checks;
//!   `fork_files`: the files that name the fork (`fork`, `setup`);
//!   `deploy_key`: the GitOps deploy key (ed25519, OpenSSH's format), made in memory.
//! - `attestation`: signed gates: in-toto statements about a digest in DSSE
//!   envelopes (ECDSA P-256, what `cosign verify-attestation --key` checks),
//!   stored as cosign's `.att` tag, verified by release.
//! - `argocd`: Argo CD's REST API (wait, sync); `argocd_types`: `metadata`,
//!   typed for `admission_policy`; `manifests`: the policy checks `validate` runs.
//! - `signature`: image signatures as cosign writes them (simple-signing
//!   payload, ECDSA P-256, cosign's `.sig` tag), made on push, checked by
//!   `verify` and `status`.
//! - `project_roles`: which Applications each AppProject role's token
//!   reaches (Argo CD's globs, a deny winning), for `validate`.
//! - `admission_policy`: the Kyverno policy in `gitops/policy/` that admits
//!   only signed images in dev, preprod and prod, typed and checked for `validate`.
//! - `trust_policy`: who can change the cluster and with which credentials:
//!   the root app's project, the AppProjects' kinds, the workflows' secrets,
//!   environments, checkouts and `run:` scripts, CODEOWNERS.
//! - `workflow_wiring`: what a fork's workflows rely on: cluster jobs on the
//!   cluster runner, gates never skipped, previews filtered and grouped per
//!   pull request, the pinned toolchain and musl targets; run by `trust_policy`.
//! - `repository_checks`: every check `validate` and `ci` run on the
//!   repository (chart, Argo CD, Terraform, workflows, trust); `tools`: the
//!   tool pins of `xtask/tools.txt`, for the hints that name an install.
//! - `image_build`: the static binaries and image metadata `image build` and
//!   `bench` share.
//! - Benchmark helpers: `wrk` (runs and parses it), `pinned_server` (a server
//!   on one CPU), `proc_stats` (RSS and CPU from /proc), `pgbench`,
//!   `local_registry` (a docker-registry on loopback; the tests include it
//!   too), `counting_proxy` (bytes sent to a registry).
//! - `test_times`: each test binary's time in a `cargo test` run (cargo's
//!   and libtest's own lines), for the slowest list `ci` ends with.
//! - `lead_time`: the phases (checks, build, push, promote, sync-wait,
//!   tests) of a commit's way to a preview and a merge's to a gate, which
//!   the demo records and `bench pipeline` prints cold and warm.
//! - `sbom`: the dependency list `cargo auditable` embeds in the image's
//!   binary, read back (a file or an image) and written as CycloneDX;
//!   `advisories`: RustSec offline (a snapshot, deny.toml's ignore list), for `scan`.
//! - `cluster_checks`: what the fork-and-follow path relies on across files
//!   (Ingress hosts per environment, the database Secret the chart reads is one
//!   a database produces, kind's host ports, the Argo CD `ci` account, the
//!   Services the README names); `cnpg_types`: the Secret CloudNativePG makes.
//! - `cluster_up`: `cluster up|down|status`: the plan read from the
//!   repository (Terraform's variables, the fork's admission policy and its
//!   key's digest), Terraform, the policy through kubectl's stdin, a private
//!   fork's deploy key, Argo CD's project-role tokens into the fork's
//!   secrets, and `validate`'s rule that no `.tf` file carries a key inline;
//!   `cluster_runner`: the
//!   dispatcher, one just-in-time runner per queued job of main in a fresh
//!   container.
//! - `json_schema`: one JSON Schema validator for the upstream contracts
//!   (GitHub's OpenAPI 3.0, Argo CD's Swagger 2.0, CRDs' structural schemas),
//!   strict on undeclared fields; the tests' fakes are checked with it.
//! - `schemas`: the upstream contracts of `xtask/schemas/sources.toml` (Argo
//!   CD's REST description, the CRDs, upstream examples) at the releases
//!   Terraform's charts install: installed and sha256-checked in a cache,
//!   Terraform pins compared, objects checked against their CRD.
//! - `workspace`: the checkout xtask acts on (found from the working
//!   directory or `XTASK_WORKSPACE`, never the path it was built in) and its
//!   target dir.
//! - `services`: the services, discovered (`services/<name>/service.toml`,
//!   strict), and the packages and path dependencies of `cargo metadata`;
//!   `affected`: which services a commit range affects, with reasons, for
//!   `affected`; `lock_closure`: what a change to Cargo.lock or the workspace
//!   Cargo.toml does to one service (its resolved dependency closure, the
//!   workspace dependencies it inherits), for `affected`; `scaffold`: the files, values and workspace member of `new-service`.
//! - `service_url`: where a deployed service answers for `smoke` and
//!   `preprod-test`: `--url`, or its Ingress host (values file over the chart's
//!   defaults) through the ingress controller (`INGRESS_URL`).
//! - `application_sets`: the ApplicationSets expanded into the Applications
//!   Argo CD would make (list, matrix, git files; Go template expressions),
//!   for `validate`; the services list `new-service` appends to.
//!
//! # Invariants (held by `xtask/tests/tidy.rs`)
//!
//! - Commands never import commands: what two commands share is a part.
//! - Only `promotion` writes an image into a values file or a promotion record.
//! - Only `gitops` builds commits for the GitOps branch; commands hand it
//!   `Decision`s and it pushes, so a failure leaves the user's checkout as it was.
//! - Only `registry` (with `oci`) speaks OCI.
//! - Functions are at most 60 lines, or say why next to them (`// long: …`).

pub mod admission_policy;
pub mod advisories;
pub mod affected;
pub mod application_sets;
pub mod argocd;
pub mod argocd_types;
pub mod attestation;
pub mod cluster_checks;
pub mod cluster_runner;
pub mod cluster_up;
pub mod cnpg_types;
pub mod counting_proxy;
pub mod deploy_key;
pub mod fork_files;
pub mod fork_settings;
pub mod gates;
pub mod github;
pub mod gitops;
pub mod image_build;
pub mod json_schema;
pub mod lead_time;
pub mod local_registry;
pub mod lock_closure;
pub mod manifests;
pub mod oci;
pub mod pgbench;
pub mod pinned_server;
pub mod proc_stats;
pub mod project_roles;
pub mod promotion;
pub mod registry;
pub mod repository_checks;
pub mod sbom;
pub mod scaffold;
pub mod schemas;
pub mod service;
pub mod service_url;
pub mod services;
pub mod signature;
pub mod tags;
pub mod test_times;
pub mod tools;
pub mod trust_policy;
pub mod values;
pub mod workflow_wiring;
pub mod workspace;
pub mod wrk;

use anyhow::{Context, Result};

/// The two repositories a pipeline command works with.
pub struct Repos {
    pub service: service::ServiceRepo,
    pub gitops: gitops::GitopsRepo,
}

impl Repos {
    pub fn open(options: &gitops::GitopsOptions) -> Result<Self> {
        let service = service::ServiceRepo::discover(&options.service_repo)?;
        let gitops = gitops::GitopsRepo::open(&service.root(), options)?;
        Ok(Self { service, gitops })
    }
}

/// A unified diff of one file, `a/<path>` → `b/<path>`, as `--dry-run`s print.
pub fn unified_diff(path: &str, old: &str, new: &str) -> String {
    similar::TextDiff::from_lines(old, new)
        .unified_diff()
        .header(&format!("a/{path}"), &format!("b/{path}"))
        .to_string()
}

/// The `.yaml`/`.yml` files under `dir`, recursively, sorted.
pub fn yaml_files(dir: &std::path::Path) -> Result<Vec<std::path::PathBuf>> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in
            std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?
        {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Where `program` is on PATH, if it is installed.
pub fn which(program: &str) -> Option<std::path::PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
}

/// `YYYY-MM-DDTHH:MM:SSZ` for a Unix time in seconds (times before 1970 are 1970).
pub fn rfc3339(epoch_seconds: i64) -> String {
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_secs(epoch_seconds.max(0) as u64);
    humantime::format_rfc3339_seconds(time).to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_matches_known_instants() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(super::rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }
}
