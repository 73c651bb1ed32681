//! Image signatures, as `cosign sign --key` writes them and `cosign verify
//! --key cosign.pub` (and Kyverno's `verifyImages`) checks them: a "simple
//! signing" JSON payload naming the repository and the manifest digest,
//! signed with ECDSA P-256 / SHA-256 (DER, base64), stored beside the image
//! under cosign's `sha256-<hex>.sig` tag (see `registry`).
//!
//! Keys: the private key (PKCS#8 PEM) only from `IMAGE_SIGNING_KEY`: the main
//! branch's build and release jobs hold it, pull-request jobs never do, so
//! `pr-*` images stay unsigned and are admitted only where no signature is
//! required (previews). The public key from `--image-key FILE` or
//! `IMAGE_PUBLIC_KEY`; the committed one is `gitops/policy/cosign.pub`, the
//! key the cluster's admission policy holds. The gate key (`attestation`) is
//! another pair: a build job can sign what it built, never a test result.

use std::fmt;
use std::path::PathBuf;

use anyhow::Result;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use p256::ecdsa::signature::{Signer as _, Verifier as _};
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::domain::attestation;
use crate::domain::registry::Repository;

pub const SIGNING_KEY_VAR: &str = "IMAGE_SIGNING_KEY";
pub const PUBLIC_KEY_VAR: &str = "IMAGE_PUBLIC_KEY";
/// The `critical.type` of a cosign image signature.
pub const SIGNATURE_TYPE: &str = "cosign container image signature";

/// cosign's simple-signing payload (containers-signature(5), as cosign writes it).
#[derive(Debug, Serialize, Deserialize)]
pub struct Payload {
    pub critical: Critical,
    pub optional: Option<serde_json::Value>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Critical {
    pub identity: Identity,
    pub image: ImageClaim,
    #[serde(rename = "type")]
    pub kind: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Identity {
    #[serde(rename = "docker-reference")]
    pub docker_reference: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ImageClaim {
    #[serde(rename = "docker-manifest-digest")]
    pub docker_manifest_digest: String,
}

impl Payload {
    pub fn new(repository: &str, digest: &str) -> Self {
        Self {
            critical: Critical {
                identity: Identity {
                    docker_reference: repository.to_owned(),
                },
                image: ImageClaim {
                    docker_manifest_digest: digest.to_owned(),
                },
                kind: SIGNATURE_TYPE.to_owned(),
            },
            optional: None,
        }
    }
}

/// Signs images as they are pushed: the key from `IMAGE_SIGNING_KEY`.
pub struct ImageSigner {
    key: SigningKey,
}

impl ImageSigner {
    /// `None` when `IMAGE_SIGNING_KEY` is unset.
    pub fn from_env() -> Result<Option<Self>> {
        Ok(attestation::signing_key_from_var(SIGNING_KEY_VAR)?.map(|key| Self { key }))
    }

    /// Signs the manifest `digest` in `registry` and stores the signature
    /// beside it; signing it again is a no-op.
    pub fn sign(&self, registry: &Repository, digest: &str) -> Result<()> {
        let payload = serde_json::to_vec(&Payload::new(&registry.to_string(), digest))?;
        let signature: Signature = self.key.sign(&payload);
        let signature = BASE64.encode(signature.to_der().as_bytes());
        registry.attach_signature(digest, payload, &signature)?;
        println!("signed {registry}@{digest} (cosign's .sig, {SIGNING_KEY_VAR})");
        Ok(())
    }
}

/// Where `verify` and `status` take the key image signatures must verify with.
#[derive(Debug, Clone, clap::Args)]
pub struct ImageKeyOptions {
    /// The public key (PEM) images must be signed with (gitops/policy/cosign.pub, the admission
    /// policy's key; also from IMAGE_KEY_FILE); or IMAGE_PUBLIC_KEY (the PEM text).
    #[arg(long, env = "IMAGE_KEY_FILE", value_name = "FILE")]
    pub image_key: Option<PathBuf>,
}

impl ImageKeyOptions {
    pub fn load(&self) -> Result<Option<VerifyingKey>> {
        attestation::load_public_key(self.image_key.as_deref(), "--image-key", PUBLIC_KEY_VAR)
    }
}

/// What the signatures stored for a digest say, checked against a key.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// A signature by the key over a payload naming exactly this digest.
    Signed,
    /// No signature is stored for the digest.
    Unsigned,
    /// Signatures are stored, none verifies with the key (another key, or an altered payload).
    OtherKey,
    /// A signature by the key, over a payload naming these other digests.
    OtherBits(Vec<String>),
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Signed => write!(f, "signed by the key"),
            Self::Unsigned => write!(f, "unsigned: no signature is stored for it"),
            Self::OtherKey => write!(
                f,
                "signed by another key (or its signed payload was altered): no signature verifies with the \
                 image public key"
            ),
            Self::OtherBits(others) => write!(
                f,
                "signature for other bits: a signature by the key names {}, not this digest",
                others.join(", ")
            ),
        }
    }
}

