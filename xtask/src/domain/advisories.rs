//! RustSec advisories, offline, as `cargo deny` reads them: the database from
//! a snapshot (a `.tar.gz` like `../shared/advisory-db.tar.gz`, or a folder
//! such as a clone of github.com/rustsec/advisory-db), unpacked once into a
//! cache named by the snapshot's hash; packages matched with the `rustsec`
//! crate (without its git features: no network); the ignore list is
//! `deny.toml`'s, so there is one list.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use auditable_serde::{Package, Source};
use rustsec::advisory::Informational;
use rustsec::database::Query;

use xshell::{Shell, cmd};

use crate::domain::oci;
use crate::plumbing::fs::temp_dir_in;
use crate::plumbing::process::refuse_option_like;
use crate::plumbing::text::redact_url;
use crate::plumbing::workspace;

/// How to point xtask at a database when none was given.
pub const NO_DATABASE_HINT: &str = "a RustSec advisory database is needed: --advisory-db PATH or \
    ADVISORY_DB_SNAPSHOT (a .tar.gz snapshot holding advisory-db/, or a folder: `git clone --depth 1 \
    https://github.com/rustsec/advisory-db`)";

/// The RustSec database's git repository, what `--fetch-advisory-db` clones
/// by default (GitHub's runners have no snapshot; cargo deny and cargo audit
/// fetch the same repository).
pub const DATABASE_URL: &str = "https://github.com/rustsec/advisory-db";

/// A shallow copy of the database at `url`'s default branch tip, in the
/// target dir (`xtask/advisory-db-git`); a copy already there is brought to
/// the new tip. Returns the folder, for [`Database::open`].
pub fn fetch(url: &str) -> Result<PathBuf> {
    refuse_option_like("advisory database URL", url, "--fetch-advisory-db")?;
    let dir = workspace::target_dir().join("xtask/advisory-db-git");
    let sh = Shell::new()?;
    if !dir.join(".git").is_dir() {
        let _ = std::fs::remove_dir_all(&dir);
        cmd!(sh, "git init --quiet -- {dir}").quiet().run()?;
    }
    sh.change_dir(&dir);
    cmd!(sh, "git fetch --quiet --depth 1 -- {url} HEAD")
        .quiet()
        .run()
        .with_context(|| format!("fetching the RustSec database from {}", redact_url(url)))?;
    cmd!(sh, "git checkout --quiet --force --detach FETCH_HEAD")
        .quiet()
        .run()?;
    Ok(dir)
}

/// The advisory database and what it is a copy of.
pub struct Database {
    database: rustsec::Database,
    /// The first line of the snapshot's `SNAPSHOT` file, or the folder's path.
    pub described: String,
}

/// What one advisory says about one package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub package: String,
    pub version: String,
    pub id: String,
    pub title: String,
    /// Version requirements that fix it (`>= 1.2.3`); empty: no fix.
    pub patched: Vec<String>,
    pub severity: Severity,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Severity {
    /// A vulnerability: fails the scan.
    Vulnerable,
    /// Informational (unmaintained, unsound, notice): a warning.
    Warning(String),
    /// Listed in deny.toml's `[advisories] ignore`.
    Ignored,
}

impl Database {
    /// Opens the database in `snapshot`: a `.tar.gz` or a folder holding
    /// `crates/` (or `advisory-db/crates/`).
    pub fn open(snapshot: &Path) -> Result<Self> {
        let folder = folder(snapshot)?;
        let database = rustsec::Database::open(&folder)
            .with_context(|| format!("reading the advisory database in {}", folder.display()))?;
        let described = std::fs::read_to_string(folder.join("SNAPSHOT"))
            .ok()
            .and_then(|s| s.lines().next().map(str::to_owned))
            .unwrap_or_else(|| folder.display().to_string());
        Ok(Self {
            database,
            described,
        })
    }

    /// Every advisory that applies to `packages` (crates.io packages only: the
    /// database covers crates.io), withdrawn ones left out.
    pub fn check<'a>(
        &self,
        packages: impl IntoIterator<Item = &'a Package>,
        ignored: &[String],
    ) -> Result<Vec<Finding>> {
        let mut findings = Vec::new();
        for package in packages {
            if package.source != Source::CratesIo {
                continue;
            }
            let query = Query::new()
                .collection(rustsec::Collection::Crates)
                .withdrawn(false)
                .package_name(package.name.parse()?)
                .package_version(package.version.clone());
            for advisory in self.database.query(&query) {
                let id = advisory.id().to_string();
                let severity = match &advisory.metadata.informational {
                    _ if ignored.contains(&id) => Severity::Ignored,
                    Some(Informational::Unmaintained) => Severity::Warning("unmaintained".into()),
                    Some(Informational::Unsound) => Severity::Warning("unsound".into()),
                    Some(other) => Severity::Warning(other.as_str().to_owned()),
                    None => Severity::Vulnerable,
                };
                let finding = Finding {
                    package: package.name.clone(),
                    version: package.version.to_string(),
                    id,
                    title: advisory.title().to_owned(),
                    patched: advisory
                        .versions
                        .patched()
                        .iter()
                        .map(ToString::to_string)
                        .collect(),
                    severity,
                };
                if !findings.contains(&finding) {
                    findings.push(finding);
                }
            }
        }
        Ok(findings)
    }
}

