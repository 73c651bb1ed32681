//! `cargo xtask doctor`: is this fork ready for the workflows? Each check
//! prints ✔, or ✘ with what is missing and the command that fixes it:
//!
//! 1. the repository variables the workflows read;
//! 2. the environments `preview`, `preprod` and `prod`: each limited to
//!    `main` by a deployment-branch rule, `prod` with required reviewers; the
//!    secrets each holds (names only; every secret but GITHUB_TOKEN lives in
//!    one of them), and the gate's public key GATE_PUBLIC_KEY in `prod`;
//! 3. a self-hosted runner online with the cluster runner's labels,
//!    registered `--ephemeral`, and approval required before any outside
//!    contributor's pull request runs a workflow;
//! 4. Argo CD reachable with ARGOCD_AUTH_TOKEN, seeing project service-demo;
//! 5. each service's GHCR package (`ghcr.io/<owner>/<image>`) public (readable
//!    by the cluster without a pull secret);
//! 6. the GitOps branch: protected by a ruleset that only the GitOps deploy
//!    key (a writable deploy key) bypasses, never the `github-actions` app
//!    that every workflow's GITHUB_TOKEN is, and no classic protection;
//! 7. release tags (`v*`): a tag ruleset restricts creating, moving and
//!    deleting them, bypassed only by the deploy key the release job pushes with.
//!
//! GitHub is asked with GITHUB_TOKEN (a token of an admin of the fork, e.g.
//! `gh auth token`); tokens are sent as headers and never printed.

use anyhow::{Result, bail};
use serde_json::Value;

use crate::parts::argocd::ArgoCd;
use crate::parts::github::GitHub;
use crate::parts::services;

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
}

/// Repository variables the workflows read.
const VARIABLES: [(&str, &str); 2] = [
    (
        "ARGOCD_SERVER",
        "the Argo CD host the cluster runner reaches, e.g. http://127.0.0.1:8090 (terraform/)",
    ),
    (
        "INGRESS_URL",
        "the ingress controller's address the cluster runner reaches, e.g. http://127.0.0.1:8081 \
         (terraform output ingress_url); each service's URL in each environment is derived from it",
    ),
];
/// The environments limited to main, and whether each needs required reviewers.
const ENVIRONMENTS: [(&str, bool); 4] = [
    ("preview", false),
    ("preprod", false),
    ("prod", true),
    ("image-signing", false),
];
/// The GitOps deploy key's secret, in each environment.
const DEPLOY_KEY: &str = "GITOPS_DEPLOY_KEY";
/// The app behind every workflow's GITHUB_TOKEN (its id in rulesets' bypass lists).
const GITHUB_ACTIONS_APP_ID: i64 = 15368;
/// Environment secrets: (environment, name, what it is).
const SECRETS: [(&str, &str, &str); 8] = [
    (
        "preview",
        "ARGOCD_PREVIEW_TOKEN",
        "the Argo CD token of project role `preview` (cargo xtask cluster up writes it)",
    ),
    ("preview", DEPLOY_KEY, "the GitOps deploy key's private key"),
    ("preprod", DEPLOY_KEY, "the GitOps deploy key's private key"),
    ("prod", DEPLOY_KEY, "the GitOps deploy key's private key"),
    (
        "preprod",
        "ARGOCD_PREPROD_TOKEN",
        "the Argo CD token of project role `preprod` (cargo xtask cluster up writes it)",
    ),
    (
        "preprod",
        "GATE_SIGNING_KEY",
        "the gate's private key (cargo xtask gate keygen)",
    ),
    (
        "prod",
        "ARGOCD_AUTH_TOKEN",
        "the Argo CD token of project role `release` (cargo xtask cluster up writes it)",
    ),
    (
        "image-signing",
        "IMAGE_SIGNING_KEY",
        "the image signing key (cargo xtask gate keygen; its public half is gitops/policy/cosign.pub)",
    ),
];
/// The label set the workflows' cluster jobs ask for when CLUSTER_RUNNER is unset.
const DEFAULT_RUNNER: [&str; 2] = ["self-hosted", "kind"];
/// The git tags releases are (`v<X.Y.Z>`), as a ruleset names them.
const RELEASE_TAGS: &str = "refs/tags/v*";
/// The Argo CD project every environment deploys through.
const PROJECT: &str = "service-demo";

