//! The admin JSON API, served only on the admin listener under `/pool/`, authenticated with
//! `Authorization: Bearer {pool.admin_token}` (compared in constant time; without a configured
//! token the API is off). The same operations as `portcullis pool …`:
//!
//! | method + path | operation |
//! |---|---|
//! | `GET /pool/users` | list |
//! | `POST /pool/users` `{username, password?, permanent?, attributes?, groups?}` | create |
//! | `GET` / `DELETE /pool/users/{name}` | show / delete |
//! | `POST /pool/users/{name}/set-password` `{password, permanent?}` | set password |
//! | `POST /pool/users/{name}/{reset-password,disable,enable,unlock,sign-out}` | … |
//! | `POST /pool/users/{name}/mfa-reset` | remove TOTP and recovery codes |
//! | `GET /pool/users/{name}/passkeys`, `DELETE /pool/users/{name}/passkeys/{id}` | passkeys |
//! | `GET /pool/groups` | groups and members |
//! | `PUT` / `DELETE /pool/groups/{group}/users/{name}` | add / remove membership |
//! | `GET /pool/audit?since=24h&limit=100` | the audit log, newest first |
//! | `GET /pool/keys` | the signing keys (kid, alg, status, when a retired one leaves) |
//! | `POST /pool/keys/rotate` | rotate the signing key; answers the new `kid` and the keys |
//!
//! Every change made through the API is recorded in the audit log with the actor `api`.

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};

use super::admin::{Admin, AdminError};
use super::audit::{self, Actor};
use super::{MAX_BODY, Pool};
use crate::http::body::{self, Body};

