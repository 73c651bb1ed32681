//! `cargo xtask setup [--profile solo|team] [--dry-run]`: the GitHub side of
//! a fork in one command, every step a person did by hand:
//!
//! 1. who: the fork from `origin`, the token's user (GITHUB_TOKEN, else `gh auth token`);
//! 2. Actions enabled, and outside contributors' pull requests wait for approval;
//! 3. the environments preview, preprod, prod and image-signing, each limited
//!    to main by a custom deployment branch policy, prod with one required
//!    reviewer (the token's user);
//! 4. the keys: gate, image signing, GitOps deploy key. Each is made only when
//!    its secret or public half is missing; private halves go only to GitHub
//!    secrets (sealed to the scope's public key), public halves to variables
//!    (so a second run can check them) and the deploy key to the repository;
//!    nothing secret is ever written to disk (every key is made in memory);
//! 5. the `preview` label;
//! 6. the files: the repository pointed at the fork (owner lower-cased in
//!    image names; a private fork's Argo CD objects name its SSH URL, which
//!    `cluster up` gives Argo CD a read-only deploy key for), CODEOWNERS'
//!    owner, the image key in `cosign.pub` and the
//!    admission policy; committed with `[skip ci]` and pushed to main, after
//!    the secrets exist and before the rulesets refuse direct pushes;
//! 7. the rulesets of main (per profile) and of release tags;
//! 8. `PIPELINE_READY=true`, last: the workflows skip until it is set.
//!
//! Every step reads first and writes only what differs: a second run sends
//! no write, and a run that stopped half-way is finished by running it again.
//! `--dry-run` sends no write and changes no file (not even git): it prints
//! every request it would send (secrets as `***`) and the file diff.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::domain::attestation;
use crate::domain::deploy_key;
use crate::domain::fork_files::Edits;
use crate::domain::fork_settings::{
    self as settings, DEPLOY_KEY, DEPLOY_KEY_ENVIRONMENTS, DEPLOY_KEY_TITLE, DEPLOY_PUBLIC_KEY,
    GATE_PUBLIC_KEY, GATE_SIGNING_KEY, IMAGE_PUBLIC_KEY, IMAGE_SIGNING_KEY, Profile, holds,
};
use crate::domain::github::{self, GitHub, Scope};
use crate::domain::services;
use crate::plumbing::workspace;

#[derive(clap::Args)]
pub struct SetupArgs {
    /// solo: pull request and CI required, no approval (a learner alone); team: plus one
    /// approval and code-owner review.
    #[arg(long, value_enum, default_value = "solo")]
    profile: Profile,
    /// Print every request it would send (secrets masked) and the file diff; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// The clone of the fork (default: this repository).
    #[arg(long)]
    root: Option<PathBuf>,
}

/// Who and what the steps act on.
struct Fork<'a> {
    github: &'a GitHub,
    root: &'a Path,
    owner: String,
    name: String,
    /// The token's user: prod's reviewer, and CODEOWNERS' owner when the fork is an organisation's.
    user: (String, i64),
    organisation: bool,
    /// A private fork's Argo CD objects name its SSH URL (`cluster up` gives Argo CD a read-only key).
    private: bool,
}

pub fn run(args: SetupArgs) -> Result<()> {
    let root = args.root.unwrap_or_else(workspace::root);
    let (owner, name) = github::origin_repository(&root)?;
    let api = std::env::var("GITHUB_API_URL").unwrap_or_else(|_| "https://api.github.com".into());
    let github =
        GitHub::new(&api, &format!("{owner}/{name}"), github::token()?)?.dry_run(args.dry_run);
    let outcome = steps(&github, &root, &owner, &name, args.profile);
    let writes = github.writes();
    if let Err(error) = outcome {
        if writes.is_empty() {
            bail!(
                "{error:#}\n\nsetup changed nothing on GitHub: fix the cause above and run it again."
            );
        }
        let sent: Vec<String> = writes.iter().map(|w| format!("  {w}")).collect();
        bail!(
            "{error:#}\n\nsetup stopped before finishing. GitHub had accepted {} change(s) before it \
             stopped:\n{}\nEvery step reads before it writes: fix the cause above and run \
             `cargo xtask setup` again; it finishes what is missing.",
            sent.len(),
            sent.join("\n")
        );
    }
    if args.dry_run {
        println!("\ndry run: {} request(s) would be sent:", writes.len());
        for write in &writes {
            println!("  {write}");
        }
        println!("nothing was changed (no request sent, no file written, no commit)");
    } else if writes.is_empty() {
        println!(
            "\nnothing to change: github.com/{owner}/{name} already matches setup's {} profile (no write sent)",
            format!("{:?}", args.profile).to_lowercase()
        );
    } else {
        println!("\nsetup sent {} write(s) to GitHub", writes.len());
    }
    if !args.dry_run {
        println!("next: `cargo xtask cluster up`, then `cargo xtask doctor`");
    }
    Ok(())
}

