// A real OAuth 2.1 authorization server for Portcullis' end-to-end tests: npm oidc-provider,
// configured the way an MCP deployment needs it (RFC 8414 metadata, PKCE S256, open DCR,
// RFC 8707 resource indicators with JWT access tokens whose `aud` is the resource, JWKS,
// introspection), plus a headless login/consent so SDK clients can run the whole flow.
//
// Environment:
//   AS_PORT          port on 127.0.0.1 (0 = any; the chosen URL is written to AS_READY_FILE)
//   AS_RESOURCES     space-separated resource URLs tokens may be issued for
//   AS_SCOPES        space-separated scopes the resources accept
//   AS_USER          the account every login becomes (default alice; `GET /__user?set=bob`
//                    changes it)
//   AS_GATEWAY_REDIRECTS  redirect URIs of the `gateway` client, which then also signs users
//                    in (authorization code), as the gateway's consent flow does
//   AS_APP_REDIRECTS redirect URIs of `consent-app` (secret `consent-app-secret`,
//                    client_secret_post): the gateway's app at a third-party provider
//   AS_REFRESH       issue refresh tokens with every authorization code grant
//   AS_ACCESS_TTL    lifetime in seconds of access tokens issued without a resource
//   AS_COOKIE_PREFIX cookie names of its own (two of these on one host)
//   AS_FORMS=1       sign-in and consent are forms a browser fills in (else headless; the
//                    `test-public` client always signs in headless)
//   AS_TOKEN_FORMAT  "jwt" (default) or "opaque" (validated by introspection)
//   AS_READY_FILE    where to write {"issuer": ...} once listening
//   AS_EXCHANGE_RESOURCES  space-separated downstream audiences for RFC 8693 token exchange and
//                    the gateway's client_credentials grant
//   AS_EXCHANGE_TTL  lifetime in seconds of tokens issued for those audiences (default 600)
//   AS_GATEWAY_JWKS  file with the public JWK (or JWK set) of the `gateway-pkjwt` client (private_key_jwt)
//   AS_SHAPE         "entra": behave as Microsoft Entra ID's v2 endpoint does (below)
//   AS_ENTRA_APP     with entra: the gateway's application (client) id, a GUID: the `aud` of
//                    users' tokens for the MCP server, and the client that makes OBO requests
//   AS_ENTRA_APIS    with entra: space-separated `<application id URI>=<GUID>` of downstream APIs
//   AS_ENTRA_CERT_THUMBPRINT  with entra: the `x5t#S256` the gateway's client assertions must carry
//                    (its registered certificate), else AADSTS700027
//   AS_RAR_TYPES     space-separated RFC 9396 authorization_details types this AS grants (its
//                    Rich Authorization Requests feature, at /auth and with PAR at /request):
//                    each detail must name only AS_RESOURCES in `locations` and the `tool` it
//                    approves; one naming a `subject` can be approved only by that user (else
//                    access_denied). The consent page (AS_FORMS=1) lists each detail's
//                    arguments (`.approvals`, each value in a `.value`); a code and its tokens
//                    carry exactly the details of the request approved, never earlier ones
//   AS_STEP_UP_USER  an account whose exchange, assertion and OBO grants answer
//                    `interaction_required` (with Entra: and a claims challenge, as Conditional
//                    Access does for MFA) until the user signs in interactively again
//
// JWT bearer (urn:ietf:params:oauth:grant-type:jwt-bearer, RFC 7523 §2.1) is a custom grant:
// the assertion is an access token this AS issued for one of AS_RESOURCES; the target is one
// of AS_EXCHANGE_RESOURCES, named by `resource` or `audience`; scopes only narrow.
//
// With AS_SHAPE=entra the AS follows Entra's documented behaviour instead: users' access
// tokens carry `aud` = AS_ENTRA_APP (a GUID, not the resource URL), `scp` instead of
// `scope`, `azp`, `ver` "2.0", `tid` and `oid`, a pairwise `sub` (per app, and different in ID
// tokens, which carry `oid` with the `profile` scope), and no `resource` is accepted (AADSTS901002);
// the on-behalf-of request is the jwt-bearer grant with `requested_token_use=on_behalf_of`,
// made by the client the assertion was issued to (`aud` = its client id, else AADSTS500131),
// its target named only by `scope` = `<application id URI>/.default`; the gateway's client
// (client id AS_ENTRA_APP) authenticates with private_key_jwt (AS_GATEWAY_JWKS).
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
const exchangeResources = (process.env.AS_EXCHANGE_RESOURCES ?? '').split(' ').filter(Boolean);
const exchangeTtl = Number(process.env.AS_EXCHANGE_TTL ?? 600);
const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const JWT_BEARER = 'urn:ietf:params:oauth:grant-type:jwt-bearer';
const entra = process.env.AS_SHAPE === 'entra';
const entraApp = process.env.AS_ENTRA_APP ?? '';
const entraApis = Object.fromEntries((process.env.AS_ENTRA_APIS ?? '').split(' ').filter(Boolean).map((kv) => kv.split('=')));
const ENTRA_TENANT = '72f988bf-86f1-41af-91ab-2d7cd011db47';
const stepUpUser = process.env.AS_STEP_UP_USER;
const gatewayRedirects = (process.env.AS_GATEWAY_REDIRECTS ?? '').split(' ').filter(Boolean);
const rarTypes = (process.env.AS_RAR_TYPES ?? '').split(' ').filter(Boolean);
// Who the next headless sign-in becomes (`GET /__user?set=<name>` changes it).
let user = process.env.AS_USER ?? 'alice';
// Set by `GET /__revoke-app`: refresh grants are refused from then on.
let appRevoked = false;
// The step-up user's multi-factor sign-in: required (by a refused grant) until they sign in
// interactively again; tokens issued from then on satisfy it.
let stepUpPending = false;
let mfaAt = Infinity;
// Entra's user ids: `oid`, one per user in the directory, and `sub`, pairwise: different for
// each app a token is issued to, and between a user's access tokens and ID tokens.
const oidOf = (account) => createHash('sha256').update(String(account)).digest('hex').slice(0, 32);
const pairwise = (account, app) => createHash('sha256').update(`${ENTRA_TENANT}|${app}|${account}`).digest('base64url').slice(0, 43);
const accountsByOid = new Map();
// The account a verified access token issued here names.
const accountOf = (payload) => (entra ? accountsByOid.get(payload.oid) : payload.sub);
// Whether a grant presenting `subject` (a verified access token) must ask for the user.
function needsStepUp(subject) {
  if (!stepUpUser || accountOf(subject) !== stepUpUser || subject.iat >= Math.floor(mfaAt / 1000)) return false;
  stepUpPending = true;
  return true;
}
const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';

