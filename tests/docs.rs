//! The book in `docs/` holds: the configuration reference lists exactly the keys the schema
//! accepts, and every relative link and `#anchor` in the book, README.md and SECURITY.md
//! resolves. No network, no mdBook needed (scripts/test.sh builds the book itself).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Key paths named in the first column of the reference's tables (`| `server.listen` | …`).
fn documented_keys(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|rest| rest.split_once('`'))
        .map(|(key, _)| key.to_string())
        .collect()
}

#[test]
fn configuration_reference_lists_every_key_the_schema_accepts() {
    let reference = read(&repo().join("docs/src/reference/configuration.md"));
    let documented = documented_keys(&reference);
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let twice: Vec<&String> = documented
        .iter()
        .filter(|k| !seen.insert((*k).clone()))
        .collect();
    assert!(
        twice.is_empty(),
        "keys listed twice in the reference: {twice:?}"
    );

    let schema: BTreeSet<String> = portcullis::config::keys::key_paths()
        .unwrap_or_else(|e| panic!("the schema walker stopped at {e}"))
        .into_iter()
        .collect();
    let missing: Vec<&String> = schema.difference(&seen).collect();
    let unknown: Vec<&String> = seen.difference(&schema).collect();
    assert!(
        missing.is_empty() && unknown.is_empty(),
        "docs/src/reference/configuration.md is out of step with the schema (src/config/raw.rs, \
         src/pool/config/raw.rs, src/config/keys.rs):\n  accepted but not documented: {missing:?}\n  \
         documented but not accepted: {unknown:?}"
    );
}

#[test]
fn the_reference_reader_sees_rows_only() {
    let keys =
        documented_keys("| key | type |\n|---|---|\n| `a.b` | x |\ntext `c`\n| `d[].e` | y |\n");
    assert_eq!(keys, ["a.b", "d[].e"]);
}

// ------------------------------------------------------------------------------- links

/// The anchor mdBook (and GitHub) gives a heading: lower case, letters, digits, `-` and `_`
/// kept, spaces to `-`, everything else dropped; a repeated heading gets `-1`, `-2`, ….
fn anchors(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for line in prose_lines(text) {
        let Some(heading) = line.strip_prefix('#') else {
            continue;
        };
        let heading = heading.trim_start_matches('#');
        if !heading.starts_with(' ') {
            continue;
        }
        let plain = heading.trim().replace('`', "");
        // A link inside a heading keeps its text only.
        let plain = strip_link_targets(&plain);
        let id: String = plain
            .chars()
            .filter_map(|c| {
                if c.is_alphanumeric() || c == '_' || c == '-' {
                    Some(c.to_lowercase().next().unwrap_or(c))
                } else if c.is_whitespace() {
                    Some('-')
                } else {
                    None
                }
            })
            .collect();
        let n = counts.entry(id.clone()).or_insert(0);
        out.insert(if *n == 0 {
            id.clone()
        } else {
            format!("{id}-{n}")
        });
        *n += 1;
    }
    out
}

/// `[text](target)` → `[text]`.
fn strip_link_targets(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("](") {
        out.push_str(&rest[..=i]);
        rest = &rest[i + 2..];
        match rest.find(')') {
            Some(j) => rest = &rest[j + 1..],
            None => break,
        }
    }
    out.push_str(rest);
    out
}

/// The lines outside fenced code blocks.
fn prose_lines(text: &str) -> Vec<&str> {
    let mut fenced = false;
    let mut out = Vec::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if !fenced {
            out.push(line);
        }
    }
    out
}

/// Link targets outside code: inline `[text](target)` and reference definitions `[x]: target`.
fn links(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in prose_lines(text) {
        // Inline code spans hold examples, not links.
        let mut prose = String::new();
        for (i, part) in line.split('`').enumerate() {
            if i % 2 == 0 {
                prose.push_str(part);
            }
        }
        let trimmed = prose.trim_start();
        if trimmed.starts_with('[')
            && let Some((_, target)) = trimmed.split_once("]: ")
        {
            out.push(
                target
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_string(),
            );
            continue;
        }
        let mut rest = prose.as_str();
        while let Some(i) = rest.find("](") {
            rest = &rest[i + 2..];
            let end = rest.find(')').unwrap_or(rest.len());
            let target = rest[..end].split_whitespace().next().unwrap_or_default();
            out.push(target.trim_matches(['<', '>']).to_string());
            rest = &rest[end..];
        }
    }
    out
}