/// The steps, in the order the module's doc gives.
fn steps(github: &GitHub, root: &Path, owner: &str, name: &str, profile: Profile) -> Result<()> {
    let fork = who(github, root, owner, name)?;
    println!(
        "fork github.com/{owner}/{name}, as {} ({} profile)",
        fork.user.0,
        format!("{profile:?}").to_lowercase()
    );
    if !github.is_dry_run() {
        // The git side is checked before any write, so a refusal here changes nothing.
        git_ready(root)?;
    }
    actions(&fork)?;
    for (environment, reviewers) in settings::ENVIRONMENTS {
        let state = self::environment(&fork, environment, reviewers)?;
        println!("✔ environment {environment}: {state}");
    }
    let (gate, _) = p256_key(&fork, GATE_SIGNING_KEY, GATE_PUBLIC_KEY)?;
    println!("✔ gate key: {gate}");
    let (image, image_pem) = p256_key(&fork, IMAGE_SIGNING_KEY, IMAGE_PUBLIC_KEY)?;
    println!("✔ image signing key: {image}");
    println!("✔ GitOps deploy key: {}", gitops_deploy_key(&fork)?);
    println!("✔ label {}: {}", settings::PREVIEW_LABEL, label(&fork)?);
    println!("✔ files: {}", files(&fork, &image_pem)?);
    for wanted in [settings::main_ruleset(profile), settings::tag_ruleset()] {
        let state = ruleset(&fork, &wanted)?;
        println!(
            "✔ ruleset {}: {state}",
            wanted["name"].as_str().unwrap_or_default()
        );
    }
    package_click(&fork)?;
    let ready = github.set_variable(Scope::Repository, settings::PIPELINE_READY, "true")?;
    println!(
        "✔ variable {}=true: {}",
        settings::PIPELINE_READY,
        change(ready)
    );
    Ok(())
}

fn change(change: github::Change) -> &'static str {
    match change {
        github::Change::Created => "created",
        github::Change::Updated => "updated",
        github::Change::Unchanged => "already set",
    }
}

/// The token's user, and whether it may administer the fork.
fn who<'a>(github: &'a GitHub, root: &'a Path, owner: &str, name: &str) -> Result<Fork<'a>> {
    let user = github
        .get_optional("/user")?
        .context("GitHub does not know the token's user: log in again with `gh auth login`")?;
    let repo = github.get_optional(&github.repo_path(""))?.with_context(|| {
        format!(
            "the token cannot see github.com/{owner}/{name}: fork it first (gh repo fork), or log in as its owner"
        )
    })?;
    if repo["permissions"]["admin"] == false {
        bail!(
            "the token's user {} is not an admin of {owner}/{name}: setup changes its settings; log in as its owner (gh auth login)",
            user["login"]
        );
    }
    Ok(Fork {
        github,
        root,
        owner: owner.to_owned(),
        name: name.to_owned(),
        user: (
            user["login"].as_str().unwrap_or_default().to_owned(),
            user["id"].as_i64().unwrap_or_default(),
        ),
        organisation: repo["owner"]["type"] == "Organization",
        private: repo["private"] == true,
    })
}

/// Actions on (off on a new fork), and every outside contributor's pull request waits for approval.
fn actions(fork: &Fork) -> Result<()> {
    let github = fork.github;
    let path = github.repo_path("/actions/permissions");
    let permissions = github.get_optional(&path)?.unwrap_or_default();
    if permissions["enabled"] == true {
        println!("✔ Actions: enabled");
    } else {
        github.put(&path, &json!({"enabled": true, "allowed_actions": "all"}))?;
        println!("✔ Actions: enabled now");
    }
    let path = github.repo_path("/actions/permissions/fork-pr-contributor-approval");
    let wanted = json!({"approval_policy": settings::FORK_PR_APPROVAL});
    match github.get_optional(&path)? {
        Some(policy) if holds(&policy, &wanted) => {
            println!("✔ outside contributors' pull requests: wait for approval")
        }
        Some(_) => {
            github.put(&path, &wanted)?;
            println!("✔ outside contributors' pull requests: wait for approval now");
        }
        // A private repository's forks cannot run workflows: nothing to set.
        None => println!("✔ outside contributors' pull requests: GitHub has no such setting here"),
    }
    Ok(())
}