// The signing key is ours, so exchanged subject tokens can be verified locally.
const { privateKey, publicKey } = await generateKeyPair('RS256', { extractable: true });
const signingJwk = { ...(await exportJWK(privateKey)), alg: 'RS256', use: 'sig', kid: 'as-key' };
const verifyKeys = createLocalJWKSet({ keys: [{ ...(await exportJWK(publicKey)), alg: 'RS256', kid: 'as-key' }] });
let downstreamTokens = 0;

const server = http.createServer();
await new Promise((resolve) => server.listen(port, '127.0.0.1', resolve));
const issuer = `http://127.0.0.1:${server.address().port}`;

// Entra's own error body: `error`, `error_description` starting with the AADSTS code, and
// `error_codes`.
function entraError(ctx, status, error, code, text, extra = {}) {
  ctx.status = status;
  ctx.body = {
    error, error_description: `AADSTS${code}: ${text} Trace ID: 0 Correlation ID: 0 Timestamp: ${new Date().toISOString()}`,
    error_codes: [code], timestamp: new Date().toISOString(), trace_id: '0', correlation_id: '0', ...extra,
  };
}

const provider = new Provider(issuer, {
  clients: entra ? [
    {
      // The gateway's Entra application: its client id is the GUID in users' tokens.
      client_id: entraApp,
      // With AS_GATEWAY_REDIRECTS it also signs users in (the consent flow's sign-in).
      response_types: gatewayRedirects.length ? ['code'] : [],
      redirect_uris: gatewayRedirects,
      grant_types: [JWT_BEARER, ...(gatewayRedirects.length ? ['authorization_code'] : [])],
      subject_type: 'pairwise',
      token_endpoint_auth_method: 'private_key_jwt',
      jwks: ((k) => (k.keys ? k : { keys: [k] }))(JSON.parse(readFileSync(process.env.AS_GATEWAY_JWKS, 'utf8'))),
    },
    {
      client_id: 'test-public',
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      redirect_uris: ['http://127.0.0.1:33418/callback'],
      token_endpoint_auth_method: 'none',
    },
  ] : [
    {
      // The gateway's own confidential client (introspection, exchanges; with
      // AS_GATEWAY_REDIRECTS also users' sign-in, for the consent flow).
      client_id: 'gateway',
      client_secret: 'gateway-secret',
      grant_types: ['client_credentials', TOKEN_EXCHANGE, JWT_BEARER, ...(gatewayRedirects.length ? ['authorization_code'] : [])],
      response_types: gatewayRedirects.length ? ['code'] : [],
      redirect_uris: gatewayRedirects,
      token_endpoint_auth_method: 'client_secret_basic',
    },
    ...(process.env.AS_APP_REDIRECTS
      ? [{
        // A third-party provider's registered app (the gateway's, for user consent).
        client_id: 'consent-app',
        client_secret: 'consent-app-secret',
        grant_types: ['authorization_code', 'refresh_token'],
        response_types: ['code'],
        redirect_uris: process.env.AS_APP_REDIRECTS.split(' '),
        token_endpoint_auth_method: 'client_secret_post',
      }]
      : []),
    ...(process.env.AS_GATEWAY_JWKS
      ? [{
        client_id: 'gateway-pkjwt',
        response_types: [],
        redirect_uris: [],
        grant_types: ['client_credentials', TOKEN_EXCHANGE, JWT_BEARER],
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
  // MCP clients register without `authorization_details_types` (RFC 9396 §10): let each ask
  // for every type granted here.
  ...(rarTypes.length ? { clientDefaults: { authorization_details_types: rarTypes, grant_types: ['authorization_code'], id_token_signed_response_alg: 'RS256', response_types: ['code'], token_endpoint_auth_method: 'client_secret_basic' } } : {}),
  // Two of these on one host share cookies (cookies ignore ports): give each its own names.
  ...(process.env.AS_COOKIE_PREFIX ? { cookies: { names: Object.fromEntries(['session', 'interaction', 'resume', 'state'].map((n) => [n, `${process.env.AS_COOKIE_PREFIX}_${n}`])) } } : {}),
  ...(process.env.AS_ACCESS_TTL ? { ttl: { AccessToken: Number(process.env.AS_ACCESS_TTL) } } : {}),
  // A provider whose grants are refreshable (AS_REFRESH=1) issues refresh tokens always.
  ...(process.env.AS_REFRESH ? { issueRefreshToken: async () => true } : {}),
  // Entra's v2 access token claims.
  formats: {
    customizers: {
      jwt: entra ? async (ctx, token, jwt) => {
        const p = jwt.payload;
        if (p.scope !== undefined) p.scp = p.scope;
        p.azp = p.client_id;
        delete p.scope;
        delete p.client_id;
        const account = token.accountId;
        if (account !== undefined) {
          accountsByOid.set(oidOf(account), account);
          Object.assign(p, { oid: oidOf(account), sub: pairwise(account, `access:${p.azp}`) });
        }
        Object.assign(p, { ver: '2.0', tid: ENTRA_TENANT });
        jwt.header = { typ: 'JWT' };
      } : undefined,
    },
  },
  // Keep the `act` claim of exchanged tokens (the default hook would replace `extra`).
  extraTokenClaims: (ctx, token) => token.extra,
  scopes: ['openid', 'offline_access', ...scopes],
  responseTypes: ['code'],
  pkce: { required: () => true },
  features: {
    ...(rarTypes.length ? { richAuthorizationRequests: richAuthorizationRequests() } : {}),
    devInteractions: { enabled: false },
    registration: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: true },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      useGrantedResource: () => true,
      // Entra: no `resource`; a user's token is for the gateway's application.
      defaultResource: () => (entra ? 'api://portcullis' : undefined),
      getResourceServerInfo: (ctx, resourceIndicator) => {
        if (entra) {
          if (resourceIndicator !== 'api://portcullis') throw new errors.InvalidTarget();
          return { audience: entraApp, scope: scopes.join(' '), accessTokenTTL: 600, accessTokenFormat: 'jwt', jwt: { sign: { alg: 'RS256' } } };
        }
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
  findAccount: async (ctx, sub) => ({ accountId: sub, claims: async () => ({ sub, ...(entra ? { oid: oidOf(sub) } : {}) }) }),
  // Entra: `oid` is in ID tokens with the `profile` scope; their `sub` is pairwise per app.
  ...(entra ? {
    claims: { openid: ['sub'], profile: ['oid'] },
    subjectTypes: ['public', 'pairwise'],
    pairwiseIdentifier: async (ctx, accountId, client) => pairwise(accountId, `id:${client.clientId}`),
  } : {}),
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  loadExistingGrant: async (ctx) => {
    const grantId = ctx.oidc.result?.consent?.grantId || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    return grantId ? ctx.oidc.provider.Grant.find(grantId) : undefined;
  },
});

// The Rich Authorization Requests policy: which details a request may carry (validated before
// anyone signs in), and which a code and its tokens carry: those of the approved request only.
function richAuthorizationRequests() {
  const validate = async (ctx, detail) => {
    const locations = detail.locations;
    if (!Array.isArray(locations) || !locations.length || !locations.every((l) => resources.includes(l))) {
      throw new errors.InvalidAuthorizationDetails('each detail\'s locations must name resources served here');
    }
    if (typeof detail.tool !== 'string') throw new errors.InvalidAuthorizationDetails('each detail names the tool it approves');
  };
  const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);
  return {
    enabled: true,
    types: Object.fromEntries(rarTypes.map((t) => [t, { validate }])),
    authorizationDetailsForGrantSource: async (ctx) => {
      const requested = JSON.parse(ctx.oidc.params.authorization_details ?? '[]');
      const approved = ctx.oidc.grant.rar ?? [];
      return requested.filter((d) => approved.some((a) => same(a, d)));
    },
    authorizationDetailsForAccessToken: async (ctx, token, source) => source?.rar,
    authorizationDetailsForIntrospection: async (ctx, token) => token.rar,
  };
}

// The consent page's list of what the person approves (HTML-escaped).
const esc = (v) => String(v).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
const approvalsList = (rar) => `<ul class="approvals">${rar.map((d) => `<li><b>${esc(d.tool)}</b> (${esc(d.type)}) with:<ul>${
  Object.entries(d.arguments ?? {}).map(([k, v]) => `<li>${esc(k)}: <b class="value">${esc(typeof v === 'string' ? v : JSON.stringify(v))}</b></li>`).join('')
}${d.arguments_digest ? `<li>the arguments with digest <code>${esc(d.arguments_digest)}</code></li>` : ''}${
  d.subject ? `<li>on behalf of <b class="subject">${esc(d.subject)}</b></li>` : ''}</ul></li>`).join('')}</ul>`;

function downstreamServer(audience, scope) {
  return { audience, scope, accessTokenTTL: exchangeTtl, accessTokenFormat: 'jwt', jwt: { sign: { alg: 'RS256' } } };
}

// A downstream token for the user whose access token (issued here, for one of AS_RESOURCES)
// the client presents, for the one target it names (`resource` or `audience`), with scopes
// that only narrow: the rules the exchange and the assertion grant share.
async function issueFor(ctx, presented, gty, extra) {
  const { client, params } = ctx.oidc;
  const subject = await verifiedAccessToken(presented);
  if (!resources.includes(subject.aud)) throw new errors.InvalidGrant('the presented token was not issued for a resource that may present it');
  if (needsStepUp(subject)) throw new errors.InteractionRequired('multi-factor authentication is required');
  const targets = [...new Set([params.resource, params.audience].flat().filter(Boolean))];
  if (targets.length !== 1) throw new errors.InvalidTarget('name exactly one target with resource or audience');
  const [target] = targets;
  if (!exchangeResources.includes(target)) throw new errors.InvalidTarget(`${target} is not an audience tokens can be issued for`);
  const held = new Set((subject.scope ?? '').split(' ').filter(Boolean));
  const requested = params.scope ? params.scope.split(' ') : [...held];
  if (requested.some((s) => !held.has(s))) throw new errors.InvalidScope('a grant may only narrow the presented token\'s scopes', params.scope);
  const token = new provider.AccessToken({ accountId: accountOf(subject), client, gty, scope: requested.join(' '), extra });
  token.resourceServer = new provider.ResourceServer(target, downstreamServer(target, requested.join(' ')));
  return { value: await token.save(), token };
}

// RFC 8693 token exchange for a user's access token, acting as the authenticated client.
async function tokenExchange(ctx) {
  const { client, params } = ctx.oidc;
  if (params.subject_token_type !== ACCESS_TOKEN_TYPE) throw new errors.InvalidRequest('subject_token_type must be an access token');
  if (params.requested_token_type && params.requested_token_type !== ACCESS_TOKEN_TYPE) throw new errors.InvalidRequest('only access tokens can be requested');
  const { value, token } = await issueFor(ctx, params.subject_token, 'token_exchange', { act: { sub: client.clientId } });
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

// The subject of an access token this AS issued (verified), or an OAuth error.
async function verifiedAccessToken(value) {
  try {
    const { payload } = await jwtVerify(value, verifyKeys, { issuer, ...(entra ? {} : { typ: 'at+jwt' }) });
    return payload;
  } catch (e) {
    throw new errors.InvalidGrant(`the presented token is not valid: ${e.code ?? e.message}`);
  }
}

// RFC 7523 §2.1 with a user's access token as the assertion (and Entra's on-behalf-of).
async function jwtBearer(ctx) {
  if (entra) return onBehalfOf(ctx);
  const { value, token } = await issueFor(ctx, ctx.oidc.params.assertion, 'jwt_bearer', undefined);
  ctx.body = { access_token: value, token_type: 'Bearer', expires_in: token.expiration, scope: token.scope };
}

// Entra ID's on-behalf-of request, with Entra's answers.
async function onBehalfOf(ctx) {
  const { client, params } = ctx.oidc;
  // A certificate credential's assertion names its certificate by `x5t#S256`.
  if (process.env.AS_ENTRA_CERT_THUMBPRINT) {
    const [head] = String(ctx.oidc.body?.client_assertion ?? '').split('.');
    let header = {};
    try { header = JSON.parse(Buffer.from(head, 'base64url').toString()); } catch { /* none */ }
    if (header['x5t#S256'] !== process.env.AS_ENTRA_CERT_THUMBPRINT) {
      return entraError(ctx, 401, 'invalid_client', 700027, 'The certificate with identifier used to sign the client assertion is not registered on application.');
    }
  }
  if (params.resource) return entraError(ctx, 400, 'invalid_request', 901002, "The 'resource' request parameter is not supported.");
  if (params.requested_token_use !== 'on_behalf_of') return entraError(ctx, 400, 'invalid_request', 70003, 'The app requested an unsupported grant type.');
  let subject;
  try {
    ({ payload: subject } = await jwtVerify(params.assertion, verifyKeys, { issuer }));
  } catch {
    return entraError(ctx, 400, 'invalid_grant', 50013, 'Assertion failed signature validation.');
  }
  if (subject.aud !== client.clientId) return entraError(ctx, 400, 'invalid_grant', 500131, 'Assertion audience does not match the Client app presenting the assertion.');
  const scope = (params.scope ?? '').split(' ').filter(Boolean);
  const apis = [...new Set(scope.map((s) => s.slice(0, s.lastIndexOf('/'))))];
  if (apis.length !== 1 || !entraApis[apis[0]]) return entraError(ctx, 400, 'invalid_scope', 70011, `The provided value for the input parameter 'scope' is not valid.`);
  if (needsStepUp(subject)) {
    const claims = JSON.stringify({ access_token: { capolids: { essential: true, values: ['c1c2c3c4-0000-4000-8000-000000000001'] } } });
    return entraError(ctx, 400, 'interaction_required', 50079, 'Due to a configuration change made by your administrator, or because you moved to a new location, you must enroll in multi-factor authentication.', { suberror: 'basic_action', claims });
  }
  const granted = scope.map((s) => s.slice(s.lastIndexOf('/') + 1)).filter((s) => s !== '.default').join(' ') || 'user_impersonation';
  const token = new provider.AccessToken({ accountId: accountOf(subject), client, gty: 'on_behalf_of', scope: granted });
  token.resourceServer = new provider.ResourceServer(apis[0], { audience: entraApis[apis[0]], scope: granted, accessTokenTTL: exchangeTtl, accessTokenFormat: 'jwt', jwt: { sign: { alg: 'RS256' } } });
  const value = await token.save();
  ctx.body = { token_type: 'Bearer', scope: granted, expires_in: token.expiration, ext_expires_in: token.expiration, access_token: value };
}
provider.registerGrantType(JWT_BEARER, jwtBearer, ['assertion', 'requested_token_use', 'scope', 'resource', 'audience'], ['resource', 'audience']);

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
    tokens: [p.subject_token, p.token, p.assertion].filter(Boolean).map(sha256),
    scope: p.scope,
    requested_token_use: p.requested_token_use,
    client_auth: p.client_assertion ? 'private_key_jwt' : (p.client_secret ? 'client_secret_post' : 'other'),
    client: ctx.oidc.client?.clientId,
    status: ctx.status,
  });
});

// Count every token issued for a downstream audience (exchange or client credentials).
provider.on('grant.success', (ctx) => {
  const { grant_type: grantType, resource, audience } = ctx.oidc.params;
  if (grantType === TOKEN_EXCHANGE || grantType === JWT_BEARER || [resource, audience].flat().some((r) => exchangeResources.includes(r))) downstreamTokens += 1;
});

// Headless login and consent: log in as `user`, grant every requested scope and resource scope.
// With AS_FORMS=1 the sign-in and the consent are pages a browser fills in and submits: a
// login form (`#login`, `#signin`) and an Allow button (`#allow`).
const forms = process.env.AS_FORMS === '1';
const formPage = (uid, body) => `<!doctype html><html><head><meta charset="utf-8"><title>Sign in</title></head><body><main>${body}</main></body></html>`;

async function interaction(req, res) {
  const details = await provider.interactionDetails(req, res);
  const { prompt, params, session, uid } = details;
  const submitted = req.method === 'POST'
    ? new URLSearchParams(await new Promise((resolve) => { let b = ''; req.on('data', (c) => { b += c; }); req.on('end', () => resolve(b)); }))
    : null;
  // The tests' own public client (user-token.mjs) always signs in headless.
  if (forms && !submitted && params.client_id !== 'test-public') {
    res.setHeader('content-type', 'text/html; charset=utf-8');
    return res.end(prompt.name === 'login'
      ? formPage(uid, `<form method="post"><label>User <input id="login" name="login"></label><button id="signin" type="submit">Sign in</button></form>`)
      : formPage(uid, `<p>${esc(params.client_id)} asks for ${esc(params.scope ?? '')}</p>${prompt.details.rar ? approvalsList(prompt.details.rar) : ''}<form method="post"><button id="allow" name="allow" value="1" type="submit">Allow</button></form>`));
  }
  if (prompt.name === 'login') {
    const account = submitted?.get('login') || user;
    if (account === stepUpUser && stepUpPending) {
      stepUpPending = false;
      mfaAt = Math.floor(Date.now() / 1000) * 1000;
    }
    return provider.interactionFinished(req, res, { login: { accountId: account } }, { mergeWithLastSubmission: false });
  }
  const grant = details.grantId
    ? await provider.Grant.find(details.grantId)
    : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
  const missing = prompt.details;
  if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
  for (const [indicator, s] of Object.entries(missing.missingResourceScopes ?? {})) grant.addResourceScope(indicator, s.join(' '));
  for (const detail of missing.rar ?? []) {
    // Someone else's call is theirs to approve.
    if (detail.subject !== undefined && detail.subject !== session.accountId) {
      const error = { error: 'access_denied', error_description: 'the approvals asked for are another user\'s calls' };
      return provider.interactionFinished(req, res, error, { mergeWithLastSubmission: false });
    }
    grant.addRar(detail);
  }
  const grantId = await grant.save();
  return provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
}

const callback = provider.callback();
server.on('request', async (req, res) => {
  try {
    if (req.url.startsWith('/interaction/')) return await interaction(req, res);
    // A pending step-up makes the next authorization an interactive sign-in (as Conditional
    // Access does), whatever session the browser has.
    if (stepUpPending && req.url.startsWith('/auth?')) {
      const url = new URL(req.url, issuer);
      url.searchParams.set('prompt', 'login');
      req.url = `${url.pathname}${url.search}`;
    }
    if (req.url === '/__requests') {
      res.setHeader('content-type', 'application/json');
      return res.end(JSON.stringify(requests));
    }
    if (req.url === '/__revoke-app') {
      // The user revokes the app at the provider: its refresh tokens stop working.
      appRevoked = true;
      return res.end('{}');
    }
    if (appRevoked && req.method === 'POST' && req.url.startsWith('/token')) {
      const body = await new Promise((resolve) => { let b = ''; req.on('data', (c) => { b += c; }); req.on('end', () => resolve(b)); });
      if (new URLSearchParams(body).get('grant_type') === 'refresh_token') {
        requests.push({ endpoint: 'token', grant_type: 'refresh_token', status: 400 });
        res.statusCode = 400;
        res.setHeader('content-type', 'application/json');
        return res.end(JSON.stringify({ error: 'invalid_grant', error_description: 'the app was revoked' }));
      }
      req.body = body;
    }
    if (req.url.startsWith('/__user?set=')) {
      user = new URL(req.url, issuer).searchParams.get('set');
      return res.end(JSON.stringify({ user }));
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
