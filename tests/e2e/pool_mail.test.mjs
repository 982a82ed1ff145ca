// Emails people read, in real headless Chromium with a real SMTP catcher (nodemailer's
// smtp-server): an administrator invites a user; the invitation email names the site, carries
// a link on the public URL and the code; the link opens the page with the code filled in; the
// invitee chooses a password, is told it was "set", and signs in. Then the proxy's own pages
// (403 and 502) in English and Japanese, with the pool's look and the language switch,
// screenshotted to /tmp/shots/mail/.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { SMTPServer } from "smtp-server";
import { Browserless, PASSWORD, Portcullis, formOf, freePort, identityUpstream, launchChromium } from "./harness.mjs";

const SHOTS = "/tmp/shots/mail";
let smtp;
let pc;
let browser;
const inbox = [];

before(async () => {
  fs.mkdirSync(SHOTS, { recursive: true });
  const port = await freePort();
  const dead = await freePort();
  smtp = new SMTPServer({
    secure: false,
    disabledCommands: ["STARTTLS"],
    authOptional: true,
    onData(stream, session, cb) {
      const chunks = [];
      stream.on("data", (c) => chunks.push(c));
      stream.on("end", () => {
        inbox.push({ to: session.envelope.rcptTo.map((r) => r.address), from: session.envelope.mailFrom.address, raw: Buffer.concat(chunks).toString("utf8") });
        cb();
      });
    },
  });
  await new Promise((r) => smtp.listen(port, "127.0.0.1", r));
  // The harness's configuration, with two routes ahead of its catch-all "/" (the first
  // matching route wins): /staff needs the group "staff" (a 403 for others), /down goes to a
  // port nothing listens on (a 502).
  pc = new Portcullis();
  pc.dir = fs.mkdtempSync(path.join(os.tmpdir(), "pc-e2e-"));
  pc.upstream = await identityUpstream();
  pc.port = await freePort();
  pc.adminPort = await freePort();
  pc.base = `http://127.0.0.1:${pc.port}`;
  pc.admin = `http://127.0.0.1:${pc.adminPort}`;
  pc.config = path.join(pc.dir, "portcullis.toml");
  pc.log = path.join(pc.dir, "server.log");
  fs.writeFileSync(
    pc.config,
    `public_url = "${pc.base}"
[server]
listen = ["127.0.0.1:${pc.port}"]
admin_listen = "127.0.0.1:${pc.adminPort}"
[session]
secrets = ["e2e-secret-e2e-secret-e2e-secret-0000"]
[log]
format = "json"
level = "info"
[[routes]]
path = "/staff"
upstream = "http://127.0.0.1:${pc.upstream.port}"
provider = "pool"
allow_groups = ["staff"]
[[routes]]
path = "/down"
upstream = "http://127.0.0.1:${dead}"
on_unauthenticated = "allow"
[[routes]]
path = "/"
upstream = "http://127.0.0.1:${pc.upstream.port}"
provider = "pool"
[pool]
database = "sqlite://${path.join(pc.dir, "pool.db")}"
delivery = "smtp"
admin_console = true
invitation_ttl = "7d"
ui = { title = "Example Shop" }
[pool.smtp]
host = "127.0.0.1"
port = ${port}
tls = "none"
from = "Example Shop <no-reply@example.com>"
`,
  );
  await pc.spawn();
  browser = await launchChromium();
});
after(async () => {
  await browser?.close();
  await pc?.stop();
  await new Promise((r) => smtp?.close(r));
});

/** Quoted-printable soft breaks and escapes undone (the text part of a message). */
function unqp(raw) {
  return raw.replace(/=\r?\n/g, "").replace(/=([0-9A-F]{2})/g, (_, h) => String.fromCharCode(parseInt(h, 16)));
}

