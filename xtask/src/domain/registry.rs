//! Where images live: a real registry (OCI distribution API, via oci-client) or
//! an OCI image layout directory (the on-disk format skopeo, crane and oras
//! read), behind one set of operations with the same rules.
//!
//! The rules: tags are immutable (a tag that already names other bits is never
//! moved, by a push or a retag); a retag copies the manifest bytes under a new
//! tag and uploads no blob; after a retag both tags are resolved again and must
//! name the same digest. One exception, cosign's: the attestation and signature
//! tags of an image (`sha256-<hex>.att`, `sha256-<hex>.sig`) grow a layer per
//! signed result or signature; they never name an image, and what they hold is
//! trusted only through their signatures.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};
use serde::{Deserialize, Serialize};

use crate::domain::oci::{self, Image};
use crate::plumbing::fs::temp_dir_in;
use crate::plumbing::text::redact_url;

/// Manifest types this project reads: OCI and Docker, single and multi-platform.
const MANIFEST_TYPES: &[&str] = &[
    oci::INDEX_MEDIA_TYPE,
    oci::MANIFEST_MEDIA_TYPE,
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];

/// A signed attestation: a DSSE envelope, as cosign stores it.
pub const DSSE_MEDIA_TYPE: &str = "application/vnd.dsse.envelope.v1+json";
/// An image signature's payload: cosign's "simple signing" JSON.
pub const SIMPLE_SIGNING_MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// The layer annotation cosign keeps a signature in (base64 of the DER ECDSA signature).
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";

/// The annotation an OCI layout's `index.json` names its tags with.
const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// What a tag points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub digest: String,
    pub media_type: String,
}

/// What a push did, for the report and the benchmark.
#[derive(Debug, Default)]
pub struct PushReport {
    pub uploaded_blobs: usize,
    pub uploaded_bytes: u64,
    pub skipped_blobs: usize,
    /// The tag already named these exact bits: nothing was written.
    pub unchanged: bool,
}

#[derive(Debug, PartialEq, Eq)]
pub enum RetagOutcome {
    Created,
    /// The new tag already named the same digest.
    AlreadyThere,
}

/// An image repository: `host[:port]/path` (a registry) or `oci:<dir>` (a layout).
pub enum Repository {
    Remote(Box<Remote>),
    Layout(Layout),
}

impl fmt::Display for Repository {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Remote(remote) => write!(f, "{}/{}", remote.registry, remote.repository),
            Self::Layout(layout) => write!(f, "oci:{}", layout.dir.display()),
        }
    }
}

impl Repository {
    /// Open `spec` with credentials from the environment:
    /// `REGISTRY_USERNAME` + `REGISTRY_PASSWORD` (basic; GHCR takes the actor and
    /// `GITHUB_TOKEN`), or `REGISTRY_TOKEN` (bearer), or anonymous.
    pub fn open(spec: &str) -> Result<Self> {
        let var = |name| std::env::var(name).ok().filter(|v: &String| !v.is_empty());
        let auth = auth_from(
            var("REGISTRY_USERNAME"),
            var("REGISTRY_PASSWORD"),
            var("REGISTRY_TOKEN"),
        )?;
        Self::open_with(spec, auth)
    }

    /// A repository reached without credentials, whatever the environment holds
    /// (a local registry in a benchmark).
    pub fn open_anonymous(spec: &str) -> Result<Self> {
        Self::open_with(spec, RegistryAuth::Anonymous)
    }

    pub fn open_with(spec: &str, auth: RegistryAuth) -> Result<Self> {
        if let Some(dir) = spec.strip_prefix("oci:") {
            return Ok(Self::Layout(Layout::open(Path::new(dir))?));
        }
        Ok(Self::Remote(Box::new(Remote::open(spec, auth)?)))
    }

    /// The digest and media type `tag` names, or `None` when there is no such tag.
    pub fn resolve(&self, tag: &str) -> Result<Option<Resolved>> {
        match self {
            Self::Remote(remote) => remote
                .find(tag)
                .map(|found| found.map(|(_, resolved)| resolved)),
            Self::Layout(layout) => layout.resolve(tag),
        }
        .with_context(|| format!("resolving {self}:{tag}"))
    }

