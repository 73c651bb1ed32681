//! Signed gates: `release` with a public key configured accepts only an
//! attestation signed by that key, on exactly the digest it retags, a success,
//! for the released commit. Each forgery is attempted against a real registry
//! on loopback or an OCI layout, and shown refused with nothing changed.

mod support;

use std::path::{Path, PathBuf};
use std::process::Output;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use sha2::Digest;
use support::{Registry, TempDir, assert_fails, assert_ok, git, head, stdout, xtask, xtask_in};

/// A service repository with GitOps files and a bare remote, an image
/// repository (registry or layout) holding `main-<sha>` for the newest commit,
/// and three key pairs: the CD key (`ci`), another (`other`) and the image
/// signing key (`image`), which signs `main-<sha>` as CD's build does.
struct Fixture {
    dir: TempDir,
    remote: PathBuf,
    work: PathBuf,
    registry: Option<Registry>,
    repository: String,
    commits: Vec<String>,
    digest: String,
}

impl Fixture {
    fn with_registry() -> Option<Self> {
        Some(Self::new(Some(Registry::start()?)))
    }

    fn with_layout() -> Self {
        Self::new(None)
    }

    /// Images go to `registry`, or to an OCI layout in the fixture's temp dir.
    fn new(registry: Option<Registry>) -> Self {
        let dir = TempDir::new("attestation");
        let (remote, work) = support::remote_and_clone(dir.path());
        support::write_environments(&work);
        git(&work, &["add", "."]);
        git(&work, &["commit", "--quiet", "-m", "feat: first"]);
        std::fs::write(work.join("service.txt"), "two").unwrap();
        git(&work, &["add", "."]);
        git(&work, &["commit", "--quiet", "-m", "feat: second"]);
        git(&work, &["push", "--quiet", "origin", "main"]);
        let repository = match &registry {
            Some(registry) => registry.repository(),
            None => format!("oci:{}", dir.path().join("layout").display()),
        };
        let commits = git(&work, &["rev-list", "--reverse", "HEAD"])
            .lines()
            .map(str::to_owned)
            .collect();
        for name in ["ci", "other", "image"] {
            let out = dir.path().join(name);
            let keygen = xtask(&["gate", "keygen", "--out-dir", out.to_str().unwrap()], &[]);
            assert_ok(&keygen);
            assert!(
                !stdout(&keygen).contains("PRIVATE KEY"),
                "keygen printed the key"
            );
        }
        let mut fixture = Self {
            dir,
            remote,
            work,
            registry,
            repository,
            commits,
            digest: String::new(),
        };
        let built = fixture.push_build("the tested build");
        let main_tag = format!("main-{}", fixture.sha());
        fixture.retag(&built, &main_tag);
        fixture.digest = fixture.digest_of(&main_tag).unwrap();
        fixture
    }

    /// Push a build as `pr-<N>-<workspace HEAD>`; returns the tag.
    fn push_build(&self, content: &str) -> String {
        let tag = format!("pr-{}-{}", fastrand::u32(1..), head());
        let dir = self.dir.path();
        assert_ok(&support::push_stand_in(
            dir,
            &self.repository,
            content,
            &tag,
            &[],
        ));
        tag
    }

    /// `image retag`, signing the image with the image key.
    fn retag(&self, from: &str, to: &str) {
        let retag = ["image", "retag", from, to, "--repository", &self.repository];
        let key = self.key("image");
        assert_ok(&xtask(&retag, &[("IMAGE_SIGNING_KEY", &key)]));
    }

    fn sha(&self) -> &str {
        self.commits.last().unwrap()
    }

    fn digest_of(&self, tag: &str) -> Option<String> {
        support::image_digest(&self.repository, tag)
    }

