#!/usr/bin/env bash
# Side-by-side benchmark of Portcullis on loopback (issue 4). One invocation starts, on free
# 127.0.0.1 ports: nginx as the 1 KB upstream, nginx as the plain reverse-proxy reference, the
# oidc-provider test IdP, Portcullis, and Apache + mod_auth_openidc against the same IdP (its own
# client registration); signs in for real; runs wrk -t2 -c64 per row; prints one table with the
# issue's ratios computed from this run; stops everything it started.
#
#   scripts/bench.sh                  full run, 20 s per row (about 4 minutes in all)
#   scripts/bench.sh --duration 40    N seconds per row
#   scripts/bench.sh --rounds 10      rows 1-7 interleaved in N passes of DURATION/N s (default 10)
#   scripts/bench.sh --smoke          1 s per row: only checks the harness works (CI)
#   scripts/bench.sh --soak 300       constant load on the authenticated route for N seconds:
#                                     RSS at start and end, growth, errors
#   scripts/bench.sh --perf           after the table, `perf record` Portcullis under row 4's load
#                                     and print where the time goes
#   scripts/bench.sh --out DIR        keep configs, logs, wrk output and perf data in DIR
#   scripts/bench.sh --hold N         start everything, sign in, print the URLs and cookies, keep
#                                     it all running N seconds (for manual wrk/perf), then stop
#   scripts/bench.sh --rows "ngx auth ngxg group"
#                                     only these rows (keys: up ngx ngxg allow auth group authr
#                                     redirect apache login); everything is still started
#
# Environment: PORTCULLIS_BIN (default: `cargo build --release`, then target/release/portcullis),
# WRK_THREADS / WRK_CONNECTIONS (default 2 / 64), LOGIN_CONCURRENCY (default 4).
# Exit status: non-zero if anything failed to start or any row had an error. Timings are never
# asserted: a missed target is reported, not fatal.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
HERE="$ROOT/scripts/bench"

# 20 s per row as 10 interleaved passes of 2 s: a burst of outside load (this machine is
# shared) lands on a few passes of several rows rather than on the whole of one row, and there
# are enough passes for bursts to even out.
DURATION=20
ROUNDS=10
MODE=table
SOAK=0
PERF=0
OUT=""
HOLD=0
ONLY=""
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) DURATION=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --smoke) MODE=smoke; DURATION=1; ROUNDS=1; shift ;;
    --soak) MODE=soak; SOAK=$2; shift 2 ;;
    --perf) PERF=1; shift ;;
    --out) OUT=$2; shift 2 ;;
    --hold) HOLD=$2; shift 2 ;;
    --rows) ONLY=" $2 "; shift 2 ;;
    -h|--help) sed -n '2,26p' "$0"; exit 0 ;;
    *) echo "bench.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
THREADS=${WRK_THREADS:-2}
CONNS=${WRK_CONNECTIONS:-64}
LOGIN_CONC=${LOGIN_CONCURRENCY:-4}
WARMUP=1
[ "$MODE" = smoke ] && WARMUP=0
LOGIN_SECS=$DURATION
PASS=$(( DURATION / ROUNDS > 0 ? DURATION / ROUNDS : 1 ))
[ "$MODE" = smoke ] && LOGIN_SECS=2

