//! Images per service: `cargo xtask image build --service NAME` in a real git
//! repository holding a workspace of two services, one of them on its own
//! port and probe paths, built for real (cargo auditable, static) and read
//! back from the OCI layout it wrote; and `cargo xtask affected`'s outputs
//! for a GitHub Actions matrix.

mod support;

use std::path::Path;

use serde_json::Value;
use support::{TempDir, assert_fails, assert_ok, git, stdout, xtask_in};

/// `(path, text)` pairs written under `root`.
fn write(root: &Path, files: &[(&str, &str)]) {
    for (path, text) in files {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
}

/// A committed workspace of two services: `items-api` (8080, /healthz) and
/// `orders-api` (image `orders`, port 9091, /live and /ready, version 0.3.0),
/// neither with a dependency, so a release build takes seconds.
fn two_services() -> TempDir {
    let dir = TempDir::new("service-images");
    let root = dir.path();
    let package = |name: &str, version: &str| {
        format!(
            "[package]\nname = \"{name}\"\nversion = \"{version}\"\nedition = \"2024\"\n\
             license = \"MIT\"\nrepository = \"https://example.com/shop\"\n"
        )
    };
    let declaration = |image: &str, port: u16, health: &str, ready: &str| {
        format!(
            "image = \"{image}\"\nchart = \"charts/{image}\"\nport = {port}\n\
             health-path = \"{health}\"\nready-path = \"{ready}\"\nvalues-file = \"{image}.yaml\"\n"
        )
    };
    write(
        root,
        &[
            (
                "Cargo.toml",
                "[workspace]\nresolver = \"3\"\nmembers = [\"services/items-api\", \"services/orders-api\"]\n",
            ),
            (
                "services/items-api/Cargo.toml",
                &package("items-api", "0.1.0"),
            ),
            (
                "services/items-api/service.toml",
                &declaration("service-demo", 8080, "/healthz", "/readyz"),
            ),
            ("services/items-api/src/main.rs", "fn main() {}\n"),
            (
                "services/orders-api/Cargo.toml",
                &package("orders-api", "0.3.0"),
            ),
            (
                "services/orders-api/service.toml",
                &declaration("orders", 9091, "/live", "/ready"),
            ),
            (
                "services/orders-api/src/main.rs",
                "fn main() {\n    println!(\"orders-api built by image build\");\n}\n",
            ),
            ("charts/service-demo/Chart.yaml", "name: service-demo\n"),
            ("charts/orders/Chart.yaml", "name: orders\n"),
        ],
    );
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let lock = std::process::Command::new(cargo)
        .args(["generate-lockfile", "--offline"])
        .current_dir(root)
        .output()
        .unwrap();
    assert!(lock.status.success(), "{lock:?}");
    git(root, &["init", "--quiet", "--initial-branch=main"]);
    git(root, &["add", "-A"]);
    git(root, &["commit", "--quiet", "-m", "two services"]);
    dir
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn blob_path(layout: &Path, digest: &str) -> std::path::PathBuf {
    layout
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
}

/// The amd64 manifest and config of the image `tag` names in `layout`.
fn amd64_image(layout: &Path, tag: &str) -> (Value, Value) {
    let index = read_json(&layout.join("index.json"));
    let root = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .unwrap_or_else(|| panic!("no {tag} in {index:#}"));
    let image_index = read_json(&blob_path(layout, root["digest"].as_str().unwrap()));
    let amd64 = image_index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["platform"]["architecture"] == "amd64")
        .unwrap();
    let manifest = read_json(&blob_path(layout, amd64["digest"].as_str().unwrap()));
    let config = read_json(&blob_path(
        layout,
        manifest["config"]["digest"].as_str().unwrap(),
    ));
    (manifest, config)
}

/// The files of a gzip layer tar: path → bytes.
fn layer_files(layout: &Path, digest: &str) -> Vec<(String, Vec<u8>)> {
    let bytes = std::fs::read(blob_path(layout, digest)).unwrap();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&bytes[..]));
    archive
        .entries()
        .unwrap()
        .map(|entry| {
            let mut entry = entry.unwrap();
            let path = entry.path().unwrap().to_string_lossy().into_owned();
            let mut content = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut content).unwrap();
            (path, content)
        })
        .collect()
}