    /// What `tag` names and the manifest's bytes, in one read; `None` when there is no such tag.
    fn find(&self, tag: &str) -> Result<Option<(Vec<u8>, Resolved)>> {
        match self {
            Self::Remote(remote) => remote.find(tag),
            Self::Layout(layout) => match layout.resolve(tag)? {
                Some(resolved) => layout.manifest(&resolved.digest).map(Some),
                None => Ok(None),
            },
        }
        .with_context(|| format!("resolving {self}:{tag}"))
    }

    /// A manifest's bytes, by tag or by digest (`sha256:…`).
    pub fn manifest(&self, reference: &str) -> Result<(Vec<u8>, Resolved)> {
        match self {
            Self::Remote(remote) => remote.manifest(reference),
            Self::Layout(layout) => layout.manifest(reference),
        }
        .with_context(|| format!("reading the manifest of {self}{}", at(reference)))
    }

    pub fn blob(&self, digest: &str) -> Result<Vec<u8>> {
        match self {
            Self::Remote(remote) => remote.blob(digest),
            Self::Layout(layout) => layout.blob(digest),
        }
        .with_context(|| format!("reading blob {digest} from {self}"))
    }

    /// The image manifest for `arch` in the image index `tag` names.
    pub fn platform_manifest(&self, tag: &str, arch: oci::Arch) -> Result<oci::ImageManifest> {
        let (index, _) = self.manifest(tag)?;
        let index: oci_client::manifest::OciImageIndex = serde_json::from_slice(&index)
            .with_context(|| format!("{self}{} is not an image index", at(tag)))?;
        let entry = index
            .manifests
            .iter()
            .find(|m| {
                m.platform
                    .as_ref()
                    .is_some_and(|p| p.architecture.to_string() == arch.oci_name())
            })
            .with_context(|| format!("{self}{} has no linux/{} image", at(tag), arch.oci_name()))?;
        let (manifest, _) = self.manifest(&entry.digest)?;
        serde_json::from_slice(&manifest)
            .with_context(|| format!("{self}@{} is not an image manifest", entry.digest))
    }

    /// Every tag in the repository.
    pub fn tags(&self) -> Result<Vec<String>> {
        match self {
            Self::Remote(remote) => remote.tags(),
            Self::Layout(layout) => Ok(layout
                .read_index()?
                .manifests
                .into_iter()
                .filter_map(|entry| entry.annotations.get(REF_NAME).cloned())
                .collect()),
        }
        .with_context(|| format!("listing the tags of {self}"))
    }

    /// Upload `image` and point `tag` at it. Blobs the repository already holds
    /// are not sent again. Refuses to move a tag that names other bits.
    pub fn push(&self, image: &Image, tag: &str) -> Result<PushReport> {
        if let Some(existing) = self.resolve(tag)? {
            if existing.digest == image.root.digest {
                return Ok(PushReport {
                    unchanged: true,
                    ..Default::default()
                });
            }
            bail!(
                "{self}:{tag} already names {} and this build is {}: tags are immutable, so it was \
                 not moved. Builds are reproducible, so the same commit built with the same toolchain \
                 gives the same digest; build a new commit, or delete the tag in the registry if you \
                 really mean to replace it",
                existing.digest,
                image.root.digest
            );
        }
        match self {
            Self::Remote(remote) => remote.push(image, tag),
            Self::Layout(layout) => layout.push(image, tag),
        }
        .with_context(|| format!("pushing {self}:{tag}"))
    }

    /// Point `new_tag` at the manifest `src_tag` names: the manifest's bytes are
    /// copied as they are (an index stays an index), no blob is uploaded.
    pub fn retag(&self, src_tag: &str, new_tag: &str) -> Result<(RetagOutcome, Resolved)> {
        let Some((_, source)) = self.find(src_tag)? else {
            bail!(
                "{self} has no tag {src_tag:?}: build and push it first (cargo xtask image build --tag {src_tag} --push …)"
            );
        };
        let outcome = self.tag_digest(&source.digest, new_tag)?;
        // Trust the registry's answer, not our request: the source name must
        // still resolve to the bits the new name now has.
        let after_src = self.resolve(src_tag)?;
        if after_src.as_ref() != Some(&source) {
            bail!(
                "after retagging, {src_tag} resolves to {after_src:?}; expected {}",
                source.digest
            );
        }
        Ok((outcome, source))
    }

