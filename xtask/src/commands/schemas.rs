//! `cargo xtask schemas refresh`: install the upstream contracts of
//! `xtask/schemas/sources.toml` (Argo CD's REST description, the CRDs, the
//! upstream examples) into their cache folder, each checked against its
//! sha256; `--update` follows a chart bump in Terraform to the matching tags.
//!
//! 1. Read the sources (and with `--update`, the Terraform pins).
//! 2. Plan: for each file, where it comes from and where it goes.
//! 3. `--dry-run` prints the plan; otherwise fetch (or copy `--from`), check, install.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};

use crate::domain::upstream_schemas::{self, Source};
use crate::plumbing::workspace;

#[derive(Subcommand)]
pub enum SchemasCommand {
    /// Install every file of xtask/schemas/sources.toml into the cache, checked by sha256.
    Refresh(RefreshArgs),
}

#[derive(Args)]
pub struct RefreshArgs {
    /// Print what would be fetched and written; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Copy the files from this folder (an offline machine) instead of GitHub.
    #[arg(long, value_name = "DIR")]
    from: Option<PathBuf>,
    /// Follow terraform/variables.tf's chart pins: new tags and sha256s into sources.toml.
    #[arg(long)]
    update: bool,
}

pub fn run(command: SchemasCommand) -> Result<()> {
    match command {
        SchemasCommand::Refresh(args) => refresh(args),
    }
}

fn refresh(args: RefreshArgs) -> Result<()> {
    if args.update && args.from.is_some() {
        bail!(
            "--update reads the new charts from GitHub; --from copies the files sources.toml already names: use one"
        );
    }
    let root = workspace::root();
    let sources = upstream_schemas::sources();
    let target = upstream_schemas::dir();
    if args.update {
        return update(&root, &sources, args.dry_run);
    }
    println!("{} files into {}", sources.len(), target.display());
    for source in &sources {
        let origin = match &args.from {
            Some(dir) => dir.join(&source.file).display().to_string(),
            None => source.url(),
        };
        let what = source.resource.as_deref().unwrap_or("Argo CD's REST API");
        println!(
            "  {:<36} {} of {what}, {} ← {origin} (sha256 {})",
            source.file,
            source.role,
            source.licence,
            &source.sha256[..12]
        );
    }
    if args.dry_run {
        println!("dry run: nothing fetched or written");
        return Ok(());
    }
    std::fs::create_dir_all(&target).with_context(|| format!("creating {}", target.display()))?;
    for source in &sources {
        // A file already installed with its sha256 is kept: nothing to fetch (an offline machine
        // whose cache holds them all refreshes without the network).
        let installed = std::fs::read(target.join(&source.file)).ok();
        if installed.is_some_and(|bytes| upstream_schemas::sha256_hex(&bytes) == source.sha256) {
            println!("  ✔ {} (installed already)", source.file);
            continue;
        }
        let bytes = match &args.from {
            Some(dir) => read_local(dir, source)?,
            None => download(&source.url())?,
        };
        install(&target, source, &bytes)?;
    }
    println!("✔ {} files installed and checked", sources.len());
    Ok(())
}

fn read_local(dir: &Path, source: &Source) -> Result<Vec<u8>> {
    let path = dir.join(&source.file);
    std::fs::read(&path).with_context(|| {
        format!(
            "{} is missing: the folder --from names holds the files of sources.toml by name",
            path.display()
        )
    })
}

/// Writes `bytes` as `source`'s file, after checking them against its sha256.
fn install(target: &Path, source: &Source, bytes: &[u8]) -> Result<()> {
    let digest = upstream_schemas::sha256_hex(bytes);
    if digest != source.sha256 {
        bail!(
            "{} ({} {} {}) has sha256 {digest}, and sources.toml names {}: nothing of it installed. \
             Another release? `cargo xtask schemas refresh --update` takes the tags Terraform pins",
            source.file,
            source.repo,
            source.tag,
            source.path,
            source.sha256
        );
    }
    let path = target.join(&source.file);
    crate::plumbing::fs::write_atomic(&path, bytes)?;
    println!("  ✔ {}", source.file);
    Ok(())
}

fn download(url: &str) -> Result<Vec<u8>> {
    crate::plumbing::http::get_bytes(url, std::time::Duration::from_secs(120), false)
}

/// `--update`: each chart Terraform pins, its appVersion, the tag that
/// makes, and the files at that tag, written into sources.toml.
fn update(root: &Path, sources: &[Source], dry_run: bool) -> Result<()> {
    let manifest = root.join("xtask/schemas/sources.toml");
    let mut document: toml_edit::DocumentMut = std::fs::read_to_string(&manifest)?.parse()?;
    let target = upstream_schemas::dir();
    for (index, source) in sources.iter().enumerate() {
        let chart = upstream_schemas::terraform_default(root, &source.terraform_variable)?
            .with_context(|| {
                format!(
                    "terraform/variables.tf has no default for {}",
                    source.terraform_variable
                )
            })?;
        let chart_url = source.chart_url(&chart);
        if dry_run {
            println!(
                "  {:<36} ← appVersion of {chart_url}, then {} at tag {} (now {}), sha256 into sources.toml",
                source.file, source.path, source.tag_format, source.tag
            );
            continue;
        }
        let chart_yaml: serde_json::Value = yaml_serde::from_slice(&download(&chart_url)?)?;
        let app = chart_yaml["appVersion"]
            .as_str()
            .with_context(|| format!("{chart_url} has no appVersion"))?;
        let tag = source.tag_format.replace("{app}", app);
        let bytes = download(&upstream_schemas::raw_url(&source.repo, &tag, &source.path))?;
        let entry = &mut document["schema"][index];
        entry["tag"] = toml_edit::value(tag.as_str());
        entry["chart_version"] = toml_edit::value(chart.as_str());
        entry["sha256"] = toml_edit::value(upstream_schemas::sha256_hex(&bytes));
        std::fs::create_dir_all(&target)?;
        std::fs::write(target.join(&source.file), &bytes)?;
        println!("  ✔ {} at {tag} (chart {chart})", source.file);
    }
    if dry_run {
        println!("dry run: nothing fetched or written");
        return Ok(());
    }
    std::fs::write(&manifest, document.to_string())?;
    println!(
        "✔ sources.toml follows Terraform's pins: rebuild xtask (it compiles sources.toml in) and review the diff"
    );
    Ok(())
}
