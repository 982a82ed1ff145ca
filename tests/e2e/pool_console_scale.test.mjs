// The admin console at scale in real headless Chromium: 120 imported users paged 50 at a time
// (next and previous), a filter, Post/Redirect/Get (a reload after creating a user creates
// nothing), a confirmation page before a delete, and the layout on a 375 px phone and on a
// desktop, in English and Japanese (the page never scrolls sideways). Screenshots go to
// /tmp/shots/console/ (SHOTS_DIR to change it).
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { PASSWORD, Portcullis, launchChromium } from "./harness.mjs";

const SHOTS = process.env.SHOTS_DIR ?? "/tmp/shots/console";
fs.mkdirSync(SHOTS, { recursive: true });
async function shot(page, name) {
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });
}

let browser;
let pc;
before(async () => {
  browser = await launchChromium();
  pc = await Portcullis.start({
    poolExtra: 'admin_console = true\nlockout = { max_attempts = 3, initial = "60s", max = "15m" }\n',
  });
  pc.cli("users", "add", "root", "--password", PASSWORD, "--permanent", "--attribute", "email=root@example.com", "--group", "admins");
  let csv = "cognito:username,email,email_verified,name\n";
  for (let i = 0; i < 120; i++) {
    const n = String(i).padStart(3, "0");
    csv += `u${n},u${n}@example.com,true,User ${n}\n`;
  }
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "pc-e2e-console-")), "users.csv");
  fs.writeFileSync(file, csv);
  pc.cli("users", "import", file);
  fs.rmSync(path.dirname(file), { recursive: true, force: true });
});
after(async () => {
  await browser?.close();
  await pc?.stop();
});

async function admin({ locale = "en-US", width = 1280, height = 900 } = {}) {
  const ctx = await browser.newContext({ locale, viewport: { width, height } });
  const page = await ctx.newPage();
  await page.goto(pc.url("/oauth2/pool/admin"));
  await page.fill('input[name="username"]', "root");
  await page.fill('input[name="password"]', PASSWORD);
  await page.click('form[action*="/login"] button[type="submit"]');
  await page.waitForURL(/\/admin\/users$/);
  return page;
}

const names = (page) => page.locator("table.users tbody td:first-child a").allInnerTexts();

async function noSidewaysScroll(page, what) {
  const { scroll, client } = await page.evaluate(() => ({
    scroll: document.documentElement.scrollWidth,
    client: document.documentElement.clientWidth,
  }));
  assert.ok(scroll <= client, `${what}: the page scrolls sideways (${scroll} > ${client})`);
}

describe("admin console at scale", () => {
  test("pages of 50: next, next, previous; a filter", async () => {
    const page = await admin();
    const first = await names(page);
    assert.equal(first.length, 50);
    assert.equal(first[0], "root");
    assert.equal(await page.locator('a[rel="prev"]').count(), 0);
    await shot(page, "scale-01-desktop-first-page");
    await page.click('a[rel="next"]');
    await page.waitForURL(/after=/);
    const second = await names(page);
    assert.equal(second.length, 50);
    assert.ok(!second.some((n) => first.includes(n)), "no user twice");
    await page.click('a[rel="next"]');
    const third = await names(page);
    assert.equal(third.length, 21);
    assert.equal(await page.locator('a[rel="next"]').count(), 0);
    await shot(page, "scale-02-desktop-last-page");
    await page.click('a[rel="prev"]');
    await page.waitForURL(/before=/);
    assert.deepEqual(await names(page), second);

    await page.fill('input[name="q"]', "u11");
    await page.click('form.search button[type="submit"]');
    await page.waitForURL(/q=u11/);
    const found = await names(page);
    assert.equal(found.length, 10);
    assert.ok(found.every((n) => n.startsWith("u11")));
    // Sorted by creation, newest first, from the column header.
    await page.goto(pc.url("/oauth2/pool/admin/users"));
    await page.click('th a[href*="sort=created"]');
    await page.waitForURL(/sort=created/);
    assert.equal((await names(page)).length, 50);
    await shot(page, "scale-03-desktop-sorted-by-created");
  });

  test("create: a reload does not create again; delete asks first", async () => {
    const page = await admin();
    await page.click('a[href$="/admin/users/new"]');
    await page.fill('input[name="username"]', "dora");
    await page.fill('input[name="email"]', "dora@example.com");
    await page.click('form[action$="/users/new"] button[type="submit"]');
    await page.waitForURL(/\/admin\/user\?u=dora$/);
    assert.match(await page.locator(".notice").innerText(), /Temporary password \(shown once\): \S+/);
    await shot(page, "scale-04-created");
    // A reload is a GET of the user's page: no form sent again, and the password is gone.
    const posts = [];
    page.on("request", (r) => r.method() === "POST" && posts.push(r.url()));
    await page.reload();
    assert.deepEqual(posts, []);
    assert.equal(await page.locator(".notice").count(), 0);
    assert.doesNotMatch(await page.locator("main").innerText(), /already exists/);

    await page.click('form[action$="/user/delete"] button');
    await page.waitForSelector("#question");
    assert.match(await page.locator("#question").innerText(), /Delete the user dora/);
    await shot(page, "scale-05-confirm-delete");
    assert.match(pc.cli("users", "show", "dora"), /dora@example.com/);
    await page.click("#confirm");
    await page.waitForURL(/\/admin\/users\?notice=console_done_deleted/);
    assert.match(await page.locator(".notice").innerText(), /User deleted/);
    assert.throws(() => pc.cli("users", "show", "dora"));
  });

  for (const [locale, tag] of [["en-US", "en"], ["ja-JP", "ja"]]) {
    test(`phone (375 px) and desktop, ${tag}`, async () => {
      const phone = await admin({ locale, width: 375, height: 812 });
      await noSidewaysScroll(phone, `users list on a phone (${tag})`);
      await shot(phone, `scale-06-phone-users-${tag}`);
      await phone.screenshot({ path: path.join(SHOTS, `scale-06-phone-users-top-${tag}.png`) });
      await phone.goto(pc.url("/oauth2/pool/admin/user?u=u001"));
      await noSidewaysScroll(phone, `user page on a phone (${tag})`);
      await shot(phone, `scale-07-phone-user-${tag}`);
      await phone.goto(pc.url("/oauth2/pool/admin/audit"));
      await noSidewaysScroll(phone, `audit log on a phone (${tag})`);
      await shot(phone, `scale-08-phone-audit-${tag}`);
      const desk = await admin({ locale });
      const text = await desk.locator("main").innerText();
      if (tag === "ja") {
        assert.match(text, /パスワードの再設定が必要/);
        assert.match(text, /次へ/);
      } else {
        assert.match(text, /Password reset required/);
        assert.match(text, /Next/);
      }
      assert.doesNotMatch(text, /RESET_REQUIRED/);
      await shot(desk, `scale-09-desktop-users-${tag}`);
    });
  }
});
