//! `cargo xtask release --version X.Y.Z`: ship the bits preprod tested.
//!
//! 1. the version is semver and newer than every release (git tags, prod);
//! 2. the commit preprod runs has a passing `preprod-tests` gate for the very
//!    digest `main-<sha>` names in the registry;
//! 3. `main-<sha>` is retagged `v<X.Y.Z>` (no rebuild, no blob upload);
//! 4. prod and dev move to `v<X.Y.Z>` at that digest in one commit;
//! 5. the annotated git tag `vX.Y.Z` marks the released commit; release notes
//!    are written (and published as a GitHub release inside Actions).
//!
//! Every step checks whether it is already done, so rerunning the same command
//! after a failure finishes the release without doing anything twice.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use xshell::{Shell, cmd};

use crate::parts::environments::{self, DeployedImage};
use crate::parts::gates::{GateStore, GateStoreOptions};
use crate::parts::github::GitHub;
use crate::parts::gitops::{Decision, GitopsOptions, Outcome};
use crate::parts::registry::{Repository, RetagOutcome};
use crate::parts::tags::{ImageTag, short};
use crate::parts::{Workspace, workspace};
use crate::promote::{self, read_deployed};
use crate::smoke::PREPROD_GATE;

/// Environments a release moves, in one commit.
const RELEASED_ENVS: [&str; 2] = ["prod", "dev"];

#[derive(clap::Args)]
pub struct ReleaseArgs {
    /// The version to release, X.Y.Z (a leading v is accepted).
    #[arg(long)]
    version: String,
    /// The commit to release. Default: the one preprod runs (from its main-<sha> tag).
    #[arg(long)]
    sha: Option<String>,
    /// Allow a version lower than an existing release (a hotfix line).
    #[arg(long)]
    allow_older: bool,
    /// Check everything and print what would change; change nothing. Also from
    /// RELEASE_DRY_RUN=true (a workflow's boolean input).
    #[arg(long, env = "RELEASE_DRY_RUN")]
    dry_run: bool,
    /// The image repository: <registry>/<path>, or oci:<dir>.
    #[arg(long, env = "IMAGE_REPOSITORY")]
    repository: String,
    #[command(flatten)]
    store: GateStoreOptions,
    #[command(flatten)]
    gitops: GitopsOptions,
}

