//! The mechanics of `cargo xtask cluster up|down|status`: a plan read from
//! the repository (Terraform's variables, the fork's admission policy and its
//! key, the secrets and variables to write), then its steps.
//!
//! What Terraform does not hold, on purpose:
//! - the admission policy (`gitops/policy/image-signatures.yaml`): read from
//!   the fork's repository when `up` runs, checked to carry
//!   `gitops/policy/cosign.pub`, and applied through kubectl's stdin, so a
//!   fork's own key reaches the cluster on the next `up` with no edit of
//!   Terraform (`validate` refuses a key inline in a `.tf` file);
//! - Argo CD's tokens: made over Argo CD's REST API (a session from the
//!   admin password, then one token per project role) and written straight
//!   to the fork's environment secrets; they are never printed or stored.
//!
//! Argo CD's tokens, one description everywhere (outputs.tf, doctor, README):
//! ARGOCD_PREVIEW_TOKEN is project role `preview` (environment `preview`),
//! ARGOCD_PREPROD_TOKEN project role `preprod` (environment `preprod`),
//! ARGOCD_AUTH_TOKEN project role `release` (environment `prod`), roles of
//! the `service-demo` AppProject (gitops/argocd/project.yaml).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::domain::cluster_runner::{
    self, ARGOCD_NODE_PORT, Iptables, RUNNER_IMAGE, RunnerSettings, dispatcher_files,
    dispatcher_running, firewall_problems_now, reach, runner_settings, terraform_default,
};
use crate::domain::github::{Change, GitHub, Scope};

/// The admission policy and the key it must carry, in the fork's repository.
use crate::domain::{POLICY_FILE, POLICY_PUBLIC_KEY_FILE};

/// The AppProject whose roles the workflows' tokens belong to.
pub const PROJECT: &str = "service-demo";
/// (environment, secret, project role): the Argo CD tokens the workflows read.
pub const TOKENS: [(&str, &str, &str); 3] = [
    ("preview", "ARGOCD_PREVIEW_TOKEN", "preview"),
    ("preprod", "ARGOCD_PREPROD_TOKEN", "preprod"),
    ("prod", "ARGOCD_AUTH_TOKEN", "release"),
];

/// The fork `up` works for.
#[derive(Debug, Clone)]
pub struct Fork {
    /// `owner/name`.
    pub repository: String,
}

impl Fork {
    /// `--github`/GITHUB_REPOSITORY, else the `origin` remote of `root`.
    pub fn resolve(given: Option<&str>, root: &Path) -> Result<Self> {
        let repository = match given.filter(|g| !g.is_empty()) {
            Some(given) => given.to_owned(),
            None => {
                let (owner, name) = crate::domain::github::origin_repository(root)?;
                format!("{owner}/{name}")
            }
        };
        let parts: Vec<&str> = repository.split('/').collect();
        let valid = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        };
        if parts.len() != 2 || !parts.iter().all(|p| valid(p)) {
            bail!(
                "--github {repository:?}: expected <owner>/<name>, e.g. --github you/service-demo"
            );
        }
        Ok(Self { repository })
    }

    pub fn clone_url(&self) -> String {
        format!("https://github.com/{}.git", self.repository)
    }

    /// How Argo CD reads a private fork: over SSH, with a read-only deploy key.
    pub fn ssh_url(&self) -> String {
        format!("git@github.com:{}.git", self.repository)
    }
}

/// A file of the repository with its digest, as the plan names it.
#[derive(Debug, Clone)]
pub struct Digested {
    pub path: String,
    pub text: String,
    pub sha256: String,
}

impl Digested {
    fn read(root: &Path, path: &str) -> Result<Self> {
        let text = std::fs::read_to_string(root.join(path))
            .with_context(|| format!("reading {path} (the fork's admission policy)"))?;
        let sha256 = crate::plumbing::text::hex(&Sha256::digest(text.as_bytes()));
        Ok(Self {
            path: path.to_owned(),
            text,
            sha256,
        })
    }
}

