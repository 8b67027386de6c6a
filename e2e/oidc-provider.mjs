// A real OpenID Provider (panva's `oidc-provider`, pinned in package.json),
// used as a test fixture for Cloakroom's OIDC relying-party tests.
//
// The Rust integration tests spawn it as `node e2e/oidc-provider.mjs` (after
// `npm ci` in e2e/) and talk to it over plain HTTP on 127.0.0.1:
//
//   Environment
//     OIDC_PORT     port to listen on, on 127.0.0.1 (0 = any free port).
//     OIDC_CLIENTS  JSON array of confidential clients:
//                   [{"client_id": "...", "client_secret": "...",
//                     "redirect_uris": ["http://localhost:P/oidc/fixture/callback"],
//                     "backchannel_logout_uri": "http://localhost:P/oidc/fixture/backchannel-logout", // optional
//                     "id_token_signed_response_alg": "ES256"}]                                      // optional, default RS256
//                   Registered as client_secret_basic, authorization_code, response_type code,
//                   backchannel_logout_session_required when a back-channel URI is given.
//
//   Stdout
//     Exactly one line once listening: {"issuer":"http://127.0.0.1:<port>","port":<port>}
//     Everything else (oidc-provider notices, errors) goes to stderr.
//
//   Endpoints
//     Everything oidc-provider serves: /.well-known/openid-configuration, /auth,
//     /token, /me (userinfo), /jwks, /session/end, ...
//     GET  /interaction/:uid        plain-HTML login form (no JS): field `login`.
//     POST /interaction/:uid/login  body `login=NAME`: logs NAME in AND grants consent
//                                   for the requested scopes/claims in one step, then
//                                   303s back into the authorization flow, which ends
//                                   at the client's redirect_uri with code and state.
//     POST /test/backchannel-logout JSON {"client_id","sub","sid"?}: the provider signs a
//                                   logout token and POSTs it to the client's
//                                   backchannel_logout_uri; 200 {"sent":true} once the RP
//                                   answered 200/204, else 502 {"error": "..."}.
//
//   Behaviour
//     - PKCE (S256) required for every client; devInteractions disabled.
//     - Any account id is accepted: sub = id, email = id@example.com,
//       email_verified = true (false when the id starts with "unverified-"),
//       preferred_username = id, name = "User <id>". Scope claims are put in the
//       ID token (conformIdTokenClaims: false).
//     - The ID token carries `sid` only for clients registered with a
//       backchannel_logout_uri (oidc-provider's rule).
//     - Fresh signing keys (RS256 + ES256) and cookie keys are generated per run;
//       everything is in memory.
//     - Loopback back-channel logout targets are allowed (oidc-provider's SSRF
//       guard refuses them by default).
//     - Exits on SIGTERM / SIGINT.

import * as crypto from 'node:crypto';
import * as http from 'node:http';

// oidc-provider prints notices with console.info; keep stdout for the one
// "listening" line the tests parse.
console.log = console.error;
console.info = console.error;
console.debug = console.error;

const { default: Provider } = await import('oidc-provider');

function fail(message) {
  console.error(`oidc-provider fixture: ${message}`);
  process.exit(2);
}

const port = Number(process.env.OIDC_PORT ?? '0');
if (!Number.isInteger(port) || port < 0 || port > 65535) fail(`bad OIDC_PORT ${process.env.OIDC_PORT}`);

let clientsInput;
try {
  clientsInput = JSON.parse(process.env.OIDC_CLIENTS ?? '[]');
} catch (e) {
  fail(`OIDC_CLIENTS is not JSON: ${e.message}`);
}
if (!Array.isArray(clientsInput)) fail('OIDC_CLIENTS must be a JSON array');

const clients = clientsInput.map((c) => {
  const client = {
    client_id: c.client_id,
    client_secret: c.client_secret,
    redirect_uris: c.redirect_uris,
    token_endpoint_auth_method: 'client_secret_basic',
    grant_types: ['authorization_code'],
    response_types: ['code'],
    id_token_signed_response_alg: c.id_token_signed_response_alg ?? 'RS256',
  };
  if (c.backchannel_logout_uri) {
    client.backchannel_logout_uri = c.backchannel_logout_uri;
    client.backchannel_logout_session_required = true;
  }
  return client;
});

