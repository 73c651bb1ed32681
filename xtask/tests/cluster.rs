//! `cargo xtask cluster`: the runner that keeps nothing between jobs (the
//! dispatcher's real code against a stand-in for GitHub over real TCP, and a
//! real Docker engine running a FROM-scratch image whose entrypoint stands in
//! for the Actions runner), the runner-side hook's refusals, and `up`'s plan.

mod support;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine;
use support::{FakeHttp, TempDir, assert_fails, assert_ok, stdout, workspace_root, xtask};

const OWNER_REPO: &str = "someone/service-demo";

/// The stand-in runner image: a static busybox, the real hook
/// (terraform/runner/job-started.sh), the stand-in entrypoint, and the uid
/// the real image has (1001, no password, no sudo).
fn build_stand_in_image(test: &str) -> Option<String> {
    support::docker()?;
    let busybox = Path::new("/bin/busybox");
    support::require(
        busybox.is_file(),
        "a static busybox at /bin/busybox (apt-get install busybox-static)",
    )?;
    let dir = TempDir::new("runner-image");
    let ctx = dir.path();
    std::fs::copy(busybox, ctx.join("busybox")).unwrap();
    let root = workspace_root();
    std::fs::copy(
        root.join("terraform/runner/job-started.sh"),
        ctx.join("job-started.sh"),
    )
    .unwrap();
    std::fs::copy(
        root.join("xtask/tests/fixtures/runner-stand-in/entrypoint.sh"),
        ctx.join("entrypoint.sh"),
    )
    .unwrap();
    std::fs::write(
        ctx.join("passwd"),
        "root:x:0:0::/root:/bin/sh\nrunner:x:1001:1001::/home/runner:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM scratch\n\
         COPY busybox /bin/busybox\n\
         RUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n\
         RUN mkdir -p /home/runner /tmp /var/spool/cron/crontabs /opt/runner /etc && chown 1001:1001 /home/runner && chmod 1777 /tmp\n\
         COPY passwd /etc/passwd\n\
         COPY job-started.sh entrypoint.sh /opt/runner/\n\
         ENV ACTIONS_RUNNER_HOOK_JOB_STARTED=/opt/runner/job-started.sh HOME=/home/runner PATH=/bin\n\
         USER 1001:1001\n\
         ENTRYPOINT [\"/opt/runner/entrypoint.sh\"]\n",
    )
    .unwrap();
    let tag = format!("service-demo-runner-stand-in:{test}-{}", std::process::id());
    let built = Command::new("docker")
        .args(["build", "--quiet", "--tag", &tag])
        .arg(ctx)
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "docker build of the stand-in: {}",
        String::from_utf8_lossy(&built.stderr)
    );
    Some(tag)
}

fn remove_image(tag: &str) {
    let _ = Command::new("docker")
        .args(["image", "rm", "--force", tag])
        .output();
}

/// A job for the stand-in: main's CD environment, then the script.
fn job(env: &[(&str, &str)], script: &str) -> String {
    let mut text = String::new();
    for (k, v) in env {
        text += &format!("{k}={v}\n");
    }
    text += "---\n";
    text += script;
    base64::engine::general_purpose::STANDARD.encode(text)
}

fn main_push_env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("GITHUB_REF", "refs/heads/main"),
        (
            "GITHUB_WORKFLOW_REF",
            "someone/service-demo/.github/workflows/cd.yml@refs/heads/main",
        ),
        ("GITHUB_REPOSITORY", OWNER_REPO),
        ("GITHUB_EVENT_NAME", "push"),
    ]
}

/// The first job leaves what an attacker would: a background process, a
/// crontab entry (the system spool is refused on the read-only root; one in
/// its home, with a crond reading it: busybox's `crontab` itself wants setuid
/// root, which the runner's uid never has), files in /tmp and its home; it
/// also prints PID 1's argv, where the JIT config must not be.
const FIRST_JOB: &str = r#"
echo "job1: uid $(id -u)"
sleep 1000 &
echo "job1: background sleep $!"
echo '* * * * * touch /tmp/pwned' > /tmp/cron.txt
if cp /tmp/cron.txt /var/spool/cron/crontabs/runner 2>/dev/null; then echo "job1: system crontab written"; else echo "job1: system crontab refused"; fi
mkdir -p "$HOME/crontabs" && cp /tmp/cron.txt "$HOME/crontabs/runner" && echo "job1: crontab in home written"
(crond -f -c "$HOME/crontabs" 2>/dev/null &) ; echo "job1: crond started"
echo secret > /tmp/left-by-job1 && echo "job1: /tmp/left-by-job1 written"
echo secret > "$HOME/left-by-job1" && echo "job1: home file written"
if touch /left-by-job1 2>/dev/null; then echo "job1: root writable"; else echo "job1: root read-only"; fi
echo "job1: pid1 argv: $(tr '\0' ' ' < /proc/1/cmdline)"
ps -o pid,user,comm | grep -q sleep && echo "job1: sleep is running"
"#;

