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
    // The runner's firewall, rule by rule: kind's node on its four ports, nothing of the host.
    for line in [
        "docker network create --driver bridge --opt com.docker.network.bridge.name=sd-runner0",
        "iptables -A SERVICE-DEMO-RUNNER -d <service-demo-control-plane>/32 -i sd-runner0 -p tcp -m tcp --dport 6443 -j ACCEPT",
        "iptables -A SERVICE-DEMO-RUNNER -d <service-demo-control-plane>/32 -i sd-runner0 -p tcp -m tcp --dport 30080 -j ACCEPT",
        "iptables -A SERVICE-DEMO-RUNNER -d 192.168.0.0/16 -i sd-runner0 -j DROP",
        "iptables -I DOCKER-USER 1 -i sd-runner0 -j SERVICE-DEMO-RUNNER",
        "iptables -I INPUT 1 -i sd-runner0 -j DROP",
    ] {
        assert!(out.contains(line), "{line:?} missing:\n{out}");
    }
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
        (
            "docker",
            r#"echo "docker $*" >> "$STAND_IN_LOG"
case "$*" in
  "container inspect --format"*) echo 172.18.0.2 ;;
  "network inspect --format"*) [ -f "$STAND_IN_DIR/network" ] && echo sd-runner0 || exit 1 ;;
  "network create"*) touch "$STAND_IN_DIR/network" ;;
  "network rm"*) rm "$STAND_IN_DIR/network" ;;
esac"#,
        ),
        // iptables as a list of `-N`/`-A` lines in a file (XTASK_IPTABLES names it).
        (
            "iptables",
            r#"echo "iptables $*" >> "$STAND_IN_LOG"
state="$STAND_IN_DIR/iptables"; touch "$state"
case "$1" in
  -S) grep -qx -- "-N $2" "$state" || exit 1; grep -e "^-N $2\$" -e "^-A $2 " "$state" ;;
  -C) shift; grep -qxF -- "-A $*" "$state" ;;
  -I) chain=$2; shift 3; echo "-A $chain $*" >> "$state" ;;
  -D) shift; grep -vxF -- "-A $*" "$state" > "$state.new"; mv "$state.new" "$state" ;;
  -F) grep -v "^-A $2 " "$state" > "$state.new"; mv "$state.new" "$state" ;;
  -X) grep -vx -- "-N $2" "$state" > "$state.new"; mv "$state.new" "$state" ;;
