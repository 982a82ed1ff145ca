//! The user import's CSV checking (src/pool/transfer.rs), as `portcullis pool import` and
//! `POST /pool/users/import` run it before anything is written: any bytes as the file, under a
//! pool configuration with a required attribute, with one name and one address already taken.
//!
//! Properties: nothing panics; problems come sorted by line and column, each on a real line
//! and column; no problem message repeats the hash material of a `password_hash` cell (the
//! module's invariant); when the header is sound, every data row is either imported or
//! reported invalid, never both or neither; the users to create have distinct canonical names,
//! none already taken, and an imported hash is exactly its cell.
#![no_main]

use std::collections::HashSet;
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use portcullis::pool::PoolConfig;
use portcullis::pool::transfer::fuzzing::check;
use portcullis::pool::username::canonical;

static CFG: LazyLock<PoolConfig> = LazyLock::new(|| {
    let text = r#"
public_url = "https://app.example.com"
[session]
secrets = ["fuzz-secret-fuzz-secret-fuzz-secret-0123"]
[[routes]]
path = "/"
upstream = "http://127.0.0.1:9"
provider = "pool"
[pool]
database = "sqlite:///nonexistent/pool.db"
required_attributes = ["email"]
"#;
    portcullis::config::load_str(text, std::path::Path::new("/nonexistent/fuzz.toml"))
        .unwrap_or_else(|e| panic!("fixture config: {e}"))
        .pool
        .expect("a [pool]")
});

/// A cell that holds hash material: it ends in a run of at least 16 base64 characters (a
/// salt or digest). Shorter cells, and the words of the import's own messages (a column name,
/// `$pbkdf2-sha256$`), are not secrets a message could leak.
fn looks_like_a_hash(cell: &str) -> bool {
    let tail = cell.rsplit('$').next().unwrap_or(cell);
    tail.len() >= 16
        && tail
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+/.=-_".contains(&b))
}

fuzz_target!(|data: &[u8]| {
    let taken_names: HashSet<String> = ["taken".to_string()].into();
    let taken_emails: HashSet<String> = ["taken@example.com".to_string()].into();
    let got = check(data, &CFG, &taken_names, &taken_emails);

    // Sorted, on real lines and columns.
    let keys: Vec<(u64, usize)> = got
        .problems
        .iter()
        .map(|p| (p.line, p.column.as_ref().map_or(usize::MAX, |c| c.0)))
        .collect();
    assert!(
        keys.windows(2).all(|w| w[0] <= w[1]),
        "problems out of order: {keys:?}"
    );
    for p in &got.problems {
        if let Some((n, _)) = &p.column {
            assert!(*n >= 1, "column numbers are 1-based: {p}");
        }
        assert!(!p.message.is_empty());
    }

    // The same file read independently: each row's password_hash cell, by line (the column
    // the import uses is the last of that name, as its index keeps the last).
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(data);
    let mut records = reader.records();
    let hash_col = match records.next() {
        Some(Ok(h)) => h
            .iter()
            .collect::<Vec<_>>()
            .iter()
            .rposition(|c| c.trim_start_matches('\u{feff}').trim() == "password_hash"),
        _ => None,
    };
    // (line, hash, whether another cell of the row holds the same text)
    let mut hashes: Vec<(u64, String, bool)> = Vec::new();
    if let Some(i) = hash_col {
        for r in records.filter_map(Result::ok) {
            let line = r.position().map_or(0, |p| p.line());
            if let Some(h) = r.get(i).map(str::trim).filter(|h| looks_like_a_hash(h)) {
                let elsewhere = r.iter().enumerate().any(|(j, c)| j != i && c.contains(h));
                hashes.push((line, h.to_string(), elsewhere));
            }
        }
    }
    for p in &got.problems {
        let text = p.to_string();
        for (line, h, elsewhere) in &hashes {
            assert!(
                *line != p.line || *elsewhere || !text.contains(h.as_str()),
                "a problem message repeats a password hash: {text}"
            );
        }
    }

    // Every row accounted for once, when the header is sound.
    if !got.problems.iter().any(|p| p.line == 1) {
        assert_eq!(
            got.users.len() + got.invalid_lines.len(),
            got.rows,
            "rows neither imported nor reported (or both)"
        );
    }
    if got.problems.is_empty() {
        assert_eq!(got.users.len(), got.rows);
    }

    let mut names = HashSet::new();
    for u in &got.users {
        let c = canonical(&u.username);
        assert!(c != "taken", "a taken name is imported again");
        assert!(names.insert(c), "two users share a canonical name");
        if looks_like_a_hash(&u.password_hash) {
            assert!(
                hashes.iter().any(|(_, h, _)| *h == u.password_hash),
                "an imported hash is not a cell of the file"
            );
        }
    }
});