    fn key(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name).join("gate.key")).unwrap()
    }

    fn public_key(&self) -> String {
        self.dir.path().join("ci/gate.pub").display().to_string()
    }

    /// `verify <reference>` with the image key and gate key `gate_key`.
    fn verify(&self, reference: &str, gate_key: &str) -> Output {
        let image_key = self.dir.path().join("image/gate.pub");
        let args = [
            "verify",
            &self.repository,
            reference,
            "--image-key",
            image_key.to_str().unwrap(),
            "--public-key",
            gate_key,
        ];
        xtask(&args, &[])
    }

    /// `gate record` for `sha` and `digest`, signed with key `signer`.
    fn sign(&self, signer: &str, sha: &str, digest: &str, conclusion: &str) {
        let record = [
            "gate",
            "record",
            "--sha",
            sha,
            "--name",
            "preprod-tests",
            "--conclusion",
            conclusion,
            "--digest",
            digest,
            "--repository",
            &self.repository,
        ];
        let key = self.key(signer);
        let out = xtask_in(&self.work, &record, &[("GATE_SIGNING_KEY", &key)]);
        assert_ok(&out);
        let printed = format!("{}{}", stdout(&out), support::stderr(&out));
        assert!(
            printed.contains("signed the preprod-tests result"),
            "{printed}"
        );
        assert!(
            !printed.contains("PRIVATE KEY"),
            "the signing key was printed"
        );
    }

    /// `release 1.0.0` of the newest commit with the CD public key.
    fn release(&self) -> Output {
        let release = [
            "release",
            "--version",
            "1.0.0",
            "--sha",
            self.sha(),
            "--public-key",
            &self.public_key(),
        ];
        xtask_in(
            &self.work,
            &release,
            &[("IMAGE_REPOSITORY", &self.repository)],
        )
    }

    /// Everything a release could change.
    fn state(&self) -> String {
        let refs = git(
            &self.remote,
            &["for-each-ref", "--format=%(refname) %(objectname)"],
        );
        format!("{refs}\n{:?}", self.digest_of("v1.0.0"))
    }

    /// Release is refused with a message containing `why`, and nothing changed.
    fn assert_release_refused(&self, why: &str) {
        let before = self.state();
        let error = assert_fails(&self.release());
        assert!(error.contains(why), "expected {why:?} in: {error}");
        assert_eq!(self.state(), before, "a refused release changed something");
        assert_eq!(self.digest_of("v1.0.0"), None);
    }

    fn layout_dir(&self) -> PathBuf {
        PathBuf::from(self.repository.strip_prefix("oci:").unwrap())
    }
}

fn hex_of(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap()
}

#[test]
fn a_valid_attestation_lets_release_ship_exactly_that_digest_and_verify_shows_it() {
    let Some(fx) = Fixture::with_registry() else {
        return;
    };
    // Nothing signed yet: refused, though no gate store was asked.
    fx.assert_release_refused("none is stored");
    fx.sign("ci", fx.sha(), &fx.digest, "success");

    let release = fx.release();
    assert_ok(&release);
    assert!(
        stdout(&release).contains("signed attestation"),
        "{}",
        stdout(&release)
    );
    assert_eq!(fx.digest_of("v1.0.0").as_ref(), Some(&fx.digest));
    let prod = git(
        &fx.remote,
        &["show", "main:gitops/values/prod/service-demo.yaml"],
    );
    assert!(
        prod.contains(&format!("digest: \"{}\"", fx.digest)),
        "{prod}"
    );

    // Release retagged by digest: main-<sha>'s signature covers v1.0.0.
    let verified = fx.verify("v1.0.0", &fx.public_key());
    assert_ok(&verified);
    let printed = stdout(&verified);
    assert!(
        printed.contains("✔ signature: signed by the key")
            && printed.contains("https://service-demo.dev/preprod-tests/v1")
            && printed.contains(&format!("commit {}", fx.sha()))
            && printed.contains("conclusion success"),
        "{printed}"
    );
    let other = fx.dir.path().join("other/gate.pub");
    let error = assert_fails(&fx.verify("v1.0.0", other.to_str().unwrap()));
    assert!(error.contains("failed verification"), "{error}");
}

#[test]
fn an_attestation_signed_by_another_key_is_refused() {
    let Some(fx) = Fixture::with_registry() else {
        return;
    };
    // The unsigned gate store says success too: it is not the authority.
    fx.sign("other", fx.sha(), &fx.digest, "success");
    fx.assert_release_refused("no signature verifies with the configured public key");
}

