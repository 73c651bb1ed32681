//! `cargo xtask image build|retag|inspect`: images without a daemon.
//!
//! `build` compiles one service (`--service NAME`; a workspace of one needs
//! no flag) fully static (musl when its target is installed, static glibc
//! otherwise), assembles it onto the distroless-style base in `domain/oci.rs`
//! with its declared port, and writes an OCI layout and/or pushes to the
//! service's own image repository (`<registry>/<image>`). `retag` gives
//! existing bits a new name without rebuilding.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use xshell::{Shell, cmd};

use crate::domain::github;
use crate::domain::image_build::{
    self, check_static, human_size, image_meta_of, static_binaries_of,
};
use crate::domain::oci::{self, Arch};
use crate::domain::registry::{self, Repository, RetagOutcome};
use crate::domain::sbom;
use crate::domain::service_repo::ServiceRepo;
use crate::domain::services::{self, RepositoryOptions, Service, ServiceSelection};
use crate::domain::signature::{ImageSigner, SIGNING_KEY_VAR};
use crate::domain::tags::ImageTag;
use crate::plumbing::workspace;

#[derive(Subcommand)]
pub enum ImageCommand {
    /// Build a service's image: static binary on a distroless-equivalent base, reproducible.
    Build(BuildArgs),
    /// Give the bits of SRC_TAG the name NEW_TAG: one manifest PUT, no blob upload, no rebuild.
    Retag(RetagArgs),
    /// Digest, size, platforms and labels of an image.
    Inspect(InspectArgs),
    /// Sign the image a tag names with IMAGE_SIGNING_KEY (cosign's .sig), e.g. in a step of its
    /// own, so the key is never in the environment of a build.
    Sign(SignArgs),
}

#[derive(Args)]
pub struct BuildArgs {
    /// Tag for the image (repeatable). Build tags must name HEAD: main-<sha> or pr-<N>-<sha>.
    /// Default: main-<HEAD sha>.
    #[arg(long = "tag")]
    tags: Vec<String>,
    /// Push to the service's image repository: <registry>/<image> of --registry (IMAGE_REGISTRY),
    /// or --repository (IMAGE_REPOSITORY) for a workspace of one service; or to the REPOSITORY
    /// given: <registry>/<path> or oci:<dir> for a layout used as a registry. Credentials from
    /// REGISTRY_USERNAME and REGISTRY_PASSWORD, or REGISTRY_TOKEN.
    #[arg(long, value_name = "REPOSITORY", num_args = 0..=1)]
    push: Option<Option<String>>,
    #[command(flatten)]
    repositories: RepositoryOptions,
    #[command(flatten)]
    services: ServiceSelection,
    /// Also write the image as a fresh OCI layout directory (replaced if it exists).
    /// Default when --push is not given: <target>/xtask/image/<service>/oci.
    #[arg(long, value_name = "DIR")]
    output: Option<PathBuf>,
    /// Platforms to build (repeatable): linux/amd64, linux/arm64. Default: every platform whose
    /// Rust target and linker are installed here.
    #[arg(long = "platform", value_name = "OS/ARCH")]
    platforms: Vec<String>,
    /// The cargo profile to compile with. The workflows ship `release` (fat LTO); `cargo xtask
    /// demo` passes `demo` (the root Cargo.toml's release without LTO or optimisation) so that each of its
    /// changes rebuilds in seconds, not in a minute.
    #[arg(long, value_name = "NAME", default_value = image_build::SHIPPED_PROFILE, conflicts_with = "binary")]
    cargo_profile: String,
    /// Package this static linux/amd64 binary instead of running cargo (e.g. one CI already built).
    #[arg(long, value_name = "PATH", conflicts_with = "platforms")]
    binary: Option<PathBuf>,
    /// The service repository to build (its HEAD names the image). Default: this workspace.
    #[arg(long, value_name = "DIR")]
    source: Option<PathBuf>,
    /// Write the pushed digest to FILE, for a later job to sign, scan and promote exactly it
    /// (`@FILE` as their reference), never the tag again.
    #[arg(long, value_name = "FILE", requires = "push")]
    digest_file: Option<PathBuf>,
}

