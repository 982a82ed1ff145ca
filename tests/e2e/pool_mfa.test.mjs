// Multi-factor sign-in in real headless Chromium (docs/src/pool/mfa.md): enrol TOTP from the page reachable
// after sign-in (the secret is read from the page, codes are computed here with node's crypto),
// sign out, sign in with password + code; a recovery code once, then refused; `required`
// forces set-up right after the password; wrong codes lock the account; and a route with
// `allow_claims = { amr = "mfa" }` refuses a password-only session and admits an MFA one.
// Passkeys: registered and used through Chromium's virtual authenticator (DevTools WebAuthn
// domain), on http://localhost (a secure context whose host can be the RP id).
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import crypto from "node:crypto";
import fs from "node:fs";
import { PASSWORD, Portcullis, base32Decode, launchChromium, shot } from "./harness.mjs";

let browser;
before(async () => {
  browser = await launchChromium();
});
after(async () => {
  await browser?.close();
});

/** RFC 6238 TOTP (SHA-1, 6 digits) for a 30-second step. */
function totp(secret, step) {
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(step));
  const h = crypto.createHmac("sha1", secret).update(counter).digest();
  const off = h[h.length - 1] & 15;
  return String((h.readUInt32BE(off) & 0x7fffffff) % 1_000_000).padStart(6, "0");
}

const stepNow = () => Math.floor(Date.now() / 1000 / 30);

/** Restarts the server with a route in front of the catch-all that needs an MFA sign-in. */
async function addStepUpRoute(pc) {
  const exited = new Promise((r) => pc.child.once("exit", r));
  pc.child.kill("SIGTERM");
  await exited;
  const text = fs.readFileSync(pc.config, "utf8");
  const route = `[[routes]]\npath = "/admin"\nupstream = "http://127.0.0.1:${pc.upstream.port}"\nprovider = "pool"\nallow_claims = { amr = "mfa" }\n`;
  fs.writeFileSync(pc.config, text.replace("[[routes]]\n", `${route}[[routes]]\n`));
  await pc.spawn();
}

async function signIn(page, username) {
  await page.fill('input[name="username"]', username);
  await page.fill('input[name="password"]', PASSWORD);
  await page.click('button[type="submit"]');
}

async function amrOf(page, pc) {
  const r = await page.request.get(pc.url("/oauth2/userinfo"));
  return (await r.json()).claims.amr;
}

async function signOut(page, pc) {
  await page.goto(pc.url("/oauth2/sign_out?rd=/"));
  await page.waitForURL(/\/oauth2\/pool\/login\?req=/);
}

