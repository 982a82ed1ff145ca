// The admin console in real headless Chromium: a non-admin is refused; an admin signs in
// through the pool and lands in the console; creating a user with missing attributes shows
// every error at once, then succeeds with a phone number as typed; a locked-out user is
// unlocked with one click; disable ends the user's proxy session; the audit log shows each
// action. Every page is saved as a
// screenshot under test-output/screenshots/.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { Browserless, PASSWORD, Portcullis, formOf, launchChromium, shot } from "./harness.mjs";

let browser;
let pc;

before(async () => {
  browser = await launchChromium();
  pc = await Portcullis.start({
    poolExtra: `admin_console = true
required_attributes = ["email", "name", "phone_number"]
default_phone_region = "JP"
lockout = { max_attempts = 3, initial = "60s", max = "15m" }
`,
  });
  const add = (name, email, ...groups) =>
    pc.cli("users", "add", name, "--password", PASSWORD, "--permanent", "--attribute", `email=${email}`, "--attribute", "email_verified=true", "--attribute", "name=Test User", "--attribute", "phone_number=+81 90 1234 5678", ...groups.flatMap((g) => ["--group", g]));
  add("root", "root@example.com", "admins");
  add("bob", "bob@example.com", "staff");
  add("carol", "carol@example.com");
});
after(async () => {
  await browser?.close();
  await pc?.stop();
});

async function newPage(locale = "en-US") {
  const ctx = await browser.newContext({ locale });
  return ctx.newPage();
}

async function signIn(page, username) {
  await page.fill('input[name="username"]', username);
  await page.fill('input[name="password"]', PASSWORD);
  await page.click('form[action*="/login"] button[type="submit"]');
}

describe("admin console", () => {
  test("a non-admin is refused", async () => {
    const page = await newPage();
    await page.goto(pc.url("/oauth2/pool/admin"));
    await page.waitForURL(/\/oauth2\/pool\/login$/);
    await signIn(page, "bob");
    await page.waitForURL(/\/oauth2\/pool\/admin$/);
    const body = await page.locator("main").innerText();
    assert.match(body, /Only members of the administrators' group/);
    assert.doesNotMatch(body, /carol@example.com/);
    await shot(page, "console-01-non-admin-refused");
  });

  test("create with missing attributes → every error; then correctly, phone as typed", async () => {
    const page = await newPage();
    await page.goto(pc.url("/oauth2/pool/admin"));
    await signIn(page, "root");
    await page.waitForURL(/\/oauth2\/pool\/admin\/users$/);
    assert.match(await page.locator("table.list").innerText(), /carol@example.com/);
    await shot(page, "console-02-users");
    await page.click('a[href$="/admin/users/new"]');
    await page.waitForURL(/\/admin\/users\/new$/);
    for (const name of ["email", "name", "phone_number"]) assert.equal(await page.locator(`input[name="${name}"]`).count(), 1, name);
    await page.fill('input[name="username"]', "dana");
    await page.fill('input[name="email"]', "dana@");
    await page.fill('input[name="phone_number"]', "12");
    await page.click('form[action$="/users/new"] button[type="submit"]');
    const errors = await page.locator(".errors").innerText();
    assert.match(errors, /email: /);
    assert.match(errors, /name: required/);
    assert.match(errors, /phone_number: “12” is not a valid phone number\. Enter it like \+81 90/);
    await shot(page, "console-03-create-errors");
    await page.fill('input[name="email"]', "dana@example.com");
    await page.fill('input[name="name"]', "Dana Example");
    await page.fill('input[name="phone_number"]', "090-1234-5678");
    await page.click('form[action$="/users/new"] button[type="submit"]');
    await page.waitForSelector(".notice");
    assert.match(await page.locator(".notice").innerText(), /Temporary password \(shown once\): \S+/);
    assert.match(await page.locator("main").innerText(), /\+819012345678/);
    assert.match(await page.locator("main").innerText(), /Must change password/);
    await shot(page, "console-04-created");
  });

  test("a locked-out user is unlocked with one click; disable; the audit log", async () => {
    // Three wrong passwords lock carol out.
    const b = new Browserless();
    for (let i = 0; i < 4; i++) {
      let r = await b.fetch(pc.url("/oauth2/pool/login"));
      const { action, csrf } = formOf(await r.text(), pc.base, "/login");
      r = await b.post(action, { csrf_token: csrf, username: "carol", password: "Wrong-Password-1" });
      if (i === 3) assert.equal(r.status, 429);
    }
    const page = await newPage();
    await page.goto(pc.url("/oauth2/pool/admin"));
    await signIn(page, "root");
    await page.waitForURL(/\/admin\/users$/);
    await page.fill('input[name="q"]', "carol");
    await page.click('form.search button[type="submit"]');
    await page.click('a:text-is("carol")');
    await page.waitForURL(/\/admin\/user\?u=carol/);
    assert.match(await page.locator("#lockout").innerText(), /Locked: \d+ more seconds \(\d+ failed sign-ins\)/);
    await shot(page, "console-05-locked");
    await page.click('form[action$="/user/unlock"] button');
    await page.waitForURL(/notice=console_done_unlocked/);
    assert.equal(await page.locator("#lockout").innerText(), "Not locked.");
    await shot(page, "console-06-unlocked");

    // Carol, unlocked, signs in to the app behind the proxy.
    const carol = await newPage();
    await carol.goto(pc.url("/app"));
    await carol.waitForURL(/\/oauth2\/pool\/login\?req=/);
    await signIn(carol, "carol");
    await carol.waitForURL(pc.url("/app"));
    assert.equal(await carol.locator("#x-forwarded-email").innerText(), "carol@example.com");

    await page.click('form[action$="/user/disable"] button');
    // Disabling asks first.
    await page.waitForSelector("#question");
    await page.click("#confirm");
    await page.waitForURL(/notice=console_done_disabled/);
    assert.match(await page.locator("main").innerText(), /Disabled/);
    await shot(page, "console-07-disabled");
    // Her proxy session has ended with her pool sessions: the app sends her to sign in again.
    await carol.goto(pc.url("/app"));
    await carol.waitForURL(/\/oauth2\/pool\/login\?req=/);
    await shot(carol, "console-07b-disabled-user-signed-out");
    // Disabled: the hosted sign-in refuses her now.
    let r = await b.fetch(pc.url("/oauth2/pool/login"));
    const { action, csrf } = formOf(await r.text(), pc.base, "/login");
    r = await b.post(action, { csrf_token: csrf, username: "carol", password: PASSWORD });
    assert.equal(r.status, 403);

    await page.click('a[href$="/admin/audit"]');
    await page.waitForURL(/\/admin\/audit$/);
    const log = await page.locator("table.audit").innerText();
    for (const action of ["Created user", "Unlocked user", "Disabled user"]) assert.match(log, new RegExp(`console \\(root\\)\\s+${action}`));
    await shot(page, "console-08-audit");
  });

  test("Japanese console", async () => {
    const page = await newPage("ja-JP");
    await page.goto(pc.url("/oauth2/pool/admin"));
    await signIn(page, "root");
    await page.waitForURL(/\/admin\/users$/);
    assert.equal(await page.locator("h1").innerText(), "ユーザー");
    await page.goto(pc.url("/oauth2/pool/admin/user?u=carol"));
    assert.match(await page.locator("main").innerText(), /ロックアウト/);
    await shot(page, "console-09-user-ja");
  });
});
