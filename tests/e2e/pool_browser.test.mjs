// Browser journeys through the built-in user pool in real headless Chromium, each page saved
// as a screenshot under test-output/screenshots/.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { PASSWORD, Portcullis, launchChromium, shot } from "./harness.mjs";

let browser;
before(async () => {
  browser = await launchChromium();
});
after(async () => {
  await browser?.close();
});

async function newPage(locale = "en-US") {
  const ctx = await browser.newContext({ locale });
  return ctx.newPage();
}

async function signIn(page, username, password) {
  await page.fill('input[name="username"]', username);
  await page.fill('input[name="password"]', password);
  await page.click('button[type="submit"]');
}

describe("pool browser journeys", () => {
  test("sign up → confirm with the code from the log → upstream with identity headers → sign out", async () => {
    const pc = await Portcullis.start({ poolExtra: 'signup_attributes = ["name", "phone_number"]\ndefault_phone_region = "US"' });
    try {
      const page = await newPage();
      await page.goto(pc.url("/app"));
      await page.waitForURL(/\/oauth2\/pool\/login\?req=/);
      assert.equal(await page.locator("h1").innerText(), "Sign in");
      await shot(page, "journey-01-sign-in");
      await page.click('a[href*="/signup"]');
      await page.waitForURL(/\/oauth2\/pool\/signup/);
      await page.fill('input[name="username"]', "Kate");
      await page.fill('input[name="email"]', "kate@example.com");
      await page.fill('input[name="name"]', "Kate Example");
      await page.fill('input[name="phone_number"]', "not a number");
      await page.fill('input[name="password"]', "short");
      await page.click('button[type="submit"]');
      const errors = await page.locator(".errors").innerText();
      assert.match(errors, /Password: Does not meet these rules: at least 8 characters; an uppercase letter; a digit/);
      assert.match(errors, /Phone number: “not a number” is not a valid phone number\. Enter it like \+1 /);
      await shot(page, "journey-02-sign-up-errors");
      await page.fill('input[name="phone_number"]', "(201) 555-0123");
      await page.fill('input[name="password"]', PASSWORD);
      await shot(page, "journey-03-sign-up");
      await page.click('button[type="submit"]');
      await page.waitForURL(/\/oauth2\/pool\/confirm\?username=kate/);
      await shot(page, "journey-04-confirm");
      await page.fill('input[name="code"]', await pc.codeFor("kate", "signup"));
      await page.click('form[action*="/confirm"] button[type="submit"]');
      // Confirmed in the browser that signed up: signed in and on to the app, no second password.
      await page.waitForURL(pc.url("/app"));
      assert.equal(await page.locator("#x-forwarded-email").innerText(), "kate@example.com");
      assert.equal(await page.locator("#x-forwarded-preferred-username").innerText(), "kate");
      assert.match(await page.locator("#x-amzn-oidc-identity").innerText(), /^[0-9a-f-]{36}$/);
      assert.equal(await page.locator("#x-amzn-oidc-data").innerText(), "present");
      await shot(page, "journey-06-upstream");
      await page.click("#signout");
      await page.waitForURL(/\/oauth2\/pool\/login\?req=/);
      await shot(page, "journey-07-signed-out");
      // Signed out of the pool too: going back to the app asks for a password again.
      await page.goto(pc.url("/app"));
      await page.waitForURL(/\/oauth2\/pool\/login/);
    } finally {
      await pc.stop();
    }
  });

  test("wrong password five times → locked → admin unlock (CLI) → sign in", async () => {
    const pc = await Portcullis.start({ poolExtra: 'lockout = { initial = "5m" }' });
    try {
      pc.cli("users", "add", "leo", "--password", PASSWORD, "--permanent", "--attribute", "email=leo@example.com", "--attribute", "email_verified=true");
      const page = await newPage();
      await page.goto(pc.url("/"));
      await page.waitForURL(/\/oauth2\/pool\/login/);
      for (let i = 1; i <= 5; i++) {
        await signIn(page, i % 2 ? "leo" : "LEO", "Wrong-Password-1");
        await page.waitForSelector(".errors");
        const text = await page.locator(".errors").innerText();
        if (i < 5) assert.match(text.trim(), /^Incorrect user name or password\./);
        else assert.match(text, /Too many failed sign-in attempts\. Try again in 5 minutes\./);
      }
      await shot(page, "lockout-01-locked");
      await signIn(page, "leo", PASSWORD);
      assert.match(await page.locator(".errors").innerText(), /Too many failed sign-in attempts/);
      assert.match(pc.cli("users", "unlock", "Leo"), /unlocked/);
      await signIn(page, "leo", PASSWORD);
      await page.waitForURL(pc.url("/"));
      assert.equal(await page.locator("#x-forwarded-email").innerText(), "leo@example.com");
      await shot(page, "lockout-02-after-unlock");
    } finally {
      await pc.stop();
    }
  });

  test("forgot password → reset with the code → sign in", async () => {
    const pc = await Portcullis.start();
    try {
      pc.cli("users", "add", "mia", "--password", PASSWORD, "--permanent", "--attribute", "email=mia@example.com", "--attribute", "email_verified=true");
      const page = await newPage();
      await page.goto(pc.url("/"));
      await page.waitForURL(/\/oauth2\/pool\/login/);
      await page.click('a[href*="/forgot-password"]');
      await page.fill('input[name="username"]', "mia@example.com");
      await shot(page, "reset-01-forgot");
      await page.click('button[type="submit"]');
      await page.waitForURL(/\/oauth2\/pool\/reset-password/);
      await page.fill('input[name="code"]', await pc.codeFor("mia", "reset"));
      await page.fill('input[name="new_password"]', "Fresh-Password-8");
      await shot(page, "reset-02-reset");
      await page.click('button[type="submit"]');
      await page.waitForURL(/notice=password_reset/);
      await shot(page, "reset-03-sign-in-again");
      await page.fill('input[name="password"]', "Fresh-Password-8");
      await page.click('button[type="submit"]');
      await page.waitForURL(pc.url("/"));
      assert.equal(await page.locator("#x-forwarded-email").innerText(), "mia@example.com");
    } finally {
      await pc.stop();
    }
  });

  test("admin-created user with a temporary password must change it", async () => {
    const pc = await Portcullis.start();
    try {
      const created = JSON.parse(pc.cli("users", "add", "noah", "--attribute", "email=noah@example.com", "--attribute", "email_verified=true", "--group", "staff"));
      assert.equal(created.status, "FORCE_CHANGE_PASSWORD");
      const page = await newPage();
      await page.goto(pc.url("/reports"));
      await page.waitForURL(/\/oauth2\/pool\/login/);
      await signIn(page, "noah", created.temporary_password);
      await page.waitForSelector('input[name="new_password"]');
      assert.equal(await page.locator("h1").innerText(), "Choose a new password");
      await page.fill('input[name="new_password"]', "Chosen-Password-5");
      await shot(page, "forced-01-change");
      await page.click('button[type="submit"]');
      await page.waitForURL(pc.url("/reports"));
      assert.equal(await page.locator("#x-forwarded-groups").innerText(), "staff");
      await shot(page, "forced-02-upstream");
      assert.match(pc.cli("users", "show", "noah"), /"status": "CONFIRMED"/);
    } finally {
      await pc.stop();
    }
  });

  test("a Japanese browser gets Japanese pages", async () => {
    const pc = await Portcullis.start({ poolExtra: 'signup_attributes = ["phone_number"]\ndefault_phone_region = "JP"' });
    try {
      const page = await newPage("ja-JP");
      await page.goto(pc.url("/"));
      await page.waitForURL(/\/oauth2\/pool\/login/);
      assert.equal(await page.locator("h1").innerText(), "サインイン");
      assert.equal(await page.getAttribute("html", "lang"), "ja");
      await shot(page, "ja-01-sign-in");
      await signIn(page, "nobody", "Wrong-Password-1");
      assert.ok((await page.locator(".errors").innerText()).trim().startsWith("ユーザー名またはパスワードが正しくありません。"));
      await shot(page, "ja-02-wrong-password");
      await page.click('a[href*="/signup"]');
      await page.waitForURL(/signup/);
      assert.equal(await page.locator("h1").innerText(), "新規登録");
      await page.fill('input[name="username"]', "hanako");
      await page.fill('input[name="email"]', "hanako@example.jp");
      await page.fill('input[name="phone_number"]', "12");
      await page.fill('input[name="password"]', PASSWORD);
      await page.click('button[type="submit"]');
      assert.match(await page.locator(".errors").innerText(), /電話番号：「12」は有効な電話番号ではありません。\+81 90 1234 5678 の形式/);
      await shot(page, "ja-03-sign-up-error");
    } finally {
      await pc.stop();
    }
  });
});
