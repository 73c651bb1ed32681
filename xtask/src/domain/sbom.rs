//! What an image is made of: the dependency list `cargo auditable` embeds in
//! the service binary (the `.dep-v0` section), read back from a file or from
//! an image in a repository, and written as a CycloneDX SBOM.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use auditable_serde::{DependencyKind, Package, Source, VersionInfo};
use serde_json::{Value, json};

use crate::domain::oci;
use crate::domain::registry::{Repository, at};

/// The predicate type of the SBOM attestation (what `cosign verify-attestation --type cyclonedx` checks).
pub const CYCLONEDX_PREDICATE: &str = "https://cyclonedx.org/bom";

/// One binary's embedded dependency list, and where the binary came from.
pub struct Binary {
    /// `linux/amd64`, or the file's path.
    pub origin: String,
    pub dependencies: VersionInfo,
}

/// The dependency list embedded in `bytes` (an ELF, Mach-O or PE file).
pub fn dependencies_of(bytes: &[u8], origin: &str) -> Result<VersionInfo> {
    // A generous limit: the list is a few KiB even for large programs.
    match auditable_info::audit_info_from_slice(bytes, 64 << 20) {
        Ok(info) => Ok(info),
        Err(auditable_info::Error::NoAuditData) => bail!(
            "{origin} carries no dependency list (no .dep-v0 section): it was built without cargo \
             auditable: rebuild with `cargo xtask image build`"
        ),
        Err(auditable_info::Error::BinaryParsing(auditable_extract::Error::NotAnExecutable)) => {
            bail!("{origin} is not an executable (ELF, Mach-O or PE): it has no dependency list")
        }
        Err(error) => {
            Err(error).with_context(|| format!("reading the dependency list of {origin}"))
        }
    }
}

/// The service binary of every platform of the image `reference` names in
/// `repository` (an index or a single image), with its dependency list.
pub fn image_binaries(repository: &Repository, reference: &str) -> Result<(String, Vec<Binary>)> {
    let (bytes, root) = repository.manifest(reference)?;
    let document: Value = serde_json::from_slice(&bytes)
        .with_context(|| format!("{repository}{} is not JSON", at(reference)))?;
    // A single-platform manifest is its own only entry; attestations are no platform.
    let entries: Vec<(String, String)> = match oci::index_entries(&document) {
        Some(list) => list
            .into_iter()
            .filter(|(platform, _)| !platform.starts_with("unknown/"))
            .collect(),
        None => vec![("the image".to_owned(), root.digest.clone())],
    };
    let mut binaries = Vec::new();
    for (platform, digest) in entries {
        let binary = platform_binary(repository, &digest)
            .with_context(|| format!("{repository}@{digest} ({platform})"))?;
        let dependencies = dependencies_of(&binary, &format!("the {platform} binary"))?;
        binaries.push(Binary {
            origin: platform,
            dependencies,
        });
    }
    Ok((root.digest, binaries))
}

/// The entrypoint's bytes in one platform's image: the config names the
/// program, the last layer holding that path has it.
fn platform_binary(repository: &Repository, digest: &str) -> Result<Vec<u8>> {
    let (bytes, _) = repository.manifest(digest)?;
    let manifest: Value = serde_json::from_slice(&bytes).context("the manifest is not JSON")?;
    let config: Value = serde_json::from_slice(
        &repository.blob(manifest["config"]["digest"].as_str().unwrap_or_default())?,
    )
    .context("the image config is not JSON")?;
    let program = ["Entrypoint", "Cmd"]
        .iter()
        .find_map(|key| config["config"][key][0].as_str())
        .context("the image config names no entrypoint or command")?;
    let wanted = program.trim_start_matches('/');
    let mut found = None;
    for layer in manifest["layers"].as_array().into_iter().flatten() {
        let blob = repository.blob(layer["digest"].as_str().unwrap_or_default())?;
        if let Some(file) = oci::file_in_layer(&blob, wanted)? {
            found = Some(file);
        }
    }
    found.with_context(|| format!("no layer holds the entrypoint {program}"))
}