esac"#,
        ),
        (
            "iptables-restore",
            r#"echo "iptables-restore $*" >> "$STAND_IN_LOG"
state="$STAND_IN_DIR/iptables"; touch "$state"
input=$(cat); chain=$(echo "$input" | sed -n 's/^:\([^ ]*\) .*/\1/p')
grep -v -e "^-N $chain\$" -e "^-A $chain " "$state" > "$state.new"
echo "-N $chain" >> "$state.new"; echo "$input" | grep '^-A ' >> "$state.new"; mv "$state.new" "$state""#,
        ),
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
            // Deploy keys: `key <id> <title>` entries, listed, added and deleted.
            "POST" if path == format!("{repo}/keys") => {
                let body: serde_json::Value = serde_json::from_str(&request.body).unwrap();
                let id = 500 + known.iter().filter(|k| k.starts_with("key ")).count();
                known.insert(format!("key {id} {}", body["title"].as_str().unwrap()));
                (
                    201,
                    serde_json::json!({"id": id, "read_only": true, "title": body["title"]}),
                )
            }
            "GET" if path == format!("{repo}/keys") => {
                let keys: Vec<serde_json::Value> = known
                    .iter()
                    .filter_map(|k| k.strip_prefix("key "))
                    .filter_map(|k| k.split_once(' '))
                    .filter(|(id, _)| !known.contains(&format!("deleted {id}")))
                    .map(|(id, title)| serde_json::json!({"id": id.parse::<u64>().unwrap(), "title": title, "read_only": true}))
                    .collect();
                (200, serde_json::json!(keys))
            }
            "DELETE" if path.starts_with(&format!("{repo}/keys/")) => {
                known.insert(format!("deleted {}", path.rsplit('/').next().unwrap()));
                return (204, vec![], String::new());
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
    let iptables = bin.join("iptables");
    let env = [
        ("PATH", path.as_str()),
        ("HOME", home.to_str().unwrap()),
        ("GITHUB_API_URL", &github.url()),
        ("GITHUB_TOKEN", "test-token"),
        ("STAND_IN_LOG", log.to_str().unwrap()),
        ("STAND_IN_DIR", dir.path().to_str().unwrap()),
        ("STAND_IN_ARGOCD", &argocd.url()),
        ("XTASK_IPTABLES", iptables.to_str().unwrap()),
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
        said.contains("dispatcher for someone/service-demo: labels [\"self-hosted\", \"kind\"], image service-demo-runner:local, network service-demo-runner"),
        "{said}\n{}{}",
        stdout(&first),
        support::stderr(&first)
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
    // The runner's network and firewall: made once, for kind's node as Docker names it now.
    for (made, kept) in [
        (
            "network service-demo-runner (bridge sd-runner0): created",
            "network service-demo-runner (bridge sd-runner0): unchanged",
        ),
        (
            "chain SERVICE-DEMO-RUNNER (14 rules): written",
            "chain SERVICE-DEMO-RUNNER (14 rules): unchanged",
        ),
        (
            "DOCKER-USER -i sd-runner0 -j SERVICE-DEMO-RUNNER: added",
            "DOCKER-USER -i sd-runner0 -j SERVICE-DEMO-RUNNER: present",
        ),
        (
            "DOCKER-USER -o sd-runner0 -j SERVICE-DEMO-RUNNER: added",
            "DOCKER-USER -o sd-runner0 -j SERVICE-DEMO-RUNNER: present",
        ),
        (
            "INPUT -i sd-runner0 -j DROP: added",
            "INPUT -i sd-runner0 -j DROP: present",
        ),
    ] {
        assert!(
            first.contains(&format!("7. runner firewall: {made}")),
            "{made:?}:\n{first}"
        );
        assert!(
            second.contains(&format!("7. runner firewall: {kept}")),
            "{kept:?}:\n{second}"
        );
    }
    let rules = std::fs::read_to_string(dir.path().join("iptables")).unwrap();
    for rule in [
        "-A SERVICE-DEMO-RUNNER -d 172.18.0.2/32 -i sd-runner0 -p tcp -m tcp --dport 6443 -j ACCEPT",
        "-A SERVICE-DEMO-RUNNER -d 172.18.0.2/32 -i sd-runner0 -p tcp -m tcp --dport 30080 -j ACCEPT",
        "-A SERVICE-DEMO-RUNNER -d 172.16.0.0/12 -i sd-runner0 -j DROP",
        "-A INPUT -i sd-runner0 -j DROP",
    ] {
        assert_eq!(
            rules.lines().filter(|l| *l == rule).count(),
            1,
            "{rule}:\n{rules}"
        );
    }
    assert!(
        calls.contains("docker container inspect --format {{with index .NetworkSettings.Networks \"kind\"}}{{.IPAddress}}{{end}} service-demo-control-plane"),
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
    let (mut outputs, dir, github, calls) = up_runs(repo_url_in_objects, true, 1);
    (outputs.remove(0), dir, github, calls)
}

/// `cluster up` `runs` times for a fork whose Argo CD objects name `repo_url_in_objects`;
/// kubectl finds no repository Secret each time (a cluster made anew).
fn up_runs(
    repo_url_in_objects: &str,
    private: bool,
    runs: usize,
) -> (Vec<std::process::Output>, TempDir, FakeHttp, String) {
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
        private,
    );
    let argocd = fake_argocd();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let home = dir.path().join("home");
    let mut outputs = Vec::new();
    for _ in 0..runs {
        outputs.push(xtask(
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
                ("XTASK_IPTABLES", bin.join("iptables").to_str().unwrap()),
            ],
        ));
    }
    if let Ok(pid) = std::fs::read_to_string(home.join(".cache/service-demo/cluster-runner.pid")) {
        let _ = Command::new("kill").arg(pid.trim()).status();
    }
    let calls = std::fs::read_to_string(&log).unwrap();
    (outputs, dir, github, calls)
}

