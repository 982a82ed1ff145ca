// Test OpenID Provider for Portcullis integration tests and benchmarks.
// Built on panva/oidc-provider v9. Configuration comes from environment variables;
// see README.md in this directory.
//
//   IDP_PORT=4000 IDP_CLIENTS='[{"client_id":"portcullis",...}]' node tests/idp/server.mjs
//
// Prints `IDP_READY <issuer>` on stdout once listening; exits 0 on SIGTERM/SIGINT.

import * as crypto from 'node:crypto';
import * as http from 'node:http';

import Provider, { errors } from 'oidc-provider';

// ---------------------------------------------------------------------------
// configuration from the environment

function fail(msg) {
  process.stderr.write(`idp: ${msg}\n`);
  process.exit(2);
}

function intEnv(name, dflt) {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return dflt;
  const n = Number(raw);
  if (!Number.isInteger(n) || n <= 0) fail(`${name} must be a positive integer, got ${JSON.stringify(raw)}`);
  return n;
}

const PORT = intEnv('IDP_PORT', 4000);
const HOST = process.env.IDP_HOST || '127.0.0.1';
const ISSUER = (process.env.IDP_ISSUER || `http://localhost:${PORT}`).replace(/\/+$/, '');
const ACCESS_TOKEN_TTL = intEnv('IDP_ACCESS_TOKEN_TTL', 3600);
const ID_TOKEN_TTL = intEnv('IDP_ID_TOKEN_TTL', 3600);

// Resource servers for JWT access tokens (RFC 8707 resource indicators, RFC 9068 format), as
// `{"api://orders": {"scope": "orders/read orders/write"}}`. When set, the client_credentials
// grant is enabled too: a client with `grant_types: ["client_credentials"]` asks
// `POST /token grant_type=client_credentials&resource=api://orders&scope=orders/read`.
let resourceServers = null;
if (process.env.IDP_RESOURCE_SERVERS) {
  try {
    resourceServers = JSON.parse(process.env.IDP_RESOURCE_SERVERS);
  } catch (err) {
    fail(`IDP_RESOURCE_SERVERS is not valid JSON: ${err.message}`);
  }
}

let clients;
try {
  clients = JSON.parse(process.env.IDP_CLIENTS || '[]');
} catch (err) {
  fail(`IDP_CLIENTS is not valid JSON: ${err.message}`);
}
if (!Array.isArray(clients)) fail('IDP_CLIENTS must be a JSON array of client metadata objects');

// ---------------------------------------------------------------------------
// signing keys, generated fresh at every start (one per algorithm family)

function jwkOf(type, options, kid) {
  const { privateKey } = crypto.generateKeyPairSync(type, options);
  return { ...privateKey.export({ format: 'jwk' }), kid, use: 'sig' };
}

function freshJwks(stamp = crypto.randomBytes(4).toString('hex')) {
  currentStamp = stamp;
  return {
    keys: [
      // RS256 first: it is the default id_token_signed_response_alg.
      jwkOf('rsa', { modulusLength: 2048 }, `rsa-${stamp}`), // RS256 and PS256
      jwkOf('ec', { namedCurve: 'P-256' }, `ec-${stamp}`), // ES256
      jwkOf('ed25519', {}, `ed25519-${stamp}`), // EdDSA (and Ed25519)
    ],
  };
}
let currentStamp = '';
let jwks = freshJwks();

// Signs a JWT with the current RSA key (test control `/__test/sign`): lets tests build logout
// and access tokens with exactly the claims a case needs, signed by a key the IdP publishes.
function signJwt(header, claims) {
  const jwk = jwks.keys[0];
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const input = `${b64({ alg: 'RS256', kid: jwk.kid, ...header })}.${b64(claims)}`;
  const key = crypto.createPrivateKey({ key: jwk, format: 'jwk' });
  return `${input}.${crypto.sign('sha256', Buffer.from(input), key).toString('base64url')}`;
}

async function readJson(req) {
  const chunks = [];
  for await (const c of req) chunks.push(c);
  return JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}');
}

