//! End-to-end tests of the proxy core (issue 2): the real binary, the real `oidc-provider`
//! IdP, an echo upstream. Clients never follow redirects: each hop is asserted.

mod audit;
mod flows;
mod hardening;
mod harness;
mod host_authority;
mod lean_server;
mod lean_upstream;
mod listeners;
mod operate;
mod pages;
mod rules;
mod target_groups;
mod tracing;