/// The advisory ids `deny.toml` ignores (`[advisories] ignore`: ids, or
/// tables with an `id` and a `reason`).
pub fn ignore_list(deny_toml: &str) -> Result<Vec<String>> {
    let config: toml::Table = toml::from_str(deny_toml).context("deny.toml is not TOML")?;
    let entries = config
        .get("advisories")
        .and_then(|a| a.get("ignore"))
        .and_then(toml::Value::as_array)
        .cloned()
        .unwrap_or_default();
    entries
        .iter()
        .map(|entry| match entry {
            toml::Value::String(id) => Ok(id.clone()),
            toml::Value::Table(table) => table
                .get("id")
                .and_then(toml::Value::as_str)
                .map(str::to_owned)
                .context("deny.toml: an [advisories] ignore entry without an id"),
            other => bail!("deny.toml: [advisories] ignore holds {other}, not an id"),
        })
        .collect()
}

/// The workspace's deny.toml ignore list.
pub fn workspace_ignore_list() -> Result<Vec<String>> {
    let path = workspace::root().join("deny.toml");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    ignore_list(&text)
}

/// The folder holding the database's `crates/` in `snapshot`: the folder
/// itself, its `advisory-db/`, or a `.tar.gz` unpacked once (for `scan` and
/// for `ci`'s cargo-deny alike).
pub fn folder(snapshot: &Path) -> Result<PathBuf> {
    if snapshot.is_dir() {
        [snapshot.to_path_buf(), snapshot.join("advisory-db")]
            .into_iter()
            .find(|dir| dir.join("crates").is_dir())
            .with_context(|| {
                format!(
                    "{} is not a RustSec advisory database (no crates/ or advisory-db/crates/)",
                    snapshot.display()
                )
            })
    } else if snapshot.is_file() {
        unpacked(snapshot)
    } else {
        bail!(
            "the advisory database {} does not exist: {NO_DATABASE_HINT}",
            snapshot.display()
        );
    }
}

/// The snapshot tarball unpacked under the target dir, once per content: the
/// folder is named by the tarball's hash and appears whole or not at all.
fn unpacked(tarball: &Path) -> Result<PathBuf> {
    let bytes = std::fs::read(tarball).with_context(|| format!("reading {}", tarball.display()))?;
    let digest = oci::sha256_digest(&bytes);
    let hex = digest.trim_start_matches("sha256:");
    let cache = workspace::target_dir().join("xtask/advisory-db-scan");
    let folder = cache.join(&hex[..16]);
    if folder.join("crates").is_dir() {
        return Ok(folder);
    }
    let scratch = temp_dir_in(&cache, "unpacking-")?;
    unpack_into(&bytes, tarball, scratch.path(), &folder)?;
    Ok(folder)
}

