// The official TypeScript SDK client through the complete MCP OAuth flow against Portcullis:
// 401 -> protected resource metadata -> AS metadata -> DCR -> authorize (PKCE, headless) ->
// token -> tools/list -> tools/call; then a tool needing more scope -> 403 -> re-authorization
// with the challenged scope -> success. Prints a JSON transcript for the Rust test to check.
//
// usage: node oauth-client.mjs <mcp url>
// CALLS (JSON list of {name, arguments}) replaces the default tool calls; the transcript then
//   has their results and the access token the client used.
// LOG_LEVEL (e.g. info) asks for log notifications at that level; the transcript then has them.
// CLIENT_MODE=dcr (default) | cimd (client_id = CIMD_URL, a client ID metadata document) |
//   preregistered (client_id = CLIENT_ID)
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { auth, extractWWWAuthenticateParams } from '@modelcontextprotocol/sdk/client/auth.js';
import { LoggingMessageNotificationSchema } from '@modelcontextprotocol/sdk/types.js';
import { cookieJarFollower } from './headless.mjs';

const mcpUrl = process.argv[2];
const redirectUrl = 'http://127.0.0.1:33418/callback';
const transcript = { http: [], challenges: [], authorizations: 0 };

const followToCode = cookieJarFollower(redirectUrl);

const mode = process.env.CLIENT_MODE ?? 'dcr';
transcript.mode = mode;

const provider = {
  lastRedirect: null,
  _client: mode === 'preregistered' ? { client_id: process.env.CLIENT_ID } : undefined,
  clientMetadataUrl: mode === 'cimd' ? process.env.CIMD_URL : undefined,
  get redirectUrl() { return redirectUrl; },
  get clientMetadata() {
    return {
      client_name: 'portcullis-e2e-ts',
      redirect_uris: [redirectUrl],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
    };
  },
  state: () => `st-${Math.random().toString(36).slice(2)}`,
  clientInformation() { return this._client; },
  saveClientInformation(info) { this._client = info; transcript.registeredClientId = info.client_id; },
  clientIdUsed() { return this._client?.client_id; },
  tokens() { return this._tokens; },
  saveTokens(t) { this._tokens = t; transcript.scopesGranted = t.scope; },
  saveCodeVerifier(v) { this._verifier = v; },
  codeVerifier() { return this._verifier; },
  async redirectToAuthorization(url) {
    transcript.authorizations += 1;
    transcript.lastAuthorizeParams = Object.fromEntries(url.searchParams);
    this.lastRedirect = await followToCode(url.href);
  },
};

// A fetch for the transport: bearer on every request; on 401/403 run the SDK's auth() (and
// finish the headless redirect at once), then retry.
async function oauthFetch(url, init = {}) {
  const send = () => {
    const headers = new Headers(init.headers);
    const t = provider.tokens();
    if (t) headers.set('authorization', `Bearer ${t.access_token}`);
    return fetch(url, { ...init, headers });
  };
  let res = await send();
  transcript.http.push(res.status);
  if (res.status === 401 || res.status === 403) {
    const params = extractWWWAuthenticateParams(res);
    transcript.challenges.push({ status: res.status, header: res.headers.get('www-authenticate'), ...params });
    const opts = { serverUrl: mcpUrl, resourceMetadataUrl: params.resourceMetadataUrl, scope: params.scope };
    let result = await auth(provider, opts);
    if (result === 'REDIRECT') {
      result = await auth(provider, { ...opts, authorizationCode: provider.lastRedirect.code });
    }
    if (result !== 'AUTHORIZED') throw new Error(`authorization did not complete: ${result}`);
    res = await send();
    transcript.http.push(res.status);
  }
  return res;
}

const client = new Client({ name: 'portcullis-e2e-ts', version: '1.0.0' });
await client.connect(new StreamableHTTPClientTransport(new URL(mcpUrl), { fetch: oauthFetch }));
transcript.protocolVersion = client.getServerVersion()?.name;
if (process.env.LOG_LEVEL) {
  transcript.logs = [];
  client.setNotificationHandler(LoggingMessageNotificationSchema, (n) => transcript.logs.push(n.params));
  await client.setLoggingLevel(process.env.LOG_LEVEL);
}
transcript.tools = (await client.listTools()).tools.map((t) => t.name);
if (process.env.CALLS) {
  // Tests that need other tools name them: [{"name": ..., "arguments": {...}}, ...].
  transcript.calls = [];
  for (const call of JSON.parse(process.env.CALLS)) transcript.calls.push(await client.callTool(call));
  transcript.accessToken = provider.tokens()?.access_token;
} else {
  transcript.greet = await client.callTool({ name: 'hello.greet', arguments: { name: 'OAuth' } });
  transcript.whoami = await client.callTool({ name: 'hello.whoami', arguments: {} });
}
transcript.iss = provider.lastRedirect?.iss ?? null;
transcript.clientId = provider.clientIdUsed();
await client.close();
console.log(JSON.stringify(transcript));