/// Everything `up` will do, read from the repository before anything changes.
#[derive(Debug)]
pub struct Plan {
    pub fork: Fork,
    pub terraform_dir: PathBuf,
    pub terraform_vars: Vec<(String, String)>,
    pub policy: Digested,
    pub policy_key: Digested,
    pub cluster_name: String,
    /// (name, value) repository variables, as the runner sees them.
    pub variables: Vec<(String, String)>,
    pub runner_dockerfile: String,
    pub rust_version: String,
    /// `port=host:port`: the runner's loopback forwards to kind's control-plane
    /// node (Argo CD's NodePort, the ingress controller's port 80).
    pub forwards: Vec<String>,
    /// `host:port` the runner may open on kind's network ([`reach`]).
    pub reach: Vec<String>,
}

impl Plan {
    pub fn read(root: &Path, fork: &Fork) -> Result<Self> {
        let terraform_dir = root.join("terraform");
        let default = |name: &str| terraform_default(&terraform_dir, name);
        let cluster_name = default("cluster_name")?;
        let policy = Digested::read(root, POLICY_FILE)?;
        let policy_key = Digested::read(root, POLICY_PUBLIC_KEY_FILE)?;
        check_policy_key(&policy, &policy_key)?;
        let forwards = vec![
            format!(
                "{}={cluster_name}-control-plane:{ARGOCD_NODE_PORT}",
                default("argocd_http_port")?
            ),
            format!(
                "{}={cluster_name}-control-plane:80",
                default("ingress_http_port")?
            ),
        ];
        let variables = vec![
            (
                "ARGOCD_SERVER".to_owned(),
                format!("http://127.0.0.1:{}", default("argocd_http_port")?),
            ),
            (
                "INGRESS_URL".to_owned(),
                format!("http://127.0.0.1:{}", default("ingress_http_port")?),
            ),
        ];
        let reach = reach(&cluster_name);
        Ok(Self {
            fork: fork.clone(),
            terraform_vars: vec![("gitops_repo_url".into(), fork.clone_url())],
            terraform_dir,
            policy,
            policy_key,
            cluster_name,
            variables,
            forwards,
            reach,
            runner_dockerfile: "terraform/runner/Dockerfile".into(),
            rust_version: rust_version(root)?,
        })
    }

    /// The plan as `up` prints it (with or without --dry-run).
    pub fn render(&self) -> String {
        let vars: Vec<String> = self
            .terraform_vars
            .iter()
            .map(|(k, v)| format!("-var {k}={v}"))
            .collect();
        let mut out = format!("cluster up for {}:\n", self.fork.repository);
        out += &format!(
            "1. terraform init, apply -auto-approve {} (or the SSH URL, when gitops/argocd names it) in terraform/ (kind {}, Argo CD, ingress-nginx, CloudNativePG, Kyverno, the AppProjects, the root app)\n",
            vars.join(" "),
            self.cluster_name
        );
        out += &format!(
            "2. admission policy {} (sha256 {}) with the fork's key {} (sha256 {}): kubectl apply -f - (from the repository as it is now)\n",
            self.policy.path, self.policy.sha256, self.policy_key.path, self.policy_key.sha256
        );
        out += &format!(
            "3. Argo CD repository credentials, only when gitops/argocd names the SSH URL (`setup` writes it for a private fork; a private fork named over HTTPS is refused): it is read at {} with a read-only deploy key (registered through GitHub's API, earlier clusters' keys deleted; its private half only in Argo CD's Secret {REPO_SECRET})\n",
            self.fork.ssh_url()
        );
        for (env, secret, role) in TOKENS {
            out += &format!(
                "4. secret {secret} of environment {env}: a token of Argo CD project role {PROJECT}/{role} (made only when the secret is missing)\n"
            );
        }
        for (name, value) in &self.variables {
            out += &format!(
                "5. repository variable {name}={value} (the runner forwards it to kind's node)\n"
            );
        }
        out += &format!(
            "6. runner image {RUNNER_IMAGE} from {} (Rust {})\n",
            self.runner_dockerfile, self.rust_version
        );
        out += &format!(
            "7. the runner's network and host firewall: it reaches {} on Docker network kind and the internet, nothing of this host and no private range (<host>: that node's address on kind, read when the rules go in):\n",
            self.reach.join(", ")
        );
        for line in self.planned_firewall().render() {
            out += &format!("   {line}\n");
        }
        out += "8. the dispatcher `cargo xtask cluster runner` in the background\n";
        out
    }

