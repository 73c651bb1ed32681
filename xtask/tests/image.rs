//! `cargo xtask image …` against real things: the real static build, a real
//! distribution v2 registry on loopback, OCI layout directories, and a real
//! container engine running the built image.

mod support;

use std::path::Path;

use serde_json::Value;
use support::{Registry, TempDir, assert_fails, assert_ok, git, head, stderr, stdout, xtask};

/// A stand-in binary for registry tests: content only matters for the digest.
/// (Tests that run the image use the real build.)
fn fake_binary(dir: &Path, content: &str) -> String {
    let path = dir.join(format!("bin-{}", fastrand::u64(..)));
    std::fs::write(&path, content).unwrap();
    path.to_str().unwrap().to_owned()
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn blob(layout: &Path, digest: &str) -> Value {
    read_json(
        &layout
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:")),
    )
}

/// The digest a layout's tag names.
fn layout_tag(layout: &Path, tag: &str) -> Option<String> {
    read_json(&layout.join("index.json"))["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .map(|m| m["digest"].as_str().unwrap().to_owned())
}

/// Both kinds of repository, with the same rules.
fn repositories(dir: &TempDir) -> Option<(Registry, [String; 2])> {
    let registry = Registry::start()?;
    let layout = format!("oci:{}", dir.path().join("layout-registry").display());
    let remote = registry.repository();
    Some((registry, [remote, layout]))
}

/// A second checkout of this workspace's content (HEAD plus the working
/// tree's uncommitted changes) at another path. xtask builds a checkout other
/// than the workspace in `<target>/other-checkouts`, so its build shares
/// nothing with the workspace's. Its own fixed folder: the demo's test, which
/// may run at the same time, checks out other commits in `xtask/demo-checkout`
/// (a checkout's path is not in its build's flags, so any path stays warm).
fn second_checkout() -> std::path::PathBuf {
    let root = support::workspace_root();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| root.join("target"), |dir| root.join(dir));
    let checkout = target.join("xtask/image-test-checkout");
    if !checkout.join(".git").exists() {
        std::fs::create_dir_all(checkout.parent().unwrap()).unwrap();
        let (from, to) = (root.to_str().unwrap(), checkout.to_str().unwrap());
        git(&root, &["clone", "--quiet", "--no-checkout", from, to]);
    }
    git(
        &checkout,
        &["fetch", "--quiet", root.to_str().unwrap(), "HEAD"],
    );
    git(
        &checkout,
        &["checkout", "--quiet", "--force", "--detach", "FETCH_HEAD"],
    );
    git(&checkout, &["clean", "--quiet", "-d", "--force"]);
    let changes = std::process::Command::new("git")
        .args(["diff", "HEAD", "--binary"])
        .current_dir(&root)
        .output()
        .unwrap();
    assert!(changes.status.success());
    if !changes.stdout.is_empty() {
        let mut apply = std::process::Command::new("git")
            .args(["apply", "--whitespace=nowarn", "-"])
            .current_dir(&checkout)
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        apply
            .stdin
            .take()
            .unwrap()
            .write_all(&changes.stdout)
            .unwrap();
        assert!(
            apply.wait().unwrap().success(),
            "git apply in {}",
            checkout.display()
        );
    }
    assert_eq!(git(&checkout, &["rev-parse", "HEAD"]), head());
    checkout
}

/// `target/<triple>/release/items-api` exists under `target` for some triple.
fn has_release_binary(target: &Path) -> bool {
    std::fs::read_dir(target)
        .into_iter()
        .flatten()
        .flatten()
        .any(|entry| entry.path().join("release/items-api").is_file())
}

#[test]
fn the_real_build_is_static_reproducible_and_labelled() {
    let dir = TempDir::new("image-build");
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let head = head();
    // Two checkouts at different paths, each built in its own target directory.
    // The second first: meanwhile the container test builds the workspace, and
    // two builds share the 2 cores better than one build's single-threaded LTO.
    let second = second_checkout();
    for (out, source) in [(&b, Some(&second)), (&a, None)] {
        let mut args = vec!["image", "build", "--output", out.to_str().unwrap()];
        if let Some(source) = source {
            args.extend(["--source", source.to_str().unwrap()]);
        }
        let output = xtask(&args, &[]);
        assert_ok(&output);
        assert!(
            stdout(&output).contains("compressed, assembled in"),
            "{}",
            stdout(&output)
        );
    }
    let root = support::workspace_root();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| root.join("target"), |dir| root.join(dir));
    assert!(
        has_release_binary(&target),
        "the workspace's build in {}",
        target.display()
    );
    assert!(
        has_release_binary(&target.join("other-checkouts")),
        "the second checkout's build in its own target directory"
    );
    let tag = format!("main-{head}");
    let digest = layout_tag(&a, &tag).expect("default tag is main-<HEAD>");
    assert_eq!(
        Some(&digest),
        layout_tag(&b, &tag).as_ref(),
        "two checkouts at two paths, built in two target directories: one digest"
    );

    let index = blob(&a, &digest);
    assert_eq!(
        index["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    let amd64 = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["platform"]["architecture"] == "amd64")
        .expect("an amd64 image");
    let manifest = blob(&a, amd64["digest"].as_str().unwrap());
    let config = blob(&a, manifest["config"]["digest"].as_str().unwrap());
    assert_eq!(config["config"]["User"], "65532:65532");
    assert_eq!(
        config["config"]["Entrypoint"],
        serde_json::json!(["/usr/local/bin/items-api"])
    );
    assert!(config["config"]["ExposedPorts"]["8080/tcp"].is_object());
    let labels = &config["config"]["Labels"];
    assert_eq!(labels["org.opencontainers.image.revision"], head.as_str());
    assert_eq!(
        labels["org.opencontainers.image.version"],
        env!("CARGO_PKG_VERSION")
    );
    assert!(
        labels["org.opencontainers.image.source"]
            .as_str()
            .unwrap()
            .starts_with("https://")
    );
    assert!(labels["org.opencontainers.image.created"].is_string());

    // The timestamp comes from SOURCE_DATE_EPOCH (or the commit), never the clock.
    let c = dir.path().join("c");
    assert_ok(&xtask(
        &["image", "build", "--output", c.to_str().unwrap()],
        &[("SOURCE_DATE_EPOCH", "1000000000")],
    ));
    let other = layout_tag(&c, &tag).unwrap();
    assert_ne!(other, digest);
    let created = blob(&c, &other)["annotations"]["org.opencontainers.image.created"].clone();
    assert_eq!(created, "2001-09-09T01:46:40Z");
}

#[test]
fn push_retag_and_inspect_against_a_real_registry_upload_no_blob_on_retag() {
    let dir = TempDir::new("image-push");
    let Some(registry) = Registry::start() else {
        return;
    };
    let repo = registry.repository();
    let head = head();
    let main_tag = format!("main-{head}");
    let binary = fake_binary(dir.path(), "static binary, version 1");

    // Inside GitHub Actions the digest is a step output for the next steps.
    let outputs = dir.path().join("github-output");
    std::fs::write(&outputs, "earlier=1\n").unwrap();
    let push = xtask(
        &["image", "build", "--binary", &binary, "--push", &repo],
        &[("GITHUB_OUTPUT", outputs.to_str().unwrap())],
    );
    assert_ok(&push);
    assert!(stdout(&push).contains("3 blobs"), "{}", stdout(&push));
    let pushed = stdout(&push);
    let digest = pushed
        .split_whitespace()
        .find(|w| w.starts_with("sha256:"))
        .unwrap();
    // Appended after what was there: the digest, then where the time went (lead time's split).
    let written = std::fs::read_to_string(&outputs).unwrap();
    let lines: Vec<&str> = written.lines().collect();
    assert_eq!(
        lines[..2],
        ["earlier=1", &format!("digest={digest}")],
        "{written}"
    );
    assert!(
        lines[2].starts_with("build-seconds=")
            && lines[3].starts_with("push-seconds=")
            && lines.len() == 4,
        "{written}"
    );
    // Pushing the same bits again uploads nothing.
    let again = xtask(
        &["image", "build", "--binary", &binary, "--push", &repo],
        &[],
    );
    assert_ok(&again);
    assert!(
        stdout(&again).contains("already names these bits"),
        "{}",
        stdout(&again)
    );

    let before = registry.requests().len();
    let retag = xtask(
        &["image", "retag", &main_tag, "v1.2.3", "--repository", &repo],
        &[],
    );
    assert_ok(&retag);
    let retag_requests = registry.requests()[before..].to_vec();
    assert!(
        retag_requests.iter().all(|r| !r.contains("/blobs/")),
        "a retag touches no blob: {retag_requests:#?}"
    );
    let puts: Vec<_> = retag_requests
        .iter()
        .filter(|r| r.starts_with("PUT"))
        .collect();
    assert_eq!(puts.len(), 1, "one manifest PUT: {retag_requests:#?}");
    assert!(puts[0].ends_with("/manifests/v1.2.3"), "{puts:?}");

    // Both names resolve to the same digest, as the registry reports it.
    let inspect = |reference: &str| {
        let output = xtask(&["image", "inspect", reference, "--repository", &repo], &[]);
        assert_ok(&output);
        stdout(&output)
    };
    let (of_main, of_release) = (inspect(&main_tag), inspect("v1.2.3"));
    let digest_line = |text: &str| {
        text.lines()
            .find(|l| l.contains("digest"))
            .unwrap()
            .to_owned()
    };
    assert_eq!(digest_line(&of_main), digest_line(&of_release));
    assert!(of_release.contains("linux/amd64"), "{of_release}");
    assert!(of_release.contains(&format!("org.opencontainers.image.revision={head}")));

    // Retagging again is a no-op that says so.
    let again = xtask(
        &["image", "retag", &main_tag, "v1.2.3", "--repository", &repo],
        &[],
    );
    assert_ok(&again);
    assert!(
        stdout(&again).contains("nothing to do"),
        "{}",
        stdout(&again)
    );
}

#[test]
fn tags_are_immutable_in_both_kinds_of_repository() {
    let dir = TempDir::new("image-immutable");
    let Some((_registry, repos)) = repositories(&dir) else {
        return;
    };
    let head = head();
    let (main_tag, pr_tag) = (format!("main-{head}"), format!("pr-7-{head}"));
    let first = fake_binary(dir.path(), "first build");
    let second = fake_binary(dir.path(), "second, different build");
    for repo in &repos {
        assert_ok(&xtask(
            &["image", "build", "--binary", &first, "--push", repo],
            &[],
        ));
        assert_ok(&xtask(
            &["image", "retag", &main_tag, "v1.0.0", "--repository", repo],
            &[],
        ));
        let released = xtask(&["image", "inspect", "v1.0.0", "--repository", repo], &[]);

        // Different bits under an existing tag: refused, tag unchanged.
        let moved = xtask(
            &["image", "build", "--binary", &second, "--push", repo],
            &[],
        );
        let message = assert_fails(&moved);
        assert!(message.contains("tags are immutable"), "{message}");
        let retag_pr = |tag: &str| {
            xtask(
                &[
                    "image", "build", "--binary", &second, "--tag", tag, "--push", repo,
                ],
                &[],
            )
        };
        assert_ok(&retag_pr(&pr_tag));
        let refused = xtask(
            &["image", "retag", &pr_tag, "v1.0.0", "--repository", repo],
            &[],
        );
        let message = assert_fails(&refused);
        assert!(
            message.contains("release tags are immutable"),
            "{repo}: {message}"
        );
        assert!(message.contains("Choose a new version"), "{message}");
        let after = xtask(&["image", "inspect", "v1.0.0", "--repository", repo], &[]);
        assert_eq!(
            stdout(&released),
            stdout(&after),
            "{repo}: v1.0.0 did not move"
        );

        // A missing source tag is named, with the fix.
        let missing = xtask(
            &[
                "image",
                "retag",
                "main-abcdef1",
                "v9.9.9",
                "--repository",
                repo,
            ],
            &[],
        );
        let message = assert_fails(&missing);
        assert!(message.contains("has no tag \"main-abcdef1\""), "{message}");
    }
}

#[test]
fn bad_input_is_refused_before_anything_is_built_or_written() {
    let dir = TempDir::new("image-bad-input");
    let binary = fake_binary(dir.path(), "bits");
    let out = dir.path().join("out");
    let cases: &[(&[&str], &str)] = &[
        (&["--tag", "main-fedcba9"], "HEAD is"),
        (&["--tag", "v1.0.0"], "releases are never built"),
        (&["--tag", "latest"], "malformed image tag"),
        (
            &["--push", "service-demo"],
            "should be <registry-host>/<path>",
        ),
        (
            &["--push", "127.0.0.1:5000/demo:tag"],
            "must not carry a tag",
        ),
    ];
    for (extra, expected) in cases {
        let mut args = vec![
            "image",
            "build",
            "--binary",
            &binary,
            "--output",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let message = assert_fails(&xtask(&args, &[]));
        assert!(message.contains(expected), "{extra:?}: {message}");
        assert!(!out.exists(), "{extra:?} wrote output");
    }
    let message = assert_fails(&xtask(
        &["image", "build", "--platform", "linux/s390x"],
        &[],
    ));
    assert!(message.contains("unknown platform"), "{message}");
    let message = assert_fails(&xtask(
        &[
            "image",
            "build",
            "--binary",
            &binary,
            "--push",
            "127.0.0.1:5000/x",
        ],
        &[("REGISTRY_USERNAME", "only-a-user")],
    ));
    assert!(
        message.contains("set both REGISTRY_USERNAME and REGISTRY_PASSWORD"),
        "{message}"
    );
    // A layout path that is something else is not overwritten.
    std::fs::write(dir.path().join("precious"), "keep").unwrap();
    let message = assert_fails(&xtask(
        &[
            "image",
            "retag",
            "a",
            "v1.0.0",
            "--repository",
            &format!("oci:{}", dir.path().display()),
        ],
        &[],
    ));
    assert!(message.contains("is not an OCI image layout"), "{message}");
}

#[test]
fn registry_down_or_refusing_credentials_fails_with_the_fix_and_never_prints_secrets() {
    let dir = TempDir::new("image-auth");
    let binary = fake_binary(dir.path(), "bits");
    let password = "s3cret-Pa55word-do-not-print";
    // bcrypt (cost 4) of `password`, as `htpasswd -B` writes it; made once with
    // Python's `crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16))`.
    let hash = "$2b$04$E5jSM2Wc3F.Qsab7Zzm3LeQssIIJlamB9KzT/cBvwm0r2qOE0TBxK";
    let Some(registry) = Registry::start_with_users(&format!("ci:{hash}\n")) else {
        return;
    };
    let repo = registry.repository();
    let push = |envs: &[(&str, &str)]| {
        xtask(
            &["image", "build", "--binary", &binary, "--push", &repo],
            envs,
        )
    };

    let anonymous = assert_fails(&push(&[]));
    assert!(anonymous.contains("refused the credentials"), "{anonymous}");
    let wrong = assert_fails(&push(&[
        ("REGISTRY_USERNAME", "ci"),
        ("REGISTRY_PASSWORD", "wrong-Pa55word-do-not-print"),
    ]));
    assert!(wrong.contains("refused the credentials"), "{wrong}");
    assert!(
        !wrong.contains("wrong-Pa55word"),
        "a password leaked: {wrong}"
    );

    let ok = push(&[("REGISTRY_USERNAME", "ci"), ("REGISTRY_PASSWORD", password)]);
    assert_ok(&ok);
    let all = format!("{}{}", stdout(&ok), stderr(&ok));
    assert!(!all.contains(password), "the password leaked: {all}");
    let inspect = xtask(
        &[
            "image",
            "inspect",
            &format!("main-{}", head()),
            "--repository",
            &repo,
        ],
        &[("REGISTRY_USERNAME", "ci"), ("REGISTRY_PASSWORD", password)],
    );
    assert_ok(&inspect);

    // Registry down: a named failure with the fix.
    let mut registry = registry;
    registry.stop();
    let down = push(&[("REGISTRY_USERNAME", "ci"), ("REGISTRY_PASSWORD", password)]);
    let message = assert_fails(&down);
    assert!(message.contains("did not answer"), "{message}");
    assert!(!message.contains(password));
}

/// Runs the real image in the real engine, pulled from the real registry,
/// through the `docker` CLI (the same client the demo uses).
mod container {
    use std::process::Command;
    use std::time::Duration;

    use super::*;

    fn docker(args: &[&str]) -> String {
        let out = Command::new("docker").args(args).output().unwrap();
        assert!(
            out.status.success(),
            "docker {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    /// A container removed (with its logs) when dropped, whatever the test did.
    struct Container(String);

    impl Container {
        fn inspect(&self, format: &str) -> String {
            docker(&["inspect", "-f", format, &self.0])
        }

        /// stdout and stderr so far.
        fn logs(&self) -> String {
            let out = Command::new("docker")
                .args(["logs", &self.0])
                .output()
                .unwrap();
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        }

        fn wait_for_log(&self, needle: &str, within: Duration) {
            let logged = || self.logs().contains(needle);
            assert!(
                xtask::plumbing::retry::wait_until(within, Duration::from_millis(100), logged),
                "no {needle:?} in the container's log within {within:?}:\n{}",
                self.logs()
            );
        }
    }

    impl Drop for Container {
        fn drop(&mut self) {
            let _ = Command::new("docker")
                .args(["rm", "--force", &self.0])
                .output();
        }
    }

    fn proc_status(pid: &str, field: &str) -> String {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap()
            .lines()
            .find_map(|l| {
                l.strip_prefix(&format!("{field}:"))
                    .map(|v| v.trim().to_owned())
            })
            .unwrap()
    }

    #[test]
    fn the_image_runs_read_only_unprivileged_as_nonroot_and_stops_cleanly() {
        let Some(()) = support::docker() else {
            return;
        };
        let Some(registry) = Registry::start() else {
            return;
        };
        let tag = format!("pr-1-{}", head());
        let push = xtask(
            &[
                "image",
                "build",
                "--tag",
                &tag,
                "--push",
                &registry.repository(),
            ],
            &[],
        );
        assert_ok(&push);

        let image = format!("{}/service-demo:{tag}", registry.addr);
        docker(&["pull", "--quiet", &image]);
        let container = Container(docker(&[
            "run",
            "--detach",
            "--publish",
            "127.0.0.1::8080",
            "--env",
            "SHUTDOWN_DRAIN_SECONDS=1",
            "--env",
            "ENV_NAME=container-test",
            "--read-only",
            "--cap-drop",
            "ALL",
            "--security-opt",
            "no-new-privileges",
            &image,
        ]));
        container.wait_for_log("listening", Duration::from_secs(30));
        let port = docker(&["port", &container.0, "8080/tcp"]);
        let addr = port
            .lines()
            .find(|l| l.starts_with("127.0.0.1:"))
            .unwrap_or_else(|| panic!("no loopback port mapped: {port}"))
            .to_owned();

        let health = http_get(&addr, "/healthz");
        assert_eq!(health.0, 200);
        let version = http_get(&addr, "/version");
        assert!(version.1.contains("container-test"), "{}", version.1);
        assert!(
            version.1.contains(&head()),
            "the binary knows its commit: {}",
            version.1
        );

        // The process, seen from the host: uid/gid 65532, no capabilities.
        let pid = container.inspect("{{.State.Pid}}");
        assert!(
            proc_status(&pid, "Uid").starts_with("65532"),
            "{}",
            proc_status(&pid, "Uid")
        );
        assert!(proc_status(&pid, "Gid").starts_with("65532"));
        assert_eq!(proc_status(&pid, "CapEff"), "0000000000000000");
        assert_eq!(container.inspect("{{.HostConfig.ReadonlyRootfs}}"), "true");

        // The image's HEALTHCHECK command works inside the container.
        let exec = Command::new("docker")
            .args([
                "exec",
                &container.0,
                "/usr/local/bin/items-api",
                "healthcheck",
            ])
            .output()
            .unwrap();
        assert!(
            exec.status.success(),
            "healthcheck inside the container: {exec:?}"
        );
        assert_eq!(
            container.inspect("{{json .Config.Healthcheck.Test}}"),
            r#"["CMD","/usr/local/bin/items-api","healthcheck"]"#
        );

        // SIGTERM: drains for 1 s and exits 0 well before docker's 10 s kill.
        docker(&["stop", "--time", "10", &container.0]);
        assert_eq!(
            container.inspect("{{.State.ExitCode}}"),
            "0",
            "stopped on its own, not killed"
        );
        let logs = container.logs();
        assert!(logs.contains("stopped cleanly"), "{logs}");
    }

    /// Plain HTTP GET over TCP: (status, body).
    fn http_get(addr: &str, path: &str) -> (u16, String) {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let status = response.split(' ').nth(1).unwrap().parse().unwrap();
        let body = response
            .split("\r\n\r\n")
            .nth(1)
            .unwrap_or_default()
            .to_owned();
        (status, body)
    }
}
