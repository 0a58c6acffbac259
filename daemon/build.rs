//! Link-time layout of the release `litecar` binary on x86-64 Linux, where Rust links with lld.
//!
//! A sidecar's idle memory is mostly the pages of its own code that it has touched, and the kernel maps file pages
//! 64 KiB at a time around each fault. Two link options keep that small (see docs/benchmarks.md, idle RSS):
//! - `link-order.txt` (written by `scripts/link-order`) lists the functions that `litecar replicate` runs, so lld
//!   puts them next to each other instead of spread over 17 MB of code. Names missing from the binary (the list
//!   went stale) are skipped; the binary is then only larger in memory, never wrong.
//! - A position-dependent executable, like Litestream's Go binary: a PIE's dynamic loader rewrites about a megabyte
//!   of relocations, and every page it touches stays resident.

use std::env;
use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=link-order.txt");
    println!("cargo:rerun-if-changed=build.rs");
    let target = env::var("TARGET").unwrap_or_default();
    let profile = env::var("PROFILE").unwrap_or_default();
    if target != "x86_64-unknown-linux-gnu" || profile != "release" {
        return;
    }
    let dir = env::var("CARGO_MANIFEST_DIR").unwrap_or_default();
    let order = Path::new(&dir).join("link-order.txt");
    if order.exists() {
        println!("cargo:rustc-link-arg-bin=litecar=-Wl,--symbol-ordering-file={}", order.display());
        println!("cargo:rustc-link-arg-bin=litecar=-Wl,--no-warn-symbol-ordering");
    }
    println!("cargo:rustc-link-arg-bin=litecar=-no-pie");
    // With crt-static (the container image) rustc asks for -static-pie, which -no-pie alone would turn into a
    // dynamically linked executable: ask for a static one explicitly.
    let features = env::var("CARGO_CFG_TARGET_FEATURE").unwrap_or_default();
    if features.split(',').any(|f| f == "crt-static") {
        println!("cargo:rustc-link-arg-bin=litecar=-static");
    }
}