    /// Names the manifest `digest` `new_tag`. The bits are pinned by digest, so
    /// a tag moved meanwhile cannot slip other bits under the new name; an
    /// existing `new_tag` on other bits is refused (release tags are immutable).
    pub fn tag_digest(&self, digest: &str, new_tag: &str) -> Result<RetagOutcome> {
        let (bytes, source) = self.manifest(digest)?;
        let outcome = match self.resolve(new_tag)? {
            Some(existing) if existing.digest == source.digest => RetagOutcome::AlreadyThere,
            Some(existing) => bail!(
                "{self}:{new_tag} already names {} but the image to tag is {}: release tags are \
                 immutable, so it was not moved. Choose a new version",
                existing.digest,
                source.digest
            ),
            None => {
                match self {
                    Self::Remote(remote) => remote.put_manifest(new_tag, bytes, &source.media_type),
                    Self::Layout(layout) => layout.tag(new_tag, &source, bytes.len() as u64),
                }
                .with_context(|| format!("tagging {self}:{new_tag}"))?;
                RetagOutcome::Created
            }
        };
        let after_new = self.resolve(new_tag)?;
        if after_new.as_ref() != Some(&source) {
            bail!(
                "after tagging, {new_tag} resolves to {after_new:?}; expected {}",
                source.digest
            );
        }
        Ok(outcome)
    }
}

impl Repository {
    /// Adds a signed attestation (a DSSE envelope) for the image `subject`
    /// under cosign's tag `sha256-<hex>.att`: an image manifest with one
    /// envelope layer per attestation. This tag alone grows (a new layer per
    /// result, as `cosign attest` appends); it never names an image.
    pub fn attach_attestation(
        &self,
        subject: &str,
        envelope: Vec<u8>,
        predicate_type: &str,
    ) -> Result<()> {
        let annotations = [
            (SIGNATURE_ANNOTATION, String::new()),
            ("predicateType", predicate_type.to_owned()),
        ];
        self.append_cosign_layer(
            &attestation_tag(subject)?,
            DSSE_MEDIA_TYPE,
            envelope,
            &annotations,
        )
        .context("storing an attestation")
    }

    /// The DSSE envelopes stored for the image `subject` (none when there is no `.att` tag).
    pub fn attestations(&self, subject: &str) -> Result<Vec<Vec<u8>>> {
        let layers = self.cosign_layers(&attestation_tag(subject)?, DSSE_MEDIA_TYPE)?;
        Ok(layers.into_iter().map(|(_, blob)| blob).collect())
    }

    /// Adds a signature of the image `subject` under cosign's tag
    /// `sha256-<hex>.sig`: the simple-signing `payload` as a layer, its
    /// base64 signature in the layer's `dev.cosignproject.cosign/signature`
    /// annotation (what `cosign sign --key` writes). Signing again with the
    /// same key adds nothing (ECDSA here is deterministic, RFC 6979).
    pub fn attach_signature(&self, subject: &str, payload: Vec<u8>, signature: &str) -> Result<()> {
        let annotations = [(SIGNATURE_ANNOTATION, signature.to_owned())];
        self.append_cosign_layer(
            &signature_tag(subject)?,
            SIMPLE_SIGNING_MEDIA_TYPE,
            payload,
            &annotations,
        )
        .context("storing a signature")
    }

    /// The (payload, base64 signature) pairs stored for the image `subject`
    /// (none when there is no `.sig` tag).
    pub fn signatures(&self, subject: &str) -> Result<Vec<(Vec<u8>, String)>> {
        let layers = self.cosign_layers(&signature_tag(subject)?, SIMPLE_SIGNING_MEDIA_TYPE)?;
        Ok(layers
            .into_iter()
            .map(|(layer, payload)| {
                let signature = layer["annotations"][SIGNATURE_ANNOTATION]
                    .as_str()
                    .unwrap_or_default();
                (payload, signature.to_owned())
            })
            .collect())
    }

