//! `cargo xtask doctor`: is this fork ready for the workflows? Each check
//! prints ✔, or ✘ with what is missing and the command that fixes it:
//!
//! 1. the repository variables the workflows read;
//! 2. the environments `preview`, `preprod` and `prod`: each limited to
//!    `main` by a deployment-branch rule, `prod` with required reviewers; the
//!    secrets each holds (names only; every secret but GITHUB_TOKEN lives in
//!    one of them), and the gate's public key GATE_PUBLIC_KEY in `prod`;
//! 3. a self-hosted runner online with the cluster runner's labels,
//!    registered `--ephemeral` (or `cluster up`'s dispatcher on this machine,
//!    and then the runner network's host firewall in place), and approval
//!    required before any outside contributor's pull request runs a workflow;
//! 4. Argo CD reachable with ARGOCD_AUTH_TOKEN, seeing project service-demo;
//! 5. each service's GHCR package (`ghcr.io/<owner>/<image>`) public (readable
//!    by the cluster without a pull secret);
//! 6. the GitOps branch: protected by a ruleset that only the GitOps deploy
//!    key (a writable deploy key) bypasses, never the `github-actions` app
//!    that every workflow's GITHUB_TOKEN is, and no classic protection;
//! 7. release tags (`v*`): a tag ruleset restricts creating, moving and
//!    deleting them, bypassed only by the deploy key the release job pushes with.
//!
//! 8. Actions enabled, the `preview` label, and `PIPELINE_READY` (setup's last write).
//!
//! The fork is `origin` of this clone (GITHUB_REPOSITORY, when set, wins);
//! GitHub is asked with GITHUB_TOKEN, else `gh auth token` (a token of an
//! admin of the fork); tokens are sent as headers and never printed. Every
//! verdict is printed even when a check cannot be made (an API error becomes
//! that line's ✘ with the reason), and each ✘ names the one command that
//! fixes it: `cargo xtask setup`, `cargo xtask cluster up`, or the exact click.

use std::path::PathBuf;

use anyhow::{Result, bail};
use serde_json::Value;

use crate::domain::argocd_api::ArgoCd;
use crate::domain::cluster_runner;
use crate::domain::fork_settings::{self as settings, CI_CHECK, WrittenBy};
use crate::domain::github::GitHub;
use crate::domain::services;
use crate::plumbing::workspace;

/// The command that writes what setup writes.
const SETUP: &str = "cargo xtask setup";
/// The command that makes the cluster, its runner and its tokens.
const CLUSTER_UP: &str = "cargo xtask cluster up";

#[derive(clap::Args)]
pub struct DoctorArgs {
    /// The GitOps branch the workflows' bot pushes to.
    #[arg(long, default_value = "main")]
    branch: String,
    /// Argo CD as reachable from here (default: ARGOCD_SERVER, else the repository variable).
    #[arg(long)]
    argocd_server: Option<String>,
    /// Accept Argo CD's self-signed certificate.
    #[arg(long)]
    insecure: bool,
    /// The clone of the fork (default: this repository).
    #[arg(long)]
    root: Option<PathBuf>,
    /// Only check that IMAGE (<registry>/<owner>/<image>:<tag>) can be pulled without
    /// credentials, as kind pulls it: for the preview workflow right after its image push,
    /// so a private GHCR package fails there with the click instead of an ImagePullBackOff.
    #[arg(long, value_name = "IMAGE")]
    anonymous_pull: Option<String>,
}

/// The app behind every workflow's GITHUB_TOKEN (its id in rulesets' bypass lists).
const GITHUB_ACTIONS_APP_ID: i64 = 15368;
/// The label set the workflows' cluster jobs ask for when CLUSTER_RUNNER is unset.
const DEFAULT_RUNNER: [&str; 2] = ["self-hosted", "kind"];
use settings::{DEPLOY_KEY, RELEASE_TAGS};
/// The Argo CD project every environment deploys through.
const PROJECT: &str = "service-demo";

/// One check's verdict: what was found, or what is missing and its fix.
type Verdict = Result<String, (String, String)>;

