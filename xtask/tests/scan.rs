//! `cargo xtask scan` and `cargo auditable` builds, with real parts: ELF files
//! given a `.dep-v0` section by `objcopy`, the RustSec snapshot of
//! `../shared/` (ADVISORY_DB_SNAPSHOT), and an image built by `image build`
//! and pushed to a real registry on loopback.

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};

use support::{Registry, TempDir, assert_fails, assert_ok, head, require, stdout, xtask};

/// The RustSec database: ADVISORY_DB_SNAPSHOT (`.ci/run` sets it: the
/// snapshot beside the repository, or a fresh clone), or that snapshot.
fn snapshot() -> Option<String> {
    let path = std::env::var_os("ADVISORY_DB_SNAPSHOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| support::workspace_root().join("../shared/advisory-db.tar.gz"));
    require(
        path.exists(),
        "the RustSec snapshot (ADVISORY_DB_SNAPSHOT=…/advisory-db.tar.gz)",
    )?;
    Some(path.to_str().unwrap().to_owned())
}

/// A copy of a real ELF (this test's own binary) with `packages` as its
/// `.dep-v0` section: zlib-compressed JSON, as cargo auditable writes it.
fn elf_with_dependencies(dir: &Path, packages: serde_json::Value) -> String {
    require(
        support::on_path("objcopy"),
        "objcopy (apt-get install binutils)",
    )
    .unwrap();
    let json = serde_json::json!({ "packages": packages }).to_string();
    let mut zlib = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    zlib.write_all(json.as_bytes()).unwrap();
    let section = dir.join(format!("dep-v0-{}", fastrand::u64(..)));
    std::fs::write(&section, zlib.finish().unwrap()).unwrap();
    let elf = dir.join(format!("app-{}", fastrand::u64(..)));
    let status = std::process::Command::new("objcopy")
        .arg(format!("--add-section=.dep-v0={}", section.display()))
        .arg(std::env::current_exe().unwrap())
        .arg(&elf)
        .status()
        .unwrap();
    assert!(status.success(), "objcopy");
    elf.to_str().unwrap().to_owned()
}

fn app_using(dependencies: &[(&str, &str)]) -> serde_json::Value {
    let mut packages = vec![serde_json::json!({
        "name": "app", "version": "0.1.0", "source": "local", "root": true,
        "dependencies": (1..=dependencies.len()).collect::<Vec<_>>(),
    })];
    for (name, version) in dependencies {
        packages.push(serde_json::json!({"name": name, "version": version, "source": "crates.io"}));
    }
    serde_json::Value::Array(packages)
}

#[test]
fn a_binary_with_a_vulnerable_package_fails_naming_the_advisory() {
    let Some(db) = snapshot() else { return };
    let dir = TempDir::new("scan-vulnerable");
    let elf = elf_with_dependencies(dir.path(), app_using(&[("hyper", "0.14.9")]));
    let out = xtask(&["scan", "--binary", &elf, "--advisory-db", &db], &[]);
    let all = assert_fails(&out);
    // hyper < 0.14.10: lenient Content-Length parsing.
    assert!(all.contains("✘ hyper 0.14.9: RUSTSEC-2021-0078"), "{all}");
    assert!(all.contains("patched: >=0.14.10"), "{all}");
    assert!(all.contains("known vulnerabilities"), "{all}");
}

#[test]
fn fetch_advisory_db_reads_the_database_from_a_git_repository() {
    let Some(db) = snapshot() else { return };
    let dir = TempDir::new("scan-fetch");
    // The snapshot's database as a git repository on disk (what github.com/rustsec/advisory-db is).
    let repo = dir.path().join("advisory-db.git");
    let unpack = std::process::Command::new("tar")
        .args(["-xzf", &db, "-C"])
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(unpack.success());
    let source = dir.path().join("advisory-db");
    for args in [
        &["init", "--quiet"][..],
        &["add", "crates"],
        &[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "commit",
            "--quiet",
            "-m",
            "db",
        ],
    ] {
        let status = std::process::Command::new("git")
            .args(args)
            .current_dir(&source)
            .status()
            .unwrap();
        assert!(status.success(), "git {args:?}");
    }
    std::fs::rename(source.join(".git"), &repo).unwrap();
    let elf = elf_with_dependencies(dir.path(), app_using(&[("hyper", "0.14.9")]));
    let url = format!("--fetch-advisory-db=file://{}", repo.display());
    let all = assert_fails(&xtask(&["scan", "--binary", &elf, &url], &[]));
    assert!(all.contains("✘ hyper 0.14.9: RUSTSEC-2021-0078"), "{all}");
    // A URL git would read as an option is refused before anything runs.
    let all = assert_fails(&xtask(
        &[
            "scan",
            "--binary",
            &elf,
            "--fetch-advisory-db=--upload-pack=x",
        ],
        &[],
    ));
    assert!(all.contains("begins with '-'"), "{all}");
}

#[test]
fn a_binary_with_patched_packages_passes_and_unmaintained_ones_only_warn() {
    let Some(db) = snapshot() else { return };
    let dir = TempDir::new("scan-patched");
    let elf = elf_with_dependencies(
        dir.path(),
        app_using(&[("hyper", "0.14.32"), ("ansi_term", "0.12.1")]),
    );
    let sbom = dir.path().join("sbom.json");
    let out = xtask(
        &["scan", "--binary", &elf, "--sbom", sbom.to_str().unwrap()],
        &[("ADVISORY_DB_SNAPSHOT", &db)],
    );
    assert_ok(&out);
    let printed = stdout(&out);
    assert!(printed.contains(": 3 packages"), "{printed}");
    assert!(
        printed.contains("! ansi_term 0.12.1: RUSTSEC-2021-0139")
            && printed.contains("unmaintained"),
        "{printed}"
    );
    assert!(!printed.contains('✘'), "{printed}");
    assert!(
        printed.contains("scanned 3 packages: 0 vulnerable, 1 warnings"),
        "{printed}"
    );
    let sbom: serde_json::Value = serde_json::from_slice(&std::fs::read(&sbom).unwrap()).unwrap();
    assert_eq!(sbom["bomFormat"], "CycloneDX");
    assert_eq!(sbom["metadata"]["component"]["name"], "app");
    let purls: Vec<&str> = sbom["components"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["purl"].as_str())
        .collect();
    assert_eq!(
        purls,
        ["pkg:cargo/ansi_term@0.12.1", "pkg:cargo/hyper@0.14.32"]
    );
}

#[test]
fn a_binary_built_without_cargo_auditable_is_refused_with_the_fix() {
    let Some(db) = snapshot() else { return };
    let me = std::env::current_exe().unwrap();
    let out = xtask(
        &[
            "scan",
            "--binary",
            me.to_str().unwrap(),
            "--advisory-db",
            &db,
        ],
        &[],
    );
    let all = assert_fails(&out);
    assert!(all.contains("no .dep-v0 section"), "{all}");
    assert!(
        all.contains("built without cargo auditable: rebuild with `cargo xtask image build`"),
        "{all}"
    );
    // No database at all: the error says where to get one.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["scan", "--binary", me.to_str().unwrap()])
        .env_remove("ADVISORY_DB_SNAPSHOT")
        .output()
        .unwrap();
    let all = assert_fails(&out);
    assert!(all.contains("ADVISORY_DB_SNAPSHOT"), "{all}");
}

#[test]
fn an_image_whose_binary_has_no_dependency_list_is_built_with_a_warning_and_refused_by_scan() {
    let Some(db) = snapshot() else { return };
    let dir = TempDir::new("scan-no-list");
    let binary = dir.path().join("items-api");
    std::fs::write(&binary, "not a program").unwrap();
    let layout = format!("oci:{}", dir.path().join("layout").display());
    let build = xtask(
        &[
            "image",
            "build",
            "--binary",
            binary.to_str().unwrap(),
            "--push",
            &layout,
        ],
        &[],
    );
    assert_ok(&build);
    let warned = support::stderr(&build);
    assert!(
        warned.contains("`cargo xtask scan` will refuse this image"),
        "{warned}"
    );
    let tag = format!("main-{}", head());
    let out = xtask(&["scan", &layout, &tag], &[("ADVISORY_DB_SNAPSHOT", &db)]);
    let all = assert_fails(&out);
    assert!(
        all.contains("the linux/amd64 binary is not an executable"),
        "{all}"
    );
}

#[test]
fn image_build_without_cargo_auditable_fails_naming_the_install_and_writes_nothing() {
    // A PATH and cargo home where cargo, rustc and rustup are, but no cargo-auditable.
    let dir = TempDir::new("no-auditable");
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let cargo = xtask::plumbing::process::which("cargo").expect("cargo on PATH");
    let tools = cargo.parent().unwrap();
    for tool in ["cargo", "rustc", "rustup"] {
        if tools.join(tool).is_file() {
            std::os::unix::fs::symlink(tools.join(tool), bin.join(tool)).unwrap();
        }
    }
    let cargo_home = dir.path().join("cargo-home");
    std::fs::create_dir(&cargo_home).unwrap();
    let path = format!("{}:/usr/bin:/bin", bin.display());
    let output = dir.path().join("layout");
    let out = xtask(
        &["image", "build", "--output", output.to_str().unwrap()],
        &[
            ("PATH", &path),
            ("CARGO_HOME", cargo_home.to_str().unwrap()),
            (
                "RUSTUP_HOME",
                &std::env::var("RUSTUP_HOME")
                    .unwrap_or_else(|_| format!("{}/.rustup", std::env::var("HOME").unwrap())),
            ),
        ],
    );
    let all = assert_fails(&out);
    assert!(all.contains("cargo-auditable is not installed"), "{all}");
    assert!(
        all.contains("`cargo install cargo-auditable@0.7.7 --locked`"),
        "{all}"
    );
    assert!(!output.exists(), "nothing written");
}

#[test]
fn an_image_built_by_image_build_scans_clean_and_its_sbom_is_signed() {
    let Some(db) = snapshot() else { return };
    let Some(registry) = Registry::start() else {
        return;
    };
    let dir = TempDir::new("scan-image");
    let repo = registry.repository();
    // Two key pairs, as CD has them: one signs main's images, the other the SBOM (and gates).
    let (keys, image_keys) = (dir.path().join("keys"), dir.path().join("image-keys"));
    for out_dir in [&keys, &image_keys] {
        assert_ok(&xtask(
            &["gate", "keygen", "--out-dir", out_dir.to_str().unwrap()],
            &[],
        ));
    }
    let image_key = std::fs::read_to_string(image_keys.join("gate.key")).unwrap();
    assert_ok(&xtask(
        &["image", "build", "--push", &repo],
        &[("IMAGE_SIGNING_KEY", &image_key)],
    ));
    let tag = format!("main-{}", head());

    let sbom = dir.path().join("sbom.json");
    let key = std::fs::read_to_string(keys.join("gate.key")).unwrap();
    let out = xtask(
        &[
            "scan",
            &repo,
            &tag,
            "--sbom",
            sbom.to_str().unwrap(),
            "--attest",
            // The image job's signature is checked before the SBOM is signed.
            "--image-key",
            image_keys.join("gate.pub").to_str().unwrap(),
        ],
        &[("ADVISORY_DB_SNAPSHOT", &db), ("GATE_SIGNING_KEY", &key)],
    );
    assert_ok(&out);
    let printed = stdout(&out);
    let scanned: usize = printed
        .lines()
        .find_map(|l| l.strip_prefix("scanned "))
        .and_then(|l| l.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("a count of packages: {printed}"));
    // items-api's tree (axum, tokio, serde, …) is well over 50 packages.
    assert!(scanned > 50, "{printed}");
    assert!(printed.contains("linux/amd64: "), "{printed}");
    assert!(printed.contains(" 0 vulnerable"), "{printed}");
    assert!(!printed.contains(&key), "the key leaked");

    let document: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&sbom).unwrap()).unwrap();
    assert_eq!(document["metadata"]["component"]["name"], "items-api");
    let names: Vec<&str> = document["components"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert!(
        names.contains(&"axum") && names.contains(&"tokio"),
        "{names:?}"
    );

    // The signed SBOM verifies with the CD key, about exactly this image; but an SBOM
    // is no gate: verify says no until a passing preprod-tests result is signed too.
    let verify = xtask(
        &[
            "verify",
            &repo,
            &tag,
            "--public-key",
            keys.join("gate.pub").to_str().unwrap(),
            "--image-key",
            image_keys.join("gate.pub").to_str().unwrap(),
        ],
        &[],
    );
    let error = assert_fails(&verify);
    assert!(
        stdout(&verify).contains("✔ https://cyclonedx.org/bom"),
        "{}",
        stdout(&verify)
    );
    assert!(
        error
            .contains("no https://service-demo.dev/preprod-tests/v1 result signed by the gate key"),
        "{error}"
    );

    // --attest without the key is refused, not skipped.
    let out = xtask(
        &["scan", &repo, &tag, "--attest"],
        &[("ADVISORY_DB_SNAPSHOT", &db)],
    );
    let all = assert_fails(&out);
    assert!(all.contains("GATE_SIGNING_KEY"), "{all}");

    // A pull request's image is never vouched for with the CD key.
    let out = xtask(
        &["scan", &repo, "pr-1-0000000", "--attest"],
        &[("ADVISORY_DB_SNAPSHOT", &db), ("GATE_SIGNING_KEY", &key)],
    );
    let all = assert_fails(&out);
    assert!(all.contains("a pull request's image"), "{all}");
}