    /// The runner's settings as `up` starts the dispatcher with them.
    pub fn runner_settings(&self) -> RunnerSettings {
        runner_settings(&self.cluster_name, self.forwards.clone())
    }

    /// The runner's firewall as planned: `<host>` for each node's address,
    /// which is looked up when the rules go in.
    fn planned_firewall(&self) -> cluster_runner::Firewall {
        let allowed = self
            .reach
            .iter()
            .filter_map(|target| {
                let (host, port) = target.rsplit_once(':')?;
                Some((format!("<{host}>"), port.parse().ok()?))
            })
            .collect();
        cluster_runner::firewall_of(&self.runner_settings(), allowed)
    }
}

/// rust-toolchain.toml's channel: the runner image's Rust.
fn rust_version(root: &Path) -> Result<String> {
    let text = std::fs::read_to_string(root.join("rust-toolchain.toml"))
        .context("reading rust-toolchain.toml")?;
    let doc: toml::Table = toml::from_str(&text).context("rust-toolchain.toml is not TOML")?;
    doc.get("toolchain")
        .and_then(|t| t.get("channel"))
        .and_then(|c| c.as_str())
        .map(str::to_owned)
        .context("rust-toolchain.toml has no [toolchain] channel")
}

/// The policy's `publicKeys` blocks, each of which must be the key file.
pub fn policy_keys(policy: &str) -> Result<Vec<String>> {
    let doc: Value = yaml_serde::from_str(policy).context("the admission policy is not YAML")?;
    let mut keys = Vec::new();
    for rule in doc["spec"]["rules"].as_array().into_iter().flatten() {
        for verify in rule["verifyImages"].as_array().into_iter().flatten() {
            for attestor in verify["attestors"].as_array().into_iter().flatten() {
                for entry in attestor["entries"].as_array().into_iter().flatten() {
                    if let Some(key) = entry["keys"]["publicKeys"].as_str() {
                        keys.push(key.trim().to_owned());
                    }
                }
            }
        }
    }
    Ok(keys)
}

fn check_policy_key(policy: &Digested, key: &Digested) -> Result<()> {
    let keys = policy_keys(&policy.text)?;
    if keys.is_empty() {
        bail!("{}: no publicKeys; nothing was changed", policy.path);
    }
    if keys.iter().any(|k| k != key.text.trim()) {
        bail!(
            "{} carries a key that is not {} (sha256 {}): the cluster would refuse the fork's images. \
             Put the same key in both (`cargo xtask setup` writes both; `cargo xtask validate` checks it); nothing was changed",
            policy.path,
            key.path,
            key.sha256
        );
    }
    Ok(())
}

/// `terraform <args>` in `dir`, its output shown.
fn terraform(dir: &Path, args: &[&str]) -> Result<()> {
    let status = Command::new("terraform")
        .args(args)
        .current_dir(dir)
        .env("TF_IN_AUTOMATION", "1")
        .env("TF_INPUT", "0")
        .status()
        .context("running terraform (install Terraform >= 1.6)")?;
    if !status.success() {
        bail!("terraform {} failed ({status})", args.join(" "));
    }
    Ok(())
}