// ---------------------------------------------------------------------------
// accounts (fixed fixtures)

const ACCOUNTS = {
  alice: {
    sub: 'alice',
    email: 'alice@example.com',
    email_verified: true,
    name: 'Alice Example',
    preferred_username: 'alice',
    groups: ['admins', 'staff'],
  },
  bob: {
    sub: 'bob',
    email: 'bob@other.org',
    email_verified: true,
    groups: ['staff'],
  },
  mallory: {
    sub: 'mallory',
    email: 'mallory@example.com',
    email_verified: false,
    groups: [],
  },
  // Hostile claims (tests/security): an email with two `@` (oauth2-proxy CVE-2026-40574) and
  // markup in every text claim.
  eve: {
    sub: 'eve',
    email: 'eve@evil.test@example.com',
    email_verified: true,
    name: '<script>alert(1)</script>',
    preferred_username: 'eve"><img src=x onerror=alert(1)>',
    groups: ['staff'],
  },
  // ~2,500 characters of claims: a session that needs two or three cookie shards
  medium: {
    sub: 'medium',
    email: 'medium@example.com',
    email_verified: true,
    name: 'Medium Claims',
    preferred_username: 'medium',
    groups: ['staff'],
    blob: 'm'.repeat(2500),
  },
  big: {
    sub: 'big',
    email: 'big@example.com',
    email_verified: true,
    name: 'Big Claims',
    preferred_username: 'big',
    groups: ['staff'],
    // ~20,000 characters, to make a session too large for a single cookie
    blob: 'x'.repeat(20000),
  },
};

// More accounts for a test (IDP_ACCOUNTS, a JSON object id -> claims, merged over the fixtures):
// e.g. two users claiming one email, verified or not, or a `sub` that differs from another only
// by case. An account's `login_amr` (not a claim) is the `amr` of its sign-in here.
if (process.env.IDP_ACCOUNTS) {
  try {
    Object.assign(ACCOUNTS, JSON.parse(process.env.IDP_ACCOUNTS));
  } catch (err) {
    fail(`IDP_ACCOUNTS is not valid JSON: ${err.message}`);
  }
}

async function findAccount(_ctx, id) {
  const claims = Object.hasOwn(ACCOUNTS, id) ? ACCOUNTS[id] : undefined;
  if (!claims) return undefined;
  return {
    accountId: id,
    // the provider filters these by the granted scopes / claims
    async claims() {
      const { login_amr: _amr, ...rest } = claims;
      return structuredClone(rest);
    },
  };
}

// ---------------------------------------------------------------------------
// small HTML helpers

const esc = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function page(title, body) {
  return `<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>${esc(title)}</title></head><body>\n${body}\n</body></html>\n`;
}

// ---------------------------------------------------------------------------
// the provider

// Only with IDP_RESOURCE_SERVERS: JWT access tokens for the named resource servers.
const resourceFeatures = resourceServers
  ? {
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: (_ctx, _client, oneOf) => oneOf,
      useGrantedResource: () => true,
      getResourceServerInfo(_ctx, resource) {
        const rs = Object.hasOwn(resourceServers, resource) ? resourceServers[resource] : null;
        if (!rs) throw new errors.InvalidTarget('unknown resource server');
        return {
          scope: rs.scope || '',
          audience: resource,
          accessTokenFormat: 'jwt',
          accessTokenTTL: ACCESS_TOKEN_TTL,
          jwt: { sign: { alg: 'RS256' } },
        };
      },
    },
  }
  : {};

