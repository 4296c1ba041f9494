// A user's access token from as.mjs without an MCP client: authorization code + PKCE S256 as
// the static public client `test-public`, with the headless login and consent.
//
// usage: node user-token.mjs <issuer> <resource> <scope>   prints {"access_token": ...}
// (an empty <resource> sends none, as at Entra ID)
import { createHash, randomBytes } from 'node:crypto';
import { cookieJarFollower } from './headless.mjs';

const [issuer, resource, scope] = process.argv.slice(2);
const redirectUri = 'http://127.0.0.1:33418/callback';
const verifier = randomBytes(32).toString('base64url');
const challenge = createHash('sha256').update(verifier).digest('base64url');
const meta = await (await fetch(`${issuer}/.well-known/oauth-authorization-server`)).json();
const authorize = new URL(meta.authorization_endpoint);
for (const [k, v] of Object.entries({
  client_id: 'test-public', response_type: 'code', redirect_uri: redirectUri, scope, resource,
  code_challenge: challenge, code_challenge_method: 'S256', state: 'user-token',
  // OIDC grants offline_access (a refresh token) only with an explicit consent prompt.
  ...(scope.split(' ').includes('offline_access') ? { prompt: 'consent' } : {}),
})) if (v) authorize.searchParams.set(k, v);
const { code } = await cookieJarFollower(redirectUri)(authorize.href);
const res = await fetch(meta.token_endpoint, {
  method: 'POST',
  headers: { 'content-type': 'application/x-www-form-urlencoded' },
  body: new URLSearchParams({ grant_type: 'authorization_code', code, redirect_uri: redirectUri, code_verifier: verifier, client_id: 'test-public', ...(resource ? { resource } : {}) }),
});
const body = await res.json();
if (!res.ok) throw new Error(`token request failed: ${JSON.stringify(body)}`);
console.log(JSON.stringify({ access_token: body.access_token, refresh_token: body.refresh_token, scope: body.scope }));
