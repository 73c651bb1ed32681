//! Assembling OCI images from a static binary, the way ko and apko do: no
//! Dockerfile, no daemon, no base image to pull.
//!
//! Every image is two layers on top of nothing: a distroless-equivalent base
//! (users, groups, `/tmp`, `/home/nonroot`, CA certificates) and the binary.
//! The base layer is identical across builds, so a registry already holding it
//! receives only the binary's layer.
//!
//! Reproducible by construction: tar entries are sorted and carry a fixed
//! owner, mode and mtime (`SOURCE_DATE_EPOCH` or the commit time), gzip runs at a
//! fixed level with no timestamp or file name in its header, and every JSON
//! document is serialized from ordered maps.

use std::collections::BTreeMap;
use std::io::{Read, Write};

use anyhow::{Context, Result};
use flate2::{Compression, GzBuilder};
use oci_client::manifest::{
    ImageIndexEntry, OciDescriptor, OciImageIndex, OciImageManifest, Platform as IndexPlatform,
};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// One platform's image: its config and layers, typed.
pub type ImageManifest = OciImageManifest;

pub const INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
pub const LAYER_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// Where a service's binary lives inside its image: `usr/local/bin/<binary>`
/// (the entrypoint, and the command of the healthcheck).
pub const BINARY_DIR: &str = "usr/local/bin";
const SECOND: u64 = 1_000_000_000;
/// distroless's `nonroot` user and group.
pub const NONROOT_ID: u64 = 65532;

/// Content-addressed bytes with their media type.
#[derive(Debug, Clone)]
pub struct Blob {
    pub media_type: &'static str,
    pub digest: String,
    pub bytes: Vec<u8>,
}

impl Blob {
    pub fn new(media_type: &'static str, bytes: Vec<u8>) -> Self {
        Self {
            media_type,
            digest: sha256_digest(&bytes),
            bytes,
        }
    }

    pub fn size(&self) -> u64 {
        self.bytes.len() as u64
    }

    fn descriptor(&self) -> OciDescriptor {
        OciDescriptor {
            media_type: self.media_type.to_owned(),
            digest: self.digest.clone(),
            size: self.bytes.len() as i64,
            ..Default::default()
        }
    }
}

pub fn sha256_digest(bytes: &[u8]) -> String {
    format!(
        "sha256:{}",
        crate::plumbing::text::hex(&Sha256::digest(bytes))
    )
}

/// A platform the image is built for, in OCI's spelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    Amd64,
    Arm64,
}

impl Arch {
    pub fn oci_name(self) -> &'static str {
        match self {
            Self::Amd64 => "amd64",
            Self::Arm64 => "arm64",
        }
    }
}

/// What goes into an image besides the binaries.
pub struct ImageMeta {
    /// Seconds since the epoch for every mtime and `created`.
    pub created_epoch: i64,
    /// `org.opencontainers.image.*` labels (source, revision, version, created).
    pub labels: BTreeMap<String, String>,
    /// The CA bundle a rustls client would read (`/etc/ssl/certs/ca-certificates.crt`).
    pub ca_certificates: Option<Vec<u8>>,
    /// The port the service listens on (its declaration's `port`).
    pub port: u16,
    /// The service's binary (its package's name), installed at [`binary_path`].
    pub binary: String,
}

/// `usr/local/bin/<binary>`: where `binary` lives in the image, without the leading `/`.
pub fn binary_path(binary: &str) -> String {
    format!("{BINARY_DIR}/{binary}")
}

/// A built image: the index and every blob it refers to, platform manifests
/// included. `root` is what a tag points at.
pub struct Image {
    pub root: Blob,
    pub blobs: Vec<Blob>,
    pub platforms: Vec<Arch>,
}

impl Image {
    /// Compressed size: what a registry stores and a node pulls.
    pub fn compressed_size(&self) -> u64 {
        self.blobs
            .iter()
            .filter(|b| b.media_type == LAYER_MEDIA_TYPE)
            .map(Blob::size)
            .sum()
    }
}