const configuration = {
  clients,
  jwks,
  findAccount,
  cookies: {
    // fixed keys: cookies stay valid across restarts of the test IdP
    keys: ['portcullis-test-idp-cookie-key-1'],
    // cookies are per host, not per port: distinct names keep them apart from
    // Portcullis's own cookies when both run on 127.0.0.1
    names: {
      session: 'idp_session',
      interaction: 'idp_interaction',
      resume: 'idp_interaction_resume',
    },
    long: { httpOnly: true, sameSite: 'lax' },
    short: { httpOnly: true, sameSite: 'lax' },
  },
  claims: {
    acr: null,
    sid: null,
    auth_time: null,
    iss: null,
    // `amr` is the sign-in's (an account's `login_amr`); absent for the others
    openid: ['sub', 'amr'],
    email: ['email', 'email_verified'],
    profile: ['name', 'preferred_username', 'groups', 'blob'],
    groups: ['groups'],
  },
  // Outgoing requests (back-channel logout tokens) go to relying parties on 127.0.0.1 in the
  // tests; oidc-provider's SSRF guard refuses loopback addresses, so this test IdP drops it.
  fetch: (url, options) => {
    const { dispatcher: _guard, ...rest } = options;
    return globalThis.fetch(url, rest);
  },
  // put the scope-requested claims in the ID token too (not only in userinfo)
  conformIdTokenClaims: false,
  features: {
    devInteractions: { enabled: false },
    userinfo: { enabled: true },
    revocation: { enabled: true },
    introspection: { enabled: true },
    // Back-channel logout: logout tokens POSTed to each client's backchannel_logout_uri when
    // the IdP session ends; ID tokens then carry `sid`.
    backchannelLogout: { enabled: true },
    ...resourceFeatures,
    rpInitiatedLogout: {
      enabled: true,
      // The confirmation page: an auto-submitting form that logs out everywhere.
      // The same shape the provider renders when there is no session: a single
      // <form method="post" action=".../session/end/confirm"> with hidden inputs
      // xsrf=<value> and logout=yes.
      async logoutSource(ctx, form) {
        const action = /action="([^"]*)"/.exec(form)?.[1] ?? '';
        const xsrf = /name="xsrf" value="([^"]*)"/.exec(form)?.[1] ?? '';
        ctx.type = 'html';
        ctx.body = page('Logout Request', `<form method="post" action="${action}">
<input type="hidden" name="xsrf" value="${xsrf}"/>
<input type="hidden" name="logout" value="yes"/>
<noscript><button autofocus type="submit">Sign out</button></noscript>
</form>
<script>document.forms[0].submit()</script>`);
      },
      async postLogoutSuccessSource(ctx) {
        ctx.type = 'html';
        ctx.body = page('Signed out', '<h1>Signed out</h1>');
      },
    },
  },
  enabledJWA: {
    // HS256 is enabled only so tests can prove the relying party refuses HMAC-signed ID tokens.
    idTokenSigningAlgValues: ['RS256', 'PS256', 'ES256', 'EdDSA', 'Ed25519', 'HS256'],
    userinfoSigningAlgValues: ['RS256', 'PS256', 'ES256', 'EdDSA', 'Ed25519'],
  },
  pkce: {
    // S256 is always supported; required only for public clients (the default).
    required: (_ctx, client) => client.clientAuthMethod === 'none',
  },
  // refresh tokens for every authorization_code grant of a client allowed to use them,
  // without requiring the offline_access scope
  async issueRefreshToken(_ctx, client, _code) {
    return client.grantTypeAllowed('refresh_token');
  },
  ttl: {
    AccessToken: ACCESS_TOKEN_TTL,
    ClientCredentials: ACCESS_TOKEN_TTL,
    IdToken: ID_TOKEN_TTL,
    AuthorizationCode: 600,
    Interaction: 3600,
    Session: 14 * 24 * 3600,
    Grant: 14 * 24 * 3600,
    RefreshToken: 14 * 24 * 3600,
  },
  interactions: {
    url: (_ctx, interaction) => `/interaction/${interaction.uid}`,
  },
  async renderError(ctx, out) {
    ctx.type = 'html';
    ctx.body = page('Error', `<h1>oops! something went wrong</h1>\n<pre>${esc(JSON.stringify(out, null, 2))}</pre>`);
  },
};

let provider;
try {
  provider = new Provider(ISSUER, configuration);
} catch (err) {
  fail(`invalid configuration: ${err.message}`);
}

