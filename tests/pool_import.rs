//! Moving users in and out (docs/src/pool/import-export.md) through the real binary: a Cognito CSV whose password
//! hashes were made by independent implementations (Python's passlib, argon2-cffi, bcrypt),
//! then sign-ins with those passwords through the hosted pages (and the re-hash to Argon2id);
//! a file with problems in several rows (every one reported, nothing imported); `--skip-invalid`;
//! export → import into an empty pool → the same users sign in with the same passwords.

mod pool_support;

use std::process::Command;

use pool_support::*;
use serde_json::Value;

/// (user, password, hash) made by Python: the hash libraries are not ours.
fn python_hashes() -> Vec<(String, String, String)> {
    let script = r#"
import json, bcrypt, argon2
from passlib.hash import pbkdf2_sha256, scrypt
rows = [
    ("py_argon2", "Argon2-Pass-1", argon2.PasswordHasher().hash("Argon2-Pass-1")),
    ("py_bcrypt", "Bcrypt-Pass-2", bcrypt.hashpw(b"Bcrypt-Pass-2", bcrypt.gensalt(rounds=10)).decode()),
    ("py_scrypt", "Scrypt-Pass-3", scrypt.hash("Scrypt-Pass-3")),
    ("py_pbkdf2", "Pbkdf2-Pass-4", pbkdf2_sha256.hash("Pbkdf2-Pass-4")),
    ("py_later", "Later-Pass-5", bcrypt.hashpw(b"Later-Pass-5", bcrypt.gensalt(rounds=6)).decode()),
]
print(json.dumps(rows))
"#;
    let out = Command::new("python3")
        .args(["-c", script])
        .output()
        .expect("python3 (scripts/test.sh installs passlib, argon2-cffi and bcrypt)");
    assert!(
        out.status.success(),
        "python3 hashing failed (pip install passlib argon2-cffi bcrypt): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Signs in with a fresh browser from a protected page; `Ok(echoed headers)` when the app is
/// reached, else `Err(status of the sign-in answer)`.
async fn sign_in_to_app(s: &Server, user: &str, pw: &str) -> Result<Value, u16> {
    let c = browser();
    let (r, hops) = follow(&c, &s.base, s.url("/app")).await;
    assert_eq!(r.status(), 200);
    let login_url = hops.last().unwrap().clone();
    let r = sign_in(&c, s, &login_url, user, pw).await;
    if r.status() != 302 {
        return Err(r.status().as_u16());
    }
    let (r, _) = follow(&c, &s.base, absolute(&s.base, &location(&r))).await;
    assert_eq!(r.status(), 200);
    let echo: Value = r.json().await.unwrap();
    Ok(echo["headers"].clone())
}

fn show(s: &Server, user: &str) -> Value {
    let (ok, out, err) = s.cli(&["users", "show", user]);
    assert!(ok, "{err}");
    serde_json::from_str(&out).unwrap()
}

/// Runs `pool users import` and returns (exit code, stdout, stderr).
fn import(s: &Server, file: &std::path::Path, extra: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(["pool", "users", "import"])
        .arg(file)
        .args(extra)
        .arg("--config")
        .arg(&s.config)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn export(s: &Server) -> String {
    let (ok, out, err) = s.cli(&["users", "export", "--with-password-hashes"]);
    assert!(ok, "{err}");
    out
}

fn hash_of(csv_text: &str, user: &str) -> String {
    let mut r = csv::Reader::from_reader(csv_text.as_bytes());
    let header = r.headers().unwrap().clone();
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let (u, h) = (col("cognito:username"), col("password_hash"));
    r.records()
        .map(Result::unwrap)
        .find(|rec| &rec[u] == user)
        .map(|rec| rec[h].to_string())
        .unwrap_or_else(|| panic!("{user} not in export:\n{csv_text}"))
}

async fn foreign_hashes_sign_in_and_round_trip(backend: Backend) {
    let s = Server::start(backend, "default_phone_region = \"JP\"").await;
    let users = python_hashes();
    let mut csv_text = String::from(
        "cognito:username,name,email,email_verified,phone_number,phone_number_verified,custom:tenant,cognito:mfa_enabled,updated_at,password_hash\n",
    );
    for (i, (user, _, hash)) in users.iter().enumerate() {
        csv_text.push_str(&format!(
            "{user},\"Py, User {i}\",{user}@example.com,true,090-1234-567{i},false,acme,false,,\"{hash}\"\n"
        ));
    }
    csv_text.push_str("no_hash,No Hash,nohash@example.com,false,,,,false,1700000000,\n");
    let file = s.dir.join("users.csv");
    write(&file, &csv_text);
    let (code, out, err) = import(&s, &file, &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("imported 6 users"), "{out}");

    let nh = show(&s, "no_hash");
    assert_eq!(
        nh["status"], "RESET_REQUIRED",
        "no hash: the user must choose a password"
    );
    let a = show(&s, "py_argon2");
    assert_eq!(a["status"], "CONFIRMED");
    assert_eq!(
        a["attributes"]["phone_number"], "+819012345670",
        "national form → E.164"
    );
    assert_eq!(a["attributes"]["name"], "Py, User 0");
    assert_eq!(a["attributes"]["custom:tenant"], "acme");
    assert_eq!(a["attributes"]["email_verified"], true);

    // Each foreign hash verifies through the hosted sign-in; a wrong password does not.
    for (user, pw, _) in &users[..4] {
        assert_eq!(
            sign_in_to_app(&s, user, "Wrong-Password-0")
                .await
                .unwrap_err(),
            401,
            "{user}"
        );
        let h = sign_in_to_app(&s, user, pw)
            .await
            .unwrap_or_else(|st| panic!("{user} could not sign in: {st}\n{}", s.log_text()));
        assert_eq!(h["x-forwarded-email"], format!("{user}@example.com"));
    }
    // … and was replaced by the pool's own Argon2id on that first sign-in.
    let exported = export(&s);
    for (user, _, original) in &users[..4] {
        let now = hash_of(&exported, user);
        assert!(
            now.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{user}: {now}"
        );
        assert_ne!(&now, original);
    }
    assert_eq!(
        hash_of(&exported, "py_later"),
        users[4].2,
        "untouched until its first sign-in"
    );
    assert_eq!(hash_of(&exported, "no_hash"), "");
    // The re-hashed passwords still work, twice.
    for (user, pw, _) in &users[..4] {
        assert!(
            sign_in_to_app(&s, user, pw).await.is_ok(),
            "{user} after re-hash"
        );
    }
    // The export without hashes has no hash.
    let (ok, plain, _) = s.cli(&["users", "export"]);
    assert!(ok);
    assert!(!plain.contains("password_hash") && !plain.contains("$argon2id$"));

    // Round trip: export → import into an empty pool → the same users, the same passwords.
    let t = Server::start(backend, "default_phone_region = \"JP\"").await;
    let file = t.dir.join("export.csv");
    write(&file, &exported);
    let (code, out, err) = import(&t, &file, &[]);
    assert_eq!(code, 0, "{out}{err}\n{exported}");
    assert!(out.contains("imported 6 users"), "{out}");
    for (user, pw, _) in &users {
        let h = sign_in_to_app(&t, user, pw)
            .await
            .unwrap_or_else(|st| panic!("{user} after round trip: {st}"));
        assert_eq!(h["x-forwarded-email"], format!("{user}@example.com"));
    }
    let b = show(&t, "py_argon2");
    assert_eq!(b["attributes"], a["attributes"]);
    assert_eq!(show(&t, "no_hash")["status"], "RESET_REQUIRED");

    // The import and exports are in the audit log.
    let (_, audit, _) = s.cli(&["audit"]);
    assert!(audit.contains("import_users"), "{audit}");
    assert!(
        audit.contains("export_users\tall users, with password hashes"),
        "{audit}"
    );
    // No password reached either server's log.
    let logs = s.log_text() + &t.log_text();
    for (_, pw, _) in &users {
        assert!(!logs.contains(pw.as_str()), "password in the log");
    }
}
on_both!(foreign_hashes, foreign_hashes_sign_in_and_round_trip);

async fn every_problem_reported_nothing_imported(backend: Backend) {
    let s = Server::start(backend, "").await;
    create_user(&s, "existing", "existing@example.com");
    let file = s.dir.join("bad.csv");
    write(
        &file,
        "cognito:username,email,email_verified,phone_number,password_hash\n\
         good1,good1@example.com,true,,\n\
         bad one,not-an-email,yes,12345,$md5$abc\n\
         good2,good2@example.com,false,+1 201 555 0123,\n\
         existing,existing@example.com,false,,\n\
         good1,other@example.com,false,,$2b$04$short\n",
    );
    let (code, out, err) = import(&s, &file, &[]);
    assert_eq!(code, 65, "{out}{err}");
    for want in [
        "line 3, column 1 (cognito:username)",
        "line 3, column 2 (email)",
        "line 3, column 3 (email_verified)",
        "line 3, column 4 (phone_number)",
        "line 3, column 5 (password_hash)",
        "line 5, column 1 (cognito:username)",
        "line 5, column 2 (email)",
        "line 6, column 1 (cognito:username): the same user as line 2",
        "line 6, column 5 (password_hash): malformed bcrypt hash",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
    assert!(
        !err.contains("$md5$abc") && !err.contains("$2b$04$short"),
        "hashes never echoed"
    );
    assert!(out.contains("nothing imported"), "{out}");
    let (_, list, _) = s.cli(&["users", "list"]);
    assert_eq!(list.lines().count(), 1, "only the existing user: {list}");

    // --skip-invalid: the valid rows go in, the others are listed.
    let (code, out, err) = import(&s, &file, &["--skip-invalid"]);
    assert_eq!(code, 65, "{out}{err}");
    assert!(
        out.contains("imported 2 users; skipped 3 invalid rows (lines 3, 5, 6)"),
        "{out}"
    );
    assert_eq!(
        show(&s, "good2")["attributes"]["phone_number"],
        "+12015550123"
    );
    assert_eq!(show(&s, "good1")["status"], "RESET_REQUIRED");
    let (_, list, _) = s.cli(&["users", "list"]);
    assert_eq!(list.lines().count(), 3, "{list}");

    // A header problem is reported on line 1.
    write(&file, "username,email\nann,ann@example.com\n");
    let (code, _, err) = import(&s, &file, &[]);
    assert_eq!(code, 65);
    assert!(
        err.contains("line 1, column 1 (username): unknown column"),
        "{err}"
    );
    assert!(
        err.contains("line 1: there is no cognito:username column"),
        "{err}"
    );

    let (_, audit, _) = s.cli(&["audit"]);
    assert!(
        audit.contains("import_users") && audit.contains("failed"),
        "{audit}"
    );
}
on_both!(problems, every_problem_reported_nothing_imported);

/// Import cost caps (the review's F8; CWE-400/CWE-770): a stored hash is verified on every
/// sign-in attempt, unauthenticated, so its cost parameters are capped near what real systems
/// use — Argon2 m ≤ 64 MiB, t ≤ 10, p ≤ 4; scrypt memory ≤ 64 MiB, p ≤ 2; PBKDF2 ≤ 10⁶
/// rounds (SHA-1/SHA-256), ≤ 3·10⁵ (SHA-512); bcrypt cost ≤ 13 — so verifying any stored hash
/// costs at most about a second of one core and 64 MiB. A row one step above a cap is refused,
/// naming its line and column; rows at the caps are accepted.
async fn hash_costs_above_the_caps_are_refused(backend: Backend) {
    let s = Server::start(backend, "").await;
    let salt = "c2FsdHNhbHRzYWx0c2FsdA";
    let digest = "aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g";
    let ab64_salt = "c2FsdHNhbHRzYWx0c2FsdA";
    let bcrypt_tail = "abcdefghijklmnopqrstuvABCDEFGHIJKLMNOPQRSTUVWXYZ01234";
    let above = [
        (
            "argon_m",
            format!("$argon2id$v=19$m=65537,t=1,p=1${salt}${digest}"),
            "argon2",
        ),
        (
            "argon_t",
            format!("$argon2id$v=19$m=19456,t=11,p=1${salt}${digest}"),
            "argon2",
        ),
        (
            "argon_p",
            format!("$argon2id$v=19$m=19456,t=2,p=5${salt}${digest}"),
            "argon2",
        ),
        (
            "scrypt_n",
            format!("$scrypt$ln=17,r=8,p=1${salt}${digest}"),
            "scrypt",
        ),
        (
            "scrypt_p",
            format!("$scrypt$ln=14,r=8,p=3${salt}${digest}"),
            "scrypt",
        ),
        (
            "pbkdf2_256",
            format!("$pbkdf2-sha256$1000001${ab64_salt}${digest}"),
            "pbkdf2",
        ),
        (
            "pbkdf2_1",
            format!("$pbkdf2-sha1$1000001${ab64_salt}${digest}"),
            "pbkdf2",
        ),
        (
            "pbkdf2_512",
            format!("$pbkdf2-sha512$300001${ab64_salt}${digest}"),
            "pbkdf2",
        ),
        ("bcrypt_14", format!("$2b$14${bcrypt_tail}"), "bcrypt"),
    ];
    let mut csv_text = String::from("cognito:username,email,password_hash\n");
    for (user, hash, _) in &above {
        csv_text.push_str(&format!("{user},{user}@example.com,\"{hash}\"\n"));
    }
    let file = s.dir.join("heavy.csv");
    write(&file, &csv_text);
    let (code, out, err) = import(&s, &file, &[]);
    assert_eq!(code, 65, "hashes above the caps were accepted: {out}{err}");
    for (i, (user, _, kind)) in above.iter().enumerate() {
        let want = format!("line {}, column 3 (password_hash): {kind}", i + 2);
        assert!(err.contains(&want), "{user}: missing {want:?} in:\n{err}");
    }
    assert!(out.contains("nothing imported"), "{out}");

    let at = [
        (
            "argon_max",
            format!("$argon2id$v=19$m=65536,t=10,p=4${salt}${digest}"),
        ),
        (
            "scrypt_max",
            format!("$scrypt$ln=16,r=8,p=2${salt}${digest}"),
        ),
        (
            "pbkdf2_256_max",
            format!("$pbkdf2-sha256$1000000${ab64_salt}${digest}"),
        ),
        (
            "pbkdf2_1_max",
            format!("$pbkdf2-sha1$1000000${ab64_salt}${digest}"),
        ),
        (
            "pbkdf2_512_max",
            format!("$pbkdf2-sha512$300000${ab64_salt}${digest}"),
        ),
        ("bcrypt_13", format!("$2b$13${bcrypt_tail}")),
    ];
    let mut csv_text = String::from("cognito:username,email,password_hash\n");
    for (user, hash) in &at {
        csv_text.push_str(&format!("{user},{user}@example.com,\"{hash}\"\n"));
    }
    write(&file, &csv_text);
    let (code, out, err) = import(&s, &file, &[]);
    assert_eq!(code, 0, "hashes at the caps were refused: {out}{err}");
    assert!(out.contains("imported 6 users"), "{out}");
}
on_both!(cost_caps, hash_costs_above_the_caps_are_refused);
