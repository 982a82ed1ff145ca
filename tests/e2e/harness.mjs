// Shared harness for the pool's Node end-to-end tests: starts the real portcullis binary
// (PORTCULLIS_BIN) on free loopback ports with a temporary SQLite pool, an upstream that shows
// the identity headers it received, helpers to read one-time codes from the JSON log, to run
// the admin CLI, a cookie-keeping fetch that never follows redirects, and headless Chromium.
import { spawn, execFileSync } from "node:child_process";
import fs from "node:fs";
import http from "node:http";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const BIN = process.env.PORTCULLIS_BIN;
if (!BIN) throw new Error("set PORTCULLIS_BIN to the built portcullis binary (e.g. target/debug/portcullis)");
export const PASSWORD = "Correct-Horse-7";
export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
export const SHOTS = path.join(ROOT, "test-output", "screenshots");
fs.mkdirSync(SHOTS, { recursive: true });

export async function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

const esc = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

/** An upstream app that shows the identity it was given, as HTML (browsers) and JSON. */
export async function identityUpstream() {
  const server = http.createServer((req, res) => {
    const h = req.headers;
    const pick = ["x-amzn-oidc-identity", "x-forwarded-user", "x-forwarded-email", "x-forwarded-preferred-username", "x-forwarded-groups"];
    const rows = pick.map((k) => `<tr><th>${esc(k)}</th><td id="${esc(k)}">${esc(h[k] ?? "")}</td></tr>`).join("");
    const data = h["x-amzn-oidc-data"] ? "present" : "missing";
    res.writeHead(200, { "content-type": "text/html; charset=utf-8" });
    res.end(`<!doctype html><html><head><meta charset="utf-8"><title>Upstream app</title>
<style>body{font:16px system-ui;margin:3rem}th{text-align:left;padding-right:1rem}</style></head>
<body><h1>Upstream app</h1><p>Path: <code>${esc(req.url)}</code></p><table>${rows}
<tr><th>x-amzn-oidc-data</th><td id="x-amzn-oidc-data">${data}</td></tr></table>
<p><a id="signout" href="/oauth2/sign_out?rd=/">Sign out</a></p></body></html>`);
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  return { server, port: server.address().port };
}

export class Portcullis {
  static async start({ poolExtra = "", adminToken = "admin-token-for-e2e-0123", port = undefined } = {}) {
    const p = new Portcullis();
    p.dir = fs.mkdtempSync(path.join(os.tmpdir(), "pc-e2e-"));
    p.upstream = await identityUpstream();
    p.port = port ?? (await freePort());
    p.adminPort = await freePort();
    p.base = `http://127.0.0.1:${p.port}`;
    p.admin = `http://127.0.0.1:${p.adminPort}`;
    p.adminToken = adminToken;
    p.config = path.join(p.dir, "portcullis.toml");
    p.log = path.join(p.dir, "server.log");
    fs.writeFileSync(
      p.config,
      `public_url = "${p.base}"
[server]
listen = ["127.0.0.1:${p.port}"]
admin_listen = "127.0.0.1:${p.adminPort}"
[session]
secrets = ["e2e-secret-e2e-secret-e2e-secret-0000"]
[log]
format = "json"
level = "info"
[[routes]]
path = "/"
upstream = "http://127.0.0.1:${p.upstream.port}"
provider = "pool"
[pool]
database = "sqlite://${path.join(p.dir, "pool.db")}"
admin_token = "${adminToken}"
${poolExtra}
`,
    );
    await p.spawn();
    return p;
  }

  async spawn() {
    const out = fs.openSync(this.log, "a");
    this.child = spawn(BIN, ["serve", "--config", this.config], { stdio: ["ignore", "ignore", out] });
    const deadline = Date.now() + 30_000;
    for (;;) {
      try {
        const r = await fetch(`${this.admin}/readyz`);
        if (r.status === 200) return;
      } catch {
        // not listening yet
      }
      if (Date.now() > deadline) throw new Error(`portcullis did not become ready:\n${fs.readFileSync(this.log, "utf8")}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  url(p) {
    return `${this.base}${p}`;
  }

  logLines() {
    return fs
      .readFileSync(this.log, "utf8")
      .split("\n")
      .filter(Boolean)
      .map((l) => {
        try {
          return JSON.parse(l);
        } catch {
          return null;
        }
      })
      .filter(Boolean);
  }

  /** The newest one-time code logged for a user (pool.delivery = "log"), waiting up to 10 s:
   *  some codes are sent in the background so that page timing reveals nothing. */
  async codeFor(username, purpose) {
    const deadline = Date.now() + 10_000;
    for (;;) {
      const hits = this.logLines().filter((l) => l.fields?.delivery === "log" && l.fields.username === username && l.fields.purpose === purpose);
      if (hits.length) return hits.at(-1).fields.code;
      if (Date.now() > deadline) throw new Error(`no ${purpose} code for ${username} in the log`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  cli(...args) {
    return execFileSync(BIN, ["pool", ...args, "--config", this.config], { encoding: "utf8" });
  }

  async stop() {
    if (this.child && this.child.exitCode === null) {
      const exited = new Promise((r) => this.child.once("exit", r));
      this.child.kill("SIGTERM");
      await exited;
    }
    this.upstream.server.close();
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

/** fetch with a cookie jar that never follows redirects (each hop is asserted by the caller). */
export class Browserless {
  constructor() {
    this.jar = new Map();
  }
  async fetch(url, init = {}) {
    const headers = new Headers(init.headers ?? {});
    if (this.jar.size) headers.set("cookie", [...this.jar].map(([k, v]) => `${k}=${v}`).join("; "));
    if (!headers.has("accept")) headers.set("accept", "text/html,*/*;q=0.8");
    const r = await fetch(url, { ...init, headers, redirect: "manual" });
    for (const c of r.headers.getSetCookie()) {
      const [kv, ...attrs] = c.split(";");
      const i = kv.indexOf("=");
      const name = kv.slice(0, i).trim();
      const value = kv.slice(i + 1).trim();
      const gone = attrs.some((a) => /^\s*max-age=0\s*$/i.test(a)) || value === "";
      if (gone) this.jar.delete(name);
      else this.jar.set(name, value);
    }
    return r;
  }
  async post(url, fields) {
    return this.fetch(url, { method: "POST", body: new URLSearchParams(fields), headers: { "content-type": "application/x-www-form-urlencoded" } });
  }
}

const unescape = (s) => s.replace(/&#x2f;/g, "/").replace(/&#x27;/g, "'").replace(/&quot;/g, '"').replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&amp;/g, "&");

/** The post form whose action contains `part`: { action (absolute), csrf }. */
export function formOf(html, base, part) {
  for (const m of html.matchAll(/<form[^>]*action="([^"]*)"[^>]*>([\s\S]*?)<\/form>/g)) {
    const action = unescape(m[1]);
    if (action.includes(part)) {
      const csrf = /name="csrf_token" value="([^"]*)"/.exec(m[2])?.[1] ?? "";
      return { action: new URL(action, base).toString(), csrf };
    }
  }
  throw new Error(`no form with ${part} in:\n${html}`);
}

export async function launchChromium() {
  const { chromium } = await import("playwright-core");
  return chromium.launch({
    executablePath: process.env.CHROMIUM_PATH ?? "/usr/bin/chromium",
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
}

export async function shot(page, name) {
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });
}

/** Base32 (RFC 4648) as TOTP set-up pages show secrets (spaces ignored). */
export function base32Decode(s) {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  let bits = 0;
  let value = 0;
  const out = [];
  for (const c of s.replace(/\s+/g, "").toUpperCase()) {
    value = (value << 5) | alphabet.indexOf(c);
    bits += 5;
    if (bits >= 8) {
      bits -= 8;
      out.push((value >>> bits) & 0xff);
    }
  }
  return Buffer.from(out);
}

/** The test IdP (tests/idp) with one client `pool` (secret `secret`) returning to
 *  `callback`; resolves once it listens. */
export async function startIdp(callback, secret) {
  const port = await freePort();
  const issuer = `http://127.0.0.1:${port}`;
  const child = spawn("node", [path.join(ROOT, "tests/idp/server.mjs")], {
    env: {
      ...process.env,
      IDP_PORT: String(port),
      IDP_ISSUER: issuer,
      IDP_CLIENTS: JSON.stringify([{ client_id: "pool", client_secret: secret, redirect_uris: [callback], grant_types: ["authorization_code"], response_types: ["code"] }]),
    },
    stdio: ["ignore", "pipe", "inherit"],
  });
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("test IdP did not start")), 60_000);
    child.stdout.on("data", (d) => {
      if (String(d).includes("IDP_READY")) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once("exit", (code) => reject(new Error(`test IdP exited ${code}`)));
  });
  return { child, issuer };
}

