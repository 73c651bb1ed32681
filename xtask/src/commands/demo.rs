//! `cargo xtask demo`: the whole pipeline, for real, on throwaway state.
//!
//! A clone of this repository is the service repository (with a bare
//! repository as its remote), a second bare repository holds the GitOps values
//! (the tutorial's gitops-demo repository, which Argo CD would read), and an OCI
//! image layout directory is the registry. The GitOps files live apart from the
//! service so that bot commits never move the service's main: a pull request
//! merged by fast-forward is the very commit, and image, that CI built. Every stage runs the same
//! `cargo xtask` commands the workflows run; the images run as containers when
//! a Docker engine answers (loaded from the registry, run read-only with no
//! capabilities), otherwise as processes (the binary taken out of the image's
//! own layer), standing in for the cluster.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use xshell::{Shell, cmd};

use crate::domain::attestation;
use crate::domain::lead_time::{JOURNEYS, LEAD_TIME_FILE, Ledger, Phase};
use crate::domain::oci::{self, Arch};
use crate::domain::registry::Repository;
use crate::domain::services::{self, Service};
use crate::domain::signature;
use crate::domain::tags::{short, short_digest};
use crate::plumbing::retry::wait_until;
use crate::plumbing::{http, workspace};

#[derive(clap::Args)]
pub struct DemoArgs {
    /// Where the demo's repositories, registry and logs go (emptied first).
    /// Default: <target>/xtask/demo.
    #[arg(long)]
    workdir: Option<PathBuf>,
    /// Push to this registry repository instead of an OCI layout directory
    /// (e.g. 127.0.0.1:5000/service-demo for a local docker-registry).
    #[arg(long)]
    registry: Option<String>,
    /// The cargo profile the images are compiled with: `demo` (the root Cargo.toml's release
    /// without LTO or optimisation, rebuilt in seconds after each change) or `release`, what
    /// the workflows ship.
    #[arg(long, value_name = "NAME", default_value = "demo")]
    cargo_profile: String,
}

/// The broken change of the "break it" stage: healthy on a laptop and in the
/// unit tests, unhealthy in every deployed environment.
const BROKEN_HEALTHZ: &str = r#"pub async fn healthz() -> (axum::http::StatusCode, Json<HealthStatus>) {
    // Only "local" has the cache directory this (wrongly) checks for.
    match std::env::var("ENV_NAME").as_deref() {
        Ok("local") | Err(_) => (StatusCode::OK, Json(HealthStatus { status: "ok" })),
        Ok(_) => (StatusCode::SERVICE_UNAVAILABLE, Json(HealthStatus { status: "cache missing" })),
    }
}"#;

/// The flows of the workflows, which the demo runs in turn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// ci.yml's image, then preview.yml's deploy and verify.
    PullRequest,
    /// preview.yml's cleanup.
    PullRequestClosed,
    /// cd.yml's `affected` job: which services the push affects (the matrix of the jobs after it).
    Affected,
    /// cd.yml's image and preprod jobs, for one service.
    Main,
    /// release.yml.
    Release,
    /// Commands a person runs (rollback, status): no workflow.
    ByHand,
}

/// What the demo runs, in order: each flow's `cargo xtask` subcommands and
/// flags (values left out). `Demo::xtask` refuses any other call, so a demo
/// that finishes ran exactly this; a test (below) proves each flow is what the
/// workflows run, less the Argo CD commands (no cluster here: the demo runs
/// the image itself) and the flags in [`DEMO_ONLY_FLAGS`].
pub const PLAN: [(Flow, &[&str]); 19] = [
    (Flow::PullRequest, &PULL_REQUEST),
    (Flow::PullRequestClosed, &["preview cleanup --pr"]),
    (Flow::Main, &MAIN),
    (Flow::Release, &RELEASE),
    (Flow::Main, &MAIN),
    (Flow::Release, &RELEASE),
    (Flow::ByHand, &["rollback --env"]),
    // A second service: scaffolded (Cargo.lock changes, items-api's closure
    // does not: only it is affected), then a change to it alone, then one to
    // the crate both share.
    (Flow::ByHand, &["new-service --port"]),
    (Flow::Affected, &AFFECTED),
    (Flow::Main, &MAIN),
    (Flow::Affected, &AFFECTED),
    (Flow::Main, &MAIN),
    (Flow::Affected, &AFFECTED),
    (Flow::Main, &MAIN),
    (Flow::Main, &MAIN),
    (Flow::Release, &RELEASE),
    // Break it (items-api's flow; the shared crate's change affects both).
    (Flow::Main, &MAIN),
    (Flow::Release, &RELEASE),
    (Flow::ByHand, &["status"]),
];
/// The workflows run these once per affected service (a matrix over
/// `cargo xtask affected`); the demo's workspace has one service.
const PULL_REQUEST: [&str; 3] = [
    "image build --service --tag --push",
    "preview deploy --service --pr --sha --label",
    "smoke --service --pr",
];
const MAIN: [&str; 4] = [
    "image build --service --tag --push --digest-file",
    "image sign --service",
    "promote --service --env --tag --digest",
    "preprod-test --service --env --sha --digest",
];
const AFFECTED: [&str; 1] = ["affected --since-deployed --head"];
/// release.yml: a train, every service at the build its preprod tested.
const RELEASE: [&str; 1] = ["release --train --version"];
/// The service the demo starts with, and the one it adds.
const SERVICE: &str = "items-api";
const SECOND_SERVICE: &str = "orders-api";
/// Flags only the demo passes: it builds from its own checkout of the
/// service repository, where Actions builds the workspace it checked out, and
/// with the light `demo` cargo profile, where Actions ships `release`.
pub const DEMO_ONLY_FLAGS: [&str; 2] = ["--source", "--cargo-profile"];