// Fresh keys every run (oidc-provider's built-in development key is public).
function signingKey(type, options, alg) {
  const { privateKey } = crypto.generateKeyPairSync(type, options);
  return {
    ...privateKey.export({ format: 'jwk' }),
    kid: `${alg.toLowerCase()}-${crypto.randomBytes(6).toString('hex')}`,
    use: 'sig',
    alg,
  };
}
const jwks = {
  keys: [
    signingKey('rsa', { modulusLength: 2048 }, 'RS256'),
    signingKey('ec', { namedCurve: 'P-256' }, 'ES256'),
  ],
};

const LOOPBACK_HOSTS = new Set(['127.0.0.1', 'localhost', '[::1]']);

const server = http.createServer();
await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(port, '127.0.0.1', resolve);
});
const actualPort = server.address().port;
const issuer = `http://127.0.0.1:${actualPort}`;

const provider = new Provider(issuer, {
  clients,
  jwks,
  cookies: {
    keys: [crypto.randomBytes(32).toString('base64url')],
    // Cookies get `secure` only when the request itself is https (ctx.secure),
    // so over plain http they are plain httpOnly SameSite=Lax cookies.
  },
  pkce: { required: () => true }, // 9.x supports S256 only; there is no `methods` option.
  features: {
    devInteractions: { enabled: false },
    backchannelLogout: { enabled: true },
  },
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name', 'preferred_username'],
  },
  scopes: ['openid', 'offline_access'], // email/profile come from `claims`
  conformIdTokenClaims: false,
  ttl: {
    AccessToken: 3600,
    AuthorizationCode: 60,
    IdToken: 3600,
    Interaction: 600,
    Session: 24 * 3600,
    Grant: 24 * 3600,
  },
  async findAccount(_ctx, id) {
    return {
      accountId: id,
      async claims() {
        return {
          sub: id,
          email: `${id}@example.com`,
          email_verified: !id.startsWith('unverified-'),
          preferred_username: id,
          name: `User ${id}`,
        };
      },
    };
  },
  interactions: {
    url(_ctx, interaction) {
      return `/interaction/${interaction.uid}`;
    },
  },
  // The SSRF guard (a special dispatcher put in options) refuses loopback
  // targets; tests' back-channel logout URIs are loopback, so drop it for them.
  fetch(url, options) {
    if (LOOPBACK_HOSTS.has(new URL(url).hostname)) delete options.dispatcher;
    return globalThis.fetch(url, options);
  },
});

provider.on('server_error', (_ctx, err) => console.error('oidc-provider server_error:', err));
for (const event of ['authorization.error', 'grant.error', 'backchannel.error']) {
  provider.on(event, (...args) => {
    const err = args.find((a) => a instanceof Error);
    console.error(`oidc-provider ${event}: ${err?.message}${err?.error_description ? ` (${err.error_description})` : ''}`);
  });
}

const providerCallback = provider.callback();

