//! WebAuthn Level 2 relying-party checks (W3C §7.1 registration, §7.2 authentication), pure
//! Rust over ring: `clientDataJSON` type, challenge and origin; `rpIdHash` = SHA-256 of the RP
//! id (the pool's `public_url` host); the user-present flag (and user-verified, reported); the
//! signature over `authenticatorData ‖ SHA-256(clientDataJSON)` with the stored COSE key
//! (ES256, EdDSA, RS256); and a sign counter that must grow whenever it is not zero.
//! Attestation is not checked (the pages ask for `attestation: "none"`): the trust is the
//! signed-in user who registers the key, not the authenticator's maker.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature;

use super::cbor::{self, Cbor};

/// Why a WebAuthn response was refused. Messages are for logs; users see a generic text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebauthnError {
    #[error("clientDataJSON is not valid JSON of the expected shape")]
    ClientData,
    #[error("clientDataJSON type is not {0}")]
    Type(&'static str),
    #[error("the challenge is not the one this browser was given")]
    Challenge,
    #[error("origin {0:?} is not this pool's origin")]
    Origin(String),
    #[error("rpIdHash is not SHA-256 of this pool's RP id")]
    RpId,
    #[error("the user-present flag is not set")]
    NotPresent,
    #[error("authenticator data is malformed")]
    AuthData,
    #[error("attestation object is malformed")]
    Attestation,
    #[error("unsupported public key (ES256, EdDSA and RS256 are accepted)")]
    Key,
    #[error("signature does not verify")]
    Signature,
    #[error("sign counter did not increase ({stored} → {got}): the authenticator may be cloned")]
    Counter { stored: u32, got: u32 },
}

/// What the pool checks a response against.
pub struct Expected<'a> {
    /// base64url of the challenge handed out.
    pub challenge: &'a str,
    /// e.g. `https://login.example.com` (scheme, host, port when not default).
    pub origin: &'a str,
    pub rp_id: &'a str,
}

/// The parts of authenticator data the pool uses.
#[derive(Debug)]
struct AuthData<'a> {
    rp_id_hash: &'a [u8],
    user_present: bool,
    user_verified: bool,
    backup_eligible: bool,
    sign_count: u32,
    /// (credential id, COSE public key bytes) when the AT flag is set.
    attested: Option<(Vec<u8>, Vec<u8>)>,
}

const UP: u8 = 0x01;
const UV: u8 = 0x04;
const BE: u8 = 0x08;
const AT: u8 = 0x40;

fn parse_auth_data(d: &[u8]) -> Result<AuthData<'_>, WebauthnError> {
    if d.len() < 37 {
        return Err(WebauthnError::AuthData);
    }
    let flags = d[32];
    let sign_count = u32::from_be_bytes([d[33], d[34], d[35], d[36]]);
    let attested = if flags & AT != 0 {
        let rest = &d[37..];
        if rest.len() < 18 {
            return Err(WebauthnError::AuthData);
        }
        let len = usize::from(u16::from_be_bytes([rest[16], rest[17]]));
        let id = rest.get(18..18 + len).ok_or(WebauthnError::AuthData)?;
        let key_bytes = &rest[18 + len..];
        let (_, used) = cbor::decode(key_bytes).map_err(|_| WebauthnError::AuthData)?;
        Some((id.to_vec(), key_bytes[..used].to_vec()))
    } else {
        None
    };
    Ok(AuthData {
        rp_id_hash: &d[..32],
        user_present: flags & UP != 0,
        user_verified: flags & UV != 0,
        backup_eligible: flags & BE != 0,
        sign_count,
        attested,
    })
}

#[derive(serde::Deserialize)]
struct ClientData {
    #[serde(rename = "type")]
    kind: String,
    challenge: String,
    origin: String,
    #[serde(rename = "crossOrigin", default)]
    cross_origin: bool,
}

fn check_client_data(
    json: &[u8],
    kind: &'static str,
    want: &Expected<'_>,
) -> Result<(), WebauthnError> {
    let c: ClientData = serde_json::from_slice(json).map_err(|_| WebauthnError::ClientData)?;
    if c.kind != kind {
        return Err(WebauthnError::Type(kind));
    }
    if !crate::pool::ct_eq(c.challenge.as_bytes(), want.challenge.as_bytes()) {
        return Err(WebauthnError::Challenge);
    }
    // An embedded, cross-origin frame is not this pool's page.
    if c.origin != want.origin || c.cross_origin {
        return Err(WebauthnError::Origin(c.origin));
    }
    Ok(())
}