#[test]
fn an_attestation_for_other_bits_is_refused() {
    let Some(fx) = Fixture::with_registry() else {
        return;
    };
    // A valid signature on another image, moved under this image's .att tag.
    let other_bits = fx.push_build("other bits");
    let other_digest = fx.digest_of(&other_bits).unwrap();
    fx.sign("ci", fx.sha(), &other_digest, "success");
    // Straight through the registry's API, as anyone with push rights could.
    let manifests = format!(
        "http://{}/v2/service-demo/manifests",
        fx.registry.as_ref().unwrap().addr
    );
    let media_type = "application/vnd.oci.image.manifest.v1+json";
    let client = xtask::plumbing::http::client(xtask::plumbing::http::TIMEOUT).unwrap();
    let stolen = client
        .get(format!("{manifests}/sha256-{}.att", hex_of(&other_digest)))
        .header("Accept", media_type)
        .send()
        .unwrap()
        .error_for_status()
        .unwrap()
        .bytes()
        .unwrap();
    client
        .put(format!("{manifests}/sha256-{}.att", hex_of(&fx.digest)))
        .header("Content-Type", media_type)
        .body(stolen)
        .send()
        .unwrap()
        .error_for_status()
        .unwrap();
    fx.assert_release_refused("signed, but for other bits");
}

#[test]
fn a_failure_conclusion_is_refused() {
    let Some(fx) = Fixture::with_registry() else {
        return;
    };
    fx.sign("ci", fx.sha(), &fx.digest, "failure");
    fx.assert_release_refused("is a failure");
}

#[test]
fn an_attestation_for_another_commit_is_refused() {
    let Some(fx) = Fixture::with_registry() else {
        return;
    };
    // These bits, signed as the older commit's test result.
    fx.sign("ci", &fx.commits[0], &fx.digest, "success");
    fx.assert_release_refused(&format!("is for commit {}", fx.commits[0]));
}

