// node oidc-provider over HTTPS for the interop tests of logins and client authentication
// (tests/interop/test_oidc_provider_logins.py):
//
//   TLS_CERT=server.pem TLS_KEY=key.pem TLS_CA=ca.pem JWT_CLIENT_JWKS='{"keys":[...]}' \
//     node login_server.mjs <port>
//
// Prints "READY <port>" once it listens on 127.0.0.1. Everything is oidc-provider's own code:
// its discovery document, its login and consent pages (devInteractions), the device flow's
// pages, client authentication (none, private_key_jwt, tls_client_auth) and resource
// indicators. This file only configures it:
//   native   a public native client: authorization code + PKCE with a loopback redirect, the
//            device flow, refresh tokens
//   jwt      private_key_jwt with the public keys the test passes in JWT_CLIENT_JWKS
//   hmac     client_secret_jwt (an assertion signed with the client secret)
//   mtls     tls_client_auth: a certificate from TLS_CA whose SAN is mtls.interop.test
// The resource https://api.interop.test gets JWT access tokens with that audience.

import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:https';

import { Provider, errors } from 'oidc-provider';

const port = Number(process.argv[2] ?? 0);
const RESOURCE = 'https://api.interop.test';
const MTLS_SAN = 'mtls.interop.test';

const server = createServer({
  cert: readFileSync(process.env.TLS_CERT),
  key: readFileSync(process.env.TLS_KEY),
  ca: readFileSync(process.env.TLS_CA),
  requestCert: true, // asked for, checked by the provider for tls_client_auth clients only
  rejectUnauthorized: false,
});
await new Promise((resolve) => server.listen(port, '127.0.0.1', resolve));
const issuer = `https://127.0.0.1:${server.address().port}`;

function peerCertificate(ctx) {
  const peer = ctx.req.socket.getPeerCertificate?.();
  if (!peer?.raw) return undefined;
  const body = peer.raw.toString('base64').match(/.{1,64}/g).join('\n');
  return `-----BEGIN CERTIFICATE-----\n${body}\n-----END CERTIFICATE-----\n`;
}

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: 'native',
      application_type: 'native',
      token_endpoint_auth_method: 'none',
      redirect_uris: ['http://127.0.0.1/callback'], // any port: RFC 8252 section 7.3
      grant_types: ['authorization_code', 'refresh_token',
        'urn:ietf:params:oauth:grant-type:device_code'],
      response_types: ['code'],
    },
    {
      client_id: 'jwt',
      token_endpoint_auth_method: 'private_key_jwt',
      jwks: JSON.parse(process.env.JWT_CLIENT_JWKS),
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
    },
    {
      client_id: 'hmac',
      client_secret: 'interop-hmac-secret-of-at-least-32-bytes',
      token_endpoint_auth_method: 'client_secret_jwt',
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
    },
    {
      client_id: 'mtls',
      token_endpoint_auth_method: 'tls_client_auth',
      tls_client_auth_san_dns: MTLS_SAN,
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
    },
  ],
  clientAuthMethods: ['none', 'client_secret_jwt', 'private_key_jwt', 'tls_client_auth'],
  pkce: { required: () => true },
  issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
  features: {
    devInteractions: { enabled: true },
    deviceFlow: { enabled: true },
    clientCredentials: { enabled: true },
    revocation: { enabled: true },
    mTLS: {
      enabled: true,
      tlsClientAuth: true,
      getCertificate: peerCertificate,
      certificateAuthorized: (ctx) => ctx.req.socket.authorized === true,
      certificateSubjectMatches: (ctx, property, expected) => property === 'tls_client_auth_san_dns'
        && new X509Certificate(peerCertificate(ctx)).subjectAltName.split(', ')
          .includes(`DNS:${expected}`),
    },
    resourceIndicators: {
      enabled: true,
      defaultResource: async () => undefined,
      useGrantedResource: async () => true,
      getResourceServerInfo: async (ctx, resource) => {
        if (resource !== RESOURCE) throw new errors.InvalidTarget();
        return { scope: 'api:read', audience: RESOURCE, accessTokenFormat: 'jwt',
          accessTokenTTL: 60 };
      },
    },
  },
  findAccount: async (ctx, sub) => ({ accountId: sub, claims: async () => ({ sub }) }),
  cookies: { keys: ['interop-tests-only-not-a-secret'] },
});
provider.on('server_error', (ctx, error) => { console.error('server_error', error); });

server.on('request', provider.callback());
console.log(`READY ${server.address().port}`);
for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => process.exit(0));
