//! `cargo xtask fork`: one command points a copy of this repository at a fork,
//! consistently (the offline validation still passes), and bad input changes nothing.

mod support;

use std::path::Path;

use support::{TempDir, assert_fails, assert_ok, copy_dir, stdout, workspace_root, xtask};

fn copy_of_this_repository(dir: &Path) -> std::path::PathBuf {
    let root = dir.join("repo");
    for part in ["charts", "gitops", "terraform", ".github"] {
        copy_dir(&workspace_root().join(part), &root.join(part));
    }
    for file in ["Cargo.toml", "Dockerfile"] {
        std::fs::copy(workspace_root().join(file), root.join(file)).unwrap();
    }
    root
}

fn read(root: &Path, file: &str) -> String {
    std::fs::read_to_string(root.join(file)).unwrap()
}

/// Every file, to compare before and after.
fn snapshot(root: &Path) -> Vec<(String, String)> {
    let mut files = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files.push((
                    path.display().to_string(),
                    std::fs::read_to_string(&path).unwrap(),
                ));
            }
        }
    }
    files.sort();
    files
}

#[test]
fn fork_points_everything_at_the_fork_and_bad_input_changes_nothing() {
    let dir = TempDir::new("fork");
    let root = copy_of_this_repository(dir.path());
    let root_arg = root.to_str().unwrap();
    let before = snapshot(&root);

    for bad in ["octocat", "octo cat/x", "/service-demo"] {
        let message = assert_fails(&xtask(&["fork", "--github", bad, "--root", root_arg], &[]));
        assert!(message.contains("should be <owner>/<name>"), "{message}");
    }
    let dry = xtask(
        &[
            "fork",
            "--github",
            "OctoCat/my-demo",
            "--root",
            root_arg,
            "--dry-run",
        ],
        &[],
    );
    assert_ok(&dry);
    assert!(
        stdout(&dry).contains("+    repoURL: https://github.com/OctoCat/my-demo.git"),
        "{}",
        stdout(&dry)
    );
    assert_eq!(
        snapshot(&root),
        before,
        "bad input or a dry run wrote something"
    );

    assert_ok(&xtask(
        &["fork", "--github", "OctoCat/my-demo", "--root", root_arg],
        &[],
    ));
    for file in [
        "gitops/argocd/project.yaml",
        "gitops/argocd/apps/services.yaml",
        "gitops/argocd/apps/previews.yaml",
    ] {
        let text = read(&root, file);
        assert!(
            text.contains("https://github.com/OctoCat/my-demo.git") && !text.contains("example"),
            "{file}:\n{text}"
        );
    }
    // The previews' git generator reads the fork too, not only the template's source.
    let previews = read(&root, "gitops/argocd/apps/previews.yaml");
    assert_eq!(
        previews
            .matches("repoURL: https://github.com/OctoCat/my-demo.git")
            .count(),
        2,
        "{previews}"
    );
    for env in ["dev", "preprod", "prod"] {
        let values = read(&root, &format!("gitops/values/{env}/service-demo.yaml"));
        // GHCR names are lowercase.
        assert!(
            values.contains("repository: ghcr.io/octocat/service-demo\n"),
            "{values}"
        );
    }
    let policy = read(&root, "gitops/policy/image-signatures.yaml");
    assert!(
        policy.contains("- ghcr.io/octocat/*\n") && !policy.contains("example"),
        "the admission policy still names the old image: {policy}"
    );
    assert!(
        read(&root, "terraform/variables.tf")
            .contains("\"https://github.com/OctoCat/my-demo.git\"")
    );
    assert!(
        read(&root, "Cargo.toml").contains("repository = \"https://github.com/OctoCat/my-demo\"")
    );

    // Again: nothing to do; and a second fork moves everything again.
    let again = xtask(
        &["fork", "--github", "OctoCat/my-demo", "--root", root_arg],
        &[],
    );
    assert!(
        stdout(&again).contains("nothing to do"),
        "{}",
        stdout(&again)
    );
    assert_ok(&xtask(
        &[
            "fork",
            "--github",
            "example/service-demo",
            "--root",
            root_arg,
        ],
        &[],
    ));
    assert_eq!(snapshot(&root), before, "forking back restores every file");
}
