#!/usr/bin/env bash
# Smoke test of the test IdP: discovery, authorization code + PKCE login as alice,
# token exchange, userinfo, refresh, RP-initiated logout, outage controls.
#
#   bash tests/idp/smoke.sh            # id_token signed with RS256 (the default)
#   bash tests/idp/smoke.sh ES256      # or PS256, EdDSA: sets id_token_signed_response_alg
#
# Needs node (>= 20), npm and curl. Exits non-zero with a message on the first failure.
set -euo pipefail

ALG="${1:-RS256}"
DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$DIR"

die() { echo "idp smoke [$ALG]: FAIL: $*" >&2; exit 1; }
step() { echo "idp smoke [$ALG]: $*"; }

if [ ! -d node_modules/oidc-provider ]; then
  step "npm ci"
  npm ci --no-audit --no-fund >/dev/null || die "npm ci failed"
fi

WORK="$(mktemp -d)"
SERVER_PID=""
cleanup() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

# jget FILE JS-EXPRESSION-ON-j  -> prints the value ('' when undefined)
jget() {
  node -e '
    const fs = require("fs");
    const j = JSON.parse(fs.readFileSync(process.argv[1], "utf8"));
    const v = (0, eval)("(j) => (" + process.argv[2] + ")")(j);
    process.stdout.write(v === undefined || v === null ? "" : (typeof v === "string" ? v : JSON.stringify(v)));
  ' "$1" "$2"
}
# b64url-decoded JSON of a JWT part (0 header, 1 payload) into a file
jwt_part() { node -e 'process.stdout.write(Buffer.from(process.argv[1].split(".")[+process.argv[2]], "base64url").toString())' "$1" "$2"; }
# value of a query parameter of a URL
qparam() { node -e 'process.stdout.write(new URL(process.argv[1]).searchParams.get(process.argv[2]) ?? "")' "$1" "$2"; }
# header value from a curl -D dump
header() { grep -i "^$2:" "$1" | head -1 | sed -e 's/^[^:]*: *//' -e 's/\r$//'; }
status() { head -1 "$1" | awk '{print $2}'; }

PORT="$(node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')"
ISSUER="http://127.0.0.1:$PORT"
REDIRECT="http://127.0.0.1:9999/oauth2/idpresponse"
POST_LOGOUT="http://127.0.0.1:9999/"

CLIENT='{"client_id":"portcullis","client_secret":"s3cret","redirect_uris":["'"$REDIRECT"'"],"post_logout_redirect_uris":["'"$POST_LOGOUT"'"],"grant_types":["authorization_code","refresh_token"],"response_types":["code"],"token_endpoint_auth_method":"client_secret_basic","id_token_signed_response_alg":"'"$ALG"'"}'

IDP_PORT="$PORT" IDP_ISSUER="$ISSUER" IDP_CLIENTS="[$CLIENT]" \
  node "$DIR/server.mjs" >"$WORK/server.out" 2>"$WORK/server.err" &
SERVER_PID=$!

for _ in $(seq 1 100); do
  grep -q "^IDP_READY $ISSUER\$" "$WORK/server.out" 2>/dev/null && break
  kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/server.err" >&2; die "server exited before IDP_READY"; }
  sleep 0.1
done
grep -q "^IDP_READY $ISSUER\$" "$WORK/server.out" || die "no IDP_READY line within 10s"
step "server up at $ISSUER (pid $SERVER_PID)"

JAR="$WORK/cookies"
C=(curl -sS --max-time 10 -b "$JAR" -c "$JAR")

# --- health / discovery ------------------------------------------------------
[ "$("${C[@]}" -o /dev/null -w '%{http_code}' "$ISSUER/__test/health")" = 200 ] || die "health not 200"

"${C[@]}" -o "$WORK/disc.json" "$ISSUER/.well-known/openid-configuration" || die "discovery request failed"
[ "$(jget "$WORK/disc.json" 'j.issuer')" = "$ISSUER" ] || die "discovery issuer mismatch"
AUTH_EP="$(jget "$WORK/disc.json" 'j.authorization_endpoint')"
TOKEN_EP="$(jget "$WORK/disc.json" 'j.token_endpoint')"
USERINFO_EP="$(jget "$WORK/disc.json" 'j.userinfo_endpoint')"
END_EP="$(jget "$WORK/disc.json" 'j.end_session_endpoint')"
JWKS_URI="$(jget "$WORK/disc.json" 'j.jwks_uri')"
[ -n "$AUTH_EP" ] && [ -n "$TOKEN_EP" ] && [ -n "$USERINFO_EP" ] && [ -n "$END_EP" ] && [ -n "$JWKS_URI" ] \
  || die "discovery lacks an endpoint"