// static clients are validated lazily by oidc-provider: validate them now, so a bad
// IDP_CLIENTS fails the start instead of the first request
for (const c of clients) {
  try {
    if (!c || typeof c.client_id !== 'string') throw new Error('client_id missing');
    if (!await provider.Client.find(c.client_id)) throw new Error('not found after load');
  } catch (err) {
    fail(`invalid client ${JSON.stringify(c?.client_id)} in IDP_CLIENTS: ${err.error_description || err.message}`);
  }
}

// surface server-side errors on stderr (tests capture it)
provider.on('server_error', (_ctx, err) => process.stderr.write(`idp server_error: ${err.stack || err}\n`));

// ---------------------------------------------------------------------------
// interactions (login + consent in one step, no JavaScript needed)

async function readForm(req, limit = 64 * 1024) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > limit) throw Object.assign(new Error('body too large'), { status: 413 });
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

function send(res, status, body, type = 'text/html; charset=utf-8', headers = {}) {
  res.writeHead(status, {
    'content-type': type,
    'cache-control': 'no-store',
    'content-length': Buffer.byteLength(body),
    ...headers,
  });
  res.end(body);
}

async function details(req, res, uid) {
  try {
    const d = await provider.interactionDetails(req, res);
    if (d.uid !== uid) return null;
    return d;
  } catch {
    return null;
  }
}

async function handleInteraction(req, res, uid, action) {
  const d = await details(req, res, uid);
  if (!d) {
    send(res, 400, page('Bad interaction', '<h1>interaction not found or expired (is the _interaction cookie being sent?)</h1>'));
    return;
  }

  if (action === '' && req.method === 'GET') {
    send(res, 200, page('Sign in', `<h1>Sign in to ${esc(d.params.client_id)}</h1>
<p>prompt: ${esc(d.prompt.name)}; accounts: ${Object.keys(ACCOUNTS).join(', ')}</p>
<form method="post" action="/interaction/${esc(uid)}/login">
<input name="login" autofocus>
<button type="submit">Sign in</button>
</form>
<form method="post" action="/interaction/${esc(uid)}/abort"><button type="submit">Cancel</button></form>`));
    return;
  }

  if (action === '/login' && req.method === 'POST') {
    const form = await readForm(req);
    const login = form.get('login') || '';
    if (!Object.hasOwn(ACCOUNTS, login)) {
      send(res, 400, page('Unknown account', `<h1>unknown account ${esc(login)}</h1>`));
      return;
    }

    // consent: grant everything that was asked for
    const { params } = d;
    let grant;
    if (d.grantId && d.session?.accountId === login) {
      grant = await provider.Grant.find(d.grantId);
    }
    if (!grant) {
      grant = new provider.Grant({ accountId: login, clientId: params.client_id });
    }
    if (params.scope) grant.addOIDCScope(String(params.scope));
    if (params.claims) {
      try {
        const requested = JSON.parse(params.claims);
        const names = new Set([
          ...Object.keys(requested.userinfo || {}),
          ...Object.keys(requested.id_token || {}),
        ]);
        if (names.size) grant.addOIDCClaims([...names]);
      } catch { /* ignore a malformed claims parameter */ }
    }
    const missing = d.prompt?.details?.missingResourceScopes || {};
    for (const [indicator, scopes] of Object.entries(missing)) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
    const grantId = await grant.save();

    await provider.interactionFinished(req, res, {
      login: { accountId: login, ...(ACCOUNTS[login].login_amr ? { amr: ACCOUNTS[login].login_amr } : {}) },
      consent: { grantId },
    }, { mergeWithLastSubmission: false });
    return;
  }

  if (action === '/abort' && req.method === 'POST') {
    await provider.interactionFinished(req, res, {
      error: 'access_denied',
      error_description: 'End-User aborted interaction',
    }, { mergeWithLastSubmission: false });
    return;
  }

  send(res, 405, page('Method not allowed', '<h1>method not allowed</h1>'));
}

// ---------------------------------------------------------------------------
// HTTP server: test controls, interactions, then the provider