say() { printf '== %s\n' "$*" >&2; }
die() { printf 'bench.sh: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------------------- install
need=()
command -v nginx >/dev/null || need+=(nginx)
command -v wrk >/dev/null || need+=(wrk)
command -v apache2 >/dev/null || need+=(apache2)
[ -f /usr/lib/apache2/modules/mod_auth_openidc.so ] || need+=(libapache2-mod-auth-openidc)
command -v node >/dev/null || need+=(nodejs npm)
command -v curl >/dev/null || need+=(curl)
command -v python3 >/dev/null || need+=(python3)
if [ "$PERF" = 1 ] && ! command -v perf >/dev/null; then need+=(linux-perf); fi
if [ ${#need[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || die "missing packages (run as root, or install them): ${need[*]}"
  say "installing Debian packages: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null
fi
if [ ! -d tests/idp/node_modules/oidc-provider ]; then
  say "npm ci in tests/idp"
  (cd tests/idp && npm ci --no-audit --no-fund --loglevel=error)
fi
BIN=${PORTCULLIS_BIN:-}
if [ -z "$BIN" ]; then
  BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/portcullis"
  say "cargo build --release"
  cargo build --release --quiet
fi
[ -x "$BIN" ] || die "no portcullis binary at $BIN"

# ---------------------------------------------------------------------------- processes
TMP=$(mktemp -d /tmp/portcullis-bench.XXXXXX)
chmod 755 "$TMP"
PIDS=()
cleanup() {
  local p alive _
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  for _ in $(seq 1 30); do
    alive=0
    for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill -0 "$p" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.1
  done
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill -9 "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -n "$OUT" ]; then mkdir -p "$OUT" && cp -r "$TMP"/. "$OUT"/ 2>/dev/null || true; fi
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { # URL [what]
  for _ in $(seq 1 200); do
    curl -s -o /dev/null --max-time 1 "$1" && return 0
    sleep 0.1
  done
  die "${2:-$1} did not come up; logs in $TMP"
}

UP_PORT=$(free_port); NGX_PORT=$(free_port); IDP_PORT=$(free_port)
PC_PORT=$(free_port); PC_ADMIN=$(free_port); AP_PORT=$(free_port)
PCR_PORT=$(free_port); PCR_ADMIN=$(free_port); REDIS_PORT=$(free_port)
# A second upstream and a second nginx proxy balancing over both (issue 18): Portcullis's
# two-target group row must keep the one-upstream row's ratio to nginx.
UP2_PORT=$(free_port); NGXG_PORT=$(free_port)
PCM_PORT=$(free_port); PCM_ADMIN=$(free_port)
IDP="http://127.0.0.1:$IDP_PORT"
PC="http://127.0.0.1:$PC_PORT"
# A second Portcullis with the server-side session store (issue 10): its row must cost at most
# 1.25x the cookie row's CPU per request (a known session needs no Redis round trip).
PCR="http://127.0.0.1:$PCR_PORT"
AP="http://127.0.0.1:$AP_PORT"
CLIENT_SECRET=bench-client-secret-0123456789
SESSION_SECRET=bench-session-secret-bench-session-secret-0123

# nginx, twice: the upstream (fixed 1 KB body, echoes the identity it received in a response
# header so the harness can check injection) and the plain reverse proxy (the reference).
head -c 1024 /dev/zero | tr '\0' 'x' >"$TMP/1k.txt"
nginx_conf() { # NAME PORT SERVER_BODY [HTTP_EXTRA]
  mkdir -p "$TMP/$1"
  cat >"$TMP/$1/nginx.conf" <<EOF
daemon off;
master_process on;
worker_processes 2;
pid $TMP/$1/nginx.pid;
error_log $TMP/$1/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $TMP/$1/body;
  proxy_temp_path $TMP/$1/proxy;
  fastcgi_temp_path $TMP/$1/fastcgi;
  uwsgi_temp_path $TMP/$1/uwsgi;
  scgi_temp_path $TMP/$1/scgi;
  keepalive_requests 1000000;
  ${4:-}
  server {
    listen 127.0.0.1:$2;
    $3
  }
}
EOF
}
nginx_conf upstream "$UP_PORT" "
    default_type text/plain;
    underscores_in_headers on;
    root $TMP;
    location / {
      try_files /1k.txt =404;
    }
    location /identity-check {
      add_header X-Seen-Identity \$http_x_amzn_oidc_identity;
      add_header X-Seen-Data \$seen_data;
      add_header X-Seen-Apache-Sub \$http_oidc_claim_sub;
      try_files /1k.txt =404;
    }" "map \$http_x_amzn_oidc_data \$seen_data { '' ''; ~^[^.]+\\.[^.]+\\.[^.]+\$ 'jwt'; default 'malformed'; }"
# The echo is on its own path, not on the one the rows load: the regular expression that checks
# the JWT's shape would otherwise run in the upstream on every Portcullis request (and on none of
# nginx's), charging the app's own extra work to the proxy's ratio. The echo headers are short for
# the same reason.
nginx_conf proxy "$NGX_PORT" "
    location / {
      proxy_pass http://bench_upstream;
      proxy_http_version 1.1;
      proxy_set_header Connection \"\";
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
    }" "upstream bench_upstream { server 127.0.0.1:$UP_PORT; keepalive 128; }"

nginx_conf upstream2 "$UP2_PORT" "
    default_type text/plain;
    root $TMP;
    location / {
      try_files /1k.txt =404;
    }"
nginx_conf proxyg "$NGXG_PORT" "
    location / {
      proxy_pass http://bench_group;
      proxy_http_version 1.1;
      proxy_set_header Connection \"\";
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
    }" "upstream bench_group { server 127.0.0.1:$UP_PORT; server 127.0.0.1:$UP2_PORT; keepalive 128; }"

say "starting nginx upstream :$UP_PORT and nginx proxy :$NGX_PORT"
nginx -c "$TMP/upstream/nginx.conf" -e "$TMP/upstream/error.log" 2>>"$TMP/upstream/stderr" &
UP_PID=$!; PIDS+=("$UP_PID")
nginx -c "$TMP/proxy/nginx.conf" -e "$TMP/proxy/error.log" 2>>"$TMP/proxy/stderr" &
NGX_PID=$!; PIDS+=("$NGX_PID")
say "starting nginx upstream :$UP2_PORT and nginx proxy over both :$NGXG_PORT"
nginx -c "$TMP/upstream2/nginx.conf" -e "$TMP/upstream2/error.log" 2>>"$TMP/upstream2/stderr" &
UP2_PID=$!; PIDS+=("$UP2_PID")
nginx -c "$TMP/proxyg/nginx.conf" -e "$TMP/proxyg/error.log" 2>>"$TMP/proxyg/stderr" &
NGXG_PID=$!; PIDS+=("$NGXG_PID")

say "starting the test IdP :$IDP_PORT"
CLIENTS=$(cat <<EOF
[{"client_id":"portcullis","client_secret":"$CLIENT_SECRET","redirect_uris":["$PC/oauth2/idpresponse","$PCR/oauth2/idpresponse"],
  "grant_types":["authorization_code","refresh_token"],"response_types":["code"],
  "token_endpoint_auth_method":"client_secret_basic"},
 {"client_id":"apache","client_secret":"$CLIENT_SECRET","redirect_uris":["$AP/protected/redirect_uri"],
  "grant_types":["authorization_code","refresh_token"],"response_types":["code"],
  "token_endpoint_auth_method":"client_secret_basic"}]
EOF
)
IDP_PORT=$IDP_PORT IDP_ISSUER=$IDP IDP_CLIENTS=$CLIENTS \
  node tests/idp/server.mjs >"$TMP/idp.out" 2>"$TMP/idp.err" &
IDP_PID=$!; PIDS+=("$IDP_PID")
for _ in $(seq 1 300); do grep -q IDP_READY "$TMP/idp.out" 2>/dev/null && break; sleep 0.1; done
grep -q IDP_READY "$TMP/idp.out" || { cat "$TMP/idp.err" >&2; die "the test IdP did not start"; }

say "starting Portcullis :$PC_PORT ($BIN)"
cat >"$TMP/portcullis.toml" <<EOF
public_url = "$PC"

[server]
listen = ["127.0.0.1:$PC_PORT"]
admin_listen = "127.0.0.1:$PC_ADMIN"

[session]
secrets = ["$SESSION_SECRET"]

[log]
level = "warn"

[providers.idp]
issuer = "$IDP"
client_id = "portcullis"
client_secret = "$CLIENT_SECRET"

[target_groups.pair]
targets = ["http://127.0.0.1:$UP_PORT", "http://127.0.0.1:$UP2_PORT"]

[[routes]]
path = "/public/"
upstream = "http://127.0.0.1:$UP_PORT"
on_unauthenticated = "allow"

[[routes]]
path = "/group/"
target_group = "pair"

[[routes]]
path = "/"
upstream = "http://127.0.0.1:$UP_PORT"
EOF
"$BIN" serve --config "$TMP/portcullis.toml" >"$TMP/portcullis.out" 2>"$TMP/portcullis.err" &
PC_PID=$!; PIDS+=("$PC_PID")

say "starting redis-server :$REDIS_PORT and Portcullis (redis store) :$PCR_PORT"
command -v redis-server >/dev/null || die "redis-server is not installed (scripts/test.sh installs it)"
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
  >"$TMP/redis.out" 2>&1 &
REDIS_PID=$!; PIDS+=("$REDIS_PID")
sed -e "s#127.0.0.1:$PC_PORT#127.0.0.1:$PCR_PORT#g" -e "s#127.0.0.1:$PC_ADMIN#127.0.0.1:$PCR_ADMIN#" \
  -e "s#^secrets = .*#&\nstore = \"redis\"\nredis_url = \"redis://127.0.0.1:$REDIS_PORT/0\"#" \
  "$TMP/portcullis.toml" >"$TMP/portcullis-redis.toml"
mkdir -p "$TMP/redis-data"
sed -i "1i data_dir = \"$TMP/redis-data\"" "$TMP/portcullis-redis.toml"
"$BIN" serve --config "$TMP/portcullis-redis.toml" >"$TMP/portcullis-redis.out" 2>"$TMP/portcullis-redis.err" &
PCR_PID=$!; PIDS+=("$PCR_PID")

# A third Portcullis with 1,000 listener rules (issue 18): hosts x paths, one in ten with a
# method, header, query or source-address condition, some with wildcard hosts or path
# patterns; the row's request matches only the last rule. Its CPU per request must stay within
# 10 % of row 3's (the same allow route, found as the first rule).
PCM="http://127.0.0.1:$PCM_PORT"
say "starting Portcullis with 1,000 listener rules :$PCM_PORT"
{
  printf 'public_url = "%s"\n\n[server]\nlisten = ["127.0.0.1:%s"]\nadmin_listen = "127.0.0.1:%s"\n\n' \
    "$PCM" "$PCM_PORT" "$PCM_ADMIN"
  printf '[session]\nsecrets = ["%s"]\n\n[log]\nlevel = "warn"\n' "$SESSION_SECRET"
  for i in $(seq 0 998); do
    host="\"app$((i % 50)).bench.test\""
    path="path = \"/svc$i/\""
    extra=""
    case $((i % 10)) in
      0) extra='methods = ["POST"]' ;;
      1) extra='headers = { "X-Env" = ["beta", "canary-*"] }' ;;
      2) extra='query = { version = "2" }' ;;
      3) extra='source_ips = ["10.0.0.0/8"]' ;;
      4) host="[\"*.tenant$i.bench.test\", \"t$i.bench.test\"]" ;;
      5) path="path_pattern = \"/svc$i/*/edit\"" ;;
    esac
    printf '\n[[routes]]\nhost = %s\n%s\n%s\nupstream = "http://127.0.0.1:%s"\non_unauthenticated = "allow"\n' \
      "$host" "$path" "$extra" "$UP_PORT"
  done
  printf '\n[[routes]]\nhost = "127.0.0.1"\npath = "/"\nupstream = "http://127.0.0.1:%s"\non_unauthenticated = "allow"\n' "$UP_PORT"
} >"$TMP/portcullis-rules.toml"
"$BIN" serve --config "$TMP/portcullis-rules.toml" >"$TMP/portcullis-rules.out" 2>"$TMP/portcullis-rules.err" &
PCM_PID=$!; PIDS+=("$PCM_PID")