[ "$(jget "$WORK/disc.json" 'j.code_challenge_methods_supported.includes("S256")')" = true ] || die "S256 not supported"
[ "$(jget "$WORK/disc.json" 'j.id_token_signing_alg_values_supported.includes("'"$ALG"'")')" = true ] || die "$ALG not advertised"
step "discovery ok"

# --- authorization request (PKCE S256, state, nonce) -------------------------
VERIFIER="$(node -e 'process.stdout.write(require("crypto").randomBytes(32).toString("base64url"))')"
CHALLENGE="$(node -e 'process.stdout.write(require("crypto").createHash("sha256").update(process.argv[1]).digest("base64url"))' "$VERIFIER")"
STATE="st-$RANDOM$RANDOM"
NONCE="n-$RANDOM$RANDOM"

"${C[@]}" -o /dev/null -D "$WORK/h1" -G "$AUTH_EP" \
  --data-urlencode "response_type=code" \
  --data-urlencode "client_id=portcullis" \
  --data-urlencode "redirect_uri=$REDIRECT" \
  --data-urlencode "scope=openid email profile" \
  --data-urlencode "state=$STATE" \
  --data-urlencode "nonce=$NONCE" \
  --data-urlencode "code_challenge=$CHALLENGE" \
  --data-urlencode "code_challenge_method=S256"
[ "$(status "$WORK/h1")" = 303 ] || die "authorize: expected 303, got $(status "$WORK/h1")"
LOC="$(header "$WORK/h1" location)"
[[ "$LOC" =~ ^/interaction/([A-Za-z0-9_-]+)$ ]] || die "authorize: unexpected Location '$LOC'"
UID_="${BASH_REMATCH[1]}"
step "authorize -> 303 $LOC"

# --- interaction: form, unknown account, login as alice ----------------------
"${C[@]}" -o "$WORK/form.html" -D "$WORK/h2" "$ISSUER$LOC"
[ "$(status "$WORK/h2")" = 200 ] || die "interaction GET: expected 200, got $(status "$WORK/h2")"
grep -q "<form method=\"post\" action=\"/interaction/$UID_/login\">" "$WORK/form.html" || die "interaction form not found"
grep -q '<input name="login"' "$WORK/form.html" || die "login input not found"

[ "$("${C[@]}" -o /dev/null -w '%{http_code}' --data-urlencode "login=nobody" "$ISSUER/interaction/$UID_/login")" = 400 ] \
  || die "unknown account should answer 400"

"${C[@]}" -o /dev/null -D "$WORK/h3" --data-urlencode "login=alice" "$ISSUER/interaction/$UID_/login"
[ "$(status "$WORK/h3")" = 303 ] || die "login POST: expected 303, got $(status "$WORK/h3")"
RESUME="$(header "$WORK/h3" location)"
[ "$RESUME" = "$ISSUER/auth/$UID_" ] || die "login POST: unexpected Location '$RESUME'"
step "login as alice -> 303 $RESUME"

"${C[@]}" -o /dev/null -D "$WORK/h4" "$RESUME"
[ "$(status "$WORK/h4")" = 303 ] || die "resume: expected 303, got $(status "$WORK/h4")"
CB="$(header "$WORK/h4" location)"
[[ "$CB" == "$REDIRECT?"* ]] || die "resume: expected redirect to $REDIRECT, got '$CB'"
CODE="$(qparam "$CB" code)"
[ -n "$CODE" ] || die "no code in callback '$CB'"
[ "$(qparam "$CB" state)" = "$STATE" ] || die "state mismatch in callback"
[ "$(qparam "$CB" iss)" = "$ISSUER" ] || die "iss mismatch in callback"
step "resume -> 303 to redirect_uri with code"