    /// Appends a layer (`bytes`, with `annotations`) to the manifest under
    /// cosign's `tag`, creating it when absent; an identical layer is not
    /// added twice.
    fn append_cosign_layer(
        &self,
        tag: &str,
        media_type: &'static str,
        bytes: Vec<u8>,
        annotations: &[(&str, String)],
    ) -> Result<()> {
        let mut layers = match self.find(tag)? {
            Some((bytes, _)) => cosign_layers(&bytes)?,
            None => Vec::new(),
        };
        let blob = oci::Blob::new(media_type, bytes);
        let annotations: serde_json::Map<String, serde_json::Value> = annotations
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone().into()))
            .collect();
        let layer = serde_json::json!({
            "mediaType": media_type, "digest": blob.digest, "size": blob.size(), "annotations": annotations,
        });
        if !layers.contains(&layer) {
            layers.push(layer);
        }
        let diff_ids: Vec<&serde_json::Value> = layers.iter().map(|l| &l["digest"]).collect();
        let config = oci::Blob::new(
            oci::CONFIG_MEDIA_TYPE,
            serde_json::to_vec(&serde_json::json!({
                "architecture": "", "os": "", "config": {},
                "rootfs": {"type": "layers", "diff_ids": diff_ids},
            }))?,
        );
        let manifest = oci::Blob::new(
            oci::MANIFEST_MEDIA_TYPE,
            serde_json::to_vec(&serde_json::json!({
                "schemaVersion": 2,
                "mediaType": oci::MANIFEST_MEDIA_TYPE,
                "config": {"mediaType": oci::CONFIG_MEDIA_TYPE, "digest": config.digest, "size": config.size()},
                "layers": layers,
            }))?,
        );
        let image = Image {
            root: manifest.clone(),
            blobs: vec![config, blob, manifest],
            platforms: Vec::new(),
        };
        match self {
            Self::Remote(remote) => remote.push(&image, tag),
            Self::Layout(layout) => layout.push(&image, tag),
        }
        .map(drop)
        .with_context(|| format!("writing {self}:{tag}"))
    }

    /// The layers of `media_type` under cosign's `tag`, each with its blob.
    fn cosign_layers(
        &self,
        tag: &str,
        media_type: &str,
    ) -> Result<Vec<(serde_json::Value, Vec<u8>)>> {
        let Some((bytes, _)) = self.find(tag)? else {
            return Ok(Vec::new());
        };
        cosign_layers(&bytes)?
            .into_iter()
            .filter(|l| l["mediaType"] == media_type)
            .map(|l| {
                let blob = self.blob(l["digest"].as_str().unwrap_or_default())?;
                Ok((l, blob))
            })
            .collect()
    }
}

/// cosign's tag for the attestations of `sha256:<hex>`: `sha256-<hex>.att`.
pub fn attestation_tag(subject: &str) -> Result<String> {
    cosign_tag(subject, "att")
}

/// cosign's tag for the signatures of `sha256:<hex>`: `sha256-<hex>.sig`.
pub fn signature_tag(subject: &str) -> Result<String> {
    cosign_tag(subject, "sig")
}