/// `image build --tag --push` for `["image", "build", "--tag", "x", …]`: the
/// subcommand and the flags, without values and demo-only flags.
pub fn command_shape(args: &[&str]) -> String {
    let subcommand = args.iter().take_while(|a| !a.starts_with("--"));
    let flags = args
        .iter()
        .filter(|a| a.starts_with("--") && !DEMO_ONLY_FLAGS.contains(a));
    subcommand
        .chain(flags)
        .copied()
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn run(args: DemoArgs) -> Result<()> {
    let work = args
        .workdir
        .unwrap_or_else(|| workspace::target_dir().join("xtask/demo"));
    let mut demo = Demo::new(&work, args.registry, args.cargo_profile)?;
    let started = Instant::now();
    demo.stage(
        "1. pull request #1: change, checks, image pr-1-<sha>, preview pr-1, smoke",
        |d| d.pull_request(),
    )?;
    demo.stage(
        "2. merge: image main-<sha>, promote preprod, preprod tests, gate",
        |d| d.merge(),
    )?;
    demo.stage(
        "3. release 0.1.0: gate checked, retag without rebuild, prod + dev in one commit",
        |d| {
            d.xtask(&["release", "--train", "--version", "0.1.0"])?;
            Ok("v0.1.0 = main-<sha> in the registry; prod and dev at v0.1.0".into())
        },
    )?;
    demo.stage(
        "4. second change released as 0.2.0, then prod rolled back to 0.1.0",
        |d| d.second_release(),
    )?;
    demo.stage(
        "5. a second service: scaffolded, then only what a change affects is built and promoted; a release train",
        |d| d.second_service(),
    )?;
    demo.stage(
        "6. break it: a health check that fails only when deployed",
        |d| d.break_it(),
    )?;
    demo.stage(
        "7. status: each service × environment, every name of each build, its signature and gate attestation",
        |d| {
            d.xtask(&["status"])?;
            Ok("printed above".into())
        },
    )?;
    let planned = PLAN
        .iter()
        .map(|(_, commands)| commands.len())
        .sum::<usize>();
    ensure!(
        demo.ran.get() == planned,
        "the demo ran {} of the {planned} commands of its PLAN",
        demo.ran.get()
    );
    demo.summary(started.elapsed());
    demo.lead
        .lead_time()
        .write(&demo.work.join(LEAD_TIME_FILE))?;
    Ok(())
}

struct Demo {
    sh: Shell,
    work: PathBuf,
    /// The developer's clone of the service repository.
    service: PathBuf,
    /// A checkout at a fixed path that images are built from, so that the
    /// build cache stays warm from one demo to the next.
    build_checkout: PathBuf,
    registry: String,
    /// The cargo profile images are compiled with (`image build --cargo-profile`).
    cargo_profile: String,
    /// A container engine answers: images run as containers, else as processes.
    engine: bool,
    xtask: PathBuf,
    /// The pipeline's two key pairs, made for this run.
    keys: Keys,
    /// Each stage's name, duration and what it changed, for the summary.
    stages: Vec<(String, Duration, String)>,
    /// How many commands of [`PLAN`] have run.
    ran: std::cell::Cell<usize>,
    /// The time of each phase of the first pull request and the first merge.
    lead: Ledger,
}

impl Demo {
    /// The demo's state, in steps:
    /// 1. an empty workdir;
    /// 2. the service repository: a clone of this repository's HEAD with a bare remote;
    /// 3. the GitOps repository: its `gitops/` tree as the root of another bare repository;
    /// 4. the registry (an OCI layout directory unless one is given);
    /// 5. the build checkout, kept between runs;
    /// 6. whether a container engine answers.
    fn new(work: &Path, registry: Option<String>, cargo_profile: String) -> Result<Self> {
        let work = fresh_dir(work)?;
        let sh = Shell::new()?;
        println!("demo: workdir {}", work.display());
        let (remote, service) = (work.join("remote.git"), work.join("service"));
        clone_service(&sh, &remote, &service)?;
        let gitops = work.join("gitops.git");
        gitops_repository(&sh, &service, &gitops)?;
        sh.change_dir(&service);
        let registry =
            registry.unwrap_or_else(|| format!("oci:{}", work.join("registry").display()));
        let build_checkout = workspace::target_dir().join("xtask/demo-checkout");
        if !build_checkout.join(".git").exists() {
            cmd!(
                sh,
                "git clone --quiet --no-checkout {remote} {build_checkout}"
            )
            .quiet()
            .run()?;
        }
        println!(
            "demo: service repository {} (remote {}), GitOps repository {}, registry {registry}",
            service.display(),
            remote.display(),
            gitops.display()
        );
        let engine = engine_answers();
        let keys = Keys::generate(&work.join("keys"))?;
        Ok(Self {
            sh,
            work,
            service,
            build_checkout,
            registry,
            cargo_profile,
            engine,
            xtask: std::env::current_exe()?,
            keys,
            stages: Vec::new(),
            ran: std::cell::Cell::new(0),
            lead: Ledger::default(),
        })
    }

    fn stage(&mut self, name: &str, body: impl FnOnce(&mut Self) -> Result<String>) -> Result<()> {
        println!("\n━━ {name}");
        let started = Instant::now();
        let changed = body(self).with_context(|| format!("demo stage failed: {name}"))?;
        let took = started.elapsed();
        println!("━━ done in {took:.1?}: {changed}");
        self.stages.push((name.to_owned(), took, changed));
        Ok(())
    }

    fn pull_request(&mut self) -> Result<String> {
        self.git(&["checkout", "--quiet", "-b", "feature/api-version"])?;
        self.edit(
            "services/items-api/src/lib.rs",
            r#"        .route("/openapi.json", get(meta::openapi))"#,
            "        .route(\"/openapi.json\", get(meta::openapi))\n        .route(\"/api/v1/version\", get(service_kit::routes::version))",
        )?;
        let sha = self.commit("feat: /api/v1/version, as the tutorial's example change")?;
        self.lead.journey(Some(JOURNEYS[0]));
        self.lead.time(Phase::Checks, || self.checks())?;
        let tag = format!("pr-1-{sha}");
        let digest = self.build(SERVICE, &sha, &tag)?;
        let deploy = self.lead.time(Phase::Promote, || {
            // As preview.yml: the digest from the registry (IMAGE_REPOSITORY), the label
            // unchecked (no GitHub here; the command says so).
            self.xtask(&[
                "preview",
                "deploy",
                "--service",
                SERVICE,
                "--pr",
                "1",
                "--sha",
                &sha,
                "--label",
                "preview",
            ])
        });
        deploy?;
        let service = self.lead.time(Phase::SyncWait, || {
            Running::start(self, SERVICE, &tag, "pr-1")
        })?;
        // As preview.yml: the URL derived from pr-1's values file, through the
        // "ingress controller" at INGRESS_URL (here the container itself).
        let smoke = ["smoke", "--service", SERVICE, "--pr", "1"];
        let ingress = ("INGRESS_URL", service.url.as_str());
        let passed = self
            .lead
            .time(Phase::Tests, || self.xtask_with(&smoke, Some(ingress)))?;
        self.lead.journey(None);
        ensure!(passed, "cargo xtask {} failed", smoke.join(" "));
        let answer = http_get(&format!("{}/api/v1/version", service.url))?;
        ensure!(
            answer.contains(&sha),
            "/api/v1/version does not report {sha}: {answer}"
        );
        Ok(format!(
            "{tag} ({}) runs in pr-1 and passed its smoke tests",
            short_digest(&digest)
        ))
    }

    fn merge(&mut self) -> Result<String> {
        self.git(&["checkout", "--quiet", "main"])?;
        self.git(&["merge", "--quiet", "--ff-only", "feature/api-version"])?;
        self.git(&["push", "--quiet", "origin", "main"])?;
        self.xtask(&["preview", "cleanup", "--pr", "1"])?;
        let sha = self.head()?;
        self.lead.journey(Some(JOURNEYS[1]));
        let shipped = self.ship_to_preprod(SERVICE, &sha);
        self.lead.journey(None);
        let digest = shipped?;
        let pr_digest = self.digest(SERVICE, &format!("pr-1-{sha}"))?;
        ensure!(
            pr_digest == digest,
            "the main build {digest} differs from the pull request's {pr_digest}"
        );
        Ok(format!(
            "main-{} = pr-1-{0} (one digest, rebuilt reproducibly); preprod-tests gate passed",
            short(&sha)
        ))
    }

    fn second_release(&mut self) -> Result<String> {
        self.edit(
            "services/items-api/src/lib.rs",
            r#"        .route("/openapi.json", get(meta::openapi))"#,
            "        .route(\"/openapi.json\", get(meta::openapi))\n        .route(\"/api/v1/readyz\", get(service_kit::routes::readyz))",
        )?;
        let sha = self.commit("feat: /api/v1/readyz for gateways that route only /api")?;
        self.git(&["push", "--quiet", "origin", "main"])?;
        self.ship_to_preprod(SERVICE, &sha)?;
        self.xtask(&["release", "--train", "--version", "0.2.0"])?;
        self.xtask(&["rollback", "--env", "prod"])?;
        Ok("prod and dev released at v0.2.0; prod rolled back to v0.1.0 by a commit".into())
    }

    /// A second service: `new-service` scaffolds it (Cargo.lock gains it, but
    /// items-api's dependency closure is unchanged: only the new one ships); a
    /// change to it alone ships it alone; a change to the crate both use ships
    /// both; one release train.
    fn second_service(&mut self) -> Result<String> {
        // Its own port, which its image exposes and its preprod container publishes.
        self.xtask(&["new-service", "--port", "8081", SECOND_SERVICE])?;
        self.git(&["add", "--all"])?;
        let sha = self.commit("feat: orders-api, scaffolded by cargo xtask new-service")?;
        self.publish_gitops_files(SECOND_SERVICE)?;
        let both = vec![SERVICE.to_owned(), SECOND_SERVICE.to_owned()];
        let items_before = self.deployed(SERVICE, "preprod")?;
        ensure!(
            self.push_and_ship(&sha)? == [SECOND_SERVICE],
            "a new member of the workspace changes Cargo.lock but not items-api's dependencies: \
             it must affect the new service alone"
        );
        ensure!(
            self.deployed(SERVICE, "preprod")? == items_before,
            "items-api's preprod moved when another service was added"
        );

        self.edit(
            "services/orders-api/src/lib.rs",
            "        .route(HELLO_PATH, get(hello))",
            "        .route(HELLO_PATH, get(hello))\n        .route(\"/api/v1/orders/hello\", get(hello))",
        )?;
        let sha = self.commit("feat(orders-api): /api/v1/orders/hello")?;
        ensure!(
            self.push_and_ship(&sha)? == [SECOND_SERVICE],
            "a change to orders-api alone must affect orders-api alone"
        );
        ensure!(
            self.deployed(SERVICE, "preprod")? == items_before,
            "items-api's preprod moved on a change to orders-api alone"
        );

        self.edit(
            "crates/service-kit/src/lib.rs",
            "//! service-kit: what every service of this workspace serves and how, so a\n",
            "//! service-kit: what every service of this workspace serves and how (and\n//! the same for every one of them), so a\n",
        )?;
        let sha = self.commit("docs(service-kit): the same for every service")?;
        ensure!(
            self.push_and_ship(&sha)? == both,
            "a change to the shared crate must affect every service that uses it"
        );
        self.xtask(&["release", "--train", "--version", "0.3.0"])?;
        Ok(format!(
            "{SECOND_SERVICE} scaffolded and shipped; its own change built only it, service-kit's built both; \
             v0.3.0 = each service's tested main-{} in its own repository, prod and dev in one commit",
            short(&sha)
        ))
    }

    /// Pushes main at `sha`, then runs cd.yml for the push: `affected` since
    /// what preprod runs of each service, then each affected service's image
    /// and preprod jobs. Returns the affected services.
    fn push_and_ship(&mut self, sha: &str) -> Result<Vec<String>> {
        self.git(&["push", "--quiet", "origin", "main"])?;
        let outputs =
            self.xtask_outputs(&["affected", "--since-deployed", "preprod", "--head", sha])?;
        let affected: Vec<String> = serde_json::from_str(
            outputs
                .get("services")
                .context("affected wrote no `services` output")?,
        )?;
        for service in &affected {
            self.ship_to_preprod(service, sha)?;
        }
        Ok(affected)
    }

    /// The image tag `env` runs for `service`, read from the GitOps repository.
    fn deployed(&self, service: &str, env: &str) -> Result<String> {
        let gitops = self.work.join("gitops.git");
        let values = self.declared(service)?.declaration.values_file;
        let text = cmd!(self.sh, "git -C {gitops} show main:values/{env}/{values}")
            .quiet()
            .read()?;
        let doc: serde_json::Value = yaml_serde::from_str(&text)?;
        Ok(doc["image"]["tag"].as_str().unwrap_or_default().to_owned())
    }

    /// What new-service wrote under gitops/ (the service's values in every
    /// environment, its element of the ApplicationSets), committed to the
    /// demo's GitOps repository: one repository in a fork, where the merge
    /// brings them; two here, so the demo copies them.
    fn publish_gitops_files(&self, service: &str) -> Result<()> {
        let edit = fresh_dir(&self.work.join("gitops-edit"))?;
        let (sh, gitops) = (&self.sh, self.work.join("gitops.git"));
        cmd!(sh, "git clone --quiet {gitops} {edit}")
            .quiet()
            .run()?;
        let mut files = vec![
            "argocd/apps/services.yaml".to_owned(),
            "argocd/apps/previews.yaml".to_owned(),
        ];
        let values = self.declared(service)?.declaration.values_file;
        for env in ["dev", "preprod", "prod"] {
            files.push(format!("values/{env}/{values}"));
        }
        for file in &files {
            std::fs::copy(self.service.join("gitops").join(file), edit.join(file))
                .with_context(|| format!("copying gitops/{file}"))?;
        }
        for args in [
            vec!["add", "--all"],
            vec![
                "-c",
                "user.name=Demo Developer",
                "-c",
                "user.email=developer@example.com",
                "commit",
                "--quiet",
                "-m",
                "gitops: orders-api (values and Argo CD entries)",
            ],
            vec!["push", "--quiet", "origin", "main"],
        ] {
            cmd!(sh, "git -C {edit} {args...}").quiet().run()?;
        }
        println!(
            "  gitops: {service}'s values and Argo CD entries committed to the GitOps repository"
        );
        Ok(())
    }

    fn break_it(&mut self) -> Result<String> {
        let file = "crates/service-kit/src/routes.rs";
        let healthy = "pub async fn healthz() -> Json<HealthStatus> {\n    Json(HealthStatus { status: \"ok\" })\n}";
        self.edit(file, healthy, BROKEN_HEALTHZ)?;
        let sha = self.commit("perf: check the cache directory in /healthz")?;
        self.git(&["push", "--quiet", "origin", "main"])?;
        // The unit and integration tests run with ENV_NAME unset: they pass.
        self.checks()?;
        // The shared crate changed, so both services are affected; the demo
        // runs items-api's flow (orders-api's preprod tests fail the same way).
        let (_, tested) = self.preprod(SERVICE, &sha)?;
        ensure!(
            !tested,
            "the preprod tests passed a build whose /healthz fails"
        );
        println!(
            "demo: the preprod tests failed, as they should: the failure is recorded as the gate"
        );
        let released = self.xtask_status(&["release", "--train", "--version", "0.4.0"])?;
        ensure!(!released, "release 0.4.0 went through a failed gate");
        println!("demo: release 0.4.0 was refused at items-api's gate; prod still runs v0.3.0");
        Ok(format!(
            "main-{} stopped at the gate: never retagged, never in prod",
            short(&sha)
        ))
    }

    /// Build main-<sha>, promote it to preprod and run the preprod tests against
    /// it, which record the gate; returns the digest and whether they passed.
    fn preprod(&mut self, service: &str, sha: &str) -> Result<(String, bool)> {
        let tag = format!("main-{sha}");
        let digest = self.build(service, sha, &tag)?;
        self.lead.time(Phase::Promote, || {
            self.xtask(&[
                "promote",
                "--service",
                service,
                "--env",
                "preprod",
                "--tag",
                &tag,
                "--digest",
                &digest,
            ])
        })?;
        let running = self.lead.time(Phase::SyncWait, || {
            Running::start(self, service, &tag, "preprod")
        })?;
        // The preprod job holds the gate key: the result is signed beside the image.
        let gate_key = (attestation::SIGNING_KEY_VAR, self.keys.gate.0.as_str());
        let args = [
            "preprod-test",
            "--service",
            service,
            "--env",
            "preprod",
            "--sha",
            sha,
            "--digest",
            &digest,
        ];
        // As cd.yml: the URL derived from preprod's values file, through INGRESS_URL.
        let ingress = ("INGRESS_URL", running.url.as_str());
        let passed = self.lead.time(Phase::Tests, || {
            Ok(self
                .command(&args)?
                .envs([gate_key, ingress])
                .status()?
                .success())
        })?;
        Ok((digest, passed))
    }

    /// [`Self::preprod`] for a build that must pass.
    fn ship_to_preprod(&mut self, service: &str, sha: &str) -> Result<String> {
        let (digest, passed) = self.preprod(service, sha)?;
        ensure!(
            passed,
            "the preprod tests failed for {service}'s main-{sha}"
        );
        Ok(digest)
    }

    /// What the pull request's CI job checks about the service: its unit
    /// tests and the API suite on the in-memory store (CI also runs the
    /// PostgreSQL, contract and abuse suites; the demo keeps to what needs
    /// nothing but Rust, as it promises).
    fn checks(&self) -> Result<()> {
        let checkout = self.checkout(&self.head()?)?;
        let sh = Shell::new()?;
        sh.change_dir(&checkout);
        println!(
            "  $ cargo test -p items-api --lib --test api   (the service's unit tests and API suite)"
        );
        workspace::without_secrets(cmd!(
            sh,
            "cargo test --quiet --locked -p items-api --lib --test api"
        ))
        .env(
            "CARGO_TARGET_DIR",
            workspace::target_dir().join("other-checkouts"),
        )
        .quiet()
        .run()?;
        Ok(())
    }

    /// `image build` of `sha` from the fixed checkout, pushed as `tag`; returns the digest.
    /// A main-<sha> build is signed as cd.yml signs it: the image job builds
    /// without the key and writes the digest, the sign job signs that digest
    /// (`image sign @FILE`); a pull request's is never signed.
    fn build(&self, service: &str, sha: &str, tag: &str) -> Result<String> {
        let checkout = self.checkout(sha)?;
        let main = tag.starts_with("main-");
        let digest_file = self.work.join(format!("digest-{service}.txt"));
        let digest_path = digest_file.to_str().context("UTF-8 path")?;
        // Pushed to <registry>/<image> (IMAGE_REGISTRY), as the workflows do.
        let mut args = vec![
            "image",
            "build",
            "--source",
            checkout.to_str().context("UTF-8 path")?,
            "--service",
            service,
            "--tag",
            tag,
            "--cargo-profile",
            &self.cargo_profile,
            "--push",
        ];
        if main {
            args.extend(["--digest-file", digest_path]);
        }
        // image build's own split: compiling and assembling, then pushing.
        let outputs = self.xtask_outputs(&args)?;
        for (phase, output) in [
            (Phase::Build, "build-seconds"),
            (Phase::Push, "push-seconds"),
        ] {
            if let Some(seconds) = outputs.get(output).and_then(|s| s.parse::<f64>().ok()) {
                self.lead.add(phase, Duration::from_secs_f64(seconds));
            }
        }
        if main {
            let at_file = format!("@{digest_path}");
            let sign = ["image", "sign", "--service", service, at_file.as_str()];
            let key = (signature::SIGNING_KEY_VAR, self.keys.image.0.as_str());
            let started = Instant::now();
            ensure!(
                self.xtask_with(&sign, Some(key))?,
                "cargo xtask {} failed",
                sign.join(" ")
            );
            // Signing is part of publishing the image, as the push is.
            self.lead.add(Phase::Push, started.elapsed());
        }
        self.digest(service, tag)
    }

    /// The fixed build checkout, at `sha`.
    fn checkout(&self, sha: &str) -> Result<PathBuf> {
        let (dir, remote) = (&self.build_checkout, self.work.join("remote.git"));
        let service = &self.service;
        // From the developer's clone: a commit may not be pushed yet.
        cmd!(self.sh, "git -C {dir} fetch --quiet {service} {sha}")
            .quiet()
            .run()?;
        cmd!(
            self.sh,
            "git -C {dir} checkout --quiet --force --detach {sha}"
        )
        .quiet()
        .run()?;
        cmd!(self.sh, "git -C {dir} remote set-url origin {remote}")
            .quiet()
            .run()?;
        Ok(dir.clone())
    }

    fn digest(&self, service: &str, tag: &str) -> Result<String> {
        let repository = Repository::open(&self.repository(service)?)?;
        Ok(repository
            .resolve(tag)?
            .with_context(|| format!("{service}'s {tag} is not in the registry"))?
            .digest)
    }

    /// `service`'s declaration in the developer's clone (its service.toml).
    fn declared(&self, service: &str) -> Result<Service> {
        services::load(&self.service)?
            .into_iter()
            .find(|s| s.name == service)
            .with_context(|| format!("no service {service} in the demo's clone"))
    }

    /// `<registry>/<image>`: where `service`'s images are.
    fn repository(&self, service: &str) -> Result<String> {
        services::image_repository(&self.registry, &self.declared(service)?)
    }

    fn edit(&self, file: &str, from: &str, to: &str) -> Result<()> {
        let path = self.service.join(file);
        let text = std::fs::read_to_string(&path)?;
        if !text.contains(from) {
            bail!(
                "the demo's change to {file} no longer applies (the code moved on): update xtask/src/demo.rs"
            );
        }
        std::fs::write(&path, text.replacen(from, to, 1))?;
        println!("  edited {file}");
        Ok(())
    }

    fn commit(&self, message: &str) -> Result<String> {
        self.git(&["commit", "--quiet", "--all", "--message", message])?;
        let sha = self.head()?;
        println!("  committed {} {message}", short(&sha));
        Ok(sha)
    }

    fn head(&self) -> Result<String> {
        let sh = &self.sh;
        Ok(cmd!(sh, "git rev-parse HEAD").read()?)
    }

    fn git(&self, args: &[&str]) -> Result<()> {
        let sh = &self.sh;
        cmd!(sh, "git {args...}").quiet().run()?;
        Ok(())
    }

    /// `cargo xtask <args>` on the demo's repositories; fails when it fails.
    fn xtask(&self, args: &[&str]) -> Result<()> {
        ensure!(
            self.xtask_status(args)?,
            "cargo xtask {} failed",
            args.join(" ")
        );
        Ok(())
    }

    /// `cargo xtask <args>`, which must be the next command of [`PLAN`]; whether it succeeded.
    fn xtask_status(&self, args: &[&str]) -> Result<bool> {
        self.xtask_with(args, None)
    }

    /// `cargo xtask <args>` with the public keys, and `secret` (a signing
    /// key's variable and PEM) for the one step that signs; whether it
    /// succeeded. The command must be the next of [`PLAN`].
    fn xtask_with(&self, args: &[&str], secret: Option<(&str, &str)>) -> Result<bool> {
        Ok(self.command(args)?.envs(secret).status()?.success())
    }

    /// `cargo xtask <args>` as a GitHub Actions step: fails when it fails;
    /// returns the step's outputs (`name=value` lines of `$GITHUB_OUTPUT`).
    fn xtask_outputs(&self, args: &[&str]) -> Result<BTreeMap<String, String>> {
        let file = self.work.join("github-output");
        std::fs::write(&file, "")?;
        let status = self.command(args)?.env("GITHUB_OUTPUT", &file).status()?;
        ensure!(status.success(), "cargo xtask {} failed", args.join(" "));
        read_outputs(&file)
    }

    /// `cargo xtask <args>`, which must be the next command of [`PLAN`], with
    /// the public keys, on the demo's repositories and registry.
    fn command(&self, args: &[&str]) -> Result<Command> {
        let shape = command_shape(args);
        let next = PLAN
            .iter()
            .flat_map(|(flow, commands)| commands.iter().map(move |c| (flow, c)))
            .nth(self.ran.get());
        let Some((flow, planned)) = next.filter(|(_, planned)| **planned == shape) else {
            bail!(
                "the demo ran `cargo xtask {shape}` where its PLAN says {next:?}: the demo must run what the workflows run; change PLAN, the demo and the workflows together"
            );
        };
        self.ran.set(self.ran.get() + 1);
        println!("  $ cargo xtask {}   ({flow:?}: {planned})", args.join(" "));
        let mut command = Command::new(&self.xtask);
        command
            .args(args)
            .env(attestation::PUBLIC_KEY_VAR, &self.keys.gate.1)
            .env(signature::PUBLIC_KEY_VAR, &self.keys.image.1)
            .current_dir(&self.service)
            .env("IMAGE_REGISTRY", &self.registry)
            .env_remove("IMAGE_REPOSITORY")
            .env("GITOPS_REPO", self.work.join("gitops.git"))
            // Gates in the local store (git notes of the demo's remote) and
            // signed; nothing reaches GitHub.
            .env_remove("GITHUB_ACTIONS")
            .env_remove("GITHUB_TOKEN")
            .env_remove("GITHUB_OUTPUT");
        Ok(command)
    }

    fn summary(&self, total: Duration) {
        println!("\n━━ the pipeline, end to end, in {total:.1?}");
        for (name, took, changed) in &self.stages {
            println!("  {took:>8.1?}  {name}\n            → {changed}");
        }
        println!(
            "\n━━ lead time (the first pull request and merge; a container start stands in for Argo CD's sync)\n{}",
            self.lead.lead_time().table("")
        );
        println!(
            "  service remote {}, GitOps repository {}, registry {}",
            self.work.join("remote.git").display(),
            self.work.join("gitops.git").display(),
            self.registry
        );
    }
}

/// The pipeline's key pairs as (private PEM, public PEM): `gate` signs the
/// preprod results (release and promote verify them), `image` signs main's
/// builds (verify, status and the cluster's admission policy check them).
struct Keys {
    gate: (String, String),
    image: (String, String),
}

impl Keys {
    /// Fresh pairs under `dir` (the demo's own; a real pipeline keeps its
    /// private keys in CI secrets).
    fn generate(dir: &Path) -> Result<Self> {
        let pair = |name: &str| -> Result<(String, String)> {
            let (private, public) = attestation::keygen(&dir.join(name))?;
            Ok((
                std::fs::read_to_string(private)?,
                std::fs::read_to_string(public)?,
            ))
        };
        println!(
            "demo: key pairs in {} (gate: signs preprod results; image: signs main's builds)",
            dir.display()
        );
        Ok(Self {
            gate: pair("gate")?,
            image: pair("image")?,
        })
    }
}

/// An image running as a container (when an engine answers) or as a process
/// (the binary read out of its app layer).
struct Running {
    how: How,
    url: String,
}

enum How {
    /// Container id and image name, both removed when done.
    Container(String, String),
    Process(Child),
}

impl Running {
    fn start(demo: &Demo, service: &str, tag: &str, env: &str) -> Result<Self> {
        let dir = demo.work.join(format!("run/{service}/{tag}"));
        std::fs::create_dir_all(&dir)?;
        let declared = demo.declared(service)?;
        let repository = services::image_repository(&demo.registry, &declared)?;
        if demo.engine {
            let port = declared.declaration.port;
            return Self::container(demo, &dir, (&repository, port), tag, env);
        }
        let binary = dir.join(service);
        std::fs::write(&binary, image_binary(&repository, service, tag)?)?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o755))?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let log = std::fs::File::create(dir.join(format!("{env}.log")))?;
        let child = Command::new(&binary)
            .env_clear()
            .env("PORT", port.to_string())
            .env("ENV_NAME", env)
            .env("LOG_FORMAT", "json")
            .env("SHUTDOWN_DRAIN_SECONDS", "0")
            .stdout(log.try_clone()?)
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()?;
        let running = Self {
            url: format!("http://127.0.0.1:{port}"),
            how: How::Process(child),
        };
        running.wait_listening(tag)?;
        if let How::Process(child) = &running.how {
            println!(
                "  {tag} runs as {env} on {} as a process (pid {})",
                running.url,
                child.id()
            );
        }
        Ok(running)
    }

    /// `docker load` of the image as a docker-archive, then `docker run` with
    /// what the chart enforces: read-only root, no capabilities, no privilege gain.
    /// `image` is the repository and the port its container listens on.
    fn container(
        demo: &Demo,
        dir: &Path,
        image: (&str, u16),
        tag: &str,
        env: &str,
    ) -> Result<Self> {
        let (repository, port) = image;
        let archive = dir.join("image.tar");
        let name = format!("service-demo-demo-{port}:{tag}");
        docker_archive(repository, tag, &name, &archive)?;
        let sh = &demo.sh;
        cmd!(sh, "docker load --quiet --input {archive}")
            .quiet()
            .ignore_stdout()
            .run()?;
        let env_name = format!("ENV_NAME={env}");
        let (publish, published) = (format!("127.0.0.1::{port}"), format!("{port}/tcp"));
        let id = cmd!(
            sh,
            "docker run --detach --read-only --cap-drop ALL --security-opt no-new-privileges --env {env_name} --env SHUTDOWN_DRAIN_SECONDS=0 --publish {publish} {name}"
        )
        .quiet()
        .read()?;
        let address = cmd!(sh, "docker port {id} {published}").quiet().read()?;
        let address = address.lines().next().unwrap_or_default().to_owned();
        let running = Self {
            url: format!("http://{address}"),
            how: How::Container(id.clone(), name),
        };
        running.wait_listening(tag)?;
        println!(
            "  {tag} runs as {env} on {} as a container ({})",
            running.url,
            &id[..12.min(id.len())]
        );
        Ok(running)
    }

    /// Listening is enough: whether it is healthy is for the tests to say.
    fn wait_listening(&self, tag: &str) -> Result<()> {
        let address = self.url.trim_start_matches("http://");
        // A published port accepts before the process inside listens: ask for
        // an HTTP answer, whatever its status.
        let answers = || http_status(&self.url).is_some();
        ensure!(
            wait_until(Duration::from_secs(10), Duration::from_millis(20), answers),
            "{tag} did not start listening on {address}"
        );
        Ok(())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        match &mut self.how {
            How::Process(child) => {
                let _ = child.kill();
                let _ = child.wait();
            }
            How::Container(id, name) => {
                for args in [
                    ["rm", "--force", id.as_str()],
                    ["rmi", "--force", name.as_str()],
                ] {
                    let _ = Command::new("docker")
                        .args(args)
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .status();
                }
            }
        }
    }
}

