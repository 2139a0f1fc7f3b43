// A real OAuth2/OIDC identity provider for wsload's tests: node-oidc-provider (npm
// `oidc-provider`, pinned in package.json) on a loopback port, issuing RS256 JWT access
// tokens for one resource server, with the client-credentials and refresh-token grants it
// implements itself and the resource-owner password grant registered through its
// documented `registerGrantType` extension (it ships none: OAuth 2.1 drops that grant).
//
// Configured by environment variables, prints its port on stdout once listening:
//   IDP_JWK          private signing key as a JWK (JSON)
//   IDP_CLIENT_ID, IDP_CLIENT_SECRET   the one confidential client
//   IDP_USERS        JSON {"username": {"password": "...", "sub": "..."}}
//   IDP_AUDIENCE     the access tokens' "aud"; IDP_ACCESS_TTL their lifetime in seconds
import http from 'node:http';

import Provider, { errors } from 'oidc-provider';

const env = process.env;
const clientId = env.IDP_CLIENT_ID || 'wsload-client';
const users = JSON.parse(env.IDP_USERS || '{}');
const audience = env.IDP_AUDIENCE || 'netra-platform';
const ttl = Number(env.IDP_ACCESS_TTL || 300);
const resource = 'urn:wsload:chat';
const resourceServer = {
  scope: 'chat',
  audience,
  accessTokenFormat: 'jwt',
  accessTokenTTL: ttl,
  jwt: { sign: { alg: 'RS256' } },
};

const server = http.createServer();
await new Promise((resolve) => { server.listen(0, '127.0.0.1', resolve); });
const { port } = server.address();
const issuer = `http://127.0.0.1:${port}`;

const provider = new Provider(issuer, {
  clients: [{
    client_id: clientId,
    client_secret: env.IDP_CLIENT_SECRET,
    grant_types: ['client_credentials', 'refresh_token', 'password'],
    response_types: [],
    redirect_uris: [],
    token_endpoint_auth_method: env.IDP_CLIENT_AUTH || 'client_secret_basic',
    scope: 'chat offline_access',
  }],
  jwks: { keys: [JSON.parse(env.IDP_JWK)] },
  scopes: ['chat', 'offline_access'],
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => resource,
      getResourceServerInfo: () => resourceServer,
      useGrantedResource: () => true,
    },
  },
  // The backend under test requires this claim of access tokens, as docs/PROTOCOL.md says.
  extraTokenClaims: () => ({ token_type: 'access' }),
  findAccount: (ctx, sub) => (Object.values(users).some((u) => u.sub === sub)
    ? { accountId: sub, claims: () => ({ sub }) } : undefined),
  ttl: { RefreshToken: 3600, Grant: 3600 },
  rotateRefreshToken: true,
});

// RFC 6749 4.3: the resource-owner password grant, on the provider's own models, so its
// refresh tokens are refreshed by the provider's built-in refresh_token grant.
provider.registerGrantType('password', async (ctx) => {
  const { client, params } = ctx.oidc;
  const user = users[params.username];
  if (!user || user.password !== params.password) {
    throw new errors.InvalidGrant('invalid resource owner credentials');
  }
  const grant = new provider.Grant({ clientId: client.clientId, accountId: user.sub });
  grant.addResourceScope(resource, 'chat');
  grant.addOIDCScope('offline_access');
  const grantId = await grant.save();
  const at = new provider.AccessToken({
    accountId: user.sub, client, grantId, gty: 'password', scope: 'chat',
  });
  at.resourceServer = new provider.ResourceServer(resource, resourceServer);
  const rt = new provider.RefreshToken({
    accountId: user.sub,
    client,
    grantId,
    gty: 'password',
    scope: 'chat offline_access',
    resource,
    rotations: 0,
  });
  ctx.body = {
    access_token: await at.save(),
    token_type: 'Bearer',
    expires_in: at.expiration,
    refresh_token: await rt.save(),
    scope: 'chat',
  };
}, ['username', 'password', 'scope']);

server.on('request', provider.callback());
process.stdout.write(`${port}\n`);
process.on('SIGTERM', () => { server.close(); process.exit(0); });