say "starting Apache + mod_auth_openidc :$AP_PORT"
M=/usr/lib/apache2/modules
APACHE_USER=""
[ "$(id -u)" = 0 ] && APACHE_USER="User www-data
Group www-data"
mkdir -p "$TMP/apache"
cat >"$TMP/apache/apache2.conf" <<EOF
ServerRoot $TMP/apache
ServerName 127.0.0.1
Listen 127.0.0.1:$AP_PORT
PidFile $TMP/apache/apache2.pid
DefaultRuntimeDir $TMP/apache
ErrorLog $TMP/apache/error.log
LogLevel warn
LoadModule mpm_event_module $M/mod_mpm_event.so
LoadModule authn_core_module $M/mod_authn_core.so
LoadModule authz_core_module $M/mod_authz_core.so
LoadModule authz_user_module $M/mod_authz_user.so
LoadModule proxy_module $M/mod_proxy.so
LoadModule proxy_http_module $M/mod_proxy_http.so
LoadModule auth_openidc_module $M/mod_auth_openidc.so
$APACHE_USER
# One event-MPM process with all 150 threads started up front: no child is spawned or reaped
# during a row, and no child over its share of connections closes keep-alive connections (with
# Debian's 6 x 25 layout wrk saw a stray read error in most Apache rows). Unlimited keep-alive
# requests (as nginx and Portcullis have) and a session cache big enough for the login row:
# the peer at its best.
ServerLimit 1
StartServers 1
MinSpareThreads 25
MaxSpareThreads 150
ThreadLimit 150
ThreadsPerChild 150
MaxRequestWorkers 150
MaxConnectionsPerChild 0
KeepAlive On
MaxKeepAliveRequests 0