/// One check's verdict: what was found, or what is missing and its fix.
type Verdict = Result<String, (String, String)>;

/// The steps: ask GitHub, then Argo CD; print every verdict; fail if any is missing.
pub fn run(args: DoctorArgs) -> Result<()> {
    let Some(github) = GitHub::from_env()? else {
        bail!(
            "doctor asks GitHub about the fork: set GITHUB_REPOSITORY=<owner>/<name> and GITHUB_TOKEN \
             (a token of the fork's admin, e.g. GITHUB_TOKEN=$(gh auth token))"
        );
    };
    let repo = github.repository().to_owned();
    let variables = names_and_values(
        &github,
        &format!("/repos/{repo}/actions/variables"),
        "variables",
    )?;
    let mut verdicts: Vec<(String, Verdict)> = Vec::new();
    for (name, what) in VARIABLES {
        let found = variables.iter().any(|(n, _)| n == name);
        let fix = format!("gh variable set {name} --repo {repo} --body <{what}>");
        verdicts.push((format!("variable {name}"), present(found, fix)));
    }
    let mut ready = Vec::new();
    for (name, reviewers) in ENVIRONMENTS {
        let verdict = environment(&github, &repo, name, reviewers)?;
        if verdict.is_ok() {
            ready.push(name);
        }
        verdicts.push((format!("environment {name}"), verdict));
    }
    verdicts.extend(secret_verdicts(&github, &repo, &ready)?);
    verdicts.push((
        "gate key GATE_PUBLIC_KEY in environment prod".into(),
        gate_key(&github, &repo)?,
    ));
    let runner_variable = variables.iter().find(|(n, _)| n == "CLUSTER_RUNNER");
    verdicts.push((
        "cluster runner".into(),
        runner(&github, &repo, runner_variable)?,
    ));
    verdicts.push((
        "outside contributors' pull requests".into(),
        fork_approval(&github, &repo)?,
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
    verdicts.extend(packages(&github, &repo)?);
    verdicts.push(("GitOps deploy key".into(), deploy_key(&github, &repo)?));
    verdicts.extend(protection(&github, &repo, &args.branch)?);
    report(&verdicts)
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

fn secret_verdicts(github: &GitHub, repo: &str, ready: &[&str]) -> Result<Vec<(String, Verdict)>> {
    let mut listed: std::collections::BTreeMap<&str, Vec<(String, String)>> = Default::default();
    let mut verdicts = Vec::new();
    for (environment, name, what) in SECRETS {
        if !listed.contains_key(environment) {
            let path = format!("/repos/{repo}/environments/{environment}/secrets");
            listed.insert(environment, names_and_values(github, &path, "secrets")?);
        }
        let found = listed[environment].iter().any(|(n, _)| n == name);
        let set = format!("gh secret set {name} --repo {repo} --env {environment}   ({what})");
        // Never a bare `gh secret set --env` for an environment that is missing or open to
        // every branch: that would make (or fill) it without its main-only rule.
        let fix = if ready.contains(&environment) {
            set
        } else {
            format!(
                "{} && {set}",
                create_environment(repo, environment, environment == "prod")
            )
        };
        verdicts.push((
            format!("secret {name} (environment {environment})"),
            present(found, fix),
        ));
    }
    Ok(verdicts)
}

/// The commands that create (or reset) an environment limited to main, with
/// required reviewers (the caller) when asked.
fn create_environment(repo: &str, name: &str, reviewers: bool) -> String {
    let reviewers = if reviewers {
        r#","reviewers":[{"type":"User","id":'"$(gh api user --jq .id)"'}]"#
    } else {
        ""
    };
    format!(
        r#"gh api -X PUT repos/{repo}/environments/{name} --input - <<< '{{"deployment_branch_policy":{{"protected_branches":false,"custom_branch_policies":true}}{reviewers}}}' && gh api -X POST repos/{repo}/environments/{name}/deployment-branch-policies -f name=main -f type=branch"#
    )
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
                "keep only the branch policy `main` (https://github.com/{repo}/settings/environments), or: {fix}"
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
        "gh variable set GATE_PUBLIC_KEY --repo {repo} --env prod < gate.pub   (release then accepts only gates signed by GATE_SIGNING_KEY)"
    );
    Ok(present(found, fix))
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
    let register = register_runner(repo);
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
    let missing = match list.iter().find(|r| fits(r)) {
        Some(offline) => format!(
            "{} has the labels {wanted:?} but is offline",
            offline["name"].as_str().unwrap_or_default()
        ),
        None => format!("no self-hosted runner has the labels {wanted:?}"),
    };
    Ok(Err((missing, register)))
}

/// How the cluster runner is registered: `cluster up`'s dispatcher, one
/// just-in-time runner per queued job of main in a fresh container.
fn register_runner(repo: &str) -> String {
    format!(
        "on the machine that runs kind: GITHUB_REPOSITORY={repo} cargo xtask cluster up (its dispatcher registers one just-in-time runner per queued job of main, in a fresh container removed after the job), or cargo xtask cluster runner in the foreground; between jobs no runner is registered"
    )
}

/// Workflows of an outside contributor's pull request wait for approval.
fn fork_approval(github: &GitHub, repo: &str) -> Result<Verdict> {
    let fix = format!(
        "gh api -X PUT repos/{repo}/actions/permissions/fork-pr-contributor-approval -f approval_policy=all_external_contributors   (Settings → Actions → General → Require approval for all outside collaborators)"
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
            "set the repository variable ARGOCD_SERVER (or pass --argocd-server)".into(),
        ));
    };
    let token = std::env::var("ARGOCD_AUTH_TOKEN").unwrap_or_default();
    let fix = "export ARGOCD_AUTH_TOKEN=<a token of project role service-demo/release> (cargo xtask cluster up writes it to the prod environment's secret)";
    let client =
        ArgoCd::new(server, token, insecure).map_err(|e| (format!("{e:#}"), fix.to_owned()))?;
    match client.project_applications(PROJECT) {
        Ok(0) => Err((
            format!("{server} answers, but the token sees no application of project {PROJECT}"),
            "apply the root app (terraform apply in terraform/) and give the token's role `applications, get` on project service-demo".into(),
        )),
        Ok(n) => Ok(format!("{server} answers; the token sees {n} application(s) of project {PROJECT}")),
        Err(error) => Err((format!("{error:#}"), fix.to_owned())),
    }
}

