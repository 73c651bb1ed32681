//! A service's static binary and the labels around it: what `image build`
//! packages and what `bench` measures, built the same way. The package, the
//! binary and the image's port come from the service's declaration
//! (`services/<name>/service.toml`): the package and binary are named `<name>`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use xshell::{Shell, cmd};

use crate::domain::oci::{Arch, ImageMeta};
use crate::domain::services::{self, Service, ServiceSelection};
use crate::plumbing::process::which;
use crate::plumbing::workspace;

/// The path of the static binary `image build` puts in the linux/amd64 image
/// of the workspace's only service, compiled now (a no-op when up to date)
/// exactly as the image build does. For `bench`, which measures that service.
pub fn amd64_static_binary(sh: &Shell, head: &str) -> Result<PathBuf> {
    let (platform, target) = platforms(&["linux/amd64".to_owned()])?
        .pop()
        .context("linux/amd64 is a known platform")?;
    compile(
        sh,
        &only_service(sh)?,
        platform,
        target,
        head,
        SHIPPED_PROFILE,
    )
}

/// The cargo profile of the images the workflows build and ship (the root
/// `Cargo.toml`'s `release`: fat LTO, one codegen unit). `bench` measures it.
pub const SHIPPED_PROFILE: &str = "release";

/// [`static_binaries_of`] the workspace's only service (`bench`).
pub fn static_binaries(
    sh: &Shell,
    requested: &[String],
    head: &str,
) -> Result<Vec<(Arch, Vec<u8>)>> {
    static_binaries_of(sh, &only_service(sh)?, requested, head, SHIPPED_PROFILE)
}

/// [`image_meta_of`] the workspace's only service (`bench`).
pub fn image_meta(sh: &Shell, head: &str) -> Result<ImageMeta> {
    image_meta_of(sh, &only_service(sh)?, head)
}

/// The one service of the workspace `sh` is in (an error naming them when
/// there are several).
fn only_service(sh: &Shell) -> Result<Service> {
    ServiceSelection::default().one(&services::load(&sh.current_dir())?)
}

/// Compile `service` statically with the cargo `profile` for each platform
/// (all buildable ones when `requested` is empty): `(arch, binary bytes)`.
pub fn static_binaries_of(
    sh: &Shell,
    service: &Service,
    requested: &[String],
    head: &str,
    profile: &str,
) -> Result<Vec<(Arch, Vec<u8>)>> {
    let mut binaries = Vec::new();
    for (platform, target) in platforms(requested)? {
        let path = compile(sh, service, platform, target, head, profile)?;
        binaries.push((platform.arch, std::fs::read(path)?));
    }
    Ok(binaries)
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
    /// The C compiler for the musl target: items-api's allocator (mimalloc) is
    /// C. For amd64, Debian's `musl-gcc` wrapper (musl-tools). For arm64 the
    /// cross gcc: mimalloc calls only libc functions musl provides with the
    /// glibc ABI (pthread keys, mmap, errno), so glibc's headers serve.
    musl_cc: &'static str,
}

const PLATFORMS: [Platform; 2] = [
    Platform {
        arch: Arch::Amd64,
        musl: "x86_64-unknown-linux-musl",
        gnu: "x86_64-unknown-linux-gnu",
        linker: None,
        musl_cc: "musl-gcc",
    },
    Platform {
        arch: Arch::Arm64,
        musl: "aarch64-unknown-linux-musl",
        gnu: "aarch64-unknown-linux-gnu",
        linker: Some("aarch64-linux-gnu-gcc"),
        musl_cc: "aarch64-linux-gnu-gcc",
    },
];

/// The platforms to build, each with the Rust target to build it with:
/// musl when its target and C compiler are installed, static glibc otherwise.
fn platforms(requested: &[String]) -> Result<Vec<(Platform, &'static str)>> {
    let installed = installed_targets()?;
    if requested.is_empty() {
        let mut chosen = Vec::new();
        for platform in PLATFORMS {
            match rust_target(&platform, &installed) {
                Some(target) => chosen.push((platform, target)),
                None => println!(
                    "linux/{} skipped: needs `rustup target add {}` and `{}`{} (CI installs them; see the README)",
                    platform.arch.oci_name(),
                    platform.musl,
                    musl_cc_install(&platform),
                    linker_hint(
                        &platform,
                        " and the {l} linker (apt-get install gcc-aarch64-linux-gnu)"
                    )
                ),
            }
        }
        if chosen.is_empty() {
            bail!(
                "no platform can be built here: install the musl target and its C compiler \
                 (rustup target add x86_64-unknown-linux-musl; apt-get install musl-tools)"
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
            let Some(target) = rust_target(&platform, &installed) else {
                bail!(
                    "cannot build {name} here: `rustup target add {}` and `{}`{}",
                    platform.musl,
                    musl_cc_install(&platform),
                    linker_hint(&platform, " and install the {l} linker")
                );
            };
            Ok((platform, target))
        })
        .collect()
}

/// The Rust target `platform` builds with here: musl when its target, C
/// compiler and linker are installed, static glibc when only that is; says why
/// when musl was installed but could not be used.
fn rust_target(p: &Platform, installed: &[String]) -> Option<&'static str> {
    let linker = p.linker.is_none_or(|l| which(l).is_some());
    let musl_cc = which(p.musl_cc).is_some();
    let chosen = [p.musl, p.gnu].into_iter().find(|target| {
        linker && installed.iter().any(|t| t == target) && (*target != p.musl || musl_cc)
    });
    if chosen == Some(p.gnu) && installed.iter().any(|t| t == p.musl) {
        eprintln!(
            "linux/{}: static glibc, because {} (the musl target's C compiler) is missing: {}",
            p.arch.oci_name(),
            p.musl_cc,
            musl_cc_install(p)
        );
    }
    chosen
}

