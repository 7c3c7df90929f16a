// node oidc-provider, configured for refreshing_session's interop tests (tests/interop).
//
//   node server.mjs <port>          (or PORT=<port>; 0 lets the system choose)
//
// Prints "READY <port>" on stdout once it listens on 127.0.0.1. Everything under /token,
// /token/revocation, /.well-known/... is oidc-provider's own code; this file adds only
//   GET  /api/items                  a protected resource that checks bearer tokens with the provider
//   POST /test/grant                 {"client_id", "jkt"?}: a fresh grant (access + refresh token),
//                                    no browser; with jkt, bound to that DPoP key as a login with a
//                                    DPoP proof would leave it
//   POST /test/destroy-access-token  {"access_token"}: forget that one access token (grant intact)
//   GET  /test/clients               the registered clients, secrets included (test fixtures)
//   GET  /test/stats                 counters, see `stats` below
//
// ACCESS_TOKEN_TTL (seconds, default 3) sets ttl.AccessToken and ttl.ClientCredentials.
// oidc-provider keeps iat and exp in whole seconds (iat = floor(now), exp = iat + ttl), so a
// token answered with expires_in 3 dies between 2 and 3 s after it was issued.
//
// DPoP (RFC 9449, features.dPoP) is on, with nonces required: a request that carries a DPoP proof
// without a current nonce is refused with use_dpop_nonce and a DPoP-Nonce header (a 400 at the
// token endpoint, a 401 at the userinfo endpoint, GET /me, the DPoP-protected resource). Requests
// without a proof are bearer requests, untouched by this.

