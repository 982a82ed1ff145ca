//! Security regression classes (issue 9), each driving the real binary from outside and each
//! citing the advisory or RFC it comes from. What other test files already pin is not repeated
//! here; SECURITY.md maps every guarantee to the tests that hold it, here and elsewhere.
//!
//! Run: `cargo test --test security`. The IdP-backed tests need the real `oidc-provider`
//! (tests/idp, `npm ci`); the pool tests run on SQLite, and again on PostgreSQL when
//! `PORTCULLIS_TEST_POSTGRES_URL` is set.

// Both harnesses include tests/common/ports.rs; each keeps its own copy here, as in the test
// targets they come from.
#![allow(clippy::duplicate_mod)]

#[allow(dead_code)]
#[path = "../proxy/harness.rs"]
mod harness;
#[path = "../pool_support/mod.rs"]
mod pool_support;

mod callback;
mod http2;
mod pool;
mod redirects;
mod slow_clients;
mod smuggling;
mod spoofing;
mod support;
mod surface;
mod variants;
