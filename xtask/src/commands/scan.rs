//! `cargo xtask scan [REPOSITORY] REFERENCE` (or `--binary FILE`): the
//! dependency list `cargo auditable` embedded in a service's binary, checked
//! against RustSec offline, as `cargo deny` checks the lockfile. Without
//! REPOSITORY, the image is the service's (`--service NAME`, in
//! `--registry`/`IMAGE_REGISTRY`, or `--repository`/`IMAGE_REPOSITORY` for a
//! workspace of one); the scanned digest is the step's output `digest`.
//!
//! 1. the advisory database is opened from the snapshot (unpacked once);
//! 2. the binary of every platform of the image (or the file) is read, and
//!    its `.dep-v0` dependency list decoded;
//! 3. every crates.io package is checked: vulnerabilities fail the scan,
//!    informational advisories (unmaintained, unsound) warn, deny.toml's
//!    ignore list is honoured;
//! 4. `--sbom FILE` writes the CycloneDX SBOM of the same list; `--attest`
//!    signs it (GATE_SIGNING_KEY) and stores it beside the image.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use p256::ecdsa::SigningKey;

use crate::domain::advisories::{self, Database, Finding, NO_DATABASE_HINT, Severity};
use crate::domain::attestation::{self, Statement};
use crate::domain::github;
use crate::domain::registry::{Repository, at};
use crate::domain::sbom::{self, Binary, CYCLONEDX_PREDICATE};
use crate::domain::services::{self, RepositoryOptions, ServiceSelection};
use crate::domain::signature::{self, ImageKeyOptions};
use crate::domain::tags::{self, ImageTag};

#[derive(clap::Args)]
pub struct ScanArgs {
    /// [REPOSITORY] REFERENCE: the image repository (<registry>/<path>, or oci:<dir>; default:
    /// the service's, from --registry or --repository) and a tag or a digest (sha256:…).
    #[arg(
        value_name = "[REPOSITORY] REFERENCE",
        num_args = 1..=2,
        required_unless_present = "binary"
    )]
    image: Vec<String>,
    #[command(flatten)]
    repositories: RepositoryOptions,
    #[command(flatten)]
    services: ServiceSelection,
    /// Scan this local binary instead of an image.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["image", "attest"])]
    binary: Option<PathBuf>,
    /// RustSec database: a .tar.gz snapshot holding advisory-db/, or a folder (a clone of
    /// github.com/rustsec/advisory-db).
    #[arg(long, env = "ADVISORY_DB_SNAPSHOT", value_name = "PATH")]
    advisory_db: Option<PathBuf>,
    /// Fetch the database instead (a shallow git fetch into the target dir, brought up to
    /// date on each run): from github.com/rustsec/advisory-db, or from URL. What the workflows use.
    #[arg(long, value_name = "URL", num_args = 0..=1, default_missing_value = advisories::DATABASE_URL)]
    fetch_advisory_db: Option<String>,
    /// Also write the CycloneDX SBOM (JSON) of the scanned dependency list to FILE.
    #[arg(long, value_name = "FILE")]
    sbom: Option<PathBuf>,
    /// Sign the SBOM with GATE_SIGNING_KEY and store it beside the image as an attestation
    /// (predicate type https://cyclonedx.org/bom). For images CD pushed: main-<sha> or a digest,
    /// which must first carry the pipeline's signature by the image key (--image-key).
    #[arg(long)]
    attest: bool,
    #[command(flatten)]
    image_key: ImageKeyOptions,
}

pub fn run(args: ScanArgs) -> Result<()> {
    if let (true, Some(reference)) = (args.attest, args.image.last())
        && let Ok(ImageTag::Pr { .. }) = ImageTag::parse(reference)
    {
        bail!(
            "{reference} is a pull request's image: SBOM attestations are signed for images CD pushed \
             (main-<sha>, or their digest); scan it without --attest"
        );
    }
    // Before any work: --attest without the keys is a mistake, not a skip.
    let (key, image_key) = match args.attest {
        true => {
            let (key, image_key) = attest_keys(&args)?;
            (Some(key), Some(image_key))
        }
        false => (None, None),
    };
    // The signature first, on the digest the reference names now; everything after reads that digest.
    let pinned = match &image_key {
        Some(image_key) => Some(signed_digest(&args, image_key)?),
        None => None,
    };
    let snapshot = match &args.fetch_advisory_db {
        Some(url) => advisories::fetch(url)?,
        None => args.advisory_db.clone().context(NO_DATABASE_HINT)?,
    };
    let database = Database::open(&snapshot)?;
    let ignored = advisories::workspace_ignore_list()?;

    let (subject, binaries) = binaries(&args, pinned.as_deref())?;
    println!("advisories from {}", database.described);

    let mut findings = Vec::new();
    let mut scanned = 0;
    for binary in &binaries {
        let packages = &binary.dependencies.packages;
        println!("{}: {} packages", binary.origin, packages.len());
        scanned += packages.len();
        for finding in database.check(packages, &ignored)? {
            if !findings.contains(&finding) {
                findings.push(finding);
            }
        }
    }

    let document = sbom::cyclonedx(&binaries);
    if let Some(path) = &args.sbom {
        std::fs::write(path, serde_json::to_vec_pretty(&document)?)
            .with_context(|| format!("writing {}", path.display()))?;
        println!("wrote the CycloneDX SBOM to {}", path.display());
    }
    if let Some(key) = &key {
        let (repository, digest) = subject
            .as_ref()
            .context("--attest needs an image (REPOSITORY REFERENCE)")?;
        attest_sbom(repository, digest, document, key)?;
    }
    verdict(&findings, scanned)
}

