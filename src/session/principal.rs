//! Who is signed in: a [`Principal`] is an opened session plus everything derived from it once
//! (the identity header values, the provider it came from). The auth gate asks the session
//! store for one and never sees how it was stored.

use std::sync::atomic::{AtomicU64, Ordering};

use super::Session;
use crate::identity_headers::Identity;

pub struct Principal {
    pub session: Session,
    pub identity: Identity,
    /// Index of the provider the session came from.
    pub provider: usize,
    /// The revocation list generation this principal was last checked against.
    checked: AtomicU64,
}

impl Principal {
    /// A principal not made from a stored session (a verified bearer token).
    pub fn new(session: Session, identity: Identity, provider: usize) -> Principal {
        Principal {
            session,
            identity,
            provider,
            checked: AtomicU64::new(0),
        }
    }

    pub(crate) fn checked_at(&self) -> u64 {
        self.checked.load(Ordering::Relaxed)
    }

    pub(crate) fn mark_checked(&self, generation: u64) {
        self.checked.store(generation, Ordering::Relaxed);
    }
}

/// What a principal needs to know about a provider, fixed at build.
#[derive(Debug, Clone)]
pub struct ProviderFacts {
    pub name: String,
    pub groups_claim: String,
    pub issuer: String,
    pub client_id: String,
}

/// Makes principals from sessions.
pub struct Principals {
    providers: Vec<ProviderFacts>,
}

impl Principals {
    pub fn new(providers: Vec<ProviderFacts>) -> Principals {
        Principals { providers }
    }

    /// `None` when the session's provider is no longer configured ("no session").
    pub fn make(&self, session: Session) -> Option<Principal> {
        let provider = self
            .providers
            .iter()
            .position(|p| p.name == session.provider)?;
        let p = &self.providers[provider];
        let identity = Identity::new(&session, &p.groups_claim, &p.issuer, &p.client_id);
        Some(Principal {
            session,
            identity,
            provider,
            checked: AtomicU64::new(0),
        })
    }
}