/// `image sign`: the reference (a tag, a digest, or `@FILE`) in a service's repository.
#[derive(Args)]
pub struct SignArgs {
    /// A tag, a digest (sha256:…), or @FILE holding the digest `image build --digest-file` wrote.
    reference: String,
    #[command(flatten)]
    repositories: RepositoryOptions,
    #[command(flatten)]
    services: ServiceSelection,
}

#[derive(Args)]
pub struct RepositoryArg {
    /// The image repository: <registry>/<path>, or oci:<dir> for an OCI layout directory.
    #[arg(long, env = "IMAGE_REPOSITORY", value_parser = crate::domain::services::image_location)]
    repository: String,
}

#[derive(Args)]
pub struct RetagArgs {
    /// The existing tag, e.g. main-<sha>.
    src_tag: String,
    /// The new tag, e.g. v1.2.0. Refused if it already names other bits.
    new_tag: String,
    #[command(flatten)]
    repository: RepositoryArg,
}

#[derive(Args)]
pub struct InspectArgs {
    /// A tag, or a digest (sha256:…).
    reference: String,
    #[command(flatten)]
    repository: RepositoryArg,
}

pub fn run(command: ImageCommand) -> Result<()> {
    match command {
        ImageCommand::Build(args) => build(args),
        ImageCommand::Retag(args) => retag(args),
        ImageCommand::Inspect(args) => inspect(args),
        ImageCommand::Sign(args) => sign(args),
    }
}

fn build(args: BuildArgs) -> Result<()> {
    // The image is built from this workspace (or --source); its HEAD names the revision.
    let root = match &args.source {
        Some(dir) => ServiceRepo::discover(dir)?.root(),
        None => workspace::root(),
    };
    let sh = Shell::new()?;
    sh.change_dir(&root);
    let head = ServiceRepo::discover(&root)?.commit("HEAD")?.to_string();
    let tags = build_tags(&args.tags, &head)?;
    let all = services::load(&root)?;
    let service = args.services.one(&all)?;
    // Open the destination and read the key before the slow build, so either fails fast.
    let repository = push_destination(&args, &service, &all)?;
    let signer = ImageSigner::from_env()?;
    warn_if_uncommitted(&sh, &head)?;

    let build_started = Instant::now();
    let binaries = match &args.binary {
        Some(path) => vec![(Arch::Amd64, given_binary(path)?)],
        None => static_binaries_of(&sh, &service, &args.platforms, &head, &args.cargo_profile)?,
    };

    let meta = image_meta_of(&sh, &service, &head)?;
    let started = Instant::now();
    let image = oci::assemble(&binaries, &meta)?;
    let assembly = started.elapsed();
    println!(
        "image {} of {} ({}), {} compressed, assembled in {:.0?}",
        image.root.digest,
        service.name,
        image
            .platforms
            .iter()
            .map(|a| format!("linux/{}", a.oci_name()))
            .collect::<Vec<_>>()
            .join(" + "),
        human_size(image.compressed_size()),
        assembly
    );

    let (built, push_started) = (build_started.elapsed(), Instant::now());
    let output = args
        .output
        .clone()
        .or_else(|| repository.is_none().then(|| default_layout(&service)));
    publish(&image, &tags, output.as_deref(), repository.as_ref())?;
    if let Some(repository) = &repository {
        sign_pushed(signer.as_ref(), repository, &image.root.digest, &tags)?;
    }
    if let Some(file) = &args.digest_file {
        std::fs::write(file, format!("{}\n", image.root.digest))
            .with_context(|| format!("writing {}", file.display()))?;
    }
    set_outputs(&image.root.digest, built, push_started.elapsed())
}

/// The image is labelled with HEAD: say so when the tree it is built from differs.
fn warn_if_uncommitted(sh: &Shell, head: &str) -> Result<()> {
    if !cmd!(sh, "git status --porcelain --untracked-files=no")
        .read()?
        .is_empty()
    {
        eprintln!(
            "warning: the working tree has uncommitted changes; the image is labelled with HEAD \
             ({head}) but contains them"
        );
    }
    Ok(())
}

