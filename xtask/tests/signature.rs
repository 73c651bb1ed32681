//! Image signatures: every image pushed from main is signed as `cosign sign
//! --key` signs it (`sha256-<hex>.sig`), a retag keeps the signature (same
//! digest), pull-request images stay unsigned, and `verify` names what is
//! wrong with each forgery, attempted against a real registry on loopback.

mod support;

use std::process::Output;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use sha2::Digest;
use support::{Registry, TempDir, assert_fails, assert_ok, head, stdout, xtask};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// A registry on loopback and three key pairs: `image` (the image signing
/// key), `gate` (the gate key, for verify's attestation half), `other`.
struct Fixture {
    dir: TempDir,
    registry: Registry,
    repository: String,
    http: reqwest::blocking::Client,
}

impl Fixture {
    fn new() -> Option<Self> {
        let registry = Registry::start()?;
        let dir = TempDir::new("signature");
        for name in ["image", "gate", "other"] {
            let out = dir.path().join(name);
            assert_ok(&xtask(
                &["gate", "keygen", "--out-dir", out.to_str().unwrap()],
                &[],
            ));
        }

        Some(Self {
            dir,
            repository: registry.repository(),
            registry,
            http: xtask::plumbing::http::client(xtask::plumbing::http::TIMEOUT).unwrap(),
        })
    }

    fn key(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name).join("gate.key")).unwrap()
    }

    fn public(&self, name: &str) -> String {
        self.dir
            .path()
            .join(name)
            .join("gate.pub")
            .display()
            .to_string()
    }

    /// `image build --push` of a stand-in binary as `tag`, signed with key
    /// `signer` when given; returns the output and the digest.
    fn push(&self, content: &str, tag: &str, signer: Option<&str>) -> (Output, String) {
        let key = signer.map(|s| self.key(s));
        let envs: Vec<(&str, &str)> = key
            .iter()
            .map(|k| ("IMAGE_SIGNING_KEY", k.as_str()))
            .collect();
        let out = support::push_stand_in(self.dir.path(), &self.repository, content, tag, &envs);
        assert_ok(&out);
        assert!(
            !stdout(&out).contains("PRIVATE KEY"),
            "the signing key was printed"
        );
        (out, support::image_digest(&self.repository, tag).unwrap())
    }

    /// `verify` with the image key and the gate key.
    fn verify(&self, reference: &str) -> Output {
        let (image, gate) = (self.public("image"), self.public("gate"));
        let args = [
            "verify",
            &self.repository,
            reference,
            "--image-key",
            &image,
            "--public-key",
            &gate,
        ];
        xtask(&args, &[])
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}/v2/service-demo/{path}", self.registry.addr)
    }

    /// The `.sig` manifest of `digest`, straight from the registry's API.
    fn sig_manifest(&self, digest: &str) -> serde_json::Value {
        let url = self.url(&format!("manifests/{}", sig_tag(digest)));
        let response = self.http.get(url).header("Accept", OCI_MANIFEST).send();
        response
            .unwrap()
            .error_for_status()
            .unwrap()
            .json()
            .unwrap()
    }

    fn put_manifest(&self, tag: &str, manifest: &serde_json::Value) {
        self.http
            .put(self.url(&format!("manifests/{tag}")))
            .header("Content-Type", OCI_MANIFEST)
            .body(serde_json::to_vec(manifest).unwrap())
            .send()
            .unwrap()
            .error_for_status()
            .unwrap();
    }

    fn blob(&self, digest: &str) -> Vec<u8> {
        let response = self.http.get(self.url(&format!("blobs/{digest}"))).send();
        response
            .unwrap()
            .error_for_status()
            .unwrap()
            .bytes()
            .unwrap()
            .to_vec()
    }

    /// Uploads `bytes` as a blob (a monolithic upload); returns its digest.
    fn put_blob(&self, bytes: &[u8]) -> String {
        let digest = format!("sha256:{}", hex(&sha2::Sha256::digest(bytes)));
        let started = self.http.post(self.url("blobs/uploads/")).send().unwrap();
        let location = started.headers()["Location"].to_str().unwrap().to_owned();
        let location = if location.starts_with("http") {
            location
        } else {
            format!("http://{}{location}", self.registry.addr)
        };
        let separator = if location.contains('?') { '&' } else { '?' };
        self.http
            .put(format!("{location}{separator}digest={digest}"))
            .body(bytes.to_vec())
            .send()
            .unwrap()
            .error_for_status()
            .unwrap();
        digest
    }
}