/// `digest` carries the pipeline's signature by `key`, or the error says
/// what `what` (the step about to trust it) refused, and why.
pub fn require_signed(
    registry: &Repository,
    digest: &str,
    key: &VerifyingKey,
    what: &str,
) -> Result<()> {
    match check(registry, digest, key)? {
        Verdict::Signed => {
            println!("{registry}@{digest}: signed by the image key");
            Ok(())
        }
        verdict => anyhow::bail!(
            "{what} refused {registry}@{digest}: {verdict}. Only what CD's image job built on main and signed \
             is vouched for or promoted (a tag moved in the registry names other bits)"
        ),
    }
}

/// Checks the signatures stored for `digest` against `key`.
pub fn check(registry: &Repository, digest: &str, key: &VerifyingKey) -> Result<Verdict> {
    let signatures = registry.signatures(digest)?;
    if signatures.is_empty() {
        return Ok(Verdict::Unsigned);
    }
    let mut other_bits = Vec::new();
    for (payload, signature) in &signatures {
        let verified = BASE64
            .decode(signature)
            .ok()
            .and_then(|der| Signature::from_der(&der).ok())
            .is_some_and(|sig| key.verify(payload, &sig).is_ok());
        if !verified {
            continue;
        }
        match serde_json::from_slice::<Payload>(payload) {
            Ok(p)
                if p.critical.kind == SIGNATURE_TYPE
                    && p.critical.image.docker_manifest_digest == digest =>
            {
                return Ok(Verdict::Signed);
            }
            Ok(p) => other_bits.push(p.critical.image.docker_manifest_digest),
            Err(_) => other_bits.push("an unreadable payload".to_owned()),
        }
    }
    Ok(if other_bits.is_empty() {
        Verdict::OtherKey
    } else {
        Verdict::OtherBits(other_bits)
    })
}

#[cfg(test)]
mod tests {
    /// Issue 29, item 9: every `cosign verify …` / `cosign verify-attestation …` the
    /// documentation tells people to run passes `--insecure-ignore-tlog`, which cosign 2.x
    /// needs for a key-signed image or attestation that is in no transparency log.
    #[test]
    fn every_documented_cosign_verify_skips_the_transparency_log() {
        let root = crate::plumbing::workspace::root();
        for file in ["README.md", "gitops/policy/README.md"] {
            let text = std::fs::read_to_string(root.join(file)).unwrap();
            let mut seen = 0;
            for (at, _) in text.match_indices("`cosign verify") {
                let command = &text[at + 1..];
                let command = &command[..command.find('`').unwrap()];
                seen += 1;
                assert!(
                    command.contains("--insecure-ignore-tlog"),
                    "{file}: `{command}` lacks --insecure-ignore-tlog"
                );
            }
            assert!(seen > 0, "{file} names no cosign verify command");
        }
    }

    use super::*;

    /// The payload is cosign's, byte for byte in shape: keys in its order, `optional: null`.
    #[test]
    fn the_payload_is_cosigns_simple_signing_json() {
        let digest = format!("sha256:{}", "a".repeat(64));
        let payload = serde_json::to_string(&Payload::new("ghcr.io/o/x", &digest)).unwrap();
        assert_eq!(
            payload,
            format!(
                "{{\"critical\":{{\"identity\":{{\"docker-reference\":\"ghcr.io/o/x\"}},\"image\":{{\
                 \"docker-manifest-digest\":\"{digest}\"}},\"type\":\"cosign container image signature\"}},\
                 \"optional\":null}}"
            )
        );
    }
}
