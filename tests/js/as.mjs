// A real OAuth 2.1 authorization server for Portcullis' end-to-end tests: npm oidc-provider,
// configured the way an MCP deployment needs it (RFC 8414 metadata, PKCE S256, open DCR,
// RFC 8707 resource indicators with JWT access tokens whose `aud` is the resource, JWKS,
// introspection), plus a headless login/consent so SDK clients can run the whole flow.
//
// Environment:
//   AS_PORT          port on 127.0.0.1 (0 = any; the chosen URL is written to AS_READY_FILE)
//   AS_RESOURCES     space-separated resource URLs tokens may be issued for
//   AS_SCOPES        space-separated scopes the resources accept
//   AS_USER          the account every login becomes (default alice)
//   AS_TOKEN_FORMAT  "jwt" (default) or "opaque" (validated by introspection)
//   AS_READY_FILE    where to write {"issuer": ...} once listening
//   AS_EXCHANGE_RESOURCES  space-separated downstream audiences for RFC 8693 token exchange and
//                    the gateway's client_credentials grant
//   AS_EXCHANGE_TTL  lifetime in seconds of tokens issued for those audiences (default 600)
//   AS_GATEWAY_JWKS  file with the public JWK (or JWK set) of the `gateway-pkjwt` client (private_key_jwt)
//
// Token exchange (urn:ietf:params:oauth:grant-type:token-exchange) is a custom grant: the
// subject token must be an access token this AS issued for one of AS_RESOURCES, the target
// one of AS_EXCHANGE_RESOURCES, scopes may only narrow, and the issued token names the
// exchanging client in `act`. `GET /__exchanges` reports how many token requests for
// downstream audiences were served, for cache tests. `GET /__requests` lists every token,
// introspection and revocation request: its endpoint, grant, target, and the SHA-256 of any
// token it carried (subject_token or token), so isolation tests can count which tokens
// reached which authorization server. Revocation (RFC 7009) is on; `test-public` may ask
// for refresh tokens (offline_access).
import http from 'node:http';
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import Provider, { errors } from 'oidc-provider';
import { exportJWK, generateKeyPair, jwtVerify, createLocalJWKSet } from 'jose';

const port = Number(process.env.AS_PORT ?? 0);
const resources = (process.env.AS_RESOURCES ?? '').split(' ').filter(Boolean);
const scopes = (process.env.AS_SCOPES ?? 'mcp:tools').split(' ').filter(Boolean);
const user = process.env.AS_USER ?? 'alice';
const exchangeResources = (process.env.AS_EXCHANGE_RESOURCES ?? '').split(' ').filter(Boolean);
const exchangeTtl = Number(process.env.AS_EXCHANGE_TTL ?? 600);
const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';

// The signing key is ours, so exchanged subject tokens can be verified locally.
const { privateKey, publicKey } = await generateKeyPair('RS256', { extractable: true });
const signingJwk = { ...(await exportJWK(privateKey)), alg: 'RS256', use: 'sig', kid: 'as-key' };
const verifyKeys = createLocalJWKSet({ keys: [{ ...(await exportJWK(publicKey)), alg: 'RS256', kid: 'as-key' }] });
let downstreamTokens = 0;

const server = http.createServer();
await new Promise((resolve) => server.listen(port, '127.0.0.1', resolve));
const issuer = `http://127.0.0.1:${server.address().port}`;

const provider = new Provider(issuer, {
  clients: [
    {
      // The gateway's own confidential client (introspection, later token exchange).
      client_id: 'gateway',
      client_secret: 'gateway-secret',
      grant_types: ['client_credentials', TOKEN_EXCHANGE],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_basic',
    },
    ...(process.env.AS_GATEWAY_JWKS
      ? [{
        client_id: 'gateway-pkjwt',
        response_types: [],
        redirect_uris: [],
        grant_types: ['client_credentials', TOKEN_EXCHANGE],
        token_endpoint_auth_method: 'private_key_jwt',
        jwks: ((k) => (k.keys ? k : { keys: [k] }))(JSON.parse(readFileSync(process.env.AS_GATEWAY_JWKS, 'utf8'))),
      }]
      : []),
    {
      // A public client for tests that need a user token without an MCP client.
      client_id: 'test-public',
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      redirect_uris: ['http://127.0.0.1:33418/callback'],
      token_endpoint_auth_method: 'none',
    },
  ],
  jwks: { keys: [signingJwk] },
  // Keep the `act` claim of exchanged tokens (the default hook would replace `extra`).
  extraTokenClaims: (ctx, token) => token.extra,
  scopes: ['openid', 'offline_access', ...scopes],
  responseTypes: ['code'],
  pkce: { required: () => true },
  features: {
    devInteractions: { enabled: false },
    registration: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: true },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      useGrantedResource: () => true,
      defaultResource: () => undefined,
      getResourceServerInfo: (ctx, resourceIndicator) => {
        if (exchangeResources.includes(resourceIndicator)) return downstreamServer(resourceIndicator, scopes.join(' '));
        if (!resources.includes(resourceIndicator)) throw new errors.InvalidTarget();
        return {
          audience: resourceIndicator,
          scope: scopes.join(' '),
          accessTokenTTL: 600,
          ...(process.env.AS_TOKEN_FORMAT === 'opaque'
            ? { accessTokenFormat: 'opaque' }
            : { accessTokenFormat: 'jwt', jwt: { sign: { alg: 'RS256' } } }),
        };
      },
    },
  },
  // The TS SDK registers with the first challenge's scope; oidc-provider would then refuse a
  // step-up to more scopes. Registered scope is not a ceiling here.
  extraClientMetadata: {
    properties: ['scope'],
    validator(ctx, key, value, metadata) {
      if (key === 'scope') delete metadata.scope;
    },
  },
  findAccount: async (ctx, sub) => ({ accountId: sub, claims: async () => ({ sub }) }),
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  loadExistingGrant: async (ctx) => {
    const grantId = ctx.oidc.result?.consent?.grantId || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    return grantId ? ctx.oidc.provider.Grant.find(grantId) : undefined;
  },
});

