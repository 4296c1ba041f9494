// The official TypeScript client 2.x (@modelcontextprotocol/client, pinned) with DPoP
// (RFC 9449, SEP-1932): its OAuth provider implements dpop(), so the SDK signs a proof into
// the token request, gets a DPoP-bound token, and presents it on every MCP request with a
// fresh proof, retrying a `use_dpop_nonce` challenge with the server's nonce. Pinned to
// 2026-07-28. Prints a JSON transcript: the token type, each HTTP exchange (the scheme and
// whether a proof went, never the token or the proof), and the tool call's result.
//
// usage: node dpop-client.mjs <mcp url>
import { Client, DpopSession, StreamableHTTPClientTransport, UnauthorizedError } from '@modelcontextprotocol/client';
import { cookieJarFollower } from './headless.mjs';

const mcpUrl = process.argv[2];
const redirectUrl = 'http://127.0.0.1:33419/callback';
const followToCode = cookieJarFollower(redirectUrl);
const transcript = { http: [] };

// What went over the wire, as the gateway saw it (no secrets in the transcript).
const recording = async (url, init = {}) => {
  const headers = new Headers(init.headers);
  const res = await fetch(url, init);
  const authorization = headers.get('authorization');
  transcript.http.push({
    url: String(url),
    method: init.method ?? 'GET',
    authorization: authorization ? authorization.split(' ')[0] : null,
    proof: headers.has('dpop'),
    status: res.status,
    challenge: res.headers.get('www-authenticate'),
  });
  return res;
};

const session = await DpopSession.create({ alg: 'ES256' });
const provider = {
  get redirectUrl() { return redirectUrl; },
  get clientMetadata() {
    return {
      client_name: 'portcullis-dpop-ts2',
      redirect_uris: [redirectUrl],
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
    };
  },
  state: () => `st-${Math.random().toString(36).slice(2)}`,
  clientInformation() { return this._client; },
  saveClientInformation(info) { this._client = info; },
  tokens() { return this._tokens; },
  saveTokens(t) { this._tokens = t; transcript.tokenType = t.token_type; },
  saveCodeVerifier(v) { this._verifier = v; },
  codeVerifier() { return this._verifier; },
  async redirectToAuthorization(url) { this.redirect = await followToCode(url.href); },
  dpop() { return session; },
};

const connect = async () => {
  const client = new Client({ name: 'portcullis-dpop-ts2', version: '1.0.0' }, { versionNegotiation: { mode: { pin: '2026-07-28' } } });
  const transport = new StreamableHTTPClientTransport(new URL(mcpUrl), { authProvider: provider, fetch: recording });
  return { client, transport };
};

let { client, transport } = await connect();
try {
  await client.connect(transport);
} catch (e) {
  if (!(e instanceof UnauthorizedError) || !provider.redirect) throw e;
  // The headless sign-in finished at the redirect: hand the code to the transport, reconnect.
  await transport.finishAuth(provider.redirect.code, provider.redirect.iss ?? undefined);
  ({ client, transport } = await connect());
  await client.connect(transport);
}
transcript.greet = await client.callTool({ name: 'hello.greet', arguments: { name: 'DPoP' } });
transcript.thumbprint = session.thumbprint;
await client.close();
console.log(JSON.stringify(transcript));