describe("pool multi-factor journeys", () => {
  test("enrol TOTP → sign out → password + code → step-up route → recovery code once", async () => {
    const pc = await Portcullis.start({ poolExtra: 'mfa = "optional"' });
    try {
      await addStepUpRoute(pc);
      pc.cli("users", "add", "mia", "--password", PASSWORD, "--permanent", "--attribute", "email=mia@example.com", "--attribute", "email_verified=true");
      const page = await (await browser.newContext({ locale: "en-US" })).newPage();
      await page.goto(pc.url("/app"));
      await page.waitForURL(/\/oauth2\/pool\/login\?req=/);
      await signIn(page, "mia");
      await page.waitForURL(pc.url("/app"));
      assert.deepEqual(await amrOf(page, pc), ["pwd"]);
      // A password-only session cannot open the step-up route.
      const denied = await page.goto(pc.url("/admin/panel"));
      assert.equal(denied.status(), 403);
      await shot(page, "mfa-01-step-up-refused");

      await page.goto(pc.url("/oauth2/pool/mfa/setup"));
      assert.equal(await page.locator("h1").innerText(), "Set up two-step verification");
      assert.equal(await page.locator("script").count(), 0, "set-up works without script");
      assert.equal(await page.locator("svg.qr").count(), 1, "QR code on the page");
      await shot(page, "mfa-02-setup");
      const secret = base32Decode(await page.locator("#secret").innerText());
      assert.equal(secret.length, 20);
      const enrolled = stepNow();
      await page.fill('input[name="code"]', totp(secret, enrolled));
      await page.click('button[type="submit"]');
      await page.waitForSelector("#recovery-codes");
      const codes = await page.locator("#recovery-codes code").allInnerTexts();
      assert.equal(codes.length, 10);
      await shot(page, "mfa-03-recovery-codes");
      await page.click('button[type="submit"]');
      assert.equal(await page.locator("h1").innerText(), "Signed in");
      await page.click('a[href$="/mfa/setup"]');
      assert.equal(await page.locator("h1").innerText(), "Two-step verification");
      assert.match(await page.locator(".notice").innerText(), /is on/);
      await shot(page, "mfa-03b-enrolled");

      await signOut(page, pc);
      await page.goto(pc.url("/admin/panel"));
      await page.waitForURL(/\/oauth2\/pool\/login\?req=/);
      await signIn(page, "mia");
      await page.waitForURL(/\/oauth2\/pool\/mfa\?req=/);
      await shot(page, "mfa-04-challenge");
      // The code used to enrol is spent.
      await page.fill('input[name="code"]', totp(secret, enrolled));
      await page.click('button[type="submit"]');
      assert.match(await page.locator(".errors").innerText(), /already used/);
      await shot(page, "mfa-05-used-code");
      await page.fill('input[name="code"]', totp(secret, Math.max(enrolled + 1, stepNow())));
      await page.click('button[type="submit"]');
      await page.waitForURL(pc.url("/admin/panel"));
      assert.match(await page.locator("#x-forwarded-email").innerText(), /mia@example.com/);
      await shot(page, "mfa-06-step-up-admitted");
      assert.deepEqual(await amrOf(page, pc), ["pwd", "otp", "mfa"]);

      // A recovery code signs in once.
      await signOut(page, pc);
      await signIn(page, "mia");
      await page.waitForURL(/\/oauth2\/pool\/mfa\?req=/);
      await page.fill('input[name="code"]', codes[0]);
      await page.click('button[type="submit"]');
      await page.waitForURL(pc.url("/"));
      await signOut(page, pc);
      await signIn(page, "mia");
      await page.waitForURL(/\/oauth2\/pool\/mfa\?req=/);
      await page.fill('input[name="code"]', codes[0]);
      await page.click('button[type="submit"]');
      assert.match(await page.locator(".errors").innerText(), /not correct or was already used/);
      const shown = JSON.parse(pc.cli("users", "show", "mia"));
      assert.equal(shown.mfa.totp, true);
      assert.equal(shown.mfa.recovery_codes_left, 9);
    } finally {
      await pc.stop();
    }
  });

  test("required: set-up right after the password (Japanese), then wrong codes lock the account", async () => {
    const pc = await Portcullis.start({ poolExtra: 'mfa = "required"\nlockout = { max_attempts = 3, initial = "5m" }' });
    try {
      pc.cli("users", "add", "ken", "--password", PASSWORD, "--permanent", "--attribute", "email=ken@example.com", "--attribute", "email_verified=true");
      const page = await (await browser.newContext({ locale: "ja-JP" })).newPage();
      await page.goto(pc.url("/app"));
      await page.waitForURL(/\/oauth2\/pool\/login\?req=/);
      await signIn(page, "ken");
      await page.waitForURL(/\/oauth2\/pool\/mfa\/setup\?req=/);
      assert.equal(await page.locator("h1").innerText(), "2段階認証の設定");
      assert.match(await page.locator(".notice").innerText(), /必須/);
      await shot(page, "mfa-07-required-setup-ja");
      const secret = base32Decode(await page.locator("#secret").innerText());
      await page.fill('input[name="code"]', "000000");
      await page.click('button[type="submit"]');
      assert.match(await page.locator(".errors").innerText(), /一致しません/);
      const enrolled = stepNow();
      await page.fill('input[name="code"]', totp(secret, enrolled));
      await page.click('button[type="submit"]');
      await page.waitForSelector("#recovery-codes");
      await shot(page, "mfa-08-recovery-codes-ja");
      await page.click('button[type="submit"]');
      await page.waitForURL(pc.url("/app"));
      assert.deepEqual(await amrOf(page, pc), ["pwd", "otp", "mfa"]);

      await signOut(page, pc);
      await signIn(page, "ken");
      await page.waitForURL(/\/oauth2\/pool\/mfa\?req=/);
      for (const code of ["111111", "222222", "333333"]) {
        await page.fill('input[name="code"]', code);
        await page.click('button[type="submit"]');
      }
      assert.match(await page.locator(".errors").innerText(), /(秒|分|時間)後/);
      await shot(page, "mfa-09-locked-ja");
      await page.fill('input[name="code"]', totp(secret, Math.max(enrolled + 1, stepNow())));
      await page.click('button[type="submit"]');
      assert.match(await page.locator(".errors").innerText(), /(秒|分|時間)後/, "locked even for the right code");
      assert.match(pc.cli("users", "unlock", "ken"), /unlocked/);
      await page.fill('input[name="code"]', totp(secret, Math.max(enrolled + 1, stepNow())));
      await page.click('button[type="submit"]');
      await page.waitForURL(pc.url("/"));
    } finally {
      await pc.stop();
    }
  });

  test("passkeys: add after sign-in, sign in without a user name, step-up route, remove", async () => {
    // Passkeys need a domain name (check refuses them on 127.0.0.1): turned on below, with
    // public_url on localhost.
    const pc = await Portcullis.start({ poolExtra: 'mfa = "optional"' });
    try {
      await addStepUpRoute(pc);
      // WebAuthn needs a host name for the RP id: serve the same listener as localhost.
      const origin = pc.base.replace("127.0.0.1", "localhost");
      const exited = new Promise((r) => pc.child.once("exit", r));
      pc.child.kill("SIGTERM");
      await exited;
      const text = fs.readFileSync(pc.config, "utf8");
      fs.writeFileSync(pc.config, text.replace(`public_url = "${pc.base}"`, `public_url = "${origin}"`).replace('mfa = "optional"', 'passkeys = true\nmfa = "optional"'));
      await pc.spawn();
      pc.cli("users", "add", "pia", "--password", PASSWORD, "--permanent", "--attribute", "email=pia@example.com", "--attribute", "email_verified=true");

      const context = await browser.newContext({ locale: "en-US" });
      const page = await context.newPage();
      const cdp = await context.newCDPSession(page);
      await cdp.send("WebAuthn.enable");
      const { authenticatorId } = await cdp.send("WebAuthn.addVirtualAuthenticator", {
        options: { protocol: "ctap2", transport: "internal", hasResidentKey: true, hasUserVerification: true, isUserVerified: true },
      });

      await page.goto(`${origin}/app`);
      await page.waitForURL(/\/oauth2\/pool\/login\?req=/);
      assert.equal(await page.locator("#passkey-login button").isVisible(), true, "passkey button shown with script");
      await shot(page, "mfa-10-login-with-passkey-button");
      await signIn(page, "pia");
      await page.waitForURL(`${origin}/app`);

      await page.goto(`${origin}/oauth2/pool/passkeys`);
      assert.equal(await page.locator("h1").innerText(), "Passkeys");
      await page.fill('input[name="name"]', "Test laptop");
      await page.click('#passkey-register button[type="submit"]');
      await page.waitForURL(/\/passkeys\?notice=passkey_added/);
      assert.match(await page.locator("#passkey-list").innerText(), /Test laptop/);
      await shot(page, "mfa-11-passkey-added");
      const { credentials } = await cdp.send("WebAuthn.getCredentials", { authenticatorId });
      assert.equal(credentials.length, 1);
      assert.equal(credentials[0].isResidentCredential, true, "a discoverable credential");
      const listed = pc.cli("users", "passkeys", "pia");
      assert.match(listed, /Test laptop/);
      const api = await fetch(`${pc.admin}/pool/users/pia`, { headers: { authorization: `Bearer ${pc.adminToken}` } });
      const shown = await api.json();
      assert.equal(shown.mfa.passkeys.length, 1, JSON.stringify(shown));
      assert.equal(shown.mfa.passkeys[0].name, "Test laptop");

      // Sign out; sign in with the passkey alone, straight onto the step-up route.
      await page.goto(`${origin}/oauth2/sign_out?rd=/`);
      await page.waitForURL(/\/oauth2\/pool\/login\?req=/);
      await page.goto(`${origin}/admin/panel`);
      await page.waitForURL(/\/oauth2\/pool\/login\?req=/);
      await page.click("#passkey-login button");
      await page.waitForURL(`${origin}/admin/panel`);
      assert.match(await page.locator("#x-forwarded-email").innerText(), /pia@example.com/);
      await shot(page, "mfa-12-signed-in-with-passkey");
      const info = await (await page.request.get(`${origin}/oauth2/userinfo`)).json();
      assert.deepEqual(info.claims.amr, ["hwk", "mfa"]);
      const after = (await cdp.send("WebAuthn.getCredentials", { authenticatorId })).credentials[0];
      assert.ok(after.signCount >= 1, "the authenticator's counter moved");

      // Remove it: the authenticator still offers it, and the pool refuses it.
      await page.goto(`${origin}/oauth2/pool/passkeys`);
      await page.click('#passkey-list button[type="submit"]');
      await page.waitForURL(/\/passkeys\?notice=passkey_removed/);
      assert.match(await page.locator("main").innerText(), /no passkeys yet/);
      await page.goto(`${origin}/oauth2/sign_out?rd=/`);
      await page.waitForURL(/\/oauth2\/pool\/login\?req=/);
      await page.click("#passkey-login button");
      await page.waitForSelector("div.errors");
      assert.match(await page.locator("div.errors").innerText(), /could not be used/);
      await shot(page, "mfa-13-removed-passkey-refused");
    } finally {
      await pc.stop();
    }
  });
});
