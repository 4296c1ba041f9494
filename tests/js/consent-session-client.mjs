// The official TypeScript SDK client on a 2025-11-25 session that takes URL elicitations: a
// call whose service needs the user's consent fails with UrlElicitationRequiredError; the
// user completes the consent (consent-follow.mjs on the URL, as a browser would); the client
// hears notifications/elicitation/complete for that elicitation and calls again. Prints
// {"elicitationId", "completed": the id the notification named, "consent", "text"}.
//
// usage: node consent-session-client.mjs <mcp url> <token>
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { ElicitationCompleteNotificationSchema, ErrorCode } from '@modelcontextprotocol/sdk/types.js';

const [url, token] = process.argv.slice(2);
const client = new Client({ name: 'portcullis-consent', version: '1.0.0' }, { capabilities: { elicitation: { url: {} } } });
const completed = new Promise((resolve) => {
  client.setNotificationHandler(ElicitationCompleteNotificationSchema, (n) => resolve(n.params.elicitationId));
});
await client.connect(new StreamableHTTPClientTransport(new URL(url), {
  requestInit: { headers: { Authorization: `Bearer ${token}` } },
}));
const call = () => client.callTool({ name: 'probe.fetch', arguments: { service: 'github', path: '/echo' } });
let elicitation;
try {
  await call();
  throw new Error('the first call should have asked for consent');
} catch (e) {
  if (e.code !== ErrorCode.UrlElicitationRequired) throw e;
  [elicitation] = e.data.elicitations;
}
const follower = fileURLToPath(new URL('./consent-follow.mjs', import.meta.url));
const done = spawnSync(process.execPath, [follower, elicitation.url], { encoding: 'utf8' });
const consent = JSON.parse(done.stdout.trim().split('\n').pop());
const t0 = Date.now();
const heard = await Promise.race([completed, new Promise((resolve) => setTimeout(() => resolve(null), 20000).unref())]);
const result = await call();
console.log(JSON.stringify({ waitedMs: Date.now() - t0, elicitationId: elicitation.elicitationId, completed: heard, consent, text: result.content.map((c) => c.text).join('') }));
await client.close();