#[test]
fn a_second_service_is_built_as_its_own_image_with_its_port_binary_and_labels() {
    let dir = two_services();
    let root = dir.path().to_str().unwrap();
    let out = dir.path().join("layout");
    let head = git(dir.path(), &["rev-parse", "HEAD"]);
    let output = xtask_in(
        dir.path(),
        &[
            "image",
            "build",
            "--source",
            root,
            "--service",
            "orders-api",
            "--platform",
            "linux/amd64",
            "--output",
            out.to_str().unwrap(),
        ],
        &[],
    );
    assert_ok(&output);
    assert!(stdout(&output).contains("building orders-api for linux/amd64"));

    let (manifest, config) = amd64_image(&out, &format!("main-{head}"));
    let runtime = &config["config"];
    assert_eq!(
        runtime["Entrypoint"],
        serde_json::json!(["/usr/local/bin/orders-api"])
    );
    assert!(
        runtime["ExposedPorts"]["9091/tcp"].is_object(),
        "{runtime:#}"
    );
    assert!(runtime["ExposedPorts"]["8080/tcp"].is_null(), "{runtime:#}");
    assert!(
        runtime["Env"]
            .as_array()
            .unwrap()
            .contains(&"PORT=9091".into())
    );
    assert_eq!(
        runtime["Healthcheck"]["Test"],
        serde_json::json!(["CMD", "/usr/local/bin/orders-api", "healthcheck"])
    );
    assert_eq!(runtime["User"], "65532:65532");
    let labels = &runtime["Labels"];
    assert_eq!(labels["org.opencontainers.image.title"], "orders-api");
    assert_eq!(labels["org.opencontainers.image.version"], "0.3.0");
    assert_eq!(labels["org.opencontainers.image.revision"], head.as_str());

    // The application layer holds orders-api's own binary, static, at the entrypoint.
    let app = manifest["layers"].as_array().unwrap().last().unwrap();
    let files = layer_files(&out, app["digest"].as_str().unwrap());
    assert_eq!(files.len(), 1, "one file: the binary");
    let (path, binary) = &files[0];
    assert_eq!(path, "usr/local/bin/orders-api");
    assert!(binary.starts_with(b"\x7fELF"));
    let marker = b"orders-api built by image build";
    assert!(binary.windows(marker.len()).any(|w| w == marker));
}

/// Extra arguments, environment, and the error expected.
type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);

#[test]
fn the_service_and_its_repository_are_chosen_or_the_build_is_refused() {
    let dir = two_services();
    let root = dir.path().to_str().unwrap();
    let binary = dir.path().join("stand-in");
    std::fs::write(&binary, "bits").unwrap();
    let base = [
        "image",
        "build",
        "--source",
        root,
        "--binary",
        binary.to_str().unwrap(),
    ];
    let run = |extra: &[&str], envs: &[(&str, &str)]| {
        let mut args = base.to_vec();
        args.extend_from_slice(extra);
        xtask_in(dir.path(), &args, envs)
    };
    let registry = dir.path().join("registry");
    let out = dir.path().join("out");
    let cases: &[Case] = &[
        (
            &["--output", "out"],
            &[],
            "this workspace has 2 services (items-api, orders-api): name the ones to act on with --service NAME",
        ),
        (
            &["--service", "billing", "--output", "out"],
            &[],
            "no service \"billing\" in this workspace",
        ),
        (
            &["--service", "orders-api", "--push"],
            &[],
            "no image repository for orders-api: set --registry (IMAGE_REGISTRY",
        ),
        (
            &["--service", "orders-api", "--push"],
            &[("IMAGE_REPOSITORY", "127.0.0.1:5000/shop")],
            "--repository (IMAGE_REPOSITORY) names one image repository, but this workspace has 2",
        ),
    ];
    for (extra, envs, expected) in cases {
        let message = assert_fails(&run(extra, envs));
        assert!(message.contains(expected), "{extra:?}: {message}");
        assert!(
            !out.exists() && !registry.exists(),
            "{extra:?} wrote something"
        );
    }

    // --push with the registry: the service's own repository, <registry>/<image>.
    let oci = format!("oci:{}", registry.display());
    let head = git(dir.path(), &["rev-parse", "HEAD"]);
    assert_ok(&run(
        &["--service", "orders-api", "--push"],
        &[("IMAGE_REGISTRY", &oci)],
    ));
    let (_, config) = amd64_image(&registry.join("orders"), &format!("main-{head}"));
    assert!(config["config"]["ExposedPorts"]["9091/tcp"].is_object());
    assert!(!registry.join("service-demo").exists());
    // An explicit --push REPOSITORY still works for the one service built.
    let elsewhere = dir.path().join("elsewhere");
    assert_ok(&run(
        &[
            "--service",
            "items-api",
            "--push",
            &format!("oci:{}", elsewhere.display()),
        ],
        &[],
    ));
    let (_, config) = amd64_image(&elsewhere, &format!("main-{head}"));
    assert!(config["config"]["ExposedPorts"]["8080/tcp"].is_object());
}