async function mail(n) {
  const deadline = Date.now() + 15_000;
  while (inbox.length < n) {
    if (Date.now() > deadline) throw new Error(`no mail #${n}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return inbox[n - 1];
}

async function pageIn(locale) {
  const ctx = await browser.newContext({ locale, viewport: { width: 900, height: 700 } });
  return ctx.newPage();
}

describe("emails people read", () => {
  test("an invitation email's link → choose a password → signed in", async () => {
    pc.cli("users", "add", "root", "--password", PASSWORD, "--permanent", "--attribute", "email=root@example.com", "--group", "admins");
    const admin = new Browserless();
    let r = await admin.fetch(pc.url("/oauth2/pool/login"));
    let f = formOf(await r.text(), pc.base, "/login");
    r = await admin.post(f.action, { csrf_token: f.csrf, username: "root", password: PASSWORD });
    assert.equal(r.status, 200);
    r = await admin.fetch(pc.url("/oauth2/pool/admin/users/new"));
    f = formOf(await r.text(), pc.base, "/users/new");
    r = await admin.post(f.action, { csrf_token: f.csrf, username: "erin", email: "erin@example.com", mode: "invitation" });
    // Post/Redirect/Get: the console sends the browser on to the new user's page.
    assert.equal(r.status, 302);

    const m = await mail(1);
    assert.deepEqual(m.to, ["erin@example.com"]);
    assert.equal(m.from, "no-reply@example.com");
    assert.match(m.raw, /^From: "?Example Shop"? <no-reply@example\.com>/m);
    assert.match(m.raw, /^Subject: You are invited to Example Shop/m);
    assert.match(m.raw, /multipart\/alternative/);
    const text = unqp(m.raw);
    assert.match(text, /valid for 7 days/);
    const link = /(http:\/\/[^\s"<]+reset-password\?username=erin&code=(\d{6}))/.exec(text);
    assert.ok(link, text);
    assert.ok(link[1].startsWith(pc.base), "the link is on the public URL");
    assert.ok(text.includes(`this code on the page: ${link[2]}`), text);

    const page = await pageIn("en-US");
    await page.goto(link[1]);
    assert.equal(await page.inputValue('input[name="code"]'), link[2], "the code is filled in");
    await page.screenshot({ path: path.join(SHOTS, "invite-01-choose-password.png"), fullPage: true });
    await page.fill('input[name="new_password"]', "Erin-Chose-42");
    await page.click('button[type="submit"]');
    await page.waitForURL(/\/oauth2\/pool\/login/);
    assert.match(await page.locator(".notice").innerText(), /Your password has been set/);
    await page.screenshot({ path: path.join(SHOTS, "invite-02-password-set.png"), fullPage: true });
    await page.fill('input[name="username"]', "erin");
    await page.fill('input[name="password"]', "Erin-Chose-42");
    await page.click('button[type="submit"]');
    await page.waitForLoadState();
    assert.doesNotMatch(await page.content(), /Incorrect user name or password/);

    // Signed in, but not in "staff": the proxy's 403, in the pool's look, English then Japanese.
    let resp = await page.goto(pc.url("/staff/reports"));
    assert.equal(resp.status(), 403);
    assert.equal(await page.locator("h1").innerText(), "Access denied");
    await page.screenshot({ path: path.join(SHOTS, "proxy-403-en.png"), fullPage: true });
    await page.click('a[hreflang="ja"]');
    await page.waitForURL(/lang=ja/);
    assert.equal(await page.locator("h1").innerText(), "アクセスできません");
    await page.screenshot({ path: path.join(SHOTS, "proxy-403-ja.png"), fullPage: true });
    // The cookie remembers the choice, on the pool's pages too.
    await page.goto(pc.url("/oauth2/pool/change-password"));
    assert.equal(await page.getAttribute("html", "lang"), "ja");
  });

  test("the proxy's 502 in English and Japanese", async () => {
    for (const [locale, lang, title] of [["en-US", "en", "Bad gateway"], ["ja-JP", "ja", "アプリケーションに接続できません"]]) {
      const page = await pageIn(locale);
      const resp = await page.goto(pc.url("/down/app"));
      assert.equal(resp.status(), 502);
      assert.equal(await page.getAttribute("html", "lang"), lang);
      assert.equal(await page.locator("h1").innerText(), title);
      assert.equal(await page.locator("nav.lang-switch a").count(), 1);
      await page.screenshot({ path: path.join(SHOTS, `proxy-502-${lang}.png`), fullPage: true });
    }
  });
});