/// The status of `GET <url>/version`, if anything answered.
fn http_status(url: &str) -> Option<u16> {
    http::status(&format!("{url}/version"), Duration::from_secs(1))
}

/// The linux/amd64 image of `tag` as a docker-archive (what `docker load`
/// reads on every engine version): its config, its gzipped layers, and a
/// manifest.json naming it `name`.
fn docker_archive(repository: &str, tag: &str, name: &str, path: &Path) -> Result<()> {
    let repository = Repository::open(repository)?;
    let manifest = repository.platform_manifest(tag, Arch::Amd64)?;
    let mut builder = tar::Builder::new(std::fs::File::create(path)?);
    let mut add = |file: &str, bytes: &[u8]| -> Result<()> {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append_data(&mut header, file, bytes)?;
        Ok(())
    };
    add("config.json", &repository.blob(&manifest.config.digest)?)?;
    let mut layers = Vec::new();
    for (n, layer) in manifest.layers.iter().enumerate() {
        let file = format!("layer{n}.tar.gz");
        add(&file, &repository.blob(&layer.digest)?)?;
        layers.push(file);
    }
    let index =
        serde_json::json!([{ "Config": "config.json", "RepoTags": [name], "Layers": layers }]);
    add("manifest.json", index.to_string().as_bytes())?;
    builder.into_inner()?;
    Ok(())
}

