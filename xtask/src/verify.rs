//! `cargo xtask verify <repository> <tag-or-digest> --public-key FILE`: the
//! signed attestations stored beside an image (cosign's `sha256-<hex>.att`),
//! each checked against the key and the image's digest.
//!
//! 1. the reference is resolved to its digest;
//! 2. every attestation stored for that digest is verified;
//! 3. the verified ones are printed; none, or any that fails, is an error.

use anyhow::{Context, Result, bail};

use crate::parts::attestation::{self, PublicKeyOptions};
use crate::parts::registry::{Repository, at};

#[derive(clap::Args)]
pub struct VerifyArgs {
    /// The image repository: <registry>/<path>, or oci:<dir>.
    repository: String,
    /// A tag, or a digest (sha256:…).
    reference: String,
    #[command(flatten)]
    public_key: PublicKeyOptions,
}

pub fn run(args: VerifyArgs) -> Result<()> {
    let key = args.public_key.load()?.context(
        "verify needs the public key: --public-key FILE, or GATE_PUBLIC_KEY with the PEM text",
    )?;
    let registry = Repository::open(&args.repository)?;
    let (_, resolved) = registry.manifest(&args.reference)?;
    let digest = resolved.digest;
    let (verified, rejected) = attestation::read_verified(&registry, &digest, &key)?;
    println!("{registry}{} is {digest}", at(&args.reference));
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
        bail!(
            "{} attestation(s) on {digest} failed verification",
            rejected.len()
        );
    }
    if verified.is_empty() {
        bail!("no attestation on {digest} signed by the key: nothing vouches for this image");
    }
    Ok(())
}