/// `path`'s bytes in a layer tar (gzip-compressed or not), if it is there.
pub fn file_in_layer(blob: &[u8], path: &str) -> Result<Option<Vec<u8>>> {
    let tar: Box<dyn Read + '_> = if blob.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::GzDecoder::new(blob))
    } else {
        Box::new(blob)
    };
    let mut archive = tar::Archive::new(tar);
    for entry in archive.entries().context("reading a layer's tar")? {
        let mut entry = entry.context("reading a layer's tar")?;
        let name = entry.path()?.to_string_lossy().into_owned();
        if name.trim_start_matches("./").trim_start_matches('/') == path
            && entry.header().entry_type().is_file()
        {
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes)?;
            return Ok(Some(bytes));
        }
    }
    Ok(None)
}

/// The `(os/architecture, digest)` of each manifest an image index lists
/// (attestations have os `unknown`); None for a single-platform manifest.
pub fn index_entries(document: &serde_json::Value) -> Option<Vec<(String, String)>> {
    let list = document["manifests"].as_array()?;
    Some(
        list.iter()
            .map(|m| {
                let platform = format!(
                    "{}/{}",
                    m["platform"]["os"].as_str().unwrap_or("?"),
                    m["platform"]["architecture"].as_str().unwrap_or("?")
                );
                let digest = m["digest"].as_str().unwrap_or_default().to_owned();
                (platform, digest)
            })
            .collect(),
    )
}

/// Assemble the image for each `(arch, binary)` pair under one index.
pub fn assemble(binaries: &[(Arch, Vec<u8>)], meta: &ImageMeta) -> Result<Image> {
    let base = gzip(&base_layer_tar(meta)?)?;
    let mut blobs = vec![base.compressed.clone()];
    let mut entries = Vec::new();
    for (arch, binary) in binaries {
        let app = gzip(&app_layer_tar(binary, &meta.binary, meta.created_epoch)?)?;
        let config = Blob::new(
            CONFIG_MEDIA_TYPE,
            serde_json::to_vec(&image_config(*arch, meta, [&base.diff_id, &app.diff_id]))?,
        );
        let manifest = OciImageManifest {
            schema_version: 2,
            media_type: Some(MANIFEST_MEDIA_TYPE.to_owned()),
            config: config.descriptor(),
            layers: vec![base.compressed.descriptor(), app.compressed.descriptor()],
            subject: None,
            artifact_type: None,
            annotations: None,
        };
        let manifest = Blob::new(MANIFEST_MEDIA_TYPE, serde_json::to_vec(&manifest)?);
        entries.push(ImageIndexEntry {
            media_type: MANIFEST_MEDIA_TYPE.to_owned(),
            digest: manifest.digest.clone(),
            size: manifest.size() as i64,
            platform: Some(IndexPlatform {
                architecture: arch.oci_name().into(),
                os: "linux".into(),
                os_version: None,
                os_features: None,
                variant: (*arch == Arch::Arm64).then(|| "v8".to_owned()),
                features: None,
            }),
            annotations: None,
            artifact_type: None,
        });
        blobs.extend([app.compressed, config, manifest]);
    }
    let index = OciImageIndex {
        schema_version: 2,
        media_type: Some(INDEX_MEDIA_TYPE.to_owned()),
        manifests: entries,
        artifact_type: None,
        annotations: Some(meta.labels.clone()),
    };
    let root = Blob::new(INDEX_MEDIA_TYPE, serde_json::to_vec(&index)?);
    blobs.push(root.clone());
    Ok(Image {
        root,
        blobs,
        platforms: binaries.iter().map(|(arch, _)| *arch).collect(),
    })
}

