//! Identity headers sent upstream (docs/src/proxy/identity-headers.md). Owns three things:
//! - [`strip`]: removes every client-sent copy of an identity header on every request, matching
//!   case-insensitively with `_` and `.` read as `-` (some upstream stacks fold them together,
//!   which lets `X_Amzn_Oidc_Identity` smuggle an identity past a naive filter);
//! - [`Identity`]: the header values derived from one session, computed once per session;
//! - the `x-amzn-oidc-data` JWT, ES256-signed in ALB's format (padded base64url, security fields
//!   in the header) or the standard one, cached per session until shortly before its `exp`.
//!
//! It never decides access; it only writes what the auth gate has established.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use http::{HeaderMap, HeaderName, HeaderValue};
use parking_lot::Mutex;

use crate::config::JwtFormat;
use crate::http::headers::*;
use crate::session::Session;
use crate::signing::SigningKey;

/// Lifetime of a signed `x-amzn-oidc-data` value (at most 10 minutes, as ALB does).
pub const DATA_TTL_SECS: i64 = 600;
/// A cached value is replaced this long before its `exp`, so upstreams never get a stale one.
const DATA_RENEW_SECS: i64 = 60;

/// ID-token protocol claims that are not identity and are not copied into the data JWT.
const PROTOCOL_CLAIMS: &[&str] = &[
    "aud",
    "azp",
    "nonce",
    "at_hash",
    "c_hash",
    "iat",
    "exp",
    "iss",
    "auth_time",
    "jti",
    "sid",
    "acr",
    // `amr` is kept: upstreams see how the user signed in (docs/src/pool/mfa.md, RFC 8176).
    "nbf",
];

fn normalized_eq(name: &[u8], target: &str) -> bool {
    name.len() == target.len()
        && name.iter().zip(target.bytes()).all(|(&a, b)| {
            let a = match a.to_ascii_lowercase() {
                b'_' | b'.' => b'-',
                c => c,
            };
            a == b
        })
}

/// Is this (client-sent) header name one of ours in disguise?
pub fn is_identity_header(name: &str) -> bool {
    let b = name.as_bytes();
    // Cheap pre-filter: every identity header starts with `x`.
    if b.first().map(|c| c.to_ascii_lowercase()) != Some(b'x') {
        return false;
    }
    IDENTITY_HEADERS.iter().any(|t| normalized_eq(b, t))
}

/// Removes every client-supplied identity header. Runs on every forwarded request.
pub fn strip(headers: &mut HeaderMap) {
    let mut doomed: Vec<HeaderName> = Vec::new();
    for name in headers.keys() {
        if is_identity_header(name.as_str()) {
            doomed.push(name.clone());
        }
    }
    for name in doomed {
        headers.remove(&name);
    }
}

/// Static facts of the signer, fixed at start-up.
pub struct DataSigner {
    pub key: Arc<SigningKey>,
    pub format: JwtFormat,
    pub signer: String,
    pub forwarded_user: bool,
    pub access_token: bool,
    /// `headers.insecure_forward_unverified_email`: send `X-Forwarded-Email` even when the
    /// IdP said `email_verified: false` (off by default: such an address is not identity).
    pub forward_unverified_email: bool,
}

/// Everything injected for one session, built once and reused for every request it makes.
pub struct Identity {
    identity: HeaderValue,
    access_token: Option<HeaderValue>,
    user: Option<HeaderValue>,
    email: Option<HeaderValue>,
    /// The IdP said `email_verified: false` (absent counts as not false).
    email_unverified: bool,
    groups: Option<HeaderValue>,
    preferred_username: Option<HeaderValue>,
    /// Claims for the data JWT (protocol claims removed), serialised once.
    data_claims: serde_json::Map<String, serde_json::Value>,
    issuer: String,
    client_id: String,
    data: Mutex<Option<(HeaderValue, i64)>>,
}

fn value(s: &str) -> Option<HeaderValue> {
    HeaderValue::from_str(s).ok()
}

impl Identity {
    pub fn new(session: &Session, groups_claim: &str, issuer: &str, client_id: &str) -> Identity {
        let claims = &session.claims;
        let s = |k: &str| claims.get(k).and_then(|v| v.as_str());
        let groups = session.groups(groups_claim);
        let mut data_claims = claims.clone();
        for c in PROTOCOL_CLAIMS {
            data_claims.remove(*c);
        }
        Identity {
            identity: value(&session.sub).unwrap_or_else(|| HeaderValue::from_static("")),
            access_token: session.access_token.as_deref().and_then(value),
            user: value(&session.sub),
            email: s("email").and_then(value),
            email_unverified: !session.email_verified_not_false(),
            groups: if groups.is_empty() {
                None
            } else {
                value(&groups.join(","))
            },
            preferred_username: s("preferred_username").and_then(value),
            data_claims,
            issuer: issuer.to_string(),
            client_id: client_id.to_string(),
            data: Mutex::new(None),
        }
    }

    /// Writes the identity headers (after [`strip`] has run).
    pub fn inject(&self, headers: &mut HeaderMap, signer: &DataSigner, now: i64) {
        // Room for these and the X-Forwarded-* set next: one growth instead of several.
        headers.reserve(8);
        headers.insert(X_AMZN_OIDC_IDENTITY, self.identity.clone());
        if signer.access_token
            && let Some(v) = &self.access_token
        {
            headers.insert(X_AMZN_OIDC_ACCESSTOKEN, v.clone());
        }
        headers.insert(X_AMZN_OIDC_DATA, self.data_header(signer, now));
        if signer.forwarded_user {
            // An address the IdP says it did not verify is not identity: anyone can hold it.
            let email = match self.email_unverified && !signer.forward_unverified_email {
                true => &None,
                false => &self.email,
            };
            let pairs = [
                (X_FORWARDED_USER, &self.user),
                (X_FORWARDED_EMAIL, email),
                (X_FORWARDED_GROUPS, &self.groups),
                (X_FORWARDED_PREFERRED_USERNAME, &self.preferred_username),
            ];
            for (name, v) in pairs {
                if let Some(v) = v {
                    headers.insert(name, v.clone());
                }
            }
        }
    }