/// The steps: ask GitHub, then Argo CD; print every verdict; fail if any is missing.
// long: one line per check, in the order the module's doc lists them.
pub fn run(args: DoctorArgs) -> Result<()> {
    if let Some(image) = &args.anonymous_pull {
        return anonymous_pull(image);
    }
    let root = args.root.clone().unwrap_or_else(workspace::root);
    let github = GitHub::for_fork(&root).map_err(|error| {
        anyhow::anyhow!(
            "{error:#}\ndoctor asks GitHub about the fork: it needs a token of the fork's admin \
             (GITHUB_TOKEN, or `gh auth login`) and the fork as `origin` (or GITHUB_REPOSITORY=<owner>/<name>)"
        )
    })?;
    let repo = github.repository().to_owned();
    let mut verdicts: Vec<(String, Verdict)> = Vec::new();
    let listed = names_and_values(
        &github,
        &format!("/repos/{repo}/actions/variables"),
        "variables",
    );
    let variables = listed.as_ref().cloned().unwrap_or_default();
    let variable = |name: &str| {
        variables
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    for (name, what, by) in settings::VARIABLES {
        let verdict = match &listed {
            Ok(variables) => present(
                variables.iter().any(|(n, _)| n == name),
                format!("{}   ({what})", by.command()),
            ),
            Err(error) => unknown(error, by.command()),
        };
        verdicts.push((format!("variable {name}"), verdict));
    }
    verdicts.push(("Actions".into(), check(actions(&github, &repo), SETUP)));
    let mut ready = Vec::new();
    for (name, reviewers) in settings::ENVIRONMENTS {
        let verdict = check(environment(&github, &repo, name, reviewers), SETUP);
        if verdict.is_ok() {
            ready.push(name);
        }
        verdicts.push((format!("environment {name}"), verdict));
    }
    verdicts.extend(secret_verdicts(&github, &repo));
    verdicts.push((
        "gate key GATE_PUBLIC_KEY in environment prod".into(),
        check(gate_key(&github, &repo), SETUP),
    ));
    verdicts.push((
        "image key".into(),
        check(image_key(&github, &repo, &root), SETUP),
    ));
    let runner_variable = variables.iter().find(|(n, _)| n == "CLUSTER_RUNNER");
    verdicts.push((
        "cluster runner".into(),
        check(runner(&github, &repo, runner_variable), CLUSTER_UP),
    ));
    // The dispatcher on this machine starts runners: their firewall must be in place.
    if cluster_runner::dispatcher_running()
        .ok()
        .flatten()
        .is_some()
    {
        verdicts.push(("cluster runner's firewall".into(), runner_firewall(&root)));
    }
    verdicts.push((
        "outside contributors' pull requests".into(),
        check(fork_approval(&github, &repo), SETUP),
    ));
    let server = args
        .argocd_server
        .or_else(|| std::env::var("ARGOCD_SERVER").ok())
        .or_else(|| {
            variables
                .iter()
                .find(|(n, _)| n == "ARGOCD_SERVER")
                .map(|(_, v)| v.clone())
        });
    verdicts.push(("Argo CD".into(), argocd(server.as_deref(), args.insecure)));
    match packages(&github, &repo, &root) {
        Ok(found) => verdicts.extend(found),
        Err(error) => verdicts.push((
            "GHCR packages".into(),
            unknown(&error, "gh auth refresh -s read:packages"),
        )),
    }
    verdicts.push((
        "GitOps deploy key".into(),
        check(
            deploy_key(&github, &repo, variable(settings::DEPLOY_PUBLIC_KEY)),
            SETUP,
        ),
    ));
    verdicts.extend(protection(&github, &repo, &args.branch));
    verdicts.push((
        format!("label {}", settings::PREVIEW_LABEL),
        check(label(&github, &repo), SETUP),
    ));
    report(&verdicts)
}

/// `image` pulled as kind pulls it: no credentials. A new GHCR package is
/// private and GitHub's API cannot change that, so this names the click.
fn anonymous_pull(image: &str) -> Result<()> {
    let (repository, tag) = match image.rsplit_once(':') {
        Some((repository, tag)) if !tag.contains('/') => (repository, tag),
        _ => bail!("--anonymous-pull {image:?} should be <registry>/<owner>/<image>:<tag>"),
    };
    let mut parts = repository.split('/');
    let (registry, owner, name) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.collect::<Vec<_>>().join("/"),
    );
    let click = format!(
        "open {} (an organisation's: {}) → Danger Zone → Change visibility → Public, then re-run this job; GitHub's API cannot change a package's visibility, and kind pulls without credentials",
        settings::package_settings_url("users", owner, &name),
        settings::package_settings_url("orgs", owner, &name),
    );
    let found = crate::domain::registry::Repository::open_anonymous(repository)
        .and_then(|repo| repo.resolve(tag));
    match found {
        Ok(Some(resolved)) => {
            println!(
                "✔ {image} can be pulled without credentials ({})",
                resolved.digest
            );
            Ok(())
        }
        Ok(None) => bail!("✘ {image}: {registry} has no such tag (was the image pushed?)"),
        Err(error) => bail!(
            "✘ {image} cannot be pulled without credentials ({error:#}): the cluster cannot pull it\n    fix: {click}"
        ),
    }
}

