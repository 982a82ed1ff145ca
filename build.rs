//! Embeds the git commit in `portcullis --version` (`PORTCULLIS_GIT_COMMIT`).
//!
//! Order: the `PORTCULLIS_GIT_COMMIT` environment variable (a container build without `.git`
//! passes it as a build argument), then `git rev-parse --short HEAD`, then "unknown".

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (!s.is_empty()).then_some(s)
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=PORTCULLIS_GIT_COMMIT");
    // Re-run when HEAD moves: HEAD itself (branch switch), the branch's ref (a commit), and
    // packed-refs (after `git gc`). `--git-path` resolves them inside worktrees too. A missing
    // file is left out: Cargo would otherwise re-run the script on every build.
    let head_ref = git(&["symbolic-ref", "-q", "HEAD"]);
    for path in ["HEAD", "packed-refs"]
        .into_iter()
        .chain(head_ref.as_deref())
    {
        if let Some(p) = git(&["rev-parse", "--git-path", path])
            && std::path::Path::new(&p).exists()
        {
            println!("cargo:rerun-if-changed={p}");
        }
    }
    let commit = std::env::var("PORTCULLIS_GIT_COMMIT")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .or_else(|| git(&["rev-parse", "--short", "HEAD"]))
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=PORTCULLIS_GIT_COMMIT={commit}");
}