/// The image configuration (OCI image spec, "config"). Written here rather than
/// with oci-client's `ConfigFile`, whose labels and ports are hash maps and so
/// would serialize in a different order on every run.
#[derive(Serialize)]
struct ImageConfig<'a> {
    created: String,
    architecture: &'static str,
    os: &'static str,
    config: RuntimeConfig<'a>,
    rootfs: RootFs<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct RuntimeConfig<'a> {
    user: String,
    entrypoint: Vec<String>,
    env: Vec<String>,
    exposed_ports: BTreeMap<String, serde_json::Map<String, serde_json::Value>>,
    working_dir: &'static str,
    labels: &'a BTreeMap<String, String>,
    stop_signal: &'static str,
    healthcheck: Healthcheck,
}

/// Docker's `HEALTHCHECK` (an extension OCI engines ignore); durations in ns.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Healthcheck {
    test: [String; 3],
    interval: u64,
    timeout: u64,
    start_period: u64,
    retries: u32,
}

#[derive(Serialize)]
struct RootFs<'a> {
    r#type: &'static str,
    diff_ids: [&'a str; 2],
}

fn image_config<'a>(arch: Arch, meta: &'a ImageMeta, diff_ids: [&'a str; 2]) -> ImageConfig<'a> {
    let binary = format!("/{}", binary_path(&meta.binary));
    ImageConfig {
        created: crate::plumbing::text::rfc3339(meta.created_epoch),
        architecture: arch.oci_name(),
        os: "linux",
        config: RuntimeConfig {
            user: format!("{NONROOT_ID}:{NONROOT_ID}"),
            entrypoint: vec![binary.clone()],
            env: vec![
                // No shell in the image, but libraries and tools read these.
                "PATH=/usr/local/bin".to_owned(),
                "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt".to_owned(),
                format!("PORT={}", meta.port),
            ],
            exposed_ports: BTreeMap::from([(format!("{}/tcp", meta.port), Default::default())]),
            working_dir: "/home/nonroot",
            labels: &meta.labels,
            // The service drains on SIGTERM; say so for engines that read it.
            stop_signal: "SIGTERM",
            // Same as the Dockerfile's HEALTHCHECK: the binary checks itself.
            healthcheck: Healthcheck {
                test: ["CMD".to_owned(), binary, "healthcheck".to_owned()],
                interval: 10 * SECOND,
                timeout: 3 * SECOND,
                start_period: 2 * SECOND,
                retries: 3,
            },
        },
        rootfs: RootFs {
            r#type: "layers",
            diff_ids,
        },
    }
}

/// A layer: its gzip blob and the digest of the uncompressed tar (the diff id).
struct Layer {
    compressed: Blob,
    diff_id: String,
}

fn gzip(tar: &[u8]) -> Result<Layer> {
    // GzBuilder writes mtime 0 and no file name unless asked: nothing varies.
    let mut encoder = GzBuilder::new().write(Vec::new(), Compression::best());
    encoder.write_all(tar)?;
    Ok(Layer {
        compressed: Blob::new(LAYER_MEDIA_TYPE, encoder.finish()?),
        diff_id: sha256_digest(tar),
    })
}

/// One file or directory of a layer.
struct Entry<'a> {
    path: &'a str,
    mode: u32,
    owner: u64,
    content: Option<&'a [u8]>,
}

fn tar(entries: &mut [Entry<'_>], mtime: i64) -> Result<Vec<u8>> {
    // Sorted so the same set of files always gives the same bytes.
    entries.sort_by(|a, b| a.path.cmp(b.path));
    let mut builder = tar::Builder::new(Vec::new());
    for entry in entries.iter() {
        let mut header = tar::Header::new_ustar();
        header.set_mode(entry.mode);
        header.set_uid(entry.owner);
        header.set_gid(entry.owner);
        header.set_mtime(mtime.max(0) as u64);
        let name = if entry.owner == 0 { "root" } else { "nonroot" };
        header.set_username(name)?;
        header.set_groupname(name)?;
        match entry.content {
            Some(content) => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_size(content.len() as u64);
                builder.append_data(&mut header, entry.path, content)?;
            }
            None => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_size(0);
                builder.append_data(&mut header, format!("{}/", entry.path), &[][..])?;
            }
        }
    }
    builder.into_inner().context("finishing a layer's tar")
}