/// An environment limited to main by a custom branch policy; prod with the token's user as reviewer.
fn environment(fork: &Fork, name: &str, reviewers: bool) -> Result<&'static str> {
    let github = fork.github;
    let path = github.repo_path(&format!("/environments/{name}"));
    let mut wanted = json!({
        "deployment_branch_policy": {"protected_branches": false, "custom_branch_policies": true}
    });
    if reviewers {
        wanted["reviewers"] = json!([{"type": "User", "id": fork.user.1}]);
        // A learner alone approves their own release.
        wanted["prevent_self_review"] = json!(false);
    }
    let current = github.get_optional(&path)?;
    let reviewed = |e: &Value| {
        e["protection_rules"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|r| {
                r["type"] == "required_reviewers"
                    && r["prevent_self_review"] != true
                    && r["reviewers"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|x| x["reviewer"]["id"] == fork.user.1)
            })
    };
    let matches = current.as_ref().is_some_and(|e| {
        holds(
            &e["deployment_branch_policy"],
            &wanted["deployment_branch_policy"],
        ) && (!reviewers || reviewed(e))
    });
    if !matches {
        github.put(&path, &wanted)?;
    }
    let policies_changed = branch_policies(github, &path)?;
    Ok(match (current.is_some(), matches && !policies_changed) {
        (_, true) => "already main only",
        (false, _) => "created, main only",
        (true, false) => "limited to main now",
    })
}

/// Exactly one deployment branch policy, `main`; whether anything was written.
fn branch_policies(github: &GitHub, environment: &str) -> Result<bool> {
    let path = format!("{environment}/deployment-branch-policies");
    let listed = github
        .get_optional(&format!("{path}?per_page=100"))?
        .unwrap_or_default();
    let mut main = false;
    let mut changed = false;
    for policy in listed["branch_policies"].as_array().into_iter().flatten() {
        let is_main = policy["name"] == "main" && policy["type"] != "tag";
        if is_main && !main {
            main = true;
        } else {
            github.delete(&format!("{path}/{}", policy["id"]))?;
            changed = true;
        }
    }
    if !main {
        github.post_to(&path, &json!({"name": "main", "type": "branch"}))?;
        changed = true;
    }
    Ok(changed)
}

/// A P-256 key (gate or image signing): made only when its secret or its
/// public variable is missing, then the private half to the secret and the
/// public half to the variable (last, so a run that stops between them makes
/// a new pair next time). Returns what happened and the public half.
fn p256_key(fork: &Fork, secret: (&str, &str), public: (&str, &str)) -> Result<(String, String)> {
    let github = fork.github;
    let current = github.variable(Scope::Environment(public.0), public.1)?;
    if let Some(pem) = current
        && github.secret_exists(Scope::Environment(secret.0), secret.1)?
    {
        return Ok((
            format!(
                "{} (environment {}) and {} (environment {}) exist",
                secret.1, secret.0, public.1, public.0
            ),
            pem,
        ));
    }
    let (private, public_pem) = attestation::key_pair()?;
    github.put_secret(Scope::Environment(secret.0), secret.1, &private)?;
    github.set_variable(Scope::Environment(public.0), public.1, &public_pem)?;
    Ok((
        format!(
            "new pair: secret {} (environment {}), variable {} (environment {})",
            secret.1, secret.0, public.1, public.0
        ),
        public_pem,
    ))
}