/// For the next steps of a workflow: `${{ steps.<id>.outputs.digest }}`; and
/// where the time went (compile and assemble, then push and sign), for lead time.
fn set_outputs(digest: &str, built: Duration, pushed: Duration) -> Result<()> {
    github::set_output("digest", digest)?;
    github::set_output("build-seconds", &format!("{:.3}", built.as_secs_f64()))?;
    github::set_output("push-seconds", &format!("{:.3}", pushed.as_secs_f64()))
}

/// `--push`: the REPOSITORY given, or the service's own; None without `--push`.
fn push_destination(
    args: &BuildArgs,
    service: &Service,
    all: &[Service],
) -> Result<Option<Repository>> {
    let name = match &args.push {
        None => return Ok(None),
        Some(Some(given)) => given.clone(),
        Some(None) => args.repositories.require(service, all)?,
    };
    Repository::open(&name).map(Some)
}

/// `--binary`: a static binary built elsewhere. One without a dependency
/// list is not refused (it may be packaged), but said.
fn given_binary(path: &std::path::Path) -> Result<Vec<u8>> {
    check_static(path)?;
    let bytes = std::fs::read(path)?;
    if let Err(why) = sbom::dependencies_of(&bytes, &path.display().to_string()) {
        eprintln!("warning: {why:#}; `cargo xtask scan` will refuse this image");
    }
    Ok(bytes)
}

/// Where a build that pushes nothing writes its layout: one per service.
fn default_layout(service: &Service) -> PathBuf {
    workspace::target_dir()
        .join("xtask/image")
        .join(&service.name)
        .join("oci")
}

/// Writes the image as an OCI layout to `output` and pushes it under each
/// tag to `repository`.
fn publish(
    image: &oci::Image,
    tags: &[String],
    output: Option<&Path>,
    repository: Option<&Repository>,
) -> Result<()> {
    if let Some(dir) = output {
        registry::write_fresh_layout(dir, image, tags)?;
        println!(
            "wrote OCI layout {} (tags: {})",
            dir.display(),
            tags.join(", ")
        );
    }
    let Some(repository) = repository else {
        return Ok(());
    };
    for tag in tags {
        let started = Instant::now();
        let report = repository.push(image, tag)?;
        if report.unchanged {
            println!("{repository}:{tag} already names these bits: nothing pushed");
        } else {
            println!(
                "pushed {repository}:{tag} in {:.0?}: {} blobs ({}) uploaded, {} already there",
                started.elapsed(),
                report.uploaded_blobs,
                human_size(report.uploaded_bytes),
                report.skipped_blobs
            );
        }
    }
    Ok(())
}

/// Signs a pushed build when `IMAGE_SIGNING_KEY` is set, unless every tag is
/// a pull request's: those stay unsigned, admitted only in previews.
fn sign_pushed(
    signer: Option<&ImageSigner>,
    repository: &Repository,
    digest: &str,
    tags: &[String],
) -> Result<()> {
    let Some(signer) = signer else {
        return Ok(());
    };
    let pull_request = |tag: &String| matches!(ImageTag::parse(tag), Ok(ImageTag::Pr { .. }));
    if tags.iter().all(pull_request) {
        println!("not signed: pull-request images (pr-*) are never signed");
        return Ok(());
    }
    signer.sign(repository, digest)
}

/// `--tag` values, checked: build tags must carry HEAD's SHA, so a tag never
/// names a commit other than the one built.
fn build_tags(requested: &[String], head: &str) -> Result<Vec<String>> {
    if requested.is_empty() {
        return Ok(vec![format!("main-{head}")]);
    }
    for tag in requested {
        match ImageTag::parse(tag)? {
            ImageTag::Main { sha } | ImageTag::Pr { sha, .. } if !head.starts_with(&sha) => bail!(
                "tag {tag} names commit {sha} but HEAD is {head}: check out that commit, or tag \
                 this build main-{head}"
            ),
            ImageTag::Release(_) => bail!(
                "{tag} is a release tag: releases are never built, they retag a tested main-<sha> \
                 image (cargo xtask release, or cargo xtask image retag)"
            ),
            _ => {}
        }
    }
    Ok(requested.to_vec())
}