/// A fork made public after `setup` wrote its SSH URL still needs a key (GitHub's SSH asks for one);
/// a cluster made anew gets a new key, and the earlier cluster's key is deleted.
#[test]
fn objects_naming_the_ssh_url_get_a_key_and_a_new_cluster_replaces_the_earlier_ones() {
    let ssh = "git@github.com:someone/service-demo.git";
    let (outputs, _dir, github, calls) = up_runs(ssh, false, 2);
    for output in &outputs {
        assert_ok(output);
    }
    assert!(
        calls.contains(&format!("-var=gitops_repo_url={ssh}")),
        "{calls}"
    );
    let writes: Vec<String> = github
        .requests()
        .into_iter()
        .filter(|r| r.target.contains("/keys"))
        .map(|r| format!("{} {}", r.method, r.target))
        .collect();
    assert_eq!(
        writes,
        [
            "POST /repos/someone/service-demo/keys",
            "GET /repos/someone/service-demo/keys?per_page=100",
            "POST /repos/someone/service-demo/keys",
            "GET /repos/someone/service-demo/keys?per_page=100",
            "DELETE /repos/someone/service-demo/keys/500",
        ]
    );
    let second = stdout(&outputs[1]);
    assert!(
        second.contains(
            "3. deploy key 500 of an earlier cluster (argocd (cargo xtask cluster up)): deleted"
        ),
        "{second}"
    );
}