/// A check's verdict, or, when it could not be made, a ✘ saying why.
fn check(verdict: Result<Verdict>, fix: &str) -> Verdict {
    verdict.unwrap_or_else(|error| unknown(&error, fix))
}

/// The verdict of a check GitHub (or a token's scope) did not let doctor make.
fn unknown(error: &anyhow::Error, fix: &str) -> Verdict {
    Err((
        format!("could not check: {error:#}"),
        format!(
            "{fix}   (or a token that may read it: gh auth refresh -s <the scope GitHub names>)"
        ),
    ))
}

/// Actions is enabled (a new fork has it off).
fn actions(github: &GitHub, repo: &str) -> Result<Verdict> {
    let permissions = github
        .get_optional(&format!("/repos/{repo}/actions/permissions"))?
        .unwrap_or_default();
    Ok(if permissions["enabled"] == true {
        Ok("enabled".into())
    } else {
        Err((
            "disabled: no workflow runs (a new fork has Actions off)".into(),
            format!(
                "{SETUP}   (or https://github.com/{repo}/actions → I understand my workflows, enable them)"
            ),
        ))
    })
}

/// The label that asks for a preview exists.
fn label(github: &GitHub, repo: &str) -> Result<Verdict> {
    let name = settings::PREVIEW_LABEL;
    Ok(present(
        github
            .get_optional(&format!("/repos/{repo}/labels/{name}"))?
            .is_some(),
        SETUP.into(),
    ))
}

fn present(found: bool, fix: String) -> Verdict {
    if found {
        Ok("set".into())
    } else {
        Err(("not set".into(), fix))
    }
}

/// `(name, value)` of the items under `key` at `path` (values are read for
/// CLUSTER_RUNNER and ARGOCD_SERVER only, and never printed); None on 404.
fn names_and_values(github: &GitHub, path: &str, key: &str) -> Result<Vec<(String, String)>> {
    let page = github.get_optional(&format!("{path}?per_page=100"))?;
    Ok(page
        .as_ref()
        .and_then(|p| p[key].as_array())
        .into_iter()
        .flatten()
        .map(|item| {
            let field = |f: &str| item[f].as_str().unwrap_or_default().to_owned();
            (field("name"), field("value"))
        })
        .collect())
}

fn secret_verdicts(github: &GitHub, repo: &str) -> Vec<(String, Verdict)> {
    let mut listed: std::collections::BTreeMap<&str, Result<Vec<(String, String)>>> =
        Default::default();
    let mut verdicts = Vec::new();
    for (environment, name, what, by) in settings::SECRETS {
        let found = listed.entry(environment).or_insert_with(|| {
            let path = format!("/repos/{repo}/environments/{environment}/secrets");
            names_and_values(github, &path, "secrets")
        });
        let fix = match by {
            WrittenBy::Setup => format!("{SETUP}   ({what})"),
            WrittenBy::ClusterUp => format!("{CLUSTER_UP}   ({what})"),
        };
        let verdict = match found {
            Ok(found) => present(found.iter().any(|(n, _)| n == name), fix),
            Err(error) => unknown(error, by.command()),
        };
        verdicts.push((
            format!("secret {name} (environment {environment})"),
            verdict,
        ));
    }
    verdicts
}

/// The commands that create (or reset) an environment limited to main, with
/// required reviewers (the caller) when asked.
fn create_environment(_repo: &str, name: &str, reviewers: bool) -> String {
    let reviewers = if reviewers {
        ", the token's user its required reviewer"
    } else {
        ""
    };
    format!("{SETUP}   (it makes {name} deployable from main only{reviewers})")
}

