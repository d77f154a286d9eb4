//! Records the git commit the harness is built from, for certificates;
//! `+dirty` when what goes into the binary (the harness, the built-in
//! suite, the workspace manifests) differs from it, so a bundle never
//! claims a commit its harness was not built from.

use std::process::Command;

fn main() {
    // HEAD moves at every commit or checkout; the ref it names too.
    println!("cargo:rerun-if-changed=../.git/HEAD");
    // An edit of the harness rebuilds it: look at the tree again then.
    println!("cargo:rerun-if-changed=../.git/index");
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=Cargo.toml");
    println!("cargo:rerun-if-changed=../suites/conformance.yaml");
    if let Ok(head) = std::fs::read_to_string("../.git/HEAD")
        && let Some(reference) = head.trim().strip_prefix("ref: ")
    {
        println!("cargo:rerun-if-changed=../.git/{reference}");
    }
    let commit = Command::new("git")
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .unwrap_or_default();
    let dirty = !commit.is_empty()
        && Command::new("git")
            .args(["status", "--porcelain", "--untracked-files=no", "--"])
            .args([
                ".",
                "../suites/conformance.yaml",
                "../Cargo.toml",
                "../Cargo.lock",
            ])
            .output()
            .ok()
            .filter(|out| out.status.success())
            .is_some_and(|out| !out.stdout.is_empty());
    let suffix = if dirty { "+dirty" } else { "" };
    println!("cargo:rustc-env=RAFTCERT_GIT_COMMIT={commit}{suffix}");
}