fn cosign_tag(subject: &str, suffix: &str) -> Result<String> {
    let hex = subject
        .strip_prefix("sha256:")
        .filter(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .with_context(|| format!("{subject:?} is not a sha256:<64 hex> digest"))?;
    Ok(format!("sha256-{hex}.{suffix}"))
}

fn cosign_layers(manifest: &[u8]) -> Result<Vec<serde_json::Value>> {
    let manifest: serde_json::Value =
        serde_json::from_slice(manifest).context("the cosign manifest is not JSON")?;
    Ok(manifest["layers"].as_array().cloned().unwrap_or_default())
}

/// The credentials the three variables describe (an empty one counts as
/// unset): a user name with its password (basic), a token alone (bearer), or
/// nothing (anonymous). Any other mix is ambiguous and refused.
fn auth_from(
    username: Option<String>,
    password: Option<String>,
    token: Option<String>,
) -> Result<RegistryAuth> {
    Ok(match (username, password, token) {
        (Some(user), Some(password), None) => RegistryAuth::Basic(user, password),
        (None, None, Some(token)) => RegistryAuth::Bearer(token),
        (None, None, None) => RegistryAuth::Anonymous,
        _ => bail!(
            "set both REGISTRY_USERNAME and REGISTRY_PASSWORD (basic auth), or REGISTRY_TOKEN \
             alone (bearer), or none of them (anonymous)"
        ),
    })
}

/// Whether plain HTTP may be spoken to `registry` (`host[:port]`): only on
/// loopback, where nothing leaves the machine. Everything else is HTTPS with
/// certificate verification, so credentials never cross a network in clear.
fn plain_http_allowed(registry: &str) -> bool {
    let host = match registry.strip_prefix('[') {
        Some(bracketed) => bracketed.split(']').next().unwrap_or_default(),
        None => registry.split(':').next().unwrap_or_default(),
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// `:tag` or `@sha256:…`, as a reference is written after a repository.
pub fn at(reference: &str) -> String {
    if reference.starts_with("sha256:") {
        format!("@{reference}")
    } else {
        format!(":{reference}")
    }
}

/// A repository in a registry that speaks the OCI distribution API.
pub struct Remote {
    client: Client,
    auth: RegistryAuth,
    registry: String,
    repository: String,
    runtime: tokio::runtime::Runtime,
}

impl Remote {
    fn open(spec: &str, auth: RegistryAuth) -> Result<Self> {
        let shown = redact_url(spec);
        let Some((registry, repository)) = spec.split_once('/').filter(|(host, repo)| {
            (host.contains('.') || host.contains(':') || *host == "localhost") && !repo.is_empty()
        }) else {
            bail!(
                "image repository {shown:?} should be <registry-host>/<path> (e.g. \
                 ghcr.io/owner/service-demo or 127.0.0.1:5000/service-demo), or oci:<dir> for an \
                 OCI layout directory"
            );
        };
        if spec.contains(['@', ' ']) || repository.contains(':') {
            bail!(
                "image repository {shown:?} must not carry a tag, digest or credentials: pass \
                 those separately (credentials in REGISTRY_USERNAME/REGISTRY_PASSWORD or REGISTRY_TOKEN)"
            );
        }
        let protocol = if plain_http_allowed(registry) {
            ClientProtocol::HttpsExcept(vec![registry.to_owned()])
        } else {
            ClientProtocol::Https
        };
        let client = Client::new(ClientConfig {
            protocol,
            connect_timeout: Some(Duration::from_secs(10)),
            read_timeout: Some(Duration::from_secs(120)),
            ..Default::default()
        });
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        Ok(Self {
            client,
            auth,
            registry: registry.to_owned(),
            repository: repository.to_owned(),
            runtime,
        })
    }

    fn reference(&self, reference: &str) -> Reference {
        if reference.starts_with("sha256:") {
            Reference::with_digest(
                self.registry.clone(),
                self.repository.clone(),
                reference.to_owned(),
            )
        } else {
            Reference::with_tag(
                self.registry.clone(),
                self.repository.clone(),
                reference.to_owned(),
            )
        }
    }

    fn find(&self, tag: &str) -> Result<Option<(Vec<u8>, Resolved)>> {
        match self.manifest(tag) {
            Ok(found) => Ok(Some(found)),
            Err(error) if is_not_found(&error) => Ok(None),
            Err(error) => Err(error),
        }
    }

    fn manifest(&self, reference: &str) -> Result<(Vec<u8>, Resolved)> {
        let image = self.reference(reference);
        let (bytes, digest) = self
            .runtime
            .block_on(
                self.client
                    .pull_manifest_raw(&image, &self.auth, MANIFEST_TYPES),
            )
            .map_err(explain)?;
        let media_type = media_type_of(&bytes)?;
        Ok((bytes.to_vec(), Resolved { digest, media_type }))
    }

    fn tags(&self) -> Result<Vec<String>> {
        // Page through the tag list (distribution's `n` and `last`).
        let (mut tags, image) = (Vec::new(), self.reference("latest"));
        loop {
            let last = tags.last().cloned();
            let page = self
                .runtime
                .block_on(
                    self.client
                        .list_tags(&image, &self.auth, Some(1000), last.as_deref()),
                )
                .map_err(explain)?;
            let done = page.tags.len() < 1000;
            tags.extend(page.tags);
            if done {
                return Ok(tags);
            }
        }
    }

    fn blob(&self, digest: &str) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.runtime
            .block_on(self.client.pull_blob(
                &self.reference(digest),
                &oci_client::manifest::OciDescriptor {
                    digest: digest.to_owned(),
                    ..Default::default()
                },
                &mut out,
            ))
            .map_err(explain)?;
        Ok(out)
    }

    fn push(&self, image: &Image, tag: &str) -> Result<PushReport> {
        let target = self.reference(tag);
        self.runtime.block_on(async {
            // push_manifest_raw takes no credentials: authenticate for push first.
            self.client
                .auth(&target, &self.auth, RegistryOperation::Push)
                .await
                .map_err(explain)?;
            let mut report = PushReport::default();
            // Layers and configs first, then platform manifests by digest, then
            // the index under its tag: a reader never sees a tag with missing parts.
            for blob in image.blobs.iter().filter(|b| !is_manifest(b.media_type)) {
                if self
                    .client
                    .blob_exists(&target, &blob.digest)
                    .await
                    .map_err(explain)?
                {
                    report.skipped_blobs += 1;
                    continue;
                }
                self.client
                    .push_blob(&target, blob.bytes.clone(), &blob.digest)
                    .await
                    .map_err(explain)?;
                report.uploaded_blobs += 1;
                report.uploaded_bytes += blob.size();
            }
            for blob in image.blobs.iter().filter(|b| is_manifest(b.media_type)) {
                let reference = if blob.digest == image.root.digest {
                    target.clone()
                } else {
                    self.reference(&blob.digest)
                };
                self.client
                    .push_manifest_raw(
                        &reference,
                        blob.bytes.clone(),
                        blob.media_type
                            .parse()
                            .expect("media types are valid headers"),
                    )
                    .await
                    .map_err(explain)?;
            }
            Ok(report)
        })
    }

    fn put_manifest(&self, tag: &str, bytes: Vec<u8>, media_type: &str) -> Result<()> {
        let target = self.reference(tag);
        self.runtime.block_on(async {
            self.client
                .auth(&target, &self.auth, RegistryOperation::Push)
                .await
                .map_err(explain)?;
            self.client
                .push_manifest_raw(&target, bytes, media_type.parse()?)
                .await
                .map_err(explain)?;
            Ok(())
        })
    }
}

fn is_manifest(media_type: &str) -> bool {
    media_type == oci::INDEX_MEDIA_TYPE || media_type == oci::MANIFEST_MEDIA_TYPE
}

/// The `mediaType` a manifest declares about itself.
fn media_type_of(bytes: &[u8]) -> Result<String> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Head {
        media_type: Option<String>,
    }
    let head: Head = serde_json::from_slice(bytes).context("the manifest is not JSON")?;
    head.media_type
        .context("the manifest does not declare its mediaType")
}

fn is_not_found(error: &anyhow::Error) -> bool {
    match error.downcast_ref::<OciDistributionError>() {
        Some(OciDistributionError::ImageManifestNotFoundError(_)) => true,
        Some(OciDistributionError::ServerError { code, .. }) => *code == 404,
        Some(OciDistributionError::RegistryError { envelope, .. }) => {
            envelope.errors.iter().all(|e| {
                matches!(
                    e.code,
                    OciErrorCode::ManifestUnknown | OciErrorCode::NotFound
                )
            })
        }
        _ => false,
    }
}

/// oci-client's errors name the URL but not what to do; add the fix. They never
/// contain credentials (oci-client's `RegistryAuth` debug-prints as redacted).
fn explain(error: OciDistributionError) -> anyhow::Error {
    let hint = match &error {
        OciDistributionError::UnauthorizedError { .. }
        | OciDistributionError::AuthenticationFailure(_) => Some(
            "the registry refused the credentials: check REGISTRY_USERNAME/REGISTRY_PASSWORD or \
             REGISTRY_TOKEN (for GHCR, the token needs packages:write to push)",
        ),
        OciDistributionError::RequestError(e) if e.is_connect() || e.is_timeout() => {
            Some("the registry did not answer: is it running, and is the host and port right?")
        }
        _ => None,
    };
    match hint {
        Some(hint) => anyhow::Error::new(error).context(hint),
        None => anyhow::Error::new(error),
    }
}

/// An OCI image layout directory: `oci-layout`, `index.json` naming tags with
/// `org.opencontainers.image.ref.name`, and `blobs/sha256/<hex>`.
pub struct Layout {
    dir: PathBuf,
}

#[derive(Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct LayoutIndex {
    schema_version: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    media_type: Option<String>,
    manifests: Vec<LayoutEntry>,
}