import { createHash, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';

import { Provider } from 'oidc-provider';

const port = Number(process.argv[2] ?? process.env.PORT ?? 0);
const accessTokenTtl = Number(process.env.ACCESS_TOKEN_TTL ?? 3);
if (!Number.isInteger(port) || port < 0 || !Number.isInteger(accessTokenTtl) || accessTokenTtl < 1) {
  console.error('usage: node server.mjs <port>  (ACCESS_TOKEN_TTL: whole seconds, at least 1)');
  process.exit(2);
}

// Each secret holds ':', '%', '+' and a space, so a client that does not form-encode the
// credentials before Basic (RFC 6749 section 2.3.1) fails; "%41" would decode to "A".
const CLIENTS = {
  basic: {
    client_id: 'interop-basic',
    client_secret: 'basic:s3cret 100%41+more',
    token_endpoint_auth_method: 'client_secret_basic',
    grant_types: ['refresh_token', 'authorization_code', 'client_credentials'],
  },
  post: {
    client_id: 'interop-post',
    client_secret: 'post:s3cret 100%41+more',
    token_endpoint_auth_method: 'client_secret_post',
    grant_types: ['refresh_token', 'authorization_code', 'client_credentials'],
  },
  // The client_id needs the same encoding as the secret.
  odd: {
    client_id: 'interop odd:id%+',
    client_secret: 'odd: s3cret%zz+%41 ',
    token_endpoint_auth_method: 'client_secret_basic',
    grant_types: ['refresh_token', 'authorization_code', 'client_credentials'],
  },
  // DPoP clients: every token request must carry a proof (dpop_bound_access_tokens). A
  // confidential client's refresh tokens are not bound to a key; a public client's are (the
  // provider refuses a refresh signed by another key with invalid_grant, grant intact).
  dpop: {
    client_id: 'interop-dpop',
    client_secret: 'dpop:s3cret 100%41+more',
    token_endpoint_auth_method: 'client_secret_basic',
    grant_types: ['refresh_token', 'authorization_code'],
    dpop_bound_access_tokens: true,
  },
  public: {
    client_id: 'interop-public',
    token_endpoint_auth_method: 'none',
    grant_types: ['refresh_token', 'authorization_code'],
    dpop_bound_access_tokens: true,
  },
};
const GRANT_SCOPE = 'openid offline_access'; // offline_access: refresh tokens are issued

// ---------------------------------------------------------------------------------------------
// An adapter that never evicts. oidc-provider's default in-memory adapter is an LRU of 1000
// entries: in a long run, consumed refresh tokens and revoked grants fall out of it, and a reuse
// then looks like an unknown token instead of a reuse. Expiry is still enforced: the provider
// checks `exp` itself (with clockTolerance 0) on every find.
const store = new Map(); // "<Model>:<id>" -> payload
const grantMembers = new Map(); // grantId -> Set of store keys issued for that grant
const sessionUids = new Map(); // Session uid -> id
const userCodes = new Map(); // userCode -> id

const epochTime = () => Math.floor(Date.now() / 1000);

class MapAdapter {
  constructor(model) {
    this.model = model;
  }

  key(id) {
    return `${this.model}:${id}`;
  }

  async upsert(id, payload) {
    const key = this.key(id);
    store.set(key, structuredClone(payload));
    if (payload.grantId) {
      if (!grantMembers.has(payload.grantId)) grantMembers.set(payload.grantId, new Set());
      grantMembers.get(payload.grantId).add(key);
    }
    if (this.model === 'Session' && payload.uid) sessionUids.set(payload.uid, id);
    if (payload.userCode) userCodes.set(payload.userCode, id);
  }

  async find(id) {
    const payload = store.get(this.key(id));
    return payload === undefined ? undefined : structuredClone(payload);
  }

  async findByUid(uid) {
    const id = sessionUids.get(uid);
    return id === undefined ? undefined : this.find(id);
  }

  async findByUserCode(userCode) {
    const id = userCodes.get(userCode);
    return id === undefined ? undefined : this.find(id);
  }

  async consume(id) {
    const payload = store.get(this.key(id));
    if (payload) payload.consumed = epochTime();
  }

  async destroy(id) {
    const key = this.key(id);
    const payload = store.get(key);
    store.delete(key);
    if (payload?.grantId) grantMembers.get(payload.grantId)?.delete(key);
  }

  async revokeByGrantId(grantId) {
    for (const key of grantMembers.get(grantId) ?? []) store.delete(key);
    grantMembers.delete(grantId);
  }
}

// ---------------------------------------------------------------------------------------------
// Listen first, so that the issuer names the real port (also when the system chose it).
const server = createServer();
await new Promise((resolve) => {
  server.once('error', (error) => {
    console.error(`cannot listen on 127.0.0.1:${port}: ${error.code ?? error.message}`);
    process.exit(1);
  });
  server.listen(port, '127.0.0.1', resolve);
});
const issuer = `http://127.0.0.1:${server.address().port}`;
const provider = new Provider(issuer, {
  adapter: MapAdapter,
  clients: Object.values(CLIENTS).map((client) => ({
    ...client,
    response_types: ['code'],
    redirect_uris: ['https://client.interop.test/callback'],
  })),
  clockTolerance: 0,
  // Rotation on every refresh. A consumed refresh token presented again makes the refresh_token
  // grant destroy it and revoke the whole grant (lib/actions/grants/refresh_token.js).
  rotateRefreshToken: () => true,
  ttl: {
    AccessToken: accessTokenTtl,
    ClientCredentials: accessTokenTtl,
    RefreshToken: 3600,
    Grant: 3600,
    IdToken: 3600,
    Interaction: 600,
    Session: 3600,
  },
  features: {
    clientCredentials: { enabled: true },
    revocation: { enabled: true }, // RFC 7009, used to revoke a grant
    devInteractions: { enabled: false },
    // Nonces derived from a secret of this run (they last about 5 minutes, shared by all
    // clients), required in every proof.
    dPoP: { enabled: true, nonceSecret: randomBytes(32), requireNonce: () => true },
  },
  findAccount: async (ctx, sub) => ({ accountId: sub, claims: async () => ({ sub }) }),
  cookies: { keys: ['interop-tests-only-not-a-secret'] },
});

// ---------------------------------------------------------------------------------------------
// Counters, served at GET /test/stats.
//
// - token_requests, token_successes, token_errors: token endpoint calls by grant_type, and
//   the error codes of those refused, counted by the middleware below once oidc-provider has
//   answered.
// - client_auth: how each token request authenticated the client, as sent (a Basic header or a
//   client_secret in the form). oidc-provider accepts either for a client registered with
//   client_secret_basic or client_secret_post, so its own success does not show which was used.
// - reuse_detections: oidc-provider's own verdict. When a consumed (rotated) refresh token is
//   presented again, the refresh_token grant destroys it, revokes the whole grant and throws
//   invalid_grant; the 'grant.error' event carries that error, with error_detail "refresh token
//   already used" (the answer itself only says "grant request is invalid").
// - refresh_tokens_presented_again: refresh_token grant requests whose refresh_token value an
//   earlier request had already presented to the grant, whatever the provider concluded. This
//   also catches two concurrent redemptions of one token: the provider's consumed check is not
//   atomic (there are awaits between its find and its consume), so both could succeed.
// - grants_revoked: 'grant.revoked' events (reuse detection, RFC 7009 revocation).
// - api_ok, api_unauthorized: answers of GET /api/items.
// - userinfo_ok, userinfo_errors: answers of the userinfo endpoint (GET /me), the refused ones
//   by error code (use_dpop_nonce: a nonce challenge; invalid_token: a token the provider does
//   not take; invalid_dpop_proof: a proof it does not take). userinfo_error_details: the same
//   by the provider's reason, which its answers do not say ("invalid_token: access token not
//   found" for an expired one, "... failed jkt verification" for a proof by another key).
// - dpop_proofs: the DPoP headers received, at any endpoint, by the RFC 7638 thumbprint of the
//   key in the proof's header ("undecodable" for one that is not a JWT with a jwk); read here
//   without checking the signature (oidc-provider checks it). dpop_jti_repeated: proofs whose
//   jti an earlier proof carried.
const stats = {
  token_requests: {},
  token_successes: {},
  token_errors: {},
  client_auth: {},
  reuse_detections: 0,
  refresh_tokens_presented_again: 0,
  grants_revoked: 0,
  api_ok: 0,
  api_unauthorized: 0,
  userinfo_ok: 0,
  userinfo_errors: {},
  userinfo_error_details: {},
  dpop_proofs: {},
  dpop_jti_repeated: 0,
};
const presentedRefreshTokens = new Set();
const proofJtis = new Set();
const bump = (counter, key) => { counter[key] = (counter[key] ?? 0) + 1; };

provider.on('grant.error', (ctx, error) => {
  if (error.error === 'invalid_grant' && error.error_detail === 'refresh token already used') {
    stats.reuse_detections += 1;
  }
});
provider.on('grant.revoked', () => { stats.grants_revoked += 1; });
provider.on('userinfo.error', (ctx, error) => {
  bump(stats.userinfo_error_details, `${error.error}: ${error.error_detail ?? error.error_description}`);
});
provider.on('server_error', (ctx, error) => { console.error('server_error', error); });

function countTokenRequest(ctx) {
  const params = ctx.oidc.params ?? {};
  const grantType = typeof params.grant_type === 'string' ? params.grant_type : 'none';
  bump(stats.token_requests, grantType);
  if (ctx.status === 200) bump(stats.token_successes, grantType);
  else bump(stats.token_errors, ctx.body?.error ?? `HTTP ${ctx.status}`);
  const basic = /^basic /i.test(ctx.get('authorization'));
  bump(stats.client_auth, basic ? 'client_secret_basic' : params.client_secret ? 'client_secret_post' : 'none');
  // Only requests that reached the grant (answered, or refused with invalid_grant): a client
  // that failed to authenticate, or a bad request, spent nothing.
  const presented = params.refresh_token;
  const reachedGrant = ctx.status === 200 || ctx.body?.error === 'invalid_grant';
  if (grantType === 'refresh_token' && reachedGrant && typeof presented === 'string') {
    if (presentedRefreshTokens.has(presented)) stats.refresh_tokens_presented_again += 1;
    presentedRefreshTokens.add(presented);
  }
}

function countUserinfoAnswer(ctx) {
  if (ctx.status === 200) stats.userinfo_ok += 1;
  else bump(stats.userinfo_errors, ctx.body?.error ?? `HTTP ${ctx.status}`);
}

const base64urlJson = (part) => JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));