/// Objects naming both URLs are refused: Argo CD reads one.
#[test]
fn objects_naming_both_urls_are_refused_before_any_change() {
    let (outputs, dir, github, calls) =
        up_runs("https://github.com/someone/service-demo.git", false, 0);
    drop(outputs);
    let root = dir.path().join("repo/gitops/argocd/root.yaml");
    let text = std::fs::read_to_string(&root).unwrap();
    std::fs::write(
        &root,
        text.replace(
            "https://github.com/someone/service-demo.git",
            "git@github.com:someone/service-demo.git",
        ),
    )
    .unwrap();
    let output = xtask(
        &[
            "cluster",
            "up",
            "--github",
            "someone/service-demo",
            "--root",
            dir.path().join("repo").to_str().unwrap(),
        ],
        &[
            ("GITHUB_API_URL", &github.url()),
            ("GITHUB_TOKEN", "test-token"),
            ("PATH", "/nonexistent"),
        ],
    );
    let err = assert_fails(&output);
    assert!(
        err.contains("both as https://github.com/someone/service-demo.git"),
        "{err}"
    );
    assert!(
        err.contains("gitops/argocd/root.yaml") && err.contains("cargo xtask setup"),
        "{err}"
    );
    assert!(calls.is_empty(), "{calls}");
    assert!(github.requests().is_empty());
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
    assert!(err.contains("run `cargo xtask setup`"), "{err}");
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
    let iptables = bin.join("iptables");
    let env = [
        ("PATH", path.as_str()),
        ("HOME", home.to_str().unwrap()),
        ("STAND_IN_LOG", log.to_str().unwrap()),
        ("STAND_IN_DIR", dir.path().to_str().unwrap()),
        ("STAND_IN_ARGOCD", "http://127.0.0.1:9"),
        ("XTASK_IPTABLES", iptables.to_str().unwrap()),
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
        out.contains("runner firewall: NOT in place: no iptables chain SERVICE-DEMO-RUNNER"),
        "{out}"
    );
    assert!(
        stdout(&down).contains("runner firewall: nothing to remove"),
        "{}",
        stdout(&down)
    );
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

/// iptables as the firewall test runs it: directly as root, else through
/// passwordless sudo (wrappers in `dir`, named by XTASK_IPTABLES); Docker's
/// DOCKER-USER chain must be there (Docker's iptables integration on).
fn iptables_for_test(dir: &Path) -> Option<String> {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    let works = |program: &str, args: &[&str]| {
        Command::new(program)
            .args(args)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if root && works("iptables", &["-S", "DOCKER-USER"]) {
        return Some("iptables".into());
    }
    let sudo = works("sudo", &["-n", "iptables", "-S", "DOCKER-USER"]);
    support::require(
        sudo,
        "iptables as root or through passwordless sudo, with Docker's DOCKER-USER chain (the runner firewall test)",
    )?;
    for tool in ["iptables", "iptables-restore"] {
        let path = dir.join(tool);
        std::fs::write(&path, format!("#!/bin/sh\nexec sudo -n {tool} \"$@\"\n")).unwrap();
        Command::new("chmod")
            .arg("755")
            .arg(&path)
            .status()
            .unwrap();
    }
    Some(dir.join("iptables").to_string_lossy().into_owned())
}

/// What the firewall test makes, removed however it ends.
struct FirewallFixture {
    args: Vec<String>,
    env: Vec<(String, String)>,
    network: String,
    bridge: String,
    chain: String,
    node: String,
    kind: String,
    image: String,
}

impl FirewallFixture {
    /// `cluster firewall` for a runner network, bridge, chain, kind network and
    /// node of this test process's own (named from `prefix`), reaching the
    /// node's API server port, through the runner `image`, with
    /// `XTASK_IPTABLES` set to `iptables`.
    fn new(prefix: &str, image: &str, iptables: &str) -> Self {
        let id = std::process::id();
        let network = format!("{prefix}-run-{id}");
        let bridge = format!("{prefix}{id}");
        let chain = format!("{}-RUNNER-{id}", prefix.to_uppercase());
        let node = format!("{prefix}-node-{id}");
        let kind = format!("{prefix}-kind-{id}");
        let args = [
            "cluster",
            "firewall",
            "--network",
            &network,
            "--bridge",
            &bridge,
            "--firewall-chain",
            &chain,
            "--kind-network",
            &kind,
            "--reach",
            &format!("{node}:6443"),
            "--forward",
            "",
            "--image",
            image,
        ]
        .map(str::to_owned)
        .to_vec();
        Self {
            args,
            env: vec![("XTASK_IPTABLES".into(), iptables.into())],
            network,
            bridge,
            chain,
            node,
            kind,
            image: image.to_owned(),
        }
    }

    fn xtask(&self, extra: &[&str]) -> std::process::Output {
        let mut args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        args.extend(extra);
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        xtask(&args, &env)
    }
}

impl Drop for FirewallFixture {
    fn drop(&mut self) {
        let _ = self.xtask(&["--remove"]);
        let docker = |args: &[&str]| Command::new("docker").args(args).output();
        let _ = docker(&["rm", "--force", &self.node]);
        let _ = docker(&["network", "rm", &self.kind]);
        remove_image(&self.image);
    }
}

fn docker_text(args: &[&str]) -> String {
    let output = Command::new("docker").args(args).output().unwrap();
    assert!(output.status.success(), "docker {args:?}: {output:?}");
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// The job the dispatcher runs on the runner network: it tries each
/// `address port`, then fetches a page from kind's stand-in node.
fn probe_job(targets: &[(String, u16)], node: &str) -> String {
    let mut script = String::from(
        "probe() { if nc -w 2 \"$1\" \"$2\" </dev/null >/dev/null 2>&1; then echo \"probe $1:$2 open\"; else echo \"probe $1:$2 closed\"; fi; }\n\
         gateway=$(ip route | awk '/default/ {print $3}')\n\
         echo \"gateway $gateway\"\n",
    );
    // The probes run at once: a dropped one waits out nc's timeout.
    for (address, port) in targets {
        script += &format!("probe {address} {port} &\n");
    }
    script += "wait\n";
    script += &format!("echo \"hosts: $(grep -c '{node}' /etc/hosts)\"\n");
    script += &format!(
        "echo \"page: $(printf 'GET /index.html HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {node} 6443 | tail -n 1)\"\n"
    );
    job(&main_push_env(), &script)
}

#[test]
fn the_runner_network_reaches_kinds_allowed_ports_and_nothing_of_the_host() {
    let dir = TempDir::new("runner-firewall");
    let Some(iptables) = iptables_for_test(dir.path()) else {
        return;
    };
    let Some(image) = build_stand_in_image("firewall") else {
        return;
    };
    let fixture = FirewallFixture::new("sdt", &image, &iptables);
    let (network, bridge, chain, node) = (
        fixture.network.clone(),
        fixture.bridge.clone(),
        fixture.chain.clone(),
        fixture.node.clone(),
    );
    // kind's stand-in node: a web server on the API server's port and on one the runner may not open.
    docker_text(&["network", "create", &fixture.kind]);
    docker_text(&[
        "run",
        "--detach",
        "--name",
        &node,
        "--network",
        &fixture.kind,
        "--entrypoint",
        "sh",
        &image,
        "-c",
        "echo kind-node-page > /tmp/index.html; httpd -p 6443 -h /tmp; httpd -p 8080 -h /tmp; sleep 600",
    ]);
    let inspect = |what: &str, format: &str| docker_text(&["inspect", "--format", format, what]);
    let node_address = inspect(
        &node,
        &format!(
            "{{{{(index .NetworkSettings.Networks \"{}\").IPAddress}}}}",
            fixture.kind
        ),
    );
    let gateway = |network: &str| inspect(network, "{{(index .IPAM.Config 0).Gateway}}");
    // A listener on every address of this host.
    let listener = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            drop(stream);
        }
    });
    // Without the firewall, a container reaches it: the probe can see a listener.
    let docker0 = gateway("bridge");
    let control = Command::new("docker")
        .args([
            "run",
            "--rm",
            "--network",
            "bridge",
            "--entrypoint",
            "nc",
            &image,
        ])
        .args(["-w", "3", &docker0, &port.to_string()])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(control.status.success(), "the control probe: {control:?}");

    let first = fixture.xtask(&[]);
    assert_ok(&first);
    let first = stdout(&first);
    for line in [
        format!("network {network} (bridge {bridge}): created"),
        format!("chain {chain} (11 rules): written"),
        format!("DOCKER-USER -i {bridge} -j {chain}: added"),
        format!("DOCKER-USER -o {bridge} -j {chain}: added"),
        format!("INPUT -i {bridge} -j DROP: added"),
    ] {
        assert!(first.contains(&line), "{line:?} missing:\n{first}");
    }
    let again = fixture.xtask(&[]);
    assert_ok(&again);
    assert!(
        stdout(&again).contains(&format!("firewall of {network}: in place")),
        "{}",
        stdout(&again)
    );
    assert_ok(&fixture.xtask(&["--check"]));

    // The dispatcher's real code runs the job on the runner network.
    let host_addresses = [gateway(&network), docker0, gateway(&fixture.kind)];
    let mut targets: Vec<(String, u16)> =
        host_addresses.iter().map(|a| (a.clone(), port)).collect();
    targets.push((node_address.clone(), 6443));
    targets.push((node_address.clone(), 8080));
    let github = fake_github(vec![probe_job(&targets, &node)]);
    let mut args: Vec<&str> = vec![
        "cluster",
        "runner",
        "--once",
        "--image",
        &image,
        "--home-size",
        "16m",
    ];
    args.extend(
        fixture.args[2..fixture.args.len() - 2]
            .iter()
            .map(String::as_str),
    );
    let ran = xtask(
        &args,
        &[
            ("GITHUB_API_URL", &github.url()),
            ("GITHUB_REPOSITORY", OWNER_REPO),
            ("GITHUB_TOKEN", "test-token-not-printed"),
            ("XTASK_IPTABLES", &iptables),
        ],
    );
    assert_ok(&ran);
    let out = stdout(&ran);
    assert!(
        out.contains(&format!("gateway {}", host_addresses[0])),
        "{out}"
    );
    for address in &host_addresses {
        assert!(
            out.contains(&format!("probe {address}:{port} closed")),
            "the host at {address}:\n{out}"
        );
    }
    assert!(
        out.contains(&format!("probe {node_address}:6443 open")),
        "{out}"
    );
    assert!(
        out.contains(&format!("probe {node_address}:8080 closed")),
        "{out}"
    );
    assert!(out.contains("page: kind-node-page"), "{out}");
    assert!(out.contains("hosts: 1"), "the node by name: {out}");

    // Removed: no rule names the bridge or the chain, the network is gone, and --check says so.
    let removed = fixture.xtask(&["--remove"]);
    assert_ok(&removed);
    assert!(
        stdout(&removed).contains(&format!("chain {chain}: removed")),
        "{}",
        stdout(&removed)
    );
    let mut list = Command::new(&iptables);
    let rules = list.arg("-S").output().unwrap();
    let rules = String::from_utf8_lossy(&rules.stdout);
    assert!(
        !rules.contains(&bridge) && !rules.contains(&chain),
        "{rules}"
    );
    let gone = Command::new("docker")
        .args(["network", "inspect", &network])
        .output()
        .unwrap();
    assert!(!gone.status.success());
    let check = assert_fails(&fixture.xtask(&["--check"]));
    assert!(
        check.contains(&format!("no iptables chain {chain}")),
        "{check}"
    );
}