/// `terraform output -raw <name>`.
fn terraform_output(dir: &Path, name: &str) -> Result<String> {
    let output = Command::new("terraform")
        .args(["output", "-raw", name])
        .current_dir(dir)
        .output()
        .context("running terraform output")?;
    if !output.status.success() {
        bail!(
            "terraform output {name}: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8(output.stdout)?.trim().to_owned())
}

/// `kubectl --kubeconfig <k> <args>` with `stdin` (never on the command line); its stdout.
fn kubectl(kubeconfig: &str, args: &[&str], stdin: &[u8]) -> Result<String> {
    let mut child = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running kubectl (install it: https://kubernetes.io/docs/tasks/tools/)")?;
    child
        .stdin
        .take()
        .context("kubectl's stdin")?
        .write_all(stdin)?;
    let output = child.wait_with_output()?;
    if !output.status.success() {
        bail!(
            "kubectl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// Runs the plan's steps; each says what it changed.
pub fn apply(root: &Path, plan: &Plan, github: &GitHub) -> Result<()> {
    let (url, private) = argocd_url(root, github, &plan.fork)?;
    let dir = &plan.terraform_dir;
    terraform(dir, &["init", "-input=false"])?;
    let apply = [
        "apply",
        "-auto-approve",
        "-input=false",
        &format!("-var=gitops_repo_url={url}"),
    ];
    terraform(dir, &apply)?;
    let kubeconfig = terraform_output(dir, "kubeconfig_path")?;
    if private {
        repository_credentials(github, &kubeconfig, &url)?;
    }
    let applied = kubectl(
        &kubeconfig,
        &["apply", "-f", "-"],
        plan.policy.text.as_bytes(),
    )?;
    println!(
        "2. {} (sha256 {}): {applied}",
        plan.policy.path, plan.policy.sha256
    );
    let argocd_url = terraform_output(dir, "argocd_url")?;
    write_tokens(github, &kubeconfig, &argocd_url)?;
    write_variables(github, &plan.variables)?;
    build_runner_image(root, plan)?;
    let settings = plan.runner_settings();
    let iptables = Iptables::detect(&settings.image)?;
    let (_, allowed) = cluster_runner::resolve_targets(&settings)?;
    let firewall = cluster_runner::firewall_of(&settings, allowed);
    for change in cluster_runner::install_firewall(&firewall, &iptables)? {
        println!("7. runner firewall: {change}");
    }
    let labels = runner_labels(github)?;
    start_dispatcher(plan, &labels)
}

/// The URL Argo CD reads the fork at, as its objects under gitops/argocd
/// name it (Terraform's root app must name the same), and whether Argo CD
/// needs credentials: the SSH URL (`setup` writes it for a private fork)
/// always does, public or not; a private fork named over HTTPS is refused
/// before any change (an SSH key matches no HTTPS URL).
fn argocd_url(root: &Path, github: &GitHub, fork: &Fork) -> Result<(String, bool)> {
    let (https, ssh) = (fork.clone_url(), fork.ssh_url());
    let naming = |url: &str| -> Result<Vec<String>> {
        let mut named = Vec::new();
        for file in crate::plumbing::fs::yaml_files(&root.join("gitops/argocd"))? {
            if std::fs::read_to_string(&file)?.contains(url) {
                named.push(crate::plumbing::fs::relative(root, &file));
            }
        }
        Ok(named)
    };
    let (over_https, over_ssh) = (naming(&https)?, naming(&ssh)?);
    if !over_https.is_empty() && !over_ssh.is_empty() {
        bail!(
            "gitops/argocd names {} both as {https} ({}) and as {ssh} ({}): Argo CD reads one URL; run `cargo xtask setup` (it writes the one the fork's visibility needs); nothing was changed",
            fork.repository,
            over_https.join(", "),
            over_ssh.join(", ")
        );
    }
    if !over_ssh.is_empty() {
        return Ok((ssh, true));
    }
    if github.get("")?["private"].as_bool().unwrap_or(false) {
        bail!(
            "{} is private: Argo CD reads it over SSH with a read-only deploy key, so its objects must name {ssh} instead of {https} ({}); \
             run `cargo xtask setup` (it writes the SSH URL for a private fork and pushes it), or make the fork public; nothing was changed",
            fork.repository,
            if over_https.is_empty() {
                "gitops/argocd names neither".to_owned()
            } else {
                over_https.join(", ")
            }
        );
    }
    Ok((https, false))
}

/// The Argo CD repository Secret of a private fork.
const REPO_SECRET: &str = "service-demo-repository";

/// A private fork's credentials in Argo CD, once: a key pair made in memory,
/// its public half registered as a read-only deploy key through GitHub's API,
/// its private half straight into Argo CD's repository Secret through
/// kubectl's stdin (never on disk, never on a command line).
fn repository_credentials(github: &GitHub, kubeconfig: &str, url: &str) -> Result<()> {
    let present = kubectl(
        kubeconfig,
        &[
            "-n",
            "argocd",
            "get",
            "secret",
            REPO_SECRET,
            "--ignore-not-found",
            "-o",
            "name",
        ],
        b"",
    )?;
    if !present.is_empty() {
        println!(
            "3. Argo CD repository credentials for {url}: unchanged (Secret {REPO_SECRET} exists)"
        );
        return Ok(());
    }
    let (private_pem, public_ssh) = deploy_key_pair()?;
    let body = json!({"title": ARGOCD_KEY_TITLE, "key": public_ssh, "read_only": true});
    let registered = github.post_to(&github.repo_path("/keys"), &body)?;
    let secret = json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": REPO_SECRET,
            "namespace": "argocd",
            "labels": {"argocd.argoproj.io/secret-type": "repository"},
        },
        "stringData": {"type": "git", "url": url, "sshPrivateKey": private_pem},
    });
    let applied = kubectl(
        kubeconfig,
        &["apply", "-f", "-"],
        secret.to_string().as_bytes(),
    )?;
    println!(
        "3. Argo CD repository credentials for {url}: a read-only deploy key registered, {applied}"
    );
    // The keys of earlier clusters (their Secrets went with them) open nothing any more: deleted.
    let keys = github.get("/keys?per_page=100")?;
    let earlier = keys.as_array().into_iter().flatten().filter(|key| {
        key["title"] == ARGOCD_KEY_TITLE && key["id"] != registered["id"] && key["id"].is_u64()
    });
    for key in earlier {
        let id = &key["id"];
        github.delete(&github.repo_path(&format!("/keys/{id}")))?;
        println!("3. deploy key {id} of an earlier cluster ({ARGOCD_KEY_TITLE}): deleted");
    }
    Ok(())
}

/// The title of the read-only deploy key `up` registers for Argo CD.
const ARGOCD_KEY_TITLE: &str = "argocd (cargo xtask cluster up)";

/// An ECDSA P-256 key pair: the private key as PKCS#8 PEM (what Argo CD's
/// `sshPrivateKey` takes), the public key in OpenSSH's format (what GitHub's
/// deploy keys take).
pub fn deploy_key_pair() -> Result<(String, String)> {
    use p256::pkcs8::EncodePrivateKey;
    let secret = p256::SecretKey::random(&mut rand_core::OsRng);
    let pem = secret
        .to_pkcs8_pem(p256::pkcs8::LineEnding::LF)
        .context("encoding the deploy key")?;
    Ok((pem.to_string(), openssh_public_key(&secret.public_key())))
}

/// `ecdsa-sha2-nistp256 <base64>`: RFC 5656's wire format of the public key.
pub fn openssh_public_key(key: &p256::PublicKey) -> String {
    use base64::Engine;
    use p256::elliptic_curve::sec1::ToEncodedPoint;
    let mut wire = Vec::new();
    let point = key.to_encoded_point(false);
    for field in [
        b"ecdsa-sha2-nistp256".as_slice(),
        b"nistp256",
        point.as_bytes(),
    ] {
        wire.extend_from_slice(&(field.len() as u32).to_be_bytes());
        wire.extend_from_slice(field);
    }
    format!(
        "ecdsa-sha2-nistp256 {}",
        base64::engine::general_purpose::STANDARD.encode(wire)
    )
}

/// Argo CD's admin password, from the Secret Argo CD made (decoded here, never printed).
fn admin_password(kubeconfig: &str) -> Result<String> {
    use base64::Engine;
    let encoded = kubectl(
        kubeconfig,
        &[
            "-n",
            "argocd",
            "get",
            "secret",
            "argocd-initial-admin-secret",
            "-o",
            "jsonpath={.data.password}",
        ],
        b"",
    )?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .context("argocd-initial-admin-secret's password is not base64")?;
    String::from_utf8(bytes).context("Argo CD's admin password is not UTF-8")
}

/// Argo CD's REST API as its admin: a session from the admin password
/// (`POST /api/v1/session`), then project-role tokens
/// (`POST /api/v1/projects/<project>/roles/<role>/token`). Neither the
/// password nor a token is ever printed.
pub struct ArgoAdmin {
    client: reqwest::blocking::Client,
    server: String,
    session: String,
}

impl ArgoAdmin {
    pub fn login(server: &str, password: &str) -> Result<Self> {
        let client = crate::plumbing::http::client(crate::plumbing::http::TIMEOUT)?;
        let server = server.trim_end_matches('/').to_owned();
        let session: Value = client
            .post(format!("{server}/api/v1/session"))
            .json(&json!({"username": "admin", "password": password}))
            .send()
            .with_context(|| format!("POST {server}/api/v1/session"))?
            .error_for_status()
            .context("Argo CD refused the admin session")?
            .json()?;
        let session = session["token"]
            .as_str()
            .context("Argo CD's session has no token")?
            .to_owned();
        Ok(Self {
            client,
            server,
            session,
        })
    }

    pub fn role_token(&self, role: &str) -> Result<String> {
        let url = format!(
            "{}/api/v1/projects/{PROJECT}/roles/{role}/token",
            self.server
        );
        let body =
            json!({"project": PROJECT, "role": role, "description": "cargo xtask cluster up"});
        let answer: Value = self
            .client
            .post(&url)
            .bearer_auth(&self.session)
            .json(&body)
            .send()
            .with_context(|| format!("POST {url}"))?
            .error_for_status()
            .with_context(|| format!("Argo CD refused a token of role {role}"))?
            .json()?;
        answer["token"]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("Argo CD's answer for role {role} has no token"))
    }
}

/// Each missing token secret: made and written; a present one is left as it is.
fn write_tokens(github: &GitHub, kubeconfig: &str, argocd_url: &str) -> Result<()> {
    let mut admin = None;
    for (env, secret, role) in TOKENS {
        if github.secret_exists(Scope::Environment(env), secret)? {
            println!(
                "4. secret {secret} of {env}: unchanged (present; delete it to make a new token)"
            );
            continue;
        }
        if admin.is_none() {
            admin = Some(ArgoAdmin::login(argocd_url, &admin_password(kubeconfig)?)?);
        }
        let token = admin
            .as_ref()
            .context("the Argo CD session")?
            .role_token(role)?;
        github.put_secret(Scope::Environment(env), secret, &token)?;
        println!("4. secret {secret} of {env}: written (a token of project role {PROJECT}/{role})");
    }
    Ok(())
}

fn write_variables(github: &GitHub, variables: &[(String, String)]) -> Result<()> {
    for (name, value) in variables {
        let change = match github.set_variable(Scope::Repository, name, value)? {
            Change::Created => "created",
            Change::Updated => "updated",
            Change::Unchanged => "unchanged",
        };
        println!("5. variable {name}={value}: {change}");
    }
    Ok(())
}

/// `docker build` of the runner image (it needs the internet: the base image, Rust, the Actions runner).
fn build_runner_image(root: &Path, plan: &Plan) -> Result<()> {
    let status = Command::new("docker")
        .args(["build", "--tag", RUNNER_IMAGE, "--build-arg"])
        .arg(format!("RUST_VERSION={}", plan.rust_version))
        .arg(root.join("terraform/runner"))
        .status()
        .context("running docker build")?;
    if !status.success() {
        bail!(
            "building {RUNNER_IMAGE} from {} failed",
            plan.runner_dockerfile
        );
    }
    println!(
        "6. runner image {RUNNER_IMAGE}: built (Docker's cache keeps an unchanged build as it was)"
    );
    Ok(())
}

/// `cargo xtask cluster runner` in the background (it inherits GITHUB_TOKEN
/// through the environment, never argv), unless it runs already.
/// The labels the workflows' cluster jobs ask for: the repository variable
/// CLUSTER_RUNNER (a JSON array), else `self-hosted,kind`.
fn runner_labels(github: &GitHub) -> Result<Vec<String>> {
    let default = crate::domain::cluster_runner::DEFAULT_LABELS
        .map(str::to_owned)
        .to_vec();
    match github.variable(Scope::Repository, "CLUSTER_RUNNER")? {
        None => Ok(default),
        Some(value) if value.trim().is_empty() => Ok(default),
        Some(value) => serde_json::from_str(&value).with_context(|| {
            format!("the repository variable CLUSTER_RUNNER={value:?} is not a JSON array of labels, e.g. [\"self-hosted\",\"kind\"]")
        }),
    }
}

fn start_dispatcher(plan: &Plan, labels: &[String]) -> Result<()> {
    if let Some(pid) = dispatcher_running()? {
        println!("8. dispatcher: unchanged (running, pid {pid})");
        return Ok(());
    }
    let (pid_file, log_file) = dispatcher_files()?;
    let log = std::fs::File::create(&log_file)?;
    let child = Command::new(std::env::current_exe()?)
        .args([
            "cluster",
            "runner",
            "--network",
            &plan.runner_settings().network,
        ])
        .arg("--forward")
        .arg(plan.forwards.join(","))
        .arg("--reach")
        .arg(plan.reach.join(","))
        .arg("--labels")
        .arg(labels.join(","))
        .env("GITHUB_REPOSITORY", &plan.fork.repository)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("starting the dispatcher")?;
    std::fs::write(&pid_file, child.id().to_string())?;
    println!(
        "8. dispatcher: started (pid {}, log {})",
        child.id(),
        log_file.display()
    );
    Ok(())
}

/// `terraform destroy`, and the dispatcher stopped.
pub fn down(root: &Path, dry_run: bool) -> Result<()> {
    let dir = root.join("terraform");
    if dry_run {
        println!(
            "cluster down would: stop the dispatcher if it runs, remove the runner's firewall rules (chain {}, its jumps from DOCKER-USER and INPUT) and network {}, terraform destroy -auto-approve in terraform/ (the kind cluster and all it holds)",
            cluster_runner::FIREWALL_CHAIN,
            cluster_runner::RUNNER_NETWORK
        );
        return Ok(());
    }
    if let Some(pid) = dispatcher_running()? {
        let _ = Command::new("kill").arg(pid.to_string()).status();
        println!("dispatcher (pid {pid}): stopped");
    }
    let settings = runner_settings(&terraform_default(&dir, "cluster_name")?, Vec::new());
    let firewall = cluster_runner::firewall_of(&settings, Vec::new());
    let removed = Iptables::detect(&settings.image)
        .and_then(|iptables| cluster_runner::remove_firewall(&firewall, &iptables));
    match removed {
        Ok(lines) if lines.is_empty() => println!("runner firewall: nothing to remove"),
        Ok(lines) => lines.iter().for_each(|l| println!("runner firewall: {l}")),
        // The cluster still goes: the rules only confine a runner, and none runs now.
        Err(error) => println!(
            "runner firewall: not removed ({error:#}); `cargo xtask cluster firewall --remove` removes it"
        ),
    }
    terraform(&dir, &["destroy", "-auto-approve", "-input=false"])?;
    println!(
        "the kind cluster is destroyed; the fork's Argo CD token secrets name a cluster that is gone (the next `up` keeps them: delete them to have new ones made)"
    );
    Ok(())
}

/// What is up: the cluster's kubeconfig, the dispatcher, runner containers, the policy's key.
pub fn status(root: &Path) -> Result<()> {
    let dir = root.join("terraform");
    match terraform_output(&dir, "kubeconfig_path") {
        Ok(kubeconfig) => match kubectl(&kubeconfig, &["get", "nodes", "--no-headers"], b"") {
            Ok(nodes) => println!("cluster: up\n{nodes}"),
            Err(e) => println!("cluster: Terraform has state, kubectl cannot reach it ({e:#})"),
        },
        Err(_) => println!("cluster: not up (no Terraform state in terraform/)"),
    }
    match dispatcher_running()? {
        Some(pid) => println!("dispatcher: running (pid {pid})"),
        None => println!("dispatcher: not running (`cargo xtask cluster runner`, or `cluster up`)"),
    }
    let output = Command::new("docker")
        .args([
            "ps",
            "--filter",
            "label=service-demo.runner=1",
            "--format",
            "{{.Names}} {{.Status}}",
        ])
        .output();
    match output {
        Ok(o) if o.status.success() => {
            let running = String::from_utf8_lossy(&o.stdout);
            println!(
                "runner containers: {}",
                if running.trim().is_empty() {
                    "none"
                } else {
                    running.trim()
                }
            );
        }
        _ => println!("runner containers: Docker does not answer"),
    }
    println!("runner firewall: {}", firewall_status(&dir));
    let key = Digested::read(root, POLICY_PUBLIC_KEY_FILE)?;
    println!(
        "policy key: {} sha256 {} (what the next `up` applies)",
        key.path, key.sha256
    );
    Ok(())
}

/// Whether the runner's firewall is in place, in words (`cluster status`).
fn firewall_status(terraform_dir: &Path) -> String {
    match firewall_problems_now(terraform_dir) {
        Ok(problems) if problems.is_empty() => "in place".into(),
        Ok(problems) => format!("NOT in place: {}", problems.join("; ")),
        Err(error) => format!("cannot be checked: {error:#}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policys_keys_are_read_and_compared_with_cosign_pub() {
        let root = crate::plumbing::workspace::root();
        let policy = Digested::read(&root, POLICY_FILE).unwrap();
        let key = Digested::read(&root, POLICY_PUBLIC_KEY_FILE).unwrap();
        // Every rule that verifies images (containers, ephemeral containers) carries the one key.
        let keys = policy_keys(&policy.text).unwrap();
        assert!(!keys.is_empty());
        assert!(keys.iter().all(|k| k == key.text.trim()), "{keys:?}");
        assert!(check_policy_key(&policy, &key).is_ok());
        let other = Digested {
            text: "-----BEGIN PUBLIC KEY-----\nx\n-----END PUBLIC KEY-----\n".into(),
            ..key
        };
        let refused = check_policy_key(&policy, &other).unwrap_err().to_string();
        assert!(refused.contains("nothing was changed"), "{refused}");
    }

    #[test]
    fn the_deploy_key_pair_is_one_openssh_reads() {
        let (private, public) = deploy_key_pair().unwrap();
        assert!(private.starts_with("-----BEGIN PRIVATE KEY-----"));
        assert!(public.starts_with("ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTY"));
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("key");
        std::fs::write(&file, &private).unwrap();
        std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        // OpenSSH derives the same public key from the private one.
        let derived = Command::new("ssh-keygen")
            .arg("-y")
            .arg("-f")
            .arg(&file)
            .output();
        let derived = derived.expect("ssh-keygen (openssh-client) checks the key's format");
        assert!(
            derived.status.success(),
            "{}",
            String::from_utf8_lossy(&derived.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&derived.stdout).trim(), public);
    }

    #[test]
    fn the_runners_forwards_reach_argocd_and_the_ingress_on_kinds_node() {
        let root = crate::plumbing::workspace::root();
        let fork = Fork::resolve(Some("me/fork"), &root).unwrap();
        let plan = Plan::read(&root, &fork).unwrap();
        assert_eq!(
            plan.forwards,
            [
                "8090=service-demo-control-plane:30080",
                "8081=service-demo-control-plane:80"
            ]
        );
        let main = std::fs::read_to_string(root.join("terraform/main.tf")).unwrap();
        assert!(main.contains(&format!("argocd_node_port = {ARGOCD_NODE_PORT}")));
    }

    #[test]
    fn a_fork_given_is_checked() {
        let fork = Fork::resolve(Some("me/fork"), Path::new(".")).unwrap();
        assert_eq!(fork.clone_url(), "https://github.com/me/fork.git");
        let bad = Fork::resolve(Some("me/fork/extra"), Path::new(".")).unwrap_err();
        assert!(bad.to_string().contains("expected <owner>/<name>"));
    }
}