fn markdown_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            markdown_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "md") {
            out.push(path);
        }
    }
}

/// A page as mdBook renders it: `{{#include path}}` lines replaced by the file they name.
fn page_text(file: &Path) -> String {
    let dir = file.parent().unwrap_or(Path::new("."));
    read(file)
        .lines()
        .map(|line| {
            match line
                .trim()
                .strip_prefix("{{#include ")
                .and_then(|r| r.strip_suffix("}}"))
            {
                Some(included) => read(&dir.join(included.trim())),
                None => line.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// What is wrong with each relative link of `file`, if anything.
fn broken_links(file: &Path) -> Vec<String> {
    let text = read(file);
    let dir = file.parent().unwrap_or(Path::new("."));
    let mut broken = Vec::new();
    for line in text.lines() {
        if let Some(included) = line.trim().strip_prefix("{{#include ") {
            let included = included.trim_end_matches("}}").trim();
            if !dir.join(included).exists() {
                broken.push(format!("{{{{#include {included}}}}}: no such file"));
            }
        }
    }
    for target in links(&text) {
        if target.is_empty()
            || target.contains("://")
            || target.starts_with("mailto:")
            || target.starts_with('/')
        {
            if target.starts_with('/') {
                broken.push(format!("{target}: use a relative link"));
            }
            continue;
        }
        let (path, anchor) = match target.split_once('#') {
            Some((p, a)) => (p, Some(a)),
            None => (target.as_str(), None),
        };
        let resolved = if path.is_empty() {
            file.to_path_buf()
        } else {
            dir.join(path)
        };
        if !resolved.exists() {
            broken.push(format!("{target}: no such file"));
            continue;
        }
        if let Some(anchor) = anchor {
            if resolved.extension().is_none_or(|e| e != "md") {
                broken.push(format!(
                    "{target}: an anchor into a file that is not Markdown"
                ));
            } else if !anchors(&page_text(&resolved)).contains(anchor) {
                broken.push(format!("{target}: no heading with that anchor"));
            }
        }
    }
    broken
}

#[test]
fn every_relative_link_and_anchor_resolves() {
    let root = repo();
    let mut files = vec![root.join("README.md"), root.join("SECURITY.md")];
    markdown_files(&root.join("docs/src"), &mut files);
    assert!(files.len() > 10, "the book has pages: {files:?}");
    let mut problems = Vec::new();
    for file in &files {
        for why in broken_links(file) {
            let shown = file.strip_prefix(&root).unwrap_or(file);
            problems.push(format!("{}: {why}", shown.display()));
        }
    }
    assert!(
        problems.is_empty(),
        "broken links:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn every_book_page_is_in_the_summary() {
    let src = repo().join("docs/src");
    let summary = read(&src.join("SUMMARY.md"));
    let listed: BTreeSet<String> = links(&summary).into_iter().collect();
    let mut files = Vec::new();
    markdown_files(&src, &mut files);
    let orphans: Vec<String> = files
        .iter()
        .filter_map(|f| f.strip_prefix(&src).ok())
        .map(|p| p.display().to_string())
        .filter(|p| p != "SUMMARY.md" && !listed.contains(p))
        .collect();
    assert!(
        orphans.is_empty(),
        "pages missing from SUMMARY.md: {orphans:?}"
    );
}

#[test]
fn the_link_checker_catches_what_it_must() {
    let dir = std::env::temp_dir().join(format!("portcullis-test-{}-docs", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("b.md"),
        "# Some `code` Title!\n\n## Again\n## Again\n",
    )
    .unwrap();
    let page = dir.join("a.md");
    std::fs::write(
        &page,
        "[ok](b.md#some-code-title) [ok](b.md#again-1) [ok](#here) `[no](x.md)`\n\
         ```\n[no](y.md)\n```\n# Here\n[bad](missing.md) [bad](b.md#nowhere) [ext](https://x.y/z)\n\
         [ref]: b.md#again\n",
    )
    .unwrap();
    let broken = broken_links(&page);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(
        broken,
        [
            "missing.md: no such file",
            "b.md#nowhere: no heading with that anchor"
        ]
    );
}