/// The GitOps deploy key: its secret in every environment that pushes, the
/// key registered writable, its public half a variable. Made again when any
/// of them is missing or they disagree.
fn gitops_deploy_key(fork: &Fork) -> Result<String> {
    let github = fork.github;
    let public = github.variable(Scope::Repository, DEPLOY_PUBLIC_KEY)?;
    let keys = github
        .get_optional(&github.repo_path("/keys?per_page=100"))?
        .unwrap_or_default();
    let keys: Vec<Value> = keys.as_array().cloned().unwrap_or_default();
    let registered = |public: &str| {
        keys.iter()
            .any(|k| k["read_only"] == false && k["key"] == settings::key_only(public))
    };
    let mut secrets = true;
    for environment in DEPLOY_KEY_ENVIRONMENTS {
        secrets &= github.secret_exists(Scope::Environment(environment), DEPLOY_KEY)?;
    }
    if let Some(public) = &public
        && secrets
        && registered(public)
    {
        return Ok(format!(
            "registered writable; {DEPLOY_KEY} in {DEPLOY_KEY_ENVIRONMENTS:?}"
        ));
    }
    let pair = if github.is_dry_run() {
        deploy_key::KeyPair {
            private: String::new(),
            public: "ssh-ed25519 <a new key> gitops".into(),
        }
    } else {
        deploy_key::generate(DEPLOY_KEY_TITLE)?
    };
    for environment in DEPLOY_KEY_ENVIRONMENTS {
        github.put_secret(Scope::Environment(environment), DEPLOY_KEY, &pair.private)?;
    }
    for stale in keys.iter().filter(|k| k["title"] == DEPLOY_KEY_TITLE) {
        github.delete(&github.repo_path(&format!("/keys/{}", stale["id"])))?;
    }
    let body = json!({"title": DEPLOY_KEY_TITLE, "key": pair.public, "read_only": false});
    github.post_to(&github.repo_path("/keys"), &body)?;
    let key = settings::key_only(&pair.public);
    github.set_variable(Scope::Repository, DEPLOY_PUBLIC_KEY, &key)?;
    Ok(format!(
        "new key registered writable; {DEPLOY_KEY} in {DEPLOY_KEY_ENVIRONMENTS:?}"
    ))
}

/// The label that asks for a preview.
fn label(fork: &Fork) -> Result<&'static str> {
    let github = fork.github;
    let name = settings::PREVIEW_LABEL;
    if github
        .get_optional(&github.repo_path(&format!("/labels/{name}")))?
        .is_some()
    {
        return Ok("exists");
    }
    github.post_to(
        &github.repo_path("/labels"),
        &json!({"name": name, "color": "1d76db", "description": "Deploy this pull request as a preview environment"}),
    )?;
    Ok("created")
}

/// The ruleset named as `wanted` is: created, or replaced when it differs.
fn ruleset(fork: &Fork, wanted: &Value) -> Result<&'static str> {
    let github = fork.github;
    let listed = github
        .get_optional(&github.repo_path("/rulesets?per_page=100"))?
        .unwrap_or_default();
    let found = listed
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r["name"] == wanted["name"]);
    let Some(found) = found else {
        github.post_to(&github.repo_path("/rulesets"), wanted)?;
        return Ok("created");
    };
    let path = github.repo_path(&format!("/rulesets/{}", found["id"]));
    let current = github.get_optional(&path)?.unwrap_or_default();
    if holds(&current, wanted) {
        return Ok("as wanted");
    }
    github.put(&path, wanted)?;
    Ok("updated")
}

/// The files that name the fork, committed (`[skip ci]`) and pushed to main.
fn files(fork: &Fork, image_pem: &str) -> Result<String> {
    let mut edits = Edits::new(fork.root);
    edits.point_at(&(fork.owner.clone(), fork.name.clone()))?;
    // A private fork: Argo CD reads it over SSH with the deploy key `cluster up` gives it.
    edits.argocd_transport(&(fork.owner.clone(), fork.name.clone()), fork.private)?;
    // CODEOWNERS names users or teams: an organisation's fork names the token's user.
    let owner = if fork.organisation {
        &fork.user.0
    } else {
        &fork.owner
    };
    edits.codeowners(owner)?;
    edits.image_key(image_pem)?;
    let changed: Vec<String> = edits
        .changed()
        .iter()
        .map(|(path, _, _)| path.to_string())
        .collect();
    if fork.github.is_dry_run() {
        print!("{}", edits.diff());
        return Ok(format!(
            "{} file(s) would be committed and pushed to main",
            changed.len()
        ));
    }
    if changed.is_empty() {
        return push_pending(fork.root);
    }
    let git = |args: &[&str]| run_git(fork.root, args);
    git_ready(fork.root)?;
    let mut dirty = vec!["status", "--porcelain", "--"];
    dirty.extend(changed.iter().map(String::as_str));
    if !git(&dirty)?.is_empty() {
        bail!(
            "{changed:?} have changes of yours: commit or stash them (git stash), then run setup again"
        );
    }
    edits.write()?;
    let mut add = vec!["add", "--"];
    add.extend(changed.iter().map(String::as_str));
    git(&add)?;
    let message = format!(
        "{COMMIT_SUBJECT} {}/{}, its image key and code owners [skip ci]",
        fork.owner, fork.name
    );
    git(&["commit", "--quiet", "-m", &message])?;
    push_pending(fork.root)?;
    Ok(format!(
        "{} file(s) committed and pushed to main",
        changed.len()
    ))
}