fn sig_tag(digest: &str) -> String {
    format!("sha256-{}.sig", digest.strip_prefix("sha256:").unwrap())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Verify fails naming `why` about the signature (attestations aside).
fn assert_signature_refused(out: &Output, why: &str) {
    let error = assert_fails(out);
    assert!(error.contains(why), "expected {why:?} in: {error}");
    assert!(stdout(out).contains("✘ signature"), "{}", stdout(out));
}

#[test]
fn a_main_build_is_signed_as_cosign_signs_and_a_retag_carries_the_signature() {
    let Some(fx) = Fixture::new() else {
        return;
    };
    let tag = format!("main-{}", head());
    let (pushed, digest) = fx.push("the main build", &tag, Some("image"));
    assert!(stdout(&pushed).contains("signed "), "{}", stdout(&pushed));

    // cosign's layout: one simple-signing layer, the signature in its annotation.
    let manifest = fx.sig_manifest(&digest);
    let layer = &manifest["layers"][0];
    assert_eq!(
        layer["mediaType"],
        "application/vnd.dev.cosign.simplesigning.v1+json"
    );
    let payload = fx.blob(layer["digest"].as_str().unwrap());
    let claim: serde_json::Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(
        claim["critical"]["image"]["docker-manifest-digest"],
        digest.as_str()
    );
    assert_eq!(
        claim["critical"]["identity"]["docker-reference"],
        fx.repository.as_str()
    );
    assert_eq!(
        claim["critical"]["type"],
        "cosign container image signature"
    );
    let signature = layer["annotations"]["dev.cosignproject.cosign/signature"]
        .as_str()
        .unwrap();
    // Standard ECDSA P-256 / SHA-256 over the payload bytes: OpenSSL agrees.
    if support::require(support::on_path("openssl"), "openssl").is_some() {
        let der = BASE64.decode(signature).unwrap();
        let openssl = |key: &str| support::openssl_verifies(fx.dir.path(), key, &der, &payload);
        assert!(
            openssl(&fx.public("image")),
            "openssl rejects the signature"
        );
        assert!(!openssl(&fx.public("other")), "another key must not verify");
    }

    // A retag without the key: same digest, so the signature covers v1.0.0.
    assert_ok(&xtask(
        &[
            "image",
            "retag",
            &tag,
            "v1.0.0",
            "--repository",
            &fx.repository,
        ],
        &[],
    ));
    let verified = fx.verify("v1.0.0");
    assert!(
        stdout(&verified).contains("✔ signature: signed by the key"),
        "{}",
        stdout(&verified)
    );
    // The attestation half is what is missing, and verify names it.
    let error = assert_fails(&verified);
    assert!(
        error
            .contains("no https://service-demo.dev/preprod-tests/v1 result signed by the gate key"),
        "{error}"
    );
    assert!(
        !error.contains("unsigned") && !error.contains("another key"),
        "{error}"
    );
    // A retag with the key signs nothing twice (deterministic ECDSA, same layer).
    let key = fx.key("image");
    assert_ok(&xtask(
        &[
            "image",
            "retag",
            &tag,
            "v1.0.1",
            "--repository",
            &fx.repository,
        ],
        &[("IMAGE_SIGNING_KEY", &key)],
    ));
    assert_eq!(
        fx.sig_manifest(&digest)["layers"].as_array().unwrap().len(),
        1
    );
}

#[test]
fn a_pull_request_build_is_never_signed_and_verify_says_unsigned() {
    let Some(fx) = Fixture::new() else {
        return;
    };
    let tag = format!("pr-1-{}", head());
    let (pushed, _) = fx.push("a pull request's build", &tag, Some("image"));
    assert!(
        stdout(&pushed).contains("not signed: pull-request images (pr-*) are never signed"),
        "{}",
        stdout(&pushed)
    );
    assert_signature_refused(&fx.verify(&tag), "unsigned");
    // Signing it by hand is refused too, and so is signing without a key.
    let key = fx.key("image");
    let sign = ["image", "sign", &tag, "--repository", &fx.repository];
    let error = assert_fails(&xtask(&sign, &[("IMAGE_SIGNING_KEY", &key)]));
    assert!(error.contains("never signed"), "{error}");
    let main = format!("main-{}", head());
    fx.push("a main build", &main, None);
    let sign = ["image", "sign", &main, "--repository", &fx.repository];
    let error = assert_fails(&xtask(&sign, &[]));
    assert!(error.contains("IMAGE_SIGNING_KEY"), "{error}");
    assert_signature_refused(&fx.verify(&main), "unsigned");
}

#[test]
fn a_signature_by_another_key_is_refused() {
    let Some(fx) = Fixture::new() else {
        return;
    };
    let tag = format!("main-{}", head());
    fx.push("signed by someone else", &tag, Some("other"));
    assert_signature_refused(&fx.verify(&tag), "signed by another key");
}

#[test]
fn a_signature_copied_from_another_digest_is_refused() {
    let Some(fx) = Fixture::new() else {
        return;
    };
    let tag = format!("main-{}", head());
    let (_, unsigned) = fx.push("unsigned bits", &tag, None);
    // Other bits, signed by the real key (as a by-digest `image sign`).
    let (_, other) = fx.push("other bits", &format!("pr-2-{}", head()), None);
    let key = fx.key("image");
    let sign = ["image", "sign", &other, "--repository", &fx.repository];
    assert_ok(&xtask(&sign, &[("IMAGE_SIGNING_KEY", &key)]));
    // Their .sig manifest, put under this image's .sig tag by anyone with push rights.
    fx.put_manifest(&sig_tag(&unsigned), &fx.sig_manifest(&other));
    assert_signature_refused(&fx.verify(&tag), "signature for other bits");
}

#[test]
fn a_tampered_payload_is_refused() {
    let Some(fx) = Fixture::new() else {
        return;
    };
    let (_, signed) = fx.push("signed bits", &format!("main-{}", head()), Some("image"));
    let pr = format!("pr-3-{}", head());
    let (_, other) = fx.push("the attacker's bits", &pr, None);
    // The signed payload rewritten to name the other bits, the signature kept.
    let mut manifest = fx.sig_manifest(&signed);
    let layer = &mut manifest["layers"][0];
    let payload = String::from_utf8(fx.blob(layer["digest"].as_str().unwrap())).unwrap();
    let forged = payload.replace(&signed, &other);
    assert_ne!(forged, payload, "the edit changed nothing");
    layer["digest"] = fx.put_blob(forged.as_bytes()).into();
    layer["size"] = forged.len().into();
    fx.put_manifest(&sig_tag(&other), &manifest);
    assert_signature_refused(&fx.verify(&pr), "its signed payload was altered");
}