/// Issue 29, item 6: verify vouches only for a digest whose newest signed
/// preprod-tests result passed, not for any attestation the gate key signed.
#[test]
fn verify_says_no_to_a_signed_failure_and_yes_only_once_a_signed_pass_is_newest() {
    let fx = Fixture::with_layout();
    let error = assert_fails(&fx.verify(&fx.digest, &fx.public_key()));
    assert!(
        error
            .contains("no https://service-demo.dev/preprod-tests/v1 result signed by the gate key"),
        "{error}"
    );
    fx.sign("ci", fx.sha(), &fx.digest, "failure");
    let out = fx.verify(&fx.digest, &fx.public_key());
    let error = assert_fails(&out);
    assert!(
        stdout(&out).contains("conclusion failure") && error.contains("is not a success"),
        "{error}"
    );
    // A pass signed later is the newest result: now it verifies.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    fx.sign("ci", fx.sha(), &fx.digest, "success");
    let out = fx.verify(&fx.digest, &fx.public_key());
    assert_ok(&out);
    assert!(
        stdout(&out).contains("✔ gate: the newest signed preprod-tests result"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn a_tampered_payload_in_an_oci_layout_is_refused() {
    let fx = Fixture::with_layout();
    fx.sign("ci", fx.sha(), &fx.digest, "failure");
    fx.assert_release_refused("is a failure");
    // Turn the signed failure into a success by editing the layout's files.
    tamper(&fx.layout_dir(), &fx.digest, |statement| {
        statement.replace("\"failure\"", "\"success\"")
    });
    fx.assert_release_refused("no signature verifies with the configured public key");
    let error = assert_fails(&fx.verify(&fx.digest, &fx.public_key()));
    assert!(error.contains("failed verification"), "{error}");
}

/// The gate is the preprod suite's: a passing result of another suite, in
/// the same predicate type and signed by the CD key, does not open it.
#[test]
fn a_signed_success_of_another_suite_is_refused() {
    let fx = Fixture::with_layout();
    fx.sign("ci", fx.sha(), &fx.digest, "success");
    let key = fx.key("ci");
    let edit = |s: String| s.replace("\"suite\":\"preprod-tests\"", "\"suite\":\"smoke\"");
    rewrite(&fx.layout_dir(), &fx.digest, edit, Some(&key));
    fx.assert_release_refused("a signed result for suite \"smoke\", not preprod-tests");
}

#[test]
fn a_valid_attestation_in_an_oci_layout_lets_release_proceed() {
    let fx = Fixture::with_layout();
    fx.sign("ci", fx.sha(), &fx.digest, "success");
    let index = std::fs::read_to_string(fx.layout_dir().join("index.json")).unwrap();
    assert!(
        index.contains(&format!("sha256-{}.att", hex_of(&fx.digest))),
        "{index}"
    );
    assert_ok(&fx.release());
    assert_eq!(fx.digest_of("v1.0.0").as_ref(), Some(&fx.digest));
}

/// The envelope is standard DSSE, not only self-consistent: OpenSSL verifies
/// its DER ECDSA signature over the PAE bytes with the PKIX public key.
#[test]
fn openssl_verifies_the_stored_envelope_with_the_public_key() {
    let Some(()) = support::require(support::on_path("openssl"), "openssl") else {
        return;
    };
    let fx = Fixture::with_layout();
    fx.sign("ci", fx.sha(), &fx.digest, "success");
    let envelope = read_envelope(&fx.layout_dir(), &fx.digest);
    let payload_type = envelope["payloadType"].as_str().unwrap();
    assert_eq!(payload_type, "application/vnd.in-toto+json");
    let payload = BASE64
        .decode(envelope["payload"].as_str().unwrap())
        .unwrap();
    let mut pae = format!(
        "DSSEv1 {} {payload_type} {} ",
        payload_type.len(),
        payload.len()
    )
    .into_bytes();
    pae.extend_from_slice(&payload);
    let sig = BASE64
        .decode(envelope["signatures"][0]["sig"].as_str().unwrap())
        .unwrap();
    let openssl = |key: &str| support::openssl_verifies(fx.dir.path(), key, &sig, &pae);
    assert!(openssl(&fx.public_key()), "openssl rejects the envelope");
    let other = fx.dir.path().join("other/gate.pub");
    assert!(
        !openssl(other.to_str().unwrap()),
        "another key must not verify"
    );
}

/// The first envelope stored for `digest` in an OCI layout.
fn read_envelope(layout: &Path, digest: &str) -> serde_json::Value {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let tag = format!("sha256-{}.att", hex_of(digest));
    let manifest = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["annotations"]["org.opencontainers.image.ref.name"] == tag.as_str())
        .expect("the .att tag is in the layout")["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    let blob = |d: &str| std::fs::read(layout.join("blobs/sha256").join(hex_of(d))).unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(&blob(&manifest)).unwrap();
    assert_eq!(
        manifest["layers"][0]["mediaType"],
        "application/vnd.dsse.envelope.v1+json"
    );
    serde_json::from_slice(&blob(manifest["layers"][0]["digest"].as_str().unwrap())).unwrap()
}

#[test]
fn a_signing_key_without_a_repository_fails_before_anything_runs_and_is_never_printed() {
    let fx = Fixture::with_layout();
    let key = fx.key("ci");
    let args = [
        "preprod-test",
        "--url",
        "http://127.0.0.1:9",
        "--sha",
        fx.sha(),
        "--digest",
        &fx.digest,
    ];
    let before = fx.state();
    let out = xtask_in(&fx.work, &args, &[("GATE_SIGNING_KEY", &key)]);
    let error = assert_fails(&out);
    assert!(
        error.contains("--repository or IMAGE_REPOSITORY"),
        "{error}"
    );
    assert!(
        !stdout(&out).contains("✘"),
        "the suite ran: {}",
        stdout(&out)
    );
    assert_eq!(fx.state(), before, "nothing recorded");
    // A malformed key is refused without quoting it.
    let bad =
        "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWtleS1tYXRlcmlhbA==\n-----END PRIVATE KEY-----";
    let out = xtask_in(&fx.work, &args, &[("GATE_SIGNING_KEY", bad)]);
    let error = assert_fails(&out);
    assert!(error.contains("gate keygen"), "{error}");
    assert!(
        !error.contains("c2VjcmV0") && !stdout(&out).contains("c2VjcmV0"),
        "{error}"
    );
}

#[test]
fn without_a_public_key_release_keeps_the_gate_store_and_says_so() {
    let fx = Fixture::with_layout();
    // The gate store records a success (an attestation by another key rides along, unread).
    fx.sign("other", fx.sha(), &fx.digest, "success");
    let release = ["release", "--version", "1.0.0", "--sha", fx.sha()];
    let out = xtask_in(&fx.work, &release, &[("IMAGE_REPOSITORY", &fx.repository)]);
    assert_ok(&out);
    assert!(
        stdout(&out)
            .contains("no GATE_PUBLIC_KEY or --public-key: the unsigned gate store decides"),
        "{}",
        stdout(&out)
    );
    assert_eq!(fx.digest_of("v1.0.0").as_ref(), Some(&fx.digest));
}

#[test]
fn keygen_writes_a_private_key_only_its_owner_reads_and_never_overwrites() {
    let dir = TempDir::new("keygen");
    let out = dir.path().join("keys");
    assert_ok(&xtask(
        &["gate", "keygen", "--out-dir", out.to_str().unwrap()],
        &[],
    ));
    let private = std::fs::read_to_string(out.join("gate.key")).unwrap();
    assert!(
        private.starts_with("-----BEGIN PRIVATE KEY-----"),
        "PKCS#8 PEM"
    );
    let public = std::fs::read_to_string(out.join("gate.pub")).unwrap();
    assert!(
        public.starts_with("-----BEGIN PUBLIC KEY-----"),
        "PKIX PEM, as cosign.pub"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(out.join("gate.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let again = assert_fails(&xtask(
        &["gate", "keygen", "--out-dir", out.to_str().unwrap()],
        &[],
    ));
    assert!(again.contains("never overwrites"), "{again}");
    assert_eq!(
        std::fs::read_to_string(out.join("gate.key")).unwrap(),
        private
    );
}

/// Rewrites the statement inside the first envelope of `digest`'s `.att`
/// manifest, keeping the signature: new blobs, the index pointed at them.
fn tamper(layout: &Path, digest: &str, edit: impl Fn(String) -> String) {
    rewrite(layout, digest, edit, None);
}

/// [`tamper`], then signs the edited statement again with `key` (PKCS#8
/// PEM), as whoever holds the key could.
fn rewrite(layout: &Path, digest: &str, edit: impl Fn(String) -> String, key: Option<&str>) {
    let index_path = layout.join("index.json");
    let mut index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&index_path).unwrap()).unwrap();
    let tag = format!("sha256-{}.att", hex_of(digest));
    let entry = index["manifests"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|e| e["annotations"]["org.opencontainers.image.ref.name"] == tag.as_str())
        .expect("the .att tag is in the layout");
    let blob = |d: &str| layout.join("blobs/sha256").join(hex_of(d));
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(blob(entry["digest"].as_str().unwrap())).unwrap())
            .unwrap();
    let layer = &mut manifest["layers"][0];
    let mut envelope: serde_json::Value =
        serde_json::from_slice(&std::fs::read(blob(layer["digest"].as_str().unwrap())).unwrap())
            .unwrap();
    let payload = BASE64
        .decode(envelope["payload"].as_str().unwrap())
        .unwrap();
    let edited = edit(String::from_utf8(payload.clone()).unwrap());
    assert_ne!(edited.as_bytes(), payload, "the edit changed nothing");
    if let Some(pem) = key {
        use p256::ecdsa::signature::Signer;
        use p256::pkcs8::DecodePrivateKey;
        let key = p256::ecdsa::SigningKey::from_pkcs8_pem(pem).unwrap();
        let payload_type = envelope["payloadType"].as_str().unwrap().to_owned();
        let mut pae = format!(
            "DSSEv1 {} {payload_type} {} ",
            payload_type.len(),
            edited.len()
        )
        .into_bytes();
        pae.extend_from_slice(edited.as_bytes());
        let signature: p256::ecdsa::Signature = key.sign(&pae);
        envelope["signatures"][0]["sig"] = BASE64.encode(signature.to_der().as_bytes()).into();
    }
    envelope["payload"] = BASE64.encode(edited).into();
    let write = |bytes: Vec<u8>| {
        let digest = format!("sha256:{}", hex(&sha2::Sha256::digest(&bytes)));
        std::fs::write(blob(&digest), &bytes).unwrap();
        (digest, bytes.len())
    };
    let (envelope_digest, envelope_size) = write(serde_json::to_vec(&envelope).unwrap());
    layer["digest"] = envelope_digest.into();
    layer["size"] = envelope_size.into();
    let (manifest_digest, manifest_size) = write(serde_json::to_vec(&manifest).unwrap());
    entry["digest"] = manifest_digest.into();
    entry["size"] = manifest_size.into();
    std::fs::write(&index_path, serde_json::to_vec_pretty(&index).unwrap()).unwrap();
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn status_shows_each_environments_signature_and_gate_attestation() {
    let Some(fx) = Fixture::with_registry() else {
        return;
    };
    fx.sign("ci", fx.sha(), &fx.digest, "success");
    assert_ok(&fx.release());
    let status = |keys: &[&str]| {
        let mut args = vec!["status", "--repository", &fx.repository];
        args.extend_from_slice(keys);
        let out = xtask_in(&fx.work, &args, &[]);
        assert_ok(&out);
        stdout(&out)
    };
    let (image, gate) = (fx.dir.path().join("image/gate.pub"), fx.public_key());
    let image = image.to_str().unwrap();
    let printed = status(&["--image-key", image, "--public-key", &gate]);
    let line = |env: &str| {
        printed
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{env} ")) && l.contains("signature:"))
            .unwrap_or_else(|| panic!("no trust line for {env}: {printed}"))
            .to_owned()
    };
    for env in ["prod", "dev"] {
        let expected = format!(
            "signature: ✔ signed; gate attestation: ✔ preprod-tests passed (commit {}",
            &fx.sha()[..7]
        );
        assert!(
            line(env).contains(&expected),
            "{expected:?} in {}",
            line(env)
        );
    }
    // preprod still runs v0.1.0, which this registry never held.
    assert!(
        line("preprod").contains("✘ not in the registry"),
        "{}",
        line("preprod")
    );

    // Another image key: the same image is not signed by it.
    let other = fx.dir.path().join("other/gate.pub");
    let printed = status(&[
        "--image-key",
        other.to_str().unwrap(),
        "--public-key",
        &gate,
    ]);
    assert!(
        printed.contains("signature: ✘ signed by another key"),
        "{printed}"
    );
    // No keys: said, not guessed.
    let printed = status(&[]);
    assert!(
        printed.contains("signature: not checked: no public key")
            && printed.contains("gate attestation: not checked: no public key"),
        "{printed}"
    );
    let out = xtask_in(&fx.work, &["status"], &[]);
    assert!(
        stdout(&out).contains("not checked: no image repository"),
        "{}",
        stdout(&out)
    );
}

/// With the gate key configured, `promote --env prod` takes only a release
/// whose digest carries a passing preprod gate signed by it; prod never runs
/// a main-<sha> build at all. Each refusal changes nothing.
#[test]
fn promote_prod_needs_a_release_whose_digest_carries_a_signed_gate() {
    let Some(fx) = Fixture::with_registry() else {
        return;
    };
    // v2.0.0: the tested bits under a release tag, on the released commit.
    git(&fx.work, &["tag", "v2.0.0", fx.sha()]);
    fx.retag(&format!("main-{}", fx.sha()), "v2.0.0");
    let promote = |tag: &str, key: &str| {
        let args = [
            "promote",
            "--env",
            "prod",
            "--tag",
            tag,
            "--public-key",
            key,
        ];
        xtask_in(&fx.work, &args, &[("IMAGE_REPOSITORY", &fx.repository)])
    };
    let refused = |tag: &str, key: &str, why: &str| {
        let before = fx.state();
        let error = assert_fails(&promote(tag, key));
        assert!(error.contains(why), "expected {why:?} in: {error}");
        assert_eq!(fx.state(), before, "a refused promotion changed something");
    };
    let main = format!("main-{}", fx.sha());
    refused(
        &main,
        &fx.public_key(),
        "prod runs only releases (v<X.Y.Z>)",
    );
    refused("v2.0.0", &fx.public_key(), "none is stored");
    fx.sign("other", fx.sha(), &fx.digest, "success");
    refused("v2.0.0", &fx.public_key(), "no signature verifies");
    // The CD key's failure first, then its success: the newest decides.
    fx.sign("ci", fx.sha(), &fx.digest, "failure");
    refused("v2.0.0", &fx.public_key(), "is a failure");
    fx.sign("ci", fx.sha(), &fx.digest, "success");

    assert_ok(&promote("v2.0.0", &fx.public_key()));
    let prod = git(
        &fx.remote,
        &["show", "main:gitops/values/prod/service-demo.yaml"],
    );
    assert!(
        prod.contains("tag: v2.0.0") && prod.contains(&format!("digest: \"{}\"", fx.digest)),
        "prod is pinned to the gated digest: {prod}"
    );
}

/// Issue 29, item 4: main-<sha> moved in the registry to other bits (an
/// attacker's push; labels are theirs to choose) is neither vouched for by
/// `scan --attest` nor promoted: both check the image key's signature on the
/// digest first, before anything is signed or written.
#[test]
fn a_moved_main_tag_is_neither_attested_nor_promoted() {
    let fx = Fixture::with_layout();
    let main = format!("main-{}", fx.sha());
    let image_key = fx.dir.path().join("image/gate.pub");
    let image_key = image_key.to_str().unwrap();
    // The tag signed by the image job: promote checks and accepts it.
    let promote = |envs: &[(&str, &str)]| {
        let args = [
            "promote",
            "--env",
            "preprod",
            "--tag",
            &main,
            "--image-key",
            image_key,
        ];
        let mut all = vec![("IMAGE_REPOSITORY", fx.repository.as_str())];
        all.extend_from_slice(envs);
        xtask_in(&fx.work, &args, &all)
    };
    let out = promote(&[]);
    assert_ok(&out);
    assert!(
        stdout(&out).contains("signed by the image key"),
        "{}",
        stdout(&out)
    );
    // The attacker's push moves main-<sha> to unsigned bits.
    // Outside xtask (which never moves a tag): the layout's index names main-<sha> at the other manifest.
    let attackers = fx.push_build("the attacker's build");
    move_tag(&fx.layout_dir(), &attackers, &main);
    let moved = fx.digest_of(&main).unwrap();
    assert_ne!(moved, fx.digest);
    let before = fx.state();
    let error = assert_fails(&promote(&[]));
    assert!(
        error.contains(&format!(
            "promote refused {}@{moved}: unsigned",
            fx.repository
        )),
        "{error}"
    );
    assert_eq!(fx.state(), before, "a refused promotion changed something");
    // scan --attest refuses before it reads the advisory database or signs anything.
    let scan = [
        "scan",
        &fx.repository,
        &main,
        "--attest",
        "--image-key",
        image_key,
    ];
    let out = xtask_in(&fx.work, &scan, &[("GATE_SIGNING_KEY", &fx.key("ci"))]);
    let error = assert_fails(&out);
    assert!(error.contains("scan --attest refused"), "{error}");
    let verify = fx.verify(&moved, &fx.public_key());
    assert!(!stdout(&verify).contains("cyclonedx"), "an SBOM was signed");
    // Without the image key: refused outright.
    let out = xtask_in(&fx.work, &scan[..4], &[("GATE_SIGNING_KEY", &fx.key("ci"))]);
    assert!(assert_fails(&out).contains("--attest vouches only for an image the pipeline signed"));
    // Inside Actions, promote to preprod without the image key is refused.
    let args = ["promote", "--env", "preprod", "--tag", &main];
    let out = xtask_in(
        &fx.work,
        &args,
        &[
            ("IMAGE_REPOSITORY", fx.repository.as_str()),
            ("GITHUB_ACTIONS", "true"),
        ],
    );
    assert!(assert_fails(&out).contains("checks the image's signature first"));
    assert_eq!(fx.state(), before);
}

/// Issue 29, items 4 and 5 (cd.yml's image, sign and preprod jobs): the image job
/// writes the digest it pushed (`--digest-file`); the sign job signs exactly that
/// digest (`image sign @FILE`) and the preprod job scans exactly it, whatever the
/// tag names by then.
#[test]
fn the_digest_the_image_job_wrote_is_what_is_signed_and_scanned_not_the_tag() {
    let fx = Fixture::with_layout();
    let tag = format!("main-{}", head());
    let binary = fx.dir.path().join("bin-job");
    std::fs::write(&binary, "the image job's build").unwrap();
    let file = fx.dir.path().join("digest.txt");
    let build = [
        "image",
        "build",
        "--binary",
        binary.to_str().unwrap(),
        "--tag",
        &tag,
        "--push",
        &fx.repository,
        "--digest-file",
        file.to_str().unwrap(),
    ];
    assert_ok(&xtask(&build, &[]));
    let pushed = std::fs::read_to_string(&file).unwrap().trim().to_owned();
    assert_eq!(Some(&pushed), fx.digest_of(&tag).as_ref());
    // Between the jobs, the tag is moved to other bits.
    let attackers = fx.push_build("the attacker's build");
    move_tag(&fx.layout_dir(), &attackers, &tag);
    let moved = fx.digest_of(&tag).unwrap();
    assert_ne!(moved, pushed);
    let at_file = format!("@{}", file.display());
    let sign = ["image", "sign", &at_file, "--repository", &fx.repository];
    assert_ok(&xtask(&sign, &[("IMAGE_SIGNING_KEY", &fx.key("image"))]));
    let signed = stdout(&fx.verify(&pushed, &fx.public_key()));
    assert!(
        signed.contains("✔ signature: signed by the key"),
        "{signed}"
    );
    let unsigned = stdout(&fx.verify(&moved, &fx.public_key()));
    assert!(unsigned.contains("✘ signature: unsigned"), "{unsigned}");
    // scan --attest @FILE: the signature check passes on the job's digest (it then needs the database).
    let image_key = fx.dir.path().join("image/gate.pub");
    let scan = [
        "scan",
        &fx.repository,
        &at_file,
        "--attest",
        "--image-key",
        image_key.to_str().unwrap(),
    ];
    let out = xtask(&scan, &[("GATE_SIGNING_KEY", &fx.key("ci"))]);
    let error = assert_fails(&out);
    assert!(
        stdout(&out).contains(&format!(
            "{}@{pushed}: signed by the image key",
            fx.repository
        )),
        "{}",
        stdout(&out)
    );
    assert!(!error.contains("refused"), "{error}");
    // A file that holds no digest is bad input, named.
    std::fs::write(&file, "main-abc\n").unwrap();
    let out = xtask(&sign, &[("IMAGE_SIGNING_KEY", &fx.key("image"))]);
    assert!(assert_fails(&out).contains("malformed digest"));
}

/// Points `to` at the manifest `from` names in an OCI layout's index.json, as
/// someone with write access to the registry can.
fn move_tag(layout: &Path, from: &str, to: &str) {
    let index_file = layout.join("index.json");
    let mut index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&index_file).unwrap()).unwrap();
    let name =
        |m: &serde_json::Value| m["annotations"]["org.opencontainers.image.ref.name"].clone();
    let manifests = index["manifests"].as_array_mut().unwrap();
    let source = manifests.iter().find(|m| name(m) == from).unwrap().clone();
    let target = manifests.iter_mut().find(|m| name(m) == to).unwrap();
    target["digest"] = source["digest"].clone();
    target["size"] = source["size"].clone();
    target["mediaType"] = source["mediaType"].clone();
    std::fs::write(&index_file, serde_json::to_vec(&index).unwrap()).unwrap();
}