fn retag(args: RetagArgs) -> Result<()> {
    let repository = Repository::open(&args.repository.repository)?;
    ImageTag::parse(&args.new_tag)?;
    let (outcome, resolved) = repository.retag(&args.src_tag, &args.new_tag)?;
    match outcome {
        RetagOutcome::Created => println!(
            "{repository}:{} → {} ({}), no blob uploaded",
            args.new_tag, args.src_tag, resolved.digest
        ),
        RetagOutcome::AlreadyThere => println!(
            "{repository}:{} already names {} ({}): nothing to do",
            args.new_tag, args.src_tag, resolved.digest
        ),
    }
    // The digest is unchanged, so a signature made at build time already
    // covers the new name; with the key, make sure one exists.
    let signer = ImageSigner::from_env()?;
    sign_pushed(
        signer.as_ref(),
        &repository,
        &resolved.digest,
        &[args.new_tag],
    )
}

fn sign(args: SignArgs) -> Result<()> {
    let signer = ImageSigner::from_env()?.with_context(|| {
        format!("image sign needs the private key in {SIGNING_KEY_VAR} (PEM text; cargo xtask gate keygen makes a pair)")
    })?;
    let reference = crate::domain::tags::reference_arg(&args.reference)?;
    if matches!(ImageTag::parse(&reference), Ok(ImageTag::Pr { .. })) {
        bail!(
            "{reference} is a pull request's image: those are never signed (they run in previews only)"
        );
    }
    let all = services::load_current()?;
    let service = args.services.one(&all)?;
    let repository = Repository::open(&args.repositories.require(&service, &all)?)?;
    let (_, resolved) = repository.manifest(&reference)?;
    signer.sign(&repository, &resolved.digest)
}

fn inspect(args: InspectArgs) -> Result<()> {
    let repository = Repository::open(&args.repository.repository)?;
    let (bytes, root) = repository.manifest(&args.reference)?;
    let document: serde_json::Value = serde_json::from_slice(&bytes)?;
    println!("{repository}{}", registry::at(&args.reference));
    println!("  digest      {}", root.digest);
    println!("  media type  {}", root.media_type);
    // A single-platform manifest is its own only entry.
    let entries = oci::index_entries(&document)
        .unwrap_or_else(|| vec![("(single)".to_owned(), root.digest.clone())]);
    let mut labels = serde_json::Value::Null;
    let mut total = bytes.len() as u64;
    for (platform, digest) in &entries {
        let (bytes, _) = repository.manifest(digest)?;
        let manifest: serde_json::Value = serde_json::from_slice(&bytes)?;
        let size: u64 = manifest["layers"]
            .as_array()
            .into_iter()
            .flatten()
            .chain([&manifest["config"]])
            .filter_map(|d| d["size"].as_u64())
            .sum();
        total += size + bytes.len() as u64;
        println!(
            "  platform    {platform:<14} {digest}  {}",
            human_size(size)
        );
        if labels.is_null() {
            let config =
                repository.blob(manifest["config"]["digest"].as_str().unwrap_or_default())?;
            labels =
                serde_json::from_slice::<serde_json::Value>(&config)?["config"]["Labels"].clone();
        }
    }
    println!(
        "  size        {} (compressed, all platforms)",
        human_size(total)
    );
    if let Some(labels) = labels.as_object() {
        for (key, value) in labels {
            println!("  label       {key}={}", value.as_str().unwrap_or_default());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str = "0123456789abcdef0123456789abcdef01234567";

    #[test]
    fn build_tags_default_to_main_head_and_must_name_head() {
        assert_eq!(build_tags(&[], HEAD).unwrap(), [format!("main-{HEAD}")]);
        assert!(build_tags(&["pr-4-0123456".into()], HEAD).is_ok());
        let err = build_tags(&["main-fedcba9".into()], HEAD)
            .unwrap_err()
            .to_string();
        assert!(err.contains("HEAD is 0123456789"), "{err}");
        let err = build_tags(&["v1.0.0".into()], HEAD)
            .unwrap_err()
            .to_string();
        assert!(err.contains("releases are never built"), "{err}");
    }
}
