// The peer of Kreide's token endpoint in `make bench`: Node's oidc-provider
// (npm, the version pinned in tests/package.json) on 127.0.0.1, set up like
// Kreide's bench client:
//
//   - signing: one ES256 (P-256) key, generated here with node:crypto; ID
//     tokens of the client are ES256 too
//   - one confidential client (client_secret_basic) with the grants
//     client_credentials, authorization_code and refresh_token, the scopes
//     `openid offline_access reports` and one redirect URI
//   - features.clientCredentials on; access tokens in oidc-provider's
//     default format (opaque, stored by the adapter)
//   - refresh tokens rotate on every use (rotateRefreshToken: true)
//   - the default in-memory adapter; devInteractions (its default
//     development sign-in and consent pages) to obtain refresh tokens through
//     a real authorization code flow (tests/bench/mint_tokens.mjs)
//
//   node oidc_provider_server.mjs PORT CLIENT_ID CLIENT_SECRET REDIRECT_URI
//
// Prints "ready" on stdout once it listens. The issuer is
// http://127.0.0.1:PORT. Every account id is accepted at the sign-in page;
// its only claim is `sub`.
import { generateKeyPairSync, randomBytes } from 'node:crypto';

import Provider from 'oidc-provider';

const [port, clientId, clientSecret, redirectUri] = process.argv.slice(2);
if (!port || !clientId || !clientSecret || !redirectUri) {
  console.error('usage: node oidc_provider_server.mjs PORT CLIENT_ID CLIENT_SECRET REDIRECT_URI');
  process.exit(2);
}

const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const jwk = { ...privateKey.export({ format: 'jwk' }), kid: 'bench', alg: 'ES256', use: 'sig' };

const provider = new Provider(`http://127.0.0.1:${port}`, {
  clients: [
    {
      client_id: clientId,
      client_secret: clientSecret,
      grant_types: ['client_credentials', 'authorization_code', 'refresh_token'],
      response_types: ['code'],
      redirect_uris: [redirectUri],
      scope: 'openid offline_access reports',
      token_endpoint_auth_method: 'client_secret_basic',
      id_token_signed_response_alg: 'ES256',
    },
  ],
  jwks: { keys: [jwk] },
  scopes: ['openid', 'offline_access', 'reports'],
  features: { clientCredentials: { enabled: true }, devInteractions: { enabled: true } },
  rotateRefreshToken: true,
  cookies: { keys: [randomBytes(32).toString('base64url')] },
  async findAccount(ctx, sub) {
    return { accountId: sub, async claims() { return { sub }; } };
  },
});

const server = provider.listen(Number(port), '127.0.0.1', () => console.log('ready'));
const stop = () => server.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
