// OP conformance driven by an RP we did not write: panva's certified `openid-client` (v6)
// performs discovery, authorization code + PKCE, ID token validation, userinfo, refresh (and
// RP-initiated logout) against the pool, registered as [[pool.clients]] entries.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import * as client from "openid-client";
import { Browserless, PASSWORD, Portcullis, formOf } from "./harness.mjs";

const REDIRECT = "http://127.0.0.1:9/callback";
const SPA_REDIRECT = "http://127.0.0.1:9/spa";
let pc;

before(async () => {
  pc = await Portcullis.start({
    poolExtra: `
[[pool.clients]]
client_id = "wiki"
client_secret = "wiki-secret-0123456789"
redirect_uris = ["${REDIRECT}"]
post_logout_redirect_uris = ["http://127.0.0.1:9/bye"]
[[pool.clients]]
client_id = "spa"
redirect_uris = ["${SPA_REDIRECT}"]
`,
  });
  pc.cli("users", "add", "olga", "--password", PASSWORD, "--permanent", "--attribute", "email=olga@example.com", "--attribute", "email_verified=true", "--attribute", "name=Olga", "--group", "editors");
});
after(async () => {
  await pc?.stop();
});

/** Follows the authorization URL through the hosted sign-in page to the client's callback. */
async function signInThroughPages(authUrl, redirectPrefix) {
  const b = new Browserless();
  let r = await b.fetch(authUrl.toString());
  assert.equal(r.status, 302);
  const login = new URL(r.headers.get("location"), pc.base);
  assert.equal(login.pathname, "/oauth2/pool/login");
  r = await b.fetch(login.toString());
  const { action, csrf } = formOf(await r.text(), pc.base, "/login");
  r = await b.post(action, { csrf_token: csrf, username: "olga", password: PASSWORD });
  assert.equal(r.status, 302);
  const callback = r.headers.get("location");
  assert.ok(callback.startsWith(redirectPrefix), callback);
  return new URL(callback);
}

describe("openid-client against the pool", () => {
  test("confidential client: discovery, code + PKCE, ID token, userinfo, refresh, end-session", async () => {
    const config = await client.discovery(new URL(pc.url("/oauth2/pool")), "wiki", "wiki-secret-0123456789", client.ClientSecretBasic("wiki-secret-0123456789"), {
      execute: [client.allowInsecureRequests],
    });
    const meta = config.serverMetadata();
    assert.equal(meta.issuer, pc.url("/oauth2/pool"));
    const code_verifier = client.randomPKCECodeVerifier();
    const code_challenge = await client.calculatePKCECodeChallenge(code_verifier);
    const state = client.randomState();
    const nonce = client.randomNonce();
    const authUrl = client.buildAuthorizationUrl(config, { redirect_uri: REDIRECT, scope: "openid email profile", code_challenge, code_challenge_method: "S256", state, nonce });
    const callback = await signInThroughPages(authUrl, REDIRECT);

    const tokens = await client.authorizationCodeGrant(config, callback, { pkceCodeVerifier: code_verifier, expectedState: state, expectedNonce: nonce, idTokenExpected: true });
    const claims = tokens.claims();
    assert.equal(claims.iss, pc.url("/oauth2/pool"));
    assert.equal(claims.aud, "wiki");
    assert.equal(claims.email, "olga@example.com");
    assert.equal(claims.email_verified, true);
    assert.deepEqual(claims["cognito:groups"], ["editors"]);
    assert.equal(claims["cognito:username"], "olga");
    assert.ok(tokens.expiresIn() > 3500 && tokens.expiresIn() <= 3600);

    const info = await client.fetchUserInfo(config, tokens.access_token, claims.sub);
    assert.equal(info.sub, claims.sub);
    assert.equal(info.name, "Olga");
    assert.deepEqual(info.groups, ["editors"]);

    const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token);
    assert.notEqual(refreshed.refresh_token, tokens.refresh_token, "refresh tokens rotate");
    assert.equal(refreshed.claims().sub, claims.sub);
    const info2 = await client.fetchUserInfo(config, refreshed.access_token, claims.sub);
    assert.equal(info2.email, "olga@example.com");
    // Reusing the spent refresh token is refused (and revokes the family).
    await assert.rejects(client.refreshTokenGrant(config, tokens.refresh_token), (e) => e.error === "invalid_grant");
    await assert.rejects(client.refreshTokenGrant(config, refreshed.refresh_token), (e) => e.error === "invalid_grant");

    const end = client.buildEndSessionUrl(config, { id_token_hint: tokens.id_token, post_logout_redirect_uri: "http://127.0.0.1:9/bye", state: "s" });
    const r = await fetch(end, { redirect: "manual" });
    assert.equal(r.status, 302);
    assert.equal(r.headers.get("location"), "http://127.0.0.1:9/bye?state=s");
  });

  test("public client: PKCE is mandatory, token_endpoint_auth_method none", async () => {
    const config = await client.discovery(new URL(pc.url("/oauth2/pool")), "spa", undefined, client.None(), { execute: [client.allowInsecureRequests] });
    const code_verifier = client.randomPKCECodeVerifier();
    const code_challenge = await client.calculatePKCECodeChallenge(code_verifier);
    const state = client.randomState();
    const authUrl = client.buildAuthorizationUrl(config, { redirect_uri: SPA_REDIRECT, scope: "openid", code_challenge, code_challenge_method: "S256", state });
    const callback = await signInThroughPages(authUrl, SPA_REDIRECT);
    const tokens = await client.authorizationCodeGrant(config, callback, { pkceCodeVerifier: code_verifier, expectedState: state });
    assert.equal(tokens.claims().aud, "spa");

    // Without a challenge the pool answers the redirect URI with invalid_request.
    const noPkce = client.buildAuthorizationUrl(config, { redirect_uri: SPA_REDIRECT, scope: "openid", state });
    const r = await fetch(noPkce, { redirect: "manual" });
    const back = new URL(r.headers.get("location"));
    assert.equal(back.searchParams.get("error"), "invalid_request");
  });
});