// RFC 7638: SHA-256 over the JSON of the key's required members, in lexicographic order.
function jwkThumbprint(jwk) {
  const members = jwk.kty === 'EC' ? ['crv', 'kty', 'x', 'y'] : ['crv', 'kty', 'x'];
  const canonical = JSON.stringify(Object.fromEntries(members.map((name) => [name, jwk[name]])));
  return createHash('sha256').update(canonical).digest('base64url');
}

function countProof(proof) {
  let thumbprint = 'undecodable';
  try {
    const [header, payload] = proof.split('.').slice(0, 2).map(base64urlJson);
    thumbprint = jwkThumbprint(header.jwk);
    if (proofJtis.has(payload.jti)) stats.dpop_jti_repeated += 1;
    proofJtis.add(payload.jti);
  } catch {
    // counted as undecodable
  }
  bump(stats.dpop_proofs, thumbprint);
}

// ---------------------------------------------------------------------------------------------
// The protected resource: a bearer token is good when the provider finds it (AccessToken from a
// user grant, or ClientCredentials) and it has not expired (find checks exp, clockTolerance 0).
async function api(ctx) {
  const match = /^Bearer ([\x21-\x7e]+)$/i.exec(ctx.get('authorization'));
  let token;
  if (match) {
    token = (await provider.AccessToken.find(match[1]))
      ?? (await provider.ClientCredentials.find(match[1]));
  }
  if (!token || token.isExpired) {
    stats.api_unauthorized += 1;
    ctx.status = 401;
    ctx.set('WWW-Authenticate', match
      ? 'Bearer realm="interop", error="invalid_token", error_description="unknown, revoked or expired token"'
      : 'Bearer realm="interop"');
    ctx.body = { error: 'invalid_token' };
    return;
  }
  stats.api_ok += 1;
  ctx.body = { items: [1, 2, 3], client_id: token.clientId, kind: token.kind, scope: token.scope ?? null };
}

