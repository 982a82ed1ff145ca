// The account home in real headless Chromium: sign in to the app → the account home (linked
// back to the app) → edit the profile → change the email address (the code read from the log)
// → add, rename and remove a passkey (Chromium's virtual authenticator) → sign out another
// browser (its next request is signed out) → delete the account (sessions end). Screenshots at
// desktop and phone size, in English and Japanese, go to /tmp/shots/home/.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { PASSWORD, Portcullis, launchChromium } from "./harness.mjs";

const SHOTS = process.env.ACCOUNT_SHOTS ?? "/tmp/shots/home";
fs.mkdirSync(SHOTS, { recursive: true });
const DESKTOP = { width: 1280, height: 900 };
const PHONE = { width: 390, height: 844 };

let browser;
before(async () => {
  browser = await launchChromium();
});
after(async () => {
  await browser?.close();
});

async function snap(page, name) {
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });
}

/** Serves the pool on http://localhost (WebAuthn needs a host name for the RP id). */
async function onLocalhost(pc) {
  const origin = pc.base.replace("127.0.0.1", "localhost");
  const exited = new Promise((r) => pc.child.once("exit", r));
  pc.child.kill("SIGTERM");
  await exited;
  const text = fs.readFileSync(pc.config, "utf8");
  // Passkeys need a domain name (check refuses them on 127.0.0.1): on with localhost.
  fs.writeFileSync(
    pc.config,
    text.replace(`public_url = "${pc.base}"`, `public_url = "${origin}"`).replace("[pool]\n", "[pool]\npasskeys = true\n"),
  );
  await pc.spawn();
  return origin;
}

async function signInToApp(page, origin, username) {
  await page.goto(`${origin}/app`);
  await page.waitForURL(/\/oauth2\/pool\/login\?req=/);
  await page.fill('input[name="username"]', username);
  await page.fill('input[name="password"]', PASSWORD);
  await page.click('button[type="submit"]');
  await page.waitForURL(`${origin}/app`);
}