#[test]
fn affected_writes_the_matrix_for_github_actions_and_falls_back_to_everything() {
    let dir = two_services();
    let base = git(dir.path(), &["rev-parse", "HEAD"]);
    write(
        dir.path(),
        &[("services/orders-api/src/main.rs", "fn main() { }\n")],
    );
    git(dir.path(), &["commit", "--quiet", "-am", "orders only"]);
    let outputs = dir.path().join("github-output");
    let github = [("GITHUB_OUTPUT", outputs.to_str().unwrap())];
    assert_ok(&xtask_in(
        dir.path(),
        &["affected", "--base", &base],
        &github,
    ));
    assert_eq!(
        std::fs::read_to_string(&outputs).unwrap(),
        "services=[\"orders-api\"]\n\
         matrix={\"include\":[{\"app\":\"orders\",\"service\":\"orders-api\"}]}\n"
    );

    // A first push: no range. Refused unless asked to build everything.
    let zeros = "0".repeat(40);
    let message = assert_fails(&xtask_in(dir.path(), &["affected", "--base", &zeros], &[]));
    assert!(
        message.contains("pass the commit the range starts from"),
        "{message}"
    );
    std::fs::remove_file(&outputs).unwrap();
    let output = xtask_in(
        dir.path(),
        &[
            "affected",
            "--base",
            &zeros,
            "--all-if-base-unknown",
            "--json",
        ],
        &github,
    );
    assert_ok(&output);
    let report: Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(
        report["affected"],
        serde_json::json!(["items-api", "orders-api"])
    );
    assert!(
        report["services"][1]["reasons"][0]
            .as_str()
            .unwrap()
            .contains(
                "is not a commit here (a first push, or a force push): every service is built"
            )
    );
    assert!(
        std::fs::read_to_string(&outputs)
            .unwrap()
            .starts_with("services=[\"items-api\",\"orders-api\"]\n")
    );
}

/// A bare GitOps repository (`GITOPS_REPO`) whose main holds both services'
/// preprod values, under `dir`.
fn gitops_repository(dir: &Path) -> String {
    let gitops = dir.join("gitops-remote");
    std::fs::create_dir_all(&gitops).unwrap();
    let (bare, work) = support::remote_and_clone(&gitops);
    let values = "image:\n  repository: \"\"\n  tag: \"\"\n  digest: \"\"\n";
    write(
        &work,
        &[
            ("values/preprod/service-demo.yaml", values),
            ("values/preprod/orders.yaml", values),
        ],
    );
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "--quiet", "-m", "preprod"]);
    git(&work, &["push", "--quiet", "origin", "HEAD:main"]);
    bare.to_str().unwrap().to_owned()
}

/// Anyone who can push packages can move a tag or copy an image (with its
/// signature) from one service's repository into another's. The bits' own
/// labels (service and commit, in the config the digest covers) say what
/// they are: promote refuses `main-<sha>` naming an older build of this
/// repository, or another service's image, and changes nothing.
#[test]
fn promote_refuses_bits_whose_labels_say_the_tag_does_not_name_them() {
    let dir = two_services();
    let root = dir.path();
    let gitops = gitops_repository(root);
    let registry = format!("oci:{}", root.join("registry").display());
    let env = [("GITOPS_REPO", gitops.as_str())];
    let build = |service: &str, repository: &str| {
        let source = root.to_str().unwrap();
        let args = [
            "image",
            "build",
            "--source",
            source,
            "--service",
            service,
            "--platform",
            "linux/amd64",
            "--push",
            repository,
        ];
        assert_ok(&xtask_in(root, &args, &[]));
    };
    let promote = |service: &str, tag: &str| {
        let args = [
            "promote",
            "--service",
            service,
            "--env",
            "preprod",
            "--tag",
            tag,
            "--registry",
            &registry,
        ];
        xtask_in(root, &args, &env)
    };
    let commit = |file: &str| {
        write(root, &[(file, "orders\n")]);
        git(root, &["add", "-A"]);
        git(root, &["commit", "--quiet", "-m", "docs: orders"]);
        git(root, &["rev-parse", "HEAD"])
    };
    let old = git(root, &["rev-parse", "HEAD"]);
    build("orders-api", &format!("{registry}/orders"));
    let new = commit("services/orders-api/README.md");
    build("orders-api", &format!("{registry}/orders"));
    // Its own build of <new> is promoted.
    assert_ok(&promote("orders-api", &format!("main-{new}")));
    let state = || git(Path::new(&gitops), &["rev-parse", "main"]);
    let before = state();

    // main-<newer> names the old build.
    let newer = commit("services/orders-api/CHANGELOG.md");
    let retag = [
        "image",
        "retag",
        &format!("main-{old}"),
        &format!("main-{newer}"),
        "--repository",
        &format!("{registry}/orders"),
    ];
    assert_ok(&xtask_in(root, &retag, &[]));
    let error = assert_fails(&promote("orders-api", &format!("main-{newer}")));
    assert!(
        error.contains(&format!("was built from {}", &old[..7])) && error.contains("a tag moved"),
        "{error}"
    );
    // orders-api's build of <newer> copied into items-api's repository.
    build("orders-api", &format!("{registry}/service-demo"));
    let error = assert_fails(&promote("items-api", &format!("main-{newer}")));
    assert!(
        error.contains("is orders-api's image") && error.contains("not items-api's"),
        "{error}"
    );
    assert_eq!(
        state(),
        before,
        "a refused promotion changed the GitOps repository"
    );
}
