//! A prebuilt xtask (the binary CI builds once, from main) acts on the
//! checkout it is run in, never on the one it was compiled in.

mod support;

use std::path::Path;
use std::process::Command;

use support::{TempDir, assert_fails, assert_ok, git, stdout, workspace_root, xtask_in};

/// `cargo xtask ci` with only its fmt step: cheap, and it reads the files of
/// the workspace it acts on.
const FMT_ONLY: [&str; 9] = [
    "ci", "--skip", "clippy", "--skip", "deny", "--skip", "assets", "--skip", "test",
];

fn clone_of_this_repository(dir: &Path, name: &str) -> std::path::PathBuf {
    let copy = dir.join(name);
    git(
        dir,
        &[
            "clone",
            "--quiet",
            workspace_root().to_str().unwrap(),
            copy.to_str().unwrap(),
        ],
    );
    copy
}

#[test]
fn a_binary_built_in_one_checkout_acts_on_the_checkout_it_is_run_in() {
    let dir = TempDir::new("prebuilt");
    let clean = clone_of_this_repository(dir.path(), "clean");
    let changed = clone_of_this_repository(dir.path(), "changed");
    let lib = changed.join("crates/service-kit/src/lib.rs");
    let text = std::fs::read_to_string(&lib).unwrap();
    std::fs::write(&lib, format!("{text}\npub fn   badly_formatted( ) {{}}\n")).unwrap();

    // The binary was compiled in this worktree; each clone gets its own verdict.
    assert_ok(&xtask_in(&clean, &FMT_ONLY, &[]));
    let all = assert_fails(&xtask_in(&changed.join("services"), &FMT_ONLY, &[]));
    assert!(all.contains("ci failed: fmt"), "{all}");
    assert!(
        all.contains("badly_formatted"),
        "the diff names the copy's change: {all}"
    );

    // Outside any checkout: XTASK_WORKSPACE names one, else a clear refusal.
    let outside = dir.path().join("elsewhere");
    std::fs::create_dir(&outside).unwrap();
    let run = |envs: &[(&str, &Path)]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_xtask"));
        command.args(FMT_ONLY).current_dir(&outside);
        command.env_remove("XTASK_WORKSPACE");
        command.envs(envs.iter().copied()).output().unwrap()
    };
    let all = assert_fails(&run(&[("XTASK_WORKSPACE", &changed)]));
    assert!(all.contains("badly_formatted"), "{all}");
    assert_ok(&run(&[("XTASK_WORKSPACE", &clean)]));
    let refused = run(&[]);
    let all = assert_fails(&refused);
    assert_eq!(refused.status.code(), Some(2), "{all}");
    assert!(
        all.contains("is not inside a service-demo checkout")
            && all.contains("set XTASK_WORKSPACE=<checkout>")
            && !all.contains("backtrace"),
        "{all}"
    );
    assert!(stdout(&refused).is_empty(), "nothing ran: {all}");
}
