//! Checks: the rules `validate` runs on the repository (and `ci`, which runs
//! them too). They read the domain; nothing in `domain` or `plumbing` imports
//! them (held by `tests/tidy.rs`).
//!
//! # Code map
//!
//! - `repository_checks`: every check `validate` and `ci` run on the
//!   repository (chart, Argo CD, Terraform, workflows, trust), and the report.
//! - `manifests`: rendered charts (restricted Pod Security, the chart's
//!   promises), Argo CD objects, workflows (thin, pinned, least privilege).
//! - `admission_policy`: the Kyverno policy in `gitops/policy/` that admits
//!   only signed images in dev, preprod and prod; `argocd_types`: `metadata`, typed for it.
//! - `project_roles`: which Applications each AppProject role's token
//!   reaches (Argo CD's globs, a deny winning).
//! - `trust_policy`: who can change the cluster and with which credentials:
//!   the root app's project, the AppProjects' kinds, the workflows' secrets,
//!   environments, checkouts and `run:` scripts, CODEOWNERS.
//! - `workflow_wiring`: what a fork's workflows rely on: cluster jobs on the
//!   cluster runner, gates never skipped, previews filtered and grouped per
//!   pull request, the pinned toolchain and musl targets; run by `trust_policy`.
//! - `cluster_checks`: what the fork-and-follow path relies on across files
//!   (Ingress hosts per environment, the database Secret the chart reads is one
//!   a database produces, kind's host ports, the Argo CD `ci` account, the
//!   Services the README names); `cnpg_types`: the Secret CloudNativePG makes.

pub mod admission_policy;
pub mod argocd_types;
pub mod cluster_checks;
pub mod cnpg_types;
pub mod manifests;
pub mod project_roles;
pub mod repository_checks;
pub mod trust_policy;
pub mod workflow_wiring;