#[derive(Serialize, Deserialize, Clone)]
#[serde(rename_all = "camelCase")]
struct LayoutEntry {
    media_type: String,
    digest: String,
    size: u64,
    #[serde(default)]
    annotations: std::collections::BTreeMap<String, String>,
}

impl Layout {
    /// Open a layout, creating an empty one when `dir` does not exist or is empty.
    pub fn open(dir: &Path) -> Result<Self> {
        let layout = Self {
            dir: dir.to_path_buf(),
        };
        let marker = dir.join("oci-layout");
        if !marker.exists() {
            if dir.exists() && fs::read_dir(dir)?.next().is_some() {
                bail!(
                    "{} is not an OCI image layout (no oci-layout file) and is not empty: point at a \
                     new directory",
                    dir.display()
                );
            }
            fs::create_dir_all(dir.join("blobs/sha256"))?;
            crate::plumbing::fs::write_atomic(&marker, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
            layout.write_index(&LayoutIndex {
                schema_version: 2,
                media_type: Some(oci::INDEX_MEDIA_TYPE.to_owned()),
                manifests: Vec::new(),
            })?;
        }
        Ok(layout)
    }

    fn read_index(&self) -> Result<LayoutIndex> {
        let path = self.dir.join("index.json");
        let text = fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_slice(&text).with_context(|| format!("parsing {}", path.display()))
    }

    fn write_index(&self, index: &LayoutIndex) -> Result<()> {
        crate::plumbing::fs::write_atomic(
            &self.dir.join("index.json"),
            &serde_json::to_vec_pretty(index)?,
        )
    }

    fn blob_path(&self, digest: &str) -> Result<PathBuf> {
        let hex = digest
            .strip_prefix("sha256:")
            .filter(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
            .with_context(|| format!("malformed digest {digest:?}"))?;
        Ok(self.dir.join("blobs/sha256").join(hex))
    }

    fn resolve(&self, tag: &str) -> Result<Option<Resolved>> {
        Ok(self
            .read_index()?
            .manifests
            .into_iter()
            .find(|entry| entry.annotations.get(REF_NAME).map(String::as_str) == Some(tag))
            .map(|entry| Resolved {
                digest: entry.digest,
                media_type: entry.media_type,
            }))
    }

    fn manifest(&self, reference: &str) -> Result<(Vec<u8>, Resolved)> {
        let digest = if reference.starts_with("sha256:") {
            reference.to_owned()
        } else {
            self.resolve(reference)?
                .with_context(|| format!("no tag {reference:?}"))?
                .digest
        };
        let bytes = self.blob(&digest)?;
        let media_type = media_type_of(&bytes)?;
        Ok((bytes, Resolved { digest, media_type }))
    }

    fn blob(&self, digest: &str) -> Result<Vec<u8>> {
        let bytes = fs::read(self.blob_path(digest)?)?;
        // A layout is plain files: check nothing was altered on disk.
        if oci::sha256_digest(&bytes) != digest {
            bail!(
                "blob {digest} in {} does not match its digest",
                self.dir.display()
            );
        }
        Ok(bytes)
    }

    fn push(&self, image: &Image, tag: &str) -> Result<PushReport> {
        let mut report = PushReport::default();
        for blob in &image.blobs {
            let path = self.blob_path(&blob.digest)?;
            if path.exists() {
                report.skipped_blobs += 1;
                continue;
            }
            crate::plumbing::fs::write_atomic(&path, &blob.bytes)?;
            report.uploaded_blobs += 1;
            report.uploaded_bytes += blob.size();
        }
        let root = Resolved {
            digest: image.root.digest.clone(),
            media_type: image.root.media_type.to_owned(),
        };
        self.tag(tag, &root, image.root.size())?;
        Ok(report)
    }

    /// Add `tag` → `target` to index.json (written whole, then renamed into place).
    fn tag(&self, tag: &str, target: &Resolved, size: u64) -> Result<()> {
        let mut index = self.read_index()?;
        index
            .manifests
            .retain(|entry| entry.annotations.get(REF_NAME).map(String::as_str) != Some(tag));
        index.manifests.push(LayoutEntry {
            media_type: target.media_type.clone(),
            digest: target.digest.clone(),
            size,
            annotations: [(REF_NAME.to_owned(), tag.to_owned())].into(),
        });
        self.write_index(&index)
    }
}

/// Write `image` under `tags` as a new OCI layout at `dir`: built beside it,
/// then swapped in. `dir` must be absent, empty, or hold nothing but an OCI
/// layout's files (`oci-layout`, `index.json`, `blobs/sha256/<hex>`):
/// anything else is refused before a file is written, so a mistyped
/// `--output` deletes nothing of the user's.
pub fn write_fresh_layout(dir: &Path, image: &Image, tags: &[String]) -> Result<()> {
    ensure_replaceable_layout(dir)?;
    let name = dir
        .file_name()
        .with_context(|| format!("{} does not name a directory", dir.display()))?
        .to_string_lossy();
    let parent = dir.parent().unwrap_or(Path::new("."));
    // Removed when dropped, with whatever it still holds (a failed layout, the replaced one).
    let scratch = temp_dir_in(parent, &format!(".{name}.xtask-"))?;
    let (staging, old) = (scratch.path().join("new"), scratch.path().join("old"));
    let written = (|| {
        let layout = Layout::open(&staging)?;
        for tag in tags {
            layout.push(image, tag)?;
        }
        Ok::<_, anyhow::Error>(())
    })();
    written.with_context(|| format!("writing the layout beside {}", dir.display()))?;
    if dir.exists() {
        fs::rename(dir, &old).with_context(|| format!("replacing {}", dir.display()))?;
    }
    if let Err(error) = fs::rename(&staging, dir) {
        // Put the user's layout back before the scratch directory goes.
        let _ = fs::rename(&old, dir);
        return Err(error).with_context(|| format!("moving the layout to {}", dir.display()));
    }
    Ok(())
}

/// Refuses a `dir` that holds anything but an OCI layout.
fn ensure_replaceable_layout(dir: &Path) -> Result<()> {
    let entries: Vec<String> = match fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|entry| Ok(entry?.file_name().to_string_lossy().into_owned()))
            .collect::<std::io::Result<_>>()?,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(error) => {
            return Err(error)
                .with_context(|| format!("--output {} is not a directory", dir.display()));
        }
    };
    if entries.is_empty() {
        return Ok(());
    }
    let layout_files = ["oci-layout", "index.json", "blobs"];
    let only_layout = entries.iter().all(|e| layout_files.contains(&e.as_str()))
        && entries.iter().any(|e| e == "oci-layout")
        && only_blobs(&dir.join("blobs"))?;
    if !only_layout {
        bail!(
            "--output {} is not empty and holds more than an OCI layout, so it was not \
             replaced (nothing was written): point --output at a new or empty directory",
            dir.display()
        );
    }
    Ok(())
}