describe("the account home", () => {
  test("profile → email change → passkey → sign out another device → delete the account", async () => {
    const pc = await Portcullis.start({
      poolExtra: 'mfa = "optional"\nsignup_attributes = ["name", "phone_number"]',
    });
    try {
      const origin = await onLocalhost(pc);
      pc.cli("users", "add", "ava", "--password", PASSWORD, "--permanent", "--attribute", "email=ava@example.com", "--attribute", "email_verified=true");

      const a = await browser.newContext({ locale: "en-US", viewport: DESKTOP });
      const page = await a.newPage();
      const cdp = await a.newCDPSession(page);
      await cdp.send("WebAuthn.enable");
      await cdp.send("WebAuthn.addVirtualAuthenticator", {
        options: { protocol: "ctap2", transport: "internal", hasResidentKey: true, hasUserVerification: true, isUserVerified: true },
      });
      await signInToApp(page, origin, "ava");

      // The account home, linked back to the app it was opened from.
      await page.goto(`${origin}/oauth2/pool/account?rd=%2Fapp`);
      assert.equal(await page.locator("h1").innerText(), "Your account");
      assert.equal(await page.locator("p.back a").getAttribute("href"), `${origin}/app`);
      await snap(page, "account-01-home-en-desktop");

      // Profile.
      await page.fill("#f-name", "Ava Example");
      await page.fill("#f-phone_number", "+81 90 1234 5678");
      await page.click('form[action$="/account/profile"] button[type="submit"]');
      await page.waitForURL(/notice=acct_profile_saved/);
      assert.equal(await page.inputValue("#f-name"), "Ava Example");
      assert.match(await page.locator(".notice").innerText(), /profile was saved/);

      // Email: the new address waits for its code; the old one stays until then.
      await page.fill("#f-email", "ava@new.example");
      await page.click('form[action$="/account/profile"] button[type="submit"]');
      await page.waitForURL(/notice=acct_email_code_sent/);
      assert.match(await page.locator("main").innerText(), /ava@example\.com/);
      await snap(page, "account-02-email-code-sent-en-desktop");
      const code = await pc.codeFor("ava", "email_change");
      await page.fill("#code", code);
      await page.click('form[action$="/account/verify-email"] button[type="submit"]');
      await page.waitForURL(/notice=acct_email_changed/);
      assert.match(await page.locator("main").innerText(), /ava@new\.example/);

      // A passkey: added on the passkeys page (linked from here), renamed and removed here.
      await page.click('a[href$="/passkeys"]');
      await page.fill('input[name="name"]', "Laptop");
      await page.click('#passkey-register button[type="submit"]');
      await page.waitForURL(/\/passkeys\?notice=passkey_added/);
      await page.click('a[href$="/account"]');
      await page.waitForURL(/\/oauth2\/pool\/account$/);
      assert.match(await page.locator("ul.passkeys").first().innerText(), /Laptop/);
      await page.fill('form[action$="/account/passkeys/rename"] input[name="name"]', "Work laptop");
      await page.click('form[action$="/account/passkeys/rename"] button');
      await page.waitForURL(/notice=acct_passkey_renamed/);
      assert.match(await page.locator("main").innerText(), /Work laptop/);
      await page.click('form[action$="/account/passkeys/remove"] button');
      assert.match(await page.locator(".confirm").innerText(), /Remove the passkey “Work laptop”\?/);
      await snap(page, "account-03-confirm-remove-passkey-en-desktop");
      await page.click('.confirm button[type="submit"]');
      await page.waitForURL(/notice=acct_passkey_removed/);
      assert.match(await page.locator("main").innerText(), /No passkeys yet/);

      // Another browser (a phone, in Japanese) signed in as ava; signed out from here.
      const b = await browser.newContext({ locale: "ja-JP", viewport: PHONE, extraHTTPHeaders: { "Accept-Language": "ja" } });
      const phone = await b.newPage();
      await signInToApp(phone, origin, "ava");
      await phone.goto(`${origin}/oauth2/pool/account`);
      assert.equal(await phone.locator("h1").innerText(), "アカウント");
      await snap(phone, "account-04-home-ja-phone");
      await phone.setViewportSize(DESKTOP);
      await snap(phone, "account-07-home-ja-desktop");
      await page.reload();
      const other = page.locator("ul.sessions li").filter({ hasNotText: "This device" });
      assert.equal(await other.count(), 1);
      await snap(page, "account-05-two-sessions-en-desktop");
      await other.locator("button").click();
      await page.waitForURL(/notice=acct_session_ended/);
      await phone.goto(`${origin}/app`);
      await phone.waitForURL(/\/oauth2\/pool\/login\?req=/);
      const r = await phone.request.get(`${origin}/oauth2/userinfo`);
      assert.equal(r.status(), 401, "the phone's app session ended");

      // The same page at phone size (looked at by hand).
      await page.setViewportSize(PHONE);
      await snap(page, "account-06-home-en-phone");
      await page.setViewportSize(DESKTOP);

      // Delete the account: confirmation with the password, then every session ends.
      await page.goto(`${origin}/oauth2/pool/account`);
      await page.click('form[action$="/account/delete"] button');
      await page.fill("#confirm-password", PASSWORD);
      await snap(page, "account-08-confirm-delete-en-desktop");
      await page.click('.confirm button[type="submit"]');
      assert.equal(await page.locator("h1").innerText(), "Account deleted");
      await snap(page, "account-09-deleted-en-desktop");
      assert.throws(() => pc.cli("users", "show", "ava"));
      await page.goto(`${origin}/app`);
      await page.waitForURL(/\/oauth2\/pool\/login\?req=/);
      await a.close();
      await b.close();
    } finally {
      await pc.stop();
    }
  });
});
