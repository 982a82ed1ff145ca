// "Continue with …" in real headless Chromium: the pool's sign-in page → the real
// `oidc-provider` test IdP (tests/idp) → back in the pool → the proxied app sees the federated
// user; then the attribute page for what the IdP did not give, and link_by_email. Every page
// is saved as a screenshot under test-output/screenshots/.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { PASSWORD, Portcullis, freePort, launchChromium, shot, startIdp } from "./harness.mjs";

const SECRET = "federation-client-secret-0123";
let browser;
let idp;
let pc;

before(async () => {
  browser = await launchChromium();
  const port = await freePort();
  idp = await startIdp(`http://127.0.0.1:${port}/oauth2/pool/federation/callback`, SECRET);
  pc = await Portcullis.start({
    port,
    poolExtra: `required_attributes = ["email", "name"]
[[pool.identity_providers]]
name = "corp"
display_name = "Corp SSO"
issuer = "${idp.issuer}"
client_id = "pool"
client_secret = "${SECRET}"
link_by_email = true
`,
  });
  pc.cli("users", "add", "mal", "--password", PASSWORD, "--permanent", "--attribute", "email=mallory@example.com", "--attribute", "name=Mal Local");
  pc.cli("users", "add", "alice-local", "--password", PASSWORD, "--permanent", "--attribute", "email=alice@example.com", "--attribute", "name=Alice Local", "--attribute", "email_verified=true");
});
after(async () => {
  await browser?.close();
  await pc?.stop();
  idp?.child.kill("SIGTERM");
});

async function newPage(locale = "en-US") {
  const ctx = await browser.newContext({ locale });
  return ctx.newPage();
}

/** From the app through "Continue with Corp SSO" and the IdP's login as `login`. */
async function continueWith(page, login, name) {
  await page.goto(pc.url("/app"));
  await page.waitForURL(/\/oauth2\/pool\/login\?req=/);
  const button = page.locator("a.button", { hasText: "Continue with Corp SSO" });
  assert.equal(await button.count(), 1);
  await shot(page, `federation-${name}-01-sign-in`);
  await button.click();
  await page.waitForURL(/\/interaction\//);
  await shot(page, `federation-${name}-02-idp`);
  await page.fill('input[name="login"]', login);
  await page.click('form[action$="/login"] button[type="submit"]');
}

async function identity(page) {
  return {
    sub: await page.locator("#x-amzn-oidc-identity").innerText(),
    user: await page.locator("#x-forwarded-preferred-username").innerText(),
    email: await page.locator("#x-forwarded-email").innerText(),
  };
}

describe("Continue with … (federation)", () => {
  test("bob: IdP login → the attribute page asks for the name → the app sees corp_bob", async () => {
    const page = await newPage();
    await continueWith(page, "bob", "bob");
    await page.waitForURL(/\/oauth2\/pool\/federation\/callback/);
    assert.equal(await page.locator("h1").innerText(), "Complete your profile");
    assert.equal(await page.locator('input[name="email"]').inputValue(), "bob@other.org");
    await shot(page, "federation-bob-03-complete");
    await page.click('button[type="submit"]');
    // The browser's own check stops an empty required field; the server's is tested in Rust.
    await page.fill('input[name="name"]', "Bob Other");
    await page.click('button[type="submit"]');
    await page.waitForURL(pc.url("/app"));
    await shot(page, "federation-bob-04-app");
    const id = await identity(page);
    assert.equal(id.user, "corp_bob");
    assert.equal(id.email, "bob@other.org");
    assert.match(id.sub, /^[0-9a-f-]{36}$/);
  });

  test("alice: a verified email links to the existing user alice-local", async () => {
    const page = await newPage();
    await continueWith(page, "alice", "alice");
    await page.waitForURL(pc.url("/app"));
    await shot(page, "federation-alice-03-app");
    const id = await identity(page);
    assert.equal(id.user, "alice-local");
    assert.equal(id.email, "alice@example.com");
    const shown = JSON.parse(pc.cli("users", "show", "alice-local"));
    assert.equal(shown.attributes.identities[0].providerName, "corp");
    assert.equal(shown.attributes.identities[0].userId, "alice");
  });

  test("mallory: an unverified email is never linked, and holds nothing against the local user", async () => {
    const page = await newPage("ja-JP");
    await page.goto(pc.url("/app"));
    await page.waitForURL(/\/oauth2\/pool\/login\?req=/);
    const button = page.locator("a.button", { hasText: "Corp SSO で続ける" });
    assert.equal(await button.count(), 1);
    await shot(page, "federation-mallory-01-sign-in-ja");
    await button.click();
    await page.waitForURL(/\/interaction\//);
    await page.fill('input[name="login"]', "mallory");
    await page.click('form[action$="/login"] button[type="submit"]');
    // The provider gave no name: the attribute page asks for it; mallory becomes her own user.
    await page.waitForURL(/\/oauth2\/pool\/federation\/callback/);
    await shot(page, "federation-mallory-02-complete-ja");
    await page.fill('input[name="name"]', "Mallory");
    await page.click('button[type="submit"]');
    await page.waitForURL(pc.url("/app"));
    const id = await identity(page);
    assert.equal(id.user, "corp_mallory");
    // The provider did not verify the address: it is not forwarded as identity.
    assert.equal(id.email, "");
    // The local user with the same (unverified) address was not joined.
    const mal = JSON.parse(pc.cli("users", "show", "mal"));
    assert.equal((mal.attributes.identities ?? []).length, 0);
  });
});
