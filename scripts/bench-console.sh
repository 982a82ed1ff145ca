#!/usr/bin/env bash
# The admin console with 100,000 users: generates a Cognito user-import CSV, imports it with
# `portcullis pool users import`, signs in as an administrator with curl, and times (median of
# RUNS requests each) the users list's first page, the page after it (a cursor), a few
# filters and sorts, the CSV export of a filter, and one user's page. Prints the figures; never
# asserts them (a benchmark, not a test). Everything runs in a temporary directory on free
# loopback ports and is removed at the end.
#
#   scripts/bench-console.sh                 100,000 users, 5 runs per row
#   USERS=5000 RUNS=3 scripts/bench-console.sh
#
# Environment: PORTCULLIS_BIN (default: `cargo build --release`, then target/release/portcullis),
# DATABASE (default: a SQLite file in the temporary directory; a postgres:// URL works too).
set -euo pipefail
cd "$(dirname "$0")/.."
USERS=${USERS:-100000}
RUNS=${RUNS:-5}
if [ -z "${PORTCULLIS_BIN:-}" ]; then
  nice -n 10 cargo build --release --quiet
  PORTCULLIS_BIN=target/release/portcullis
fi
BIN=$(realpath "$PORTCULLIS_BIN")
DIR=$(mktemp -d /tmp/pc-bench-console.XXXXXX)
PID=""
cleanup() {
  if [ -n "$PID" ]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi
  rm -rf "$DIR"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PORT=$(free_port)
ADMIN_PORT=$(free_port)
UP_PORT=$(free_port)
DATABASE=${DATABASE:-sqlite://$DIR/pool.db}
BASE="http://127.0.0.1:$PORT"
PASSWORD='Bench-Console-Pw-7'
cat > "$DIR/portcullis.toml" <<TOML
public_url = "$BASE"
[server]
listen = ["127.0.0.1:$PORT"]
admin_listen = "127.0.0.1:$ADMIN_PORT"
[session]
secrets = ["bench-secret-bench-secret-bench-secret-0"]
[log]
level = "warn"
[[routes]]
path = "/"
upstream = "http://127.0.0.1:$UP_PORT"
provider = "pool"
[pool]
database = "$DATABASE"
admin_console = true
TOML

echo "generating $USERS users"
awk -v n="$USERS" 'BEGIN {
  print "cognito:username,email,email_verified,name";
  for (i = 0; i < n; i++) printf "u%06d,u%06d@example.com,true,User %d\n", i, i, i;
}' > "$DIR/users.csv"
start=$(date +%s.%N)
"$BIN" pool users import "$DIR/users.csv" --config "$DIR/portcullis.toml" > /dev/null 2>&1
end=$(date +%s.%N)
printf 'import: %.1f s\n' "$(echo "$end - $start" | bc)"
"$BIN" pool users add root --password "$PASSWORD" --permanent --attribute email=root@example.com \
  --group admins --config "$DIR/portcullis.toml" > /dev/null 2>&1
"$BIN" pool groups add-user staff u000042 --config "$DIR/portcullis.toml" > /dev/null 2>&1

"$BIN" serve --config "$DIR/portcullis.toml" 2> "$DIR/server.log" &
PID=$!
for _ in $(seq 1 100); do
  curl -fs "http://127.0.0.1:$ADMIN_PORT/readyz" > /dev/null && break
  sleep 0.1
done

JAR="$DIR/cookies"
page=$(curl -fs -c "$JAR" -b "$JAR" "$BASE/oauth2/pool/login")
csrf=$(printf '%s' "$page" | grep -o 'name="csrf_token" value="[^"]*"' | head -1 | sed 's/.*value="//; s/"$//')
code=$(curl -s -o /dev/null -w '%{http_code}' -c "$JAR" -b "$JAR" \
  --data-urlencode "csrf_token=$csrf" --data-urlencode username=root \
  --data-urlencode "password=$PASSWORD" "$BASE/oauth2/pool/login")
[ "$code" = 200 ] || { echo "admin sign-in failed ($code)"; cat "$DIR/server.log"; exit 1; }

first=$(curl -fs -b "$JAR" "$BASE/oauth2/pool/admin/users")
next=$(printf '%s' "$first" | grep -o 'rel="next" href="[^"]*"' | sed 's/.*href="//; s/"$//; s/&amp;/\&/g; s|&#x2f;|/|g')

row() {
  local label=$1 url=$2 times=() status bytes
  for _ in $(seq 1 "$RUNS"); do
    read -r status bytes t < <(curl -s -o /dev/null -b "$JAR" -w '%{http_code} %{size_download} %{time_total}\n' "$url")
    times+=("$t")
  done
  median=$(printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
  printf '%-44s %4s %9s B %8.1f ms\n' "$label" "$status" "$bytes" "$(echo "$median * 1000" | bc -l)"
}
echo
printf '%-44s %4s %11s %11s\n' "request ($USERS users, median of $RUNS)" code size time
A="$BASE/oauth2/pool/admin"
row "users, first page" "$A/users"
row "users, next page (cursor)" "$BASE$next"
row "filter: name prefix q=u0999" "$A/users?q=u0999"
row "filter: email prefix q=u012345@" "$A/users?q=u012345%40"
row "filter: group=staff" "$A/users?group=staff"
row "filter: status=DISABLED" "$A/users?status=DISABLED"
row "filter: mfa=on" "$A/users?mfa=on"
row "filter: locked now" "$A/users?locked=yes"
row "sort: created, newest first" "$A/users?sort=created&order=desc"
row "sort: last sign-in" "$A/users?sort=last_sign_in"
row "a user's page" "$A/user?u=$(printf 'u%06d' $((USERS / 2)))"
row "export CSV, q=u0001 (100 users)" "$A/users.csv?q=u0001"