/// An environment exists, only main may deploy to it, and prod has reviewers.
fn environment(github: &GitHub, repo: &str, name: &str, reviewers: bool) -> Result<Verdict> {
    let fix = create_environment(repo, name, reviewers);
    let path = format!("/repos/{repo}/environments/{name}");
    let Some(found) = github.get_optional(&path)? else {
        return Ok(Err(("does not exist".into(), fix)));
    };
    let policy = &found["deployment_branch_policy"];
    if policy.is_null() {
        return Ok(Err((
            "no deployment branch rule: any branch's workflow can read its secrets".into(),
            fix,
        )));
    }
    if policy["custom_branch_policies"] != true {
        return Ok(Err((
            "deploys from every protected branch, not main only".into(),
            fix,
        )));
    }
    let branches = branch_policies(github, &path)?;
    if branches != ["branch:main"] {
        return Ok(Err((
            format!("deploys from {branches:?}, not main only"),
            format!(
                "{SETUP}   (it keeps only the branch policy `main`; or by hand: https://github.com/{repo}/settings/environments)"
            ),
        )));
    }
    let reviewed = has_reviewers(&found);
    if reviewers && !reviewed {
        return Ok(Err((
            "no required reviewers: a release would need nobody's approval".into(),
            fix,
        )));
    }
    Ok(Ok(if reviewers {
        "main only, with required reviewers"
    } else {
        "main only"
    }
    .into()))
}

/// An environment's deployment branch policies, as `type:name`.
fn branch_policies(github: &GitHub, environment_path: &str) -> Result<Vec<String>> {
    let policies = github
        .get_optional(&format!(
            "{environment_path}/deployment-branch-policies?per_page=100"
        ))?
        .unwrap_or_default();
    Ok(policies["branch_policies"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            let field =
                |f: &str, default: &'static str| p[f].as_str().unwrap_or(default).to_owned();
            format!("{}:{}", field("type", "branch"), field("name", ""))
        })
        .collect())
}

/// Whether an environment requires someone's review before its jobs run.
fn has_reviewers(environment: &Value) -> bool {
    environment["protection_rules"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|r| {
            r["type"] == "required_reviewers"
                && r["reviewers"].as_array().is_some_and(|l| !l.is_empty())
        })
}

fn gate_key(github: &GitHub, repo: &str) -> Result<Verdict> {
    let path = format!("/repos/{repo}/environments/prod/variables");
    let found = names_and_values(github, &path, "variables")?
        .iter()
        .any(|(n, _)| n == "GATE_PUBLIC_KEY");
    let fix = format!(
        "{SETUP}   (it makes the gate key pair: GATE_SIGNING_KEY in preprod, GATE_PUBLIC_KEY in prod; release then accepts only gates signed by it)"
    );
    Ok(present(found, fix))
}

/// The key the cluster admits (`cosign.pub`, which validate holds the
/// admission policy to) is the public half of IMAGE_SIGNING_KEY, the key the
/// pipeline signs with (setup keeps that half as IMAGE_PUBLIC_KEY).
fn image_key(github: &GitHub, repo: &str, root: &std::path::Path) -> Result<Verdict> {
    let (environment, name) = settings::IMAGE_PUBLIC_KEY;
    let file = crate::domain::POLICY_PUBLIC_KEY_FILE;
    let path = format!("/repos/{repo}/environments/{environment}/variables/{name}");
    let published = github.get_optional(&path)?;
    let committed = std::fs::read_to_string(root.join(file)).unwrap_or_default();
    Ok(match published.as_ref().and_then(|v| v["value"].as_str()) {
        None => Err((
            format!(
                "{name} (environment {environment}) is not set: nothing says which key signs the images"
            ),
            SETUP.into(),
        )),
        Some(key) if key.trim() == committed.trim() => Ok(format!(
            "{file} is IMAGE_SIGNING_KEY's public half (the admission policy's, validate checks)"
        )),
        Some(_) => Err((
            format!(
                "{file} is not IMAGE_SIGNING_KEY's public half ({name}): the cluster would refuse every image the pipeline signs"
            ),
            format!(
                "{SETUP}   (it writes the key into {file} and the admission policy, then pushes)"
            ),
        )),
    })
}