    /// The signed data header, reused until [`DATA_RENEW_SECS`] before it expires.
    pub fn data_header(&self, signer: &DataSigner, now: i64) -> HeaderValue {
        let mut slot = self.data.lock();
        if let Some((v, exp)) = &*slot
            && now < exp - DATA_RENEW_SECS
        {
            return v.clone();
        }
        let exp = now + DATA_TTL_SECS;
        let jwt = sign_data(
            signer,
            &self.data_claims,
            &self.issuer,
            &self.client_id,
            now,
            exp,
        );
        let v = HeaderValue::from_str(&jwt).expect("a JWT is base64url and dots");
        *slot = Some((v.clone(), exp));
        v
    }

    pub fn claims(&self) -> &serde_json::Map<String, serde_json::Value> {
        &self.data_claims
    }
}

/// Signs the data JWT. ALB format: header `{typ,kid,alg,iss,client,signer,exp}`, payload = the
/// claims plus `exp` and `iss` (as ALB sends them), every part base64url **with** padding.
pub fn sign_data(
    signer: &DataSigner,
    claims: &serde_json::Map<String, serde_json::Value>,
    issuer: &str,
    client_id: &str,
    now: i64,
    exp: i64,
) -> String {
    let (header, payload, engine) = match signer.format {
        JwtFormat::Alb => {
            // ALB's byte order, which some verifiers compare (a `json!` map would sort keys).
            let header = ordered_object(&[
                ("typ", "JWT".into()),
                ("kid", signer.key.kid().into()),
                ("alg", "ES256".into()),
                ("iss", issuer.into()),
                ("client", client_id.into()),
                ("signer", signer.signer.as_str().into()),
                ("exp", exp.into()),
            ]);
            let mut p = claims.clone();
            p.insert("exp".into(), exp.into());
            p.insert("iss".into(), issuer.into());
            (header, p, &URL_SAFE)
        }
        JwtFormat::Standard => {
            let header = ordered_object(&[
                ("typ", "JWT".into()),
                ("kid", signer.key.kid().into()),
                ("alg", "ES256".into()),
            ]);
            let mut p = claims.clone();
            p.insert("exp".into(), exp.into());
            p.insert("iat".into(), now.into());
            p.insert("iss".into(), signer.signer.clone().into());
            p.insert("aud".into(), client_id.into());
            (header, p, &URL_SAFE_NO_PAD)
        }
    };
    let h = engine.encode(header.as_bytes());
    let p = engine.encode(serde_json::to_vec(&payload).expect("JSON values serialise"));
    let signing_input = format!("{h}.{p}");
    let sig = engine.encode(signer.key.sign(signing_input.as_bytes()));
    format!("{signing_input}.{sig}")
}

/// A JSON object with its members in the given order.
fn ordered_object(members: &[(&str, serde_json::Value)]) -> String {
    let mut out = String::from("{");
    for (i, (k, v)) in members.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&serde_json::Value::from(*k).to_string());
        out.push(':');
        out.push_str(&v.to_string());
    }
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_disguised_identity_headers() {
        let mut h = HeaderMap::new();
        for n in [
            "x-amzn-oidc-identity",
            "X_Amzn_Oidc_Identity",
            "x.amzn.oidc.data",
            "x-forwarded-user",
            "X_FORWARDED_EMAIL",
            "x-forwarded_groups",
            "x-forwarded-preferred-username",
            "x-amzn-oidc-accesstoken",
        ] {
            h.append(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_static("evil"),
            );
        }
        h.insert("x-forwarded-for", HeaderValue::from_static("1.2.3.4"));
        h.insert("accept", HeaderValue::from_static("*/*"));
        strip(&mut h);
        assert_eq!(h.len(), 2, "{h:?}");
    }

    #[test]
    fn alb_jwt_is_padded_and_verifies() {
        use ring::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};
        let key = Arc::new(SigningKey::generate());
        let signer = DataSigner {
            key: key.clone(),
            format: JwtFormat::Alb,
            signer: "arn:x".into(),
            forwarded_user: true,
            access_token: true,
            forward_unverified_email: false,
        };
        let mut claims = serde_json::Map::new();
        claims.insert("sub".into(), "alice".into());
        claims.insert("email".into(), "a@example.com".into());
        let jwt = sign_data(&signer, &claims, "https://idp", "cid", 100, 700);
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        assert!(
            parts[2].ends_with('='),
            "ES256 signature of 64 bytes is padded in ALB format"
        );
        let header_text = String::from_utf8(URL_SAFE.decode(parts[0]).unwrap()).unwrap();
        // Regression (issue 9, item 5): ALB's byte order, not alphabetical.
        assert_eq!(
            header_text,
            format!(
                r#"{{"typ":"JWT","kid":"{}","alg":"ES256","iss":"https://idp","client":"cid","signer":"arn:x","exp":700}}"#,
                key.kid()
            )
        );
        let header: serde_json::Value = serde_json::from_str(&header_text).unwrap();
        assert_eq!(header["signer"], "arn:x");
        assert_eq!(header["client"], "cid");
        assert_eq!(header["exp"], 700);
        let sig = URL_SAFE.decode(parts[2]).unwrap();
        let der = crate::signing::pem_body(key.public_pem(), "PUBLIC KEY").unwrap();
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &der[26..])
            .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &sig)
            .unwrap();
    }
}
