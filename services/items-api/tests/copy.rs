//! `csrc/copy.c`, the memcpy of the image's static musl binary (build.rs),
//! checked by `csrc/copy_test.c`: every length to 1100 bytes at every source
//! and destination alignment, and long copies, against a byte-wise copy with
//! guard bytes on both sides. Built here with the C compiler and the flags
//! build.rs uses, for the machine the tests run on.

mod common {
    pub mod skip;
}

use std::path::Path;
use std::process::Command;

#[test]
fn the_copy_that_replaces_musls_memcpy_copies_every_length_and_alignment() {
    let compiler = std::env::var("CC").unwrap_or_else(|_| "cc".to_owned());
    if Command::new(&compiler).arg("--version").output().is_err() {
        common::skip::skip_or_fail(
            "the_copy_that_replaces_musls_memcpy_copies_every_length_and_alignment",
            "no C compiler (cc)",
        );
        return;
    }
    let csrc = Path::new(env!("CARGO_MANIFEST_DIR")).join("csrc");
    let binary = std::env::temp_dir().join(format!("items-api-copy-test-{}", std::process::id()));
    let built = Command::new(&compiler)
        .args([
            "-O2",
            "-fno-builtin",
            "-fno-tree-loop-distribute-patterns",
            "-o",
        ])
        .arg(&binary)
        .arg(csrc.join("copy_test.c"))
        .arg(csrc.join("copy.c"))
        .status()
        .unwrap();
    assert!(
        built.success(),
        "{compiler} could not build csrc/copy_test.c"
    );
    let run = Command::new(&binary).output().unwrap();
    let _ = std::fs::remove_file(&binary);
    let said = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success() && said.contains("copied exactly"),
        "csrc/copy_test.c: {said}"
    );
}