/// `service`'s binary inside the linux/amd64 image of `tag`.
fn image_binary(repository: &str, service: &str, tag: &str) -> Result<Vec<u8>> {
    let repository = Repository::open(repository)?;
    let manifest = repository.platform_manifest(tag, Arch::Amd64)?;
    // The application layer is the last one, on top of the base.
    let layer = manifest.layers.last().context("image without layers")?;
    let path = oci::binary_path(service);
    oci::file_in_layer(&repository.blob(&layer.digest)?, &path)?
        .with_context(|| format!("{tag}'s application layer has no {path}"))
}

/// `dir`, emptied (or created), as an absolute path.
/// The `name=value` lines a step wrote to `$GITHUB_OUTPUT`.
fn read_outputs(file: &Path) -> Result<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(file)?;
    Ok(text
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect())
}

fn fresh_dir(dir: &Path) -> Result<PathBuf> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("emptying {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir)?;
    Ok(dir.canonicalize()?)
}

/// This repository's HEAD as a bare `remote`, and the developer's clone of it.
fn clone_service(sh: &Shell, remote: &Path, service: &Path) -> Result<()> {
    let source = workspace::root();
    cmd!(
        sh,
        "git clone --quiet --bare --no-hardlinks {source} {remote}"
    )
    .quiet()
    .run()?;
    // Its main is that HEAD, whichever branch (or detached commit) the source is on:
    // the pull request's branch starts there and merges back by fast-forward.
    let head = cmd!(sh, "git -C {source} rev-parse HEAD").quiet().read()?;
    cmd!(sh, "git -C {remote} update-ref refs/heads/main {head}")
        .quiet()
        .run()?;
    cmd!(sh, "git -C {remote} symbolic-ref HEAD refs/heads/main")
        .quiet()
        .run()?;
    cmd!(sh, "git clone --quiet {remote} {service}")
        .quiet()
        .run()?;
    cmd!(sh, "git -C {service} config user.name 'Demo Developer'")
        .quiet()
        .run()?;
    cmd!(
        sh,
        "git -C {service} config user.email developer@example.com"
    )
    .quiet()
    .run()?;
    Ok(())
}

