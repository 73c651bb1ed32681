//! `cargo xtask demo` is also a test: run it on a temp dir and check the state
//! it leaves in its repositories and registry, not just its exit code.

mod support;

use std::path::Path;

use support::{TempDir, assert_ok, git, stdout, xtask};

fn values(gitops: &Path, env: &str) -> String {
    git(
        gitops,
        &["show", &format!("main:values/{env}/service-demo.yaml")],
    )
}

#[test]
fn the_demo_runs_the_whole_pipeline_and_leaves_the_state_it_describes() {
    let dir = TempDir::new("demo");
    let work = dir.path().join("work");
    let out = xtask(&["demo", "--workdir", work.to_str().unwrap()], &[]);
    assert_ok(&out);
    let text = stdout(&out);
    for stage in ["━━ 1.", "━━ 2.", "━━ 3.", "━━ 4.", "━━ 5.", "━━ 6."] {
        assert!(text.contains(stage), "{stage} missing:\n{text}");
    }

    let (remote, gitops) = (work.join("remote.git"), work.join("gitops.git"));
    let registry = format!("oci:{}", work.join("registry").display());
    // The demo's three commits on the service's main, newest first.
    let commits: Vec<String> = git(&remote, &["log", "--format=%H", "-3", "main"])
        .lines()
        .map(str::to_owned)
        .collect();
    let (broken, second, first) = (&commits[0], &commits[1], &commits[2]);

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
    assert!(support::image_digest(&registry, &format!("main-{broken}")).is_some());
    assert_eq!(
        support::image_digest(&registry, "v0.3.0"),
        None,
        "the broken build was released"
    );

    // prod rolled back to v0.1.0 (by digest), dev stays at v0.2.0, preprod runs the broken build.
    let prod = values(&gitops, "prod");
    assert!(
        prod.contains("v0.1.0") && prod.contains(&released),
        "{prod}"
    );
    assert!(values(&gitops, "dev").contains("v0.2.0"));
    assert!(values(&gitops, "preprod").contains(&format!("main-{broken}")));
    // The preview was removed when the pull request merged.
    let previews = git(&gitops, &["ls-tree", "--name-only", "main", "values/pr/"]);
    assert!(!previews.contains("pr-1.yaml"), "{previews}");
    // Every GitOps change is a commit: the rollback is the newest prod change.
    let log = git(
        &gitops,
        &["log", "--format=%s", "main", "--", "values/prod"],
    );
    assert!(
        log.lines()
            .next()
            .unwrap()
            .starts_with("cd: rollback prod to v0.1.0"),
        "{log}"
    );

    // Git tags for the two releases, none for the broken build; its gate failed.
    let tags = git(&remote, &["tag", "--list"]);
    assert_eq!(tags.lines().collect::<Vec<_>>(), ["v0.1.0", "v0.2.0"]);
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
    let trust = |env: &str| {
        text.lines()
            .rev()
            .find(|l| l.trim_start().starts_with(&format!("{env} ")) && l.contains("signature:"))
            .unwrap_or_else(|| panic!("no signature line for {env}:\n{text}"))
    };
    let passed = |sha: &str| {
        format!(
            "signature: ✔ signed; gate attestation: ✔ preprod-tests passed (commit {}",
            &sha[..7]
        )
    };
    assert!(trust("prod").contains(&passed(first)), "{}", trust("prod"));
    assert!(trust("dev").contains(&passed(second)), "{}", trust("dev"));
    assert!(
        trust("preprod").contains("signature: ✔ signed; gate attestation: ✘ preprod-tests failed"),
        "{}",
        trust("preprod")
    );
    assert!(!text.contains("PRIVATE KEY"), "a signing key was printed");
}