/// The image package is public: the kind cluster pulls it without a secret.
/// Every service's image package, by its declared image.
fn packages(github: &GitHub, repo: &str) -> Result<Vec<(String, Verdict)>> {
    let mut verdicts = Vec::new();
    for service in services::load_current()? {
        let image = &service.declaration.image;
        verdicts.push((
            format!("GHCR package of {}", service.name),
            package(github, repo, image)?,
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
    let settings = format!(
        "https://github.com/{owner}/{}/pkgs/container/{image}/settings",
        name.to_lowercase()
    );
    let name = image;
    Ok(
        match github.get_optional(&format!("/{scope}/{owner}/packages/container/{name}"))? {
            None => Err((
                format!("no package ghcr.io/{}/{name} yet", owner.to_lowercase()),
                "merge a pull request (CD's image job creates it), then make it public".into(),
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
                format!(
                    "make it public ({settings} → Change visibility), or give the cluster an image pull secret"
                ),
            )),
        },
    )
}

/// A writable deploy key: the GitOps commits' credential.
fn deploy_key(github: &GitHub, repo: &str) -> Result<Verdict> {
    let keys = github
        .get_optional(&format!("/repos/{repo}/keys?per_page=100"))?
        .unwrap_or_default();
    let writable: Vec<&str> = keys
        .as_array()
        .into_iter()
        .flatten()
        .filter(|k| k["read_only"] == false)
        .filter_map(|k| k["title"].as_str())
        .collect();
    if let Some(title) = writable.first() {
        return Ok(Ok(format!("writable deploy key {title:?}")));
    }
    Ok(Err((
        "no writable deploy key: the workflows push GitOps commits with one".into(),
        format!(
            "ssh-keygen -t ed25519 -N '' -C gitops -f gitops_key && gh repo deploy-key add gitops_key.pub --repo {repo} --allow-write --title gitops && for e in preview preprod prod; do gh secret set {DEPLOY_KEY} --repo {repo} --env $e < gitops_key; done && rm gitops_key"
        ),
    )))
}

/// The ruleset that protects the GitOps branch (the command that creates it).
fn create_ruleset(repo: &str, branch: &str) -> String {
    format!(
        r#"gh api -X POST repos/{repo}/rulesets --input - <<< '{{"name":"{branch}","target":"branch","enforcement":"active","conditions":{{"ref_name":{{"include":["refs/heads/{branch}"],"exclude":[]}}}},"rules":[{{"type":"deletion"}},{{"type":"non_fast_forward"}},{{"type":"pull_request","parameters":{{"required_approving_review_count":1,"require_code_owner_review":true,"dismiss_stale_reviews_on_push":true,"require_last_push_approval":false,"required_review_thread_resolution":false}}}}],"bypass_actors":[{{"actor_type":"DeployKey","bypass_mode":"always"}}]}}'"#
    )
}

/// The GitOps branch's protection: a ruleset that refuses pushes, which only
/// the deploy key bypasses (never the github-actions app), and no classic
/// protection (no deploy key can bypass that).
fn protection(github: &GitHub, repo: &str, branch: &str) -> Result<Vec<(String, Verdict)>> {
    let mut verdicts = Vec::new();
    verdicts.push((
        format!("classic protection of {branch}"),
        classic_protection(github, repo, branch)?,
    ));
    let rulesets = active_rulesets(github, repo)?;
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
            create,
        ))
    } else if bot {
        Err((
            format!(
                "the github-actions app may bypass {branch}'s ruleset: any branch's workflow with `contents: write` can push to {branch}"
            ),
            format!(
                "remove the GitHub Actions bypass (https://github.com/{repo}/settings/rules); only the deploy key bypasses"
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
        Ok("a ruleset refuses direct pushes; only the deploy key bypasses it".into())
    };
    verdicts.push((format!("{branch} protected"), verdict));
    verdicts.push((
        format!("release tags {RELEASE_TAGS}"),
        release_tag_protection(&rulesets, repo),
    ));
    Ok(verdicts)
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

/// The ruleset that keeps release tags to the release job (the command that creates it).
fn create_tag_ruleset(repo: &str) -> String {
    format!(
        r#"gh api -X POST repos/{repo}/rulesets --input - <<< '{{"name":"release tags","target":"tag","enforcement":"active","conditions":{{"ref_name":{{"include":["{RELEASE_TAGS}"],"exclude":[]}}}},"rules":[{{"type":"creation"}},{{"type":"update"}},{{"type":"deletion"}}],"bypass_actors":[{{"actor_type":"DeployKey","bypass_mode":"always"}}]}}'"#
    )
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
            format!("remove the GitHub Actions bypass (https://github.com/{repo}/settings/rules); only the deploy key bypasses"),
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