OIDCProviderMetadataURL $IDP/.well-known/openid-configuration
OIDCClientID apache
OIDCClientSecret $CLIENT_SECRET
OIDCRedirectURI $AP/protected/redirect_uri
OIDCCryptoPassphrase bench-crypto-passphrase-0123456789
OIDCScope "openid email profile"
OIDCSessionType server-cache
OIDCCacheShmMax 5000
OIDCPassClaimsAs headers
<Location /protected/>
  AuthType openid-connect
  Require valid-user
  ProxyPass http://127.0.0.1:$UP_PORT/
</Location>
EOF
apache2 -f "$TMP/apache/apache2.conf" -DFOREGROUND >"$TMP/apache/stdout" 2>"$TMP/apache/stderr" &
AP_PID=$!; PIDS+=("$AP_PID")

wait_http "http://127.0.0.1:$UP_PORT/" "nginx upstream"
wait_http "http://127.0.0.1:$NGX_PORT/" "nginx proxy"
wait_http "http://127.0.0.1:$UP2_PORT/" "nginx upstream 2"
wait_http "http://127.0.0.1:$NGXG_PORT/" "nginx proxy over two upstreams"
wait_http "http://127.0.0.1:$PC_ADMIN/healthz" "Portcullis"
wait_http "http://127.0.0.1:$PCR_ADMIN/healthz" "Portcullis (redis store)"
wait_http "http://127.0.0.1:$PCM_ADMIN/healthz" "Portcullis (1,000 rules)"
wait_http "$AP/" "Apache"

# ---------------------------------------------------------------------------- measurement
HZ=$(getconf CLK_TCK)
tree_pids() { echo "$1"; pgrep -P "$1" || true; }
# CPU ticks of a process and its children (a root's reaped children count via cutime+cstime)
cpu_ticks() {
  local root=$1 total=0 p s
  for p in $(tree_pids "$root"); do
    s=$(cat "/proc/$p/stat" 2>/dev/null) || continue
    s=${s##*) }
    # shellcheck disable=SC2086
    set -- $s
    total=$((total + ${12} + ${13}))
    [ "$p" = "$root" ] && total=$((total + ${14} + ${15}))
  done
  echo "$total"
}
rss_kb() {
  local total=0 p v
  for p in $(tree_pids "$1"); do
    v=$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)
    total=$((total + ${v:-0}))
  done
  echo "$total"
}

ROWS=()      # printable rows
declare -A R # R[key.field] for the ratio table
FAILED=0

# Rows 1-6 run in ROUNDS interleaved passes (1 2 3 4 5 6 1 2 3 …) of DURATION/ROUNDS seconds
# each, so that load from outside the benchmark (this machine is shared) falls on every row
# alike instead of on whichever row happened to run at the time. Requests, CPU ticks and errors
# add up over the passes; p50 and p99 come from the latency histograms of all the passes merged
# (wrk.lua prints each pass's whole histogram).
declare -A LABEL SPID EXPECT URLOF HDRS
ROW_KEYS=()
# row KEY LABEL SERVER_PID EXPECT URL [HEADER...]
row() {
  local key=$1
  if [ -n "$ONLY" ] && [[ "$ONLY" != *" $key "* ]]; then return 0; fi
  ROW_KEYS+=("$key")
  LABEL[$key]=$2 SPID[$key]=$3 EXPECT[$key]=$4 URLOF[$key]=$5
  shift 5
  local h joined=""
  for h in "$@"; do joined+="$h"$'\n'; done
  HDRS[$key]=$joined
  R[$key.requests]=0 R[$key.us]=0 R[$key.ticks]=0 R[$key.err]=0 R[$key.p50w]=0 R[$key.p99]=0
}

# measure KEY SECONDS: one wrk pass, added to the row's totals
measure() {
  local key=$1 secs=$2 pid=${SPID[$1]} hdr=() h
  while IFS= read -r h; do [ -n "$h" ] && hdr+=(-H "$h"); done <<<"${HDRS[$key]}"
  local t0 t1 out line
  t0=$(cpu_ticks "$pid")
  out=$(WRK_EXPECT=${EXPECT[$key]} wrk -t"$THREADS" -c"$CONNS" -d"${secs}s" --timeout 5s \
    -s "$HERE/wrk.lua" "${hdr[@]}" "${URLOF[$key]}" 2>&1) || true
  t1=$(cpu_ticks "$pid")
  grep -v '^HIST' <<<"$out" >>"$TMP/wrk-$key.txt" || true
  { grep '^HIST' <<<"$out" || true; } | cut -c6- | tr ' ' '\n' | grep ':' >>"$TMP/hist-$key.txt" || true
  line=$(grep '^RESULT' <<<"$out" || true)
  if [ -z "$line" ]; then
    echo "$out" >&2
    R[$key.err]=$((R[$key.err] + 1))
    return
  fi
  local requests duration p50 p99 bad sock
  requests=$(sed -E 's/.*requests=([0-9]+).*/\1/' <<<"$line")
  duration=$(sed -E 's/.*duration_us=([0-9]+).*/\1/' <<<"$line")
  p50=$(sed -E 's/.*p50_us=([0-9]+).*/\1/' <<<"$line")
  p99=$(sed -E 's/.*p99_us=([0-9]+).*/\1/' <<<"$line")
  bad=$(sed -E 's/.*bad_status=([0-9]+).*/\1/' <<<"$line")
  sock=$(sed -E 's/.*socket_errors=([0-9]+).*/\1/' <<<"$line")
  [ "$requests" -gt 0 ] || bad=$((bad + 1))
  R[$key.requests]=$((R[$key.requests] + requests))
  R[$key.us]=$((R[$key.us] + duration))
  R[$key.ticks]=$((R[$key.ticks] + t1 - t0))
  R[$key.err]=$((R[$key.err] + bad + sock))
  R[$key.p50w]=$((R[$key.p50w] + p50 * requests))
  [ "$p99" -gt "${R[$key.p99]}" ] && R[$key.p99]=$p99
  return 0
}