/// A runner online carrying every label the cluster jobs ask for.
fn runner(github: &GitHub, repo: &str, variable: Option<&(String, String)>) -> Result<Verdict> {
    let wanted: Vec<String> = match variable {
        Some((_, value)) => serde_json::from_str(value).unwrap_or_else(|_| vec![value.clone()]),
        None => DEFAULT_RUNNER.map(str::to_owned).to_vec(),
    };
    let runners = github
        .get_optional(&format!("/repos/{repo}/actions/runners?per_page=100"))?
        .unwrap_or_default();
    let fits = |r: &Value| {
        let labels: Vec<&str> = r["labels"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|l| l["name"].as_str())
            .collect();
        wanted.iter().all(|w| labels.contains(&w.as_str()))
    };
    let list = runners["runners"].as_array().cloned().unwrap_or_default();
    let register = register_runner();
    if let Some(online) = list.iter().find(|r| fits(r) && r["status"] == "online") {
        let name = online["name"].as_str().unwrap_or_default();
        return Ok(match online["ephemeral"].as_bool() {
            Some(true) => Ok(format!("{name} is online with {wanted:?}, ephemeral")),
            Some(false) => Err((
                format!(
                    "{name} is online with {wanted:?} but not ephemeral: a job can leave code (~/.cargo, ~/.rustup) that the next job runs with its secrets"
                ),
                format!("remove it (./config.sh remove) and {register}"),
            )),
            None => Ok(format!(
                "{name} is online with {wanted:?}\n    ⚠ GitHub does not say whether it is ephemeral: check that it was registered so, and {register}"
            )),
        });
    }
    // Just-in-time runners exist only while a job runs: between jobs, the dispatcher is the runner.
    if let Some(pid) = cluster_runner::dispatcher_running()? {
        return Ok(Ok(format!(
            "no runner is registered between jobs; the dispatcher on this machine (pid {pid}) registers \
             one just-in-time runner with {wanted:?} per queued job of main"
        )));
    }
    let missing = match list.iter().find(|r| fits(r)) {
        Some(offline) => format!(
            "{} has the labels {wanted:?} but is offline",
            offline["name"].as_str().unwrap_or_default()
        ),
        None => format!("no self-hosted runner has the labels {wanted:?}"),
    };
    Ok(Err((missing, register)))
}

/// The runner network's host firewall, for kind's nodes as they are now.
fn runner_firewall(root: &std::path::Path) -> Verdict {
    let fix = "cargo xtask cluster up   (or cargo xtask cluster firewall: the rules alone)";
    match cluster_runner::firewall_problems_now(&root.join("terraform")) {
        Ok(problems) if problems.is_empty() => Ok(
            "in place: runners reach kind's API server, the ingress and Argo CD, and nothing of this host".into(),
        ),
        Ok(problems) => Err((
            format!("the runners are not confined: {}", problems.join("; ")),
            fix.into(),
        )),
        Err(error) => unknown(&error, fix),
    }
}

/// How the cluster runner is registered: `cluster up`'s dispatcher, one
/// just-in-time runner per queued job of main in a fresh container.
fn register_runner() -> String {
    format!(
        "{CLUSTER_UP}   (on the machine that runs kind: its dispatcher registers one just-in-time runner per queued job of main, in a fresh container removed after the job; `cargo xtask cluster runner` runs it in the foreground; between jobs no runner is registered)"
    )
}

/// Workflows of an outside contributor's pull request wait for approval.
fn fork_approval(github: &GitHub, repo: &str) -> Result<Verdict> {
    let fix = format!(
        "{SETUP}   (or https://github.com/{repo}/settings/actions → Require approval for all external contributors)"
    );
    let path = format!("/repos/{repo}/actions/permissions/fork-pr-contributor-approval");
    Ok(match github.get_optional(&path)? {
        None => Ok(format!(
            "GitHub does not say (a private fork's forks cannot run workflows)\n    ⚠ if this fork is public: {fix}"
        )),
        Some(p) if p["approval_policy"] == "all_external_contributors" => {
            Ok("approval required for every outside contributor".into())
        }
        Some(p) => Err((
            format!(
                "approval policy {}: an outside contributor's workflow could run without anyone looking",
                p["approval_policy"]
            ),
            fix,
        )),
    })
}

fn argocd(server: Option<&str>, insecure: bool) -> Verdict {
    let Some(server) = server else {
        return Err((
            "no Argo CD address".into(),
            format!(
                "{CLUSTER_UP}   (it sets the repository variable ARGOCD_SERVER; or pass --argocd-server)"
            ),
        ));
    };
    let token = std::env::var("ARGOCD_AUTH_TOKEN").unwrap_or_default();
    let fix = "export ARGOCD_AUTH_TOKEN=<a token of project role service-demo/release> (cargo xtask cluster up writes it to the prod environment's secret)";
    let client =
        ArgoCd::new(server, token, insecure).map_err(|e| (format!("{e:#}"), fix.to_owned()))?;
    match client.project_applications(PROJECT) {
        Ok(0) => Err((
            format!("{server} answers, but the token sees no application of project {PROJECT}"),
            format!(
                "{CLUSTER_UP}   (it applies the root app; the token's role needs `applications, get` on project service-demo)"
            ),
        )),
        Ok(n) => Ok(format!(
            "{server} answers; the token sees {n} application(s) of project {PROJECT}"
        )),
        Err(error) => Err((format!("{error:#}"), fix.to_owned())),
    }
}

