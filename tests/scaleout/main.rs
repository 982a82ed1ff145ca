//! Scale-out and revocation (issue 10), end to end: two or three real `portcullis` replicas
//! behind no load balancer (the test client plays one: cookies are per host, not per port),
//! real `redis-server` processes (standalone, TLS with an ACL user, a three-master Cluster),
//! the real `oidc-provider` IdP with back-channel logout, an echo upstream.

#[allow(dead_code)]
#[path = "../proxy/harness.rs"]
mod harness;
mod pool;
mod redis;
mod replicas;
