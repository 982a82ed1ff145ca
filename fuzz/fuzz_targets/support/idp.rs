//! An in-process identity provider for the token targets: discovery and an ES256 JWKS served
//! on a loopback port by a thread of its own, the real Portcullis app configured with it as
//! provider `idp`, and a signer for genuine tokens.

use std::convert::Infallible;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use portcullis::app::App;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair};
use serde_json::{Value, json};

pub const CLIENT_ID: &str = "portcullis";
pub const AUDIENCE: &str = "api://orders";

pub struct Idp {
    pub app: App,
    pub rt: tokio::runtime::Runtime,
    pub issuer: String,
    key: EcdsaKeyPair,
    rng: SystemRandom,
}

fn enc(b: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

impl Idp {
    /// Starts the provider and builds the app (one bearer route `/api/` in front of a
    /// directory holding the file `x`).
    pub fn start() -> Idp {
        portcullis::install_crypto();
        let rng = SystemRandom::new();
        let pk8 = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .expect("EC key");
        let key = EcdsaKeyPair::from_pkcs8(
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            pk8.as_ref(),
            &rng,
        )
        .expect("EC key");
        let p = key.public_key().as_ref();
        let jwks = json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": "k1", "alg": "ES256", "use": "sig",
            "x": enc(&p[1..33]), "y": enc(&p[33..])}]})
        .to_string();

        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let issuer = format!("http://{}", listener.local_addr().expect("addr"));
        let discovery = json!({
            "issuer": issuer,
            "authorization_endpoint": format!("{issuer}/authorize"),
            "token_endpoint": format!("{issuer}/token"),
            "jwks_uri": format!("{issuer}/jwks"),
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["ES256"],
        })
        .to_string();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let l = tokio::net::TcpListener::from_std(listener).expect("listener");
                loop {
                    let Ok((s, _)) = l.accept().await else {
                        continue;
                    };
                    let (discovery, jwks) = (discovery.clone(), jwks.clone());
                    tokio::spawn(async move {
                        let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                            let body = match req.uri().path() {
                                "/.well-known/openid-configuration" => discovery.clone(),
                                _ => jwks.clone(),
                            };
                            async move {
                                let mut r = hyper::Response::new(Full::new(Bytes::from(body)));
                                r.headers_mut().insert(
                                    "content-type",
                                    http::HeaderValue::from_static("application/json"),
                                );
                                Ok::<_, Infallible>(r)
                            }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(s), svc)
                            .await;
                    });
                }
            });
        });

        let dir = std::env::temp_dir().join(format!("portcullis-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        // The file behind `/api/x`, whether the route's prefix is kept or not.
        std::fs::create_dir_all(dir.join("api")).expect("temp dir");
        std::fs::write(dir.join("x"), "x").expect("file");
        std::fs::write(dir.join("api/x"), "x").expect("file");
        let text = format!(
            r#"
public_url = "http://127.0.0.1:9"
[server]
listen = ["127.0.0.1:9"]
[session]
secrets = ["fuzz-secret-fuzz-secret-fuzz-secret-0123"]
[log]
level = "error"
[providers.idp]
issuer = "{issuer}"
client_id = "{CLIENT_ID}"
client_secret = "fuzz-client-secret"
[[routes]]
path = "/api/"
upstream = "file://{dir}"
provider = "idp"
on_unauthenticated = "deny"
accept_bearer = true
bearer_audience = ["{AUDIENCE}"]
"#,
            dir = dir.display()
        );
        let cfg = portcullis::config::load_str(&text, Path::new("/nonexistent/fuzz.toml"))
            .unwrap_or_else(|e| panic!("fixture config: {e}"));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let app = rt.block_on(async { App::build(cfg) }).expect("app");
        Idp {
            app,
            rt,
            issuer,
            key,
            rng,
        }
    }

    /// A compact JWS of `claims` by the provider's key, with `typ` when given.
    pub fn sign(&self, claims: &Value, typ: Option<&str>) -> String {
        let mut header = json!({"alg": "ES256", "kid": "k1"});
        if let Some(t) = typ {
            header["typ"] = json!(t);
        }
        let input = format!(
            "{}.{}",
            enc(header.to_string().as_bytes()),
            enc(claims.to_string().as_bytes())
        );
        let sig = self.key.sign(&self.rng, input.as_bytes()).expect("signing");
        format!("{input}.{}", enc(sig.as_ref()))
    }
}

/// The signed part (header and payload) of a compact JWS.
pub fn signed_part(token: &str) -> &str {
    token.rsplit_once('.').map_or(token, |(a, _)| a)
}
