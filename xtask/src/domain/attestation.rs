//! Signed gates: an in-toto Statement v1 about an image digest, in a DSSE
//! envelope signed with ECDSA P-256 / SHA-256 — what `cosign attest --key`
//! writes and `cosign verify-attestation --key cosign.pub --type <type>`
//! checks. The envelope lives in the registry beside the image, under cosign's
//! `sha256-<hex>.att` tag (see `registry`).
//!
//! Keys: the private key (PKCS#8 PEM) only from `GATE_SIGNING_KEY`, never a
//! flag, a path or a printed line; the public key from `--public-key FILE` or
//! `GATE_PUBLIC_KEY` (PEM text). `cargo xtask gate keygen` makes a pair.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use p256::ecdsa::signature::{Signer as _, Verifier as _};
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use p256::pkcs8::{
    DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding,
};
use serde::{Deserialize, Serialize};

use crate::domain::gate_store::Conclusion;
use crate::domain::registry::Repository;

pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
pub const PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
/// The predicate type of the preprod suite's result.
pub const PREPROD_PREDICATE: &str = "https://service-demo.dev/preprod-tests/v1";
pub const SIGNING_KEY_VAR: &str = "GATE_SIGNING_KEY";
pub const PUBLIC_KEY_VAR: &str = "GATE_PUBLIC_KEY";