/// Unpacks the tarball's `advisory-db/` in `scratch`, then moves it to `folder`.
fn unpack_into(bytes: &[u8], tarball: &Path, scratch: &Path, folder: &Path) -> Result<()> {
    tar::Archive::new(flate2::read::GzDecoder::new(bytes))
        .unpack(scratch)
        .with_context(|| format!("unpacking {} (a .tar.gz?)", tarball.display()))?;
    let inside = scratch.join("advisory-db");
    if !inside.join("crates").is_dir() {
        bail!(
            "{} is not a RustSec advisory-db snapshot (no advisory-db/crates/)",
            tarball.display()
        );
    }
    // Another scan may have finished first: its copy is as good as ours.
    if std::fs::rename(&inside, folder).is_err() && !folder.join("crates").is_dir() {
        bail!(
            "could not move the advisory database to {}",
            folder.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ignore_list_takes_ids_and_tables() {
        let ids = ignore_list(
            "[graph]\n[advisories]\nignore = [\"RUSTSEC-2020-0001\", { id = \"RUSTSEC-2021-0002\", reason = \"x\" }]\n",
        )
        .unwrap();
        assert_eq!(ids, ["RUSTSEC-2020-0001", "RUSTSEC-2021-0002"]);
        assert!(ignore_list("[advisories]\n").unwrap().is_empty());
        assert!(ignore_list("[advisories]\nignore = [3]\n").is_err());
    }

    /// One advisory file in RustSec's format (TOML front matter, Markdown title).
    fn advisory(db: &Path, package: &str, id: &str, extra: &str, patched: &str) {
        let dir = db.join("crates").join(package);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join(format!("{id}.md")),
            format!(
                "```toml\n[advisory]\nid = \"{id}\"\npackage = \"{package}\"\ndate = \"2021-07-07\"\n\
                 {extra}\n[versions]\npatched = [{patched}]\n```\n\n# Title of {id}\n\nDescription.\n"
            ),
        )
        .unwrap();
    }

    fn package(name: &str, version: &str, source: &str) -> Package {
        serde_json::from_str(&format!(
            r#"{{"name": "{name}", "version": "{version}", "source": "{source}"}}"#
        ))
        .unwrap()
    }

    #[test]
    fn vulnerable_versions_fail_informational_ones_warn_and_the_ignore_list_is_honoured() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("advisory-db");
        advisory(&db, "hyper", "RUSTSEC-2021-0078", "", "\">= 0.14.10\"");
        advisory(
            &db,
            "ansi_term",
            "RUSTSEC-2021-0139",
            "informational = \"unmaintained\"",
            "",
        );
        advisory(
            &db,
            "gone",
            "RUSTSEC-2021-0001",
            "withdrawn = \"2021-08-01\"",
            "",
        );
        let database = Database::open(dir.path()).unwrap();
        let packages = [
            package("hyper", "0.14.9", "crates.io"),
            package("hyper", "0.14.10", "crates.io"),
            package("ansi_term", "0.12.1", "crates.io"),
            package("gone", "1.0.0", "crates.io"),
            // Not from crates.io: the database says nothing about it.
            package("hyper", "0.14.9", "local"),
        ];
        let findings = database.check(&packages, &[]).unwrap();
        let summary: Vec<(&str, &str, &Severity)> = findings
            .iter()
            .map(|f| (f.package.as_str(), f.version.as_str(), &f.severity))
            .collect();
        assert_eq!(
            summary,
            [
                ("hyper", "0.14.9", &Severity::Vulnerable),
                (
                    "ansi_term",
                    "0.12.1",
                    &Severity::Warning("unmaintained".into())
                ),
            ]
        );
        assert_eq!(findings[0].id, "RUSTSEC-2021-0078");
        assert_eq!(findings[0].title, "Title of RUSTSEC-2021-0078");
        assert_eq!(findings[0].patched, [">=0.14.10"]);
        let ignored = database
            .check(&packages[..1], &["RUSTSEC-2021-0078".to_owned()])
            .unwrap();
        assert_eq!(ignored[0].severity, Severity::Ignored);
    }

    #[test]
    fn a_snapshot_tarball_is_unpacked_once_under_its_hash_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        // A distinct database per run, so the cache folder is this test's.
        let id = format!("RUSTSEC-2021-{:04}", fastrand::u16(..9999));
        advisory(&dir.path().join("advisory-db"), "hyper", &id, "", "");
        let tarball = dir.path().join("snapshot.tar.gz");
        let gz = flate2::write::GzEncoder::new(
            std::fs::File::create(&tarball).unwrap(),
            flate2::Compression::fast(),
        );
        let mut builder = tar::Builder::new(gz);
        builder
            .append_dir_all("advisory-db", dir.path().join("advisory-db"))
            .unwrap();
        builder.into_inner().unwrap().finish().unwrap();
        let first = unpacked(&tarball).unwrap();
        assert!(
            first
                .join("crates/hyper")
                .join(format!("{id}.md"))
                .is_file()
        );
        assert_eq!(
            unpacked(&tarball).unwrap(),
            first,
            "the same content, the same folder"
        );
        std::fs::remove_dir_all(&first).unwrap();

        let empty = dir.path().join("empty.tar.gz");
        let gz = flate2::write::GzEncoder::new(
            std::fs::File::create(&empty).unwrap(),
            flate2::Compression::fast(),
        );
        tar::Builder::new(gz)
            .into_inner()
            .unwrap()
            .finish()
            .unwrap();
        let error = unpacked(&empty).unwrap_err().to_string();
        assert!(
            error.contains("is not a RustSec advisory-db snapshot"),
            "{error}"
        );
    }

    #[test]
    fn the_workspace_deny_toml_is_readable() {
        workspace_ignore_list().unwrap();
    }
}
