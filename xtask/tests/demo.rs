//! `cargo xtask demo` is also a test: run it on a temp dir and check the state
//! it leaves in its repositories and registry, not just its exit code.

mod support;

use std::path::Path;

use support::{TempDir, assert_ok, git, stdout, xtask};

fn values(gitops: &Path, env: &str, file: &str) -> String {
    git(gitops, &["show", &format!("main:values/{env}/{file}")])
}

#[test]
fn the_demo_runs_the_whole_pipeline_and_leaves_the_state_it_describes() {
    let dir = TempDir::new("demo");
    let work = dir.path().join("work");
    let out = xtask(&["demo", "--workdir", work.to_str().unwrap()], &[]);
    assert_ok(&out);
    let text = stdout(&out);
    for stage in [
        "━━ 1.",
        "━━ 2.",
        "━━ 3.",
        "━━ 4.",
        "━━ 5.",
        "━━ 6.",
        "━━ 7.",
    ] {
        assert!(text.contains(stage), "{stage} missing:\n{text}");
    }

    let (remote, gitops) = (work.join("remote.git"), work.join("gitops.git"));
    // Each service's images in its own repository of the registry.
    let registry = format!("oci:{}/service-demo", work.join("registry").display());
    let orders = format!("oci:{}/orders-api", work.join("registry").display());
    // The demo's commits on the service's main, newest first.
    let commits: Vec<String> = git(&remote, &["log", "--format=%H", "-6", "main"])
        .lines()
        .map(str::to_owned)
        .collect();
    let [broken, shared, orders_only, scaffolded, second, first] = &commits[..] else {
        panic!("{commits:?}")
    };

    // One build, three names: the pull request's, main's and the release's.
    let released = support::image_digest(&registry, "v0.1.0").expect("v0.1.0 in the registry");
    assert_eq!(
        support::image_digest(&registry, &format!("pr-1-{first}")).as_ref(),
        Some(&released)
    );
    assert_eq!(
        support::image_digest(&registry, &format!("main-{first}")).as_ref(),
        Some(&released)
    );
    assert_eq!(
        support::image_digest(&registry, "v0.2.0"),
        support::image_digest(&registry, &format!("main-{second}"))
    );
    // The second service: built for its scaffolding and for its own change;
    // items-api for neither (the scaffolding changed Cargo.lock, not items-api's
    // dependency closure); both for the shared crate's; the train released each
    // at that build.
    for (repository, sha, built) in [
        (&orders, scaffolded, true),
        (&registry, scaffolded, false),
        (&orders, orders_only, true),
        (&registry, orders_only, false),
        (&orders, shared, true),
        (&registry, shared, true),
    ] {
        assert_eq!(
            support::image_digest(repository, &format!("main-{sha}")).is_some(),
            built,
            "{repository} main-{sha}"
        );
    }
    for repository in [&registry, &orders] {
        assert_eq!(
            support::image_digest(repository, "v0.3.0"),
            support::image_digest(repository, &format!("main-{shared}")),
            "{repository}: v0.3.0 is the shared change's tested build"
        );
        assert_eq!(
            support::image_digest(repository, "v0.4.0"),
            None,
            "{repository}: the broken build was released"
        );
    }
    assert!(support::image_digest(&registry, &format!("main-{broken}")).is_some());

    // The train moved prod and dev of both services in one commit; preprod
    // runs items-api's broken build and orders-api's last good one.
    for file in ["service-demo.yaml", "orders-api.yaml"] {
        for env in ["prod", "dev"] {
            assert!(
                values(&gitops, env, file).contains("v0.3.0"),
                "{env} {file}"
            );
        }
    }
    assert!(values(&gitops, "preprod", "service-demo.yaml").contains(&format!("main-{broken}")));
    assert!(values(&gitops, "preprod", "orders-api.yaml").contains(&format!("main-{shared}")));
    let train = git(
        &gitops,
        &["log", "-1", "--format=%H", "main", "--", "values/prod"],
    );
    let moved = git(&gitops, &["show", "--name-only", "--format=", &train]);
    for file in [
        "values/prod/service-demo.yaml",
        "values/prod/orders-api.yaml",
        "values/dev/service-demo.yaml",
        "values/dev/orders-api.yaml",
    ] {
        assert!(
            moved.contains(file),
            "the release commit did not move {file}: {moved}"
        );
    }
    // The preview was removed when the pull request merged.
    let previews = git(
        &gitops,
        &["ls-tree", "-r", "--name-only", "main", "values/pr/"],
    );
    assert!(!previews.contains("pr-1/"), "{previews}");
    // Every GitOps change is a commit: the rollback is one, before the train.
    let log = git(
        &gitops,
        &[
            "log",
            "--format=%s",
            "main",
            "--",
            "values/prod/service-demo.yaml",
        ],
    );
    let subjects: Vec<&str> = log.lines().collect();
    assert!(subjects[0].contains("v0.3.0"), "{log}");
    assert!(
        subjects[1].starts_with("cd: rollback prod to v0.1.0"),
        "{log}"
    );

    // Git tags for the three releases, none for the broken build; its gate failed.
    let tags = git(&remote, &["tag", "--list"]);
    assert_eq!(
        tags.lines().collect::<Vec<_>>(),
        ["v0.1.0", "v0.2.0", "v0.3.0"]
    );
    let gate = git(&remote, &["notes", "--ref=gates", "show", broken]);
    assert!(gate.contains("failure"), "{gate}");

    // Images ran as containers where an engine answers, else as processes, and the output says which.
    let engine = std::process::Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output()
        .is_ok_and(|o| o.status.success());
    let how = if engine {
        "as a container"
    } else {
        "as a process"
    };
    assert!(
        text.contains("runs as preprod on http://127.0.0.1:") && text.contains(how),
        "{how}:\n{text}"
    );

    // The final status table says the same.
    assert!(text.contains("one digest under every name"), "{text}");

    // And what vouches for each: main's builds signed by the image key, the
    // preprod results signed by the gate key; the keys themselves never printed.
    let section = format!("image in {registry}:");
    let items = &text[text
        .rfind(&section)
        .unwrap_or_else(|| panic!("no {section}:\n{text}"))..];
    let trust = |env: &str| {
        items
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{env} ")) && l.contains("signature:"))
            .unwrap_or_else(|| panic!("no signature line for {env}:\n{text}"))
    };
    let passed = |sha: &str| {
        format!(
            "signature: ✔ signed; gate attestation: ✔ preprod-tests passed (commit {}",
            &sha[..7]
        )
    };
    assert!(trust("prod").contains(&passed(shared)), "{}", trust("prod"));
    assert!(trust("dev").contains(&passed(shared)), "{}", trust("dev"));
    // The status matrix: a row per service.
    assert!(
        text.contains("| service | dev | preprod | prod | previews |")
            && text.contains("| items-api | v0.3.0")
            && text.contains("| orders-api | v0.3.0"),
        "{text}"
    );
    assert!(
        trust("preprod").contains("signature: ✔ signed; gate attestation: ✘ preprod-tests failed"),
        "{}",
        trust("preprod")
    );
    assert!(!text.contains("PRIVATE KEY"), "a signing key was printed");

    // Lead time: every phase of both journeys timed from the demo's own steps.
    let lead: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(work.join("lead-time.json")).unwrap())
            .unwrap();
    for (journey, phases) in [
        (
            "commit → preview answering",
            &["checks", "build", "push", "promote", "sync-wait", "tests"][..],
        ),
        (
            "merge → recorded gate",
            &["build", "push", "promote", "sync-wait", "tests"][..],
        ),
    ] {
        for phase in phases {
            let seconds = lead["journeys"][journey][phase].as_f64();
            assert!(
                seconds.is_some_and(|s| s > 0.0),
                "{journey} {phase}: {lead:#}"
            );
        }
    }
    assert!(text.contains("━━ lead time"), "{text}");
}