fn check_rp(ad: &AuthData<'_>, rp_id: &str) -> Result<(), WebauthnError> {
    let want = ring::digest::digest(&ring::digest::SHA256, rp_id.as_bytes());
    if ad.rp_id_hash != want.as_ref() {
        return Err(WebauthnError::RpId);
    }
    if !ad.user_present {
        return Err(WebauthnError::NotPresent);
    }
    Ok(())
}

/// A verified registration: what to store.
#[derive(Debug)]
pub struct NewCredential {
    /// base64url credential id.
    pub id: String,
    /// base64url COSE public key.
    pub public_key: String,
    pub sign_count: u32,
    pub user_verified: bool,
    pub backup_eligible: bool,
}

/// Verifies `navigator.credentials.create()` output (W3C WebAuthn §7.1).
pub fn verify_registration(
    client_data_json: &[u8],
    attestation_object: &[u8],
    want: &Expected<'_>,
) -> Result<NewCredential, WebauthnError> {
    check_client_data(client_data_json, "webauthn.create", want)?;
    let (att, _) = cbor::decode(attestation_object).map_err(|_| WebauthnError::Attestation)?;
    let auth_data = att
        .text_key("authData")
        .and_then(Cbor::as_bytes)
        .ok_or(WebauthnError::Attestation)?;
    att.text_key("fmt")
        .and_then(Cbor::as_text)
        .ok_or(WebauthnError::Attestation)?;
    let ad = parse_auth_data(auth_data)?;
    check_rp(&ad, want.rp_id)?;
    let (id, key) = ad.attested.as_ref().ok_or(WebauthnError::AuthData)?;
    // The key must be one we can verify with, before it is stored.
    PublicKey::from_cose(key)?;
    Ok(NewCredential {
        id: URL_SAFE_NO_PAD.encode(id),
        public_key: URL_SAFE_NO_PAD.encode(key),
        sign_count: ad.sign_count,
        user_verified: ad.user_verified,
        backup_eligible: ad.backup_eligible,
    })
}

/// A verified sign-in.
#[derive(Debug, PartialEq, Eq)]
pub struct Assertion {
    pub sign_count: u32,
    pub user_verified: bool,
    pub backup_eligible: bool,
}

/// Verifies `navigator.credentials.get()` output against a stored key and counter
/// (W3C WebAuthn §7.2 steps 11–21).
pub fn verify_assertion(
    client_data_json: &[u8],
    authenticator_data: &[u8],
    signature: &[u8],
    cose_key: &[u8],
    stored_count: u32,
    want: &Expected<'_>,
) -> Result<Assertion, WebauthnError> {
    check_client_data(client_data_json, "webauthn.get", want)?;
    let ad = parse_auth_data(authenticator_data)?;
    check_rp(&ad, want.rp_id)?;
    let mut signed = authenticator_data.to_vec();
    signed
        .extend_from_slice(ring::digest::digest(&ring::digest::SHA256, client_data_json).as_ref());
    PublicKey::from_cose(cose_key)?.verify(&signed, signature)?;
    // §6.1.1: a counter that does not move forward (when either side uses one) means clone.
    if (ad.sign_count != 0 || stored_count != 0) && ad.sign_count <= stored_count {
        return Err(WebauthnError::Counter {
            stored: stored_count,
            got: ad.sign_count,
        });
    }
    Ok(Assertion {
        sign_count: ad.sign_count,
        user_verified: ad.user_verified,
        backup_eligible: ad.backup_eligible,
    })
}

/// A COSE public key (RFC 9053) of a supported algorithm.
enum PublicKey {
    Es256(Vec<u8>),
    Ed25519(Vec<u8>),
    Rs256 { n: Vec<u8>, e: Vec<u8> },
}