const PASSWD: &str = "root:x:0:0:root:/root:/sbin/nologin\n\
                      nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n\
                      nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n";
const GROUP: &str = "root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n";
/// Read by glibc/musl resolvers: look at /etc/hosts before DNS.
const NSSWITCH: &str = "hosts: files dns\n";
const OS_RELEASE: &str = "PRETTY_NAME=\"service-demo static (distroless-equivalent)\"\n\
                          ID=service-demo-static\n\
                          HOME_URL=\"https://github.com/example/service-demo\"\n";

/// The distroless-equivalent base: what `gcr.io/distroless/static:nonroot` has
/// that a static rustls service can use, and nothing else (no shell, no
/// package manager, no libc).
fn base_layer_tar(meta: &ImageMeta) -> Result<Vec<u8>> {
    let dir = |path, mode, owner| Entry {
        path,
        mode,
        owner,
        content: None,
    };
    let file = |path, content| Entry {
        path,
        mode: 0o644,
        owner: 0,
        content: Some(content),
    };
    let mut entries = vec![
        dir("etc", 0o755, 0),
        dir("home", 0o755, 0),
        dir("home/nonroot", 0o700, NONROOT_ID),
        dir("root", 0o700, 0),
        // Sticky and world-writable, like every /tmp.
        dir("tmp", 0o1777, 0),
        dir("usr", 0o755, 0),
        dir("usr/local", 0o755, 0),
        dir("usr/local/bin", 0o755, 0),
        file("etc/passwd", PASSWD.as_bytes()),
        file("etc/group", GROUP.as_bytes()),
        file("etc/nsswitch.conf", NSSWITCH.as_bytes()),
        file("etc/os-release", OS_RELEASE.as_bytes()),
    ];
    if let Some(certs) = &meta.ca_certificates {
        entries.extend([
            dir("etc/ssl", 0o755, 0),
            dir("etc/ssl/certs", 0o755, 0),
            file("etc/ssl/certs/ca-certificates.crt", certs),
        ]);
    }
    tar(&mut entries, meta.created_epoch)
}