/// A bare repository whose `main` holds the service's `gitops/` tree at its
/// root, in one commit (the tutorial's separate gitops-demo repository).
fn gitops_repository(sh: &Shell, service: &Path, gitops: &Path) -> Result<()> {
    let tree = cmd!(sh, "git -C {service} rev-parse HEAD:gitops")
        .quiet()
        .read()?;
    let commit = cmd!(
        sh,
        "git -C {service} commit-tree {tree} -m 'gitops: environments'"
    )
    .quiet()
    .read()?;
    cmd!(sh, "git init --quiet --bare --initial-branch=main {gitops}")
        .quiet()
        .run()?;
    cmd!(
        sh,
        "git -C {service} push --quiet {gitops} {commit}:refs/heads/main"
    )
    .quiet()
    .run()?;
    Ok(())
}

/// Whether a container engine answers; says how images will run either way.
fn engine_answers() -> bool {
    let engine = Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if engine {
        println!(
            "demo: images run as containers (docker load + docker run, read-only, no capabilities), standing in for the cluster"
        );
    } else {
        println!(
            "demo: no container engine answers: images run as processes, the items-api binary read out of each image's layer"
        );
    }
    engine
}

fn http_get(url: &str) -> Result<String> {
    let bytes = http::get_bytes(url, http::TIMEOUT, false)?;
    String::from_utf8(bytes).with_context(|| format!("GET {url}: not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::{Flow, PLAN, command_shape};
    use serde_json::Value;

    /// Which flow each workflow job belongs to, in the order the flow runs them.
    const JOBS: [(&str, &str, Flow); 9] = [
        ("ci.yml", "image", Flow::PullRequest),
        ("preview.yml", "deploy", Flow::PullRequest),
        ("preview.yml", "verify", Flow::PullRequest),
        ("preview.yml", "cleanup", Flow::PullRequestClosed),
        ("cd.yml", "affected", Flow::Affected),
        ("cd.yml", "image", Flow::Main),
        ("cd.yml", "sign", Flow::Main),
        ("cd.yml", "preprod", Flow::Main),
        ("release.yml", "release", Flow::Release),
    ];
    /// Jobs the demo does not run, and why.
    const NOT_IN_DEMO: [(&str, &str, &str); 7] = [
        (
            "cd.yml",
            "xtask",
            "builds the xtask binary the run's other jobs run (`prebuilt`); the demo runs its own binary throughout",
        ),
        (
            "preview.yml",
            "xtask",
            "builds the xtask binary the run's other jobs run (`prebuilt`); the demo runs its own binary throughout",
        ),
        (
            "release.yml",
            "xtask",
            "builds the xtask binary the run's other jobs run (`prebuilt`); the demo runs its own binary throughout",
        ),
        (
            "ci.yml",
            "checks",
            "runs .ci/run, not an xtask command; the demo runs the service's tests",
        ),
        (
            "preview.yml",
            "gc",
            "daily, asks GitHub which pull requests closed (tests/gitops.rs, fake GitHub)",
        ),
        (
            "ci.yml",
            "affected",
            "chooses the services a pull request's jobs run for; the demo's pull request is before the second \
             service (the demo runs cd.yml's `affected`; tests/services.rs covers the rest)",
        ),
        (
            "preview.yml",
            "affected",
            "chooses the services a pull request's jobs run for; the demo's pull request is before the second \
             service (the demo runs cd.yml's `affected`; tests/services.rs covers the rest)",
        ),
    ];
    /// Workflow commands the demo leaves out, and why.
    const NOT_RUN_BY_DEMO: [(&str, &str); 4] = [
        (
            "argocd wait",
            "needs a cluster: the demo runs the image itself",
        ),
        (
            "argocd sync",
            "needs a cluster: the demo runs the image itself",
        ),
        (
            "scan",
            "needs the RustSec database, fetched from GitHub (tests/scan.rs runs it on the snapshot)",
        ),
        (
            "doctor",
            "pulls from GHCR as kind does, without credentials; the demo's registry is a directory \
             (tests/setup.rs pulls from a real registry on loopback, open and behind a login)",
        ),
    ];

    /// `(file, job, command shapes)` of every `cargo xtask` line of the workflows.
    fn workflow_commands() -> Vec<(String, String, Vec<String>)> {
        let dir = crate::plumbing::workspace::root().join(".github/workflows");
        let mut found = Vec::new();
        for file in crate::plumbing::fs::yaml_files(&dir).unwrap() {
            let doc: Value =
                yaml_serde::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
            let name = file.file_name().unwrap().to_string_lossy().into_owned();
            for (job, body) in doc["jobs"].as_object().into_iter().flatten() {
                let commands: Vec<String> = body["steps"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .flat_map(|step| step["run"].as_str().unwrap_or_default().lines())
                    .filter_map(|line| line.trim().strip_prefix("cargo xtask "))
                    .filter(|rest| *rest != "--help")
                    .map(|rest| command_shape(&rest.split_whitespace().collect::<Vec<_>>()))
                    .collect();
                if !commands.is_empty() {
                    found.push((name.clone(), job.clone(), commands));
                }
            }
        }
        found
    }

    #[test]
    fn the_demo_runs_what_the_workflows_run_flow_by_flow() {
        let workflows = workflow_commands();
        for (file, job, _) in &workflows {
            let known = JOBS.iter().any(|(f, j, _)| f == file && j == job)
                || NOT_IN_DEMO.iter().any(|(f, j, _)| f == file && j == job);
            assert!(
                known,
                "{file} job {job} runs xtask commands: add it to a flow (JOBS) or to NOT_IN_DEMO"
            );
        }
        for flow in [
            Flow::PullRequest,
            Flow::PullRequestClosed,
            Flow::Affected,
            Flow::Main,
            Flow::Release,
        ] {
            let expected: Vec<String> = JOBS
                .iter()
                .filter(|(_, _, f)| *f == flow)
                .flat_map(|(file, job, _)| {
                    let (_, _, commands) = workflows
                        .iter()
                        .find(|(f, j, _)| f == file && j == job)
                        .unwrap_or_else(|| panic!("{file} has no job {job} running xtask"));
                    commands.clone()
                })
                .filter(|c| !NOT_RUN_BY_DEMO.iter().any(|(only, _)| c.starts_with(only)))
                .collect();
            let runs: Vec<&(Flow, &[&str])> = PLAN.iter().filter(|(f, _)| *f == flow).collect();
            assert!(!runs.is_empty(), "the demo never runs the {flow:?} flow");
            for (_, demo) in runs {
                assert_eq!(
                    *demo, expected,
                    "{flow:?}: the demo's commands differ from the workflows'"
                );
            }
        }
    }

    #[test]
    fn a_command_shape_is_the_subcommand_and_its_flags() {
        let args = [
            "image",
            "build",
            "--source",
            "/x",
            "--service",
            "a",
            "--tag",
            "pr-1-abc",
            "--push",
        ];
        assert_eq!(command_shape(&args), "image build --service --tag --push");
        assert_eq!(command_shape(&["status"]), "status");
        assert_eq!(
            command_shape(&["smoke", "--url", "\"http://pr-$PR.$D\""]),
            "smoke --url"
        );
    }
}
