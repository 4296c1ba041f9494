// The official TypeScript SDK client on a Streamable HTTP session, waiting for the server's
// notifications/tools/list_changed. Prints one JSON line per event so the Rust test can act
// between them: {"event":"ready","tools":[...]} once connected, then after each notification
// {"event":"changed","tools":[...]} with the list fetched again. Exits after `expected`
// notifications, or fails after 30 s without one.
//
// usage: node list-changed-client.mjs <mcp url> <expected notifications>
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { ToolListChangedNotificationSchema } from '@modelcontextprotocol/sdk/types.js';

const [url, expected] = [process.argv[2], Number(process.argv[3] ?? 1)];
const client = new Client({ name: 'portcullis-list-changed', version: '1.0.0' });
const names = async () => (await client.listTools()).tools.map((t) => t.name);
let pending = [];
client.setNotificationHandler(ToolListChangedNotificationSchema, () => {
  for (const resolve of pending) resolve();
  pending = [];
});
const changed = () => new Promise((resolve, reject) => {
  pending.push(resolve);
  setTimeout(() => reject(new Error('no tools/list_changed within 30 s')), 30000).unref();
});
await client.connect(new StreamableHTTPClientTransport(new URL(url)));
let next = changed();
console.log(JSON.stringify({ event: 'ready', protocol: client.getServerVersion()?.name, tools: await names() }));
for (let i = 0; i < expected; i++) {
  await next;
  next = changed();
  console.log(JSON.stringify({ event: 'changed', tools: await names() }));
}
await client.close();
process.exit(0);
