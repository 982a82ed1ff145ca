// Code delivery by SMTP: a real SMTP conversation (EHLO, AUTH PLAIN, MAIL, RCPT, DATA) with an
// SMTP server the test starts (nodemailer's smtp-server); the code in the mail confirms the
// sign-up, and no code appears in the server log.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { SMTPServer } from "smtp-server";
import { Browserless, PASSWORD, Portcullis, formOf, freePort } from "./harness.mjs";

let smtp;
let pc;
const inbox = [];
const logins = [];

before(async () => {
  const port = await freePort();
  smtp = new SMTPServer({
    secure: false,
    disabledCommands: ["STARTTLS"],
    allowInsecureAuth: true,
    authMethods: ["PLAIN"],
    onAuth(auth, _session, cb) {
      logins.push(auth.username);
      if (auth.username === "mailer" && auth.password === "smtp-pass-123") cb(null, { user: "mailer" });
      else cb(new Error("bad credentials"));
    },
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
  pc = await Portcullis.start({
    poolExtra: `delivery = "smtp"
[pool.smtp]
host = "127.0.0.1"
port = ${port}
tls = "none"
username = "mailer"
password = "smtp-pass-123"
from = "no-reply@example.com"
`,
  });
});
after(async () => {
  await pc?.stop();
  await new Promise((r) => smtp?.close(r));
});

/** The 6-digit code in a mail's link (the text part may be quoted-printable). */
function codeInMail(raw) {
  const text = raw.replace(/=\r?\n/g, "").replace(/=3D/g, "=");
  return /[?&]code=(\d{6})/.exec(text)?.[1];
}

describe("SMTP delivery", () => {
  test("sign-up code arrives by mail and confirms the account", async () => {
    const b = new Browserless();
    let r = await b.fetch(pc.url("/oauth2/pool/signup"));
    const { action, csrf } = formOf(await r.text(), pc.base, "/signup");
    r = await b.post(action, { csrf_token: csrf, username: "pablo", email: "pablo@example.com", password: PASSWORD });
    assert.equal(r.status, 302);
    assert.ok(!r.headers.get("location").includes("delivery_failed"), r.headers.get("location"));
    assert.equal(inbox.length, 1);
    const mail = inbox[0];
    assert.deepEqual(mail.to, ["pablo@example.com"]);
    assert.equal(mail.from, "no-reply@example.com");
    assert.match(mail.raw, /^Subject: Confirm your account at Portcullis/m);
    assert.deepEqual(logins, ["mailer"]);
    const code = codeInMail(mail.raw);
    assert.match(code, /^\d{6}$/);

    r = await b.fetch(new URL(r.headers.get("location"), pc.base).toString());
    const confirm = formOf(await r.text(), pc.base, "/confirm");
    r = await b.post(confirm.action, { csrf_token: confirm.csrf, username: "pablo", code });
    assert.equal(r.status, 302);
    // Confirmed by the browser that signed up (no app waiting): signed in, on to the app's root.
    assert.equal(r.headers.get("location"), `${pc.base}/`);
    assert.match(pc.cli("users", "show", "pablo"), /"status": "CONFIRMED"/);
    // With SMTP delivery the code never reaches the log.
    assert.ok(!pc.logLines().some((l) => JSON.stringify(l).includes(code)), "code found in the server log");
  });
});