/// DSSE's pre-authentication encoding: what is signed, so the payload type
/// is bound to the payload.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {payload_type} {} ",
        payload_type.len(),
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope {
    pub payload_type: String,
    /// Base64 of the statement's bytes.
    pub payload: String,
    pub signatures: Vec<EnvelopeSignature>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EnvelopeSignature {
    #[serde(default)]
    pub keyid: String,
    /// Base64 of an ASN.1 DER ECDSA signature over `pae(payload_type, payload)`.
    pub sig: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Statement {
    #[serde(rename = "_type")]
    pub statement_type: String,
    pub subject: Vec<Subject>,
    pub predicate_type: String,
    pub predicate: serde_json::Value,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Subject {
    pub name: String,
    pub digest: std::collections::BTreeMap<String, String>,
}

/// The preprod suite's result, as signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreprodPredicate {
    pub commit: String,
    pub suite: String,
    pub conclusion: Conclusion,
    pub results: Results,
    /// RFC 3339, UTC, seconds: the newest signed result decides.
    pub time: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Results {
    pub passed: usize,
    pub failed: usize,
}

impl PreprodPredicate {
    /// The suite's result for `commit`, stamped now.
    pub fn now(commit: &str, conclusion: Conclusion, results: Results) -> Self {
        let epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        Self {
            commit: commit.to_owned(),
            suite: crate::domain::gate_store::PREPROD_GATE.to_owned(),
            conclusion,
            results,
            time: crate::plumbing::text::rfc3339(epoch),
        }
    }
}

/// Where `preprod-test` and `gate record` sign: the key from `GATE_SIGNING_KEY`
/// and the image repository the attestation is stored in.
pub struct Signer {
    pub key: SigningKey,
    pub registry: Repository,
}

impl Signer {
    /// `None` when `GATE_SIGNING_KEY` is unset; an error when it is set
    /// without a repository to store the attestation in.
    pub fn from_env(repository: Option<&str>) -> Result<Option<Self>> {
        let Some(key) = signing_key_from_env()? else {
            return Ok(None);
        };
        let repository = repository.context(
            "GATE_SIGNING_KEY is set, so the result is signed and stored beside the image: name the \
             image repository with --repository or IMAGE_REPOSITORY",
        )?;
        Ok(Some(Self {
            key,
            registry: Repository::open(repository)?,
        }))
    }

    pub fn attest_preprod(&self, digest: &str, predicate: &PreprodPredicate) -> Result<()> {
        attest_preprod(&self.registry, digest, predicate, &self.key)?;
        println!(
            "signed the {} result for {}@{digest} ({PREPROD_PREDICATE}, commit {})",
            predicate.suite, self.registry, predicate.commit
        );
        Ok(())
    }
}

impl Statement {
    pub fn new(
        image: &str,
        digest: &str,
        predicate_type: &str,
        predicate: serde_json::Value,
    ) -> Result<Self> {
        let hex = digest
            .strip_prefix("sha256:")
            .with_context(|| format!("{digest:?} is not a sha256 digest"))?;
        Ok(Self {
            statement_type: STATEMENT_TYPE.to_owned(),
            subject: vec![Subject {
                name: image.to_owned(),
                digest: [("sha256".to_owned(), hex.to_owned())].into(),
            }],
            predicate_type: predicate_type.to_owned(),
            predicate,
        })
    }

    /// Whether `digest` (`sha256:…`) is one of the statement's subjects.
    pub fn is_about(&self, digest: &str) -> bool {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        self.subject
            .iter()
            .any(|s| s.digest.get("sha256").is_some_and(|d| d == hex))
    }

    pub fn subject_digests(&self) -> String {
        let digests: Vec<String> = self
            .subject
            .iter()
            .filter_map(|s| s.digest.get("sha256").map(|d| format!("sha256:{d}")))
            .collect();
        digests.join(", ")
    }
}

/// The private key from `GATE_SIGNING_KEY`, if set. Errors never quote it.
pub fn signing_key_from_env() -> Result<Option<SigningKey>> {
    signing_key_from_var(SIGNING_KEY_VAR)
}

/// The private key (PKCS#8 PEM text) in the environment variable `var`, if
/// set. Errors never quote it.
pub fn signing_key_from_var(var: &str) -> Result<Option<SigningKey>> {
    let Some(pem) = std::env::var(var).ok().filter(|v| !v.trim().is_empty()) else {
        return Ok(None);
    };
    let key = SigningKey::from_pkcs8_pem(pem.trim()).map_err(|_| {
        anyhow::anyhow!(
            "{var} is not a PKCS#8 PEM P-256 private key (the text \"-----BEGIN PRIVATE \
             KEY-----…\", not a path): make one with cargo xtask gate keygen --out-dir DIR"
        )
    })?;
    Ok(Some(key))
}

/// A PEM P-256 public key (`cosign.pub`'s format); `from` names where it came from.
pub fn parse_public_key(pem: &str, from: &str) -> Result<VerifyingKey> {
    VerifyingKey::from_public_key_pem(pem.trim()).map_err(|_| {
        anyhow::anyhow!(
            "{from} is not a PEM P-256 public key (\"-----BEGIN PUBLIC KEY-----\", as cosign.pub): \
             use the .pub file cargo xtask gate keygen wrote"
        )
    })
}

/// The public key in the file `path` (named by `flag`), else in the
/// environment variable `var` (PEM text), else none.
pub fn load_public_key(path: Option<&Path>, flag: &str, var: &str) -> Result<Option<VerifyingKey>> {
    if let Some(path) = path {
        let pem = std::fs::read_to_string(path)
            .with_context(|| format!("reading {flag} {}", path.display()))?;
        return parse_public_key(&pem, &format!("{flag} {}", path.display())).map(Some);
    }
    match std::env::var(var).ok().filter(|v| !v.trim().is_empty()) {
        Some(pem) => parse_public_key(&pem, var).map(Some),
        None => Ok(None),
    }
}

/// Where `release` and `verify` take the key signed gates must verify with.
#[derive(Debug, Clone, clap::Args)]
pub struct PublicKeyOptions {
    /// The public key (PEM) gate attestations must be signed with; or GATE_PUBLIC_KEY (the PEM text).
    /// With neither, release trusts the gate store as before.
    #[arg(long, value_name = "FILE")]
    pub public_key: Option<PathBuf>,
}

impl PublicKeyOptions {
    pub fn load(&self) -> Result<Option<VerifyingKey>> {
        load_public_key(self.public_key.as_deref(), "--public-key", PUBLIC_KEY_VAR)
    }
}

/// Signs `statement` into a DSSE envelope (JSON bytes).
pub fn sign(statement: &Statement, key: &SigningKey) -> Result<Vec<u8>> {
    let payload = serde_json::to_vec(statement)?;
    let signature: Signature = key.sign(&pae(PAYLOAD_TYPE, &payload));
    let envelope = Envelope {
        payload_type: PAYLOAD_TYPE.to_owned(),
        payload: BASE64.encode(&payload),
        signatures: vec![EnvelopeSignature {
            keyid: String::new(),
            sig: BASE64.encode(signature.to_der().as_bytes()),
        }],
    };
    Ok(serde_json::to_vec(&envelope)?)
}

/// The statement inside `envelope` when one of its signatures verifies with `key`.
pub fn verify(envelope: &[u8], key: &VerifyingKey) -> Result<Statement> {
    let envelope: Envelope =
        serde_json::from_slice(envelope).context("the attestation is not a DSSE envelope")?;
    if envelope.payload_type != PAYLOAD_TYPE {
        bail!(
            "the envelope's payloadType is {:?}, not {PAYLOAD_TYPE}",
            envelope.payload_type
        );
    }
    let payload = BASE64
        .decode(&envelope.payload)
        .context("the envelope's payload is not base64")?;
    let signed = pae(&envelope.payload_type, &payload);
    let verified = envelope.signatures.iter().any(|s| {
        BASE64
            .decode(&s.sig)
            .ok()
            .and_then(|der| Signature::from_der(&der).ok())
            .is_some_and(|sig| key.verify(&signed, &sig).is_ok())
    });
    if !verified {
        bail!(
            "no signature verifies with the configured public key (another key, or altered bytes)"
        );
    }
    let statement: Statement = serde_json::from_slice(&payload)
        .context("the signed payload is not an in-toto statement")?;
    if statement.statement_type != STATEMENT_TYPE {
        bail!(
            "the signed statement's _type is {:?}, not {STATEMENT_TYPE}",
            statement.statement_type
        );
    }
    Ok(statement)
}

/// Signs the preprod suite's result for `digest` and stores it beside the image.
pub fn attest_preprod(
    registry: &Repository,
    digest: &str,
    predicate: &PreprodPredicate,
    key: &SigningKey,
) -> Result<()> {
    let statement = Statement::new(
        &registry.to_string(),
        digest,
        PREPROD_PREDICATE,
        serde_json::to_value(predicate)?,
    )?;
    let envelope = sign(&statement, key)?;
    registry.attach_attestation(digest, envelope, PREPROD_PREDICATE)
}

/// Every attestation stored for `digest`: verified statements, and why each other one failed.
pub fn read_verified(
    registry: &Repository,
    digest: &str,
    key: &VerifyingKey,
) -> Result<(Vec<Statement>, Vec<String>)> {
    let (mut good, mut bad) = (Vec::new(), Vec::new());
    for (n, envelope) in registry.attestations(digest)?.iter().enumerate() {
        match verify(envelope, key) {
            Ok(statement) if statement.is_about(digest) => good.push(statement),
            Ok(statement) => bad.push(format!(
                "attestation {}: signed, but for other bits ({}), not {digest}",
                n + 1,
                statement.subject_digests()
            )),
            Err(error) => bad.push(format!("attestation {}: {error:#}", n + 1)),
        }
    }
    Ok((good, bad))
}

/// The newest preprod suite's result signed by `key` for exactly `digest`,
/// and why each attestation that did not verify was rejected.
pub fn newest_preprod(
    registry: &Repository,
    digest: &str,
    key: &VerifyingKey,
) -> Result<(Option<PreprodPredicate>, Vec<String>)> {
    let (statements, mut rejected) = read_verified(registry, digest, key)?;
    let results = statements
        .iter()
        .filter(|s| s.predicate_type == PREPROD_PREDICATE)
        .filter_map(|s| serde_json::from_value::<PreprodPredicate>(s.predicate.clone()).ok());
    // Another suite's result signed in the same shape is not the preprod gate.
    let (preprod, other_suites): (Vec<_>, Vec<_>) =
        results.partition(|p| p.suite == crate::domain::gate_store::PREPROD_GATE);
    rejected.extend(other_suites.iter().map(|p| {
        format!(
            "a signed result for suite {:?}, not {}",
            p.suite,
            crate::domain::gate_store::PREPROD_GATE
        )
    }));
    // On equal times the later layer (appended last) wins: max_by keeps the last maximum.
    let newest = preprod.into_iter().max_by(|a, b| a.time.cmp(&b.time));
    Ok((newest, rejected))
}

/// `release`'s gate: the newest signed preprod result for exactly `digest`
/// must be a success for `commit`.
pub fn check_preprod(
    registry: &Repository,
    digest: &str,
    commit: &str,
    key: &VerifyingKey,
) -> Result<PreprodPredicate> {
    let (newest, rejected) = newest_preprod(registry, digest, key)?;
    let Some(newest) = newest else {
        let why = if rejected.is_empty() {
            String::from("none is stored")
        } else {
            format!("none verifies: {}", rejected.join("; "))
        };
        bail!(
            "no preprod-tests attestation for {registry}@{digest} signed by the configured key ({why}): \
             run cargo xtask preprod-test with GATE_SIGNING_KEY against this image before releasing it"
        );
    };
    if newest.conclusion != Conclusion::Success {
        bail!(
            "the newest signed preprod-tests result for {digest} ({}) is a failure: fix it, build a new \
             commit and test that",
            newest.time
        );
    }
    if newest.commit != commit {
        bail!(
            "the signed preprod-tests result for {digest} is for commit {}, not {commit}: the image \
             tested is not this commit's build; test this commit's image",
            newest.commit
        );
    }
    Ok(newest)
}

/// Writes `gate.key` (PKCS#8 PEM, mode 0600) and `gate.pub` into `dir`;
/// refuses to overwrite either. Returns both paths.
pub fn keygen(dir: &Path) -> Result<(PathBuf, PathBuf)> {
    let (private, public) = (dir.join("gate.key"), dir.join("gate.pub"));
    for path in [&private, &public] {
        if path.exists() {
            bail!(
                "{} exists: keygen never overwrites a key; choose another --out-dir",
                path.display()
            );
        }
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let (pem, public_pem) = key_pair()?;
    write_private(&private, pem.as_bytes())?;
    std::fs::write(&public, public_pem).with_context(|| format!("writing {}", public.display()))?;
    Ok((private, public))
}

/// A new P-256 key pair in memory, as PEM: (PKCS#8 private key, public key).
/// `setup` sends the private half straight to a GitHub secret.
pub fn key_pair() -> Result<(String, String)> {
    let key = SigningKey::random(&mut rand_core::OsRng);
    let pem = key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| anyhow::anyhow!("encoding the private key: {e}"))?;
    let public_pem = key
        .verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .map_err(|e| anyhow::anyhow!("encoding the public key: {e}"))?;
    Ok((pem.to_string(), public_pem))
}

/// Created with mode 0600 from the start: never readable by others, even briefly.
fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(bytes)
        .with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example in the DSSE protocol (secure-systems-lab/dsse, protocol.md).
    #[test]
    fn pae_matches_the_dsse_spec_example() {
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
        );
        assert_eq!(pae("", b""), b"DSSEv1 0  0 ");
    }

    #[test]
    fn an_envelope_verifies_with_its_key_only_and_not_once_altered() {
        let key = SigningKey::random(&mut rand_core::OsRng);
        let other = SigningKey::random(&mut rand_core::OsRng);
        let statement = Statement::new(
            "r/x",
            &format!("sha256:{}", "a".repeat(64)),
            PREPROD_PREDICATE,
            serde_json::json!({"commit": "c"}),
        )
        .unwrap();
        let envelope = sign(&statement, &key).unwrap();
        let verified = verify(&envelope, key.verifying_key()).unwrap();
        assert!(verified.is_about(&format!("sha256:{}", "a".repeat(64))));
        assert!(!verified.is_about(&format!("sha256:{}", "b".repeat(64))));
        assert!(verify(&envelope, other.verifying_key()).is_err());
        let mut altered: Envelope = serde_json::from_slice(&envelope).unwrap();
        let payload = BASE64.decode(&altered.payload).unwrap();
        altered.payload = BASE64.encode(
            String::from_utf8(payload)
                .unwrap()
                .replace("\"c\"", "\"d\""),
        );
        let error = verify(&serde_json::to_vec(&altered).unwrap(), key.verifying_key())
            .unwrap_err()
            .to_string();
        assert!(error.contains("no signature verifies"), "{error}");
    }
}
