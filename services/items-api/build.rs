//! Builds `csrc/copy.c`, a memcpy fast for short copies. On x86_64 musl (the
//! image's amd64 binary) it defines `memcpy` itself and so takes the place of
//! musl's, whose `rep movsq` and byte loops move a few bytes slowly (README,
//! Benchmarks). Elsewhere only `items_api_copy` is built and libc's memcpy
//! stays: glibc's is fast, and musl's arm64 one is not the assembly measured
//! here (nor could the arm64 link be tried on this machine).

/// Flags `tests/copy.rs` builds the same file with: no builtins, and no loop
/// turned into a call to memcpy (inside memcpy itself).
const FLAGS: [&str; 2] = ["-fno-builtin", "-fno-tree-loop-distribute-patterns"];

fn main() {
    println!("cargo:rerun-if-changed=csrc/copy.c");
    let mut build = cc::Build::new();
    build.file("csrc/copy.c").opt_level(2).warnings(true);
    for flag in FLAGS {
        build.flag_if_supported(flag);
    }
    let target = |key: &str| std::env::var(key).unwrap_or_default();
    if target("CARGO_CFG_TARGET_ENV") == "musl" && target("CARGO_CFG_TARGET_ARCH") == "x86_64" {
        build.define("ITEMS_API_MEMCPY", None);
    }
    build.compile("items_api_copy");
}