fn app_layer_tar(binary: &[u8], name: &str, mtime: i64) -> Result<Vec<u8>> {
    tar(
        &mut [Entry {
            path: &binary_path(name),
            mode: 0o755,
            owner: 0,
            content: Some(binary),
        }],
        mtime,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_layer_file_is_found_in_plain_and_gzip_tars() {
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(3);
        header.set_mode(0o755);
        header.set_cksum();
        builder
            .append_data(&mut header, "./usr/local/bin/app", &b"elf"[..])
            .unwrap();
        let plain = builder.into_inner().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &plain).unwrap();
        let gzipped = gz.finish().unwrap();
        for blob in [&plain, &gzipped] {
            assert_eq!(
                file_in_layer(blob, "usr/local/bin/app").unwrap(),
                Some(b"elf".to_vec())
            );
            assert_eq!(file_in_layer(blob, "usr/local/bin/other").unwrap(), None);
        }
    }

    fn meta() -> ImageMeta {
        ImageMeta {
            created_epoch: 1_700_000_000,
            labels: BTreeMap::from([("org.opencontainers.image.version".into(), "1".into())]),
            ca_certificates: Some(b"-----BEGIN CERTIFICATE-----\n".to_vec()),
            // The Dockerfile's service.
            port: 8080,
            binary: "items-api".to_owned(),
        }
    }

    /// The Dockerfile is the Docker route to the same image: same user,
    /// entrypoint, port and healthcheck as the config assembled here.
    #[test]
    fn dockerfile_matches_the_assembled_config() {
        let dockerfile = include_str!("../../../Dockerfile");
        let config = serde_json::to_value(image_config(Arch::Amd64, &meta(), ["a", "b"])).unwrap();
        let runtime = &config["config"];
        let expect = [
            format!("USER {}", runtime["User"].as_str().unwrap()),
            format!("ENTRYPOINT {}", runtime["Entrypoint"]).replace(',', ", "),
            format!(
                "COPY --from=builder /src/target/x86_64-unknown-linux-musl/release/items-api /{}",
                binary_path("items-api")
            ),
            "EXPOSE 8080".to_owned(),
            format!("STOPSIGNAL {}", runtime["StopSignal"].as_str().unwrap()),
            format!(
                "CMD {}",
                serde_json::json!(runtime["Healthcheck"]["Test"].as_array().unwrap()[1..])
            )
            .replace(',', ", "),
            "FROM gcr.io/distroless/static-debian12:nonroot".to_owned(),
        ];
        for line in expect {
            assert!(dockerfile.contains(&line), "Dockerfile lacks {line:?}");
        }
    }

    /// The Docker route builds from what it copies: every part of items-api's
    /// package and of service-kit's that a build reads (their tests and
    /// xtask's service.toml aside).
    #[test]
    fn dockerfile_copies_everything_the_service_builds_from() {
        let dockerfile = include_str!("../../../Dockerfile");
        for package in ["services/items-api", "crates/service-kit"] {
            let dir = crate::plumbing::workspace::root().join(package);
            for entry in std::fs::read_dir(&dir).unwrap() {
                let name = entry.unwrap().file_name().into_string().unwrap();
                if matches!(name.as_str(), "tests" | "service.toml") {
                    continue;
                }
                let copy = format!("COPY {package}/{name} {package}/");
                assert!(dockerfile.contains(&copy), "Dockerfile lacks {copy:?}");
            }
        }
    }

    #[test]
    fn same_inputs_give_the_same_digest_and_different_inputs_do_not() {
        let bin = vec![(Arch::Amd64, b"\x7fELF binary".to_vec())];
        let a = assemble(&bin, &meta()).unwrap();
        let b = assemble(&bin, &meta()).unwrap();
        assert_eq!(a.root.digest, b.root.digest);
        let mut later = meta();
        later.created_epoch += 1;
        assert_ne!(a.root.digest, assemble(&bin, &later).unwrap().root.digest);
        let other = vec![(Arch::Amd64, b"\x7fELF other".to_vec())];
        assert_ne!(
            a.root.digest,
            assemble(&other, &meta()).unwrap().root.digest
        );
    }

    #[test]
    fn base_layer_holds_the_distroless_files_owned_and_moded_as_distroless_does() {
        let tar_bytes = base_layer_tar(&meta()).unwrap();
        let mut archive = tar::Archive::new(&tar_bytes[..]);
        let mut seen = BTreeMap::new();
        for entry in archive.entries().unwrap() {
            let entry = entry.unwrap();
            let header = entry.header();
            seen.insert(
                entry.path().unwrap().to_string_lossy().into_owned(),
                (header.mode().unwrap(), header.uid().unwrap()),
            );
        }
        assert_eq!(seen["tmp/"], (0o1777, 0));
        assert_eq!(seen["home/nonroot/"], (0o700, NONROOT_ID));
        assert_eq!(seen["etc/passwd"], (0o644, 0));
        assert!(seen.contains_key("etc/ssl/certs/ca-certificates.crt"));
        assert!(
            !seen
                .keys()
                .any(|p| p.starts_with("bin") || p.contains("sh")),
            "no shell: {seen:?}"
        );
        assert!(PASSWD.contains("nonroot:x:65532:65532:"));
        assert!(GROUP.contains("nonroot:x:65532:"));
    }
}