async function readJson(ctx) {
  const chunks = [];
  for await (const chunk of ctx.req) chunks.push(chunk);
  const text = Buffer.concat(chunks).toString('utf8');
  return text ? JSON.parse(text) : {};
}

// A grant as the authorization_code grant would leave it after a login and consent
// (lib/helpers/grant_common.js issueTokens): a Grant with the scope, an AccessToken and, since
// the scope has offline_access, a RefreshToken, all bound to the grant so that the
// refresh_token grant, revocation and reuse detection treat them like any other.
// With a jkt (the thumbprint of the client's DPoP key), the access token is bound to that key and,
// for a public client, the refresh token too (lib/helpers/set_rt_bindings.js).
async function issueGrant(ctx) {
  const { client_id: clientId, jkt } = await readJson(ctx);
  const client = await provider.Client.find(String(clientId));
  if (!client) {
    ctx.status = 400;
    ctx.body = { error: 'unknown client_id' };
    return;
  }
  const accountId = 'interop-user';
  const grant = new provider.Grant({ accountId, clientId: client.clientId });
  grant.addOIDCScope(GRANT_SCOPE);
  const grantId = await grant.save();
  const common = {
    accountId, client, grantId, gty: 'authorization_code', scope: GRANT_SCOPE, expiresWithSession: false,
  };
  const at = new provider.AccessToken(common);
  const rt = new provider.RefreshToken({ ...common, rotations: 0 });
  if (typeof jkt === 'string') {
    at.setThumbprint('jkt', jkt);
    if (client.clientAuthMethod === 'none') rt.jkt = jkt;
  }
  const accessToken = await at.save();
  const refreshToken = await rt.save();
  ctx.body = {
    access_token: accessToken,
    token_type: at.tokenType,
    expires_in: at.expiration,
    refresh_token: refreshToken,
    scope: GRANT_SCOPE,
  };
}

async function destroyAccessToken(ctx) {
  const { access_token: value } = await readJson(ctx);
  const token = await provider.AccessToken.find(String(value));
  if (token) await token.destroy();
  ctx.body = { destroyed: Boolean(token) };
}

const clientsForTests = Object.fromEntries(Object.entries(CLIENTS).map(([role, client]) => [role, {
  client_id: client.client_id,
  client_secret: client.client_secret ?? null,
  auth_method: client.token_endpoint_auth_method,
  dpop: client.dpop_bound_access_tokens ?? false,
}]));

const testRoutes = {
  'POST /test/grant': issueGrant,
  'POST /test/destroy-access-token': destroyAccessToken,
  'GET /test/clients': (ctx) => { ctx.body = clientsForTests; },
  'GET /test/stats': (ctx) => { ctx.body = stats; },
};

// provider.use inserts this before oidc-provider's own routes.
provider.use(async (ctx, next) => {
  if (ctx.path.startsWith('/api/')) {
    await api(ctx);
    return;
  }
  const route = testRoutes[`${ctx.method} ${ctx.path}`];
  if (route) {
    await route(ctx);
    return;
  }
  const proof = ctx.get('DPoP');
  if (proof) countProof(proof);
  await next();
  if (ctx.oidc?.route === 'token') countTokenRequest(ctx);
  if (ctx.oidc?.route === 'userinfo') countUserinfoAnswer(ctx);
});

server.on('request', provider.callback());
console.log(`READY ${server.address().port}`);
for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => process.exit(0));
