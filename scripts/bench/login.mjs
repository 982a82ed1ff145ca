// Browser-less sign-in client for scripts/bench.sh: walks a real authorization-code login
// (proxy → IdP authorize → interaction form → POST login → IdP redirects → proxy callback →
// original URL) with a fresh cookie jar per login, never following redirects on its own.
//
//   node login.mjs once URL USER COOKIE_REGEX      prints "name=value; …" of the cookies whose
//                                                  names match COOKIE_REGEX after a login
//   node login.mjs loop URL USER SECONDS CONCURRENCY
//                                                  logs in repeatedly; prints one JSON line
//                                                  {"logins":N,"failures":N,"seconds":S}
//
// A login counts only when the final GET of URL answers 200 (the upstream's page).

import * as http from 'node:http';

const [mode, startUrl, user, arg4, arg5] = process.argv.slice(2);
const HTML = 'text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8';

class Jar {
  constructor() { this.cookies = new Map(); }
  header() { return [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; '); }
  absorb(res) {
    for (const line of res.setCookie) {
      const pair = line.split(';', 1)[0];
      const eq = pair.indexOf('=');
      if (eq <= 0) continue;
      const name = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim();
      const expired = /;\s*max-age=0\b/i.test(line) || /expires=thu, 01 jan 1970/i.test(line);
      if (expired || value === '') this.cookies.delete(name);
      else this.cookies.set(name, value);
    }
  }
}

// node:http, not fetch: fetch always sends `Sec-Fetch-Mode: cors`, which makes a proxy treat
// the request as XHR (401 instead of a redirect), unlike a browser's navigation.
const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });

function step(jar, url, init = {}) {
  const headers = { accept: HTML, ...(init.headers || {}) };
  const cookie = jar.header();
  if (cookie) headers.cookie = cookie;
  if (init.body !== undefined) headers['content-length'] = Buffer.byteLength(init.body);
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: init.method || 'GET', headers, agent, timeout: 20000 }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const r = {
          status: res.statusCode,
          location: res.headers.location,
          setCookie: res.headers['set-cookie'] || [],
          body: Buffer.concat(chunks).toString('utf8'),
        };
        jar.absorb(r);
        resolve(r);
      });
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`timeout at ${url}`)));
    req.on('error', reject);
    if (init.body !== undefined) req.write(init.body);
    req.end();
  });
}

async function login() {
  const jar = new Jar();
  let url = new URL(startUrl);
  for (let hop = 0; hop < 16; hop++) {
    const res = await step(jar, url);
    if (res.status >= 300 && res.status < 400) {
      url = new URL(res.location, url);
      continue;
    }
    if (res.status === 200 && url.pathname.startsWith('/interaction/')) {
      const post = new URL(`${url.pathname.replace(/\/$/, '')}/login`, url);
      const r2 = await step(jar, post, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ login: user }).toString(),
      });
      if (r2.status < 300 || r2.status >= 400) throw new Error(`interaction login answered ${r2.status}`);
      url = new URL(r2.location, post);
      continue;
    }
    const body = res.body;
    if (res.status === 200 && url.href === new URL(startUrl).href) return jar;
    throw new Error(`unexpected ${res.status} at ${url.href}: ${body.slice(0, 200)}`);
  }
  throw new Error('login did not finish within 16 hops');
}

if (mode === 'once') {
  const re = new RegExp(arg4);
  try {
    const jar = await login();
    const picked = [...jar.cookies].filter(([k]) => re.test(k)).map(([k, v]) => `${k}=${v}`);
    if (picked.length === 0) throw new Error(`no cookie matching /${arg4}/ after login`);
    process.stdout.write(picked.join('; ') + '\n');
  } catch (err) {
    process.stderr.write(`login failed: ${err.message}\n`);
    process.exit(1);
  }
} else if (mode === 'loop') {
  const seconds = Number(arg4);
  const concurrency = Number(arg5 || 4);
  const deadline = Date.now() + seconds * 1000;
  const started = Date.now();
  let logins = 0;
  let failures = 0;
  let lastError = '';
  const worker = async () => {
    while (Date.now() < deadline) {
      try {
        await login();
        logins++;
      } catch (err) {
        failures++;
        lastError = err.message;
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  const out = { logins, failures, seconds: (Date.now() - started) / 1000 };
  if (lastError) out.last_error = lastError;
  process.stdout.write(JSON.stringify(out) + '\n');
} else {
  process.stderr.write('usage: login.mjs once URL USER COOKIE_REGEX | loop URL USER SECONDS CONCURRENCY\n');
  process.exit(2);
}
