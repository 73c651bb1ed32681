//! `cargo xtask verify <repository> <tag-or-digest> --image-key FILE
//! --public-key FILE`: what vouches for an image, as the cluster and release
//! see it: its signature (cosign's `sha256-<hex>.sig`, by the image key) and
//! its signed attestations (cosign's `sha256-<hex>.att`, by the gate key).
//!
//! 1. the reference is resolved to its digest;
//! 2. the signatures stored for that digest are checked against the image key;
//! 3. every attestation stored for that digest is verified with the gate key;
//! 4. each finding is printed; a missing or foreign signature, no passing
//!    preprod-tests result among them (the newest signed one for this digest
//!    a success: an SBOM or a failed run vouches for nothing), or any
//!    attestation that fails is an error naming it.

use anyhow::{Context, Result, bail};

use crate::domain::attestation::{self, PublicKeyOptions};
use crate::domain::registry::{Repository, at, signature_tag};
use crate::domain::signature::{self, ImageKeyOptions, Verdict};

#[derive(clap::Args)]
pub struct VerifyArgs {
    /// The image repository: <registry>/<path>, or oci:<dir>.
    repository: String,
    /// A tag, or a digest (sha256:…).
    reference: String,
    #[command(flatten)]
    image_key: ImageKeyOptions,
    #[command(flatten)]
    public_key: PublicKeyOptions,
}

pub fn run(args: VerifyArgs) -> Result<()> {
    let image_key = args.image_key.load()?.context(
        "verify needs the image signing public key: --image-key FILE (gitops/policy/cosign.pub), or \
         IMAGE_PUBLIC_KEY with the PEM text",
    )?;
    let gate_key = args.public_key.load()?.context(
        "verify needs the gate's public key: --public-key FILE, or GATE_PUBLIC_KEY with the PEM text",
    )?;
    let registry = Repository::open(&args.repository)?;
    let (_, resolved) = registry.manifest(&args.reference)?;
    let digest = resolved.digest;
    println!("{registry}{} is {digest}", at(&args.reference));
    let mut problems = Vec::new();

    let verdict = signature::check(&registry, &digest, &image_key)?;
    if verdict == Verdict::Signed {
        println!("  ✔ signature: {verdict} ({})", signature_tag(&digest)?);
    } else {
        println!("  ✘ signature: {verdict}");
        problems.push(verdict.to_string());
    }

    let (verified, rejected) = attestation::read_verified(&registry, &digest, &gate_key)?;
    for statement in &verified {
        let p = &statement.predicate;
        println!(
            "  ✔ {} commit {} conclusion {} at {}",
            statement.predicate_type,
            p["commit"].as_str().unwrap_or("-"),
            p["conclusion"].as_str().unwrap_or("-"),
            p["time"].as_str().unwrap_or("-"),
        );
    }
    for why in &rejected {
        println!("  ✘ {why}");
    }
    if !rejected.is_empty() {
        problems.push(format!(
            "{} attestation(s) failed verification",
            rejected.len()
        ));
    }
    problems.extend(preprod_problem(&registry, &digest, &gate_key)?);
    if !problems.is_empty() {
        bail!(
            "{registry}@{digest} does not verify: {}",
            problems.join("; ")
        );
    }
    Ok(())
}

/// Why the preprod gate does not vouch for `digest`: no signed preprod-tests
/// result for it, or the newest one is a failure. `None` when it passed.
fn preprod_problem(
    registry: &Repository,
    digest: &str,
    gate_key: &p256::ecdsa::VerifyingKey,
) -> Result<Option<String>> {
    let (newest, _) = attestation::newest_preprod(registry, digest, gate_key)?;
    Ok(match newest {
        None => Some(format!(
            "no {} result signed by the gate key: nothing vouches that its preprod tests passed (an SBOM \
             alone is not a gate)",
            attestation::PREPROD_PREDICATE
        )),
        Some(newest) if newest.conclusion != crate::domain::gate_store::Conclusion::Success => {
            Some(format!(
                "the newest signed preprod-tests result ({}, commit {}) is not a success",
                newest.time, newest.commit
            ))
        }
        Some(newest) => {
            println!(
                "  ✔ gate: the newest signed preprod-tests result ({}) passed",
                newest.time
            );
            None
        }
    })
}