/// What `--attest` needs: the CD key that signs the SBOM, and the image key whose signature the
/// image must carry first.
fn attest_keys(args: &ScanArgs) -> Result<(p256::ecdsa::SigningKey, p256::ecdsa::VerifyingKey)> {
    let key = attestation::signing_key_from_env()?.context(
        "--attest signs the SBOM with GATE_SIGNING_KEY (the PEM text of the CD key), which is not set",
    )?;
    let image_key = args.image_key.load()?.context(
        "--attest vouches only for an image the pipeline signed: give the image public key with \
         --image-key gitops/policy/cosign.pub (IMAGE_KEY_FILE), or IMAGE_PUBLIC_KEY with the PEM text",
    )?;
    Ok((key, image_key))
}

/// The image a scan read: its repository and digest (what `--attest` signs for).
type Subject = (Repository, String);

/// The image's repository and reference: both given, or the reference and
/// the service's repository.
fn image_of(args: &ScanArgs) -> Result<Option<(String, String)>> {
    Ok(match args.image.as_slice() {
        [] => None,
        [repository, reference] => Some((repository.clone(), tags::reference_arg(reference)?)),
        [reference] => {
            let all = services::load_current()?;
            let service = args.services.one(&all)?;
            let repository = args.repositories.require(&service, &all)?;
            Some((repository, tags::reference_arg(reference)?))
        }
        _ => bail!("name an image (REPOSITORY REFERENCE, or --service NAME REFERENCE)"),
    })
}

/// The digest the image's reference names, once it is known to carry the
/// pipeline's signature by `image_key` (else the refusal).
fn signed_digest(args: &ScanArgs, image_key: &p256::ecdsa::VerifyingKey) -> Result<String> {
    let (repository, reference) =
        image_of(args)?.context("--attest needs an image (REPOSITORY REFERENCE)")?;
    let repository = Repository::open(&repository)?;
    let (_, resolved) = repository.manifest(&reference)?;
    signature::require_signed(&repository, &resolved.digest, image_key, "scan --attest")?;
    Ok(resolved.digest)
}

/// The binaries to scan: the file, or every platform's binary of the image
/// (at `pinned`, the digest already verified, when given).
fn binaries(args: &ScanArgs, pinned: Option<&str>) -> Result<(Option<Subject>, Vec<Binary>)> {
    Ok(match (&args.binary, image_of(args)?) {
        (Some(path), _) => {
            let bytes =
                std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            let origin = path.display().to_string();
            let dependencies = sbom::dependencies_of(&bytes, &origin)?;
            (
                None,
                vec![Binary {
                    origin,
                    dependencies,
                }],
            )
        }
        (None, Some((repository, reference))) => {
            let repository = Repository::open(&repository)?;
            let reference = pinned.map_or(reference, str::to_owned);
            let (digest, binaries) = sbom::image_binaries(&repository, &reference)?;
            println!("{repository}{} is {digest}", at(&reference));
            // For the next steps of a workflow: what was scanned is what is promoted.
            github::set_output("digest", &digest)?;
            (Some((repository, digest)), binaries)
        }
        (None, None) => bail!("name an image (REPOSITORY REFERENCE) or a file (--binary FILE)"),
    })
}

/// Prints each finding; an error when any is a vulnerability.
fn verdict(findings: &[Finding], scanned: usize) -> Result<()> {
    for f in findings {
        let patched = if f.patched.is_empty() {
            "no patched version".to_owned()
        } else {
            format!("patched: {}", f.patched.join(", "))
        };
        let (mark, note) = match &f.severity {
            Severity::Vulnerable => ("✘", String::new()),
            Severity::Warning(kind) => ("!", format!(" [{kind}: a warning]")),
            Severity::Ignored => ("-", " [ignored in deny.toml]".to_owned()),
        };
        println!(
            "  {mark} {} {}: {} {} ({patched}){note}",
            f.package, f.version, f.id, f.title
        );
    }
    let count =
        |wanted: fn(&Severity) -> bool| findings.iter().filter(|f| wanted(&f.severity)).count();
    let vulnerable = count(|s| *s == Severity::Vulnerable);
    let warnings = count(|s| matches!(s, Severity::Warning(_)));
    println!(
        "scanned {scanned} packages: {vulnerable} vulnerable, {warnings} warnings, {} ignored",
        count(|s| *s == Severity::Ignored)
    );
    if vulnerable > 0 {
        bail!(
            "{vulnerable} known vulnerabilities: update the packages above to a patched version \
             (cargo update -p NAME), or, with a reason, ignore the advisory in deny.toml"
        );
    }
    Ok(())
}

/// Signs the SBOM as an in-toto statement about `digest` and stores it beside
/// the image, as the preprod gate is stored. Only for images CD pushed: a
/// pull request's image is never vouched for with the CD key.
fn attest_sbom(
    repository: &Repository,
    digest: &str,
    document: serde_json::Value,
    key: &SigningKey,
) -> Result<()> {
    let statement = Statement::new(
        &repository.to_string(),
        digest,
        CYCLONEDX_PREDICATE,
        document,
    )?;
    let envelope = attestation::sign(&statement, key)?;
    repository.attach_attestation(digest, envelope, CYCLONEDX_PREDICATE)?;
    println!("signed the CycloneDX SBOM for {repository}@{digest} ({CYCLONEDX_PREDICATE})");
    Ok(())
}