/// The image package is public: the kind cluster pulls it without a secret.
/// Every service's image package, by its declared image.
fn packages(github: &GitHub, repo: &str, root: &std::path::Path) -> Result<Vec<(String, Verdict)>> {
    let mut verdicts = Vec::new();
    let services = services::load(root).or_else(|_| services::load(&workspace::root()))?;
    for service in services {
        let image = &service.declaration.image;
        verdicts.push((
            format!("GHCR package of {}", service.name),
            check(
                package(github, repo, image),
                "gh auth refresh -s read:packages",
            ),
        ));
    }
    Ok(verdicts)
}

/// A service's image package (`ghcr.io/<owner>/<image>`, where the workflows
/// push it): public, so the cluster pulls it without a secret.
fn package(github: &GitHub, repo: &str, image: &str) -> Result<Verdict> {
    let (owner, name) = repo.split_once('/').unwrap_or((repo, repo));
    let owner_type = github
        .get_optional(&format!("/repos/{repo}"))?
        .unwrap_or_default()["owner"]["type"]
        .clone();
    let scope = if owner_type == "Organization" {
        "orgs"
    } else {
        "users"
    };
    let _ = name;
    let page = settings::package_settings_url(scope, owner, image);
    let click = format!(
        "open {page} → Danger Zone → Change visibility → Public (GitHub's API cannot; kind pulls without credentials)"
    );
    let name = image;
    Ok(
        match github.get_optional(&format!("/{scope}/{owner}/packages/container/{name}"))? {
            None => Err((
                format!("no package ghcr.io/{}/{name} yet", owner.to_lowercase()),
                format!(
                    "open your first pull request (its image job creates the package), then {click}"
                ),
            )),
            Some(p) if p["visibility"] == "public" => {
                Ok(format!("ghcr.io/{}/{name} is public", owner.to_lowercase()))
            }
            Some(p) => Err((
                format!(
                    "ghcr.io/{}/{name} is {}: the cluster cannot pull it",
                    owner.to_lowercase(),
                    p["visibility"]
                ),
                click,
            )),
        },
    )
}

/// A writable deploy key: the GitOps commits' credential. When setup made it
/// (`public`: the variable GITOPS_DEPLOY_PUBLIC_KEY), the one registered must
/// be that key, the public half of what the environments' secret holds.
fn deploy_key(github: &GitHub, repo: &str, public: Option<&str>) -> Result<Verdict> {
    let keys = github
        .get_optional(&format!("/repos/{repo}/keys?per_page=100"))?
        .unwrap_or_default();
    let writable: Vec<&Value> = keys
        .as_array()
        .into_iter()
        .flatten()
        .filter(|k| k["read_only"] == false)
        .collect();
    let fix = format!(
        "{SETUP}   (it makes the key, registers it writable and puts {DEPLOY_KEY} in every environment that pushes; {repo}'s keys: https://github.com/{repo}/settings/keys)"
    );
    let title = |k: &Value| k["title"].as_str().unwrap_or_default().to_owned();
    match (writable.first(), public) {
        (None, _) => Ok(Err((
            "no writable deploy key: the workflows push GitOps commits with one".into(),
            fix,
        ))),
        (Some(found), None) => Ok(Ok(format!("writable deploy key {:?}", title(found)))),
        (Some(_), Some(public)) => {
            let wanted = settings::key_only(public);
            Ok(match writable.iter().find(|k| k["key"] == wanted) {
                Some(found) => Ok(format!(
                    "writable deploy key {:?}, the public half of {DEPLOY_KEY}",
                    title(found)
                )),
                None => Err((
                    format!(
                        "no writable deploy key is the public half of {DEPLOY_KEY} ({}): the GitOps pushes would be refused",
                        settings::DEPLOY_PUBLIC_KEY
                    ),
                    fix,
                )),
            })
        }
    }
}

/// What creates the GitOps branch's ruleset.
fn create_ruleset(_repo: &str, _branch: &str) -> String {
    format!(
        "{SETUP}   (--profile solo: a pull request and CI required; team: one approval and code owners too)"
    )
}

