//! Passkeys: the CBOR decoder (src/pool/mfa/cbor.rs) and WebAuthn registration and assertion
//! checking (src/pool/mfa/webauthn.rs), which read an attestation object, authenticator data
//! and a COSE key that a browser — or anyone — posts. Modes, by the first input byte:
//! - `C`: the rest is one CBOR item (depth bombs, declared-length bombs, …);
//! - `A`: the rest is an attestation object, checked with a genuine client data JSON;
//! - `D`: the rest is authenticator data, checked as an assertion with a genuine client data
//!   JSON and signature and the real credential key;
//! - otherwise edits (4 bytes each) to a genuine attestation object (even first byte) or to a
//!   genuine assertion's authenticator data and signature (odd).
//!
//! Properties: nothing panics; a decoded item is re-encoded and decodes to itself, using no
//! more bytes than the input has; decoding and checking never allocate more than 64 bytes per
//! input byte plus 1 MiB at once (a declared count or length is not an allocation size); an
//! assertion verifies only with the authenticator data and signature the key signed, and a
//! registration only yields a credential whose id and key are in the authenticator data.
#![no_main]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::LazyLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use libfuzzer_sys::fuzz_target;
use portcullis::pool::mfa::cbor::{Cbor, decode, encode};
use portcullis::pool::mfa::webauthn::{Expected, verify_assertion, verify_registration};
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair};

/// Live heap bytes and their peak since the last reset (this target is single-threaded).
struct Counting;
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(l) };
        if !p.is_null() {
            let now = LIVE.fetch_add(l.size(), Ordering::Relaxed) + l.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) };
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        let q = unsafe { System.realloc(p, l, new) };
        if !q.is_null() {
            if new >= l.size() {
                let now = LIVE.fetch_add(new - l.size(), Ordering::Relaxed) + new - l.size();
                PEAK.fetch_max(now, Ordering::Relaxed);
            } else {
                LIVE.fetch_sub(l.size() - new, Ordering::Relaxed);
            }
        }
        q
    }
}

#[path = "support/edit.rs"]
mod edit;
use edit::edit;

#[global_allocator]
static ALLOC: Counting = Counting;

/// Runs `f` and checks the heap it used at its peak against the input's size.
fn bounded<T>(input_len: usize, what: &str, f: impl FnOnce() -> T) -> T {
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let out = f();
    let used = PEAK.load(Ordering::Relaxed).saturating_sub(base);
    let limit = 64 * input_len + (1 << 20);
    assert!(
        used <= limit,
        "{what}: {used} bytes of heap at once for {input_len} bytes of input (limit {limit})"
    );
    out
}

const ORIGIN: &str = "https://login.example.com";
const RP_ID: &str = "login.example.com";
const CHALLENGE: &str = "Y2hhbGxlbmdlLWNoYWxsZW5nZS0xMjM0NTY3OA";

fn want() -> Expected<'static> {
    Expected {
        challenge: CHALLENGE,
        origin: ORIGIN,
        rp_id: RP_ID,
    }
}

