//! `cargo xtask verify <repository> <tag-or-digest> --image-key FILE
//! --public-key FILE`: what vouches for an image, as the cluster and release
//! see it: its signature (cosign's `sha256-<hex>.sig`, by the image key) and
//! its signed attestations (cosign's `sha256-<hex>.att`, by the gate key).
//!
//! 1. the reference is resolved to its digest;
//! 2. the signatures stored for that digest are checked against the image key;
//! 3. every attestation stored for that digest is verified with the gate key;
//! 4. each finding is printed; a missing or foreign signature, no verified
//!    attestation, or any attestation that fails is an error naming it.

use anyhow::{Context, Result, bail};

use crate::parts::attestation::{self, PublicKeyOptions};
use crate::parts::registry::{Repository, at, signature_tag};
use crate::parts::signature::{self, ImageKeyOptions, Verdict};

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
    if verified.is_empty() {
        problems
            .push("no attestation signed by the gate key: nothing vouches for its tests".into());
    }
    if !problems.is_empty() {
        bail!(
            "{registry}@{digest} does not verify: {}",
            problems.join("; ")
        );
    }
    Ok(())
}
