//! The access decision, made once per request by [`Auth::decide`] for the inline proxy and for
//! forward auth alike: the same inputs give the same outcome, the same log line and the same
//! metric labels, whichever way the request came.

use std::sync::Arc;

use http::{HeaderMap, HeaderValue, Method, header};

use super::{Auth, authorize, bearer, login};
use crate::config::{OnUnauthenticated, RouteConfig};
use crate::http::negotiate::is_non_navigational;
use crate::metrics;
use crate::session::principal::Principal;

/// Which front door a request came through (a log field; it never changes the outcome).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Proxy,
    ForwardAuth,
}

impl Via {
    pub fn as_str(self) -> &'static str {
        match self {
            Via::Proxy => "proxy",
            Via::ForwardAuth => "forward_auth",
        }
    }
}

/// What is to happen to the request.
#[derive(Debug)]
pub enum Outcome {
    /// A valid session that passes the route's rules: forward with identity.
    Allowed,
    /// An `allow` route: forward, with identity when there is a session.
    Public,
    /// No session on an `authenticate` route, from a browser: start a sign-in.
    SignIn,
    /// No session: 401 — with the URL to sign in at (XHR on an `authenticate` route, forward
    /// auth), or without (a `deny` route).
    Unauthenticated { login_url: Option<String> },
    /// Signed in, but the route's rules say no: 403 naming what is required.
    Forbidden { required: String },
    /// Signed in, but the route requires a stronger sign-in (an `amr` rule, e.g. a second
    /// factor): 403 with a link that signs in again (`prompt=login`) and comes back.
    StepUp { required: String, login_url: String },
    /// The session store could not answer: 503, fail closed.
    Unavailable(String),
    /// A bearer token that is not valid here: 401 `WWW-Authenticate: Bearer
    /// error="invalid_token"` (the reason names the failed check, never the token).
    InvalidToken(&'static str),
    /// A valid bearer token without every required scope: 403 `error="insufficient_scope"`.
    InsufficientScope { scope: String },
}

impl Outcome {
    /// The decision in the one vocabulary of the decision log, the access log and the
    /// metrics (`auth.decision`, the `decision` label): [`metrics::Decision`].
    pub fn metric(&self) -> metrics::Decision {
        match self {
            Outcome::Allowed => metrics::Decision::Allowed,
            Outcome::Public => metrics::Decision::Public,
            Outcome::SignIn | Outcome::Unauthenticated { .. } | Outcome::InvalidToken(_) => {
                metrics::Decision::Unauthenticated
            }
            Outcome::Forbidden { .. }
            | Outcome::StepUp { .. }
            | Outcome::InsufficientScope { .. } => metrics::Decision::Forbidden,
            Outcome::Unavailable(_) => metrics::Decision::Unavailable,
        }
    }
}

pub struct Decision {
    pub outcome: Outcome,
    /// Why (`auth.reason`): `session`, `no_session`, `no_session_xhr`, `authorization`,
    /// `session_store`, `bearer`, `bearer_invalid`, `bearer_scope`, `cors_preflight`.
    pub reason: &'static str,
    pub principal: Option<Arc<Principal>>,
    /// Cookies to set whatever happens (a refreshed session, or its removal).
    pub set_cookie: Vec<HeaderValue>,
}

/// A CORS preflight: `OPTIONS` carrying both `Origin` and `Access-Control-Request-Method`
/// (the Fetch standard's definition). Anything less is an ordinary request.
pub fn is_cors_preflight(method: &Method, headers: &HeaderMap) -> bool {
    method == Method::OPTIONS
        && headers.contains_key(header::ORIGIN)
        && headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

impl Auth {
    /// The decision for a CORS preflight on a `cors_preflight = "allow"` route: forwarded
    /// without reading any session (the upstream answers it), and without identity.
    pub fn preflight(&self, route: &RouteConfig, via: Via) -> Decision {
        let d = Decision {
            outcome: Outcome::Public,
            reason: "cors_preflight",
            principal: None,
            set_cookie: Vec::new(),
        };
        self.log(route, &d, via);
        d
    }

    /// The one access decision for `route`, given the request's headers. `rd`: where a
    /// sign-in should return to (the original path and query). Logs the decision once.
    pub async fn decide(
        &self,
        route: &RouteConfig,
        headers: &HeaderMap,
        rd: &str,
        now: i64,
        via: Via,
    ) -> Decision {
        let d = self.decide_quietly(route, headers, rd, now, via).await;
        self.log(route, &d, via);
        d
    }

    async fn decide_quietly(
        &self,
        route: &RouteConfig,
        headers: &HeaderMap,
        rd: &str,
        now: i64,
        via: Via,
    ) -> Decision {
        // A bearer request on an `accept_bearer` route is decided by its token alone: no
        // session is read, no cookie set, nothing redirected (docs/src/proxy/bearer-tokens.md).
        if let Some(rule) = &route.bearer
            && let Some(token) = bearer::token_of(headers)
        {
            let decision = |outcome, reason, principal| Decision {
                outcome,
                reason,
                principal,
                set_cookie: Vec::new(),
            };
            return match self.bearer(route, rule, token, now).await {
                Ok(p) => decision(Outcome::Allowed, "bearer", Some(p)),
                Err(bearer::Refused::Invalid(why)) => {
                    tracing::info!(route = %route.name, "bearer.error" = why, "bearer token refused");
                    decision(Outcome::InvalidToken(why), "bearer_invalid", None)
                }
                Err(bearer::Refused::Scope(scope)) => {
                    decision(Outcome::InsufficientScope { scope }, "bearer_scope", None)
                }
                Err(bearer::Refused::Forbidden(required, p)) => {
                    decision(Outcome::Forbidden { required }, "authorization", Some(p))
                }
                Err(bearer::Refused::Unavailable(why)) => {
                    decision(Outcome::Unavailable(why.to_string()), "session_store", None)
                }
            };
        }
        let state = match self.session(headers, now).await {
            Ok(s) => s,
            Err(e) => {
                return Decision {
                    outcome: Outcome::Unavailable(e.to_string()),
                    reason: "session_store",
                    principal: None,
                    set_cookie: Vec::new(),
                };
            }
        };
        let decision = |outcome, reason, principal| Decision {
            outcome,
            reason,
            principal,
            set_cookie: state.set_cookie.clone(),
        };
        let Some(principal) = state.principal.clone() else {
            return match route.on_unauthenticated {
                OnUnauthenticated::Allow => decision(Outcome::Public, "no_session", None),
                OnUnauthenticated::Deny => decision(
                    Outcome::Unauthenticated { login_url: None },
                    "no_session",
                    None,
                ),
                OnUnauthenticated::Authenticate
                    if via == Via::ForwardAuth || is_non_navigational(headers) =>
                {
                    decision(
                        Outcome::Unauthenticated {
                            login_url: Some(login::start_url(rd, None)),
                        },
                        if via == Via::ForwardAuth {
                            "no_session"
                        } else {
                            "no_session_xhr"
                        },
                        None,
                    )
                }
                OnUnauthenticated::Authenticate => decision(Outcome::SignIn, "no_session", None),
            };
        };
        if route.on_unauthenticated == OnUnauthenticated::Allow {
            return decision(Outcome::Public, "session", Some(principal));
        }
        let groups_claim = &self.providers[principal.provider].cfg.groups_claim;
        match authorize::check(&route.authorization, &principal.session, groups_claim) {
            Ok(()) => decision(Outcome::Allowed, "session", Some(principal)),
            // How the user signed in is what falls short (RFC 8176 `amr`, e.g. a route that
            // requires "mfa"): signing in again may satisfy it, so offer that.
            Err(required) if route.authorization.claims.iter().any(|c| c.claim == "amr") => {
                let provider = self.providers[principal.provider].name();
                // A second factor satisfies the rule: the provider is asked for one
                // (`acr_values=mfa`), so a user who has none is offered to set one up on the
                // way instead of coming back to this page without it.
                let mfa = route.authorization.claims.iter().any(|c| {
                    c.claim == "amr"
                        && c.any_of
                            .iter()
                            .any(|v| matches!(v.as_str(), Some("mfa" | "otp" | "hwk" | "swk")))
                });
                let login_url = format!(
                    "{}&prompt=login{}",
                    login::start_url(rd, Some(provider)),
                    if mfa { "&acr_values=mfa" } else { "" }
                );
                decision(
                    Outcome::StepUp {
                        required,
                        login_url,
                    },
                    "step_up",
                    Some(principal),
                )
            }
            Err(required) => decision(
                Outcome::Forbidden { required },
                "authorization",
                Some(principal),
            ),
        }
    }

    /// One line per decision, the same fields whichever front door: allowed and public
    /// requests at debug (they are the bulk), everything refused at info.
    fn log(&self, route: &RouteConfig, d: &Decision, via: Via) {
        let sub = d.principal.as_ref().map(|p| p.session.sub.as_str());
        match d.outcome {
            Outcome::Allowed | Outcome::Public => tracing::debug!(
                route = %route.name,
                via = via.as_str(),
                "auth.decision" = d.outcome.metric().as_str(),
                "auth.reason" = d.reason,
                sub,
                "Request allowed"
            ),
            _ => tracing::info!(
                route = %route.name,
                via = via.as_str(),
                "auth.decision" = d.outcome.metric().as_str(),
                "auth.reason" = d.reason,
                sub,
                "Request denied"
            ),
        }
    }
}