struct Fixture {
    create_json: Vec<u8>,
    get_json: Vec<u8>,
    attestation: Vec<u8>,
    cose_key: Vec<u8>,
    assert_data: Vec<u8>,
    signature: Vec<u8>,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let rng = SystemRandom::new();
    let pk8 = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
        .expect("EC key");
    let key = EcdsaKeyPair::from_pkcs8(
        &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
        pk8.as_ref(),
        &rng,
    )
    .expect("EC key");
    let p = key.public_key().as_ref();
    let cose = Cbor::Map(vec![
        (Cbor::Int(1), Cbor::Int(2)),
        (Cbor::Int(3), Cbor::Int(-7)),
        (Cbor::Int(-1), Cbor::Int(1)),
        (Cbor::Int(-2), Cbor::Bytes(p[1..33].to_vec())),
        (Cbor::Int(-3), Cbor::Bytes(p[33..].to_vec())),
    ]);
    let cose_key = encode(&cose);
    let rp_hash = ring::digest::digest(&ring::digest::SHA256, RP_ID.as_bytes());
    let cred_id = b"credential-0123456789".to_vec();
    let mut auth = rp_hash.as_ref().to_vec();
    auth.push(0x45); // UP, UV, AT
    auth.extend(0u32.to_be_bytes());
    auth.extend([7u8; 16]); // AAGUID
    auth.extend((cred_id.len() as u16).to_be_bytes());
    auth.extend(&cred_id);
    auth.extend(&cose_key);
    let att = Cbor::Map(vec![
        (Cbor::Text("fmt".into()), Cbor::Text("none".into())),
        (Cbor::Text("attStmt".into()), Cbor::Map(vec![])),
        (Cbor::Text("authData".into()), Cbor::Bytes(auth)),
    ]);
    let attestation = encode(&att);
    let client = |kind: &str| {
        format!(r#"{{"type":"{kind}","challenge":"{CHALLENGE}","origin":"{ORIGIN}","crossOrigin":false}}"#)
            .into_bytes()
    };
    let get_json = client("webauthn.get");
    let mut assert_data = rp_hash.as_ref().to_vec();
    assert_data.push(0x05); // UP, UV
    assert_data.extend(5u32.to_be_bytes());
    let mut signed = assert_data.clone();
    signed.extend(ring::digest::digest(&ring::digest::SHA256, &get_json).as_ref());
    let signature = key.sign(&rng, &signed).expect("signing").as_ref().to_vec();
    let f = Fixture {
        create_json: client("webauthn.create"),
        get_json,
        attestation,
        cose_key,
        assert_data,
        signature,
    };
    // The genuine ones pass, or the properties below test nothing.
    verify_registration(&f.create_json, &f.attestation, &want()).expect("genuine registration");
    verify_assertion(
        &f.get_json,
        &f.assert_data,
        &f.signature,
        &f.cose_key,
        1,
        &want(),
    )
    .expect("genuine assertion");
    f
});

fn check_registration(att: &[u8]) {
    let f = &*FIXTURE;
    let r = bounded(att.len(), "registration", || {
        verify_registration(&f.create_json, att, &want())
    });
    if let Ok(c) = r {
        let id = URL_SAFE_NO_PAD.decode(&c.id).expect("the id is base64url");
        let key = URL_SAFE_NO_PAD
            .decode(&c.public_key)
            .expect("the key is base64url");
        let hay =
            |needle: &[u8]| needle.is_empty() || att.windows(needle.len()).any(|w| w == needle);
        assert!(
            hay(&id) && hay(&key),
            "a credential not in the attestation object"
        );
    }
}

fn check_assertion(auth: &[u8], sig: &[u8]) {
    let f = &*FIXTURE;
    let r = bounded(auth.len() + sig.len(), "assertion", || {
        verify_assertion(&f.get_json, auth, sig, &f.cose_key, 1, &want())
    });
    if r.is_ok() {
        assert_eq!(
            auth,
            f.assert_data.as_slice(),
            "edited authenticator data verified"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let f = &*FIXTURE;
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode {
        b'C' => {
            let r = bounded(rest.len(), "CBOR decoding", || decode(rest));
            if let Ok((v, used)) = r {
                assert!(used <= rest.len());
                let again = encode(&v);
                let (w, n) = decode(&again).expect("a re-encoded item decodes");
                assert_eq!((w, n), (v, again.len()), "re-encoding changed the item");
            }
        }
        b'A' => check_registration(rest),
        b'D' => check_assertion(rest, &f.signature),
        m if m % 2 == 0 => check_registration(&edit(f.attestation.clone(), rest)),
        _ => {
            // Edits go to the authenticator data, then (after a 0xff 0xff 0xff 0xff marker)
            // to the signature.
            let marker = rest.chunks_exact(4).position(|c| c == [0xff; 4]);
            let (a, s) = match marker {
                Some(i) => (&rest[..i * 4], &rest[i * 4 + 4..]),
                None => (rest, &[][..]),
            };
            check_assertion(
                &edit(f.assert_data.clone(), a),
                &edit(f.signature.clone(), s),
            );
        }
    }
});
