// Every flow ends where it started, in real headless Chromium: sign-up → confirmation → signed in
// on the app with no extra step; federation (the real oidc-provider IdP of tests/idp) with
// `mfa = "required"` → set-up → back on the app; a step-up without a second factor → set-up →
// the page; sign-up with every field wrong → every problem next to its field, by label, in
// English and Japanese. Screenshots (desktop and phone) go to /tmp/shots/flows/.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { PASSWORD, Portcullis, base32Decode, freePort, launchChromium, startIdp } from "./harness.mjs";

const SHOTS = "/tmp/shots/flows";
fs.mkdirSync(SHOTS, { recursive: true });
const SECRET = "flows-federation-secret-0123";
const PHONE = { width: 390, height: 844 };

let browser;
before(async () => {
  browser = await launchChromium();
});
after(async () => {
  await browser?.close();
});

async function newPage(locale = "en-US", viewport = undefined) {
  const ctx = await browser.newContext({ locale, ...(viewport ? { viewport } : {}) });
  return ctx.newPage();
}

async function shot(page, name) {
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });
}

/** RFC 6238 TOTP (SHA-1, 6 digits) for the current 30-second step. */
function totpNow(secret) {
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(Date.now() / 1000 / 30)));
  const h = crypto.createHmac("sha1", secret).update(counter).digest();
  const off = h[h.length - 1] & 15;
  return String((h.readUInt32BE(off) & 0x7fffffff) % 1_000_000).padStart(6, "0");
}

/** On the set-up page: reads the secret, types a code, saves nothing but presses Continue. */
async function setUpTotp(page, name) {
  await page.waitForSelector("#secret");
  await shot(page, `${name}-setup`);
  const secret = base32Decode(await page.locator("#secret").innerText());
  await page.fill('input[name="code"]', totpNow(secret));
  await page.click('form[action*="/mfa/setup"] button[type="submit"]');
  await page.waitForSelector("#recovery-codes");
  await page.click('form[action*="/mfa/continue"] button[type="submit"]');
}

async function identity(page) {
  return {
    path: new URL(page.url()).pathname + new URL(page.url()).search,
    user: await page.locator("#x-forwarded-preferred-username").innerText(),
  };
}