function downstreamServer(audience, scope) {
  return { audience, scope, accessTokenTTL: exchangeTtl, accessTokenFormat: 'jwt', jwt: { sign: { alg: 'RS256' } } };
}

// RFC 8693 token exchange for a user's access token, acting as the authenticated client.
async function tokenExchange(ctx) {
  const { client, params } = ctx.oidc;
  if (params.subject_token_type !== ACCESS_TOKEN_TYPE) throw new errors.InvalidRequest('subject_token_type must be an access token');
  if (params.requested_token_type && params.requested_token_type !== ACCESS_TOKEN_TYPE) throw new errors.InvalidRequest('only access tokens can be requested');
  let subject;
  try {
    ({ payload: subject } = await jwtVerify(params.subject_token, verifyKeys, { issuer, typ: 'at+jwt' }));
  } catch (e) {
    throw new errors.InvalidGrant(`the subject token is not valid: ${e.code ?? e.message}`);
  }
  if (!resources.includes(subject.aud)) throw new errors.InvalidGrant('the subject token was not issued for a resource that may exchange it');
  const targets = [...new Set([params.resource, params.audience].flat().filter(Boolean))];
  if (targets.length !== 1) throw new errors.InvalidTarget('name exactly one target with resource or audience');
  const [target] = targets;
  if (!exchangeResources.includes(target)) throw new errors.InvalidTarget(`${target} is not an audience tokens can be exchanged for`);
  const held = new Set((subject.scope ?? '').split(' ').filter(Boolean));
  const requested = params.scope ? params.scope.split(' ') : [...held];
  if (requested.some((s) => !held.has(s))) throw new errors.InvalidScope('an exchange may only narrow the subject token\'s scopes', params.scope);
  const token = new provider.AccessToken({
    accountId: subject.sub,
    client,
    gty: 'token_exchange',
    scope: requested.join(' '),
    extra: { act: { sub: client.clientId } },
  });
  token.resourceServer = new provider.ResourceServer(target, downstreamServer(target, requested.join(' ')));
  const value = await token.save();
  ctx.body = {
    access_token: value,
    issued_token_type: ACCESS_TOKEN_TYPE,
    token_type: 'Bearer',
    expires_in: token.expiration,
    scope: token.scope,
  };
}
provider.registerGrantType(
  TOKEN_EXCHANGE,
  tokenExchange,
  ['subject_token', 'subject_token_type', 'actor_token', 'actor_token_type', 'requested_token_type', 'resource', 'audience', 'scope'],
  ['resource', 'audience'],
);

// Record what reached this AS: endpoint, grant, target, and hashes of the tokens carried.
const requests = [];
const sha256 = (v) => createHash('sha256').update(v).digest('hex');
provider.use(async (ctx, next) => {
  await next();
  const route = ctx.oidc?.route;
  if (!['token', 'introspection', 'revocation'].includes(route)) return;
  const p = ctx.oidc.params ?? {};
  requests.push({
    endpoint: route,
    grant_type: p.grant_type,
    target: [p.resource, p.audience].flat().filter(Boolean),
    tokens: [p.subject_token, p.token].filter(Boolean).map(sha256),
    client: ctx.oidc.client?.clientId,
    status: ctx.status,
  });
});

// Count every token issued for a downstream audience (exchange or client credentials).
provider.on('grant.success', (ctx) => {
  const { grant_type: grantType, resource, audience } = ctx.oidc.params;
  if (grantType === TOKEN_EXCHANGE || [resource, audience].flat().some((r) => exchangeResources.includes(r))) downstreamTokens += 1;
});

// Headless login and consent: log in as `user`, grant every requested scope and resource scope.
async function interaction(req, res) {
  const details = await provider.interactionDetails(req, res);
  const { prompt, params, session } = details;
  if (prompt.name === 'login') {
    return provider.interactionFinished(req, res, { login: { accountId: user } }, { mergeWithLastSubmission: false });
  }
  const grant = details.grantId
    ? await provider.Grant.find(details.grantId)
    : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
  const missing = prompt.details;
  if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
  for (const [indicator, s] of Object.entries(missing.missingResourceScopes ?? {})) grant.addResourceScope(indicator, s.join(' '));
  const grantId = await grant.save();
  return provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
}

const callback = provider.callback();
server.on('request', async (req, res) => {
  try {
    if (req.url.startsWith('/interaction/')) return await interaction(req, res);
    if (req.url === '/__requests') {
      res.setHeader('content-type', 'application/json');
      return res.end(JSON.stringify(requests));
    }
    if (req.url === '/__exchanges') {
      res.setHeader('content-type', 'application/json');
      return res.end(JSON.stringify({ count: downstreamTokens }));
    }
    // oidc-provider serves only the OIDC discovery path; strict RFC 8414 clients ask here.
    if (req.url === '/.well-known/oauth-authorization-server') req.url = '/.well-known/openid-configuration';
    return callback(req, res);
  } catch (e) {
    res.statusCode = 500;
    res.end(String(e));
  }
});

if (process.env.AS_READY_FILE) writeFileSync(process.env.AS_READY_FILE, JSON.stringify({ issuer }));
console.log(JSON.stringify({ issuer }));