# --- token exchange (client_secret_basic) ------------------------------------
"${C[@]}" -o "$WORK/tok.json" -w '%{http_code}' -u "portcullis:s3cret" \
  --data-urlencode "grant_type=authorization_code" \
  --data-urlencode "code=$CODE" \
  --data-urlencode "redirect_uri=$REDIRECT" \
  --data-urlencode "code_verifier=$VERIFIER" "$TOKEN_EP" >"$WORK/tok.code"
[ "$(cat "$WORK/tok.code")" = 200 ] || die "token exchange: HTTP $(cat "$WORK/tok.code"): $(cat "$WORK/tok.json")"
AT="$(jget "$WORK/tok.json" 'j.access_token')"
IDT="$(jget "$WORK/tok.json" 'j.id_token')"
RT="$(jget "$WORK/tok.json" 'j.refresh_token')"
[ -n "$AT" ] || die "no access_token"
[ -n "$IDT" ] || die "no id_token"
[ -n "$RT" ] || die "no refresh_token"
[ "$(jget "$WORK/tok.json" 'j.token_type')" = Bearer ] || die "token_type not Bearer"

jwt_part "$IDT" 0 >"$WORK/idh.json"
jwt_part "$IDT" 1 >"$WORK/idp.json"
[ "$(jget "$WORK/idh.json" 'j.alg')" = "$ALG" ] || die "id_token alg is $(jget "$WORK/idh.json" 'j.alg'), want $ALG"
[ -n "$(jget "$WORK/idh.json" 'j.kid')" ] || die "id_token has no kid"
[ "$(jget "$WORK/idp.json" 'j.iss')" = "$ISSUER" ] || die "id_token iss"
[ "$(jget "$WORK/idp.json" 'j.aud')" = portcullis ] || die "id_token aud"
[ "$(jget "$WORK/idp.json" 'j.sub')" = alice ] || die "id_token sub"
[ "$(jget "$WORK/idp.json" 'j.nonce')" = "$NONCE" ] || die "id_token nonce"
[ "$(jget "$WORK/idp.json" 'j.email')" = alice@example.com ] || die "id_token email"
[ "$(jget "$WORK/idp.json" 'j.email_verified')" = true ] || die "id_token email_verified"
[ "$(jget "$WORK/idp.json" 'j.groups')" = '["admins","staff"]' ] || die "id_token groups"
[ "$(jget "$WORK/idp.json" 'j.name')" = "Alice Example" ] || die "id_token name"
# verify the signature against the published JWKS
node --input-type=module -e '
  import { createRemoteJWKSet, jwtVerify } from "jose";
  const [jwt, jwks, iss, alg] = process.argv.slice(1);
  const { protectedHeader } = await jwtVerify(jwt, createRemoteJWKSet(new URL(jwks)), { issuer: iss, audience: "portcullis", algorithms: [alg] });
  if (protectedHeader.alg !== alg) throw new Error("alg");
' "$IDT" "$JWKS_URI" "$ISSUER" "$ALG" 2>"$WORK/verify.err" || die "id_token signature verification failed: $(cat "$WORK/verify.err")"
step "token exchange ok; id_token alg=$ALG kid=$(jget "$WORK/idh.json" 'j.kid') verified"

# --- userinfo ----------------------------------------------------------------
"${C[@]}" -o "$WORK/ui.json" -w '%{http_code}' -H "Authorization: Bearer $AT" "$USERINFO_EP" >"$WORK/ui.code"
[ "$(cat "$WORK/ui.code")" = 200 ] || die "userinfo: HTTP $(cat "$WORK/ui.code")"
[ "$(jget "$WORK/ui.json" 'j.sub')" = alice ] || die "userinfo sub"
[ "$(jget "$WORK/ui.json" 'j.email')" = alice@example.com ] || die "userinfo email"
[ "$(jget "$WORK/ui.json" 'j.groups')" = '["admins","staff"]' ] || die "userinfo groups"
[ "$(jget "$WORK/ui.json" 'j.preferred_username')" = alice ] || die "userinfo preferred_username"
step "userinfo ok"

# --- refresh -----------------------------------------------------------------
"${C[@]}" -o "$WORK/ref.json" -w '%{http_code}' -u "portcullis:s3cret" \
  --data-urlencode "grant_type=refresh_token" \
  --data-urlencode "refresh_token=$RT" "$TOKEN_EP" >"$WORK/ref.code"