/// Whether `blobs` (if present) holds nothing but `sha256/<digest>` files.
fn only_blobs(blobs: &Path) -> Result<bool> {
    if !blobs.exists() {
        return Ok(true);
    }
    for entry in fs::read_dir(blobs)? {
        let entry = entry?;
        if entry.file_name() != "sha256" || !entry.file_type()?.is_dir() {
            return Ok(false);
        }
        for blob in fs::read_dir(entry.path())? {
            let blob = blob?;
            let name = blob.file_name().to_string_lossy().into_owned();
            if !blob.file_type()?.is_file()
                || name.len() != 64
                || !name.bytes().all(|b| b.is_ascii_hexdigit())
            {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_on_loopback() {
        for registry in [
            "127.0.0.1:5000",
            "127.0.0.2:5000",
            "localhost:5000",
            "LOCALHOST",
            "[::1]:5000",
            "[::1]",
        ] {
            assert!(plain_http_allowed(registry), "{registry}");
        }
        for registry in [
            "ghcr.io",
            "0.0.0.0:5000",
            "10.0.0.1:5000",
            "127.0.0.1.nip.io:5000",
            "localhost.example.com:5000",
            "[::2]:5000",
            "[::1.evil]:5000",
        ] {
            assert!(!plain_http_allowed(registry), "{registry}");
        }
    }

    #[test]
    fn credentials_from_the_environment() {
        let some = |s: &str| Some(s.to_owned());
        assert!(matches!(
            auth_from(some("u"), some("p"), None),
            Ok(RegistryAuth::Basic(u, p)) if u == "u" && p == "p"
        ));
        assert!(matches!(
            auth_from(None, None, some("t")),
            Ok(RegistryAuth::Bearer(t)) if t == "t"
        ));
        assert!(matches!(
            auth_from(None, None, None),
            Ok(RegistryAuth::Anonymous)
        ));
        for (user, password, token) in [
            (some("u"), None, None),
            (None, some("p"), None),
            (some("u"), None, some("t")),
            (some("u"), some("p"), some("t")),
        ] {
            let error = auth_from(user, password, token).unwrap_err().to_string();
            assert!(error.contains("REGISTRY_TOKEN alone"), "{error}");
        }
    }

    #[test]
    fn credentials_in_a_repository_are_refused_unprinted() {
        let error = Repository::open_with("bot:s3cret@ghcr.io/o/x", RegistryAuth::Anonymous)
            .err()
            .unwrap();
        let message = format!("{error:#}");
        assert!(message.contains("credentials"), "{message}");
        assert!(!message.contains("s3cret"), "{message}");
    }
}