/// An image as the runner image is to the firewall: iptables (this host's, nft and legacy, with their
/// libraries and extensions) and a busybox, FROM scratch.
fn build_iptables_image(test: &str) -> String {
    let dir = TempDir::new("iptables-image");
    let ctx = dir.path();
    let mut files: Vec<std::path::PathBuf> = vec!["/bin/busybox".into()];
    for multi in ["xtables-nft-multi", "xtables-legacy-multi"] {
        let binary = Path::new("/usr/sbin").join(multi);
        let ldd = Command::new("ldd").arg(&binary).output().unwrap();
        for line in String::from_utf8_lossy(&ldd.stdout).lines() {
            let path = line.split_whitespace().find(|w| w.starts_with('/'));
            files.extend(path.map(std::path::PathBuf::from));
        }
        files.push(binary);
    }
    let libxtables = files
        .iter()
        .find(|f| f.to_string_lossy().contains("libxtables"))
        .expect("iptables links libxtables")
        .clone();
    let extensions = std::fs::canonicalize(&libxtables)
        .unwrap()
        .parent()
        .unwrap()
        .join("xtables");
    let mut dockerfile = String::from("FROM scratch\n");
    for (n, file) in files.iter().enumerate() {
        std::fs::copy(file, ctx.join(format!("f{n}"))).unwrap();
        dockerfile += &format!("COPY f{n} {}\n", file.display());
    }
    support::copy_dir(&extensions, &ctx.join("xtables"));
    dockerfile += &format!("COPY xtables {}/\n", extensions.display());
    for (name, multi) in [
        ("iptables-nft", "xtables-nft-multi"),
        ("iptables-nft-restore", "xtables-nft-multi"),
        ("iptables-legacy", "xtables-legacy-multi"),
        ("iptables-legacy-restore", "xtables-legacy-multi"),
    ] {
        dockerfile += &format!(
            "COPY f{} /usr/sbin/{name}\n",
            files.iter().position(|f| f.ends_with(multi)).unwrap()
        );
    }
    dockerfile +=
        "RUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\nENV PATH=/usr/sbin:/bin\n";
    std::fs::write(ctx.join("Dockerfile"), dockerfile).unwrap();
    let tag = format!(
        "service-demo-iptables-stand-in:{test}-{}",
        std::process::id()
    );
    let built = Command::new("docker")
        .args(["build", "--quiet", "--tag", &tag])
        .arg(ctx)
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "docker build: {}",
        String::from_utf8_lossy(&built.stderr)
    );
    tag
}