/// A package's identity: its purl for crates.io, else `name@version`.
fn bom_ref(package: &Package) -> String {
    match package.source {
        Source::CratesIo => format!("pkg:cargo/{}@{}", package.name, package.version),
        _ => format!("{}@{}", package.name, package.version),
    }
}

/// A CycloneDX 1.5 SBOM (JSON) of `binaries`: the root package as the
/// subject, every other package as a component, and the dependency graph.
/// No serial number or timestamp, so one image always gives the same bytes.
pub fn cyclonedx(binaries: &[Binary]) -> Value {
    let mut components = BTreeMap::new();
    let mut dependencies: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut subject = None;
    for binary in binaries {
        let packages = &binary.dependencies.packages;
        for package in packages {
            let reference = bom_ref(package);
            let depends_on = dependencies.entry(reference.clone()).or_default();
            for &dependency in &package.dependencies {
                let Some(dependency) = packages.get(dependency) else {
                    continue;
                };
                if !depends_on.contains(&bom_ref(dependency)) {
                    depends_on.push(bom_ref(dependency));
                }
            }
            let mut component = json!({
                "type": if package.root { "application" } else { "library" },
                "bom-ref": reference,
                "name": package.name,
                "version": package.version.to_string(),
                // Build-time packages (build scripts, proc macros) are not in the running binary.
                "scope": if package.kind == DependencyKind::Build { "excluded" } else { "required" },
            });
            if package.source == Source::CratesIo {
                component["purl"] = json!(reference);
            }
            if package.root {
                subject.get_or_insert(component);
            } else {
                components.insert(reference, component);
            }
        }
    }
    json!({
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "version": 1,
        "metadata": {
            "tools": {"components": [{"type": "application", "name": "cargo-xtask-scan"}]},
            "component": subject,
        },
        "components": components.into_values().collect::<Vec<_>>(),
        "dependencies": dependencies
            .into_iter()
            .map(|(reference, depends_on)| json!({"ref": reference, "dependsOn": depends_on}))
            .collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(json: Value) -> VersionInfo {
        // Source deserializes from a borrowed str: parse text, not a Value.
        serde_json::from_str(&json.to_string()).unwrap()
    }

    #[test]
    fn the_sbom_names_the_root_as_subject_and_every_package_once() {
        let amd64 = info(json!({"packages": [
            {"name": "items-api", "version": "0.1.0", "source": "local", "dependencies": [1, 2], "root": true},
            {"name": "serde", "version": "1.0.200", "source": "crates.io"},
            {"name": "cc", "version": "1.1.0", "source": "crates.io", "kind": "build"},
        ]}));
        let arm64 = info(json!({"packages": [
            {"name": "items-api", "version": "0.1.0", "source": "local", "dependencies": [1], "root": true},
            {"name": "serde", "version": "1.0.200", "source": "crates.io"},
        ]}));
        let sbom = cyclonedx(&[
            Binary {
                origin: "linux/amd64".into(),
                dependencies: amd64,
            },
            Binary {
                origin: "linux/arm64".into(),
                dependencies: arm64,
            },
        ]);
        assert_eq!(sbom["bomFormat"], "CycloneDX");
        assert_eq!(sbom["metadata"]["component"]["name"], "items-api");
        assert_eq!(sbom["metadata"]["component"]["type"], "application");
        let components = sbom["components"].as_array().unwrap();
        assert_eq!(components.len(), 2, "{components:?}");
        let cc = components.iter().find(|c| c["name"] == "cc").unwrap();
        assert_eq!(cc["purl"], "pkg:cargo/cc@1.1.0");
        assert_eq!(cc["scope"], "excluded");
        let root = sbom["dependencies"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["ref"] == "items-api@0.1.0")
            .unwrap();
        assert_eq!(
            root["dependsOn"],
            json!(["pkg:cargo/serde@1.0.200", "pkg:cargo/cc@1.1.0"])
        );
    }
}