describe("every flow ends on the app it started from", () => {
  let pc;
  before(async () => {
    pc = await Portcullis.start({
      poolExtra: `mfa = "optional"
signup_attributes = ["name", "phone_number"]
default_phone_region = "JP"`,
    });
    // A step-up route in front of the catch-all.
    const exited = new Promise((r) => pc.child.once("exit", r));
    pc.child.kill("SIGTERM");
    await exited;
    const text = fs.readFileSync(pc.config, "utf8");
    const route = `[[routes]]\npath = "/admin"\nupstream = "http://127.0.0.1:${pc.upstream.port}"\nprovider = "pool"\nallow_claims = { amr = "mfa" }\n`;
    fs.writeFileSync(pc.config, text.replace("[[routes]]\n", `${route}[[routes]]\n`));
    await pc.spawn();
  });
  after(async () => {
    await pc?.stop();
  });

  test("sign-up → confirmation → signed in on the app, no second password", async () => {
    const page = await newPage();
    await page.goto(pc.url("/reports?month=12"));
    await page.waitForURL(/\/oauth2\/pool\/login\?req=/);
    await page.click('a[href*="/signup"]');
    await page.fill('input[name="username"]', "sora");
    await page.fill('input[name="email"]', "sora@example.com");
    await page.fill('input[name="password"]', PASSWORD);
    await page.click('button[type="submit"]');
    await page.waitForURL(/\/oauth2\/pool\/confirm\?/);
    await shot(page, "signup-01-confirm");
    // One instruction line, not two.
    assert.equal(await page.locator("main > p:not(.brand-title)").count(), 1);
    await page.fill('input[name="code"]', await pc.codeFor("sora", "signup"));
    await page.click('form[action*="/confirm"] button[type="submit"]');
    await page.waitForURL(pc.url("/reports?month=12"));
    await shot(page, "signup-02-app");
    const id = await identity(page);
    assert.equal(id.user, "sora");
  });

  test("step-up without a second factor → set-up → the page (never the 403 again)", async () => {
    pc.cli("users", "add", "kai", "--password", PASSWORD, "--permanent", "--attribute", "email=kai@example.com");
    const page = await newPage();
    await page.goto(pc.url("/hello"));
    await page.waitForURL(/\/oauth2\/pool\/login\?req=/);
    await page.fill('input[name="username"]', "kai");
    await page.fill('input[name="password"]', PASSWORD);
    await page.click('form[action*="/login"] button[type="submit"]');
    await page.waitForURL(pc.url("/hello"));
    const r = await page.goto(pc.url("/admin/reports"));
    assert.equal(r.status(), 403);
    await shot(page, "stepup-01-403");
    await page.click("a[href*='/oauth2/start']");
    await page.waitForURL(/\/oauth2\/pool\/login\?req=/);
    assert.equal(await page.locator('input[name="username"]').inputValue(), "kai", "the user name is filled in");
    await shot(page, "stepup-02-sign-in-again");
    await page.fill('input[name="password"]', PASSWORD);
    await page.click('form[action*="/login"] button[type="submit"]');
    await page.waitForURL(/\/oauth2\/pool\/mfa\/setup\?req=/);
    assert.match(await page.locator(".intro").innerText(), /This page needs two-step verification/);
    await setUpTotp(page, "stepup-03");
    await page.waitForURL(pc.url("/admin/reports"));
    await shot(page, "stepup-04-page");
    assert.equal((await identity(page)).user, "kai");
  });

  for (const [locale, lang, labels, region] of [
    ["en-US", "en", ["User name", "Email", "Full name", "Phone number", "Password"], "Japan"],
    ["ja-JP", "ja", ["ユーザー名", "メールアドレス", "氏名", "電話番号", "パスワード"], "日本"],
  ]) {
    for (const [viewport, form] of [[undefined, "desktop"], [PHONE, "phone"]]) {
      test(`sign-up with every field wrong (${lang}, ${form}): all problems at their fields, by label`, async () => {
        pc.cli("users", "add", `taken-${lang}-${form}`, "--password", PASSWORD, "--permanent", "--attribute", `email=taken-${lang}-${form}@example.com`);
        const page = await newPage(locale, viewport);
        await page.goto(pc.url("/oauth2/pool/signup"));
        await page.fill('input[name="username"]', `taken-${lang}-${form}`);
        await page.fill('input[name="email"]', "not-an-email");
        await page.fill('input[name="name"]', "x".repeat(3000));
        await page.fill('input[name="phone_number"]', "12345");
        await page.fill('input[name="password"]', "weak");
        // No browser bubble holds the form back: the server answers with every problem.
        await page.click('form[action*="/signup"] button[type="submit"]');
        await page.waitForSelector(".errors");
        await shot(page, `signup-errors-${lang}-${form}`);
        const list = await page.locator(".errors li").allInnerTexts();
        assert.equal(list.length, 5, list.join("\n"));
        labels.forEach((label, i) => assert.ok(list[i].startsWith(label), `${lang}: line ${i} is ${list[i]}, expected ${label}`));
        const all = list.join("\n");
        for (const key of ["username", "email", "phone_number", "password", "name"]) {
          assert.ok(!list.some((l) => l.startsWith(`${key}:`)), `${lang}: the key ${key} names a line in ${all}`);
        }
        assert.ok(all.includes(region), `${lang}: region named in ${all}`);
        for (const f of ["username", "email", "name", "phone_number", "password"]) {
          assert.equal(await page.locator(`#${f}`).getAttribute("aria-invalid"), "true", `${lang}: ${f}`);
          const next = page.locator(`#${f} + p.field-error`);
          assert.equal(await next.count(), 1, `${lang}: ${f}'s message is right under it`);
        }
      });
    }
  }
});

describe("federation with mfa = required ends on the app", () => {
  let pc;
  let idp;
  before(async () => {
    const port = await freePort();
    idp = await startIdp(`http://127.0.0.1:${port}/oauth2/pool/federation/callback`, SECRET);
    pc = await Portcullis.start({
      port,
      poolExtra: `mfa = "required"
[[pool.identity_providers]]
name = "corp"
display_name = "Corp SSO"
issuer = "${idp.issuer}"
client_id = "pool"
client_secret = "${SECRET}"
attribute_mapping = { email = "email", email_verified = "email_verified", name = "name" }
`,
    });
  });
  after(async () => {
    await pc?.stop();
    idp?.child.kill("SIGTERM");
  });

  for (const [locale, viewport, name] of [["en-US", undefined, "en-desktop"], ["ja-JP", PHONE, "ja-phone"]]) {
    const login = name === "en-desktop" ? "bob" : "alice";
    test(`Continue with Corp SSO → TOTP set-up → the app (${name})`, async () => {
      const page = await newPage(locale, viewport);
      await page.goto(pc.url(`/inbox?tab=${name}`));
      await page.waitForURL(/\/oauth2\/pool\/login\?req=/);
      await shot(page, `federation-${name}-01-sign-in`);
      await page.click("a.button.federated-corp");
      await page.waitForURL(/\/interaction\//);
      await page.fill('input[name="login"]', login);
      await page.click('form[action$="/login"] button[type="submit"]');
      await page.waitForURL(/\/oauth2\/pool\/mfa\/setup/);
      await setUpTotp(page, `federation-${name}-02`);
      await page.waitForURL(pc.url(`/inbox?tab=${name}`));
      await shot(page, `federation-${name}-03-app`);
      assert.equal((await identity(page)).user, `corp_${login}`);
    });
  }
});
