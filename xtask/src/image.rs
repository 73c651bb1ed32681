//! `cargo xtask image build|retag|inspect`: images without a daemon.
//!
//! `build` compiles a fully static items-api (musl when its target is
//! installed, static glibc otherwise), assembles it onto the distroless-style
//! base in `parts/oci.rs`, and writes an OCI layout and/or pushes to a
//! repository. `retag` gives existing bits a new name without rebuilding.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use xshell::{Shell, cmd};

use crate::parts::github;
use crate::parts::oci::{self, Arch, ImageMeta};
use crate::parts::registry::{self, Repository, RetagOutcome};
use crate::parts::service::ServiceRepo;
use crate::parts::tags::ImageTag;
use crate::parts::{which, workspace};

#[derive(Subcommand)]
pub enum ImageCommand {
    /// Build the items-api image: static binary on a distroless-equivalent base, reproducible.
    Build(BuildArgs),
    /// Give the bits of SRC_TAG the name NEW_TAG: one manifest PUT, no blob upload, no rebuild.
    Retag(RetagArgs),
    /// Digest, size, platforms and labels of an image.
    Inspect(InspectArgs),
}

#[derive(Args)]
pub struct BuildArgs {
    /// Tag for the image (repeatable). Build tags must name HEAD: main-<sha> or pr-<N>-<sha>.
    /// Default: main-<HEAD sha>.
    #[arg(long = "tag")]
    tags: Vec<String>,
    /// Push to this repository: <registry>/<path> (credentials from REGISTRY_USERNAME and
    /// REGISTRY_PASSWORD, or REGISTRY_TOKEN) or oci:<dir> for a layout used as a registry.
    #[arg(long, value_name = "REPOSITORY")]
    push: Option<String>,
    /// Also write the image as a fresh OCI layout directory (replaced if it exists).
    /// Default when --push is not given: <target>/xtask/image/oci.
    #[arg(long, value_name = "DIR")]
    output: Option<PathBuf>,
    /// Platforms to build (repeatable): linux/amd64, linux/arm64. Default: every platform whose
    /// Rust target and linker are installed here.
    #[arg(long = "platform", value_name = "OS/ARCH")]
    platforms: Vec<String>,
    /// Package this static linux/amd64 binary instead of running cargo (e.g. one CI already built).
    #[arg(long, value_name = "PATH", conflicts_with = "platforms")]
    binary: Option<PathBuf>,
    /// The service repository to build (its HEAD names the image). Default: this workspace.
    #[arg(long, value_name = "DIR")]
    source: Option<PathBuf>,
}

#[derive(Args)]
pub struct RepositoryArg {
    /// The image repository: <registry>/<path>, or oci:<dir> for an OCI layout directory.
    #[arg(long, env = "IMAGE_REPOSITORY")]
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
    // Open the destination before the slow build, so a bad repository fails fast.
    let repository = args.push.as_deref().map(Repository::open).transpose()?;
    if !cmd!(sh, "git status --porcelain --untracked-files=no")
        .read()?
        .is_empty()
    {
        eprintln!(
            "warning: the working tree has uncommitted changes; the image is labelled with HEAD \
             ({head}) but contains them"
        );
    }

    let binaries = match &args.binary {
        Some(path) => {
            check_static(path)?;
            vec![(Arch::Amd64, std::fs::read(path)?)]
        }
        None => static_binaries(&sh, &args.platforms, &head)?,
    };

    let meta = image_meta(&sh, &head)?;
    let started = Instant::now();
    let image = oci::assemble(&binaries, &meta)?;
    let assembly = started.elapsed();
    println!(
        "image {} ({}), {} compressed, assembled in {:.0?}",
        image.root.digest,
        image
            .platforms
            .iter()
            .map(|a| format!("linux/{}", a.oci_name()))
            .collect::<Vec<_>>()
            .join(" + "),
        human_size(image.compressed_size()),
        assembly
    );