/// The second job reports what it finds of the first.
const SECOND_JOB: &str = r#"
echo "job2: processes: $(ps -o comm | grep -v -e '^COMMAND$' -e '^entrypoint.sh$' -e '^ps$' -e '^sh$' -e '^grep$' -e '^tr$' -e '^exe$' | tr '\n' ' ')"
echo "job2: tmp: [$(ls -A /tmp | tr '\n' ' ')]"
echo "job2: home: [$(ls -A "$HOME" | tr '\n' ' ')]"
echo "job2: system crontabs: [$(ls -A /var/spool/cron/crontabs | tr '\n' ' ')]"
"#;

/// A stand-in for GitHub's side of the dispatcher, its requests and answers
/// checked against GitHub's OpenAPI description (answers completed from it):
/// two queued runs on main (one cluster job each), one on a branch (never
/// asked about), one job for a hosted runner; generate-jitconfig hands out
/// the jobs in order.
fn fake_github(jobs: Vec<String>) -> FakeHttp {
    let handed = Arc::new(AtomicUsize::new(0));
    FakeHttp::start_github(move |request, _| {
        let path = request.target.split('?').next().unwrap_or_default();
        let runs = "/repos/someone/service-demo/actions/runs";
        let run = |id: u64, event: &str, branch: &str, file: &str| serde_json::json!({"id": id, "event": event, "head_branch": branch, "path": file, "status": "queued"});
        let (status, patch) = match (request.method.as_str(), path) {
            // Run 2's first job ran already: the run is in_progress, its cluster job queued.
            ("GET", p) if p == runs && request.target.contains("status=in_progress") => (
                200,
                serde_json::json!({"total_count": 1, "workflow_runs": [
                    run(2, "workflow_dispatch", "main", ".github/workflows/release.yml"),
                ]}),
            ),
            ("GET", p) if p == runs => (
                200,
                serde_json::json!({"total_count": 2, "workflow_runs": [
                    run(1, "push", "main", ".github/workflows/cd.yml"),
                    run(3, "push", "feature", ".github/workflows/evil.yml"),
                ]}),
            ),
            ("DELETE", p) if p.starts_with("/repos/someone/service-demo/actions/runners/") => {
                return (204, vec![], String::new());
            }
            ("GET", p) if p.starts_with(runs) && p.ends_with("/jobs") => {
                let run: u64 = p[runs.len() + 1..p.len() - 5].parse().unwrap();
                (
                    200,
                    serde_json::json!({"total_count": 2, "jobs": [
                        {"id": run * 10, "run_id": run, "name": "cluster job", "status": "queued", "labels": ["self-hosted", "kind"]},
                        {"id": run * 10 + 1, "run_id": run, "name": "hosted", "status": "queued", "labels": ["ubuntu-24.04"]},
                    ]}),
                )
            }
            ("POST", "/repos/someone/service-demo/actions/runners/generate-jitconfig") => {
                let n = handed.fetch_add(1, Ordering::SeqCst);
                (
                    201,
                    serde_json::json!({"runner": {"id": 100 + n, "name": "r"}, "encoded_jit_config": jobs[n % jobs.len()]}),
                )
            }
            _ => return (404, vec![], r#"{"message":"Not Found"}"#.into()),
        };
        let answer =
            support::contract::github_answer(&request.method, &request.target, status, patch);
        (status, vec![], answer)
    })
}

fn dispatcher(github: &FakeHttp, image: &str) -> std::process::Output {
    dispatcher_with(github, image, "600")
}

fn dispatcher_with(github: &FakeHttp, image: &str, job_timeout: &str) -> std::process::Output {
    xtask(
        &[
            "cluster",
            "runner",
            "--once",
            "--image",
            image,
            "--network",
            "none",
            "--forward",
            "",
            "--home-size",
            "64m",
            "--job-timeout",
            job_timeout,
        ],
        &[
            ("GITHUB_API_URL", &github.url()),
            ("GITHUB_REPOSITORY", OWNER_REPO),
            ("GITHUB_TOKEN", "test-token-not-printed"),
        ],
    )
}

#[test]
fn two_jobs_one_after_the_other_share_nothing_and_leave_no_container() {
    let Some(image) = build_stand_in_image("two-jobs") else {
        return;
    };
    let env = main_push_env();
    let github = fake_github(vec![job(&env, FIRST_JOB), job(&env, SECOND_JOB)]);
    let output = dispatcher(&github, &image);
    remove_image(&image);
    assert_ok(&output);
    let out = stdout(&output);
    // The first job did leave everything behind, in its own container.
    for left in [
        "job1: uid 1001",
        "job1: sleep is running",
        "job1: system crontab refused",
        "job1: crontab in home written",
        "job1: /tmp/left-by-job1 written",
        "job1: home file written",
        "job1: root read-only",
        "job1: crond started",
    ] {
        assert!(out.contains(left), "{left:?} missing:\n{out}");
    }
    // The JIT config never was an argument: PID 1 is the entrypoint without it.
    let argv = out
        .lines()
        .find(|l| l.starts_with("job1: pid1 argv:"))
        .unwrap();
    assert!(!argv.contains(&job(&env, FIRST_JOB)[..20]), "{argv}");
    // The second sees none of it. (Its own pipeline's grep and tr may show as `exe`: busybox runs some
    // applets by re-executing /proc/self/exe; what job 1 left running would show as sleep or crond.)
    let processes = out
        .lines()
        .find(|l| l.starts_with("job2: processes:"))
        .unwrap();
    assert!(
        !processes.contains("sleep") && !processes.contains("crond"),
        "{processes}"
    );
    for clean in [
        "job2: processes: \n",
        "job2: tmp: []",
        "job2: home: []",
        "job2: system crontabs: []",
    ] {
        assert!(
            format!("{out}\n").contains(clean),
            "{clean:?} missing:\n{out}"
        );
    }
    assert!(
        out.find("job1: uid").unwrap() < out.find("job2: tmp").unwrap(),
        "{out}"
    );
    // Both containers are gone.
    let names: Vec<&str> = out
        .lines()
        .filter_map(|l| l.strip_prefix("runner ")?.split(' ').next())
        .collect();
    assert_eq!(names.len(), 2, "{out}");
    for name in names {
        let inspect = Command::new("docker")
            .args(["container", "inspect", name])
            .output()
            .unwrap();
        assert!(!inspect.status.success(), "{name} is still there");
    }
    assert!(out.contains("--once: 2 runner(s) ran"), "{out}");
    // Only main's runs were asked about; the branch's run was skipped and said so.
    let requests = github.requests();
    assert!(
        out.contains("skipped run 3 (.github/workflows/evil.yml): branch \"feature\" is not main"),
        "{out}"
    );
    assert!(!requests.iter().any(|r| r.target.contains("/runs/3/")));
    let jit: Vec<_> = requests
        .iter()
        .filter(|r| r.target.ends_with("/generate-jitconfig"))
        .collect();
    assert_eq!(jit.len(), 2);
    let body: serde_json::Value = serde_json::from_str(&jit[0].body).unwrap();
    assert_eq!(body["labels"], serde_json::json!(["self-hosted", "kind"]));
    assert_eq!(body["runner_group_id"], 1);
    assert!(
        !out.contains("test-token-not-printed")
            && !support::stderr(&output).contains("test-token-not-printed")
    );
}

/// The hook in the stand-in image, with a job's environment: its output and whether it accepted.
fn hook(image: &str, env: &[(&str, &str)]) -> (bool, String) {
    let mut command = Command::new("docker");
    command.args(["run", "--rm", "--read-only", "--network", "none"]);
    for (k, v) in env {
        command.args(["-e", &format!("{k}={v}")]);
    }
    let output = command
        .args(["--entrypoint", "/opt/runner/job-started.sh", image])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[test]
fn the_runner_side_hook_refuses_a_job_that_is_not_mains() {
    let Some(image) = build_stand_in_image("hook") else {
        return;
    };
    let main = main_push_env();
    let with = |name: &'static str, value: &'static str| {
        let mut env: Vec<(&str, &str)> = main.iter().filter(|(k, _)| *k != name).cloned().collect();
        env.push((name, value));
        env
    };
    let accepted = hook(&image, &main);
    let branch = hook(&image, &with("GITHUB_REF", "refs/heads/feature"));
    let workflow = hook(
        &image,
        &with(
            "GITHUB_WORKFLOW_REF",
            "someone/service-demo/.github/workflows/cd.yml@refs/heads/feature",
        ),
    );
    let other_repo = hook(
        &image,
        &with(
            "GITHUB_WORKFLOW_REF",
            "attacker/x/.github/workflows/cd.yml@refs/heads/main",
        ),
    );
    let event = hook(&image, &with("GITHUB_EVENT_NAME", "pull_request"));
    let preview = hook(&image, &with("GITHUB_EVENT_NAME", "pull_request_target"));
    // Through the stand-in runner too: the job's script never runs.
    let github = fake_github(vec![job(
        &with("GITHUB_REF", "refs/pull/7/merge"),
        "echo SCRIPT-RAN",
    )]);
    let dispatched = dispatcher(&github, &image);
    remove_image(&image);
    assert!(accepted.0, "{}", accepted.1);
    assert!(preview.0, "{}", preview.1);
    assert!(
        !branch.0
            && branch
                .1
                .contains("GITHUB_REF is 'refs/heads/feature', not refs/heads/main"),
        "{}",
        branch.1
    );
    assert!(
        !workflow.0
            && workflow
                .1
                .contains("not one of someone/service-demo's at refs/heads/main"),
        "{}",
        workflow.1
    );
    assert!(!other_repo.0, "{}", other_repo.1);
    assert!(
        !event.0 && event.1.contains("the event is 'pull_request'"),
        "{}",
        event.1
    );
    let out = stdout(&dispatched);
    assert!(out.contains("job refused by the job-started hook"), "{out}");
    assert!(!out.contains("SCRIPT-RAN"), "{out}");
    assert!(out.contains("(exit 1)"), "{out}");
}

/// A copy of the repository's deployment assets with another image key in
/// cosign.pub and in the policy.
fn copy_with_key(dir: &Path, key: &str) {
    support::copy_workspace_assets(dir);
    std::fs::copy(
        workspace_root().join("rust-toolchain.toml"),
        dir.join("rust-toolchain.toml"),
    )
    .unwrap();
    let old = std::fs::read_to_string(workspace_root().join("gitops/policy/cosign.pub")).unwrap();
    let policy_path = dir.join("gitops/policy/image-signatures.yaml");
    let policy = std::fs::read_to_string(&policy_path).unwrap();
    let indent = "                      ";
    let indented = |k: &str| {
        k.trim()
            .lines()
            .map(|l| format!("{indent}{l}"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let replaced = policy.replace(&indented(&old), &indented(key));
    assert_ne!(replaced, policy, "the policy's key block was not found");
    std::fs::write(policy_path, replaced).unwrap();
    std::fs::write(dir.join("gitops/policy/cosign.pub"), key).unwrap();
}

fn new_key(dir: &Path) -> String {
    let out = dir.join("keys");
    assert_ok(&xtask(
        &["gate", "keygen", "--out-dir", out.to_str().unwrap()],
        &[],
    ));
    std::fs::read_to_string(out.join("gate.pub")).unwrap()
}

fn sha256_hex(text: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn the_dry_run_plan_names_the_forks_policy_key_and_its_digest() {
    let dir = TempDir::new("cluster-plan");
    let key = new_key(dir.path());
    let repo = dir.path().join("repo");
    copy_with_key(&repo, &key);
    let output = xtask(
        &[
            "cluster",
            "up",
            "--dry-run",
            "--github",
            "someone/service-demo",
            "--root",
            repo.to_str().unwrap(),
        ],
        &[("GITHUB_TOKEN", "")],
    );
    assert_ok(&output);
    let out = stdout(&output);
    let upstream =
        std::fs::read_to_string(workspace_root().join("gitops/policy/cosign.pub")).unwrap();
    assert!(
        out.contains(&format!(
            "the fork's key gitops/policy/cosign.pub (sha256 {})",
            sha256_hex(&key)
        )),
        "{out}"
    );
    assert!(!out.contains(&sha256_hex(&upstream)), "{out}");
    assert!(
        out.contains("-var gitops_repo_url=https://github.com/someone/service-demo.git"),
        "{out}"
    );
    assert!(out.contains("ARGOCD_AUTH_TOKEN of environment prod: a token of Argo CD project role service-demo/release"), "{out}");
    assert!(out.contains("--dry-run: nothing changed"), "{out}");
}

#[test]
fn a_policy_whose_key_is_not_cosign_pub_is_refused_before_any_change() {
    let dir = TempDir::new("cluster-mismatch");
    let key = new_key(dir.path());
    let repo = dir.path().join("repo");
    support::copy_workspace_assets(&repo);
    std::fs::copy(
        workspace_root().join("rust-toolchain.toml"),
        repo.join("rust-toolchain.toml"),
    )
    .unwrap();
    std::fs::write(repo.join("gitops/policy/cosign.pub"), &key).unwrap();
    let output = xtask(
        &[
            "cluster",
            "up",
            "--dry-run",
            "--github",
            "someone/service-demo",
            "--root",
            repo.to_str().unwrap(),
        ],
        &[],
    );
    let err = assert_fails(&output);
    assert!(
        err.contains("carries a key that is not gitops/policy/cosign.pub"),
        "{err}"
    );
    assert!(err.contains("nothing was changed"), "{err}");
    assert!(
        !stdout(&output).contains("terraform init"),
        "{}",
        stdout(&output)
    );
}

#[test]
fn validate_refuses_a_terraform_file_carrying_a_key_inline() {
    let Some(()) = support::validate_tools() else {
        return;
    };
    let dir = TempDir::new("cluster-inline-key");
    let repo = dir.path().join("repo");
    support::copy_workspace_assets(&repo);
    let key = std::fs::read_to_string(repo.join("gitops/policy/cosign.pub")).unwrap();
    // The old way: the policy's key written into Terraform.
    std::fs::write(
        repo.join("terraform/policy.tf"),
        format!(
            "locals {{\n  image_key = <<-EOT\n    {}\n  EOT\n}}\n",
            key.trim().replace('\n', "\n    ")
        ),
    )
    .unwrap();
    let output = xtask(&["validate", "--root", repo.to_str().unwrap()], &[]);
    let err = assert_fails(&output);
    let out = stdout(&output);
    assert!(
        out.contains("terraform/policy.tf:3: a key inline (\"-----BEGIN \")"),
        "{out}\n{err}"
    );
    std::fs::remove_file(repo.join("terraform/policy.tf")).unwrap();
    let clean = xtask(&["validate", "--root", repo.to_str().unwrap()], &[]);
    assert!(
        stdout(&clean).contains("✔ terraform carries no key inline"),
        "{}",
        stdout(&clean)
    );
}

/// Stand-ins on PATH for what cannot run here (Terraform's providers, a
/// cluster, a base image): each records its argv; kubectl keeps what it got
/// on stdin and answers the admin password's Secret; terraform answers its outputs.
fn stand_in_tools(dir: &Path) -> std::path::PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let scripts = [
        (
            "terraform",
            r#"echo "terraform $*" >> "$STAND_IN_LOG"
case "$*" in
  "output -raw kubeconfig_path") printf %s "$STAND_IN_DIR/kubeconfig" ;;
  "output -raw argocd_url") printf %s "$STAND_IN_ARGOCD" ;;
esac"#,
        ),
        (
            "kubectl",
            r#"echo "kubectl $*" >> "$STAND_IN_LOG"
case "$*" in
  *"apply -f -") n=$(ls "$STAND_IN_DIR" | grep -c '^applied-'); cat > "$STAND_IN_DIR/applied-$n.yaml"; echo "configured" ;;
  *"get secret argocd-initial-admin-secret"*) printf %s "$(printf %s the-admin-password | base64)" ;;
esac"#,
        ),
        ("docker", r#"echo "docker $*" >> "$STAND_IN_LOG""#),
    ];
    for (name, body) in scripts {
        let path = bin.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::os::unix::fs::PermissionsExt::set_mode(
            &mut std::fs::metadata(&path).unwrap().permissions(),
            0o755,
        );
        Command::new("chmod")
            .arg("755")
            .arg(&path)
            .status()
            .unwrap();
    }
    bin
}

/// Argo CD's REST API as `cluster up` uses it: a session from the admin
/// password, then a token per project role (`argocd-token-<role>`); every
/// exchange checked against Argo CD's own REST description.
fn fake_argocd() -> FakeHttp {
    FakeHttp::start_argocd(|request, _| {
        let body: serde_json::Value = serde_json::from_str(&request.body).unwrap_or_default();
        let auth = request
            .headers
            .get("authorization")
            .cloned()
            .unwrap_or_default();
        match request.target.as_str() {
            "/api/v1/session" if body["password"] == "the-admin-password" => {
                let answer = support::contract::argocd_answer(
                    "POST",
                    &request.target,
                    200,
                    serde_json::json!({"token": "session-token"}),
                );
                (200, vec![], answer)
            }
            path if path.starts_with("/api/v1/projects/service-demo/roles/")
                && auth == "Bearer session-token" =>
            {
                let role = path.split('/').nth(6).unwrap();
                let token = serde_json::json!({"token": format!("argocd-token-{role}")});
                let answer = support::contract::argocd_answer("POST", path, 200, token);
                (200, vec![], answer)
            }
            _ => (401, vec![], r#"{"error":"unauthorized"}"#.into()),
        }
    })
}

/// GitHub as `cluster up` writes to it (checked against its OpenAPI
/// description): secrets and variables remembered, secrets sealed to `key`.
fn fake_fork_github(key: crypto_box::PublicKey, private: bool) -> FakeHttp {
    let state = Arc::new(std::sync::Mutex::new(
        std::collections::BTreeSet::<String>::new(),
    ));
    let public = base64::engine::general_purpose::STANDARD.encode(key.as_bytes());
    FakeHttp::start_github(move |request, _| {
        let path = request
            .target
            .split('?')
            .next()
            .unwrap_or_default()
            .to_owned();
        let repo = "/repos/someone/service-demo";
        let mut known = state.lock().unwrap();
        let (status, patch) = match request.method.as_str() {
            "GET" if path == repo => (
                200,
                serde_json::json!({"private": private, "full_name": "someone/service-demo"}),
            ),
            "POST" if path == format!("{repo}/keys") => {
                (201, serde_json::json!({"read_only": true}))
            }
            "GET" if path.ends_with("/secrets/public-key") => {
                (200, serde_json::json!({"key_id": "k1", "key": public}))
            }
            "GET" if known.contains(&path) && path.contains("/variables/") => {
                let name = path.rsplit('/').next().unwrap();
                (
                    200,
                    serde_json::json!({"name": name, "value": known.iter().find_map(|k| k.strip_prefix(&format!("{path}=")).map(str::to_owned)).unwrap()}),
                )
            }
            "GET" if known.contains(&path) => (
                200,
                serde_json::json!({"name": path.rsplit('/').next().unwrap()}),
            ),
            "GET" => return (404, vec![], r#"{"message":"Not Found"}"#.into()),
            "PUT" => {
                known.insert(path.clone());
                (201, serde_json::json!({}))
            }
            "POST" if path == format!("{repo}/actions/variables") => {
                let body: serde_json::Value = serde_json::from_str(&request.body).unwrap();
                let at = format!("{path}/{}", body["name"].as_str().unwrap());
                known.insert(at.clone());
                known.insert(format!("{at}={}", body["value"].as_str().unwrap()));
                (201, serde_json::json!({}))
            }
            _ => return (404, vec![], r#"{"message":"Not Found"}"#.into()),
        };
        let answer =
            support::contract::github_answer(&request.method, &request.target, status, patch);
        (status, vec![], answer)
    })
}

#[test]
fn cluster_up_applies_the_forks_policy_writes_argocds_tokens_sealed_and_a_second_run_changes_nothing()
 {
    let dir = TempDir::new("cluster-up");
    let repo = dir.path().join("repo");
    let key = new_key(dir.path());
    copy_with_key(&repo, &key);
    let bin = stand_in_tools(dir.path());
    let log = dir.path().join("log");
    let secret_key = crypto_box::SecretKey::generate(&mut crypto_box::aead::OsRng);
    let github = fake_fork_github(secret_key.public_key(), false);
    let argocd = fake_argocd();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let home = dir.path().join("home");
    let env = [
        ("PATH", path.as_str()),
        ("HOME", home.to_str().unwrap()),
        ("GITHUB_API_URL", &github.url()),
        ("GITHUB_TOKEN", "test-token"),
        ("STAND_IN_LOG", log.to_str().unwrap()),
        ("STAND_IN_DIR", dir.path().to_str().unwrap()),
        ("STAND_IN_ARGOCD", &argocd.url()),
    ];
    let args = [
        "cluster",
        "up",
        "--github",
        "someone/service-demo",
        "--root",
        repo.to_str().unwrap(),
    ];
    let first = xtask(&args, &env);
    let second = xtask(&args, &env);
    // The dispatcher `up` started in the background (a process of this test): stopped.
    // The dispatcher `up` started in the background says what it serves, first thing.
    let dispatcher_log = home.join(".cache/service-demo/cluster-runner.log");
    let said = || std::fs::read_to_string(&dispatcher_log).unwrap_or_default();
    let step = std::time::Duration::from_millis(100);
    xtask::plumbing::retry::wait_until(step * 50, step, || !said().is_empty());
    let said = said();
    assert!(
        said.contains("dispatcher for someone/service-demo: labels [\"self-hosted\", \"kind\"], image service-demo-runner:local, network kind"),
        "{said}"
    );
    let pid_file = home.join(".cache/service-demo/cluster-runner.pid");
    if let Ok(pid) = std::fs::read_to_string(&pid_file) {
        let _ = Command::new("kill").arg(pid.trim()).status();
    }
    assert_ok(&first);
    assert_ok(&second);
    let (first, second) = (stdout(&first), stdout(&second));
    let calls = std::fs::read_to_string(&log).unwrap();
    assert!(calls.contains("terraform init -input=false"), "{calls}");
    assert!(
        calls.contains("terraform apply -auto-approve -input=false -var=gitops_repo_url=https://github.com/someone/service-demo.git"),
        "{calls}"
    );
    // The fork's policy as it is in the repository, through stdin, never on a command line.
    let policy = std::fs::read_to_string(repo.join("gitops/policy/image-signatures.yaml")).unwrap();
    for n in 0..2 {
        let applied = dir.path().join(format!("applied-{n}.yaml"));
        assert_eq!(std::fs::read_to_string(applied).unwrap(), policy);
    }
    assert!(!dir.path().join("applied-2.yaml").exists());
    assert!(policy.contains(key.lines().nth(1).unwrap()));
    assert!(
        !calls.contains("image-signatures.yaml") && !calls.contains("BEGIN PUBLIC KEY"),
        "{calls}"
    );
    assert!(
        first.contains(&format!("(sha256 {})", sha256_hex(&policy))),
        "{first}"
    );
    // Each token, sealed to the environment's key, opens to the right role's token.
    let puts: Vec<_> = github
        .requests()
        .into_iter()
        .filter(|r| r.method == "PUT")
        .collect();
    assert_eq!(puts.len(), 3, "{puts:?}");
    for (env, secret, role) in [
        ("preview", "ARGOCD_PREVIEW_TOKEN", "preview"),
        ("preprod", "ARGOCD_PREPROD_TOKEN", "preprod"),
        ("prod", "ARGOCD_AUTH_TOKEN", "release"),
    ] {
        let put = puts
            .iter()
            .find(|r| {
                r.target
                    == format!("/repos/someone/service-demo/environments/{env}/secrets/{secret}")
            })
            .unwrap_or_else(|| panic!("no PUT of {secret}: {puts:?}"));
        let body: serde_json::Value = serde_json::from_str(&put.body).unwrap();
        let sealed = base64::engine::general_purpose::STANDARD
            .decode(body["encrypted_value"].as_str().unwrap())
            .unwrap();
        assert_eq!(
            secret_key.unseal(&sealed).unwrap(),
            format!("argocd-token-{role}").as_bytes()
        );
        assert!(
            first.contains(&format!("4. secret {secret} of {env}: written")),
            "{first}"
        );
        assert!(
            second.contains(&format!("4. secret {secret} of {env}: unchanged")),
            "{second}"
        );
    }
    for variable in [
        "ARGOCD_SERVER=http://127.0.0.1:8090",
        "INGRESS_URL=http://127.0.0.1:8081",
    ] {
        assert!(
            first.contains(&format!("5. variable {variable}: created")),
            "{first}"
        );
        assert!(
            second.contains(&format!("5. variable {variable}: unchanged")),
            "{second}"
        );
    }
    assert!(
        calls.contains(
            "docker build --tag service-demo-runner:local --build-arg RUST_VERSION=1.95.0"
        ),
        "{calls}"
    );
    // A second run writes nothing to GitHub and asks Argo CD for nothing more.
    let writes = github
        .requests()
        .into_iter()
        .filter(|r| r.method != "GET")
        .count();
    assert_eq!(writes, 5, "three secrets and two variables, once");
    assert_eq!(
        argocd.requests().len(),
        4,
        "one session and three tokens, once"
    );
    // No token is ever printed or passed as an argument.
    for text in [&first, &second, &calls] {
        assert!(
            !text.contains("argocd-token-")
                && !text.contains("the-admin-password")
                && !text.contains("test-token"),
            "{text}"
        );
    }
}

/// `cluster up` for a private fork, against the same stand-ins.
fn up_private(repo_url_in_objects: &str) -> (std::process::Output, TempDir, FakeHttp, String) {
    let dir = TempDir::new("cluster-up-private");
    let repo = dir.path().join("repo");
    support::copy_workspace_assets(&repo);
    std::fs::copy(
        workspace_root().join("rust-toolchain.toml"),
        repo.join("rust-toolchain.toml"),
    )
    .unwrap();
    for file in xtask::plumbing::fs::yaml_files(&repo.join("gitops/argocd")).unwrap() {
        let text = std::fs::read_to_string(&file).unwrap();
        std::fs::write(
            &file,
            text.replace(
                "https://github.com/example/service-demo.git",
                repo_url_in_objects,
            ),
        )
        .unwrap();
    }
    let bin = stand_in_tools(dir.path());
    let log = dir.path().join("log");
    std::fs::write(&log, "").unwrap();
    let github = fake_fork_github(
        crypto_box::SecretKey::generate(&mut crypto_box::aead::OsRng).public_key(),
        true,
    );
    let argocd = fake_argocd();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let home = dir.path().join("home");
    let output = xtask(
        &[
            "cluster",
            "up",
            "--github",
            "someone/service-demo",
            "--root",
            repo.to_str().unwrap(),
        ],
        &[
            ("PATH", path.as_str()),
            ("HOME", home.to_str().unwrap()),
            ("GITHUB_API_URL", &github.url()),
            ("GITHUB_TOKEN", "test-token"),
            ("STAND_IN_LOG", log.to_str().unwrap()),
            ("STAND_IN_DIR", dir.path().to_str().unwrap()),
            ("STAND_IN_ARGOCD", &argocd.url()),
        ],
    );
    if let Ok(pid) = std::fs::read_to_string(home.join(".cache/service-demo/cluster-runner.pid")) {
        let _ = Command::new("kill").arg(pid.trim()).status();
    }
    let calls = std::fs::read_to_string(&log).unwrap();
    (output, dir, github, calls)
}

#[test]
fn a_private_fork_gets_a_read_only_deploy_key_whose_private_half_goes_only_to_argocd() {
    let ssh = "git@github.com:someone/service-demo.git";
    let (output, dir, github, calls) = up_private(ssh);
    assert_ok(&output);
    assert!(
        calls.contains(&format!("-var=gitops_repo_url={ssh}")),
        "{calls}"
    );
    let keys: Vec<_> = github
        .requests()
        .into_iter()
        .filter(|r| r.target.ends_with("/keys"))
        .collect();
    assert_eq!(keys.len(), 1);
    let body: serde_json::Value = serde_json::from_str(&keys[0].body).unwrap();
    assert_eq!(body["read_only"], true);
    let public = body["key"].as_str().unwrap().to_owned();
    // The Secret went through kubectl's stdin, first; its private key is the deploy key's other half.
    let secret: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("applied-0.yaml")).unwrap())
            .unwrap();
    assert_eq!(
        secret["metadata"]["labels"]["argocd.argoproj.io/secret-type"],
        "repository"
    );
    assert_eq!(secret["stringData"]["url"], ssh);
    let private = secret["stringData"]["sshPrivateKey"].as_str().unwrap();
    let file = dir.path().join("k");
    std::fs::write(&file, private).unwrap();
    Command::new("chmod")
        .arg("600")
        .arg(&file)
        .status()
        .unwrap();
    let derived = Command::new("ssh-keygen")
        .arg("-y")
        .arg("-f")
        .arg(&file)
        .output()
        .unwrap();
    std::fs::remove_file(&file).unwrap();
    assert_eq!(String::from_utf8_lossy(&derived.stdout).trim(), public);
    assert!(!calls.contains("PRIVATE KEY") && !stdout(&output).contains("PRIVATE KEY"));
}

#[test]
fn a_private_fork_read_over_https_is_refused_before_any_change() {
    let (output, _dir, github, calls) = up_private("https://github.com/someone/service-demo.git");
    let err = assert_fails(&output);
    assert!(err.contains("someone/service-demo is private"), "{err}");
    assert!(
        err.contains("must name git@github.com:someone/service-demo.git"),
        "{err}"
    );
    assert!(err.contains("gitops/argocd/root.yaml"), "{err}");
    assert!(calls.is_empty(), "{calls}");
    assert!(github.requests().iter().all(|r| r.method == "GET"));
}

#[test]
fn a_runner_past_its_timeout_is_killed_removed_and_deregistered() {
    let Some(image) = build_stand_in_image("timeout") else {
        return;
    };
    let github = fake_github(vec![job(&main_push_env(), "echo STARTED; sleep 1000")]);
    let started = std::time::Instant::now();
    let output = dispatcher_with(&github, &image, "3");
    remove_image(&image);
    assert_ok(&output);
    let out = stdout(&output);
    assert!(out.contains("STARTED"), "{out}");
    assert!(
        out.contains("ended (killed after 3s); its container is gone"),
        "{out}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(60),
        "{out}"
    );
    let deleted: Vec<String> = github
        .requests()
        .into_iter()
        .filter(|r| r.method == "DELETE")
        .map(|r| r.target)
        .collect();
    assert_eq!(
        deleted,
        [
            "/repos/someone/service-demo/actions/runners/100",
            "/repos/someone/service-demo/actions/runners/101"
        ]
    );
    for name in out
        .lines()
        .filter_map(|l| l.strip_prefix("runner ")?.split(' ').next())
    {
        let inspect = Command::new("docker")
            .args(["container", "inspect", name])
            .output()
            .unwrap();
        assert!(!inspect.status.success(), "{name} is still there");
    }
}

#[test]
fn cluster_down_dry_run_changes_nothing_and_down_destroys_and_status_says_what_is_up() {
    let dir = TempDir::new("cluster-down");
    let repo = dir.path().join("repo");
    support::copy_workspace_assets(&repo);
    let bin = stand_in_tools(dir.path());
    let log = dir.path().join("log");
    std::fs::write(&log, "").unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let home = dir.path().join("home");
    let env = [
        ("PATH", path.as_str()),
        ("HOME", home.to_str().unwrap()),
        ("STAND_IN_LOG", log.to_str().unwrap()),
        ("STAND_IN_DIR", dir.path().to_str().unwrap()),
        ("STAND_IN_ARGOCD", "http://127.0.0.1:9"),
    ];
    let root = repo.to_str().unwrap();
    let dry = xtask(&["cluster", "down", "--dry-run", "--root", root], &env);
    assert_ok(&dry);
    assert!(
        stdout(&dry).contains("terraform destroy"),
        "{}",
        stdout(&dry)
    );
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "");
    let down = xtask(&["cluster", "down", "--root", root], &env);
    assert_ok(&down);
    let calls = std::fs::read_to_string(&log).unwrap();
    assert!(
        calls.contains("terraform destroy -auto-approve -input=false"),
        "{calls}"
    );
    let status = xtask(&["cluster", "status", "--root", root], &env);
    assert_ok(&status);
    let out = stdout(&status);
    let key = std::fs::read_to_string(repo.join("gitops/policy/cosign.pub")).unwrap();
    assert!(out.contains("dispatcher: not running"), "{out}");
    assert!(
        out.contains(&format!(
            "policy key: gitops/policy/cosign.pub sha256 {}",
            sha256_hex(&key)
        )),
        "{out}"
    );
    assert!(
        std::fs::read_to_string(&log)
            .unwrap()
            .contains("terraform output -raw kubeconfig_path")
    );
}
