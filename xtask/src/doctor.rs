//! `cargo xtask doctor`: is this fork ready for the workflows? Each check
//! prints ✔, or ✘ with what is missing and the command that fixes it:
//!
//! 1. the repository variables and secrets the workflows read (names only);
//! 2. the `preprod` and `prod` environments' secrets, and the gate's public
//!    key GATE_PUBLIC_KEY in `prod`'s variables;
//! 3. a self-hosted runner online with the cluster runner's labels;
//! 4. Argo CD reachable with ARGOCD_AUTH_TOKEN, seeing project service-demo;
//! 5. the GHCR package public (readable by the cluster without a pull secret);
//! 6. the GitOps branch's protection lets the workflows' bot push.
//!
//! GitHub is asked with GITHUB_TOKEN (a token of an admin of the fork, e.g.
//! `gh auth token`); tokens are sent as headers and never printed.

use anyhow::{Result, bail};
use serde_json::Value;

use crate::parts::argocd::ArgoCd;
use crate::parts::github::GitHub;

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
const VARIABLES: [(&str, &str); 3] = [
    (
        "ARGOCD_SERVER",
        "the Argo CD host the cluster runner reaches, e.g. http://127.0.0.1:8090 (terraform/)",
    ),
    (
        "PREPROD_URL",
        "preprod's URL through the ingress, e.g. http://preprod.127.0.0.1.nip.io",
    ),
    (
        "PREVIEW_DOMAIN",
        "the previews' domain: pr-<N>.<domain>, e.g. 127.0.0.1.nip.io",
    ),
];
/// Secrets: (environment or "" for the repository, name, what it is).
const SECRETS: [(&str, &str, &str); 4] = [
    (
        "",
        "ARGOCD_PREVIEW_TOKEN",
        "the Argo CD token of project role `preview`",
    ),
    (
        "preprod",
        "ARGOCD_PREPROD_TOKEN",
        "the Argo CD token of project role `preprod`",
    ),
    (
        "preprod",
        "GATE_SIGNING_KEY",
        "the gate's private key (cargo xtask gate keygen)",
    ),
    (
        "prod",
        "ARGOCD_AUTH_TOKEN",
        "the Argo CD token of the `ci` account (terraform output)",
    ),
];
/// The label set the workflows' cluster jobs ask for when CLUSTER_RUNNER is unset.
const DEFAULT_RUNNER: [&str; 2] = ["self-hosted", "kind"];
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
    verdicts.extend(secret_verdicts(&github, &repo)?);
    verdicts.push((
        "gate key GATE_PUBLIC_KEY in environment prod".into(),
        gate_key(&github, &repo)?,
    ));
    let runner_variable = variables.iter().find(|(n, _)| n == "CLUSTER_RUNNER");
    verdicts.push((
        "cluster runner".into(),
        runner(&github, &repo, runner_variable)?,
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
    verdicts.push(("GHCR package".into(), package(&github, &repo)?));
    verdicts.push((
        format!("bot pushes to {}", args.branch),
        protection(&github, &repo, &args.branch)?,
    ));
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

fn secret_verdicts(github: &GitHub, repo: &str) -> Result<Vec<(String, Verdict)>> {
    let mut listed: std::collections::BTreeMap<&str, Vec<(String, String)>> = Default::default();
    let mut verdicts = Vec::new();
    for (environment, name, what) in SECRETS {
        let (path, place, flag) = if environment.is_empty() {
            (
                format!("/repos/{repo}/actions/secrets"),
                "repository".to_owned(),
                String::new(),
            )
        } else {
            (
                format!("/repos/{repo}/environments/{environment}/secrets"),
                format!("environment {environment}"),
                format!(" --env {environment}"),
            )
        };
        if !listed.contains_key(environment) {
            listed.insert(environment, names_and_values(github, &path, "secrets")?);
        }
        let found = listed[environment].iter().any(|(n, _)| n == name);
        let fix = format!("gh secret set {name} --repo {repo}{flag}   ({what})");
        verdicts.push((format!("secret {name} ({place})"), present(found, fix)));
    }
    Ok(verdicts)
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
    if let Some(online) = list.iter().find(|r| fits(r) && r["status"] == "online") {
        return Ok(Ok(format!(
            "{} is online with {wanted:?}",
            online["name"].as_str().unwrap_or_default()
        )));
    }
    let missing = match list.iter().find(|r| fits(r)) {
        Some(offline) => format!(
            "{} has the labels {wanted:?} but is offline",
            offline["name"].as_str().unwrap_or_default()
        ),
        None => format!("no self-hosted runner has the labels {wanted:?}"),
    };
    let fix = format!(
        "on the machine that runs kind, in the runner's directory: ./config.sh --url https://github.com/{repo} --token \"$(gh api -X POST repos/{repo}/actions/runners/registration-token --jq .token)\" --labels kind --unattended && ./run.sh"
    );
    Ok(Err((missing, fix)))
}

fn argocd(server: Option<&str>, insecure: bool) -> Verdict {
    let Some(server) = server else {
        return Err((
            "no Argo CD address".into(),
            "set the repository variable ARGOCD_SERVER (or pass --argocd-server)".into(),
        ));
    };
    let token = std::env::var("ARGOCD_AUTH_TOKEN").unwrap_or_default();
    let fix = "export ARGOCD_AUTH_TOKEN=<the ci account's token> (terraform prints the command that makes it)";
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
fn package(github: &GitHub, repo: &str) -> Result<Verdict> {
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
    let name = name.to_lowercase();
    let settings = format!("https://github.com/{owner}/{name}/pkgs/container/{name}/settings");
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

/// Branch protection that would refuse the bot's GitOps commits.
fn protection(github: &GitHub, repo: &str, branch: &str) -> Result<Verdict> {
    let Some(rules) =
        github.get_optional(&format!("/repos/{repo}/branches/{branch}/protection"))?
    else {
        return Ok(Ok(format!("{branch} is not protected")));
    };
    let lets_bot = |list: &Value| {
        list["apps"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|a| a["slug"] == "github-actions")
    };
    let reviews = &rules["required_pull_request_reviews"];
    if !reviews.is_null() && !lets_bot(&reviews["bypass_pull_request_allowances"]) {
        return Ok(Err((
            format!(
                "{branch} requires pull request reviews, which refuses the bot's GitOps commits"
            ),
            format!(
                "allow the github-actions app to bypass them (https://github.com/{repo}/settings/branches → {branch} → Allow specified actors to bypass)"
            ),
        )));
    }
    let restrictions = &rules["restrictions"];
    if !restrictions.is_null() && !lets_bot(restrictions) {
        return Ok(Err((
            format!("only listed actors may push to {branch}, and the bot is not one"),
            format!(
                "add the github-actions app to {branch}'s push restrictions (https://github.com/{repo}/settings/branches)"
            ),
        )));
    }
    Ok(Ok(format!(
        "{branch}'s protection lets the github-actions bot push"
    )))
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