/// Not root (a user who may run Docker): the firewall goes in, is checked and comes out through a
/// throwaway container of the runner image on the host's network (forced here with XTASK_IPTABLES=container),
/// in the backend Docker's DOCKER-USER is in; the host's own iptables sees the rules.
#[test]
fn without_root_the_firewall_goes_in_through_a_container_of_the_image() {
    let dir = TempDir::new("firewall-container");
    let Some(iptables) = iptables_for_test(dir.path()) else {
        return;
    };
    support::docker().unwrap();
    let image = build_iptables_image("firewall");
    let fixture = FirewallFixture::new("sdc", &image, "container");
    let (bridge, chain, node) = (
        fixture.bridge.clone(),
        fixture.chain.clone(),
        fixture.node.clone(),
    );
    docker_text(&["network", "create", &fixture.kind]);
    docker_text(&[
        "run",
        "--detach",
        "--name",
        &node,
        "--network",
        &fixture.kind,
        &image,
        "sleep",
        "600",
    ]);
    let node_address = docker_text(&[
        "inspect",
        "--format",
        &format!(
            "{{{{(index .NetworkSettings.Networks \"{}\").IPAddress}}}}",
            fixture.kind
        ),
        &node,
    ]);
    let installed = fixture.xtask(&[]);
    assert_ok(&installed);
    let out = stdout(&installed);
    assert!(
        out.contains(&format!("chain {chain} (11 rules): written")),
        "{out}"
    );
    assert!(
        out.contains(&format!("INPUT -i {bridge} -j DROP: added")),
        "{out}"
    );
    let host = |args: &[&str]| {
        let output = Command::new(&iptables).args(args).output().unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
        )
    };
    let (_, listed) = host(&["-S", &chain]);
    assert_eq!(
        listed.lines().filter(|l| l.starts_with("-A ")).count(),
        11,
        "{listed}"
    );
    assert!(
        listed.contains(&format!(
            "-A {chain} -d {node_address}/32 -i {bridge} -p tcp -m tcp --dport 6443 -j ACCEPT"
        )),
        "{listed}"
    );
    assert!(host(&["-C", "INPUT", "-i", &bridge, "-j", "DROP"]).0);
    assert_ok(&fixture.xtask(&["--check"]));
    assert_ok(&fixture.xtask(&["--remove"]));
    let (_, all) = host(&["-S"]);
    assert!(!all.contains(&bridge) && !all.contains(&chain), "{all}");
}