    let output = match (&args.output, &repository) {
        (Some(dir), _) => Some(dir.clone()),
        (None, None) => Some(workspace::target_dir().join("xtask/image/oci")),
        (None, Some(_)) => None,
    };
    if let Some(dir) = output {
        registry::write_fresh_layout(&dir, &image, &tags)?;
        println!(
            "wrote OCI layout {} (tags: {})",
            dir.display(),
            tags.join(", ")
        );
    }
    if let Some(repository) = repository {
        for tag in &tags {
            let started = Instant::now();
            let report = repository.push(&image, tag)?;
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
    }
    // For the next steps of a workflow: `${{ steps.<id>.outputs.digest }}`.
    github::set_output("digest", &image.root.digest)?;
    Ok(())
}

/// Compile a static items-api for each platform (all buildable ones when
/// `requested` is empty): `(arch, binary bytes)`.
pub fn static_binaries(
    sh: &Shell,
    requested: &[String],
    head: &str,
) -> Result<Vec<(Arch, Vec<u8>)>> {
    let mut binaries = Vec::new();
    for (platform, target) in platforms(requested)? {
        let path = compile(sh, platform, target, head)?;
        binaries.push((platform.arch, std::fs::read(path)?));
    }
    Ok(binaries)
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

/// A platform and how to compile for it.
#[derive(Clone, Copy)]
struct Platform {
    arch: Arch,
    /// Preferred: musl links statically with its own libc and resolver.
    musl: &'static str,
    /// Fallback: glibc with `crt-static`.
    gnu: &'static str,
    /// Cross linker needed when this is not the host architecture.
    linker: Option<&'static str>,
}

const PLATFORMS: [Platform; 2] = [
    Platform {
        arch: Arch::Amd64,
        musl: "x86_64-unknown-linux-musl",
        gnu: "x86_64-unknown-linux-gnu",
        linker: None,
    },
    Platform {
        arch: Arch::Arm64,
        musl: "aarch64-unknown-linux-musl",
        gnu: "aarch64-unknown-linux-gnu",
        linker: Some("aarch64-linux-gnu-gcc"),
    },
];

/// The platforms to build, each with the Rust target to build it with:
/// musl when installed, static glibc otherwise.
fn platforms(requested: &[String]) -> Result<Vec<(Platform, &'static str)>> {
    let installed = installed_targets()?;
    let target = |p: &Platform| {
        let linker = p.linker.is_none_or(|l| which(l).is_some());
        [p.musl, p.gnu]
            .into_iter()
            .find(|target| linker && installed.iter().any(|t| t == target))
    };
    if requested.is_empty() {
        let mut chosen = Vec::new();
        for platform in PLATFORMS {
            if let Some(target) = target(&platform) {
                chosen.push((platform, target));
            } else {
                println!(
                    "linux/{} skipped: needs `rustup target add {}`{} (CI installs both; see the README)",
                    platform.arch.oci_name(),
                    platform.musl,
                    platform
                        .linker
                        .map(|l| format!(
                            " and the {l} linker (apt-get install gcc-aarch64-linux-gnu)"
                        ))
                        .unwrap_or_default()
                );
            }
        }
        if chosen.is_empty() {
            bail!(
                "no platform can be built here: install the musl target (rustup target add x86_64-unknown-linux-musl)"
            );
        }
        return Ok(chosen);
    }
    requested
        .iter()
        .map(|name| {
            let platform = PLATFORMS
                .into_iter()
                .find(|p| format!("linux/{}", p.arch.oci_name()) == *name)
                .with_context(|| {
                    format!("unknown platform {name:?}: use linux/amd64 or linux/arm64")
                })?;
            let Some(target) = target(&platform) else {
                bail!(
                    "cannot build {name} here: `rustup target add {}`{}",
                    platform.musl,
                    platform
                        .linker
                        .map(|l| format!(" and install the {l} linker"))
                        .unwrap_or_default()
                );
            };
            Ok((platform, target))
        })
        .collect()
}

fn installed_targets() -> Result<Vec<String>> {
    let sh = Shell::new()?;
    // rustup lists installed targets; without rustup only the host is there.
    match cmd!(sh, "rustup target list --installed")
        .quiet()
        .ignore_stderr()
        .read()
    {
        Ok(list) => Ok(list.lines().map(str::to_owned).collect()),
        Err(_) => Ok(vec![
            cmd!(sh, "rustc -vV")
                .read()?
                .lines()
                .find_map(|l| l.strip_prefix("host: "))
                .unwrap_or_default()
                .to_owned(),
        ]),
    }
}

/// Compile items-api for `platform` with the Rust `target` as a static release
/// binary; returns its path.
fn compile(sh: &Shell, platform: Platform, target: &str, head: &str) -> Result<PathBuf> {
    let static_glibc = target == platform.gnu;
    println!(
        "building items-api for linux/{} ({target}{})",
        platform.arch.oci_name(),
        if static_glibc { ", static glibc" } else { "" }
    );
    // Same bytes on every machine: paths in panic messages must not name this
    // checkout or this user's cargo home.
    let root = sh.current_dir();
    // Another checkout gets a target dir of its own: its path is in RUSTFLAGS,
    // and sharing one would make each rebuild everything the other built.
    let target_dir = if root == workspace::root() {
        workspace::target_dir()
    } else {
        workspace::target_dir().join("other-checkouts")
    };
    let cargo_home = std::env::var("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|_| home().join(".cargo"));
    let mut rustflags = format!(
        "--remap-path-prefix={}=/src --remap-path-prefix={}=/cargo",
        root.display(),
        cargo_home.display()
    );
    if static_glibc {
        rustflags.push_str(" -C target-feature=+crt-static");
    }
    let mut build = cmd!(
        sh,
        "cargo build --release --locked --package items-api --target {target}"
    )
    .env("RUSTFLAGS", rustflags)
    .env("CARGO_TARGET_DIR", &target_dir)
    // /version reports the commit the binary was built from.
    .env("ITEMS_API_GIT_COMMIT", head);
    if let Some(linker) = platform.linker {
        let var = format!(
            "CARGO_TARGET_{}_LINKER",
            target.to_uppercase().replace('-', "_")
        );
        build = build.env(var, linker);
    }
    build.run()?;
    let path = target_dir.join(target).join("release/items-api");
    check_static(&path)?;
    Ok(path)
}

fn home() -> PathBuf {
    std::env::var_os("HOME").map_or_else(|| PathBuf::from("/"), PathBuf::from)
}

/// A distroless-static image has no dynamic loader: refuse a binary that needs one.
fn check_static(path: &Path) -> Result<()> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    // An ELF with a PT_INTERP program header names its loader; a static one has none.
    if has_interp(&bytes) {
        bail!(
            "{} is dynamically linked and would not start on a static base image",
            path.display()
        );
    }
    Ok(())
}

/// Whether a 64-bit little-endian ELF has a PT_INTERP program header.
fn has_interp(elf: &[u8]) -> bool {
    let read = |at: usize, len: usize| -> Option<u64> {
        let bytes = elf.get(at..at + len)?;
        Some(
            bytes
                .iter()
                .rev()
                .fold(0, |acc, b| acc << 8 | u64::from(*b)),
        )
    };
    // ELF magic, 64-bit class.
    if !elf.starts_with(b"\x7fELF\x02") {
        return false;
    }
    let (Some(phoff), Some(phentsize), Some(phnum)) = (read(0x20, 8), read(0x36, 2), read(0x38, 2))
    else {
        return false;
    };
    (0..phnum).any(|i| read((phoff + i * phentsize) as usize, 4) == Some(3))
}

/// Labels and timestamps: `created` is `SOURCE_DATE_EPOCH` or the commit time,
/// never the clock, so rebuilding a commit reproduces its digest.
pub fn image_meta(sh: &Shell, head: &str) -> Result<ImageMeta> {
    let created_epoch = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(value) => value.parse().with_context(|| {
            format!("SOURCE_DATE_EPOCH={value:?} is not a Unix time in seconds")
        })?,
        Err(_) => cmd!(sh, "git show -s --format=%ct {head}")
            .read()?
            .trim()
            .parse()?,
    };
    let metadata: serde_json::Value = serde_json::from_str(
        &cmd!(sh, "cargo metadata --no-deps --format-version 1 --locked").read()?,
    )?;
    let package = metadata["packages"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["name"] == "items-api"))
        .context("items-api is not in this workspace")?;
    // In Actions, the repository the workflow runs in; elsewhere Cargo.toml's.
    let source = match (
        std::env::var("GITHUB_SERVER_URL"),
        std::env::var("GITHUB_REPOSITORY"),
    ) {
        (Ok(server), Ok(repo)) => format!("{server}/{repo}"),
        _ => package["repository"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    };
    let labels = BTreeMap::from(
        [
            (
                "org.opencontainers.image.created",
                crate::parts::rfc3339(created_epoch),
            ),
            ("org.opencontainers.image.revision", head.to_owned()),
            ("org.opencontainers.image.source", source),
            (
                "org.opencontainers.image.version",
                package["version"].as_str().unwrap_or_default().to_owned(),
            ),
            ("org.opencontainers.image.title", "items-api".to_owned()),
            (
                "org.opencontainers.image.licenses",
                package["license"].as_str().unwrap_or_default().to_owned(),
            ),
        ]
        .map(|(k, v)| (k.to_owned(), v)),
    );
    Ok(ImageMeta {
        created_epoch,
        labels,
        ca_certificates: std::fs::read("/etc/ssl/certs/ca-certificates.crt").ok(),
        port: 8080,
    })
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
    Ok(())
}

fn inspect(args: InspectArgs) -> Result<()> {
    let repository = Repository::open(&args.repository.repository)?;
    let (bytes, root) = repository.manifest(&args.reference)?;
    let document: serde_json::Value = serde_json::from_slice(&bytes)?;
    println!("{repository}{}", registry::at(&args.reference));
    println!("  digest      {}", root.digest);
    println!("  media type  {}", root.media_type);
    // A single-platform manifest is its own only entry.
    let entries: Vec<(String, String)> = match document["manifests"].as_array() {
        Some(list) => list
            .iter()
            .map(|m| {
                let platform = format!(
                    "{}/{}",
                    m["platform"]["os"].as_str().unwrap_or("?"),
                    m["platform"]["architecture"].as_str().unwrap_or("?")
                );
                (
                    platform,
                    m["digest"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect(),
        None => vec![("(single)".to_owned(), root.digest.clone())],
    };
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

pub fn human_size(bytes: u64) -> String {
    if bytes >= 1 << 20 {
        format!("{:.2} MiB", bytes as f64 / f64::from(1 << 20))
    } else {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    }
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

    #[test]
    fn interp_header_tells_dynamic_from_static() {
        // The host's own test binary is dynamically linked against glibc.
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert!(has_interp(&me));
        assert!(!has_interp(b"\x7fELF not really"));
    }
}