impl PublicKey {
    fn from_cose(bytes: &[u8]) -> Result<PublicKey, WebauthnError> {
        let (k, _) = cbor::decode(bytes).map_err(|_| WebauthnError::Key)?;
        let b = |label: i128| {
            k.int_key(label)
                .and_then(Cbor::as_bytes)
                .map(<[u8]>::to_vec)
        };
        let kty = k.int_key(1).and_then(Cbor::as_int);
        let alg = k.int_key(3).and_then(Cbor::as_int);
        let crv = k.int_key(-1).and_then(Cbor::as_int);
        match (kty, alg) {
            (Some(2), Some(-7)) if crv == Some(1) => {
                let (x, y) = (
                    b(-2).ok_or(WebauthnError::Key)?,
                    b(-3).ok_or(WebauthnError::Key)?,
                );
                if x.len() != 32 || y.len() != 32 {
                    return Err(WebauthnError::Key);
                }
                let mut point = vec![0x04];
                point.extend(x);
                point.extend(y);
                Ok(PublicKey::Es256(point))
            }
            (Some(1), Some(-8)) if crv == Some(6) => {
                let x = b(-2).ok_or(WebauthnError::Key)?;
                if x.len() != 32 {
                    return Err(WebauthnError::Key);
                }
                Ok(PublicKey::Ed25519(x))
            }
            (Some(3), Some(-257)) => Ok(PublicKey::Rs256 {
                n: b(-1).ok_or(WebauthnError::Key)?,
                e: b(-2).ok_or(WebauthnError::Key)?,
            }),
            _ => Err(WebauthnError::Key),
        }
    }

    fn verify(&self, msg: &[u8], sig: &[u8]) -> Result<(), WebauthnError> {
        let r = match self {
            PublicKey::Es256(point) => {
                signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_ASN1, point)
                    .verify(msg, sig)
            }
            PublicKey::Ed25519(x) => {
                signature::UnparsedPublicKey::new(&signature::ED25519, x).verify(msg, sig)
            }
            PublicKey::Rs256 { n, e } => signature::RsaPublicKeyComponents { n, e }.verify(
                &signature::RSA_PKCS1_2048_8192_SHA256,
                msg,
                sig,
            ),
        };
        r.map_err(|_| WebauthnError::Signature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};

    const ORIGIN: &str = "https://login.example.com";
    const RP: &str = "login.example.com";
    const CHALLENGE: &str = "c2VydmVyLWNoYWxsZW5nZS0xMjM0NTY3ODkwYWJjZGVm";