pub fn run(args: ReleaseArgs) -> Result<()> {
    let version =
        semver::Version::parse(args.version.trim_start_matches('v')).with_context(|| {
            format!(
                "--version {:?} is not a semantic version: use X.Y.Z, e.g. 1.4.0",
                args.version
            )
        })?;
    let release_tag = format!("v{version}");
    let ws = Workspace::open(&args.gitops)?;
    let sh = Shell::new()?;
    sh.change_dir(ws.service.root());
    let remote = &args.gitops.remote;
    // Release tags others pushed must count too.
    cmd!(sh, "git fetch --quiet --tags {remote}")
        .quiet()
        .run()
        .with_context(|| {
            format!(
                "fetching tags from {remote}: the service repository's remote must be reachable"
            )
        })?;

    // Which commit: the one preprod runs, unless named.
    let tip = ws.gitops.fetch_tip()?;
    let snapshot = crate::parts::gitops::Snapshot {
        repo: &ws.gitops,
        tip,
    };
    let source_commit = match &args.sha {
        Some(sha) => ws.service.commit(sha)?,
        None => {
            let (_, preprod) = read_deployed(&snapshot, &environments::values_path("preprod"))?;
            match ImageTag::parse(&preprod.tag) {
                Ok(ImageTag::Main { sha }) => ws.service.commit(&sha)?,
                _ => bail!(
                    "preprod runs {:?}, not a main-<sha> build: promote one to preprod and test it, or \
                     name the commit with --sha",
                    preprod.tag
                ),
            }
        }
    };
    let sha = source_commit.to_string();
    let build_tag = format!("main-{sha}");
    let registry = Repository::open(&args.repository)?;
    let source = registry.resolve(&build_tag)?.with_context(|| {
        format!("{registry} has no {build_tag}: the commit was never built on main")
    })?;

    // 1. Semver order, against git tags and what prod runs. This release's own
    // traces (from an interrupted run) are a resume, not a conflict.
    let git_tag_commit = tag_commit(&sh, &release_tag)?;
    if let Some(commit) = &git_tag_commit
        && *commit != sha
    {
        bail!("{release_tag} is already released from commit {commit}: choose a new version");
    }
    let (_, prod) = read_deployed(&snapshot, &environments::values_path("prod"))?;
    let mut existing: BTreeMap<semver::Version, String> = BTreeMap::new();
    for tag in cmd!(sh, "git tag --list v*")
        .quiet()
        .read()?
        .lines()
        .chain([prod.tag.as_str()])
    {
        if let Ok(ImageTag::Release(v)) = ImageTag::parse(tag) {
            existing.insert(v, tag.to_owned());
        }
    }
    existing.remove(&version);
    if let Some((newest, tag)) = existing.last_key_value()
        && *newest > version
        && !args.allow_older
    {
        bail!(
            "{release_tag} is not newer than the existing release {tag}: choose a higher version, or pass --allow-older for a hotfix line"
        );
    }

    // 2. The gate, bound to this digest.
    let gates = GateStore::open(&args.store, &args.gitops)?;
    gates.check(&sha, PREPROD_GATE, Some(&source.digest))?;
    println!(
        "gate {PREPROD_GATE} passed for {} at {}",
        short(&sha),
        source.digest
    );

    // 3. Same bits, new name. An existing tag on other bits is refused inside retag.
    let target = DeployedImage {
        tag: release_tag.clone(),
        digest: source.digest.clone(),
    };
    if args.dry_run {
        if let Some(existing) = registry.resolve(&release_tag)?
            && existing.digest != source.digest
        {
            bail!(
                "{registry}:{release_tag} already names {}: release tags are immutable",
                existing.digest
            );
        }
        println!(
            "dry run: would retag {build_tag} → {release_tag} ({})",
            source.digest
        );
    } else {
        match registry.retag(&build_tag, &release_tag)?.0 {
            RetagOutcome::Created => {
                println!("retagged {build_tag} → {release_tag}, no blob uploaded")
            }
            RetagOutcome::AlreadyThere => {
                println!("{release_tag} already names {build_tag}'s bits")
            }
        }
    }

    // 4. prod and dev in one commit.
    let outcome = ws.gitops.update(args.dry_run, |snapshot| {
        let mut changes = Vec::new();
        for env in RELEASED_ENVS {
            let path = environments::values_path(env);
            let (text, current) = read_deployed(snapshot, &path)?;
            if current != target {
                changes.push(promote::image_change(&ws, &path, &text, &target)?);
            }
        }
        if changes.is_empty() {
            return Ok(Decision::NoOp(format!("prod and dev already run {release_tag}")));
        }
        let message = promote::commit_message(&format!("release: {release_tag}"), &RELEASED_ENVS, &target, Some(source_commit));
        Ok(Decision::Commit { changes, message })
    })
    .with_context(|| {
        format!("promoting prod and dev to {release_tag} failed; rerun the same command to finish the release")
    })?;
    outcome.report(&format!(
        "promote prod and dev to {}",
        promote::describe(&target)
    ));
    if matches!(outcome, Outcome::DryRun { .. }) {
        println!(
            "dry run: would tag {} as {release_tag} and write release notes",
            short(&sha)
        );
        return Ok(());
    }

    // 5. The git tag and the notes.
    let previous = existing
        .range(..version.clone())
        .next_back()
        .map(|(_, tag)| tag.clone());
    let notes = release_notes(&sh, &release_tag, previous.as_deref(), &sha, &source.digest)?;
    if git_tag_commit.is_none() {
        // `whitespace`: the notes' markdown headings are not git comments.
        cmd!(
            sh,
            "git tag --annotate --cleanup=whitespace {release_tag} --file=- {sha}"
        )
        .stdin(&notes)
        .envs(args.gitops.bot.git_env())
        .quiet()
        .run()?;
    }
    cmd!(sh, "git push --quiet {remote} refs/tags/{release_tag}")
        .quiet()
        .run()
        .with_context(|| {
            format!("pushing tag {release_tag}: rerun the same command to finish the release")
        })?;
    let notes_path = workspace::target_dir().join(format!("xtask/release-notes-{release_tag}.md"));
    std::fs::create_dir_all(notes_path.parent().expect("has a parent"))?;
    std::fs::write(&notes_path, &notes)?;
    println!(
        "tagged {} as {release_tag}; release notes in {}",
        short(&sha),
        notes_path.display()
    );
    if std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true")
        && let Some(github) = GitHub::from_env()?
    {
        publish_release(&github, &release_tag, &notes)?;
    }
    Ok(())
}

/// The commit a git tag points at, if the tag exists.
fn tag_commit(sh: &Shell, tag: &str) -> Result<Option<String>> {
    let spec = format!("refs/tags/{tag}^{{commit}}");
    let out = cmd!(sh, "git rev-parse --quiet --verify {spec}")
        .quiet()
        .ignore_status()
        .output()?;
    Ok(out
        .status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned()))
}

/// Subjects of the commits since the previous release, newest first.
fn release_notes(
    sh: &Shell,
    tag: &str,
    previous: Option<&str>,
    sha: &str,
    digest: &str,
) -> Result<String> {
    let range = match previous.filter(|p| tag_commit(sh, p).ok().flatten().is_some()) {
        Some(previous) => format!("{previous}..{sha}"),
        None => sha.to_owned(),
    };
    let format = "--format=- %s (%h)";
    let log = cmd!(sh, "git log --no-merges {format} {range}")
        .quiet()
        .read()?;
    // The pipeline's own commits are not changes to the service.
    let changes: Vec<&str> = log
        .lines()
        .filter(|l| {
            !l.starts_with("- cd: ")
                && !l.starts_with("- ci: deploy")
                && !l.starts_with("- release: ")
        })
        .collect();
    Ok(format!(
        "{tag}\n\nImage: {digest}\nCommit: {sha}\n{}\n\n## Changes{}\n\n{}\n",
        previous
            .map(|p| format!("Previous release: {p}"))
            .unwrap_or_default(),
        previous.map(|p| format!(" since {p}")).unwrap_or_default(),
        if changes.is_empty() {
            "- (no changes)".to_owned()
        } else {
            changes.join("\n")
        }
    ))
}

fn publish_release(github: &GitHub, tag: &str, notes: &str) -> Result<()> {
    let body = serde_json::json!({ "tag_name": tag, "name": tag, "body": notes });
    match github.post("/releases", &body) {
        Ok(_) => {
            println!("published the GitHub release {tag}");
            Ok(())
        }
        // A rerun after publishing: GitHub answers 422 already_exists.
        Err(error) if error.to_string().contains("already_exists") => {
            println!("the GitHub release {tag} already exists");
            Ok(())
        }
        Err(error) => Err(error),
    }
}