/// The clone is on main, and origin's main lacks nothing of it but setup's own commits.
fn git_ready(root: &Path) -> Result<()> {
    if run_git(root, &["rev-parse", "--abbrev-ref", "HEAD"])? != "main" {
        bail!(
            "setup commits to main: `git switch main` in {} first",
            root.display()
        );
    }
    unpushed_setup_commits(root).map(|_| ())
}

/// The subject prefix of setup's commits.
const COMMIT_SUBJECT: &str = "setup: point the repository at";

/// How many of setup's own commits main has that origin's main lacks;
/// refused when origin's main has moved on (a push would not fast-forward)
/// or when unpushed commits are someone's own work (setup pushes only its own).
fn unpushed_setup_commits(root: &Path) -> Result<usize> {
    let remote = run_git(root, &["ls-remote", "origin", "refs/heads/main"])?;
    let range = match remote.split_whitespace().next() {
        Some(remote) => {
            let ancestor = Command::new("git")
                .args(["merge-base", "--is-ancestor", remote, "HEAD"])
                .current_dir(root)
                .status()
                .is_ok_and(|s| s.success());
            if !ancestor {
                bail!(
                    "origin's main has commits this clone lacks: `git pull --rebase origin main`, then run setup again"
                );
            }
            format!("{remote}..HEAD")
        }
        None => "HEAD".to_owned(),
    };
    let subjects = run_git(root, &["log", "--format=%s", &range])?;
    let subjects: Vec<&str> = subjects.lines().filter(|l| !l.is_empty()).collect();
    if let Some(own) = subjects.iter().find(|s| !s.starts_with(COMMIT_SUBJECT)) {
        bail!(
            "main has commits origin lacks that are not setup's ({own:?}…): push them yourself or move them \
             to a branch (git switch -c <name> && git branch -f main origin/main && git switch main), then run setup again"
        );
    }
    Ok(subjects.len())
}

/// Push setup's commit when origin's main lacks it (a run that stopped before its push).
fn push_pending(root: &Path) -> Result<String> {
    if unpushed_setup_commits(root)? == 0 {
        return Ok("already point at the fork".into());
    }
    run_git(root, &["push", "--quiet", "origin", "HEAD:refs/heads/main"]).context(
        "pushing setup's commit to main: it is committed locally; once the cause is fixed, run setup again to \
         push it (when main's ruleset is what refuses it, i.e. setup ran before: open it as a pull request, \
         `git push origin HEAD:refs/heads/setup-files && gh pr create --head setup-files --fill`)",
    )?;
    Ok("committed and pushed to main".into())
}

fn run_git(root: &Path, args: &[&str]) -> Result<String> {
    let output = Command::new("git")
        .args(args)
        .current_dir(root)
        .output()
        .context("running git")?;
    if !output.status.success() {
        bail!(
            "git {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// The one step GitHub's API cannot do: a new GHCR package is private, and
/// kind pulls anonymously. Said once, with the exact click, until each package is public.
fn package_click(fork: &Fork) -> Result<()> {
    let scope = if fork.organisation { "orgs" } else { "users" };
    let services = services::load(fork.root).or_else(|_| services::load(&workspace::root()))?;
    for service in services {
        let image = &service.declaration.image;
        let path = format!("/{scope}/{}/packages/container/{image}", fork.owner);
        // A token without read:packages cannot say: the click is printed anyway.
        let public = fork
            .github
            .get_optional(&path)
            .ok()
            .flatten()
            .is_some_and(|p| p["visibility"] == "public");
        if !public {
            println!(
                "! by hand, once (GitHub's API cannot): after your first pull request's image job pushes ghcr.io/{}/{image}, open {} → Danger Zone → Change visibility → Public (kind pulls without credentials; `cargo xtask doctor` checks it)",
                fork.owner.to_lowercase(),
                settings::package_settings_url(scope, &fork.owner, image)
            );
        }
    }
    Ok(())
}