let down = false;
// Counts, for tests: refresh grants served and back-channel logout tokens delivered.
const stats = { refresh_grants: 0, backchannel_logouts: 0, backchannel_errors: 0 };
function watch(p) {
  p.on('grant.success', (ctx) => {
    if (ctx.oidc?.params?.grant_type === 'refresh_token') stats.refresh_grants += 1;
  });
  p.on('backchannel.success', () => { stats.backchannel_logouts += 1; });
  p.on('backchannel.error', (_ctx, err) => {
    stats.backchannel_errors += 1;
    process.stderr.write(`idp backchannel error: ${err} ${err?.cause?.stack || err?.cause || ""}\n`);
  });
}
watch(provider);
let providerCallback = provider.callback();

// generous header limit: id_token_hint of the `big` account is ~27 KB in the query string
const server = http.createServer({ maxHeaderSize: 256 * 1024 }, async (req, res) => {
  try {
    const url = new URL(req.url, 'http://idp.invalid');
    const { pathname } = url;

    if (pathname.startsWith('/__test/')) {
      if (pathname === '/__test/stats' && req.method === 'GET') {
        send(res, 200, JSON.stringify(stats), 'application/json');
      } else if (pathname === '/__test/health' && (req.method === 'GET' || req.method === 'HEAD')) {
        send(res, 200, JSON.stringify({ ok: true, down, issuer: ISSUER }), 'application/json');
      } else if (pathname === '/__test/down' && req.method === 'POST') {
        down = true;
        send(res, 200, JSON.stringify({ down }), 'application/json');
      } else if (pathname === '/__test/rotate-keys' && req.method === 'POST') {
        // Key rotation: a new provider instance with a fresh key set (new kids) replaces the
        // old one; relying parties must refetch the JWKS when they meet an unknown kid.
        jwks = freshJwks();
        provider = new Provider(ISSUER, { ...configuration, jwks });
        provider.on('server_error', (_ctx, err) => process.stderr.write(`idp server_error: ${err.stack || err}\n`));
        watch(provider);
        providerCallback = provider.callback();
        send(res, 200, JSON.stringify({ rotated: true }), 'application/json');
      } else if (pathname === '/__test/rotate-keys-same-kid' && req.method === 'POST') {
        // An IdP that replaces its key material but keeps the key ids (what a restart of an
        // IdP with generated keys and fixed kids looks like to a relying party).
        jwks = freshJwks(currentStamp);
        provider = new Provider(ISSUER, { ...configuration, jwks });
        provider.on('server_error', (_ctx, err) => process.stderr.write(`idp server_error: ${err.stack || err}\n`));
        watch(provider);
        providerCallback = provider.callback();
        send(res, 200, JSON.stringify({ rotated: true, same_kids: true }), 'application/json');
      } else if (pathname === '/__test/sign' && req.method === 'POST') {
        const body = await readJson(req);
        send(res, 200, JSON.stringify({ jwt: signJwt(body.header || {}, body.claims || {}) }), 'application/json');
      } else if (pathname === '/__test/up' && req.method === 'POST') {
        down = false;
        send(res, 200, JSON.stringify({ down }), 'application/json');
      } else {
        send(res, 404, JSON.stringify({ error: 'not_found' }), 'application/json');
      }
      return;
    }

    if (down) {
      send(res, 503, JSON.stringify({ error: 'temporarily_unavailable', error_description: 'test IdP is down' }), 'application/json', { 'retry-after': '1' });
      return;
    }

    const m = /^\/interaction\/([^/]+)(\/login|\/abort)?\/?$/.exec(pathname);
    if (m) {
      await handleInteraction(req, res, m[1], m[2] || '');
      return;
    }

    providerCallback(req, res);
  } catch (err) {
    process.stderr.write(`idp error: ${err.stack || err}\n`);
    if (!res.headersSent) {
      send(res, err.status || 500, page('Error', `<h1>${esc(err.message)}</h1>`));
    } else {
      res.destroy();
    }
  }
});

server.on('error', (err) => fail(`listen on ${HOST}:${PORT} failed: ${err.message}`));

server.listen(PORT, HOST, () => {
  process.stdout.write(`IDP_READY ${ISSUER}\n`);
});

function shutdown() {
  server.close(() => process.exit(0));
  server.closeAllConnections();
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