function escapeHtml(s) {
  return String(s).replace(/[&<>"']/g, (ch) => `&#${ch.charCodeAt(0)};`);
}

function send(res, status, type, body) {
  res.writeHead(status, {
    'content-type': type,
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
  });
  res.end(body);
}

function sendJson(res, status, value) {
  send(res, status, 'application/json', JSON.stringify(value));
}

async function readBody(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > 64 * 1024) throw new Error('request body too large');
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function loginPage(uid, message = '') {
  const action = `/interaction/${escapeHtml(uid)}/login`;
  return `<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Test OpenID Provider: sign in</title></head>
<body>
<h1>Test OpenID Provider</h1>
${message ? `<p role="alert">${escapeHtml(message)}</p>\n` : ''}<form method="post" action="${action}"><label for="login">Login</label><input id="login" name="login"><button type="submit">Sign in</button></form>
</body>
</html>
`;
}

async function handleInteraction(req, res, uid, rest) {
  let details;
  try {
    details = await provider.interactionDetails(req, res);
  } catch (err) {
    send(res, 400, 'text/plain; charset=utf-8', `interaction not found: ${err.message}\n`);
    return;
  }
  if (details.uid !== uid) {
    send(res, 400, 'text/plain; charset=utf-8', 'interaction cookie does not match the URL\n');
    return;
  }

  if (req.method === 'GET' && rest === '') {
    send(res, 200, 'text/html; charset=utf-8', loginPage(uid));
    return;
  }
  if (req.method !== 'POST' || rest !== '/login') {
    send(res, 404, 'text/plain; charset=utf-8', 'not found\n');
    return;
  }

  const form = new URLSearchParams(await readBody(req));
  const accountId = (form.get('login') ?? '').trim();
  if (!accountId) {
    send(res, 400, 'text/html; charset=utf-8', loginPage(uid, 'Login is required.'));
    return;
  }

  // Login and consent in one step: grant everything that was requested.
  const { params } = details;
  let grant;
  if (details.grantId) {
    grant = await provider.Grant.find(details.grantId);
    if (grant && grant.accountId !== accountId) grant = undefined;
  }
  if (!grant) grant = new provider.Grant({ accountId, clientId: params.client_id });

  if (params.scope) grant.addOIDCScope(String(params.scope));
  if (params.claims) {
    try {
      const requested = JSON.parse(params.claims);
      const names = new Set([
        ...Object.keys(requested.id_token ?? {}),
        ...Object.keys(requested.userinfo ?? {}),
      ]);
      if (names.size) grant.addOIDCClaims([...names]);
    } catch {
      // oidc-provider already validated the claims parameter; ignore.
    }
  }
  const missing = details.prompt?.details ?? {};
  if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
  if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
  const grantId = await grant.save();

  await provider.interactionFinished(
    req,
    res,
    { login: { accountId }, consent: { grantId } },
    { mergeWithLastSubmission: false },
  );
}

async function handleBackchannelLogout(req, res) {
  let input;
  try {
    input = JSON.parse(await readBody(req));
  } catch (err) {
    sendJson(res, 400, { error: `body is not JSON: ${err.message}` });
    return;
  }
  const { client_id: clientId, sub, sid } = input ?? {};
  if (typeof clientId !== 'string' || typeof sub !== 'string') {
    sendJson(res, 400, { error: 'client_id and sub (strings) are required' });
    return;
  }
  const client = await provider.Client.find(clientId);
  if (!client) {
    sendJson(res, 404, { error: `unknown client ${clientId}` });
    return;
  }
  if (!client.backchannelLogoutUri) {
    sendJson(res, 400, { error: `client ${clientId} has no backchannel_logout_uri` });
    return;
  }
  try {
    await client.backchannelLogout(sub, sid);
  } catch (err) {
    let body = '';
    if (err.response) {
      try {
        body = (await err.response.text()).slice(0, 2000);
      } catch {
        // ignore
      }
    }
    const cause = err.cause ? ` (${err.cause.message ?? err.cause})` : '';
    sendJson(res, 502, {
      error: `${err.message}${cause}`,
      ...(err.response ? { status: err.response.status, body } : {}),
    });
    return;
  }
  sendJson(res, 200, { sent: true });
}

server.on('request', async (req, res) => {
  const { pathname } = new URL(req.url, issuer);
  try {
    const interaction = /^\/interaction\/([^/]+)(\/login)?$/.exec(pathname);
    if (interaction) {
      await handleInteraction(req, res, decodeURIComponent(interaction[1]), interaction[2] ?? '');
      return;
    }
    if (pathname === '/test/backchannel-logout') {
      if (req.method !== 'POST') {
        sendJson(res, 405, { error: 'use POST' });
        return;
      }
      await handleBackchannelLogout(req, res);
      return;
    }
    providerCallback(req, res);
  } catch (err) {
    console.error(`fixture error on ${req.method} ${pathname}:`, err);
    if (!res.headersSent) send(res, 500, 'text/plain; charset=utf-8', `fixture error: ${err.message}\n`);
    else res.destroy();
  }
});

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    server.close();
    process.exit(0);
  });
}

process.stdout.write(`${JSON.stringify({ issuer, port: actualPort })}\n`);
