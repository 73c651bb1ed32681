//! The README's fork-and-follow walkthrough, read from the README itself: six
//! commands from a fork to a release in prod. Each command is either run here
//! against the stand-ins (a bare remote behind GitHub's URL, the fake GitHub,
//! the real xtask binary) or named below as needing a real GitHub or kind,
//! with the reason; a command in neither list fails the test, so the README
//! cannot gain a step nobody has run or named.

mod support;

/// The heading of the walkthrough in README.md.
const SECTION: &str = "## Doing it for real: fork and follow";
/// How many commands the README promises from fork to prod.
const COMMANDS: usize = 6;

/// Commands that need a real GitHub or a real kind cluster, and why they cannot run here.
const NEEDS_REAL: [(&str, &str); 7] = [
    (
        "gh repo fork ",
        "forks on github.com (here: a bare repository behind the fork's URL)",
    ),
    (
        "cd service-demo",
        "enters the clone `gh repo fork --clone` made",
    ),
    (
        "gh repo set-default ",
        "a setting of the gh CLI (not installed here); setup reads the fork from origin itself",
    ),
    (
        "cargo xtask cluster up",
        "Terraform, kind and the charts' images come from the internet (its --dry-run plan is tested in tests/cluster.rs)",
    ),
    ("gh pr create ", "opens the pull request on github.com"),
    (
        "gh pr merge ",
        "merges on github.com (the solo ruleset lets its author merge)",
    ),
    (
        "gh workflow run ",
        "starts release.yml on GitHub's runners and the cluster's runner",
    ),
];

/// Commands run here, in order, against the stand-ins.
const RUN_HERE: [&str; 5] = [
    "cargo xtask setup",
    "git switch -c ",
    "echo ",
    "git commit ",
    "git push ",
];

/// The lines of the walkthrough's first `sh` block.
fn walkthrough() -> Vec<String> {
    let readme = std::fs::read_to_string(support::workspace_root().join("README.md")).unwrap();
    let section = readme
        .split_once(SECTION)
        .unwrap_or_else(|| panic!("README.md has no section {SECTION:?}"))
        .1;
    let block = section
        .split_once("```sh\n")
        .and_then(|(_, rest)| rest.split_once("```"))
        .expect("the walkthrough opens with a ```sh block")
        .0;
    block
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

/// The simple commands of one line (`a && b && c`).
fn commands(line: &str) -> Vec<&str> {
    line.split(" && ").map(str::trim).collect()
}

/// Where a command is classified: Ok(true) run here, Ok(false) needs GitHub or kind.
fn classify(command: &str) -> Result<bool, String> {
    let here = RUN_HERE.iter().any(|p| command.starts_with(p));
    let real = NEEDS_REAL.iter().any(|(p, _)| command.starts_with(p));
    match (here, real) {
        (true, false) => Ok(true),
        (false, true) => Ok(false),
        (true, true) => Err(format!("{command:?} is in both lists")),
        (false, false) => Err(format!(
            "{command:?} is neither run by this test nor named as needing GitHub or kind: run it here \
             (RUN_HERE) or say why it cannot be (NEEDS_REAL)"
        )),
    }
}

#[test]
fn every_walkthrough_command_is_run_here_or_named_as_needing_github_or_kind() {
    let lines = walkthrough();
    assert_eq!(
        lines.len(),
        COMMANDS,
        "the README promises {COMMANDS} commands from fork to prod: {lines:#?}"
    );
    let problems: Vec<String> = lines
        .iter()
        .flat_map(|line| commands(line))
        .filter_map(|command| classify(command).err())
        .collect();
    assert!(problems.is_empty(), "{problems:#?}");
    // Every entry of both lists is still used: a list that names a command the README dropped lies.
    let all: Vec<&str> = lines.iter().flat_map(|line| commands(line)).collect();
    for prefix in RUN_HERE
        .iter()
        .copied()
        .chain(NEEDS_REAL.iter().map(|(p, _)| *p))
    {
        assert!(
            all.iter().any(|c| c.starts_with(prefix)),
            "{prefix:?} is listed but the walkthrough no longer has it"
        );
    }
}

#[test]
fn a_command_the_lists_do_not_know_is_refused() {
    assert!(classify("kubectl apply -f gitops/policy/").is_err());
    assert!(classify("sudo useradd kind-runner").is_err());
    assert_eq!(classify("cargo xtask setup"), Ok(true));
    assert_eq!(classify("gh pr merge --squash"), Ok(false));
}