/// Issue 29, item 7: inside GitHub Actions, promote --env prod without the gate's
/// public key is refused (as release refuses it), before anything is written.
#[test]
fn promote_prod_inside_actions_without_a_gate_key_is_refused() {
    let fx = Fixture::with_layout();
    git(&fx.work, &["tag", "v2.0.0", fx.sha()]);
    fx.retag(&format!("main-{}", fx.sha()), "v2.0.0");
    let before = fx.state();
    let args = ["promote", "--env", "prod", "--tag", "v2.0.0"];
    let out = xtask_in(&fx.work, &args, &[("GITHUB_ACTIONS", "true")]);
    let error = assert_fails(&out);
    assert!(
        error.contains("promote --env prod inside GitHub Actions needs the gate's public key"),
        "{error}"
    );
    assert_eq!(fx.state(), before, "a refused promotion changed something");
    // With the gate key, that refusal is gone (the image key is what it asks for next).
    let with_key = [
        "promote",
        "--env",
        "prod",
        "--tag",
        "v2.0.0",
        "--public-key",
        &fx.public_key(),
    ];
    let out = xtask_in(&fx.work, &with_key, &[("GITHUB_ACTIONS", "true")]);
    let error = assert_fails(&out);
    assert!(
        !error.contains("needs the gate's public key")
            && error.contains("checks the image's signature first"),
        "{error}"
    );
    assert_eq!(fx.state(), before, "a refused promotion changed something");
    // By hand (outside Actions) the operator may still move prod's tag.
    assert_ok(&xtask_in(&fx.work, &args, &[]));
}

/// With the image key, release also requires the pipeline's signature on the
/// digest (what the cluster admits): an image signed by another key is refused.
#[test]
fn release_with_an_image_key_refuses_bits_signed_by_another_key() {
    let fx = Fixture::with_layout();
    fx.sign("ci", fx.sha(), &fx.digest, "success");
    let release = |image_key: &str| {
        let args = [
            "release",
            "--version",
            "1.0.0",
            "--sha",
            fx.sha(),
            "--public-key",
            &fx.public_key(),
            "--image-key",
            image_key,
        ];
        xtask_in(&fx.work, &args, &[("IMAGE_REPOSITORY", &fx.repository)])
    };
    let before = fx.state();
    let other = fx.dir.path().join("other/gate.pub");
    let error = assert_fails(&release(other.to_str().unwrap()));
    assert!(error.contains("is signed by another key"), "{error}");
    assert_eq!(fx.state(), before, "a refused release changed something");
    let image = fx.dir.path().join("image/gate.pub");
    let out = release(image.to_str().unwrap());
    assert_ok(&out);
    assert!(
        stdout(&out).contains("is signed by the image key"),
        "{}",
        stdout(&out)
    );
}
