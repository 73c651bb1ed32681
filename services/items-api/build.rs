//! Embeds every migration in `migrations/` in the binary, in file-name order
//! (`store/migrations.rs` includes the list written here): a new
//! `migrations/NNNN_what.sql` is applied by `items-api migrate` with no other
//! change.

use std::fmt::Write as _;
use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=migrations");
    // The variable cargo sets for this run, not `env!`'s value from when the script
    // was compiled: cargo reuses a compiled build script, and its output, in a
    // checkout at another path.
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let dir = Path::new(&manifest_dir).join("migrations");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("services/items-api/migrations/ is readable")
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "sql"))
        .collect();
    files.sort();
    let mut list = String::from("&[\n");
    for path in files {
        let name = path
            .file_stem()
            .and_then(|n| n.to_str())
            .expect("a UTF-8 file name");
        let file = path
            .file_name()
            .and_then(|n| n.to_str())
            .expect("a UTF-8 file name");
        // The path is rebuilt from the crate's own CARGO_MANIFEST_DIR where it is compiled:
        // cargo shares this output between checkouts of the workspace at other paths.
        writeln!(
            list,
            "    ({name:?}, include_str!(concat!(env!(\"CARGO_MANIFEST_DIR\"), \"/migrations/{file}\"))),"
        )
        .unwrap();
    }
    list.push(']');
    let out =
        Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("migrations.rs");
    std::fs::write(out, list).expect("OUT_DIR is writable");
}
