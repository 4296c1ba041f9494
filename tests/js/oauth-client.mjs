// The official TypeScript SDK client through the complete MCP OAuth flow against Portcullis:
// 401 -> protected resource metadata -> AS metadata -> DCR -> authorize (PKCE, headless) ->
// token -> tools/list -> tools/call; then a tool needing more scope -> 403 -> re-authorization
// with the challenged scope -> success. Prints a JSON transcript for the Rust test to check.
//
// usage: node oauth-client.mjs <mcp url>
// CLIENT_MODE=dcr (default) | cimd (client_id = CIMD_URL, a client ID metadata document) |
//   preregistered (client_id = CLIENT_ID)
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { auth, extractWWWAuthenticateParams } from '@modelcontextprotocol/sdk/client/auth.js';

const mcpUrl = process.argv[2];
const redirectUrl = 'http://127.0.0.1:33418/callback';
const transcript = { http: [], challenges: [], authorizations: 0 };

// Follow the AS's redirects with a cookie jar until it sends us to the redirect URI.
const jar = new Map();
async function followToCode(start) {
  let url = start;
  for (let i = 0; i < 20; i++) {
    const cookie = [...jar.entries()].map(([k, v]) => `${k}=${v}`).join('; ');
    const res = await fetch(url, { redirect: 'manual', headers: cookie ? { cookie } : {} });
    for (const c of res.headers.getSetCookie()) {
      const [kv] = c.split(';');
      const [k, v] = kv.split('=');
      jar.set(k.trim(), v);
    }
    const location = res.headers.get('location');
    if (!location) throw new Error(`authorization stopped at ${url}: HTTP ${res.status} ${await res.text()}`);
    const next = new URL(location, url);
    if (next.href.startsWith(redirectUrl)) {
      if (next.searchParams.get('error')) throw new Error(`authorization failed: ${next.search}`);
      return { code: next.searchParams.get('code'), state: next.searchParams.get('state'), iss: next.searchParams.get('iss') };
    }
    url = next.href;
  }
  throw new Error('too many redirects');
}

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
transcript.tools = (await client.listTools()).tools.map((t) => t.name);
transcript.greet = await client.callTool({ name: 'hello.greet', arguments: { name: 'OAuth' } });
transcript.whoami = await client.callTool({ name: 'hello.whoami', arguments: {} });
transcript.iss = provider.lastRedirect?.iss ?? null;
transcript.clientId = provider.clientIdUsed();
await client.close();
console.log(JSON.stringify(transcript));