fn reply(status: StatusCode, v: Value) -> Response<Body> {
    let mut r = Response::new(body::full(v.to_string()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn failure(e: AdminError) -> Response<Body> {
    let code = e.code();
    let status = match &e {
        AdminError::NoSuchUser(_) => StatusCode::NOT_FOUND,
        AdminError::Invalid(_) => StatusCode::BAD_REQUEST,
        AdminError::Exists(_) => StatusCode::CONFLICT,
        AdminError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
        AdminError::Delivery(_) => StatusCode::BAD_GATEWAY,
        AdminError::Busy => StatusCode::SERVICE_UNAVAILABLE,
    };
    let message = match &e {
        AdminError::Store(inner) => {
            tracing::error!(error = %inner, "pool admin API: database error");
            "database unavailable".to_string()
        }
        other => other.to_string(),
    };
    let problems = match &e {
        AdminError::Invalid(list) => json!(list),
        _ => json!([]),
    };
    let mut r = reply(
        status,
        json!({"error": code, "message": message, "problems": problems}),
    );
    if matches!(e, AdminError::Busy) {
        super::hashing::retry_later(&mut r);
    }
    r
}

fn decode(seg: &str) -> String {
    percent_encoding::percent_decode_str(seg)
        .decode_utf8_lossy()
        .into_owned()
}

fn user_json(u: &super::store::User) -> Value {
    serde_json::to_value(u).unwrap_or(Value::Null)
}

impl Pool {
    /// Answers `/pool/…` on the admin listener.
    pub async fn admin_api<B>(&self, req: Request<B>) -> Response<Body>
    where
        B: http_body::Body<Data = Bytes> + Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        // The admin listener checked the bearer token (server.admin_token or
        // pool.admin_token) before handing the request here.
        if req
            .extensions()
            .get::<crate::http::AdminAuthorized>()
            .is_none()
        {
            return reply(
                StatusCode::UNAUTHORIZED,
                json!({"error": "unauthorized", "message": "bearer token required"}),
            );
        }
        let ready = match self.ready().await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "pool admin API: pool unavailable");
                return reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    json!({"error": "database", "message": "pool unavailable"}),
                );
            }
        };
        let admin = Admin {
            cfg: &self.cfg,
            store: &ready.store,
            actor: Actor::Api,
        };
        let method = req.method().clone();
        let query = super::query_pairs(req.uri().query());
        let param = |k: &str| {
            query
                .iter()
                .find(|(name, _)| name == k)
                .map(|(_, v)| v.as_str())
        };
        let path = req.uri().path().to_string();
        let body: Value = if method == Method::POST || method == Method::PUT {
            match http_body_util::Limited::new(req.into_body(), MAX_BODY)
                .collect()
                .await
            {
                Ok(b) => {
                    let bytes = b.to_bytes();
                    match serde_json::from_slice(&bytes) {
                        _ if bytes.is_empty() => json!({}),
                        Ok(v @ Value::Object(_)) => v,
                        _ => {
                            return reply(
                                StatusCode::BAD_REQUEST,
                                json!({"error": "invalid", "message": "the body must be a JSON object"}),
                            );
                        }
                    }
                }
                Err(_) => {
                    return reply(StatusCode::PAYLOAD_TOO_LARGE, json!({"error": "too_large"}));
                }
            }
        } else {
            json!({})
        };
        let segs: Vec<String> = path
            .trim_start_matches("/pool/")
            .split('/')
            .map(decode)
            .collect();
        let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
        let s = |k: &str| body.get(k).and_then(Value::as_str);
        let permanent = body
            .get("permanent")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let result: Result<(StatusCode, Value), AdminError> = async {
            Ok(match (method.as_str(), segs.as_slice()) {
                ("GET", ["users"]) => (
                    StatusCode::OK,
                    json!({"users": admin.list().await?.iter().map(user_json).collect::<Vec<_>>()}),
                ),
                ("POST", ["users"]) => {
                    let name = s("username")
                        .ok_or_else(|| AdminError::Invalid(vec!["username: required".into()]))?;
                    let attrs: Vec<(String, String)> = body
                        .get("attributes")
                        .and_then(Value::as_object)
                        .map(|m| {
                            m.iter()
                                .map(|(k, v)| {
                                    (
                                        k.clone(),
                                        v.as_str()
                                            .map(str::to_string)
                                            .unwrap_or_else(|| v.to_string()),
                                    )
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    let groups: Vec<String> = body
                        .get("groups")
                        .and_then(Value::as_array)
                        .map(|a| {
                            a.iter()
                                .filter_map(|g| g.as_str().map(str::to_string))
                                .collect()
                        })
                        .unwrap_or_default();
                    let (u, generated) = admin
                        .add_user(name, s("password"), permanent, &attrs, &groups)
                        .await?;
                    let mut v = user_json(&u);
                    if let Some(g) = generated {
                        v["temporary_password"] = json!(g);
                    }
                    (StatusCode::CREATED, v)
                }
                ("GET", ["users", name]) => (StatusCode::OK, admin.show(name).await?),
                ("GET", ["keys"]) => (
                    StatusCode::OK,
                    json!({"keys": super::jwt::list(&ready.store, self.cfg.signing_alg, super::now()).await?}),
                ),
                ("POST", ["keys", "rotate"]) => {
                    let (kid, keys) = super::jwt::rotate_audited(&admin, super::now()).await?;
                    // This replica signs with the new key at once; the others within KEY_REFRESH.
                    ready.keys.reload(&ready.store).await?;
                    (StatusCode::OK, json!({"kid": kid, "keys": keys}))
                }
                ("POST", ["users", name, "mfa-reset"]) => (
                    StatusCode::OK,
                    json!({"totp_removed": admin.mfa_reset(name).await?}),
                ),
                ("GET", ["users", name, "passkeys"]) => (
                    StatusCode::OK,
                    json!({"passkeys": admin.passkeys(name).await?}),
                ),
                ("DELETE", ["users", name, "passkeys", id]) => {
                    admin.remove_passkey(name, id).await?;
                    (StatusCode::OK, json!({"removed": id}))
                }
                ("DELETE", ["users", name]) => {
                    admin.delete(name).await?;
                    (StatusCode::OK, json!({"deleted": name}))
                }
                ("POST", ["users", name, "set-password"]) => {
                    let pw = s("password")
                        .ok_or_else(|| AdminError::Invalid(vec!["password: required".into()]))?;
                    (
                        StatusCode::OK,
                        user_json(&admin.set_password(name, pw, permanent).await?),
                    )
                }
                ("POST", ["users", name, "reset-password"]) => (
                    StatusCode::OK,
                    user_json(&admin.reset_password(name).await?),
                ),
                ("POST", ["users", name, "disable"]) => {
                    (StatusCode::OK, user_json(&admin.disable(name).await?))
                }
                ("POST", ["users", name, "enable"]) => {
                    (StatusCode::OK, user_json(&admin.enable(name).await?))
                }
                ("POST", ["users", name, "unlock"]) => (
                    StatusCode::OK,
                    json!({"unlocked": admin.unlock(name).await?}),
                ),
                ("POST", ["users", name, "sign-out"]) => {
                    admin.sign_out(name).await?;
                    (StatusCode::OK, json!({"signed_out": name}))
                }
                ("GET", ["groups"]) => {
                    let groups: Vec<Value> = admin
                        .groups()
                        .await?
                        .into_iter()
                        .map(|(g, m)| json!({"group": g, "members": m}))
                        .collect();
                    (StatusCode::OK, json!({"groups": groups}))
                }
                ("GET", ["audit"]) => {
                    let since = match param("since") {
                        Some(text) => Some(audit::ago(text).ok_or_else(|| {
                            AdminError::Invalid(vec![format!(
                                "since: {text:?} is not a duration such as 90m, 24h or 7d"
                            )])
                        })?),
                        None => None,
                    };
                    let limit = match param("limit") {
                        Some(l) => l.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(|| {
                            AdminError::Invalid(vec![format!(
                                "limit: {l:?} is not a positive number"
                            )])
                        })?,
                        None => 1000,
                    };
                    let entries = audit::list(admin.store, since, limit).await?;
                    (StatusCode::OK, json!({"entries": entries}))
                }
                ("PUT", ["groups", group, "users", name]) => (
                    StatusCode::OK,
                    user_json(&admin.add_to_group(name, group).await?),
                ),
                ("DELETE", ["groups", group, "users", name]) => (
                    StatusCode::OK,
                    user_json(&admin.remove_from_group(name, group).await?),
                ),
                _ => (
                    StatusCode::NOT_FOUND,
                    json!({"error": "not_found", "message": "no such admin operation"}),
                ),
            })
        }
        .await;
        match result {
            Ok((status, v)) => {
                if status.is_success() && method != Method::GET {
                    tracing::info!(method = %method, "pool.admin" = %path, "pool admin API call");
                }
                reply(status, v)
            }
            Err(e) => failure(e),
        }
    }
}