/// The GitOps branch's protection: a ruleset that refuses pushes, which only
/// the deploy key bypasses (never the github-actions app), and no classic
/// protection (no deploy key can bypass that).
// long: one verdict per way a ruleset can fail to protect main, each with its own words.
fn protection(github: &GitHub, repo: &str, branch: &str) -> Vec<(String, Verdict)> {
    let mut verdicts = Vec::new();
    verdicts.push((
        format!("classic protection of {branch}"),
        check(classic_protection(github, repo, branch), SETUP),
    ));
    let rulesets = match active_rulesets(github, repo) {
        Ok(rulesets) => rulesets,
        Err(error) => {
            for what in [
                format!("{branch} protected"),
                format!("release tags {RELEASE_TAGS}"),
            ] {
                verdicts.push((what, unknown(&error, SETUP)));
            }
            return verdicts;
        }
    };
    let create = create_ruleset(repo, branch);
    let names = [
        format!("refs/heads/{branch}"),
        "~DEFAULT_BRANCH".to_owned(),
        "~ALL".to_owned(),
    ];
    let restricting: Vec<&Value> = rulesets
        .iter()
        .filter(|r| covers(r, "branch", &names))
        .filter(|r| has_rule(r, "pull_request") || has_rule(r, "update"))
        .collect();
    let (bot, key) = bypass(&restricting);
    let verdict = if restricting.is_empty() {
        Err((
            format!(
                "{branch} is not protected: every workflow's GITHUB_TOKEN (and every writer) can push to it"
            ),
            create.clone(),
        ))
    } else if bot {
        Err((
            format!(
                "the github-actions app may bypass {branch}'s ruleset: any branch's workflow with `contents: write` can push to {branch}"
            ),
            format!(
                "{SETUP}   (its ruleset's only bypass is the deploy key; another ruleset's GitHub Actions bypass: remove it at https://github.com/{repo}/settings/rules)"
            ),
        ))
    } else if !key {
        Err((
            format!("{branch}'s ruleset refuses the deploy key's GitOps commits"),
            format!(
                "add Deploy keys to its bypass list (https://github.com/{repo}/settings/rules), or: {create}"
            ),
        ))
    } else {
        Ok(format!(
            "a ruleset refuses direct pushes; only the deploy key bypasses it; {}",
            reviews(&restricting)
        ))
    };
    verdicts.push((format!("{branch} protected"), verdict));
    verdicts.push((
        format!("required status check on {branch}"),
        required_check(&restricting, &create),
    ));
    verdicts.push((
        format!("release tags {RELEASE_TAGS}"),
        release_tag_protection(&rulesets, repo),
    ));
    verdicts
}

/// What main's pull requests need before a merge: setup's profiles.
fn reviews(rulesets: &[&Value]) -> String {
    let rule = rulesets
        .iter()
        .flat_map(|r| r["rules"].as_array().into_iter().flatten())
        .find(|rule| rule["type"] == "pull_request");
    let Some(parameters) = rule.map(|r| &r["parameters"]) else {
        return "no pull request rule".into();
    };
    let approvals = parameters["required_approving_review_count"]
        .as_u64()
        .unwrap_or(0);
    match (approvals, parameters["require_code_owner_review"] == true) {
        (0, false) => {
            "a pull request without approval (the solo profile: you alone can merge)".into()
        }
        (n, owners) => format!(
            "{n} approval(s){} (the team profile: an author cannot approve their own pull request)",
            if owners { " and code-owner review" } else { "" }
        ),
    }
}

/// A ruleset requires CI's check: failing CI blocks the merge. Approvals are
/// the profile's choice (solo: none, since an author cannot approve their own).
fn required_check(rulesets: &[&Value], create: &str) -> Verdict {
    let required = rulesets.iter().any(|r| {
        r["rules"].as_array().into_iter().flatten().any(|rule| {
            rule["type"] == "required_status_checks"
                && rule["parameters"]["required_status_checks"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["context"] == CI_CHECK)
        })
    });
    if required {
        Ok(format!("{CI_CHECK:?} must pass before a merge"))
    } else {
        Err((
            format!(
                "no ruleset requires {CI_CHECK:?} (ci.yml's checks): a pull request with failing CI can be merged"
            ),
            create.to_owned(),
        ))
    }
}

/// No classic protection: no deploy key can bypass it.
fn classic_protection(github: &GitHub, repo: &str, branch: &str) -> Result<Verdict> {
    let classic = github.get_optional(&format!("/repos/{repo}/branches/{branch}/protection"))?;
    Ok(match classic {
        None => Ok("none (the ruleset below protects it)".into()),
        Some(_) => Err((
            format!(
                "{branch} has classic branch protection, which no deploy key can bypass (and a github-actions bypass there lets every workflow push)"
            ),
            format!(
                "gh api -X DELETE repos/{repo}/branches/{branch}/protection, then the ruleset below"
            ),
        )),
    })
}

