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
import http from 'node:http';
import { writeFileSync } from 'node:fs';
import Provider, { errors } from 'oidc-provider';

const port = Number(process.env.AS_PORT ?? 0);
const resources = (process.env.AS_RESOURCES ?? '').split(' ').filter(Boolean);
const scopes = (process.env.AS_SCOPES ?? 'mcp:tools').split(' ').filter(Boolean);
const user = process.env.AS_USER ?? 'alice';

const server = http.createServer();
await new Promise((resolve) => server.listen(port, '127.0.0.1', resolve));
const issuer = `http://127.0.0.1:${server.address().port}`;

const provider = new Provider(issuer, {
  clients: [
    {
      // The gateway's own confidential client (introspection, later token exchange).
      client_id: 'gateway',
      client_secret: 'gateway-secret',
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_basic',
    },
  ],
  scopes: ['openid', 'offline_access', ...scopes],
  responseTypes: ['code'],
  pkce: { required: () => true },
  features: {
    devInteractions: { enabled: false },
    registration: { enabled: true },
    introspection: { enabled: true },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      useGrantedResource: () => true,
      defaultResource: () => undefined,
      getResourceServerInfo: (ctx, resourceIndicator) => {
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