/// `template` with `{l}` as the platform's cross linker, or nothing without one.
fn linker_hint(platform: &Platform, template: &str) -> String {
    platform
        .linker
        .map(|l| template.replace("{l}", l))
        .unwrap_or_default()
}

/// How to install a platform's musl C compiler.
fn musl_cc_install(platform: &Platform) -> &'static str {
    match platform.arch {
        Arch::Amd64 => "apt-get install musl-tools",
        Arch::Arm64 => "apt-get install gcc-aarch64-linux-gnu",
    }
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

/// RUSTFLAGS that make the same bytes on every machine: paths in panic
/// messages do not name this user's cargo home. The checkout's own path needs
/// no remapping: cargo compiles workspace members from paths relative to the
/// workspace root. Keeping it out of RUSTFLAGS also keeps the flags the same in
/// every clone, so a fresh clone reuses the dependencies an earlier one built
/// (image.rs holds it: two checkouts at two paths, one digest).
fn reproducible_rustflags(static_glibc: bool) -> String {
    let cargo_home = std::env::var("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|_| home().join(".cargo"));
    let mut rustflags = format!("--remap-path-prefix={}=/cargo", cargo_home.display());
    if static_glibc {
        rustflags.push_str(" -C target-feature=+crt-static");
    }
    rustflags
}

/// Compile `service`'s package for `platform` with the Rust `target` as a
/// static binary of the cargo `profile`; returns its path.
// long: one cargo invocation and the environment it needs, read top to bottom.
fn compile(
    sh: &Shell,
    service: &Service,
    platform: Platform,
    target: &str,
    head: &str,
    profile: &str,
) -> Result<PathBuf> {
    let static_glibc = target == platform.gnu;
    let package = &service.name;
    println!(
        "building {package} for linux/{} ({target}{})",
        platform.arch.oci_name(),
        if static_glibc { ", static glibc" } else { "" }
    );
    let root = sh.current_dir();
    // Another checkout gets a target dir of its own: both would otherwise write
    // the same `<target>/<profile>/<package>`, and one build's binary could be
    // replaced by the other's before it is read.
    let target_dir = if root == workspace::root() {
        workspace::target_dir()
    } else {
        workspace::target_dir().join("other-checkouts")
    };
    let rustflags = reproducible_rustflags(static_glibc);
    require_cargo_auditable(sh)?;
    // cargo auditable embeds the dependency list (.dep-v0) `cargo xtask scan` checks.
    // No credential of the step reaches the dependencies' build scripts.
    let mut build = workspace::without_secrets(cmd!(
        sh,
        "cargo auditable build --profile {profile} --locked --package {package} --bin {package} --target {target}"
    ))
    .env("RUSTFLAGS", rustflags)
    .env("CARGO_TARGET_DIR", &target_dir)
    // /version reports the commit the binary was built from: items-api reads
    // ITEMS_API_GIT_COMMIT at compile time, each service <NAME>_GIT_COMMIT.
    .env(commit_variable(package), head)
    // C compilers take __DATE__ and __TIME__ from it (mimalloc prints its
    // build time): the commit's time, not the clock, or no two builds match.
    .env(
        "SOURCE_DATE_EPOCH",
        source_date_epoch(sh, head)?.to_string(),
    );
    if let Some(linker) = platform.linker {
        let var = format!(
            "CARGO_TARGET_{}_LINKER",
            target.to_uppercase().replace('-', "_")
        );
        build = build.env(var, linker);
    }
    if target == platform.musl {
        // cc-rs reads CC_<target> for the C in the build (mimalloc).
        build = build.env(format!("CC_{}", target.replace('-', "_")), platform.musl_cc);
    }
    build.run()?;
    // cargo's folder for a profile is its name, but `debug` for `dev`.
    let profile_dir = if profile == "dev" { "debug" } else { profile };
    let path = target_dir.join(target).join(profile_dir).join(package);
    check_static(&path)?;
    Ok(path)
}

/// `ITEMS_API_GIT_COMMIT` for `items-api`: the compile-time variable that
/// carries the built commit into a service's `/version`.
fn commit_variable(package: &str) -> String {
    format!("{}_GIT_COMMIT", package.to_uppercase().replace('-', "_"))
}

/// The image's binaries carry their dependency list: never build one without it.
fn require_cargo_auditable(sh: &Shell) -> Result<()> {
    // `cargo auditable --version` answers with cargo's own version, so ask
    // cargo which subcommands it has.
    let commands = cmd!(sh, "cargo --list").quiet().ignore_stderr().read()?;
    if !commands
        .lines()
        .any(|l| l.split_whitespace().next() == Some("auditable"))
    {
        bail!(
            "cargo-auditable is not installed, and the image's binary must carry its dependency \
             list for `cargo xtask scan`: run `{}` (bash .ci/run does this)",
            cargo_auditable_install()
        );
    }
    Ok(())
}

/// The install command for the pinned cargo-auditable (xtask/tools.txt).
pub fn cargo_auditable_install() -> String {
    format!(
        "cargo install cargo-auditable@{} --locked",
        crate::plumbing::tools::version("cargo-auditable")
    )
}

fn home() -> PathBuf {
    std::env::var_os("HOME").map_or_else(|| PathBuf::from("/"), PathBuf::from)
}

/// A distroless-static image has no dynamic loader: refuse a binary that needs one.
pub fn check_static(path: &Path) -> Result<()> {
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

/// The build's time: `SOURCE_DATE_EPOCH`, or the commit time; never the clock.
fn source_date_epoch(sh: &Shell, head: &str) -> Result<i64> {
    Ok(match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(value) => value.parse().with_context(|| {
            format!("SOURCE_DATE_EPOCH={value:?} is not a Unix time in seconds")
        })?,
        Err(_) => cmd!(sh, "git show -s --format=%ct {head}")
            .read()?
            .trim()
            .parse()?,
    })
}

/// `service`'s labels, port and binary, and the timestamps: `created` is
/// `SOURCE_DATE_EPOCH` or the commit time, never the clock, so rebuilding a
/// commit reproduces its digest.
pub fn image_meta_of(sh: &Shell, service: &Service, head: &str) -> Result<ImageMeta> {
    let created_epoch = source_date_epoch(sh, head)?;
    let metadata: serde_json::Value = serde_json::from_str(
        &cmd!(sh, "cargo metadata --no-deps --format-version 1 --locked").read()?,
    )?;
    let package = metadata["packages"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["name"] == service.name.as_str()))
        .with_context(|| format!("{} is not a package of this workspace", service.name))?;
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
                crate::plumbing::text::rfc3339(created_epoch),
            ),
            ("org.opencontainers.image.revision", head.to_owned()),
            ("org.opencontainers.image.source", source),
            (
                "org.opencontainers.image.version",
                package["version"].as_str().unwrap_or_default().to_owned(),
            ),
            ("org.opencontainers.image.title", service.name.clone()),
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
        port: service.declaration.port,
        binary: service.name.clone(),
    })
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

    #[test]
    fn interp_header_tells_dynamic_from_static() {
        // The host's own test binary is dynamically linked against glibc.
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert!(has_interp(&me));
        assert!(!has_interp(b"\x7fELF not really"));
    }

    #[test]
    fn the_cargo_auditable_hint_names_the_pinned_install() {
        assert_eq!(
            cargo_auditable_install(),
            format!(
                "cargo install cargo-auditable@{} --locked",
                crate::plumbing::tools::version("cargo-auditable")
            )
        );
        assert!(cargo_auditable_install().contains("@0.7.7"));
    }

    /// items-api's /version reads ITEMS_API_GIT_COMMIT (config.rs): the
    /// name derived from the package must stay that one.
    #[test]
    fn the_built_commit_reaches_each_service_under_its_own_variable() {
        assert_eq!(commit_variable("items-api"), "ITEMS_API_GIT_COMMIT");
        assert_eq!(commit_variable("orders-api"), "ORDERS_API_GIT_COMMIT");
        let config = include_str!("../../../services/items-api/src/config.rs");
        assert!(config.contains(&format!(
            "option_env!(\"{}\")",
            commit_variable("items-api")
        )));
    }

    #[test]
    fn sizes_read_in_kib_then_mib() {
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(3 << 20), "3.00 MiB");
    }
}