[ "$(cat "$WORK/ref.code")" = 200 ] || die "refresh: HTTP $(cat "$WORK/ref.code"): $(cat "$WORK/ref.json")"
AT2="$(jget "$WORK/ref.json" 'j.access_token')"
[ -n "$AT2" ] && [ "$AT2" != "$AT" ] || die "refresh gave no new access_token"
IDT2="$(jget "$WORK/ref.json" 'j.id_token')"
[ -n "$IDT2" ] || die "refresh gave no id_token"
jwt_part "$IDT2" 0 >"$WORK/idh2.json"
[ "$(jget "$WORK/idh2.json" 'j.alg')" = "$ALG" ] || die "refreshed id_token alg"
[ "$("${C[@]}" -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $AT2" "$USERINFO_EP")" = 200 ] || die "userinfo with refreshed token"
step "refresh ok"

# --- outage controls ---------------------------------------------------------
"${C[@]}" -o /dev/null -X POST "$ISSUER/__test/down"
[ "$("${C[@]}" -o /dev/null -w '%{http_code}' "$ISSUER/.well-known/openid-configuration")" = 503 ] || die "discovery should be 503 while down"
[ "$("${C[@]}" -o /dev/null -w '%{http_code}' "$ISSUER/__test/health")" = 200 ] || die "health should stay 200 while down"
"${C[@]}" -o /dev/null -X POST "$ISSUER/__test/up"
[ "$("${C[@]}" -o /dev/null -w '%{http_code}' "$ISSUER/.well-known/openid-configuration")" = 200 ] || die "discovery should be 200 after up"
step "down/up ok"

# --- RP-initiated logout -----------------------------------------------------
LSTATE="ls-$RANDOM"
"${C[@]}" -o "$WORK/logout.html" -D "$WORK/h5" -G "$END_EP" \
  --data-urlencode "id_token_hint=$IDT" \
  --data-urlencode "post_logout_redirect_uri=$POST_LOGOUT" \
  --data-urlencode "state=$LSTATE"
[ "$(status "$WORK/h5")" = 200 ] || die "end_session GET: expected 200, got $(status "$WORK/h5")"
ACTION="$(sed -n 's/.*<form method="post" action="\([^"]*\)".*/\1/p' "$WORK/logout.html" | head -1)"
XSRF="$(sed -n 's/.*name="xsrf" value="\([^"]*\)".*/\1/p' "$WORK/logout.html" | head -1)"
[ "$ACTION" = "$ISSUER/session/end/confirm" ] || die "logout form action '$ACTION'"
[ -n "$XSRF" ] || die "logout form has no xsrf"
grep -q 'name="logout" value="yes"' "$WORK/logout.html" || die "logout form lacks logout=yes"

"${C[@]}" -o /dev/null -D "$WORK/h6" --data-urlencode "xsrf=$XSRF" --data-urlencode "logout=yes" "$ACTION"
[ "$(status "$WORK/h6")" = 303 ] || die "logout confirm: expected 303, got $(status "$WORK/h6")"
OUT="$(header "$WORK/h6" location)"
[ "$OUT" = "${POST_LOGOUT}?state=$LSTATE" ] || die "logout confirm: unexpected Location '$OUT'"
step "logout -> 303 $OUT"

# the IdP session is gone: a new authorization request needs a login again
"${C[@]}" -o /dev/null -D "$WORK/h7" -G "$AUTH_EP" \
  --data-urlencode "response_type=code" --data-urlencode "client_id=portcullis" \
  --data-urlencode "redirect_uri=$REDIRECT" --data-urlencode "scope=openid" \
  --data-urlencode "code_challenge=$CHALLENGE" --data-urlencode "code_challenge_method=S256"
[[ "$(header "$WORK/h7" location)" == /interaction/* ]] || die "after logout, authorize should ask for login again"
step "post-logout authorize asks for login"

# --- SIGTERM -----------------------------------------------------------------
kill -TERM "$SERVER_PID"
rc=0; wait "$SERVER_PID" || rc=$?
SERVER_PID=""
[ "$rc" = 0 ] || die "server exited with $rc on SIGTERM"
if grep -v -e 'oidc-provider WARNING' -e '^$' "$WORK/server.err" | grep -q .; then
  echo "--- server stderr ---" >&2; cat "$WORK/server.err" >&2
fi

echo "idp smoke: ok"