# finish KEY: the row's figures and its line of the table
finish() {
  local key=$1 requests=${R[$1.requests]} errors=${R[$1.err]} rss
  rss=$(rss_kb "${SPID[$key]}")
  [ "$errors" -eq 0 ] || FAILED=1
  R[$key.rps]=$(awk -v r="$requests" -v d="${R[$key.us]}" 'BEGIN{printf "%.0f", d ? r/(d/1e6) : 0}')
  R[$key.p50]=$(awk -v w="${R[$key.p50w]}" -v r="$requests" 'BEGIN{printf "%.0f", r ? w/r : 0}')
  # Percentiles over every request of every pass, from the merged histograms (the per-pass
  # figures above are the fallback if a wrk build printed none).
  if [ -s "$TMP/hist-$key.txt" ]; then
    local merged
    merged=$(sort -t: -k1,1n "$TMP/hist-$key.txt" | awk -F: '
      { v[NR] = $1; c[NR] = $2; n += $2 }
      END {
        s = 0; p50 = -1
        for (i = 1; i <= NR; i++) {
          s += c[i]
          if (p50 < 0 && s >= n * 0.50) p50 = v[i]
          if (s >= n * 0.99) { print p50, v[i]; exit }
        }
      }')
    if [ -n "$merged" ]; then
      R[$key.p50]=${merged% *}
      R[$key.p99]=${merged#* }
    fi
  fi
  R[$key.cpu]=$(awk -v t="${R[$key.ticks]}" -v hz="$HZ" -v r="$requests" 'BEGIN{printf "%.1f", r ? t/hz*1e6/r : 0}')
  ROWS+=("$(printf '%-44s %9s %8.2f %8.2f %10s %7s %8.1f' "${LABEL[$key]}" "${R[$key.rps]}" \
    "$(awk -v v="${R[$key.p50]}" 'BEGIN{print v/1000}')" "$(awk -v v="${R[$key.p99]}" 'BEGIN{print v/1000}')" \
    "${R[$key.cpu]}" "$errors" "$(awk -v k="$rss" 'BEGIN{print k/1024}')")")
  say "${LABEL[$key]}: ${R[$key.rps]} req/s, ${R[$key.cpu]} µs CPU/req, $errors errors"
}

# Row 7 runs like rows 1-6: ROUNDS interleaved passes (Portcullis, Apache, Portcullis, …), so
# that outside load falls on both alike; logins, seconds, CPU ticks and failures add up.
# login_pass KEY SERVER_PID URL SECONDS
login_pass() {
  local key=$1 pid=$2 url=$3 secs=$4 t0 t1 out logins failures took
  t0=$(cpu_ticks "$pid")
  out=$(node "$HERE/login.mjs" loop "$url" alice "$secs" "$LOGIN_CONC" 2>&1) || true
  t1=$(cpu_ticks "$pid")
  echo "$out" >>"$TMP/login-$key.txt"
  logins=$(sed -nE 's/.*"logins":([0-9]+).*/\1/p' <<<"$out")
  failures=$(sed -nE 's/.*"failures":([0-9]+).*/\1/p' <<<"$out")
  took=$(sed -nE 's/.*"seconds":([0-9.]+).*/\1/p' <<<"$out")
  if [ -z "$logins" ]; then
    echo "$out" >&2
    R[$key.broken]=1
    return
  fi
  [ "$failures" -eq 0 ] || echo "$out" >&2
  R[$key.logins]=$((${R[$key.logins]:-0} + logins))
  R[$key.err]=$((${R[$key.err]:-0} + failures))
  R[$key.ticks]=$((${R[$key.ticks]:-0} + t1 - t0))
  R[$key.secs]=$(awk -v a="${R[$key.secs]:-0}" -v b="$took" 'BEGIN{print a + b}')
}

# login_finish KEY LABEL SERVER_PID
login_finish() {
  local key=$1 label=$2 pid=$3 logins=${R[$1.logins]:-0} failures=${R[$1.err]:-0}
  if [ -n "${R[$key.broken]:-}" ]; then
    FAILED=1
    ROWS+=("$(printf '%-44s %s' "$label" 'login loop failed')"); return
  fi
  [ "$logins" -gt 0 ] || failures=$((failures + 1))
  [ "$failures" -eq 0 ] || FAILED=1
  R[$key.lps]=$(awk -v n="$logins" -v s="${R[$key.secs]}" 'BEGIN{printf "%.1f", s ? n/s : 0}')
  R[$key.ms]=$(awk -v t="${R[$key.ticks]}" -v hz="$HZ" -v n="$logins" 'BEGIN{printf "%.2f", n ? t/hz*1e3/n : 0}')
  R[$key.err]=$failures
  ROWS+=("$(printf '%-44s %9s %8s %8s %10s %7s %8.1f' "$label" "${R[$key.lps]}/s" '-' '-' \
    "${R[$key.ms]} ms" "$failures" "$(awk -v k="$(rss_kb "$pid")" 'BEGIN{print k/1024}')")")
  say "$label: ${R[$key.lps]} logins/s, ${R[$key.ms]} ms CPU/login, $failures failures"
}

# ---------------------------------------------------------------------------- sessions
say "signing in to Portcullis and to Apache through the IdP (real logins)"
PC_COOKIE=$(node "$HERE/login.mjs" once "$PC/app/" alice '^AWSELBAuthSessionCookie-[0-9]$') \
  || die "could not sign in to Portcullis; logs: $TMP/portcullis.err"
PCR_COOKIE=$(node "$HERE/login.mjs" once "$PCR/app/" alice '^AWSELBAuthSessionCookie-[0-9]$') \
  || die "could not sign in to Portcullis (redis store); logs: $TMP/portcullis-redis.err"
[ ${#PCR_COOKIE} -lt 120 ] || die "the redis store's cookie is not a short ticket: $PCR_COOKIE"
AP_COOKIE=$(node "$HERE/login.mjs" once "$AP/protected/" alice '^mod_auth_openidc_session') \
  || die "could not sign in to Apache; logs: $TMP/apache/error.log"
# The upstream echoes what identity it received: check the session really authenticates.
seen=$(curl -s -D - -o /dev/null -H "Cookie: $PC_COOKIE" "$PC/identity-check")
grep -qi '^x-seen-identity: alice' <<<"$seen" || die "Portcullis did not forward alice's identity: $seen"
grep -qi '^x-seen-data: jwt' <<<"$seen" || die "Portcullis did not send x-amzn-oidc-data: $seen"
seen=$(curl -s -D - -o /dev/null -H "Cookie: $PCR_COOKIE" "$PCR/identity-check")
grep -qi '^x-seen-identity: alice' <<<"$seen" || die "Portcullis (redis store) did not forward alice's identity: $seen"
seen=$(curl -s -D - -o /dev/null -H "Cookie: $AP_COOKIE" "$AP/protected/identity-check")
grep -qi '^x-seen-apache-sub: alice' <<<"$seen" || die "Apache did not forward alice's identity: $seen"

HTML_ACCEPT='Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8'

if [ "$HOLD" -gt 0 ]; then
  cat <<EOF
UPSTREAM=http://127.0.0.1:$UP_PORT/ UPSTREAM_PID=$UP_PID
NGINX_PROXY=http://127.0.0.1:$NGX_PORT/ NGINX_PID=$NGX_PID
PORTCULLIS=$PC/app/ PORTCULLIS_PID=$PC_PID PORTCULLIS_ADMIN=http://127.0.0.1:$PC_ADMIN
APACHE=$AP/protected/app/ APACHE_PID=$AP_PID
PC_COOKIE='$PC_COOKIE'
AP_COOKIE='$AP_COOKIE'
EOF
  say "holding for ${HOLD}s (Ctrl-C stops everything)"
  sleep "$HOLD" &
  wait $!
  exit 0
fi

# ---------------------------------------------------------------------------- soak
if [ "$MODE" = soak ]; then
  url="$PC/app/"
  say "soak: ${SOAK}s of wrk -t$THREADS -c$CONNS on the authenticated route"
  rss_idle=$(rss_kb "$PC_PID")
  WRK_EXPECT=200 wrk -t"$THREADS" -c"$CONNS" -d"${SOAK}s" --timeout 5s -s "$HERE/wrk.lua" \
    -H "Cookie: $PC_COOKIE" -H "$HTML_ACCEPT" "$url" >"$TMP/wrk-soak.txt" 2>&1 &
  WRK_PID=$!; PIDS+=("$WRK_PID")
  sleep 10
  rss_start=$(rss_kb "$PC_PID"); rss_max=$rss_start
  : >"$TMP/soak-rss.txt"
  while kill -0 "$WRK_PID" 2>/dev/null; do
    r=$(rss_kb "$PC_PID"); echo "$(date +%s) $r" >>"$TMP/soak-rss.txt"
    [ "$r" -gt "$rss_max" ] && rss_max=$r
    [ "$r" -gt 0 ] && rss_end=$r
    sleep 5
  done
  wait "$WRK_PID" || true
  line=$(grep '^RESULT' "$TMP/wrk-soak.txt" || true)
  [ -n "$line" ] || { cat "$TMP/wrk-soak.txt" >&2; die "soak wrk failed"; }
  requests=$(sed -E 's/.*requests=([0-9]+).*/\1/' <<<"$line")
  duration=$(sed -E 's/.*duration_us=([0-9]+).*/\1/' <<<"$line")
  bad=$(sed -E 's/.*bad_status=([0-9]+).*/\1/' <<<"$line")
  sock=$(sed -E 's/.*socket_errors=([0-9]+).*/\1/' <<<"$line")
  errors=$((bad + sock))
  printf '\nsoak: %s s on the authenticated route (wrk -t%s -c%s), Portcullis %s\n' "$SOAK" "$THREADS" "$CONNS" "$BIN"
  awk -v r="$requests" -v d="$duration" -v idle="$rss_idle" -v s="$rss_start" -v e="${rss_end:-0}" -v m="$rss_max" -v err="$errors" 'BEGIN{
    printf "requests %d (%.0f req/s), errors %d\n", r, r/(d/1e6), err;
    printf "RSS idle %.1f MiB, after 10 s of load %.1f MiB, end %.1f MiB, max %.1f MiB\n", idle/1024, s/1024, e/1024, m/1024;
    g = (e - s) / s * 100;
    printf "growth (end vs 10 s) %+.1f %%   target: <= 64 MiB (goal 32), growth < 5 %%: %s\n", g,
      (e <= 64*1024 && g < 5 && err == 0) ? "PASS" : "MISS" }'
  [ "$errors" -eq 0 ] || exit 1
  exit 0
fi

# ---------------------------------------------------------------------------- rows
LOAD0=$(cut -d' ' -f1 /proc/loadavg)
say "rows: wrk -t$THREADS -c$CONNS, ${DURATION}s each as $ROUNDS interleaved passes of ${PASS}s (+${WARMUP}s warm-up)"
row up "1 upstream direct (nginx, 1 KB)" "$UP_PID" 200 "http://127.0.0.1:$UP_PORT/" "$HTML_ACCEPT"
row ngx "2 nginx plain reverse proxy (reference)" "$NGX_PID" 200 "http://127.0.0.1:$NGX_PORT/" "$HTML_ACCEPT"
row ngxg "2g nginx proxy, upstream block of 2 (rr)" "$NGXG_PID" 200 "http://127.0.0.1:$NGXG_PORT/" "$HTML_ACCEPT"
row allow "3 Portcullis, allow route" "$PC_PID" 200 "$PC/public/" "$HTML_ACCEPT"
row rules "3m Portcullis, allow, last of 1,000 rules" "$PCM_PID" 200 "$PCM/public/" "$HTML_ACCEPT"
row auth "4 Portcullis, authenticated + signed headers" "$PC_PID" 200 "$PC/app/" "Cookie: $PC_COOKIE" "$HTML_ACCEPT"
row group "4g Portcullis, authenticated, 2-target group" "$PC_PID" 200 "$PC/group/" "Cookie: $PC_COOKIE" "$HTML_ACCEPT"
row authr "4r Portcullis, authenticated, redis store" "$PCR_PID" 200 "$PCR/app/" "Cookie: $PCR_COOKIE" "$HTML_ACCEPT"
row redirect "5 Portcullis, no session -> 302" "$PC_PID" 302 "$PC/app/" "$HTML_ACCEPT"
row apache "6 Apache + mod_auth_openidc, session" "$AP_PID" 200 "$AP/protected/app/" "Cookie: $AP_COOKIE" "$HTML_ACCEPT"
if [ "$WARMUP" -gt 0 ]; then
  for k in "${ROW_KEYS[@]}"; do measure "$k" "$WARMUP"; done
  for k in "${ROW_KEYS[@]}"; do R[$k.requests]=0 R[$k.us]=0 R[$k.ticks]=0 R[$k.p50w]=0 R[$k.p99]=0; done
  rm -f "$TMP"/wrk-*.txt "$TMP"/hist-*.txt
fi
for ((round = 1; round <= ROUNDS; round++)); do
  for k in "${ROW_KEYS[@]}"; do measure "$k" "$PASS"; done
done
for k in "${ROW_KEYS[@]}"; do finish "$k"; done
LOGIN_PASS=$(( LOGIN_SECS / ROUNDS > 0 ? LOGIN_SECS / ROUNDS : 1 ))
if [ -z "$ONLY" ] || [[ "$ONLY" == *" login "* ]]; then
say "row 7: login loops, $ROUNDS interleaved passes of ${LOGIN_PASS}s each (Portcullis, Apache, …)"
for ((round = 1; round <= ROUNDS; round++)); do
  login_pass login "$PC_PID" "$PC/app/" "$LOGIN_PASS"
  login_pass aplogin "$AP_PID" "$AP/protected/app/" "$LOGIN_PASS"
done
login_finish login "7 full login flow, Portcullis (c=$LOGIN_CONC)" "$PC_PID"
login_finish aplogin "7b full login flow, Apache (c=$LOGIN_CONC)" "$AP_PID"
fi

# ---------------------------------------------------------------------------- perf
# After the table, so that sampling never perturbs a measured row: the authenticated load again,
# sampled with DWARF call graphs (release builds have no frame pointers).
if [ "$PERF" = 1 ]; then
  say "perf record of Portcullis under the authenticated load (${DURATION}s)"
  WRK_EXPECT=200 wrk -t"$THREADS" -c"$CONNS" -d"$((DURATION + 2))s" -s "$HERE/wrk.lua" \
    -H "Cookie: $PC_COOKIE" -H "$HTML_ACCEPT" "$PC/app/" >"$TMP/wrk-perf.txt" 2>&1 &
  WRK_PID=$!
  sleep 1
  perf record -e cpu-clock -F 499 --call-graph dwarf,16384 -p "$PC_PID" -o "$TMP/perf.data" \
    -- sleep "$DURATION" >"$TMP/perf-record.txt" 2>&1 || true
  wait "$WRK_PID" || true
  trim() { grep -E '^ +[0-9]' | sed -E 's/ +- +- *$//; s/ +$//'; }
  perf report -i "$TMP/perf.data" --stdio --no-children --sort dso,symbol -g none \
    --percent-limit 0.5 2>/dev/null | trim >"$TMP/perf-self.txt" || true
  perf report -i "$TMP/perf.data" --stdio --children --sort symbol -g none \
    --percent-limit 1 2>/dev/null | trim >"$TMP/perf-children.txt" || true
fi

# ---------------------------------------------------------------------------- report
printf '\nPortcullis benchmark: %s, wrk -t%s -c%s, %s s per row, %s cores, load average %s at start, %s at end\n' \
  "$(date -u +%Y-%m-%dT%H:%MZ)" "$THREADS" "$CONNS" "$DURATION" "$(nproc)" "$LOAD0" "$(cut -d' ' -f1 /proc/loadavg)"
printf 'binary %s (%s)\n' "$BIN" "$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown)"
printf '%-44s %9s %8s %8s %10s %7s %8s\n' row 'req/s' 'p50 ms' 'p99 ms' 'CPU µs/req' errors 'RSS MiB'
for r in "${ROWS[@]}"; do printf '%s\n' "$r"; done
printf '(row 7: logins/s and CPU ms per login of the proxy alone; the IdP and the client are not counted)\n'

ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b > 0) printf "%.2f", a/b; else print "n/a" }'; }
verdict() { # VALUE OP MUST GOAL
  awk -v v="$1" -v op="$2" -v m="$3" -v g="$4" 'BEGIN{
    if (v == "n/a") { print "n/a"; exit }
    if (op == ">=") { r = (v >= g) ? "goal" : (v >= m) ? "must" : "MISS" }
    else            { r = (v <= g) ? "goal" : (v <= m) ? "must" : "MISS" }
    print r }'
}
if [ -n "${R[auth.rps]:-}" ] && [ -n "${R[ngx.rps]:-}" ]; then
  printf '\n%-58s %7s %7s %7s  %s\n' figure value must goal met
  v=$(ratio "${R[auth.rps]}" "${R[ngx.rps]}")
  printf '%-58s %7s %7s %7s  %s\n' 'authenticated req/s ÷ nginx plain proxy req/s' "$v" '>= 0.8' '>= 1.0' "$(verdict "$v" '>=' 0.8 1.0)"
  v=$(ratio "${R[auth.cpu]}" "${R[ngx.cpu]}")
  printf '%-58s %7s %7s %7s  %s\n' 'authenticated CPU µs/req ÷ nginx plain proxy' "$v" '<= 1.5' '<= 1.0' "$(verdict "$v" '<=' 1.5 1.0)"
  if [ -n "${R[group.rps]:-}" ] && [ -n "${R[ngxg.rps]:-}" ]; then
    v=$(ratio "${R[group.rps]}" "${R[ngxg.rps]}")
    printf '%-58s %7s %7s %7s  %s\n' 'two-target group req/s ÷ nginx over the same two (4g ÷ 2g)' "$v" '>= 0.8' '>= 1.0' "$(verdict "$v" '>=' 0.8 1.0)"
    v=$(ratio "$v" "$(ratio "${R[auth.rps]}" "${R[ngx.rps]}")")
    printf '%-58s %7s %7s %7s  %s\n' '(4g ÷ 2g) ÷ (4 ÷ 2): the group keeps the one-upstream ratio' "$v" '>= 0.9' '>= 1.0' "$(verdict "$v" '>=' 0.9 1.0)"
  fi
  if [ -n "${R[authr.cpu]:-}" ]; then
    v=$(ratio "${R[authr.cpu]}" "${R[auth.cpu]}")
    printf '%-58s %7s %7s %7s  %s\n' 'redis store CPU µs/req ÷ cookie store (row 4r ÷ row 4)' "$v" '<= 1.25' '<= 1.0' "$(verdict "$v" '<=' 1.25 1.0)"
  fi
  if [ -n "${R[rules.cpu]:-}" ]; then
    v=$(ratio "${R[rules.cpu]}" "${R[allow.cpu]}")
    printf '%-58s %7s %7s %7s  %s\n' 'last of 1,000 rules CPU µs/req ÷ one rule (row 3m ÷ row 3)' "$v" '<= 1.1' '<= 1.0' "$(verdict "$v" '<=' 1.1 1.0)"
  fi
  v=$(ratio "${R[auth.rps]}" "${R[apache.rps]:-0}")
  printf '%-58s %7s %7s %7s  %s\n' 'authenticated req/s ÷ Apache + mod_auth_openidc req/s' "$v" '>= 4' '>= 6' "$(verdict "$v" '>=' 4 6)"
  v=$(ratio "${R[auth.p99]}" "${R[ngx.p99]}")
  printf '%-58s %7s %7s %7s  %s\n' 'p99 authenticated ÷ nginx plain proxy p99' "$v" '<= 1.5' '<= 1.0' "$(verdict "$v" '<=' 1.5 1.0)"
  v=$(ratio "${R[login.ms]:-0}" "${R[aplogin.ms]:-0}")
  printf '%-58s %7s %7s %7s  %s\n' 'Portcullis CPU per full login ÷ Apache' "$v" '<= 0.5' '<= 0.25' "$(verdict "$v" '<=' 0.5 0.25)"
  total=0
  for k in up ngx ngxg allow rules auth group authr redirect apache login aplogin; do
    if [ -n "$ONLY" ] && [[ "$ONLY" != *" ${k#ap} "* ]] && [[ "$ONLY" != *" $k "* ]]; then continue; fi
    total=$((total + ${R[$k.err]:-1}))
  done
  printf '%-58s %7s %7s %7s  %s\n' 'errors, all rows' "$total" 0 0 "$([ "$total" = 0 ] && echo goal || echo MISS)"
fi
printf '(RSS after a 5-minute soak: scripts/bench.sh --soak 300)\n'
[ "$MODE" = smoke ] && printf '(smoke run: 1 s rows check that the harness works; the numbers mean nothing)\n'
if [ "$PERF" = 1 ]; then
  printf '\nperf: Portcullis under the authenticated load, self time (top 40)\n'
  head -40 "$TMP/perf-self.txt"
  printf '\nperf: inclusive time of Portcullis functions and key syscalls\n'
  grep -E 'portcullis::|hyper|tokio::runtime::task::waker|writev|recv|epoll|futex' "$TMP/perf-children.txt" | head -40
fi
[ "$FAILED" = 0 ] || die "some rows failed or had errors (see above)"