    fn want() -> Expected<'static> {
        Expected {
            challenge: CHALLENGE,
            origin: ORIGIN,
            rp_id: RP,
        }
    }

    struct Authenticator {
        key: EcdsaKeyPair,
        id: Vec<u8>,
    }

    fn client_data(kind: &str, challenge: &str, origin: &str) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "type": kind, "challenge": challenge, "origin": origin, "crossOrigin": false
        }))
        .unwrap()
    }

    fn auth_data(rp: &str, flags: u8, count: u32, attested: Option<(&[u8], &[u8])>) -> Vec<u8> {
        let mut d = ring::digest::digest(&ring::digest::SHA256, rp.as_bytes())
            .as_ref()
            .to_vec();
        d.push(flags);
        d.extend(count.to_be_bytes());
        if let Some((id, key)) = attested {
            d.extend([0u8; 16]);
            d.extend((id.len() as u16).to_be_bytes());
            d.extend(id);
            d.extend(key);
        }
        d
    }

    impl Authenticator {
        fn new() -> Authenticator {
            let rng = SystemRandom::new();
            let pkcs8 =
                EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
            let key =
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng)
                    .unwrap();
            Authenticator {
                key,
                id: vec![7; 16],
            }
        }

        fn cose(&self) -> Vec<u8> {
            let p = self.key.public_key().as_ref();
            cbor::encode(&Cbor::Map(vec![
                (Cbor::Int(1), Cbor::Int(2)),
                (Cbor::Int(3), Cbor::Int(-7)),
                (Cbor::Int(-1), Cbor::Int(1)),
                (Cbor::Int(-2), Cbor::Bytes(p[1..33].to_vec())),
                (Cbor::Int(-3), Cbor::Bytes(p[33..65].to_vec())),
            ]))
        }

        fn attestation(&self, rp: &str, flags: u8) -> Vec<u8> {
            let cose = self.cose();
            cbor::encode(&Cbor::Map(vec![
                (Cbor::Text("fmt".into()), Cbor::Text("none".into())),
                (Cbor::Text("attStmt".into()), Cbor::Map(vec![])),
                (
                    Cbor::Text("authData".into()),
                    Cbor::Bytes(auth_data(rp, flags | AT, 0, Some((&self.id, &cose)))),
                ),
            ]))
        }

        /// (clientDataJSON, authenticatorData, signature)
        fn assert(
            &self,
            cd: Vec<u8>,
            rp: &str,
            flags: u8,
            count: u32,
        ) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
            let ad = auth_data(rp, flags, count, None);
            let mut signed = ad.clone();
            signed.extend(ring::digest::digest(&ring::digest::SHA256, &cd).as_ref());
            let sig = self.key.sign(&SystemRandom::new(), &signed).unwrap();
            (cd, ad, sig.as_ref().to_vec())
        }
    }

    #[test]
    fn registration_accepts_a_good_credential_and_refuses_tampering() {
        let a = Authenticator::new();
        let good = client_data("webauthn.create", CHALLENGE, ORIGIN);
        let c = verify_registration(&good, &a.attestation(RP, UP | UV | BE), &want()).unwrap();
        assert_eq!(c.id, URL_SAFE_NO_PAD.encode(&a.id));
        assert!(c.user_verified && c.backup_eligible);
        let table = [
            (
                client_data("webauthn.get", CHALLENGE, ORIGIN),
                a.attestation(RP, UP),
                WebauthnError::Type("webauthn.create"),
            ),
            (
                client_data("webauthn.create", "b3RoZXI", ORIGIN),
                a.attestation(RP, UP),
                WebauthnError::Challenge,
            ),
            (
                client_data("webauthn.create", CHALLENGE, "https://evil.example"),
                a.attestation(RP, UP),
                WebauthnError::Origin("https://evil.example".into()),
            ),
            (
                good.clone(),
                a.attestation("example.com", UP),
                WebauthnError::RpId,
            ),
            (
                good.clone(),
                a.attestation(RP, 0),
                WebauthnError::NotPresent,
            ),
        ];
        for (cd, att, err) in table {
            assert_eq!(verify_registration(&cd, &att, &want()).unwrap_err(), err);
        }
    }

    #[test]
    fn assertion_checks_signature_origin_rp_and_counter() {
        let a = Authenticator::new();
        let cose = a.cose();
        let get = |challenge: &str, origin: &str| client_data("webauthn.get", challenge, origin);
        let (cd, ad, sig) = a.assert(get(CHALLENGE, ORIGIN), RP, UP | UV, 5);
        assert_eq!(
            verify_assertion(&cd, &ad, &sig, &cose, 4, &want()).unwrap(),
            Assertion {
                sign_count: 5,
                user_verified: true,
                backup_eligible: false
            }
        );
        // Bad signature: one bit flipped in the signed data.
        let mut tampered = ad.clone();
        tampered[36] ^= 1;
        assert_eq!(
            verify_assertion(&cd, &tampered, &sig, &cose, 0, &want()).unwrap_err(),
            WebauthnError::Signature
        );
        // Another key's signature.
        let other = Authenticator::new();
        assert_eq!(
            verify_assertion(&cd, &ad, &sig, &other.cose(), 0, &want()).unwrap_err(),
            WebauthnError::Signature
        );
        // Wrong origin, wrong RP id (both correctly signed by the authenticator).
        let (cd2, ad2, sig2) = a.assert(
            get(CHALLENGE, "https://login.example.com.evil.test"),
            RP,
            UP,
            6,
        );
        assert!(matches!(
            verify_assertion(&cd2, &ad2, &sig2, &cose, 5, &want()),
            Err(WebauthnError::Origin(_))
        ));
        let (cd3, ad3, sig3) = a.assert(get(CHALLENGE, ORIGIN), "evil.test", UP, 6);
        assert_eq!(
            verify_assertion(&cd3, &ad3, &sig3, &cose, 5, &want()).unwrap_err(),
            WebauthnError::RpId
        );
        // A response to an earlier challenge (replayed) is not the current challenge.
        let (cd4, ad4, sig4) = a.assert(get("b2xkLWNoYWxsZW5nZQ", ORIGIN), RP, UP, 7);
        assert_eq!(
            verify_assertion(&cd4, &ad4, &sig4, &cose, 5, &want()).unwrap_err(),
            WebauthnError::Challenge
        );
        // Counter going backwards, or standing still, is refused; 0 → 0 is allowed.
        for (stored, got, ok) in [
            (5, 4, false),
            (5, 5, false),
            (5, 6, true),
            (0, 0, true),
            (3, 0, false),
        ] {
            let (cd, ad, sig) = a.assert(get(CHALLENGE, ORIGIN), RP, UP, got);
            let r = verify_assertion(&cd, &ad, &sig, &cose, stored, &want());
            assert_eq!(r.is_ok(), ok, "stored {stored}, got {got}: {r:?}");
        }
        // User presence is required.
        let (cd5, ad5, sig5) = a.assert(get(CHALLENGE, ORIGIN), RP, UV, 9);
        assert_eq!(
            verify_assertion(&cd5, &ad5, &sig5, &cose, 5, &want()).unwrap_err(),
            WebauthnError::NotPresent
        );
    }
}