/// Every active ruleset, in full (branch and tag rulesets alike).
fn active_rulesets(github: &GitHub, repo: &str) -> Result<Vec<Value>> {
    let listed = github
        .get_optional(&format!("/repos/{repo}/rulesets?per_page=100"))?
        .unwrap_or_default();
    let mut found = Vec::new();
    for summary in listed.as_array().into_iter().flatten() {
        if summary["enforcement"] != "active" {
            continue;
        }
        let id = summary["id"].as_i64().unwrap_or_default();
        if let Some(ruleset) = github.get_optional(&format!("/repos/{repo}/rulesets/{id}"))? {
            found.push(ruleset);
        }
    }
    Ok(found)
}

/// Whether `ruleset` (of `target`, branch or tag) applies to a ref it names
/// in `names` and does not exclude the first of them.
fn covers(ruleset: &Value, target: &str, names: &[String]) -> bool {
    let refs = |key: &str| -> Vec<String> {
        ruleset["conditions"]["ref_name"][key]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r.as_str().map(str::to_owned))
            .collect()
    };
    ruleset["target"] == target
        && refs("include").iter().any(|r| names.contains(r))
        && !refs("exclude").contains(&names[0])
}

/// The bypass actors of `rulesets`: whether the github-actions app, and
/// whether a deploy key, may bypass them.
fn bypass(rulesets: &[&Value]) -> (bool, bool) {
    let actors: Vec<&Value> = rulesets
        .iter()
        .flat_map(|r| r["bypass_actors"].as_array().into_iter().flatten())
        .collect();
    let bot = actors
        .iter()
        .any(|a| a["actor_type"] == "Integration" && a["actor_id"] == GITHUB_ACTIONS_APP_ID);
    let key = actors.iter().any(|a| a["actor_type"] == "DeployKey");
    (bot, key)
}

/// The rules of `ruleset`, by type.
fn has_rule(ruleset: &Value, kind: &str) -> bool {
    ruleset["rules"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|rule| rule["type"] == kind)
}

/// What creates the release tags' ruleset.
fn create_tag_ruleset(_repo: &str) -> String {
    format!("{SETUP}   (a tag ruleset on {RELEASE_TAGS} that only the deploy key bypasses)")
}

/// Release tags: `git tag v<X.Y.Z>` says which commit a release was built
/// from (promote checks prod's signed gate for that commit), so only the
/// release job, pushing with the deploy key, may create, move or delete one.
fn release_tag_protection(rulesets: &[Value], repo: &str) -> Verdict {
    let names = [RELEASE_TAGS.to_owned(), "~ALL".to_owned()];
    let restricting: Vec<&Value> = rulesets
        .iter()
        .filter(|r| covers(r, "tag", &names))
        .filter(|r| {
            ["creation", "update", "deletion"]
                .iter()
                .all(|k| has_rule(r, k))
        })
        .collect();
    let (bot, key) = bypass(&restricting);
    let create = create_tag_ruleset(repo);
    if restricting.is_empty() {
        Err((
            format!(
                "no tag ruleset restricts creating, moving and deleting {RELEASE_TAGS}: any workflow with \
                 `contents: write` can point a release tag at another commit"
            ),
            create,
        ))
    } else if bot {
        Err((
            "the github-actions app may bypass the release tags' ruleset: any branch's workflow can move a release tag".into(),
            format!("{SETUP}   (its ruleset's only bypass is the deploy key; another ruleset's GitHub Actions bypass: remove it at https://github.com/{repo}/settings/rules)"),
        ))
    } else if !key {
        Err((
            "the release tags' ruleset refuses the deploy key, which the release job pushes its tag with".into(),
            format!("add Deploy keys to its bypass list (https://github.com/{repo}/settings/rules), or: {create}"),
        ))
    } else {
        Ok("a tag ruleset restricts creating, moving and deleting them; only the deploy key bypasses it".into())
    }
}

fn report(verdicts: &[(String, Verdict)]) -> Result<()> {
    let mut missing = 0;
    for (what, verdict) in verdicts {
        match verdict {
            Ok(found) => println!("✔ {what}: {found}"),
            Err((problem, fix)) => {
                missing += 1;
                println!("✘ {what}: {problem}\n    fix: {fix}");
            }
        }
    }
    if missing > 0 {
        bail!("{missing} thing(s) missing for the workflows (listed above with their fix)");
    }
    println!("this fork is ready: open a pull request with the `preview` label");
    Ok(())
}
